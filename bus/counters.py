"""The counters a role process carries: :class:`common.counters.Counters` on a clock.

Adds what the pure class leaves to the shell: reading the monotonic clock and
writing the drop lines to the role's log.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from common.counters import Counters, DropLine


class RoleCounters(Counters):
    """``inc(name, n=1)``, ``set(name, value)``, ``drop(reason, detail)``, ``snapshot()``.

    ``drop`` counts under ``dropped.<reason>`` and logs (warning) at most one line
    per reason per ``drop_interval`` seconds, with the count since the last line;
    call :meth:`flush` periodically (the runtime does) to report a burst's tail.
    """

    def __init__(self, log: logging.Logger, *, drop_interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(drop_interval)
        self.log = log
        self.clock = clock

    def drop(self, reason: str, detail: str = "", now: float | None = None) -> str | None:
        line = super().drop(reason, detail, self.clock() if now is None else now)
        if line is not None:
            self._log(line)
        return line

    def flush(self, now: float | None = None) -> list[str]:
        lines = super().flush(self.clock() if now is None else now)
        for line in lines:
            self._log(line)
        return lines

    def _log(self, line: str) -> None:
        # event/fields for JSON logs (roles.logfmt); text logs show the line as before
        fields = ({"reason": line.reason, "count": line.count, "detail": line.detail}
                  if isinstance(line, DropLine) else {})
        self.log.warning("%s", line, extra={"event": "dropped", "fields": fields})
