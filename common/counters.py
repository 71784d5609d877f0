"""Per-process counters and the rate-limited drop log.

Every role counts what it received, answered and dropped; the runtime publishes
the figures in its heartbeat so ``decent counters`` and the watchdog read them off
the bus.  A drop is counted under ``dropped.<reason>`` and logged at most once per
reason per interval, the line carrying how many were dropped since the previous
line, so a flood of bad packets costs one log line every few seconds, not one per
packet.

Pure: time comes in as ``now`` (seconds, any monotonic origin); the caller prints
the lines these functions return.
"""

from __future__ import annotations

from dataclasses import dataclass

DROP_PREFIX = "dropped."


@dataclass
class _Reason:
    last_line: float      # when the last line for this reason was emitted
    pending: int = 0      # drops since that line
    detail: str = ""      # the newest detail not yet logged


class DropLimiter:
    """Decides which drops are logged: one line per reason per ``interval`` seconds.

    The first drop of a reason is logged at once.  Later drops within the interval
    are only counted; the first drop after the interval (or :meth:`flush`, which the
    shell calls periodically so that the tail of a burst is not left unreported)
    emits one line with the count since the previous line and the newest detail.
    """

    def __init__(self, interval: float = 10.0) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self._reasons: dict[str, _Reason] = {}

    def note(self, reason: str, detail: str, now: float) -> str | None:
        """Record one drop; return the log line to emit now, or None."""
        r = self._reasons.get(reason)
        if r is None:
            self._reasons[reason] = _Reason(last_line=now)
            return _line(reason, 1, detail, first=True)
        r.pending += 1
        r.detail = detail
        if now - r.last_line >= self.interval:
            return self._emit(reason, r, now)
        return None

    def flush(self, now: float) -> list[str]:
        """Lines for reasons with unreported drops whose interval has passed."""
        return [self._emit(reason, r, now) for reason, r in self._reasons.items()
                if r.pending and now - r.last_line >= self.interval]

    def _emit(self, reason: str, r: _Reason, now: float) -> str:
        line = _line(reason, r.pending, r.detail, first=False)
        r.last_line = now
        r.pending = 0
        r.detail = ""
        return line


class DropLine(str):
    """A drop log line (a ``str``) that also carries its parts, for structured logs."""

    reason: str
    count: int
    detail: str

    def __new__(cls, text: str, reason: str, count: int, detail: str) -> "DropLine":
        self = super().__new__(cls, text)
        self.reason, self.count, self.detail = reason, count, detail
        return self


def _line(reason: str, count: int, detail: str, first: bool) -> DropLine:
    what = f"{DROP_PREFIX}{reason}"
    if first:
        return DropLine(f"{what}: {detail}" if detail else what, reason, count, detail)
    tail = f" (last: {detail})" if detail else ""
    return DropLine(f"{what}: {count} more since the last report{tail}", reason, count, detail)


class Counters:
    """Named integer counters plus the drop log.

    ``inc`` for events, ``set`` for gauges, ``drop`` for discarded input (counted
    under ``dropped.<reason>``; returns the line to log, if one is due).
    """

    def __init__(self, drop_interval: float = 10.0) -> None:
        self._values: dict[str, int] = {}
        self.limiter = DropLimiter(drop_interval)

    def inc(self, name: str, n: int = 1) -> None:
        self._values[name] = self._values.get(name, 0) + n

    def set(self, name: str, value: int) -> None:
        self._values[name] = value

    def get(self, name: str) -> int:
        return self._values.get(name, 0)

    def drop(self, reason: str, detail: str, now: float) -> str | None:
        self.inc(DROP_PREFIX + reason)
        return self.limiter.note(reason, detail, now)

    def flush(self, now: float) -> list[str]:
        return self.limiter.flush(now)

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter, for heartbeats and ``decent counters``."""
        return dict(self._values)
