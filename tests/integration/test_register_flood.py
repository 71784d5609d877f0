"""A flood of unwanted Map-Registers does not stop registration service (issue 10).

A real node (2 workers, 2 shards, fast watchdog) takes, from one source address and
port, a flood of wrong-key Map-Registers, then random bytes, then Map-Registers for
prefixes in no site, each for a few seconds, while a legitimate ETR on another
address registers 20 times a second and waits for each Map-Notify.  Every role keeps
its PID (no watchdog restart), the legitimate Map-Registers are acknowledged, and the
forged ones are dropped at the workers' edge gate: the shards never see them.
The rates and the 40 s figure belong in bench/register.py; this shows the property.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from tests.integration.harness import Node, poll
from tests.unit.msfixtures import register

pytestmark = pytest.mark.integration

RLOC = "127.0.47.1"
ATTACKER = "127.0.47.66"
ETR = "127.0.47.2"
TIMERS = """
[timers]
register_interval = 30
register_interval_fast = 30
fast_period = 30
registration_lifetime = 120
heartbeat_interval = 0.5
watchdog_timeout = 3
snapshot_timeout = 2
"""
BODY = """
[roles]
map_resolver = { workers = 2 }
map_server = { shards = 2 }

[[site]]
name = "good"
key = [{ id = 0, alg = "hmac-sha-256-128", secret = "good-key" }]
prefix = [{ eid = "10.47.0.0/16", accept_more_specifics = true }]
"""


def flood(payloads, seconds: float, stop: threading.Event) -> int:
    """Send ``payloads`` round robin from one socket for ``seconds`` (bounded)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ATTACKER, 0))
    s.setblocking(False)
    n, deadline = 0, time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not stop.is_set():
            for p in payloads:
                try:
                    s.sendto(p, (RLOC, 4342))
                    n += 1
                except BlockingIOError:
                    time.sleep(0.0005)
    finally:
        s.close()
    return n


def legitimate(seconds: float, rate: float, nonce0: int) -> tuple[int, int]:
    """Map-Registers from the ETR at ``rate``/s, each waiting up to 1 s for its Map-Notify."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ETR, 0))
    s.settimeout(1.0)
    sent = acked = 0
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < seconds:
            nonce = nonce0 + sent
            s.sendto(register(["[0]10.47.1.0/24"], nonce=nonce, key=b"good-key", xtr=b"\x47" * 16,
                              rlocs=(ETR,)), (RLOC, 4342))
            sent += 1
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    data = s.recv(4096)
                except socket.timeout:
                    break
                if data[0] >> 4 == 4 and int.from_bytes(data[4:12], "big") == nonce:
                    acked += 1
                    break
            time.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
    finally:
        s.close()
    return sent, acked


@pytest.fixture(scope="module")
def node():
    n = Node("flood", RLOC, BODY, timers=TIMERS)
    try:
        n.up()
        poll(lambda: n.all_running(), 20, 0.2, what="all roles running")
        yield n
    finally:
        n.down()


KINDS = {
    "wrong-key": lambda: [register([f"[0]10.47.{i}.0/24"], nonce=i + 1, key=b"forged", xtr=os.urandom(16))
                          for i in range(64)],
    "random-bytes": lambda: [os.urandom(40 + i) for i in range(64)],
    "no-site": lambda: [register([f"[0]10.{100 + i}.0.0/16"], nonce=i + 1, key=b"good-key")
                        for i in range(64)],
}
EDGE_REASON = {"wrong-key": "dropped.register.auth-failure", "random-bytes": None,
               "no-site": "dropped.register.no-site"}


@pytest.mark.parametrize("kind", list(KINDS))
def test_flood_does_not_stop_registration(node, kind):
    before = node.status()
    pids = {k: v["pid"] for k, v in before.items()}
    shard_before = {k: v for k, v in node.counters().items() if k.startswith("map_server")}
    stop = threading.Event()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("n", flood(KINDS[kind](), 6.0, stop)))
    t.start()
    try:
        time.sleep(0.5)
        sent, acked = legitimate(4.0, 20.0, time.time_ns())
    finally:
        stop.set()
        t.join(timeout=10)
    after = node.status()
    assert {k: v["pid"] for k, v in after.items()} == pids, "a role was restarted during the flood"
    assert all(v["state"] == "RUNNING" for v in after.values())
    print(f"{kind}: flood of {result.get('n', 0)} datagrams; legitimate {acked}/{sent} acknowledged")
    c = node.counters()
    interesting = {k: {n: v for n, v in x.items() if n.startswith(("dropped", "shun", "register", "map-notify"))}
                   for k, x in c.items() if k.startswith(("map_", "bus"))}
    assert sent >= 40 and acked >= sent - 1, (acked, sent, interesting)
    if EDGE_REASON[kind]:
        edge = sum(v.get(EDGE_REASON[kind], 0) for k, v in c.items() if k.startswith("map_resolver"))
        assert edge > 1000, edge
        for k, v in c.items():
            if k.startswith("map_server"):
                # the shards never saw a forged Map-Register
                assert v.get(EDGE_REASON[kind], 0) == shard_before[k].get(EDGE_REASON[kind], 0)
