"""Stand-ins for a role context's parts, shared by unit tests of role-side classes."""

from __future__ import annotations


class Counters:
    """``ctx.counters`` as roles use it (``inc``, ``drop``): counts kept in ``n``,
    a drop as ``dropped.<reason>``."""

    def __init__(self) -> None:
        self.n: dict = {}

    def inc(self, name, by=1) -> None:
        self.n[name] = self.n.get(name, 0) + by

    def drop(self, reason, detail="") -> None:
        self.inc(f"dropped.{reason}")
