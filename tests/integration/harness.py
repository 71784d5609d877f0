"""Real nodes on loopback: a TOML file, `decent up`, `decent down`; the one node
harness of the integration tests and the bench programs (bench/benchlib.py subclasses
:class:`Node` with its own defaults).

Every node lives in a short temporary directory (ipc:// paths must fit 108 bytes),
binds its own 127.x.y.z address, and is stopped by the code that started it: the
CLI first, then by PID anything of ours still alive.  Waits are bounded polls.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "cli.main"]
SECRET = "it-secret"

FAST_TIMERS = """
[timers]
register_interval = 2
register_interval_fast = 1
fast_period = 5
registration_lifetime = 6
map_notify_retry_initial = 0.5
map_notify_retry_max = 2
map_request_retry = 0.5
heartbeat_interval = 0.5
watchdog_timeout = 3
snapshot_timeout = 2
"""


def wait_for(predicate, timeout: float, interval: float = 0.1):
    """Call ``predicate`` until it returns something truthy (returned) or ``timeout``
    seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def poll(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Like :func:`wait_for`, but the test fails after ``timeout`` s."""
    value = wait_for(predicate, timeout, interval)
    if not value:
        pytest.fail(f"{what} not met within {timeout} s")
    return value


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):   # gone, or not ours
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def processes_naming(arg: str) -> set[int]:
    """Pids of the live processes with ``arg`` as one of their command-line words."""
    found = set()
    want = arg.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                words = f.read().split(b"\0")
        except OSError:              # gone meanwhile, or not readable
            continue
        if want in words:
            found.add(int(entry))
    return found


def in_parallel(action, items) -> list:
    """``[action(x) for x in items]``, all at once (a thread each: each mostly waits
    on its own CLI process or socket); every call runs to its end, then the first
    failure is raised."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        futures = [pool.submit(action, x) for x in items]
    return [f.result() for f in futures]


def up_all(nodes, timeout: float | None = None) -> None:
    """:meth:`Node.up` for several nodes at once (each still waits for its roles)."""
    in_parallel(lambda n: n.up(timeout), nodes)


def down_all(nodes) -> None:
    """:meth:`Node.down` for several nodes at once: every one is stopped (and its
    stragglers killed) whatever the others do."""
    in_parallel(lambda n: n.down(), nodes)


class Node:
    """A real node from a TOML body, in a short /tmp state directory.

    ``node``: more ``[node]`` keys (TOML lines).  Also a context manager (``down`` on
    exit).  Subclasses change the class defaults below."""

    TIMERS = FAST_TIMERS
    NODE_KEYS = ""            # [node] lines every node of this kind gets
    DIR_PREFIX = "dn"
    UP_TIMEOUT: float | None = None   # `decent up --timeout`; None: its default
    KEEP_DIR = True           # False: `down` removes the directory

    def __init__(self, name: str, rloc: str, body: str, *, timers: str | None = None,
                 node: str = "", keep_dir: bool | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=self.DIR_PREFIX, dir="/tmp"))
        self.name, self.rloc = name, rloc
        self.conf = self.dir / "node.toml"
        self.state = self.dir / "st"
        keys = "".join(f"{x}\n" for x in (self.NODE_KEYS, node) if x)
        self.conf.write_text(f'[node]\nname = "{name}"\nrlocs = ["{rloc}"]\nstate_dir = "st"\n'
                             f'{keys}{self.TIMERS if timers is None else timers}\n{body}')
        self.pids: set[int] = set()
        self.keep_dir = self.KEEP_DIR if keep_dir is None else keep_dir

    def fail(self, message: str) -> None:
        """A node that does not do what it must: the test fails."""
        pytest.fail(message)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.down()

    # -- CLI -------------------------------------------------------------------------
    def decent(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
        r = subprocess.run(CLI + list(args) + ["-c", str(self.conf)], cwd=REPO, capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            self.fail(f"decent {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
        return r

    def up(self, timeout: float | None = None) -> None:
        timeout = self.UP_TIMEOUT if timeout is None else timeout
        args = ("up",) if timeout is None else ("up", "--timeout", str(timeout))
        r = self.decent(*args, timeout=120 if timeout is None else timeout + 30)
        self.remember()
        if r.returncode != 0:
            self.fail(f"decent up exited {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")

    def down(self) -> None:
        self.remember()
        try:
            self.decent("down", timeout=90)
        except subprocess.TimeoutExpired:
            pass
        # what is still alive of ours: by command line, so a pid reused meanwhile by
        # another process is never signalled
        for pid in self.processes():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if not self.keep_dir:
            subprocess.run(["rm", "-rf", str(self.dir)], timeout=60)

    def status(self) -> dict:
        r = self.decent("status", "--json")
        if r.returncode != 0:
            return {}
        roles = json.loads(r.stdout)["roles"]
        self.pids.update(v["pid"] for v in roles.values() if v.get("pid"))
        return roles

    def remember(self) -> None:
        """Note the pid of every process of this node now alive (:meth:`processes`).
        Read from /proc rather than through `decent status`, which costs a CLI
        process (~0.5 s of CPU) on every call; it also finds a role whose
        supervisord is gone."""
        self.pids.update(self.processes())

    def processes(self) -> set[int]:
        """The live processes of this node: its supervisord (named by its
        supervisord.conf) and every role instance (named by the node's config file)."""
        return processes_naming(str(self.conf)) | processes_naming(str(self.state / "supervisord.conf"))

    def pid(self, instance: str) -> int | None:
        return self.status().get(instance, {}).get("pid")

    def all_running(self) -> bool:
        st = self.status()
        return bool(st) and all(v["state"] == "RUNNING" for v in st.values())

    def lig(self, eid: str, *, mr: str | None = None, timeout: float = 1.0, count: int = 1) -> dict | None:
        args = ["lig", eid, "--json", "--count", str(count), "--timeout", str(timeout)]
        if mr:
            args += ["--mr", mr]
        r = self.decent(*args)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def counters(self) -> dict:
        r = self.decent("counters", "--json", "--all")
        return json.loads(r.stdout) if r.returncode == 0 else {}

    def registrations(self) -> list:
        r = self.decent("show", "registrations", "--json")
        return json.loads(r.stdout) if r.returncode == 0 else []

    def wait_lig(self, eid: str, want_prefix: str, timeout: float = 20.0, **kw) -> dict:
        def ok():
            r = self.lig(eid, **kw)
            return r if r and not r["negative"] and r["eid"] == want_prefix else None
        return poll(ok, timeout, 0.2, f"lig {eid} -> {want_prefix}")

    def in_sync(self, workers: int, want_registrations: int | None = None) -> bool:
        """Every Map-Resolver worker's replica in sync (holding that many registrations)."""
        c = self.counters()
        for w in range(workers):
            x = c.get(f"map_resolver:{w}", {})
            if not x.get("in_sync"):
                return False
            if want_registrations is not None and x.get("registrations", 0) < want_registrations:
                return False
        return True

    def wait_in_sync(self, workers: int, want_registrations: int | None = None,
                     timeout: float = 60) -> bool:
        return bool(wait_for(lambda: self.in_sync(workers, want_registrations), timeout, 0.3))

    def log_tail(self, instance: str, n: int = 20) -> str:
        return self.decent("logs", instance, "-n", str(n)).stdout


def udp_exchange(dst: tuple, data, *, src: str = "127.0.0.1", timeout: float = 1.0) -> bytes | None:
    """Send one datagram and return the first answer (or None on timeout).  ``data``
    may be a function of the local port (an ECM names its reply port inside)."""
    s = socket.socket(socket.AF_INET6 if ":" in dst[0] else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((src, 0))
        s.settimeout(timeout)
        if callable(data):
            data = data(s.getsockname()[1])
        s.sendto(data, dst)
        try:
            return s.recvfrom(65535)[0]
        except socket.timeout:
            return None
    finally:
        s.close()
