"""The pull cluster of test_pull_cluster.py in `rfc9962` mode with RFC 9962
section 5.2 lookup ranges and no hash mask.

Each node registers /24s (IPv4, instance-ID 1000) and a /48 (IPv6) inside ranges
[0]10.30.0.0/16 -> 24, [1000]10.30.0.0/16 -> 24 and [0]fd30::/16 -> 48.  Without
the ranges a host lookup hashes "[0]10.30.k.7/32", which in general names another
index than the registration's "[0]10.30.k.0/24"; with them both hash the /24, so
every host resolves through its registration's index set, from every node.
"""

from __future__ import annotations

import json

import pytest

from common.decent.hash import decent_index
from common.wire.eidtext import parse_eidspec
from tests.integration.harness import poll
from tests.integration.test_pull_cluster import (MODULUS, N, Cluster, eids, index_sets, resolve_via,
                                                 rloc)

pytestmark = pytest.mark.integration

RANGES = [("[0]10.30.0.0/16", 24), ("[1000]10.30.0.0/16", 24), ("[0]fd30::/16", 48)]


def test_hosts_resolve_through_the_index_of_their_range_prefix():
    c = Cluster("rfc9962", "none", "pr", RANGES)
    # the test means something only if, without the ranges, some host hashes to
    # another index than its registration
    moved = [host for j in range(1, N + 1) for p, host in eids(j).items()
             if decent_index(parse_eidspec(host), MODULUS, "rfc9962") != c.index(p)]
    assert moved
    try:
        c.up()
        poll(lambda: c.placement_ok(index_sets()), 60, 0.5, what="rfc9962 placement with ranges")
        poll(lambda: c.all_resolve(via=[1, 4, 8]), 30, 0.5, what="host lookups through the ranges")
        # a node outside a host's index set forwarded it to that set
        p, host = "[0]10.30.2.0/24", "10.30.2.7"
        outside = next(k for k in c.nodes if k != 2 and rloc(k) not in index_sets()[c.index(p)])
        before = c.nodes[outside].counters()["map_resolver:0"].get("forwarded-to-set", 0)
        r = resolve_via(rloc(outside), host)
        assert r is not None and r.records and r.records[0].locators
        assert c.nodes[outside].counters()["map_resolver:0"].get("forwarded-to-set", 0) > before
        # `decent lig --decent` picks the same index set (the /24's), as the ITR does
        r = c.nodes[outside].decent("lig", "--decent", host, "--json", "--count", "3")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["eid"] == p
        # a negative reply inside a range is never shorter than its lookup length
        r = resolve_via(rloc(1), "10.30.200.1")
        assert r is not None and not r.records[0].locators and r.records[0].mask_len >= 24
        r = resolve_via(rloc(1), "10.31.0.1")      # in no range: the host route
        assert r is not None and not r.records[0].locators and r.records[0].mask_len == 32
    finally:
        c.down()
