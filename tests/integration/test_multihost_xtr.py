"""Issue 16: an ETR/ITR pair on a satellite host (network namespaces, the fixtures of
tests/integration/test_multihost.py).

n1 runs the bus (TCP, CURVE), two map_server shards, a map_resolver worker and an
ETR for 10.1.1.0/24; n2 is a satellite running ``map_resolver:1``, ``etr:1`` (its own
mapping 10.1.20.0/24, RLOC 172.16.2.2, registered through n2's UDP 4342 to the node's
shard) and ``itr:0``.  Each ETR must get only the datagrams that reached its own host
(the satellite's on ``rx.<type>.n2``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.integration.harness import REPO, poll
from tests.integration.netns import need_root
from tests.integration.test_multihost import (BUS, HB, SECRET, answer, bus_body,
                                              node_across_hosts, sat_body)

pytestmark = pytest.mark.integration

SAT = "172.16.2.2"
SAT_XTR = f"""
[etr]
map_servers = [{{ address = "{SAT}", key_id = 0, alg = "hmac-sha-256-128", secret = "{SECRET}" }}]

[[database_mapping]]
eid = "10.1.20.0/24"
"""


@pytest.fixture(scope="module")
def xnet():
    need_root()
    bodies = [lambda keys: bus_body(keys, sats=(2,)),
              lambda keys: sat_body(keys, 2, run=["map_resolver:1", "etr:1", "itr:0"],
                                    extra=SAT_XTR)]
    with node_across_hosts(f"mx{os.getpid() % 100000}", bodies) as (topo, nodes, keys):
        for k in (1, 2):
            for eid, want in (("10.1.1.5", "[0]10.1.1.0/24"), ("10.1.20.5", "[0]10.1.20.0/24")):
                poll(lambda k=k, eid=eid, want=want: answer(topo, k, eid) == want, 60, 0.3,
                     f"n{k} answers {eid}")
        yield topo, nodes, keys


def etr_counters(node) -> tuple[dict, dict]:
    """(the bus host's etr:0, the satellite's etr:1), as heard on the bus host."""
    c = node.counters()
    return c.get("etr:0", {}), c.get("etr:1", {})


def settle() -> None:
    time.sleep(4 * HB)            # a fresh heartbeat from every role carries the counters


def in_ns(topo, k: int, code: str, *args: str) -> str:
    r = subprocess.run(["ip", "netns", "exec", topo.ns(f"n{k}"), sys.executable, "-c", code, *args],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_the_satellite_etrs_eid_is_registered_on_the_bus_hosts_shard(xnet):
    _topo, nodes, _ = xnet
    regs = json.dumps(nodes[0].registrations())            # `decent show registrations`
    assert "10.1.20.0/24" in regs and SAT in regs
    st = nodes[0].status()
    assert "etr:1" not in st and "itr:0" not in st         # not the bus host's programs
    rows = {(x["host"], x["instance"]) for x in
            json.loads(nodes[0].decent("status", "--json").stdout).get("other_hosts", [])}
    assert ("n2", "etr:1") in rows and ("n2", "itr:0") in rows
    # the shard's Map-Notify reached the satellite ETR's own socket and was accepted
    c = poll(lambda: (lambda x: x if x.get("map-notify.accepted", 0) >= 1 else None)(
        etr_counters(nodes[0])[1]), 30, 0.3, "a Map-Notify accepted by the satellite ETR")
    print("satellite etr:1 counters:", json.dumps(c, sort_keys=True))


def test_every_map_notify_leaves_from_the_host_its_map_register_reached(xnet):
    """The send queue is routed by source address (bus.sendq, bus.tcpbridge): the
    shard's Map-Notify for the satellite ETR leaves from the satellite's address, the
    bus host ETR's from the bus host's, so neither ETR refuses one.  Before, the queue
    was dealt round robin over both hosts' workers and about half were refused."""
    _topo, nodes, _ = xnet
    settle()
    before = etr_counters(nodes[0])

    def periods_of_both() -> tuple | None:     # several register periods (2 s) of both ETRs
        now = etr_counters(nodes[0])
        enough = all(a.get("map-notify.accepted", 0) - b.get("map-notify.accepted", 0) >= 3
                     for b, a in zip(before, now))
        return now if enough else None
    poll(periods_of_both, 30, 0.5, "three Map-Notifies accepted by each ETR")
    settle()
    after = etr_counters(nodes[0])
    for name, b, a in zip(("etr:0 (bus host)", "etr:1 (satellite)"), before, after):
        accepted = a.get("map-notify.accepted", 0) - b.get("map-notify.accepted", 0)
        refused = a.get("dropped.map-notify-rejected", 0) - b.get("dropped.map-notify-rejected", 0)
        assert accepted >= 3 and refused == 0, (name, accepted, refused, b, a)
    relayed = nodes[0].counters().get("bus:0", {})
    assert relayed.get("tcp.sendq.relayed", 0) >= 3, relayed        # via the satellite's worker
    assert relayed.get("dropped.sendq-host-down", 0) == 0, relayed


def test_lookups_from_the_bus_host_are_answered_by_the_satellite_etr(xnet):
    topo, nodes, _ = xnet
    settle()
    bus_etr, sat_etr = etr_counters(nodes[0])
    for i in range(5):
        assert answer(topo, 1, f"10.1.20.{10 + i}") == "[0]10.1.20.0/24"
    poll(lambda: etr_counters(nodes[0])[1].get("answered", 0) >= sat_etr.get("answered", 0) + 5,
         10, 0.2, "the satellite ETR answered the forwarded requests")
    settle()
    after = etr_counters(nodes[0])[0]
    # the bus host's ETR never saw them (it took every rx.ecm-etr before); its
    # "received" also counts the Map-Notifies reaching its own socket, so not that
    assert after.get("answered", 0) == bus_etr.get("answered", 0), (bus_etr, after)
    assert after.get("dropped.map-request-not-ours", 0) == bus_etr.get("dropped.map-request-not-ours", 0)


SEND_NOTIFY = """
import socket, sys
from ipaddress import ip_address
from common.wire.auth import seal
from common.wire.records import EidRecord, Locator
from common.wire.register import MapNotify
rec = EidRecord(ip_address("10.1.20.0"), 24, 1440, (Locator(ip_address(sys.argv[1])),),
                authoritative=True)
data = seal(MapNotify(0x5eed, (rec,), 0), b"not-the-key")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(data, (sys.argv[1], 4342))
"""


def test_a_map_notify_at_the_satellite_reaches_only_its_etr(xnet):
    topo, nodes, _ = xnet
    settle()
    bus_etr, sat_etr = etr_counters(nodes[0])
    for _ in range(3):   # to the satellite's UDP 4342, as a Map-Server's unsolicited one
        in_ns(topo, 1, SEND_NOTIFY, SAT)
    poll(lambda: etr_counters(nodes[0])[1].get("received", 0) >= sat_etr.get("received", 0) + 3,
         10, 0.2, "the satellite ETR took the Map-Notifies punted on rx.map-notify.n2")
    settle()
    bus_after, sat_after = etr_counters(nodes[0])
    # the bus host's ETR refused none (its own Map-Notifies, from its Map-Server's
    # address, it accepts: test_every_map_notify_leaves_from_the_host_its_...)
    for k in ("dropped.map-notify-rejected", "map_notify_unmatched"):
        assert bus_after.get(k, 0) == bus_etr.get(k, 0), (k, bus_etr, bus_after)
    # wrong nonce and key: refused by the satellite's ETR, its registration unharmed
    assert sat_after.get("map_notify_unmatched", 0) >= sat_etr.get("map_notify_unmatched", 0) + 3
    assert answer(topo, 1, "10.1.20.5") == "[0]10.1.20.0/24"


RESOLVE = """
import json, sys
from roles.nodeconf import load
from cli.busquery import query
cfg = load(sys.argv[1])
print(json.dumps([query(cfg, "itr.resolve", {"eid": e}, timeout=10.0) for e in sys.argv[2:]]))
"""


def test_the_satellite_itr_resolves_through_the_node(xnet):
    topo, nodes, _ = xnet
    out = json.loads(in_ns(topo, 2, RESOLVE, str(nodes[1].conf), "10.1.1.9", "10.1.20.9"))
    assert [a[0]["ok"] for a in out] == [True, True], out
    assert [a[0]["entry"]["eid"] for a in out] == ["[0]10.1.1.0/24", "[0]10.1.20.0/24"]
    c = poll(lambda: (lambda x: x if x.get("mapcache.entries", 0) >= 2 else None)(
        nodes[0].counters().get("itr:0", {})), 10, 0.2, "the ITR's map-cache, heard on n1")
    assert c["mapcache.entries"] >= 2
