"""A core seed-group holding the membership of two layers.

Core: 127.0.52.1-2 in 224.52.0.1.  Layer 1 (224.52.1.1): 127.0.52.11-12; layer 2
(224.52.2.1): 127.0.52.21.  Layer members announce themselves to the core (their
seed RLOCs).  A new node that knows only one seed RLOC and its layer's group finds
the layer's members through the core, joins, and resolves the layer's EIDs.
"""

from __future__ import annotations

import json

import pytest
import zmq

from common.wire.messages import MapReply, decode_message
from tests.integration.harness import Node, down_all, poll, udp_exchange, up_all
from tests.unit.msfixtures import ecm_request

pytestmark = pytest.mark.integration

CORE = "224.52.0.1"
LAYERS = {1: "224.52.1.1", 2: "224.52.2.1"}
CURVE = zmq.curve_keypair()[1].decode()
KEY = "layers-secret"
TIMERS = """
[timers]
register_interval = 30
register_interval_fast = 30
fast_period = 1
registration_lifetime = 90
heartbeat_interval = 1
"""
GROUP_SITES = ", ".join(f'{{ eid = "[0]{g}/32-0.0.0.0/0" }}' for g in [CORE, *LAYERS.values()])


def body(group: str, seeds, eid: str | None) -> str:
    mapping = f'\n[[database_mapping]]\neid = "{eid}"\n' if eid else ""
    return f"""
[roles]
map_resolver = {{ workers = 1 }}
map_server = {{ shards = 1 }}
etr = true
itr = false
dataplane = true

[decent]
mode = "push"
group = "{group}"
seed_rlocs = {json.dumps(list(seeds))}
seed_group = "{CORE}"
core_seed = {"true" if group == CORE else "false"}
curve_secret = "{CURVE}"
snapshot_port = 14452

[etr]
decent_key = {{ key_id = 0, alg = "hmac-sha-256-128", secret = "{KEY}" }}
{mapping}
[[site]]
name = "layers"
key = [{{ id = 0, alg = "hmac-sha-256-128", secret = "{KEY}" }}]
prefix = [{{ eid = "10.52.0.0/16", accept_more_specifics = true }}, {GROUP_SITES}]
"""


def answered(node_addr: str, host: str) -> bool:
    data = udp_exchange((node_addr, 4342), lambda p: ecm_request(host, itr="127.0.52.100", sport=p),
                        src="127.0.52.100", timeout=1.0)
    m = decode_message(data) if data else None
    return isinstance(m, MapReply) and bool(m.records) and bool(m.records[0].locators)


def test_a_node_knowing_one_seed_joins_its_layer():
    seed = "127.0.52.1"
    spec = {
        "lc1": ("127.0.52.1", CORE, ["127.0.52.2"], None),
        "lc2": ("127.0.52.2", CORE, [seed], None),
        "la1": ("127.0.52.11", LAYERS[1], [seed, "127.0.52.2"], "10.52.11.0/24"),
        "la2": ("127.0.52.12", LAYERS[1], [seed], "10.52.12.0/24"),
        "lb1": ("127.0.52.21", LAYERS[2], [seed], "10.52.21.0/24"),
    }
    nodes = {name: Node(name, r, body(g, s, e), timers=TIMERS) for name, (r, g, s, e) in spec.items()}
    newcomer = Node("la3", "127.0.52.13", body(LAYERS[1], [seed], "10.52.13.0/24"), timers=TIMERS)
    try:
        up_all(nodes.values())
        # the core holds both layers' membership
        def core_knows():
            rles: dict = {}
            for r in nodes["lc1"].registrations():  # one entry per member (merge by xTR-ID)
                rles.setdefault(r["eid"], []).extend(a for a, _ in (r.get("rle") or []))
            rles = {e: sorted(set(v)) for e, v in rles.items()}
            return (rles.get(f"[0]{LAYERS[1]}/32-0.0.0.0/0") == ["127.0.52.11", "127.0.52.12"]
                    and rles.get(f"[0]{LAYERS[2]}/32-0.0.0.0/0") == ["127.0.52.21"])
        poll(core_knows, 30, 0.5, what="the core seed-group stores the layers' members")
        poll(lambda: answered("127.0.52.12", "10.52.11.5"), 30, 0.5, what="layer 1 converged")
        newcomer.up()
        # knows one seed RLOC and its layer's group: finds the layer through the core
        poll(lambda: answered("127.0.52.13", "10.52.11.5") and answered("127.0.52.13", "10.52.12.5"),
             15, 0.3, what="the newcomer resolves its layer's EIDs")
        info = json.loads(newcomer.decent("show", "members", "--json").stdout)
        assert sorted(info["members"]) == ["127.0.52.11", "127.0.52.12", "127.0.52.13"]
        # and the layer learned it: its EIDs are answered by the old members
        poll(lambda: answered("127.0.52.11", "10.52.13.5"), 15, 0.3, what="layer 1 knows the newcomer")
        # layers stay apart: layer 2's EIDs are not in layer 1
        assert not answered("127.0.52.13", "10.52.21.5")
    finally:
        down_all([newcomer, *nodes.values()])
