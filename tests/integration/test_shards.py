"""Horizontal scale on one host: two map_server shards (sites split by name hash) and
two map_resolver workers.  Restarting one shard affects only its sites, briefly,
and loses nothing acknowledged."""

from __future__ import annotations

import subprocess
import time

import pytest

from bus.topics import shard_of
from common.wire.messages import MapReply, decode_message
from tests.integration.harness import CLI, REPO, Node, poll, udp_exchange
from tests.unit.msfixtures import ecm_request, register

pytestmark = pytest.mark.integration

RLOC = "127.0.40.1"
MR = (RLOC, 4342)
TIMERS = """
[timers]
register_interval = 20
register_interval_fast = 10
fast_period = 20
registration_lifetime = 120
heartbeat_interval = 0.5
snapshot_timeout = 2
"""


def split_sites() -> dict:
    """Site names -> shard, four on each of the two shards."""
    out, i = {}, 0
    while sum(1 for s in out.values() if s == 0) < 4 or sum(1 for s in out.values() if s == 1) < 4:
        name = f"site{i}"
        if sum(1 for s in out.values() if s == shard_of(name, 2)) < 4:
            out[name] = shard_of(name, 2)
        i += 1
    return out


SITES = split_sites()
PREFIX = {name: f"10.40.{n}.0/24" for n, name in enumerate(SITES)}


def body() -> str:
    out = "[roles]\nmap_resolver = { workers = 2 }\nmap_server = { shards = 2 }\n"
    # the test asks as fast as the node answers (over 1,000/s from one address with the
    # fast path): the per-source and per-ITR-RLOC limits are not what it is about
    out += ("\n[map_resolver]\nrate_limit = 100000\nrate_burst = 100000\n"
            "reply_rate_limit = 100000\nreply_rate_burst = 100000\n")
    for name, pfx in PREFIX.items():
        out += (f'\n[[site]]\nname = "{name}"\nkey = [{{ id = 0, alg = "hmac-sha-256-128", '
                f'secret = "k-{name}" }}]\nprefix = [{{ eid = "{pfx}" }}]\n')
    return out


def answered(host: str) -> bool:
    data = udp_exchange(MR, lambda port: ecm_request(host, itr=RLOC, sport=port), src=RLOC, timeout=1.0)
    if data is None:
        return False
    m = decode_message(data)
    return isinstance(m, MapReply) and bool(m.records) and bool(m.records[0].locators)


def host(name: str) -> str:
    return PREFIX[name].replace(".0/24", ".5")


@pytest.fixture(scope="module")
def node():
    n = Node("itshard", RLOC, body(), timers=TIMERS)
    try:
        n.up()
        poll(n.all_running, 20, what="RUNNING")
        for name, pfx in PREFIX.items():
            reg = register([f"[0]{pfx}"], nonce=time.time_ns(), key=f"k-{name}".encode(), proxy=True)
            assert poll(lambda: udp_exchange(MR, reg, src=RLOC, timeout=1.0), 10, what=f"{name} acked")
        yield n
    finally:
        n.down()


def test_each_shard_holds_its_own_sites(node):
    poll(lambda: all(answered(host(s)) for s in SITES), 10, what="all answered")
    c = node.counters()
    assert c["map_server:0"]["registrations"] == 4 and c["map_server:1"]["registrations"] == 4
    for w in (0, 1):
        assert c[f"map_resolver:{w}"]["registrations"] == 8  # every worker: a full replica


def test_restarting_a_shard_affects_only_its_sites(node):
    others = [s for s, sh in SITES.items() if sh == 1]
    mine = [s for s, sh in SITES.items() if sh == 0]
    old = node.pid("map_server:0")
    proc = subprocess.Popen(CLI + ["restart", "map_server:0", "-c", str(node.conf)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    misses = asked = 0
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            for s in others:          # shard 1's sites: answered throughout
                asked += 1
                misses += not answered(host(s))
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()
    assert node.pid("map_server:0") != old
    assert asked >= len(others) and misses == 0, f"{misses} of {asked} unanswered"
    # shard 0 reloaded its registrations from SQLite: nothing re-registered, none lost
    poll(lambda: all(answered(host(s)) for s in mine), 15, what="shard 0's sites back")
    assert node.counters()["map_server:0"]["registrations"] == 4
