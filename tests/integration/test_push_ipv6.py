"""Push mode with an IPv6 group: three members on IPv6 loopback addresses that the
test adds to `lo` and removes again (fd00:50::/64), group ff0e::50:1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
import zmq

from common.wire.messages import MapReply, decode_message
from tests.integration.harness import Node, down_all, poll, udp_exchange, up_all
from tests.unit.msfixtures import ecm_request

pytestmark = pytest.mark.integration

GROUP = "ff0e::50:1"
ADDRS = [f"fd00:50::{k}" for k in (1, 2, 3)]
CLIENT = "fd00:50::100"
CURVE = zmq.curve_keypair()[1].decode()
KEY = "v6-secret"
TIMERS = """
[timers]
register_interval = 30
register_interval_fast = 30
fast_period = 1
registration_lifetime = 90
heartbeat_interval = 1
"""


def body(k: int) -> str:
    return f"""
[roles]
map_resolver = {{ workers = 1 }}
map_server = {{ shards = 1 }}
etr = true
itr = false
dataplane = true

[decent]
mode = "push"
group = "{GROUP}"
seed_rlocs = ["{ADDRS[0]}"]
curve_secret = "{CURVE}"
snapshot_port = 14460

[etr]
decent_key = {{ key_id = 0, alg = "hmac-sha-256-128", secret = "{KEY}" }}

[[database_mapping]]
eid = "2001:db8:50:{k}::/64"

[[site]]
name = "v6"
key = [{{ id = 0, alg = "hmac-sha-256-128", secret = "{KEY}" }}]
prefix = [{{ eid = "2001:db8:50::/48", accept_more_specifics = true }},
          {{ eid = "[0]{GROUP}/128-::/0" }}]
"""


@pytest.fixture
def v6_addresses():
    if shutil.which("ip") is None or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI must be able to add IPv6 addresses to lo (root and iproute2)")
        pytest.skip("needs root and iproute2 to add loopback addresses")
    added = []
    try:
        for a in ADDRS + [CLIENT]:
            r = subprocess.run(["ip", "-6", "addr", "add", f"{a}/128", "dev", "lo", "nodad"],
                               capture_output=True, text=True)
            if r.returncode != 0 and "File exists" not in r.stderr:
                pytest.fail(f"ip addr add {a}: {r.stderr.strip()}")
            added.append(a)
        yield
    finally:
        for a in added:
            subprocess.run(["ip", "-6", "addr", "del", f"{a}/128", "dev", "lo"], capture_output=True)


def answered(node_addr: str, host: str) -> bool:
    data = udp_exchange((node_addr, 4342), lambda p: ecm_request(host, itr=CLIENT, sport=p),
                        src=CLIENT, timeout=1.0)
    m = decode_message(data) if data else None
    return isinstance(m, MapReply) and bool(m.records) and bool(m.records[0].locators)


def test_ipv6_group_every_member_answers_every_eid(v6_addresses):
    nodes = [Node(f"p6n{k}", ADDRS[k - 1], body(k), timers=TIMERS) for k in (1, 2, 3)]
    try:
        up_all(nodes)
        t0 = time.monotonic()
        poll(lambda: all(answered(a, f"2001:db8:50:{k}::9") for a in ADDRS for k in (1, 2, 3)), 30, 0.3,
             what="every member answers every EID")
        print(f"IPv6 group converged {time.monotonic() - t0:.1f} s after the last `decent up`")
        info = json.loads(nodes[2].decent("show", "members", "--json").stdout)
        assert info["group"] == GROUP and sorted(info["members"]) == sorted(ADDRS)
    finally:
        down_all(nodes)
