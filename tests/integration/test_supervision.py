"""A node under real supervisord: up, status, kill -9, restart, logs, down.

The node's [roles] enable only the always-on roles (bus, watchdog), so the test
runs whatever role modules exist; an instance whose module is not written yet is
expected to be retried (BACKOFF), not RUNNING.  Everything lives in a short
temporary state directory; the only processes stopped are the ones this test
started (supervisord and its children), by pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cli.supervise import pid_alive
from tests.integration.harness import poll
from roles import nodeconf

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "cli.main"]


def role_exists(role: str) -> bool:
    return (REPO / "roles" / f"{role}.py").exists() or \
        (REPO / "roles" / role / "__main__.py").exists()


def decent(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def node():
    """A node config in a short temporary directory; stops what the test started."""
    # short: ZeroMQ ipc:// and supervisord's socket live here (sun_path is 108 bytes)
    tmp = Path(tempfile.mkdtemp(prefix="dsv", dir="/tmp"))
    conf = tmp / "node.toml"
    conf.write_text(f"""
[node]
name = "sv{os.getpid()}"
rlocs = ["127.0.0.1"]
state_dir = "state"

[roles]          # only the always-on roles: bus and watchdog
map_resolver = false
map_server = false
etr = false
itr = false
""")
    seen_pids: set[int] = set()
    yield conf, seen_pids
    # teardown: the CLI first; then, by pid, anything of ours still alive
    decent("down", "-c", str(conf), timeout=90)
    pidfile = tmp / "state" / "supervisord.pid"
    if pidfile.exists():
        seen_pids.add(int(pidfile.read_text().strip() or 0))
    for pid in seen_pids:
        if pid > 0 and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(tmp, ignore_errors=True)


def status(conf: Path) -> dict:
    r = decent("status", "--json", "-c", str(conf))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_up_status_kill_restart_down(node):
    conf, seen = node
    cfg = nodeconf.load(conf)
    instances = [f"{r}:{n}" for r, n in cfg.instances()]
    assert instances == ["bus:0", "watchdog:0"]
    assert all(role_exists(r) for r, _ in cfg.instances())
    r = decent("up", "-c", str(conf), "--timeout", "30")
    assert r.returncode == 0, r.stdout + r.stderr

    st = status(conf)
    seen.add(st["supervisord_pid"])
    assert set(st["roles"]) == set(instances)
    for key in instances:
        info = st["roles"][key]
        assert info["state"] == "RUNNING", st
        assert isinstance(info["pid"], int) and pid_alive(info["pid"])
        assert info["uptime"] >= 0
        seen.add(info["pid"])

    # up again: nothing restarted
    r = decent("up", "-c", str(conf), "--timeout", "3")
    assert r.returncode == 0, r.stderr
    again = status(conf)
    assert again["supervisord_pid"] == st["supervisord_pid"]
    assert all(again["roles"][k]["pid"] == st["roles"][k]["pid"] for k in instances)

    # kill -9: supervisord starts a new one
    old = st["roles"]["bus:0"]["pid"]
    os.kill(old, signal.SIGKILL)

    def bus_restarted():
        info = status(conf)["roles"]["bus:0"]
        return info if info["state"] == "RUNNING" and info["pid"] != old else None
    info = poll(bus_restarted, 30, 0.2)
    seen.add(info["pid"])
    poll(lambda: not pid_alive(old), 10)

    # decent restart: one new pid, the old one gone
    old = info["pid"]
    r = decent("restart", "bus", "-c", str(conf))
    assert r.returncode == 0, r.stderr
    info = status(conf)["roles"]["bus:0"]
    assert info["state"] == "RUNNING" and info["pid"] != old
    seen.add(info["pid"])
    assert not pid_alive(old)
    r = decent("restart", "bus:0", "-c", str(conf))
    assert r.returncode == 0, r.stderr
    seen.add(status(conf)["roles"]["bus:0"]["pid"])

    r = decent("restart", "map_server", "-c", str(conf))
    assert r.returncode == 2 and "does not run map_server" in r.stderr
    r = decent("restart", "bus:1", "-c", str(conf))
    assert r.returncode == 2 and "no such instance" in r.stderr

    r = decent("logs", "bus", "-n", "5", "-c", str(conf))
    assert r.returncode == 0, r.stderr
    assert (Path(cfg.node.state_dir) / "logs" / "bus_0.log").exists()

    # down: supervisord and every process it ran are gone
    st = status(conf)
    pids = {st["supervisord_pid"]} | {i["pid"] for i in st["roles"].values() if i["pid"]}
    r = decent("down", "-c", str(conf))
    assert r.returncode == 0, r.stderr
    poll(lambda: not any(pid_alive(p) for p in pids | seen), 15)

    r = decent("status", "-c", str(conf))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "is not running" in r.stderr
    r = decent("down", "-c", str(conf))
    assert r.returncode == 0 and "not running" in r.stdout


def test_config_error_is_one_line_exit_2(tmp_path):
    conf = tmp_path / "bad.toml"
    conf.write_text('[node]\nname = "x"\nrlocs = ["127.0.0.300"]\nstate_dir = "s"\n')
    for verb in (["up"], ["down"], ["status"], ["restart", "bus"], ["logs", "bus"]):
        r = decent(*verb, "-c", str(conf))
        assert r.returncode == 2, (verb, r.stderr)
        assert r.stderr == (f"decent: {conf}: node.rlocs[0]: "
                            f"not an IPv4 or IPv6 address: '127.0.0.300'\n")
    assert not (tmp_path / "s").exists()  # nothing was started or rendered


def test_status_when_not_running(tmp_path):
    conf = tmp_path / "n.toml"
    conf.write_text('[node]\nname = "idle"\nrlocs = ["127.0.0.1"]\nstate_dir = "s"\n')
    r = decent("status", "--json", "-c", str(conf))
    assert r.returncode == 1
    assert r.stdout == "" and r.stderr.count("\n") == 1
    assert r.stderr.startswith("decent: node 'idle' is not running")
    r = decent("restart", "bus", "-c", str(conf))
    assert r.returncode == 1 and "is not running" in r.stderr
