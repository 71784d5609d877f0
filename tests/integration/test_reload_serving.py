"""Issue 11 item 3: a restarted shard takes Map-Registers while it reloads a large store.

A real node (1 shard, 1 worker) whose store holds 400,000 registrations, reloaded
in several seconds.  The shard resumes its stream (the worker keeps its replica), so
it takes Map-Registers before the reload ends (roles/ms_reload.py): a withdrawal of
the registration the bulk read reaches last, and a new registration, are both
acknowledged (Map-Notify) while it reloads, as the shard's log says.  After the
reload the worker answers the withdrawn EID negatively (the bulk read did not bring
it back), the new one positively, the others as before, and fetched no snapshot;
the shard's table, its snapshot (a restarted worker's) and the store hold exactly that.
The withdrawal, the new registration and the operator's query are sent while the
shard is paused (SIGSTOP) at the moment it begins taking Map-Registers, so they meet
the reload on any machine's speed.  Fails when the shard takes nothing before its reload
ends (no "taken meanwhile" in its log), or when the bulk read does not skip what was
loaded on demand (the withdrawn registration is back)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from roles.ms_store import RegistrationStore
from tests.integration.harness import FAST_TIMERS, SECRET, Node, poll, udp_exchange
from tests.integration.test_replica_restart import BODY, bulk_node, bulk_value
from tests.integration.test_replica_restart import answer as answer_at
from tests.unit.msfixtures import register

pytestmark = pytest.mark.integration

RLOC = "127.0.27.1"
MR = (RLOC, 4342)
BULK = 400_000
LAST = bulk_value(BULK - 1)[1]["eid"]          # the last row the bulk read reaches
FIRST = bulk_value(0)[1]["eid"]
KEEP, NEW = "[0]10.2.1.0/24", "[0]10.2.5.0/24"
TIMERS = (FAST_TIMERS.replace("registration_lifetime = 6", "registration_lifetime = 600")
          .replace("watchdog_timeout = 3", "watchdog_timeout = 30"))


def host(eid: str) -> str:
    """An address inside an ``[iid]a.b.c.d/len`` prefix (its network address + 1)."""
    a, b, c, d = eid.split("]")[1].split("/")[0].split(".")
    return f"{a}.{b}.{c}.{int(d) + 1}"


def answer(eid: str, timeout: float = 0.5):
    """:func:`~tests.integration.test_replica_restart.answer` for an address inside
    ``eid``, asked of this node."""
    return answer_at(host(eid), timeout, mr=MR)


def send_register(specs, nonce: int, ttl: int = 1440) -> float:
    """Retried until its Map-Notify; returns when that arrived (monotonic)."""
    msg = register(specs, nonce=nonce, key=SECRET.encode(), xtr=b"\x27" * 16, proxy=True, ttl=ttl)
    poll(lambda: udp_exchange(MR, msg, timeout=0.5) is not None, 30, 0.05, "Map-Notify")
    return time.monotonic()


@pytest.fixture(scope="module")
def node():
    yield from bulk_node(Node("reload", RLOC, BODY.replace("workers = 2", "workers = 1"), timers=TIMERS),
                         BULK, 1, 240)


TAKING = "taking Map-Registers ("


def taking(log, before: int) -> tuple[int] | None:
    """(registrations loaded when the shard began taking Map-Registers,), once its
    log has one more such line than ``before``."""
    lines = [x for x in log.read_text(errors="replace").splitlines() if TAKING in x]
    if len(lines) <= before:
        return None
    return (int(lines[-1].split(TAKING)[1].split()[0]),)


def counter(n, name: str) -> int:
    return n.counters().get("map_resolver:0", {}).get(name, 0)


def test_a_reloading_shard_takes_map_registers_and_the_bulk_read_brings_nothing_back(node):
    nonce = time.time_ns()
    send_register([KEEP], nonce)
    poll(lambda: answer(KEEP) == (24, 1), 10, 0.2, "registration answered")
    assert answer(LAST) == (28, 1) and answer(FIRST) == (28, 1)
    swapped, resumed = counter(node, "clone.ms.0.swapped"), counter(node, "clone.ms.0.resumed")

    log = node.state / "logs" / "map_server_0.log"
    before = log.read_text(errors="replace").count(TAKING)
    assert node.decent("restart", "map_server:0", timeout=120).returncode == 0
    pid = node.pid("map_server:0")
    # The shard takes Map-Registers two heartbeats after its start, while the rest of
    # its store loads. It is paused right there (SIGSTOP): what is sent meanwhile is
    # taken on its first loop turns once it continues, while the reload still has
    # most of its chunks to go, whatever the machine's speed (a fast one could finish
    # the reload between two CLI calls).
    at = poll(lambda: taking(log, before), 60, 0.01, "the restarted shard takes Map-Registers")[0]
    os.kill(pid, signal.SIGSTOP)
    try:
        assert at < BULK, f"the shard took Map-Registers only after its reload ({at} loaded)"
        out: dict = {}
        def operator() -> None:     # the operator is told, not given a partial table
            out["shown"] = node.decent("show", "sites")
        def etr() -> None:
            send_register([LAST], nonce + 1, ttl=0)      # withdrawn while the shard reloads
            send_register([NEW], nonce + 2)
        threads = [threading.Thread(target=f) for f in (operator, etr)]
        threads[0].start()
        time.sleep(1.5)    # the CLI starts (~0.4 s) and publishes its query
        threads[1].start()
        time.sleep(0.1)    # (within the ETR's first 0.5 s wait for its Map-Notify)
    finally:
        os.kill(pid, signal.SIGCONT)
    for t in threads:
        t.join(60)
    shown = out["shown"]
    assert shown.returncode == 1 and "map_server shard 0 is still reloading its store" in shown.stderr, shown
    def restored() -> list[str]:
        return [x for x in node.log_tail("map_server:0", 60).splitlines() if "registrations restored" in x]
    poll(lambda: len(restored()) == 2, 120, 0.3, "the reload ended")     # the first: the cold start
    line = restored()[-1]
    assert "Map-Registers taken meanwhile: 2 prefixes loaded first (1 registrations)" in line, line

    poll(lambda: counter(node, "clone.ms.0.resumed") > resumed, 30, 0.3, "the worker continued the stream")
    assert node.wait_in_sync(1, BULK + 1, timeout=30)      # + KEEP + NEW - LAST
    assert "registrations 400001" in node.decent("show", "sites", check=True).stdout
    assert answer(NEW) == (24, 1)
    assert (answer(LAST) or (0, 1))[1] == 0, "the withdrawn registration is answered again"
    assert answer(KEEP) == (24, 1) and answer(FIRST) == (28, 1)
    assert counter(node, "clone.ms.0.swapped") == swapped, "the worker fetched a snapshot"
    c = node.counters()
    assert c["map_server:0"]["registrations"] == c["map_resolver:0"]["registrations"] == BULK + 1
    # a worker that fetches the shard's whole snapshot now gets the same registrations
    assert node.decent("restart", "map_resolver:0", timeout=120).returncode == 0
    assert node.wait_in_sync(1, BULK + 1, timeout=120)
    assert (answer(LAST) or (0, 1))[1] == 0 and answer(NEW) == (24, 1)
    assert node.counters()["map_resolver:0"]["registrations"] == BULK + 1
    st = RegistrationStore(str(node.state / "map_server_0.sqlite"))
    try:
        assert st.rows_of(LAST) == [] and len(st.rows_of(NEW)) == 1
        assert st.db.execute("SELECT count(*) FROM registration").fetchone()[0] == BULK + 1
    finally:
        st.close()


def test_show_registrations_at_400000_shows_what_it_is_asked_for(node):
    """`decent show registrations` at 400,000: the shard lists at most --limit
    (used to build every registration and miss the CLI's 3 s wait), inside an
    EID-prefix when one is given, and says how many it did not show."""
    held = node.counters()["map_server:0"]["registrations"]
    assert held >= BULK
    r = node.decent("show", "registrations", "--limit", "3")
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 4, r
    assert lines[3].startswith(f"{held - 3:,} more registrations not shown (at most 3)"), lines
    r = node.decent("show", "registrations", "[0]10.128.5.0/24", "--json")
    assert r.returncode == 0, r
    want = [bulk_value(5 * 16 + j)[1]["eid"] for j in range(16)]          # in address order
    assert [x["eid"] for x in json.loads(r.stdout)] == want and not r.stderr
    r = node.decent("show", "registrations", "10.128.0.0/9", "--limit", "2", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 2
    assert "more registrations not shown" in r.stderr
    r = node.decent("show", "registrations", "10.128.0.0/33")
    assert r.returncode == 2 and "EID-prefix" in r.stderr and "Traceback" not in r.stderr
