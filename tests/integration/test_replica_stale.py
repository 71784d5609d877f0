"""Issue 11 item 3: a worker whose replica's writer has been silent for
``map_resolver.stale_heartbeats`` heartbeats stops answering for the EIDs that
replica serves, and answers again once the writer is heard (a real node; the bus
is stopped with SIGSTOP, and killed while supervisord is held so it stays dead)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.integration.harness import FAST_TIMERS, SECRET, Node, poll, udp_exchange
from tests.unit.msfixtures import ecm_request

pytestmark = pytest.mark.integration

RLOC = "127.0.25.1"
MR = (RLOC, 4342)
HEARTBEAT = 0.5
BOUND = 3 * HEARTBEAT            # stale_heartbeats = 3 (the default)
MARGIN = 0.7                     # the reader's timer, one request round trip

# the watchdog must not restart roles while the bus is held (it hears nothing either)
TIMERS = FAST_TIMERS.replace("watchdog_timeout = 3", "watchdog_timeout = 30")

BODY = f"""
[roles]
map_resolver = {{ workers = 1 }}
map_server = {{ shards = 1 }}

[[site]]
name = "lab"
[[site.key]]
id = 0
alg = "hmac-sha-256-128"
secret = "{SECRET}"
[[site.prefix]]
eid = "10.1.0.0/16"
"""


@pytest.fixture(scope="module")
def node():
    n = Node("stale", RLOC, BODY, timers=TIMERS)
    try:
        n.up()
        poll(lambda: ask(), 30, 0.3, "first answer")
        yield n
    finally:
        n.down()


def ask(timeout: float = 0.2) -> bool:
    """One Map-Request for an EID inside the site (its answer depends on the shard's replica)."""
    return udp_exchange(MR, lambda port: ecm_request("10.1.2.3", itr="127.0.0.1", sport=port),
                        timeout=timeout) is not None


def watch(seconds: float) -> list[tuple[float, bool]]:
    t0, out = time.monotonic(), []
    while time.monotonic() - t0 < seconds:
        out.append((time.monotonic() - t0, ask()))
        time.sleep(0.05)
    return out


def not_in_sync_drops(n) -> int:
    return n.counters().get("map_resolver:0", {}).get("dropped.not-in-sync", 0)


def check_bound(seen):
    answered = [t for t, ok in seen if ok]
    late = [ok for t, ok in seen if t > BOUND + MARGIN]
    assert late and not any(late), f"answered after the bound: {seen}"
    # and not earlier than the bound says (the writer was only just silent)
    assert answered and answered[0] < 0.3, seen


def test_bus_stopped_answers_end_within_the_bound_and_come_back(node):
    before = not_in_sync_drops(node)
    bus = node.pid("bus:0")
    os.kill(bus, signal.SIGSTOP)
    try:
        seen = watch(BOUND + MARGIN + 1.0)
    finally:
        os.kill(bus, signal.SIGCONT)
    check_bound(seen)
    poll(ask, 10, 0.1, "answers after SIGCONT")
    assert not_in_sync_drops(node) > before


def test_bus_killed_answers_end_within_the_bound_and_come_back(node):
    sup = int((node.dir / "st" / "supervisord.pid").read_text().strip())
    bus = node.pid("bus:0")
    before = not_in_sync_drops(node)
    os.kill(sup, signal.SIGSTOP)           # so the bus is not restarted at once
    try:
        os.kill(bus, signal.SIGKILL)
        seen = watch(BOUND + MARGIN + 1.0)
    finally:
        os.kill(sup, signal.SIGCONT)
    check_bound(seen)
    poll(ask, 20, 0.2, "answers once the bus is back")
    assert not_in_sync_drops(node) > before
