"""A real node and the files it leaves on the host (issue 13, "secrets and files").

- `decent up` under umask 000: everything under the state directory (supervisord's
  files, logs, bus sockets, locks, the SQLite store) is closed to group and others.
- a symlink planted where the Map-Resolver's per-RLOC lock goes: the target is not
  touched and the Map-Resolver refuses to start, saying why in its log.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from tests.integration.harness import CLI, REPO, Node, poll

pytestmark = pytest.mark.integration

BODY = """
[roles]
map_resolver = { workers = 1 }
map_server = { shards = 1 }
"""


def up(node: Node, umask: int, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + ["up", "-c", str(node.conf), "--timeout", str(timeout)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout + 60,
                          umask=umask)


@pytest.fixture
def node():
    n = Node(f"hf{os.getpid()}", "127.0.13.1", BODY)
    yield n
    n.down()
    shutil.rmtree(n.dir, ignore_errors=True)


def test_everything_under_the_state_dir_is_private_under_umask_000(node):
    r = up(node, 0o000)
    assert r.returncode == 0, r.stderr
    node.remember()
    st = node.dir / "st"
    poll(lambda: (st / "map_server_0.sqlite").exists(), 10, what="the store")
    seen = []
    for root, dirs, files in os.walk(st):
        for name in dirs + files:
            p = os.path.join(root, name)
            m = stat.S_IMODE(os.lstat(p).st_mode)
            seen.append(os.path.relpath(p, st))
            assert m & 0o077 == 0, f"{os.path.relpath(p, st)} has mode {m:04o}"
    assert stat.S_IMODE(os.stat(st).st_mode) == 0o700
    for must in ("supervisord.conf", "supervisord.log", "supervisord.pid", "logs",
                 "locks/127.0.13.1-4342.lock", "map_server_0.sqlite"):
        assert must in seen, (must, seen)


def test_planted_lock_symlink_changes_nothing_and_the_resolver_refuses(node, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"root-owned, 0600")
    os.chmod(victim, 0o600)
    locks = node.dir / "st" / "locks"
    locks.mkdir(parents=True)
    os.chmod(node.dir / "st", 0o777)        # a loosely pre-created state directory
    os.chmod(locks, 0o777)
    (locks / "127.0.13.1-4342.lock").symlink_to(victim)
    up(node, 0o022, timeout=6)   # its exit status races supervisord's startsecs; the log does not
    node.remember()
    log = node.dir / "st" / "logs" / "map_resolver_0.log"
    poll(lambda: log.exists() and log.read_text().count("refusing to start") >= 2, 20,
         what="the refusal, again after supervisord's restart")
    text = log.read_text()
    assert "127.0.13.1-4342.lock: is a symbolic link; refusing to follow it" in text
    assert "Traceback" not in text and "serving UDP" not in text
    assert "stopped (refused to start, exit 2)" in text
    assert victim.read_bytes() == b"root-owned, 0600"
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(node.dir / "st").st_mode) == 0o700


def test_planted_store_symlink_changes_nothing_and_the_map_server_refuses(node, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"root-owned, 0600")
    os.chmod(victim, 0o600)
    st = node.dir / "st"
    st.mkdir(parents=True)
    (st / "map_server_0.sqlite").symlink_to(victim)
    up(node, 0o022, timeout=6)
    node.remember()
    log = st / "logs" / "map_server_0.log"
    poll(lambda: log.exists() and log.read_text().count("refusing to start") >= 2, 20,
         what="the refusal, again after supervisord's restart")
    text = log.read_text()
    assert "map_server_0.sqlite: is a symbolic link; refusing to follow it" in text
    assert "Traceback" not in text
    assert "stopped (refused to start, exit 2)" in text
    assert victim.read_bytes() == b"root-owned, 0600"
