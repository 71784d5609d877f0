"""Give freed heap memory back to the system after a large structure is dropped.

A worker that swaps in a new replica frees the old one (hundreds of MiB at a million
registrations), and the shard frees the rows of its reload; glibc keeps such memory
in the process unless asked (``malloc_trim``).  Elsewhere (no glibc) this does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_libc = None


def trim() -> bool:
    """Return free heap pages to the system; False where that is not available."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(_libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False
