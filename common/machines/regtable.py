"""The registration table as lookups see it: longest match, more-specifics, negatives.

One instance lives in every Map-Resolver worker (its replica) and in every
Map-Server shard.  Entries are typed (:class:`Entry`: an :class:`Eid`, sorted
:class:`Locator` objects, RLE entries); :func:`entry_value` and
:func:`entry_from_value` are the one place where they turn into and back from the
msgpack-able dict the Map-Server publishes and stores.  Entries are keyed by a
string (``<eid>|<xtr-id hex>``).  Unicast prefixes sit in one ``pytricia`` tree
per (instance ID, family); beside it a sorted list of network numbers with the
prefix lengths at each, which answers "does this prefix overlap anything stored
that does not contain this EID" in O(log n) (:func:`negative_prefix`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address

import pytricia

from common.wire.addr import Eid, RleEntry, clear_host_bits
from common.machines.eidfast import parse_eid   # parse_eidspec, faster for canonical text
from common.wire.eidtext import format_address, format_eid
from common.wire.records import Locator

_BITS = {4: 32, 6: 128}


def _family(addr) -> int:
    return 4 if isinstance(addr, IPv4Address) else 6


def _tree_key(eid: Eid) -> tuple[int, int]:
    return eid.iid, _family(eid.address)


def _pfx(eid: Eid) -> str:
    return f"{format_address(eid.address)}/{eid.length}"


def best_key_in(trees: dict, eid: Eid):
    """(tree key, longest matching prefix) of a unicast ``eid`` in pytricia ``trees``
    keyed by (instance ID, family), or None: the handle both table kinds give."""
    tk = (eid.iid, 4 if isinstance(eid.address, IPv4Address) else 6)
    tree = trees.get(tk)
    if tree is None:
        return None
    best = tree.get_key(_pfx(eid))
    return None if best is None else (tk, best)


def entry_key(eid: Eid, xtr_id: bytes) -> str:
    return f"{format_eid(eid)}|{xtr_id.hex()}"


def locator_value(loc: Locator) -> list:
    flags = (loc.local << 2) | (loc.probed << 1) | int(loc.reachable)
    return [format_address(loc.address), loc.priority, loc.weight, loc.mpriority, loc.mweight, flags]


def locator_from_value(v: list) -> Locator:
    return Locator(ip_address(v[0]), v[1], v[2], v[3], v[4], bool(v[5] & 4), bool(v[5] & 2), bool(v[5] & 1))


@dataclass(slots=True)
class Entry:
    """One registration: a prefix from one registrant (its xTR-ID when merging)."""

    key: str
    eid: Eid
    site: str
    locators: tuple           # Locator, IP addresses only, in locator_sort_key order
    ttl: int                  # record TTL, minutes
    proxy: bool               # P: the Map-Server answers for it
    merge: bool
    xtr_id: bytes
    registrant: str           # address the Map-Register came from
    rle: tuple = ()           # RleEntry (IP address, level): group membership

    def content(self) -> tuple:
        """What a Map-Request answer depends on: a refresh that leaves it equal and
        comes from the same registrant changes nothing anybody sees."""
        return (self.eid, self.site, self.locators, self.ttl, self.proxy, self.merge, self.rle)

    def same(self, other: "Entry | None") -> bool:
        return (other is not None and self.content() == other.content()
                and self.xtr_id == other.xtr_id and self.registrant == other.registrant)

    @property
    def value(self) -> dict:
        return entry_value(self.eid, self.site, self.locators, ttl=self.ttl, proxy=self.proxy,
                           merge=self.merge, xtr_id=self.xtr_id, registrant=self.registrant,
                           rle=[[format_address(r.address), r.level] for r in self.rle])


def entry_value(eid: Eid, site: str, locators, *, ttl: int, proxy: bool, merge: bool, xtr_id: bytes,
                registrant: str, rle=None) -> dict:
    """The msgpack-able value published and stored for one registration."""
    v = {"eid": format_eid(eid), "site": site, "rlocs": [locator_value(l) for l in locators],
         "ttl": ttl, "proxy": proxy, "merge": merge, "xtr": xtr_id.hex(), "registrant": registrant}
    if rle:
        v["rle"] = [list(x) for x in rle]  # [[address, level], ...] for group-membership registrations
    return v


_LOCSETS: dict = {}      # locator-set value -> its Locator tuple (immutable, shared)


def locator_set(rlocs) -> tuple:
    """The Locators of a value's ``rlocs``; the registrations of one registrant share
    one tuple (issue 11: the shard's memory), at most 4096 distinct sets remembered."""
    try:
        k = tuple(map(tuple, rlocs))
        got = _LOCSETS.get(k)
    except TypeError:
        return tuple(locator_from_value(x) for x in rlocs)
    if got is None:
        got = tuple(locator_from_value(x) for x in rlocs)
        if len(_LOCSETS) >= 4096:
            _LOCSETS.clear()
        _LOCSETS[k] = got
    return got


def entry_from_value(key: str, v: dict) -> Entry:
    """The typed entry of a published value (raises ValueError/KeyError/TypeError if
    it is not one)."""
    rle = tuple(RleEntry(ip_address(a), int(level)) for a, level in (v.get("rle") or ()))
    return Entry(key, parse_eid(v["eid"]), str(v.get("site", "")),
                 locator_set(v.get("rlocs", ())), int(v.get("ttl", 0)),
                 bool(v.get("proxy")), bool(v.get("merge")), bytes.fromhex(v.get("xtr", "")),
                 str(v.get("registrant", "")), rle)


@dataclass(frozen=True, slots=True)
class Match:
    """A positive lookup: the best prefix, and every stored prefix inside it (best first)."""

    prefixes: tuple          # ((Eid, [Entry, ...]), ...)

    @property
    def best(self) -> tuple:
        return self.prefixes[0]


class RegistrationTable:
    # hook (issue 11, the fast path's exact cache invalidation): called right after
    # every version step with (the changed Eid or None, removed?) by put/delete
    on_change = None

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._trees: dict[tuple[int, int], pytricia.PyTricia] = {}
        self._nets: dict[tuple[int, int], list[int]] = {}            # sorted network numbers
        self._pending: dict[tuple[int, int], list[int]] = {}         # added, not merged in yet
        self._lens: dict[tuple[int, int], dict[int, set[int]]] = {}  # network -> lengths stored
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
        """Store a published value (the replica's path)."""
        self.put(entry_from_value(key, value))

    def put(self, e: Entry) -> None:
        self.version += 1
        if self.on_change is not None:
            self.on_change(e.eid, False)
        key, eid = e.key, e.eid
        if key in self._entries:
            self.delete(key)
        self._entries[key] = e
        if eid.is_multicast:
            self._mcast.setdefault(eid, {})[key] = e
            return
        tk = _tree_key(eid)
        tree = self._trees.get(tk)
        if tree is None:
            tree = self._trees[tk] = pytricia.PyTricia(_BITS[tk[1]])
            self._nets[tk], self._lens[tk] = [], {}
        p = _pfx(eid)
        bucket = tree.get(p) if tree.has_key(p) else None
        if bucket is None:
            tree[p] = {key: e}
            net = int(eid.address)
            lens = self._lens[tk].get(net)
            if lens is None:
                self._lens[tk][net] = {eid.length}
                # merged into the sorted list on the next read (_sorted_nets): a fill of
                # n prefixes in any order costs one sort, not n linear inserts
                self._pending.setdefault(tk, []).append(net)
            else:
                lens.add(eid.length)
        else:
            bucket[key] = e

    def delete(self, key: str) -> None:
        self.version += 1
        e = self._entries.pop(key, None)
        if self.on_change is not None:
            self.on_change(None if e is None else e.eid, True)
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
            net = int(e.eid.address)
            lens = self._lens[tk][net]
            lens.discard(e.eid.length)
            if not lens:
                del self._lens[tk][net]
                nets = self._sorted_nets(tk)
                i = bisect.bisect_left(nets, net)
                if i < len(nets) and nets[i] == net:
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
        return best_key_in(self._trees, eid)

    def carve(self, eid: Eid) -> tuple | None:
        """The one-record answer for a unicast host ``eid`` when its match and the
        more-specifics inside it do not fit one reply (RFC 9301 5.5 cannot be met):
        ``(best, entries, carved)`` where ``best`` is the longest match, ``entries``
        its registrations and ``carved`` the largest prefix inside ``best`` that
        contains ``eid`` and no other stored prefix (found like a negative prefix:
        :func:`negative_prefix` with ``best`` as the floor).  None: no match."""
        hit = self.best_key(eid)
        if hit is None:
            return None
        best = _eid_of(eid.iid, hit[1])
        carved = negative_prefix(eid, [self], floor=best.length)
        return best, list(self._trees[hit[0]][hit[1]].values()), carved

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
            if k.contains(eid) and (best is None or k.specificity() > best.specificity()):
                best = k
        return None if best is None else Match(((best, list(self._mcast[best].values())),))

    def _sorted_nets(self, tk) -> list[int]:
        """The sorted network numbers of one tree, pending additions merged in (a sort
        of a sorted run plus a few appended ones is linear; of a fill, n log n)."""
        nets = self._nets.get(tk)
        pending = self._pending.pop(tk, None)
        if pending:
            nets.extend(pending)
            nets.sort()
        return nets or []

    def overlaps_outside(self, eid: Eid, length: int) -> bool:
        """Does ``eid``'s address masked to ``length`` bits contain a stored unicast
        prefix that does not itself contain ``eid``'s address?

        The stored networks inside the candidate form one range of the sorted list;
        a network there is harmless only if every length stored at it is at most its
        common prefix with the address (then each of those prefixes contains the
        address).  At most one network per length can be harmless, so the scan
        stops after a bounded number of steps."""
        tk = _tree_key(eid)
        nets = self._sorted_nets(tk)
        if not nets:
            return False
        bits = _BITS[tk[1]]
        x = int(eid.address)
        lo = (x >> (bits - length)) << (bits - length) if length else 0
        hi = lo + (1 << (bits - length)) - 1
        lens = self._lens[tk]
        i = bisect.bisect_left(nets, lo)
        while i < len(nets) and nets[i] <= hi:
            net = nets[i]
            common = bits - (x ^ net).bit_length()
            if max(lens[net]) > max(common, length - 1):
                return True
            i += 1
        return False


def _eid_of(iid: int, prefix: str) -> Eid:
    a, _, n = prefix.partition("/")
    return Eid(iid, ip_address(a), int(n))


class PrefixSet:
    """Static prefixes (configured site prefixes) with the same lookups."""

    def __init__(self, eids=()) -> None:
        self._t = RegistrationTable()
        self._mcast = [e for e in eids if e.is_multicast]
        for i, e in enumerate(eids):
            if not e.is_multicast:
                self._t.put(Entry(f"cfg{i}", e, "", (), 0, False, False, b"", ""))

    def covering(self, eid: Eid) -> Eid | None:
        """The most specific configured prefix containing ``eid``."""
        if eid.is_multicast:
            best = None
            for p in self._mcast:
                if p.contains(eid) and (best is None or p.specificity() > best.specificity()):
                    best = p
            return best
        hit = self._t.best_key(eid)
        return None if hit is None else _eid_of(eid.iid, hit[1])

    def overlaps_outside(self, eid: Eid, length: int) -> bool:
        return self._t.overlaps_outside(eid, length)


def host_of(eid: Eid) -> Eid:
    """The host EID at a unicast prefix's first address."""
    return Eid(eid.iid, eid.address, _BITS[_family(eid.address)])


def negative_prefix(eid: Eid, tables, floor: int = 0) -> Eid:
    """The least-specific prefix containing ``eid``'s address that overlaps no stored
    prefix not containing that address, and is at least ``floor`` long.

    ``tables`` are RegistrationTables/PrefixSets; prefixes containing the address
    are the caller's business (a registered one means a positive answer; the
    configured aggregate it falls in is passed as ``floor``).  The answer may be
    longer than ``eid`` when ``eid`` is a prefix holding registrations: it then
    contains ``eid``'s first address and covers nothing registered or configured
    (WIRE-FORMAT 11.6; RFC 9301 8.4).  Overlap shrinks as the length grows, so the
    shortest clear length is found by bisection."""
    bits = _BITS[_family(eid.address)]
    lo, hi = min(floor, bits), bits      # a host-length prefix overlaps nothing outside
    while lo < hi:
        mid = (lo + hi) // 2
        if any(t.overlaps_outside(eid, mid) for t in tables):
            lo = mid + 1
        else:
            hi = mid
    return Eid(eid.iid, clear_host_bits(eid.address, lo), lo)
