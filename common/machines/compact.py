"""A compact registration table: the Map-Resolver worker's replica (issue 11).

Same lookups as :class:`common.machines.regtable.RegistrationTable` (``lookup``,
``best_key``, ``carve``, ``exact``, ``overlaps_outside``, ``get``, ``set``, ``put``,
``delete``, ``version``) but no object graph per registration:

- one ``pytricia`` tree per (instance ID, family) maps each stored prefix to its
  registration *item* (or a tuple of items when several registrants hold the
  prefix, in arrival order);
- an item is the registration without its EID, msgpack-encoded (``bytes``):
  site, locators, TTL, P and M bits, xTR-ID, registrant, RLE, and the key only when
  it is not the usual one (:func:`usual_key`: ``<eid>|<xtr-id hex>`` with the M bit,
  ``<eid>|`` without, as the Map-Server makes them).  Items are interned
  (refcounted), so the registrations of one registrant, which differ only by prefix,
  share one object;
- a sorted array of packed ``network << 8 | length`` keys per tree (``array('Q')``
  for IPv4) answers the overlap question of :func:`negative_prefix`; additions are
  merged into it on the next read (one sort per fill, whatever the arrival order).

:class:`~common.machines.regtable.Entry` objects are built only when a lookup asks
(decoding an item is cached per distinct item).  Multicast (S,G) registrations are
rare and sit in a plain ``RegistrationTable`` inside.

:meth:`CompactTable.adopt` takes over another table's contents in one step: the
replica fills a fresh table in the background and swaps it in (docs/replica.md).

Beside this module: the item's encoding (common/machines/compactitem.py), the sorted
index and its range lookups (common/machines/compactrange.py, a base class of the
table), a snapshot chunk's fill (common/machines/compactfill.py) and a store's load
(common/machines/compactload.py).  :class:`~common.machines.uniontable.UnionTable`
answers over several tables (one per map_server shard).
"""

from __future__ import annotations

import bisect
from array import array
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytricia

from common.machines.compactfill import fill_items
from common.machines.compactitem import _BITS, _fields, _items, _pack, _pair, _tk, usual_key
from common.machines.compactrange import CompactRanges
from common.machines.regtable import Entry, Match, RegistrationTable, best_key_in, entry_from_value, \
    locator_value, negative_prefix
from common.machines.eidfast import parse_text as _parse
from common.wire.addr import Eid
from common.wire.eidtext import format_address


class CompactTable(CompactRanges):
    """See the module docstring."""

    # hook (as RegistrationTable.on_change, for the fast path's cache): called right
    # after every version step with (the changed Eid or None, removed?); adopt and
    # clear step the version without it (a reader sees a step it was not told of)
    on_change = None
    # a locator as stored in an item (the shard's subclass keeps the unused flag bits)
    _locator_value = staticmethod(locator_value)
    _item_fields = staticmethod(_fields)     # an item read back (the subclass: flags kept)
    _strict_keys = False      # load: a map key not a string is refused (the shard's store reads so)

    def __init__(self) -> None:
        self._trees: dict[tuple[int, int], pytricia.PyTricia] = {}
        self._index: dict[tuple[int, int], object] = {}     # sorted net << 8 | len
        self._pending: dict[tuple[int, int], list[int]] = {}
        self._intern: dict[bytes, list] = {}                # item -> [item, refcount]
        self._keyed: dict[str, str] = {}                    # unusual key -> its EID text
        self._m = RegistrationTable()                       # multicast (S,G)
        self._n = 0
        self.version = 0
        # (key, tree key, prefix, item) of the last registration added: the shard asks
        # its token right after (ShardTable.token, the refresh plan of a new one)
        self._last_put: tuple | None = None

    def __len__(self) -> int:
        return self._n + len(self._m)

    def clear(self) -> None:
        v = self.version
        self.__init__()
        self.version = v + 1

    def adopt(self, other: "CompactTable") -> None:
        """Become ``other`` (its contents, in one step); ``other`` must not be used after."""
        other.finalize()
        v = max(self.version, other.version) + 1
        hook = self.__dict__.get("on_change")
        self.__dict__.update(other.__dict__)
        self.version = v
        if hook is not None:
            self.on_change = hook

    def finalize(self) -> None:
        """Merge pending index additions now (e.g. before a swap, not on the first read)."""
        for tk in list(self._pending):
            self._sorted(tk)

    # -- updates -----------------------------------------------------------------
    def set(self, key: str, value: dict) -> None:
        """Store a published value (:func:`~common.machines.regtable.entry_value`'s form)."""
        text = value["eid"]
        parsed = _parse(text)
        if parsed is None:
            e = entry_from_value(key, value)      # raises before any change if malformed
            self.delete(key)
            self._m.put(e)
            self._step(e.eid, False)
            return
        xtr = str(value.get("xtr", ""))
        iid, fam, pfx = parsed[0], parsed[1], parsed[2]
        usual = key == usual_key(iid, pfx, xtr, value.get("merge"))
        item = _pack(str(value.get("site", "")), [list(x) for x in value.get("rlocs", ())],
                     int(value.get("ttl", 0)), bool(value.get("proxy")), bool(value.get("merge")), xtr,
                     str(value.get("registrant", "")), [list(x) for x in value.get("rle") or ()],
                     None if usual else key)
        self._add(key, parsed, item, usual)

    def fill(self, items) -> int:
        """Add many published ``(key, value)`` pairs (a snapshot's chunk): the same table
        as :meth:`set` on each, without its per-key work - no version step or
        ``on_change`` per key (one step at the end: a table being filled is not read),
        the item packed straight from the value's fields, a new prefix stored without
        the removal checks a set needs.  Keys already stored, multicast and other
        unusual values go through :meth:`set`.  Returns how many values were refused
        (malformed: nothing kept for them, as :meth:`set` raising)."""
        return fill_items(self, items)

    def load(self, rows) -> list:
        """Insert ``(key, value)`` rows, each value a published value or its msgpack
        bytes (a store's row, a packed writer's snapshot entry), without decoding each
        value: the same table as :meth:`set` per row (common/machines/compactload.py).
        Returns the keys of the rows refused (malformed: nothing kept for them)."""
        from common.machines.compactload import load_rows
        return load_rows(self, rows)

    def _try_set(self, key, value) -> bool:
        try:
            self.set(key, value)
            return True
        except (KeyError, TypeError, ValueError, AttributeError):
            return False

    def put(self, e: Entry) -> None:
        if e.eid.is_multicast:
            self.delete(e.key)
            self._m.put(e)
            self._step(e.eid, False)
            return
        fam = 4 if isinstance(e.eid.address, IPv4Address) else 6
        pfx = f"{format_address(e.eid.address)}/{e.eid.length}"
        parsed = (e.eid.iid, fam, pfx, e.eid.length, int(e.eid.address))
        xtr = e.xtr_id.hex()
        usual = e.key == usual_key(e.eid.iid, pfx, xtr, e.merge)
        item = _pack(e.site, [self._locator_value(x) for x in e.locators], e.ttl, e.proxy, e.merge, xtr,
                     e.registrant, [[format_address(r.address), r.level] for r in e.rle],
                     None if usual else e.key)
        # packed from a typed entry: nothing to validate (issue 10: a new registration's CPU)
        self._add(e.key, parsed, item, usual, checked=True)

    def _add(self, key: str, parsed, item: bytes, usual: bool, checked: bool = False) -> None:
        if not checked:
            _fields(item)                   # a malformed value raises here, before any change
        iid, fam, pfx, length, net = parsed
        tk = (iid, fam)
        tree = self._trees.get(tk)
        # an unusual key is stored under its own text's prefix unless it is in _keyed: when
        # that prefix is this one, has_key(pfx) answers whether anything is there
        if (key in self._keyed or (tree is not None and tree.has_key(pfx))
                or (not usual and key.rpartition("|")[0] != f"[{iid}]{pfx}")):
            self.delete(key)                # (else the key is stored nowhere: nothing to remove)
        else:
            self._step(None, True)          # the version steps as if (RegistrationTable.put)
        got = self._intern.get(item)
        if got is None:
            self._intern[item] = [item, 1]
        else:
            got[1] += 1
            item = got[0]
        if not usual:
            self._keyed[key] = f"[{iid}]{pfx}"
        if tree is None:
            tree = self._trees[tk] = pytricia.PyTricia(_BITS[fam])
            self._index[tk] = array("Q") if fam == 4 else []
        old = tree.get(pfx) if tree.has_key(pfx) else None
        if old is None:
            tree[pfx] = item
            self._pending.setdefault(tk, []).append(net << 8 | length)
        else:
            tree[pfx] = _items(old) + (item,)
        self._n += 1
        self._last_put = (key, tk, pfx, item)
        if self.on_change is not None:
            self._step(_eid(parsed), False)
        else:
            self.version += 1

    def _step(self, eid, removed: bool) -> None:
        self.version += 1
        if self.on_change is not None:
            self.on_change(eid, removed)

    def delete(self, key: str) -> None:
        e = self._m.get(key)
        if e is not None:
            self._m.delete(key)
            self._step(e.eid, True)
            return
        parsed = self._remove(key)
        self._step(None if parsed is None or self.on_change is None else _eid(parsed), True)

    def _remove(self, key: str):
        """Remove ``key``'s registration; returns its parsed prefix (None: not stored)."""
        text = self._keyed.get(key)
        if text is None:
            text, sep, _ = key.rpartition("|")
            if not sep:
                return None
        try:
            parsed = _parse(text)
        except ValueError:
            return None
        if parsed is None:
            return None
        iid, fam, pfx, length, net = parsed
        tk = (iid, fam)
        tree = self._trees.get(tk)
        if tree is None or not tree.has_key(pfx):
            return None
        items = _items(tree[pfx])
        for i, item in enumerate(items):
            f = _fields(item)
            if (f[9] if f[9] is not None else usual_key(iid, pfx, f[8], f[4])) == key:
                break
        else:
            return None
        rest = items[:i] + items[i + 1:]
        self._n -= 1
        if self._last_put is not None and self._last_put[0] == key:
            self._last_put = None
        self._keyed.pop(key, None)
        got = self._intern[item]
        got[1] -= 1
        if not got[1]:
            del self._intern[item]
        if rest:
            tree[pfx] = rest[0] if len(rest) == 1 else rest
            return parsed
        tree.delete(pfx)
        keys = self._sorted(tk)
        k = net << 8 | length
        j = bisect.bisect_left(keys, k)
        if j < len(keys) and keys[j] == k:
            keys.pop(j)
        return parsed

    # -- reading -------------------------------------------------------------------
    def _entries(self, iid: int, pfx: str, v) -> list[Entry]:
        a, _, n = pfx.partition("/")
        eid = Eid(iid, ip_address(a), int(n))
        out = []
        for item in _items(v):
            site, locs, ttl, proxy, merge, xtr, reg, rle, xtr_hex, key = self._item_fields(item)
            out.append(Entry(key if key is not None else usual_key(iid, pfx, xtr_hex, merge), eid, site, locs,
                             ttl, proxy, merge, xtr, reg, rle))
        return out

    def get(self, key: str) -> Entry | None:
        e = self._m.get(key)
        if e is not None:
            return e
        text = self._keyed.get(key) or key.rpartition("|")[0]
        try:
            parsed = _parse(text)
        except ValueError:
            return None
        if parsed is None:
            return None
        tree = self._trees.get((parsed[0], parsed[1]))
        if tree is None or not tree.has_key(parsed[2]):
            return None
        return next((e for e in self._entries(parsed[0], parsed[2], tree[parsed[2]]) if e.key == key), None)

    def count_by_site(self) -> dict[str, int]:
        """Registrations per site name, read from the shared items (no entry built:
        ``decent show sites`` at a million registrations)."""
        out: dict[str, int] = {}
        for item, n in self._intern.values():
            site = self._item_fields(item)[0]
            out[site] = out.get(site, 0) + n
        for e in self._m.entries():
            out[e.site] = out.get(e.site, 0) + 1
        return out

    def entries(self):
        for (iid, _fam), tree in self._trees.items():
            for pfx in tree:
                yield from self._entries(iid, pfx, tree[pfx])
        yield from self._m.entries()

    def exact(self, eid: Eid) -> list[Entry]:
        if eid.is_multicast:
            return self._m.exact(eid)
        tree = self._trees.get(_tk(eid))
        p = f"{format_address(eid.address)}/{eid.length}"
        if tree is None or not tree.has_key(p):
            return []
        return self._entries(eid.iid, p, tree[p])

    def lookup(self, eid: Eid) -> Match | None:
        """Longest match for ``eid`` plus every more-specific inside it (RFC 9301 5.5)."""
        if eid.is_multicast:
            return self._m.lookup(eid)
        tree = self._trees.get(_tk(eid))
        if tree is None:
            return None
        best = tree.get_key(f"{format_address(eid.address)}/{eid.length}")
        if best is None:
            return None
        out = [(None, best)] + [(None, c) for c in tree.children(best)]
        return Match(tuple(_pair(eid.iid, self._entries(eid.iid, p, tree[p])) for _, p in out))

    def best_key(self, eid: Eid):
        """As :meth:`RegistrationTable.best_key`."""
        return best_key_in(self._trees, eid)

    def carve(self, eid: Eid) -> tuple | None:
        """As :meth:`RegistrationTable.carve`."""
        hit = self.best_key(eid)
        if hit is None:
            return None
        a, _, n = hit[1].partition("/")
        best = Eid(eid.iid, ip_address(a), int(n))
        carved = negative_prefix(eid, [self], floor=best.length)
        return best, self._entries(eid.iid, hit[1], self._trees[hit[0]][hit[1]]), carved


def _eid(parsed) -> Eid:
    iid, fam, _pfx, length, net = parsed
    return Eid(iid, IPv4Address(net) if fam == 4 else IPv6Address(net), length)
