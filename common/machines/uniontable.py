"""Lookups over several registration tables at once: a Map-Resolver worker's compact
replicas, one per map_server shard (common/machines/compact.py)."""

from __future__ import annotations

from ipaddress import ip_address

from common.machines.regtable import Entry, Match, negative_prefix
from common.wire.addr import Eid


class UnionTable:
    """Lookups over several tables at once (one replica per map_server shard): the
    longest match over all of them and every more-specific inside it from each."""

    def __init__(self, tables) -> None:
        self.tables = list(tables)

    @property
    def version(self) -> int:
        return sum(t.version for t in self.tables)

    def __len__(self) -> int:
        return sum(len(t) for t in self.tables)

    def get(self, key: str) -> Entry | None:
        return next((e for t in self.tables if (e := t.get(key)) is not None), None)

    def entries(self):
        for t in self.tables:
            yield from t.entries()

    def exact(self, eid: Eid) -> list[Entry]:
        return [e for t in self.tables for e in t.exact(eid)]

    def best_key(self, eid: Eid):
        best = None
        for t in self.tables:
            hit = t.best_key(eid)
            if hit is not None and (best is None or _plen(hit[1]) > _plen(best[1])):
                best = hit
        return best

    def lookup(self, eid: Eid) -> Match | None:
        if eid.is_multicast:
            found = [m for t in self.tables if (m := t.lookup(eid)) is not None]
            if not found:
                return None
            top = max(m.best[0].specificity() for m in found)
            entries = [e for m in found if m.best[0].specificity() == top for e in m.best[1]]
            return Match(((next(m.best[0] for m in found if m.best[0].specificity() == top), entries),))
        hit = self.best_key(eid)
        if hit is None:
            return None
        a, _, n = hit[1].partition("/")
        best = Eid(eid.iid, ip_address(a), int(n))
        merged: dict = {}
        for t in self.tables:
            for p, es in t.within(best):
                merged.setdefault(p, []).extend(es)
        first = merged.pop(best)
        rest = sorted(merged.items(), key=lambda kv: (int(kv[0].address), kv[0].length))
        return Match(((best, first),) + tuple(rest))

    def carve(self, eid: Eid) -> tuple | None:
        hit = self.best_key(eid)
        if hit is None:
            return None
        a, _, n = hit[1].partition("/")
        best = Eid(eid.iid, ip_address(a), int(n))
        return best, self.exact(best), negative_prefix(eid, self.tables, floor=best.length)

    def overlaps_outside(self, eid: Eid, length: int) -> bool:
        return any(t.overlaps_outside(eid, length) for t in self.tables)


def _plen(prefix: str) -> int:
    return int(prefix.rpartition("/")[2])
