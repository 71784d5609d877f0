"""The ``discovery`` role against a real dnsmasq: table, changes, timeouts, recovery.

A dnsmasq (tests/integration/dnsserver.py) serves ``<i>.<suffix>`` for modulus 4,
two addresses per index (IPv4, IPv6 and mixed); a node in pull mode running only
bus, discovery and watchdog is brought up with ``decent up`` in a short temporary
state directory.  Everything is on loopback; every wait is a bounded poll; only the
processes this file started are stopped, by pid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from bus import envelope, topics
from bus.endpoints import Endpoints
from cli.supervise import pid_alive
from common.decent import seeds
from roles import nodeconf
from tests.integration.dnsserver import DnsServer, require_dnsmasq

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "cli.main"]
SUFFIX = "ms.disc.test"
RECORDS = {0: ["127.0.9.1", "127.0.9.2"],          # IPv4 pair
           1: ["127.0.9.3", "fd00:9::4"],          # mixed A + AAAA
           2: ["fd00:9::5", "fd00:9::6"],          # IPv6 pair
           3: ["127.0.9.7", "fd00:9::8"]}
RESOLVE_MIN, RESOLVE_MAX, QUERY_TIMEOUT, DNS_TTL = 1.0, 4.0, 1.0, 1
CONVERGE = DNS_TTL + RESOLVE_MAX + 10  # a DNS change reaches the bus within this (s)
SLOW = 30                              # bound for polls through the CLI (a loaded host)


def decent(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def poll(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="module")
def dns():
    require_dnsmasq()
    server = DnsServer(SUFFIX, address="127.0.53.1", ttl=DNS_TTL)
    try:
        server.start()
        server.set_records(RECORDS)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def node(dns):
    tmp = Path(tempfile.mkdtemp(prefix="dsd", dir="/tmp"))  # short: ipc:// paths
    conf = tmp / "node.toml"
    conf.write_text(f"""
[node]
name = "disc{os.getpid()}"
rlocs = ["127.0.9.1"]
state_dir = "state"
log_level = "debug"

[roles]                 # bus, discovery and watchdog only
map_resolver = false
map_server = false
etr = false
itr = false
discovery = true

[decent]
mode = "pull"
modulus = 4
suffix = "{SUFFIX}"
hash_mode = "prefix"
hash_mask = 24
name_servers = ["{dns.endpoint}"]
resolve_min = {RESOLVE_MIN}
resolve_max = {RESOLVE_MAX}
query_timeout = {QUERY_TIMEOUT}
""")
    cfg = nodeconf.load(conf)
    assert [f"{r}:{n}" for r, n in cfg.instances()] == ["bus:0", "discovery:0", "watchdog:0"]
    pids: set[int] = set()
    try:
        r = decent("up", "-c", str(conf), "--timeout", "30")
        assert r.returncode == 0, r.stdout + r.stderr
        st = json.loads(decent("status", "--json", "-c", str(conf)).stdout)
        pids |= {st["supervisord_pid"]} | {i["pid"] for i in st["roles"].values() if i["pid"]}
        yield conf, cfg
    finally:
        decent("down", "-c", str(conf))
        pidfile = tmp / "state" / "supervisord.pid"
        if pidfile.exists():
            pids.add(int(pidfile.read_text().strip() or 0))
        deadline = time.monotonic() + 15
        while any(p > 0 and pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids:
            if pid > 0 and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


def show_seeds(conf: Path) -> list[dict]:
    """`decent show seeds --json`; until the show verb lists "seeds", the same code
    run as ``python -m cli.seeds_cmd``."""
    r = decent("show", "seeds", "--json", "-c", str(conf), timeout=30)
    if r.returncode == 2 and "invalid choice" in r.stderr:
        r = subprocess.run([sys.executable, "-m", "cli.seeds_cmd", "--json", "-c", str(conf)],
                           cwd=REPO, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def expected(records: dict, index: int) -> list[str]:
    return list(seeds.normalize_addrs(records.get(index, [])))


def table_is(conf: Path, records: dict, states: dict | None = None):
    rows = show_seeds(conf)
    for row in rows:
        i = row["index"]
        want_state = (states or {}).get(i, seeds.OK if records.get(i) else seeds.NXDOMAIN)
        if row["addrs"] != expected(records, i) or row["state"] != want_state:
            return None
    return rows


def log_text(cfg) -> str:
    path = Path(cfg.node.state_dir) / "logs" / "discovery_0.log"
    return path.read_text(errors="replace") if path.exists() else ""


def counters(conf: Path) -> dict:
    r = decent("counters", "--all", "--json", "-c", str(conf), timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout).get("discovery:0", {})


def test_table_shown_with_names_ages_and_states(node, dns):
    conf, cfg = node
    rows = poll(lambda: table_is(conf, RECORDS), SLOW, "seeds table served")
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    for r in rows:
        assert r["name"] == f"{r['index']}.{SUFFIX}"
        assert r["addrs"] == expected(RECORDS, r["index"]) and len(r["addrs"]) == 2
        assert r["ttl"] == DNS_TTL and r["state"] == "ok"
        assert 0 <= r["age"] <= CONVERGE
    # the human-readable form
    r = decent("show", "seeds", "-c", str(conf), timeout=30)
    if r.returncode == 2 and "invalid choice" in r.stderr:
        r = subprocess.run([sys.executable, "-m", "cli.seeds_cmd", "-c", str(conf)],
                           cwd=REPO, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "1.ms.disc.test" in r.stdout and "127.0.9.3, fd00:9::4" in r.stdout


def snapshot(cfg) -> dict:
    """The ``seeds`` Clone stream as a reader starting now gets it."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(Endpoints(cfg.node.state_dir).snapshot(seeds.STREAM))
        sock.send_multipart([b"snap", msgpack.packb({"v": 1, "req": 7})])
        items: dict = {}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not sock.poll(200):
                continue
            kind, body = sock.recv_multipart()
            body = msgpack.unpackb(body, raw=False, strict_map_key=False)
            if kind == b"items":
                items.update({k: v for k, v in body["items"]})
            elif kind == b"end":
                assert body["count"] == len(items) and body["seq"] >= len(items)
                return items
        pytest.fail("no snapshot of the seeds stream")
    finally:
        sock.close(0)
        ctx.term()


def test_clone_stream_gives_late_readers_the_table(node, dns):
    conf, cfg = node
    poll(lambda: table_is(conf, RECORDS), SLOW, "seeds table served")
    items = snapshot(cfg)
    assert sorted(items) == [0, 1, 2, 3]
    assert seeds.sets_from_clone(items) == {i: tuple(expected(RECORDS, i)) for i in range(4)}
    for v in items.values():
        assert v["state"] == "ok" and v["ttl"] == DNS_TTL
        assert abs(v["updated"] - time.time()) < RESOLVE_MAX + 5
    assert seeds.served_indexes(seeds.sets_from_clone(items), cfg.node.rlocs) == {0}


class Events:
    """A SUB on the node's bus for ``discovery.sets``, connected before a change."""

    def __init__(self, cfg) -> None:
        self.ctx = zmq.Context()
        self.seen: list[dict] = []
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, topics.DISCOVERY_SETS.encode())
        ep = Endpoints(cfg.node.state_dir)
        self.sub.connect(ep.bus_out)
        # the subscription travels to the proxy: probe through it until it arrives
        pub = self.ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.connect(ep.bus_in)
        stamper = envelope.Stamper("test", 0, f"{os.getpid():016x}")
        probe = topics.DISCOVERY_SETS + ".probe"
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pub.send_multipart(envelope.encode(probe, stamper.header("test.probed"), None))
                if self.sub.poll(100):
                    self.sub.recv_multipart()
                    time.sleep(0.2)  # and on from the proxy to the role's PUB
                    return
            pytest.fail("no path through the node's bus")
        finally:
            pub.close(0)

    def wait_for(self, pred, timeout: float, cfg=None) -> dict:
        """The first ``seeds.changed`` body matching ``pred``, received now or before
        (events of several indexes arrive in any order)."""
        deadline = time.monotonic() + timeout
        while True:
            for body in self.seen:
                if pred(body):
                    return body
            if time.monotonic() > deadline:
                break
            if self.sub.poll(100):
                _topic, header, body = envelope.decode(self.sub.recv_multipart())
                if header.type == seeds.CHANGED:
                    self.seen.append(body)
        tail = log_text(cfg)[-2500:] if cfg is not None else ""
        pytest.fail(f"no matching {seeds.CHANGED} event within {timeout} s; seen {self.seen}; "
                    f"discovery log:\n{tail}")

    def close(self) -> None:
        self.sub.close(0)
        self.ctx.term()


def test_dns_change_is_reflected_within_bounded_time(node, dns):
    conf, cfg = node
    poll(lambda: table_is(conf, RECORDS), SLOW, "seeds table served")
    events = Events(cfg)
    try:
        changed = dict(RECORDS)
        changed[0] = ["127.0.9.1", "fd00:9::9"]     # one member replaced, IPv4 -> IPv6
        del changed[3]                              # index 3 now NXDOMAIN: no servers
        t0 = time.monotonic()
        dns.set_records(changed)
        ev = events.wait_for(lambda b: b["index"] == 0, CONVERGE, cfg)
        converged = time.monotonic() - t0
        assert ev["old"] == ["127.0.9.1", "127.0.9.2"] and ev["new"] == ["127.0.9.1", "fd00:9::9"]
        assert ev["name"] == f"0.{SUFFIX}" and ev["state"] == "ok"
        ev3 = events.wait_for(lambda b: b["index"] == 3, CONVERGE, cfg)
        assert ev3["new"] == [] and ev3["state"] == "nxdomain"
        assert converged < CONVERGE
        print(f"DNS change on the bus after {converged:.2f} s")  # shown with -s
        poll(lambda: table_is(conf, changed), SLOW, "change shown")
        log = log_text(cfg)
        assert re.search(r"0\.ms\.disc\.test: servers changed \(\+fd00:9::9 -127\.0\.9\.2\)", log)
        assert log.count(f"3.{SUFFIX}: NXDOMAIN: index 3 has no servers") == 1
        items = snapshot(cfg)
        assert items[3] == {**items[3], "addrs": [], "state": "nxdomain"}
    finally:
        events.close()
        dns.set_records(RECORDS)  # and back, whatever happened
    poll(lambda: table_is(conf, RECORDS), SLOW, "restored")


def test_timeout_keeps_last_good_set_and_logs_once(node, dns):
    conf, cfg = node
    poll(lambda: table_is(conf, RECORDS), SLOW, "seeds table served")

    def lines(what: str) -> dict:
        log = log_text(cfg)
        return {i: log.count(f"{i}.{SUFFIX}: {what}") for i in range(4)}
    failing_before, again_before = lines("resolution failing"), lines("resolving again after")
    before = counters(conf).get("resolve.failure", 0)
    dns.pause()  # bound, silent: every query times out
    try:
        failing = {i: seeds.FAILING for i in range(4)}
        poll(lambda: table_is(conf, RECORDS, failing), SLOW, "failing, set kept")
        # several attempts per name (backoff 1, 2, 4, 4 s), still one line per name
        poll(lambda: counters(conf).get("resolve.failure", 0) - before >= 3 * 4,
             SLOW, "three failed attempts per name")
        rows = show_seeds(conf)
        assert all(r["addrs"] == expected(RECORDS, r["index"]) for r in rows)
        assert all("timeout" in (r["reason"] or "") and r["failures"] >= 3 for r in rows)
        now = lines("resolution failing")
        assert all(now[i] == failing_before[i] + 1 for i in range(4)), log_text(cfg)[-3000:]
        items = snapshot(cfg)
        assert all(v["state"] == "failing" and v["addrs"] == expected(RECORDS, k)
                   for k, v in items.items())
    finally:
        dns.resume()
    poll(lambda: table_is(conf, RECORDS), SLOW, "recovered")
    now = lines("resolving again after")
    assert all(now[i] == again_before[i] + 1 for i in range(4)), log_text(cfg)[-3000:]


def test_stopped_server_keeps_last_good_set(node, dns):
    conf, cfg = node
    poll(lambda: table_is(conf, RECORDS), SLOW, "seeds table served")
    before = {i: log_text(cfg).count(f"{i}.{SUFFIX}: resolution failing") for i in range(4)}
    pid = dns.pid
    dns.stop()
    assert not pid_alive(pid)
    failing = {i: seeds.FAILING for i in range(4)}
    rows = poll(lambda: table_is(conf, RECORDS, failing), SLOW, "failing, set kept")
    assert all(r["reason"] for r in rows)
    poll(lambda: all(r["failures"] >= 2 for r in show_seeds(conf)), SLOW, "retried")
    log = log_text(cfg)
    for i in range(4):  # one more line per name for this failure period, not one per attempt
        assert log.count(f"{i}.{SUFFIX}: resolution failing") == before[i] + 1
