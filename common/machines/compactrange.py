"""A compact table's sorted index (common/machines/compact.py): per tree, a sorted
array of packed ``network << 8 | length`` keys (``array('Q')`` for IPv4), additions
merged in on the next read; it answers the range questions - the prefixes inside one
(:meth:`~CompactRanges.within`, :meth:`~CompactRanges.iter_within`) and the overlap
question of :func:`~common.machines.regtable.negative_prefix`
(:meth:`~CompactRanges.overlaps_outside`).  Methods of :class:`CompactTable
<common.machines.compact.CompactTable>`, on its state."""

from __future__ import annotations

import bisect
from array import array
from ipaddress import IPv4Address, IPv6Address

from common.machines.compactitem import _BITS, _items, _pair, _tk
from common.machines.regtable import Entry
from common.wire.addr import Eid
from common.wire.eidtext import format_address

_SMALL_MERGE = 64      # pending index additions inserted one by one below this, else one sort


class CompactRanges:
    """The range lookups of :class:`~common.machines.compact.CompactTable` (its base class)."""

    def within(self, prefix: Eid) -> list[tuple[Eid, list[Entry]]]:
        """Every stored unicast prefix equal to or inside ``prefix``, with its entries,
        in (network, length) order (for :class:`~common.machines.uniontable.UnionTable`)."""
        return [_pair(prefix.iid, es) for es in self._within(prefix, None)]

    def iter_within(self, prefix: Eid | None, site: str | None = None):
        """The entries inside ``prefix`` (None: all), lazily, unicast in (instance ID,
        family, network, length) order, then (S,G); only ``site``'s when given, judged
        on the shared item before any entry is built (``decent show registrations`` at
        a million registrations builds only what it shows)."""
        if prefix is None or not prefix.is_multicast:
            tks = sorted(self._trees) if prefix is None else [_tk(prefix)]
            for tk in tks:
                whole = Eid(tk[0], IPv4Address(0) if tk[1] == 4 else IPv6Address(0), 0)
                for es in self._within(whole if prefix is None else prefix, site):
                    yield from es
        if prefix is None or prefix.is_multicast:
            for e in self._m.entries():
                if (prefix is None or prefix.contains(e.eid)) and site in (None, e.site):
                    yield e

    def _within(self, prefix: Eid, site: str | None):
        tk = _tk(prefix)
        tree = self._trees.get(tk)
        if tree is None:
            return
        keys = self._sorted(tk)
        bits = _BITS[tk[1]]
        lo = int(prefix.address)
        hi = lo + (1 << (bits - prefix.length)) - 1
        i = bisect.bisect_left(keys, lo << 8)
        while i < len(keys) and keys[i] >> 8 <= hi:
            k = keys[i]
            i += 1
            if k & 255 < prefix.length:
                continue
            net = k >> 8
            p = f"{format_address(IPv4Address(net) if tk[1] == 4 else IPv6Address(net))}/{k & 255}"
            v = tree[p]
            if site is not None:
                v = tuple(it for it in _items(v) if self._item_fields(it)[0] == site)
                if not v:
                    continue
            yield self._entries(tk[0], p, v)

    def _sorted(self, tk):
        keys = self._index.get(tk)
        pending = self._pending.pop(tk, None)
        if pending:
            if len(pending) <= _SMALL_MERGE:
                for k in pending:
                    keys.insert(bisect.bisect_left(keys, k), k)
            else:
                merged = sorted(keys)
                merged.extend(pending)
                merged.sort()
                keys = self._index[tk] = array("Q", merged) if tk[1] == 4 else merged
        return keys if keys is not None else []

    def overlaps_outside(self, eid: Eid, length: int) -> bool:
        """As :meth:`RegistrationTable.overlaps_outside`: does ``eid``'s address masked
        to ``length`` bits contain a stored unicast prefix not containing the address?
        Harmless keys in the range are at most two per length, so the scan is bounded."""
        tk = _tk(eid)
        keys = self._sorted(tk)
        if not keys:
            return False
        bits = _BITS[tk[1]]
        x = int(eid.address)
        lo = (x >> (bits - length)) << (bits - length) if length else 0
        hi = lo + (1 << (bits - length)) - 1
        floor = length - 1
        i = bisect.bisect_left(keys, lo << 8)
        n = len(keys)
        while i < n:
            k = keys[i]
            net = k >> 8
            if net > hi:
                return False
            common = bits - (x ^ net).bit_length()
            if k & 255 > (common if common > floor else floor):
                return True
            i += 1
        return False
