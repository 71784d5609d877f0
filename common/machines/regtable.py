"""The registration table as lookups see it: longest match, more-specifics, negatives.

One instance lives in every Map-Resolver worker (its replica) and in every
Map-Server shard.  Entries are keyed by a string (``<eid>|<xtr-id hex>``) and carry
the value dict that the Map-Server publishes (see :func:`entry_value`).  Unicast
prefixes sit in one ``pytricia`` tree per (instance ID, family); a sorted list of
network numbers per tree gives the least-specific negative prefix in O(log n)
(the longest common prefix with any stored network is found at a neighbour).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytricia

from common.wire.addr import Eid, clear_host_bits
from common.wire.eidtext import format_address, format_eid, parse_eidspec
from common.wire.records import Locator

_BITS = {4: 32, 6: 128}


def _family(addr) -> int:
    return 4 if isinstance(addr, IPv4Address) else 6


def _tree_key(eid: Eid) -> tuple[int, int]:
    return eid.iid, _family(eid.address)


def _pfx(eid: Eid) -> str:
    return f"{format_address(eid.address)}/{eid.length}"


def entry_key(eid: Eid, xtr_id: bytes) -> str:
    return f"{format_eid(eid)}|{xtr_id.hex()}"


def locator_value(loc: Locator) -> list:
    flags = (loc.local << 2) | (loc.probed << 1) | int(loc.reachable)
    return [format_address(loc.address), loc.priority, loc.weight, loc.mpriority, loc.mweight, flags]


def locator_from_value(v: list) -> Locator:
    return Locator(ip_address(v[0]), v[1], v[2], v[3], v[4], bool(v[5] & 4), bool(v[5] & 2), bool(v[5] & 1))


def entry_value(eid: Eid, site: str, locators, *, ttl: int, proxy: bool, merge: bool, xtr_id: bytes,
                registrant: str, rle=None) -> dict:
    """The msgpack-able value published for one registration."""
    v = {"eid": format_eid(eid), "site": site, "rlocs": [locator_value(l) for l in locators],
         "ttl": ttl, "proxy": proxy, "merge": merge, "xtr": xtr_id.hex(), "registrant": registrant}
    if rle:
        v["rle"] = rle  # [[address, level], ...] for group-membership registrations
    return v


@dataclass(slots=True)
class Entry:
    key: str
    eid: Eid
    value: dict
    locators: tuple

    @property
    def proxy(self) -> bool:
        return bool(self.value.get("proxy"))


@dataclass(frozen=True, slots=True)
class Match:
    """A positive lookup: the best prefix, and every stored prefix inside it (best first)."""

    prefixes: tuple          # ((Eid, [Entry, ...]), ...)

    @property
    def best(self) -> tuple:
        return self.prefixes[0]


class RegistrationTable:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._trees: dict[tuple[int, int], pytricia.PyTricia] = {}
        self._nets: dict[tuple[int, int], list[int]] = {}
        self._mcast: dict[Eid, dict[str, Entry]] = {}
        self.version = 0   # bumped by every change: lets readers cache derived answers

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self.__init__()

    def entries(self):
        return self._entries.values()

    def get(self, key: str) -> Entry | None:
        return self._entries.get(key)

    # -- updates -----------------------------------------------------------------
    def set(self, key: str, value: dict) -> None:
        self.version += 1
        if key in self._entries:
            self.delete(key)
        eid = parse_eidspec(value["eid"])
        e = Entry(key, eid, value, tuple(locator_from_value(v) for v in value.get("rlocs", ())))
        self._entries[key] = e
        if eid.is_multicast:
            self._mcast.setdefault(eid, {})[key] = e
            return
        tk = _tree_key(eid)
        tree = self._trees.get(tk)
        if tree is None:
            tree = self._trees[tk] = pytricia.PyTricia(_BITS[tk[1]])
            self._nets[tk] = []
        p = _pfx(eid)
        bucket = tree.get(p) if tree.has_key(p) else None
        if bucket is None:
            tree[p] = {key: e}
            bisect.insort(self._nets[tk], int(eid.address))
        else:
            bucket[key] = e

    def delete(self, key: str) -> None:
        self.version += 1
        e = self._entries.pop(key, None)
        if e is None:
            return
        if e.eid.is_multicast:
            b = self._mcast.get(e.eid, {})
            b.pop(key, None)
            if not b:
                self._mcast.pop(e.eid, None)
            return
        tk = _tree_key(e.eid)
        tree = self._trees[tk]
        p = _pfx(e.eid)
        bucket = tree.get(p)
        bucket.pop(key, None)
        if not bucket:
            tree.delete(p)
            nets = self._nets[tk]
            i = bisect.bisect_left(nets, int(e.eid.address))
            if i < len(nets) and nets[i] == int(e.eid.address):
                nets.pop(i)

    # -- lookups -----------------------------------------------------------------
    def lookup(self, eid: Eid) -> Match | None:
        """Longest match for ``eid`` plus every more-specific inside it (RFC 9301 5.5)."""
        if eid.is_multicast:
            return self._lookup_mcast(eid)
        tree = self._trees.get(_tree_key(eid))
        if tree is None:
            return None
        best = tree.get_key(_pfx(eid))
        if best is None:
            return None
        out = [(_eid_of(eid.iid, best), list(tree[best].values()))]
        for child in tree.children(best):
            out.append((_eid_of(eid.iid, child), list(tree[child].values())))
        return Match(tuple(out))

    def best_key(self, eid: Eid):
        """A cheap handle on the longest match of a unicast ``eid`` (None: no match);
        equal handles mean equal :meth:`lookup` results while ``version`` stands."""
        tk = (eid.iid, 4 if isinstance(eid.address, IPv4Address) else 6)
        tree = self._trees.get(tk)
        if tree is None:
            return None
        a = eid.address
        best = tree.get_key(f"{a}/{eid.length}" if tk[1] == 4 else _pfx(eid))
        return None if best is None else (tk, best)

    def exact(self, eid: Eid) -> list[Entry]:
        if eid.is_multicast:
            return list(self._mcast.get(eid, {}).values())
        tree = self._trees.get(_tree_key(eid))
        p = _pfx(eid)
        if tree is None or not tree.has_key(p):
            return []
        return list(tree[p].values())

    def _lookup_mcast(self, eid: Eid) -> Match | None:
        best = None
        for k in self._mcast:
            if (k.iid == eid.iid and type(k.group) is type(eid.group) and k.group_len <= eid.group_len
                    and clear_host_bits(eid.group, k.group_len) == k.group
                    and type(k.address) is type(eid.address) and k.length <= eid.length
                    and clear_host_bits(eid.address, k.length) == k.address):
                if best is None or (k.group_len, k.length) > (best.group_len, best.length):
                    best = k
        return None if best is None else Match(((best, list(self._mcast[best].values())),))

    def neighbour_lcp(self, eid: Eid) -> int:
        """Longest common prefix (bits) of ``eid`` with any stored network, or -1."""
        nets = self._nets.get(_tree_key(eid))
        if not nets:
            return -1
        bits = _BITS[_family(eid.address)]
        x = int(eid.address)
        i = bisect.bisect_left(nets, x)
        best = -1
        for j in (i - 1, i):
            if 0 <= j < len(nets):
                best = max(best, bits - (x ^ nets[j]).bit_length())
        return best


def _eid_of(iid: int, prefix: str) -> Eid:
    a, _, n = prefix.partition("/")
    return Eid(iid, ip_address(a), int(n))


class PrefixSet:
    """Static prefixes (configured site prefixes) with the same lookups."""

    def __init__(self, eids=()) -> None:
        self._t = RegistrationTable()
        for i, e in enumerate(eids):
            if not e.is_multicast:
                self._t.set(f"cfg{i}", {"eid": format_eid(e)})

    def covering(self, eid: Eid) -> Eid | None:
        if eid.is_multicast:
            return None
        hit = self._t.best_key(eid)
        return None if hit is None else _eid_of(eid.iid, hit[1])

    def neighbour_lcp(self, eid: Eid) -> int:
        return self._t.neighbour_lcp(eid)


def negative_prefix(eid: Eid, tables, floor: int = 0, ceiling: int | None = None) -> Eid:
    """The least-specific prefix containing ``eid`` that overlaps no stored prefix.

    ``tables`` are RegistrationTables/PrefixSets none of whose prefixes contain
    ``eid``; ``floor`` is a minimum length (the aggregate it falls in, or the
    hash mask in pull mode).  WIRE-FORMAT 11.6, with c + 1.
    """
    bits = _BITS[_family(eid.address)]
    length = floor
    for t in tables:
        c = t.neighbour_lcp(eid)
        if c >= 0:
            length = max(length, c + 1)
    length = min(length, bits if ceiling is None else ceiling, eid.length)
    return Eid(eid.iid, clear_host_bits(eid.address, length), length)
