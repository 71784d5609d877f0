"""Files the node creates on the host (roles.hostfiles): private, ours, no symlinks.

Each test runs under an explicit umask (000 and 022) and restores it; the "another
user" cases fake the effective uid so they mean the same as root and as a user.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cli import supervise
from cli.common import UserError
from common.config import parse_config
from roles import hostfiles
from roles.hostfiles import UnsafePath, open_private, private_dir, write_private
from roles.map_resolver import lock_rloc
from roles.ms_store import RegistrationStore


@pytest.fixture(params=[0o000, 0o022])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(p) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_private_dir_is_0700_whatever_the_umask(tmp_path, umask):
    d = private_dir(str(tmp_path / "a" / "state"))
    assert mode(d) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o755)
    private_dir(str(loose))
    assert mode(loose) == 0o700


def test_private_dir_refuses_a_symlink_and_a_foreign_owner(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    os.chmod(target, 0o755)
    link = tmp_path / "state"
    link.symlink_to(target)
    with pytest.raises(UnsafePath, match="symbolic link"):
        private_dir(str(link))
    assert mode(target) == 0o755          # not chmodded through the link
    real = tmp_path / "real"
    real.mkdir()
    monkeypatch.setattr(hostfiles.os, "geteuid", lambda: os.getuid() + 4242)
    with pytest.raises(UnsafePath, match="owned by uid"):
        private_dir(str(real))


def test_open_private_creates_0600_whatever_the_umask(tmp_path, umask):
    fd = open_private(str(tmp_path / "f"))
    os.close(fd)
    assert mode(tmp_path / "f") == 0o600
    (tmp_path / "g").write_text("x")
    os.chmod(tmp_path / "g", 0o644)
    os.close(open_private(str(tmp_path / "g")))
    assert mode(tmp_path / "g") == 0o600


def test_open_private_never_follows_a_symlink_nor_a_hard_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.chmod(victim, 0o600)
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(UnsafePath, match="symbolic link"):
        open_private(str(tmp_path / "link"), os.O_RDWR | os.O_TRUNC)
    os.link(victim, tmp_path / "hard")
    with pytest.raises(UnsafePath, match="hard links"):
        open_private(str(tmp_path / "hard"))
    assert victim.read_bytes() == b"precious"


def test_write_private_replaces_a_planted_symlink_instead_of_writing_through(tmp_path, umask):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    dest = tmp_path / "conf"
    dest.symlink_to(victim)
    write_private(str(dest), b"new")
    assert victim.read_bytes() == b"precious"
    assert not dest.is_symlink() and dest.read_bytes() == b"new" and mode(dest) == 0o600


def test_lock_planted_as_symlink_changes_nothing_and_refuses(tmp_path):
    locks = private_dir(str(tmp_path / "locks"))
    victim = tmp_path / "victim"
    victim.write_bytes(b"root-owned content")
    os.chmod(victim, 0o600)
    Path(locks, "127.0.0.1-4342.lock").symlink_to(victim)
    with pytest.raises(UnsafePath, match="symbolic link"):
        lock_rloc(locks, "127.0.0.1", 4342, "node /st")
    assert victim.read_bytes() == b"root-owned content"
    assert mode(victim) == 0o600


def test_lock_is_private_and_names_the_node(tmp_path, umask):
    locks = private_dir(str(tmp_path / "locks"))
    fd = lock_rloc(locks, "::1", 4342, "node-a /st")
    try:
        p = Path(locks, "__1-4342.lock")
        assert p.read_text() == "node-a /st" and mode(p) == 0o600
        fd2 = lock_rloc(locks, "::1", 4342, "node-a /st")   # a sibling worker joins
        os.close(fd2)
    finally:
        os.close(fd)


def test_sqlite_store_files_are_0600(tmp_path, umask):
    st = RegistrationStore(str(tmp_path / "ms.sqlite"))
    st.apply([("set", "k", {"v": 1}, b"raw")])
    try:
        made = sorted(p.name for p in tmp_path.iterdir())
        assert "ms.sqlite" in made and "ms.sqlite-wal" in made
        for name in made:
            assert mode(tmp_path / name) == 0o600, name
    finally:
        st.close()


def test_sqlite_store_refuses_a_planted_wal_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"x")
    (tmp_path / "ms.sqlite-wal").symlink_to(victim)
    with pytest.raises(UnsafePath, match="symbolic link"):
        RegistrationStore(str(tmp_path / "ms.sqlite"))
    assert victim.read_bytes() == b"x"


def _cfg(tmp_path):
    return parse_config({"node": {"name": "n1", "rlocs": ["127.0.0.1"], "state_dir": "st"},
                         "roles": {"map_resolver": False, "map_server": False}},
                        str(tmp_path / "n.toml"), str(tmp_path))


def test_decent_up_files_private_whatever_the_umask(tmp_path, umask):
    cfg = _cfg(tmp_path)
    conf, changed = supervise.write_conf(cfg, str(tmp_path / "n.toml"))
    assert changed
    assert mode(cfg.node.state_dir) == 0o700
    assert mode(supervise.log_dir(cfg)) == 0o700
    assert mode(conf) == 0o600
    text = Path(conf).read_text()
    assert "\numask=077\n" in text            # supervisord, its logs and every role


def test_decent_up_refuses_a_state_dir_that_is_a_symlink(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "st").symlink_to(tmp_path / "other")
    with pytest.raises(UserError, match="node.state_dir: .*symbolic link"):
        supervise.write_conf(_cfg(tmp_path), str(tmp_path / "n.toml"))
    assert list((tmp_path / "other").iterdir()) == []
