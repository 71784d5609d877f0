"""Three full nodes in network namespaces: every host reaches every other host.

Same node configuration as test_dataplane.py (node 1 is the Map-Server/Map-Resolver
of all three); each node resolves the other two sites on its first packet to them.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.integration.harness import down_all, poll, up_all
from tests.integration.netns import NsNode, Topology, need_root
from tests.integration.test_dataplane import body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def net3():
    need_root()
    topo = Topology(f"dq{os.getpid() % 100000}", 3)
    nodes = []
    try:
        topo.create()
        for k in (1, 2, 3):
            nodes.append(NsNode(topo.ns(f"n{k}"), f"dq{k}", f"172.16.{k}.2", body(k, nodes=3)))
        up_all(nodes)
        for n in nodes:
            poll(n.all_running, 30, what=f"{n.name}: every role RUNNING")
        for k in (1, 2, 3):
            nodes[0].wait_lig(f"10.{k}.0.2", f"[0]10.{k}.0.0/24", timeout=30)
        yield topo, nodes
    finally:
        down_all(nodes)
        topo.destroy()


def test_every_host_reaches_every_other(net3):
    topo, nodes = net3
    for src, dst in ((3, 1), (3, 2), (1, 3), (2, 3), (2, 1)):
        r = topo.ping(src, f"10.{dst}.0.2", count=4)
        assert r.received >= 3 and r.lost <= 1, (src, dst, r)
    r = nodes[2].decent("show", "map-cache", "--json")
    rows = {e["eid"]: e["rlocs"][0]["address"] for e in json.loads(r.stdout) if e["rlocs"]}
    assert rows == {"[0]10.1.0.0/24": "172.16.1.2", "[0]10.2.0.0/24": "172.16.2.2"}
