"""The bus with real processes: the proxy, the send queue, Clone streams, the watchdog.

Every process here is started by this file, as ``python -m roles.<role>`` or as
this very file run as a script (``TEST_BUS_MODE`` picks the helper role; see
``_child_main`` at the bottom), talks JSON lines on stdin/stdout, and is stopped by
its pid.  Waits are bounded polls, never fixed sleeps.  Everything is ipc:// in a
short temporary directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve()
STREAM = "ts.0"


# ---------------------------------------------------------------- harness

def poll(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(interval)


class Child:
    """A process of ours: JSON lines out, text commands in, stopped by pid."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.err_path = logdir / f"{name}.err"
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **env},
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True, bufsize=1)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                pass

    def send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def drain(self) -> list[dict]:
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return self.seen

    def wait_for(self, pred: Callable[[dict], bool], timeout: float = 15.0,
                 what: str = "") -> dict:
        """The first message (seen so far or arriving) matching ``pred``."""
        def find():
            for m in self.drain():
                if pred(m):
                    return m
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited {self.proc.returncode}: "
                            f"{self.err_path.read_text()[-2000:]}")
            return None
        return poll(find, timeout, f"{self.name}: {what}")

    def ask(self, cmd: str, ev: str, timeout: float = 15.0) -> dict:
        """Send ``cmd`` and return the next ``ev`` reply."""
        start = len(self.drain())
        self.send(cmd)

        def find():
            for m in self.drain()[start:]:
                if m.get("ev") == ev:
                    return m
            return None
        return poll(find, timeout, f"{self.name}: reply to {cmd!r}")

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._err.close()
        return self.proc.returncode


class Node:
    """A minimal node config in a short directory, and the processes started on it."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bt", dir="/tmp"))
        self.state = self.dir / "s"
        self.name = f"bt{os.getpid()}"
        self.conf = self.dir / "n.toml"
        self.conf.write_text(f"""
[node]
name = "{self.name}"
rlocs = ["127.0.0.1"]
state_dir = "{self.state}"

[timers]
heartbeat_interval = 0.2
snapshot_timeout = 2
watchdog_timeout = 2
""")
        self.children: list[Child] = []

    def role(self, role: str, instance: int = 0) -> Child:
        return self._start(f"{role}{instance}", [sys.executable, "-m", f"roles.{role}", "-c",
                                                  str(self.conf), "--instance", str(instance)], {})

    def helper(self, mode: str, instance: int = 0, **env: str) -> Child:
        argv = [sys.executable, str(THIS), "-c", str(self.conf), "--instance", str(instance)]
        return self._start(f"{mode}{instance}", argv, {"TEST_BUS_MODE": mode, **env})

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        c = Child(name, argv, {"PYTHONPATH": str(REPO), **env}, self.dir)
        self.children.append(c)
        return c

    def start_bus(self) -> Child:
        bus = self.role("bus")
        poll(lambda: (self.state / "bus-out.sock").exists(), 15, "bus sockets")
        return bus

    def cleanup(self) -> None:
        for c in reversed(self.children):
            if c.proc.poll() is None:
                try:
                    os.kill(c.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            c.stop()
        if not os.environ.get("KEEP"): shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def node():
    n = Node()
    yield n
    n.cleanup()


def digest(items) -> str:
    return hashlib.sha256(json.dumps(sorted(items)).encode()).hexdigest()


# ------------------------------------------------------------------ tests

def test_bad_config_exits_2_with_one_line(node):
    r = subprocess.run([sys.executable, "-m", "roles.bus", "-c", str(node.dir / "missing.toml")],
                       cwd=REPO, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "missing.toml" in r.stderr and r.stderr.startswith("bus: ")


def test_second_bus_on_same_state_dir_refuses(node):
    node.start_bus()
    second = node.role("bus")
    assert second.proc.wait(15) == 1
    assert "held by another bus" in second.err_path.read_text()


def test_publish_in_one_process_receive_in_another(node):
    bus = node.start_bus()
    sub = node.helper("sub", PREFIX="demo")
    sub.wait_for(lambda m: m.get("ev") == "ready", what="subscriber ready")
    pub = node.helper("pub")
    pub.wait_for(lambda m: m.get("ev") == "ready", what="publisher ready")
    pub.send("pub demo.x 500")
    pub.send("pub demo-other.x 5")   # other topic: not for this subscriber
    pub.send("pub demo.y 1")
    got = sub.wait_for(lambda m: m.get("ev") == "msg" and m["topic"] == "demo.y",
                       what="last message")
    msgs = [m for m in sub.drain() if m.get("ev") == "msg"]
    assert [m["body"]["i"] for m in msgs if m["topic"] == "demo.x"] == list(range(500))
    assert all(m["topic"].startswith("demo.") for m in msgs)
    assert got["type"] == "demo.published" and got["src"][0] == "pubtest"

    # a malformed envelope is counted and dropped, and the subscriber goes on
    import zmq
    zctx = zmq.Context()
    raw = zctx.socket(zmq.PUB)
    raw.connect(f"ipc://{node.state}/bus-in.sock")
    hb = zctx.socket(zmq.SUB)
    hb.connect(f"ipc://{node.state}/bus-out.sock")
    hb.subscribe(b"hb.subtest.0")
    try:
        from bus import envelope

        def dropped():
            raw.send_multipart([b"demo.bad", b"\xc1", b""])
            if hb.poll(300):
                _, _, body = envelope.decode(hb.recv_multipart())
                return body["counters"].get("dropped.bad-envelope", 0) > 0
            return False
        poll(dropped, 15, "bad envelope counted in the subscriber's heartbeat")
    finally:
        raw.close(0)
        hb.close(0)
        zctx.term()
    pub.send("pub demo.z 1")
    sub.wait_for(lambda m: m.get("ev") == "msg" and m["topic"] == "demo.z", what="still alive")
    for c in (pub, sub, bus):
        assert c.stop() == 0, c.err_path.read_text()[-2000:]


def test_send_queue_delivers_each_datagram_to_exactly_one_worker(node):
    node.start_bus()
    workers = [node.helper("sqworker", i) for i in range(2)]
    prod = node.helper("sqprod")
    prod.wait_for(lambda m: m.get("ev") == "ready", what="producer ready")
    sent: list[str] = []

    def both_working():
        n = len(sent)
        prod.send(f"send {n} 50")
        sent.extend(f"p{i}" for i in range(n, n + 50))
        got = [{m["payload"] for m in w.drain() if m.get("ev") == "dgram"} for w in workers]
        return all(got)
    poll(both_working, 20, "both workers receive datagrams", interval=0.2)
    prod.send(f"send {len(sent)} 300")
    sent.extend(f"p{i}" for i in range(len(sent), len(sent) + 300))

    def all_delivered():
        got = [[m["payload"] for m in w.drain() if m.get("ev") == "dgram"] for w in workers]
        return got if sum(map(len, got)) >= len(sent) else None
    got = poll(all_delivered, 20, "every datagram delivered")
    a, b = got
    assert len(a) == len(set(a)) and len(b) == len(set(b)), "a worker got a datagram twice"
    assert not set(a) & set(b), "a datagram went to both workers"
    assert set(a) | set(b) == set(sent)
    m = workers[0].wait_for(lambda m: m.get("ev") == "dgram")
    assert m["dst"] == ["192.0.2.7", 4342, "127.0.0.1"]


def test_clone_late_reader_gap_and_writer_restart(node):
    node.start_bus()
    writer = node.helper("clonew", PRELOAD="5")
    writer.wait_for(lambda m: m.get("ev") == "ready", what="writer ready")
    # published before any reader exists: must reach readers through the snapshot
    for i in range(20):
        writer.send(f"set k{i} {i}")
    writer.send("del k3")
    w = writer.ask("digest", "digest")
    assert w["count"] == 5 + 20 - 1 and w["seq"] == 5 + 21

    def synced_with(reader: Child, target: dict) -> Callable[[], bool]:
        def check():
            r = reader.ask("digest", "digest")
            return (r["in_sync"] and r["seq"] == target["seq"]
                    and r["digest"] == target["digest"] == r["cb_digest"])
        return check

    r1 = node.helper("cloner", 0)
    poll(synced_with(r1, w), 20, "first reader in sync", interval=0.1)

    writer.send("set k0 100")
    writer.send("del k1")
    writer.send("set new 7")
    w = writer.ask("digest", "digest")
    poll(synced_with(r1, w), 20, "reader follows deltas", interval=0.1)

    r2 = node.helper("cloner", 1)           # starts late
    poll(synced_with(r2, w), 20, "late reader in sync", interval=0.1)

    # r1 misses deltas: frozen while the writer publishes more than the bus buffers
    os.kill(r1.proc.pid, signal.SIGSTOP)
    try:
        writer.send("bulk 60000")
        w = writer.ask("digest", "digest", timeout=60)
        assert w["count"] >= 60000
    finally:
        os.kill(r1.proc.pid, signal.SIGCONT)
    poll(synced_with(r1, w), 60, "reader resynced after the gap", interval=0.2)
    reasons = {m["reason"] for m in r1.drain() if m.get("ev") == "unsync"}
    assert reasons & {"gap", "heartbeat-ahead"}, r1.drain()
    poll(synced_with(r2, w), 60, "the other reader in sync too", interval=0.2)

    # the writer restarts with other content: readers see a new session and resync
    assert writer.stop() == 0
    writer2 = node.helper("clonew", PRELOAD="3")
    writer2.wait_for(lambda m: m.get("ev") == "ready", what="new writer ready")
    w2 = writer2.ask("digest", "digest")
    poll(synced_with(r2, w2), 30, "reader follows the restarted writer", interval=0.1)
    poll(synced_with(r1, w2), 30, "reader follows the restarted writer", interval=0.1)
    assert "writer-session-changed" in {m["reason"] for m in r2.drain()
                                        if m.get("ev") == "unsync"}


def _supervisord_conf(node: Node) -> Path:
    sd = node.state
    sd.mkdir(parents=True, exist_ok=True)
    py = sys.executable

    def program(role: str, command: str, env: str = "") -> str:
        return f"""
[program:{role}_0]
command={command}
directory={REPO}
environment=PYTHONPATH="{REPO}"{env}
autostart=true
autorestart=true
startsecs=0
startretries=100
stopwaitsecs=2
stdout_logfile={node.dir}/{role}.out
stderr_logfile={node.dir}/{role}.log
"""
    conf = node.dir / "supervisord.conf"
    conf.write_text(f"""
[unix_http_server]
file={sd}/supervisord.sock

[supervisord]
logfile={node.dir}/supervisord.log
pidfile={sd}/supervisord.pid
nodaemon=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[group:{node.name}]
programs=bus_0,watchdog_0,hanger_0
""" + program("bus", f"{py} -m roles.bus -c {node.conf} --instance 0")
        + program("watchdog", f"{py} -m roles.watchdog -c {node.conf} --instance 0")
        + program("hanger", f"{py} {THIS} -c {node.conf} --instance 0",
                  ',TEST_BUS_MODE="hanger"'))
    return conf


def test_watchdog_restarts_a_hung_role_through_supervisord(node):
    from roles.watchdog import supervisor_proxy
    conf = _supervisord_conf(node)
    sd = node._start("supervisord", [str(Path(sys.executable).parent / "supervisord"),
                                     "-c", str(conf)], {})
    name = f"{node.name}:hanger_0"

    def running_pid():
        try:  # a fresh proxy each time: the transport keeps a failed connection
            rpc = supervisor_proxy(str(node.state / "supervisord.sock"))
            info = rpc.supervisor.getProcessInfo(name)
        except Exception:
            return None
        return info["pid"] if info["statename"] == "RUNNING" else None
    first = poll(running_pid, 30, "hanger running")
    # once the watchdog has heard it, hang it: it keeps running, stops heartbeating
    watchlog = node.dir / "watchdog.log"
    poll(lambda: watchlog.exists() and "now watching hanger:0" in watchlog.read_text(), 30,
         "watchdog hears the hanger")
    os.kill(first, signal.SIGUSR1)
    second = poll(lambda: (p := running_pid()) and p != first and p, 40,
                  "hung role restarted by the watchdog")
    assert second != first
    log = poll(lambda: (t := watchlog.read_text()) and f"restarted {name}: no heartbeat for" in t
               and t, 10, "the watchdog says why")
    # the bus and the watchdog themselves were left alone
    assert "bus_0" not in log.split("watching heartbeats", 1)[1]
    sd.proc.send_signal(signal.SIGTERM)
    sd.proc.wait(30)


# ------------------------------------------------------ helper processes

def _out(**kw: Any) -> None:
    print(json.dumps(kw), flush=True)


async def _stdin_lines():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        yield line.decode().split()


async def _sub(ctx) -> None:
    def on(topic, header, body):
        _out(ev="msg", topic=topic, type=header.type, body=body,
             src=[header.src.role, header.src.instance])
    ctx.bus.subscribe(os.environ["PREFIX"], on)
    await ctx.bus.ready()
    _out(ev="ready")
    await asyncio.Event().wait()


async def _pub(ctx) -> None:
    await ctx.bus.ready()
    _out(ev="ready")
    async for cmd in _stdin_lines():
        if cmd[0] == "pub":
            for i in range(int(cmd[2])):
                ctx.bus.publish(cmd[1], "demo.published", {"i": i})


async def _sqworker(ctx) -> None:
    async for d in ctx.sendq:
        _out(ev="dgram", payload=d.payload.decode(), dst=[d.dst_addr, d.dst_port, d.src_addr])


async def _sqprod(ctx) -> None:
    _out(ev="ready")
    async for cmd in _stdin_lines():
        if cmd[0] == "send":
            start, n = int(cmd[1]), int(cmd[2])
            for i in range(start, start + n):
                while not ctx.sendq.send("192.0.2.7", 4342, f"p{i}".encode(), "127.0.0.1"):
                    await asyncio.sleep(0.01)


async def _clonew(ctx) -> None:
    from bus.clone import CloneWriter
    w = CloneWriter(ctx, STREAM)
    n = int(os.environ.get("PRELOAD", "0"))
    w.load(((f"pre{i}-{ctx.session}", i) for i in range(n)), seq=n)
    w.start()
    await ctx.bus.ready()
    _out(ev="ready")
    async for cmd in _stdin_lines():
        if cmd[0] == "set":
            w.set(cmd[1], int(cmd[2]))
        elif cmd[0] == "del":
            w.delete(cmd[1])
        elif cmd[0] == "bulk":
            for i in range(int(cmd[1])):
                w.set(f"b{i}", i)
                if i % 1000 == 0:
                    await asyncio.sleep(0)
        elif cmd[0] == "digest":
            _out(ev="digest", seq=w.seq, count=len(w), digest=digest(w.data.items()))


async def _cloner(ctx) -> None:
    from bus.clone import CloneReader
    mine: dict = {}
    r = CloneReader(ctx, STREAM, on_set=mine.__setitem__, on_delete=lambda k: mine.pop(k, None),
                    on_sync=lambda seq: _out(ev="sync", seq=seq),
                    on_unsync=lambda why: _out(ev="unsync", reason=why))
    r.start()
    async for cmd in _stdin_lines():
        if cmd[0] == "digest":
            _out(ev="digest", in_sync=r.in_sync, seq=r.seq, count=len(r.data),
                 digest=digest(r.data.items()), cb_digest=digest(mine.items()))


async def _hanger(ctx) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: time.sleep(3600))  # hang the loop
    await asyncio.Event().wait()


def _child_main() -> int:
    from roles.runtime import run_role
    mode = os.environ["TEST_BUS_MODE"]
    mains = {"sub": ("subtest", _sub), "pub": ("pubtest", _pub),
             "sqworker": ("sqworker", _sqworker), "sqprod": ("sqprod", _sqprod),
             "clonew": ("clonew", _clonew), "cloner": ("cloner", _cloner),
             "hanger": ("hanger", _hanger)}
    role, main = mains[mode]
    return run_role(role, main)


if __name__ == "__main__":
    sys.exit(_child_main())
