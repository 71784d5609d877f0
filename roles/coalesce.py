"""When to send a batch: at once when idle, a moment later when busy (issue 10).

A worker batches Map-Registers into one bus message per shard, and the shard commits
them as one group. Both flushed at the event loop's next turn: under a steady stream
(ETRs refreshing at a paced rate) a turn holds one or two Map-Registers, and each
pays a bus message and a SQLite transaction of its own, two to three times the CPU
of a registration in a full group (bench/README.md 2d, `register_shard.py --groups`).

:class:`Coalescer` keeps the next-turn flush while the stream is idle (the last flush
was more than ``busy_within`` ago: a lone Map-Register waits for nothing) and waits
up to ``wait`` once flushes follow each other closely, so a batch gathers what
arrives meanwhile. The caller still flushes at once when a batch is full.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

WAIT = 0.001          # s a batch may wait while busy
BUSY_WITHIN = 0.002   # s: a flush this soon after the last one means busy


class Coalescer:
    """Schedules ``flush`` (a callable) for a batch that has just become non-empty."""

    def __init__(self, flush: Callable[[], None], clock: Callable[[], float], *, wait: float = WAIT,
                 busy_within: float = BUSY_WITHIN) -> None:
        self._flush, self.clock = flush, clock
        self.wait, self.busy_within = wait, busy_within
        self._last = float("-inf")
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None

    @property
    def scheduled(self) -> bool:
        return self._handle is not None

    def delay(self, now: float) -> float:
        """How long a batch started at ``now`` waits: 0 when idle, ``wait`` when busy."""
        return self.wait if now - self._last < self.busy_within else 0.0

    def schedule(self) -> None:
        """A batch has its first item: flush it at the next turn, or after the wait."""
        if self._handle is not None:
            return
        loop = asyncio.get_running_loop()
        d = self.delay(self.clock())
        self._handle = loop.call_later(d, self._run) if d else loop.call_soon(self._run)

    def flushed(self) -> None:
        """The caller flushed (here or because a batch was full): cancel what was
        scheduled and remember when."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._last = self.clock()

    def _run(self) -> None:
        self._handle = None
        self._flush()
