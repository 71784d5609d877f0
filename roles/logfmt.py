"""How a role process writes its log lines: ``[node] log_format = "text" | "json"``.

text: ``<time> <role>:<instance> <LEVEL> <message>``, as always.

json: one object per line, for log shippers::

    {"time": "2026-12-03T04:50:01.123Z", "node": "appliance", "role": "etr",
     "instance": 0, "level": "warning", "event": "dropped",
     "message": "dropped.bad-punt: ...", "fields": {"reason": "bad-punt", "count": 1}}

``event`` is what a call site names with ``extra={"event": ..., "fields": {...}}``
(the drop log does: event "dropped", fields reason, count, detail); otherwise the
message's format string, which is the same for every occurrence of a line and so
groups them.  ``fields`` also carries the exception text of ``log.exception`` calls.
"""

from __future__ import annotations

import json
import logging
import sys
import time

TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def __init__(self, node: str, role: str, instance: int) -> None:
        super().__init__()
        self.node, self.role, self.instance = node, role, instance

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(getattr(record, "fields", None) or {})
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        event = getattr(record, "event", None) or str(record.msg)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        obj = {"time": f"{stamp}.{int(record.msecs):03d}Z", "node": self.node,
               "role": self.role, "instance": self.instance,
               "level": record.levelname.lower(), "event": event,
               "message": record.getMessage(), "fields": fields}
        return json.dumps(obj, default=str, ensure_ascii=False)


def make_logger(role: str, instance: int, level: str, fmt: str = "text",
                node: str = "", stream=None) -> logging.Logger:
    """The role's logger, writing to ``stream`` (stderr: supervisord keeps it)."""
    log = logging.getLogger(f"{role}:{instance}")
    log.propagate = False
    log.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(node, role, instance) if fmt == "json"
                         else logging.Formatter(TEXT_FORMAT))
    log.addHandler(handler)
    log.setLevel(level.upper())
    return log
