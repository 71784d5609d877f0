"""CURVE keys of a node across hosts: writing them (`decent keygen`), reading them.

A key pair is two files, each one Z85 line: ``<name>.public`` (give it to the
other side) and ``<name>.secret`` (mode 0600, never leaves the host).  Both are
created with ``O_NOFOLLOW | O_EXCL`` (no symlink is followed, nothing is
overwritten) through :mod:`roles.hostfiles`.  A secret file that group or others
can read, or that is a symlink, is refused when read.

:func:`load` turns a config's ``[bus]`` key settings into :class:`Keys`; every
problem raises :class:`common.config.ConfigError` naming the ``bus.*`` key and the
file, so a bad key fails ``decent up`` and every role at start with one line.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

import zmq

from common.bus_config import BusSection, is_z85_key
from common.config import ConfigError
from roles.hostfiles import UnsafePath, open_private


@dataclass(frozen=True)
class Keys:
    public: bytes                       # this host's public key (Z85)
    secret: bytes = field(repr=False)   # this host's secret key (Z85)
    server: bytes | None = None         # satellite: the bus host's public key
    allowed: frozenset[bytes] = frozenset()   # bus host: client public keys allowed in


def keygen(directory: str, name: str) -> tuple[str, str]:
    """Write ``<directory>/<name>.public`` and ``.secret`` (0600); return their paths."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"{name!r}: a key name is a plain file name")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    public, secret = zmq.curve_keypair()
    paths = (os.path.join(directory, f"{name}.public"), os.path.join(directory, f"{name}.secret"))
    for p in paths:
        if os.path.lexists(p):
            raise FileExistsError(errno.EEXIST, "exists; refusing to overwrite a key", p)
    fd = open_private(paths[1], os.O_WRONLY | os.O_EXCL)   # 0600, O_NOFOLLOW
    with os.fdopen(fd, "wb") as f:
        f.write(secret + b"\n")
    fd = os.open(paths[0], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o644)
        f.write(public + b"\n")
    return paths


def _read_key(path: str, key_path: str, *, secret: bool) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(key_path, f"{path} is a symbolic link; refusing to follow it") from None
        raise ConfigError(key_path, f"cannot read {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(key_path, f"{path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if secret and mode & 0o077:
            raise ConfigError(key_path, f"{path} is readable by group or others (mode "
                                        f"{mode:04o}); chmod 600 it")
        raw = f.read(200)
    text = raw.decode("ascii", "replace").strip()
    if not is_z85_key(text):
        raise ConfigError(key_path, f"{path}: expected one 40-character Z85 CURVE key "
                                    f"(as `decent keygen` writes)")
    return text.encode()


def _public_or_file(value: str, key_path: str) -> bytes:
    return value.encode() if is_z85_key(value) else _read_key(value, key_path, secret=False)


def load(bus: BusSection) -> Keys | None:
    """The keys a ``[bus]`` section names (None on one host).  Raises ConfigError."""
    if not bus.tcp:
        return None
    assert bus.secret_key_file is not None
    secret = _read_key(bus.secret_key_file, "bus.secret_key_file", secret=True)
    try:
        public = zmq.curve_public(secret)
    except zmq.ZMQError as exc:
        raise ConfigError("bus.secret_key_file", f"{bus.secret_key_file}: not a CURVE secret "
                                                 f"key ({exc})") from None
    if bus.satellite:
        assert bus.server_key is not None
        return Keys(public, secret, server=_public_or_file(bus.server_key, "bus.server_key"))
    allowed = {_public_or_file(k, f"bus.allowed_keys[{i}]") for i, k in enumerate(bus.allowed_keys)}
    if bus.allowed_keys_dir is not None:
        try:
            names = sorted(n for n in os.listdir(bus.allowed_keys_dir) if n.endswith(".public"))
        except OSError as exc:
            raise ConfigError("bus.allowed_keys_dir", f"cannot list {bus.allowed_keys_dir}: "
                                                      f"{exc.strerror or exc}") from None
        allowed |= {_read_key(os.path.join(bus.allowed_keys_dir, n), "bus.allowed_keys_dir",
                              secret=False) for n in names}
    if not allowed:
        raise ConfigError("bus.allowed_keys_dir", f"{bus.allowed_keys_dir}: no *.public key "
                                                  f"file in it, so no satellite could connect")
    return Keys(public, secret, allowed=frozenset(allowed))


__all__ = ["Keys", "UnsafePath", "keygen", "load"]
