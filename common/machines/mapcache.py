"""The ITR's map-cache: longest match per (instance ID, family), TTLs, negative entries.

Pure: time comes in as ``now``.  IPv4 and IPv6 prefixes live in one ``pytricia``
tree per (instance ID, family) (DESIGN.md 2); other EIDs (MAC, (S,G)) are matched
exactly.  Rules kept here (RFC 9301 5.4-5.5, WIRE-FORMAT 3.1, 5, 11.4):

* Record TTL is in minutes; 0 deletes the entry now; 0xffffffff means "local
  policy" (``infinite_ttl`` seconds, 24 h by default).
* A record without locators is a negative entry that keeps its action.
* A less-specific never outlives a cached more-specific beneath it: installing
  either one lowers the less-specific's expiry to the earliest expiry below it.
  Hence when the longest match has expired, every covering entry has too.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import pytricia

from common.wire.addr import Eid
from common.wire.eidtext import format_address, format_eid
from common.wire.records import ACTION_NAMES, EidRecord

TTL_LOCAL_POLICY = 0xFFFFFFFF
DEFAULT_INFINITE_TTL = 86400.0
_BITS = {IPv4Address: 32, IPv6Address: 128}


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached mapping: ``ttl`` as received (minutes), ``expires`` absolute seconds."""

    eid: Eid
    locators: tuple
    ttl: int
    installed: float
    expires: float
    action: int = 0
    authoritative: bool = False

    @property
    def negative(self) -> bool:
        return not self.locators

    def view(self, now: float) -> dict:
        """The JSON-ready row of ``decent show map-cache``."""
        return {"eid": format_eid(self.eid),
                "rlocs": [{"address": format_address(l.address), "priority": l.priority,
                           "weight": l.weight, "reachable": l.reachable} for l in self.locators],
                "ttl": self.ttl, "expires_in": max(0.0, round(self.expires - now, 3)),
                "negative": self.negative, "action": ACTION_NAMES.get(self.action, str(self.action)),
                "authoritative": self.authoritative}


def _tree_key(eid: Eid):
    if eid.group is None and type(eid.address) in _BITS:
        return eid.iid, type(eid.address)
    return None


def _pfx(eid: Eid) -> str:
    return f"{format_address(eid.address)}/{eid.length}"


class MapCache:
    """EID-prefix -> :class:`CacheEntry`, with longest-match lookups and expiry."""

    def __init__(self, *, infinite_ttl: float = DEFAULT_INFINITE_TTL) -> None:
        self.infinite_ttl = infinite_ttl
        self._trees: dict[tuple, pytricia.PyTricia] = {}
        self._exact: dict[Eid, CacheEntry] = {}
        self._heap: list[tuple[float, int, Eid]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._exact) + sum(len(t) for t in self._trees.values())

    # -- reading -------------------------------------------------------------
    def entries(self) -> list[CacheEntry]:
        out = list(self._exact.values())
        for t in self._trees.values():
            out.extend(t[k] for k in t)
        return out

    def exact(self, eid: Eid) -> CacheEntry | None:
        tk = _tree_key(eid)
        if tk is None:
            return self._exact.get(eid)
        t = self._trees.get(tk)
        p = _pfx(eid)
        return t[p] if t is not None and t.has_key(p) else None

    def lookup(self, eid: Eid, now: float) -> CacheEntry | None:
        """The longest unexpired entry covering ``eid`` (expired ones are removed)."""
        tk = _tree_key(eid)
        if tk is None:
            e = self._exact.get(eid)
            if e is not None and e.expires <= now:
                self.delete(eid)
                return None
            return e
        t = self._trees.get(tk)
        if t is None:
            return None
        key = _pfx(eid)
        while True:
            best = t.get_key(key)
            if best is None:
                return None
            e = t[best]
            if e.expires > now:
                return e
            t.delete(best)  # the invariant says every cover has expired too; keep looking anyway

    # -- writing -------------------------------------------------------------
    def ttl_seconds(self, ttl: int) -> float:
        return self.infinite_ttl if ttl == TTL_LOCAL_POLICY else ttl * 60.0

    def install(self, rec: EidRecord, now: float) -> CacheEntry | None:
        """Cache one record; TTL 0 deletes its prefix instead and returns None."""
        eid = rec.prefix
        if rec.ttl == 0:
            self.delete(eid)
            return None
        expires = now + self.ttl_seconds(rec.ttl)
        tk = _tree_key(eid)
        if tk is not None:
            t = self._trees.get(tk)
            if t is None:
                t = self._trees[tk] = pytricia.PyTricia(_BITS[tk[1]])
            p = _pfx(eid)
            t[p] = None  # (re)placed first: children() needs the prefix in the tree
            for child in t.children(p):
                ce = t[child].expires
                if ce > now:  # an expired child not yet swept does not count
                    expires = min(expires, ce)
            entry = CacheEntry(eid, tuple(rec.locators), rec.ttl, now, expires, rec.action,
                               rec.authoritative)
            t[p] = entry
            self._cap_covers(t, eid, expires)
        else:
            entry = CacheEntry(eid, tuple(rec.locators), rec.ttl, now, expires, rec.action,
                               rec.authoritative)
            self._exact[eid] = entry
        self._seq += 1
        heapq.heappush(self._heap, (entry.expires, self._seq, eid))
        return entry

    def put(self, entry: CacheEntry) -> None:
        """Install an entry as it is (restoring a saved cache; ``entry.expires`` on
        this cache's clock); covering entries are capped like :meth:`install` does."""
        tk = _tree_key(entry.eid)
        if tk is None:
            self._exact[entry.eid] = entry
        else:
            t = self._trees.get(tk)
            if t is None:
                t = self._trees[tk] = pytricia.PyTricia(_BITS[tk[1]])
            t[_pfx(entry.eid)] = entry
            self._cap_covers(t, entry.eid, entry.expires)
        self._seq += 1
        heapq.heappush(self._heap, (entry.expires, self._seq, entry.eid))

    def _cap_covers(self, t, eid: Eid, expires: float) -> None:
        p = _pfx(eid)
        parent = t.parent(p)
        while parent is not None:
            e = t[parent]
            if e.expires > expires:
                e = _with_expiry(e, expires)
                t[parent] = e
                self._seq += 1
                heapq.heappush(self._heap, (expires, self._seq, e.eid))
            parent = t.parent(parent)

    def delete(self, eid: Eid) -> bool:
        tk = _tree_key(eid)
        if tk is None:
            return self._exact.pop(eid, None) is not None
        t = self._trees.get(tk)
        p = _pfx(eid)
        if t is None or not t.has_key(p):
            return False
        t.delete(p)
        return True

    def next_expiry(self) -> float | None:
        """The earliest expiry of a cached entry, or None."""
        while self._heap:
            when, _, eid = self._heap[0]
            e = self.exact(eid)
            if e is not None and e.expires == when:
                return when
            heapq.heappop(self._heap)  # stale: replaced, re-capped or deleted
        return None

    def expire(self, now: float) -> list[Eid]:
        """Remove every entry whose expiry is at or before ``now``; return their EIDs."""
        gone = []
        while True:
            when = self.next_expiry()
            if when is None or when > now:
                return gone
            _, _, eid = heapq.heappop(self._heap)
            self.delete(eid)
            gone.append(eid)


def _with_expiry(e: CacheEntry, expires: float) -> CacheEntry:
    return CacheEntry(e.eid, e.locators, e.ttl, e.installed, expires, e.action, e.authoritative)


__all__ = ["CacheEntry", "MapCache", "TTL_LOCAL_POLICY", "DEFAULT_INFINITE_TTL"]
