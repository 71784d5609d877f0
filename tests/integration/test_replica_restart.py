"""Issue 11 item 3: `decent restart map_server` does not stop answers.

A real node (1 shard, 2 workers) holding 20,000 registrations in its store: Map-
Requests at a steady rate from fresh source ports (SO_REUSEPORT spreads them over
both workers) across the restart are all answered, with the registered prefix;
a registration withdrawn before the restart is never answered, before or after the
workers swap in the reloaded shard's snapshot (docs/replica.md).  Fails without
keep_serving (workers drop to not-in-sync at the writer's new session) or with a
shard that serves its snapshot before its store is loaded.  The first test makes the
store unresumable before the restart (as one restored from a backup would be), so the
workers fetch the new shard's snapshot; the second restarts with the store as the
shard left it: the shard resumes its stream and no worker fetches a snapshot
(roles/stream_resume.py)."""

from __future__ import annotations

import threading
import time

import msgpack
import pytest

from common.wire.messages import MapReply, decode_message
from roles.ms_store import RegistrationStore
from tests.integration.harness import FAST_TIMERS, SECRET, Node, poll, udp_exchange
from tests.unit.msfixtures import ecm_request, register

pytestmark = pytest.mark.integration

RLOC = "127.0.26.1"
MR = (RLOC, 4342)
BULK = 20_000
KEEP, GONE = "[0]10.2.1.0/24", "[0]10.2.2.0/24"

# registrations outlive the test; the watchdog is not what this test is about
TIMERS = (FAST_TIMERS.replace("registration_lifetime = 6", "registration_lifetime = 600")
          .replace("watchdog_timeout = 3", "watchdog_timeout = 30")
          .replace("heartbeat_interval = 0.5", "heartbeat_interval = 1"))

BODY = f"""
[roles]
map_resolver = {{ workers = 2 }}
map_server = {{ shards = 1 }}

[[site]]
name = "lab"
[[site.key]]
id = 0
alg = "hmac-sha-256-128"
secret = "{SECRET}"
[[site.prefix]]
eid = "10.0.0.0/8"
accept_more_specifics = true
"""


def bulk_value(i: int) -> tuple[str, dict]:
    eid = f"[0]10.{128 + (i >> 12)}.{(i >> 4) & 255}.{(i & 15) << 4}/28"
    return eid + "|", {"eid": eid, "site": "lab", "rlocs": [["192.0.2.9", 1, 100, 255, 0, 1]], "ttl": 1440,
                       "proxy": True, "merge": False, "xtr": "", "registrant": "127.0.0.1"}


def bulk_node(n: Node, count: int, workers: int, timeout: float):
    """Up ``n`` with ``count`` registrations (:func:`bulk_value`) in its shard's store,
    once every worker is in sync with them (a module fixture's body: yields ``n``)."""
    try:
        n.state.mkdir(parents=True, exist_ok=True)
        st = RegistrationStore(str(n.state / "map_server_0.sqlite"))
        st.db.execute("BEGIN")
        st.db.executemany("INSERT INTO registration VALUES (?, ?, ?)",
                          [(k, msgpack.packb(v), b"") for k, v in map(bulk_value, range(count))])
        st.db.execute("COMMIT")
        st.close()
        n.up()
        assert n.wait_in_sync(workers, count, timeout=timeout), "workers never in sync with the bulk store"
        yield n
    finally:
        n.down()


@pytest.fixture(scope="module")
def node():
    yield from bulk_node(Node("restart", RLOC, BODY, timers=TIMERS), BULK, 2, 120)


def answer(eid: str, timeout: float = 0.5, mr: tuple = MR):
    """The mask length and locator count of the first record of the reply, or None."""
    r = udp_exchange(mr, lambda port: ecm_request(eid, itr="127.0.0.1", sport=port), timeout=timeout)
    if r is None:
        return None
    m = decode_message(r)
    assert isinstance(m, MapReply)
    return m.records[0].mask_len, len(m.records[0].locators)


def send_register(specs, nonce: int, ttl: int = 1440) -> None:
    msg = register(specs, nonce=nonce, key=SECRET.encode(), xtr=b"\x26" * 16, proxy=True, ttl=ttl)
    poll(lambda: udp_exchange(MR, msg, timeout=1.0) is not None, 10, 0.2, "Map-Notify")


def counter(n, name: str) -> list[int]:
    c = n.counters()
    return [c.get(f"map_resolver:{w}", {}).get(name, 0) for w in range(2)]


def test_restart_of_the_map_server_leaves_no_request_unanswered_and_nothing_wrong(node):
    nonce = time.time_ns()
    send_register([KEEP, GONE], nonce)
    poll(lambda: answer("10.2.2.9") == (24, 1), 10, 0.2, "registration answered")
    send_register([GONE], nonce + 1, ttl=0)             # withdrawn before the restart
    poll(lambda: (answer("10.2.2.9") or (0, 1))[1] == 0, 10, 0.2, "withdrawal seen (negative)")
    assert answer("10.2.1.9") == (24, 1)

    swapped = counter(node, "clone.ms.0.swapped")
    not_in_sync = counter(node, "dropped.not-in-sync")
    seen: list[tuple[float, str, object]] = []
    stop = threading.Event()

    def load() -> None:          # ~50 requests/s, alternating the kept and the withdrawn EID
        k, t_end = 0, time.monotonic() + 180
        while not stop.is_set() and time.monotonic() < t_end:
            eid = "10.2.1.9" if k % 2 == 0 else "10.2.2.9"
            seen.append((time.monotonic(), eid, answer(eid, timeout=1.0)))
            k += 1
            time.sleep(0.02)

    th = threading.Thread(target=load, daemon=True)
    th.start()
    try:
        time.sleep(1.0)
        old = node.pid("map_server:0")
        st = RegistrationStore(str(node.state / "map_server_0.sqlite"))
        st.forget_stream_position()       # nothing commits meanwhile: no registration changes
        st.close()
        t0 = time.monotonic()
        assert node.decent("restart", "map_server:0", timeout=120).returncode == 0
        assert node.pid("map_server:0") not in (None, old)
        # both workers swap in the new shard's snapshot
        poll(lambda: all(a > b for a, b in zip(counter(node, "clone.ms.0.swapped"), swapped)), 60, 0.3,
             "both workers swapped in the reloaded snapshot")
        t_swap = time.monotonic()
        time.sleep(2.0)
    finally:
        stop.set()
        th.join(10)
    during = [s for s in seen if s[0] >= t0]
    after = [s for s in seen if s[0] >= t_swap]
    assert len(during) > 50 and after, (len(during), len(after))
    unanswered = [s for s in seen if s[2] is None]
    assert not unanswered, f"{len(unanswered)} of {len(seen)} unanswered, e.g. {unanswered[:3]}"
    kept = {a for _t, eid, a in seen if eid == "10.2.1.9"}
    gone = {a for _t, eid, a in seen if eid == "10.2.2.9"}
    assert kept == {(24, 1)}, kept                      # the registered prefix, every time
    assert {a[1] for a in gone} == {0}, gone            # the withdrawn one: never positive
    assert counter(node, "dropped.not-in-sync") == not_in_sync
    assert node.wait_in_sync(2, BULK + 1, timeout=10)


def test_a_restarted_map_server_resumes_its_stream_and_no_worker_fetches_a_snapshot(node):
    nonce = time.time_ns()
    fresh, later = "[0]10.2.3.0/24", "[0]10.2.4.0/24"
    send_register([KEEP, fresh], nonce)
    poll(lambda: answer("10.2.3.9") == (24, 1), 10, 0.2, "registration answered")
    before = {n: counter(node, f"clone.ms.0.{n}") for n in ("swapped", "resumed", "synced")}
    not_in_sync = counter(node, "dropped.not-in-sync")
    seen: list[tuple[float, str, object]] = []
    stop = threading.Event()

    def load() -> None:          # ~50 requests/s on a registration that stays
        t_end = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < t_end:
            seen.append((time.monotonic(), "10.2.1.9", answer("10.2.1.9", timeout=1.0)))
            time.sleep(0.02)

    th = threading.Thread(target=load, daemon=True)
    th.start()
    try:
        time.sleep(1.0)
        old = node.pid("map_server:0")
        assert node.decent("restart", "map_server:0", timeout=120).returncode == 0
        assert node.pid("map_server:0") not in (None, old)
        poll(lambda: all(a > b for a, b in zip(counter(node, "clone.ms.0.resumed"), before["resumed"])), 30,
             0.3, "both workers continued the resumed stream")
        # changes the new shard makes reach the workers as deltas: a withdrawal and a new one
        send_register([fresh], nonce + 1, ttl=0)
        send_register([later], nonce + 2)
        poll(lambda: answer("10.2.4.9") == (24, 1), 10, 0.2, "registration made after the restart answered")
        poll(lambda: (answer("10.2.3.9") or (0, 1))[1] == 0, 10, 0.2, "withdrawal after the restart seen")
        time.sleep(1.0)
    finally:
        stop.set()
        th.join(10)
    assert "stream resumes session" in node.log_tail("map_server:0", 50)
    assert counter(node, "clone.ms.0.swapped") == before["swapped"], "a worker fetched a snapshot"
    assert counter(node, "clone.ms.0.synced") == before["synced"]          # never out of sync
    assert counter(node, "dropped.not-in-sync") == not_in_sync
    assert len(seen) > 50 and all(a == (24, 1) for _t, _e, a in seen), \
        [s for s in seen if s[2] != (24, 1)][:3]
    assert node.wait_in_sync(2, BULK + 2, timeout=10)     # KEEP and later
