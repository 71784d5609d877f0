"""Real nodes for integration tests: a TOML file, `decent up`, `decent down`.

Every node lives in a short temporary directory (ipc:// paths must fit 108 bytes),
binds its own 127.x.y.z address, and is stopped by the test that started it: the
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


def poll(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Call ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not met within {timeout} s")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class Node:
    def __init__(self, name: str, rloc: str, body: str, *, timers: str = FAST_TIMERS,
                 node: str = "") -> None:
        """``node``: more ``[node]`` keys (TOML lines)."""
        self.dir = Path(tempfile.mkdtemp(prefix="dn", dir="/tmp"))
        self.name, self.rloc = name, rloc
        self.conf = self.dir / "node.toml"
        self.conf.write_text(f'[node]\nname = "{name}"\nrlocs = ["{rloc}"]\nstate_dir = "st"\n'
                             f'{node}\n{timers}\n{body}')
        self.pids: set[int] = set()

    # -- CLI -------------------------------------------------------------------------
    def decent(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
        r = subprocess.run(CLI + list(args) + ["-c", str(self.conf)], cwd=REPO, capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            pytest.fail(f"decent {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
        return r

    def up(self) -> None:
        self.decent("up", check=True)
        self.remember()

    def down(self) -> None:
        self.remember()
        self.decent("down", timeout=90)
        pidfile = self.dir / "st" / "supervisord.pid"
        if pidfile.exists():
            try:
                self.pids.add(int(pidfile.read_text().strip() or 0))
            except ValueError:
                pass
        for pid in self.pids:
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

    def status(self) -> dict:
        r = self.decent("status", "--json")
        if r.returncode != 0:
            return {}
        roles = json.loads(r.stdout)["roles"]
        self.pids.update(v["pid"] for v in roles.values() if v.get("pid"))
        return roles

    def remember(self) -> None:
        self.status()

    def pid(self, instance: str) -> int:
        return self.status()[instance]["pid"]

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
