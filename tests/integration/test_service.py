"""Running a node as a service: `decent up --foreground` becomes supervisord (what the
systemd unit in supervisor/ starts); `decent up` on a running node says so and exits 0;
`decent down` and SIGTERM both end the foreground process cleanly with every role."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import signal
import subprocess

import pytest

from tests.integration.harness import CLI, REPO, Node, pid_alive, poll

pytestmark = pytest.mark.integration

RLOC = "127.0.42.1"
BODY = """
[roles]
map_resolver = { workers = 1 }
map_server = { shards = 1 }
"""


def start_foreground(node: Node) -> subprocess.Popen:
    return subprocess.Popen(CLI + ["up", "--foreground", "-c", str(node.conf)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def running(node: Node, proc: subprocess.Popen) -> dict:
    st = node.status()
    assert proc.poll() is None, f"foreground process exited ({proc.returncode})"
    return st if st and all(v["state"] == "RUNNING" for v in st.values()) else {}


@pytest.fixture
def node():
    n = Node("itsvc", RLOC, BODY)
    try:
        yield n
    finally:
        n.down()


def _supervisord_pid(node: Node) -> int:
    r = node.decent("status", "--json", check=True)
    return json.loads(r.stdout)["supervisord_pid"]


@pytest.mark.parametrize("stop", ["decent down", "SIGTERM"])
def test_foreground_is_supervisord_and_stops_cleanly(node, stop):
    proc = start_foreground(node)
    try:
        roles = poll(lambda: running(node, proc), 30, 0.3, "every role RUNNING")
        assert set(roles) == {"bus:0", "map_server:0", "map_resolver:0", "watchdog:0"}
        assert _supervisord_pid(node) == proc.pid          # exec'd: systemd's main pid
        pids = [v["pid"] for v in roles.values()]

        again = node.decent("up")
        assert again.returncode == 0, again.stderr
        assert f"node itsvc: already running (supervisord pid {proc.pid})" in again.stdout
        fg = node.decent("up", "--foreground")
        assert fg.returncode == 0 and "already running" in fg.stdout
        assert _supervisord_pid(node) == proc.pid

        if stop == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            node.decent("down", check=True)
        assert proc.wait(timeout=60) == 0
        assert not [p for p in pids if pid_alive(p)], "a role outlived supervisord"
        assert node.decent("status").returncode == 1       # not running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_systemd_unit_starts_decent_up_in_the_foreground():
    unit = configparser.RawConfigParser(strict=False)
    unit.optionxform = str
    unit.read(REPO / "supervisor" / "lisp-decent.service")
    svc = unit["Service"]
    argv = shlex.split(svc["ExecStart"])
    assert argv[0].endswith("/.venv/bin/decent") and argv[1:3] == ["up", "--foreground"]
    assert shlex.split(svc["ExecStopPost"])[1] == "down"
    assert svc["Type"] == "simple" and svc["KillMode"] == "mixed"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert os.path.basename(argv[0]) == "decent"
