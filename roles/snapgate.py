"""Snapshot fetches of one stream taken in turns by the workers of a host (issue 11).

At a cold start every ``map_resolver`` worker fetches each shard's snapshot while the
shard reloads its store; the CPU they need is the same whether they fetch at once or
in turn, but on a host with fewer cores than processes, fetching at once makes every
one of them - the shard's reload included - late.  In turn, the first worker fills
its table beside the shard's reload and answers when the reload ends; the next one
fetches the loaded table after it (bench/README.md 3c).

:class:`SnapshotGate` gives at most ``slots`` workers of a host (those sharing a state
directory) a turn at once per stream: a turn is an exclusive ``flock`` on one of
``slots`` files in the node's lock directory, released when the fetch ends (or the
process dies: the kernel releases it).  A fetch waiting for its turn tells its replica
so (``ReplicaReader.snapshot_waiting``): its snapshot timeout counts from the wait's
end, and a turn is bounded by the holder's own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Callable

from roles.hostfiles import open_private

POLL_S = 0.05


def default_slots() -> int:
    """One core left to the shard (at least one turn)."""
    return max(1, (os.cpu_count() or 2) - 1)


class SnapshotGate:
    """See the module docstring.  ``gate(stream, waiting)`` is an async context
    manager; ``waiting()`` is called about once a second while the turn is awaited."""

    def __init__(self, directory: str, slots: int | None = None) -> None:
        self.directory = directory
        self.slots = slots or default_slots()

    def _try(self, stream: str) -> int | None:
        """A slot's locked descriptor, None if every slot is taken, -1 if the slots
        cannot be used at all (the fetch then goes ahead without a turn: turns only
        spread CPU, a replica must not wait on a broken lock directory)."""
        for i in range(self.slots):
            try:
                fd = open_private(os.path.join(self.directory, f"snapshot-{stream}-{i}.lock"))
            except OSError:           # (UnsafePath too)
                return -1
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
            except OSError:
                os.close(fd)
                return -1
        return None

    @contextlib.asynccontextmanager
    async def __call__(self, stream: str, waiting: Callable[[], None] | None = None):
        polls = 0
        fd = self._try(stream)
        while fd is None:
            await asyncio.sleep(POLL_S)
            polls += 1
            if waiting is not None and polls % 20 == 0:
                waiting()
            fd = self._try(stream)
        try:
            if waiting is not None and polls:
                waiting()
            yield
        finally:
            if fd >= 0:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
