"""The node's shared rate tables: one memory-mapped file every map_resolver worker uses.

``<state_dir>/ratelimit`` holds a 64-byte header (magic, slot count, the node's
secret hash key) then two :class:`common.machines.ratelimit.TokenTable` regions:
per request source address, then per reply destination (ITR-RLOC).  Every worker
maps the same file ``MAP_SHARED``, so a source using many ports (hashed by
SO_REUSEPORT onto different workers) or many workers debits one set of buckets.
The first worker creates it (under an exclusive ``flock``); a file with another
geometry is re-initialised.  The file outlives worker restarts, so a restarted
worker does not hand throttled sources their burst back.  1 MiB per table at the
default 65,536 slots.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import stat
import struct

from common.machines.ratelimit import TokenTable

MAGIC = b"LDRATE2\0"   # 2: slots hold the debt, not the tokens
HEADER = struct.Struct("=8sI4x32s16x")   # 64 bytes


class RateFileError(Exception):
    pass


def open_rate_tables(path: str, slots: int, src_rate: float, src_burst: float,
                     dst_rate: float, dst_burst: float) -> tuple[TokenTable, TokenTable, mmap.mmap]:
    size = HEADER.size + 2 * TokenTable.size(slots)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
            raise RateFileError(f"{path}: not a regular file of ours with one link")
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            head = os.pread(fd, HEADER.size, 0)
            ok = False
            if len(head) == HEADER.size and os.fstat(fd).st_size == size:
                magic, n, _key = HEADER.unpack(head)
                ok = magic == MAGIC and n == slots
            if not ok:
                os.ftruncate(fd, 0)
                os.ftruncate(fd, size)   # zero-filled: every bucket full
                os.pwrite(fd, HEADER.pack(MAGIC, slots, os.urandom(32)), 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    _magic, _n, key = HEADER.unpack_from(m, 0)
    src = TokenTable(m, HEADER.size, slots, src_rate, src_burst, key)
    dst = TokenTable(m, HEADER.size + TokenTable.size(slots), slots, dst_rate, dst_burst, key)
    return src, dst, m
