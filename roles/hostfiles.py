"""Files the node creates on the host: private, owned by us, never through a symlink.

Everything a node writes lives under its ``node.state_dir``.  The directory is
created 0700 (and tightened to 0700 if it exists looser) and must be a real
directory owned by the effective user; files in it are opened with ``O_NOFOLLOW``,
must be regular files owned by us with one link, and are set to 0600 whatever
the umask.  Each check failing raises :class:`UnsafePath` with the path and the
reason, which the callers turn into a refusal to start.

:data:`PRIVATE_UMASK` is what every role process and supervisord run under, so
what they create without going through here (SQLite's -wal/-shm files, the bus
sockets, logs) is private too.
"""

from __future__ import annotations

import errno
import os
import stat

PRIVATE_UMASK = 0o077


class UnsafePath(OSError):
    """A path the node will not use: ``<path>: <reason>``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _owner_ok(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid()


def private_dir(path: str) -> str:
    """Create ``path`` (and missing parents) as a 0700 directory we own; return it.

    An existing ``path`` must be a directory (not a symlink to one) owned by the
    effective user; a looser mode is tightened to 0700."""
    parent = os.path.dirname(path.rstrip("/"))
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, mode=0o755, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(path, "is a symbolic link; the node's directories must be real "
                               "directories")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(path, "exists and is not a directory")
    if not _owner_ok(st):
        raise UnsafePath(path, f"is owned by uid {st.st_uid}, not by this user "
                               f"(uid {os.geteuid()}); refusing to use it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def open_private(path: str, flags: int = os.O_RDWR) -> int:
    """Open (creating if missing) the regular file ``path`` as a 0600 file we own.

    Never follows a symlink at ``path``; refuses a file owned by someone else or
    with more than one hard link.  Returns the descriptor (close-on-exec)."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(path, "is a symbolic link; refusing to follow it") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(path, "is not a regular file")
        if not _owner_ok(st):
            raise UnsafePath(path, f"is owned by uid {st.st_uid}, not by this user "
                                   f"(uid {os.geteuid()})")
        if st.st_nlink != 1:
            raise UnsafePath(path, f"has {st.st_nlink} hard links; refusing to write through "
                                   f"one")
        if stat.S_IMODE(st.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_private_file(path: str) -> None:
    """An existing file we are about to hand to a library that opens it itself
    (SQLite): not a symlink, a regular file we own, 0600."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(path, "is a symbolic link; refusing to follow it")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(path, "is not a regular file")
    if not _owner_ok(st):
        raise UnsafePath(path, f"is owned by uid {st.st_uid}, not by this user "
                               f"(uid {os.geteuid()})")
    if stat.S_IMODE(st.st_mode) != 0o600:
        os.chmod(path, 0o600)


def write_private(path: str, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``: a 0600 temporary file beside it,
    then rename (rename replaces a symlink at ``path`` rather than following it)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        os.unlink(tmp)
        raise
    os.replace(tmp, path)


def readable_by_others(path: str) -> int | None:
    """The mode bits when ``path`` is readable by group or others, else None."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    return mode if mode & 0o044 else None
