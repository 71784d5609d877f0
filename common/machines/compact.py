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
:class:`UnionTable` answers over several tables (one per map_server shard).
"""

from __future__ import annotations

import bisect
from array import array
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address

import msgpack
import pytricia

from common.machines.regtable import Entry, Match, RegistrationTable, best_key_in, entry_from_value, \
    locator_from_value, locator_value, negative_prefix
from common.machines.eidfast import parse_text as _parse
from common.wire.addr import Eid, RleEntry
from common.wire.eidtext import format_address

_BITS = {4: 32, 6: 128}
_SMALL_MERGE = 64      # pending index additions inserted one by one below this, else one sort


def usual_key(iid: int, pfx: str, xtr_hex: str, merge) -> str:
    """The key an item need not carry: the Map-Server's
    (:func:`~common.machines.regtable.entry_key`: the xTR-ID only when merging)."""
    return f"[{iid}]{pfx}|{xtr_hex}" if merge else f"[{iid}]{pfx}|"


def _pack(site, rlocs, ttl, proxy, merge, xtr_hex, registrant, rle, key) -> bytes:
    return msgpack.packb([site, rlocs, ttl, proxy, merge, xtr_hex, registrant, rle or None, key],
                         use_bin_type=True)


@lru_cache(maxsize=1 << 16)
def _fields(item: bytes) -> tuple:
    """The decoded item (raises ValueError/TypeError/KeyError if it is not one)."""
    site, rlocs, ttl, proxy, merge, xtr, reg, rle, key = msgpack.unpackb(item)
    return (str(site), tuple(locator_from_value(x) for x in rlocs or ()), int(ttl), bool(proxy),
            bool(merge), bytes.fromhex(xtr), str(reg),
            tuple(RleEntry(ip_address(a), int(level)) for a, level in (rle or ())), xtr, key)


def _items(v) -> tuple:
    return v if isinstance(v, tuple) else (v,)


class CompactTable:
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
        if self.on_change is not None:        # a table others watch: one event per key
            return sum(1 for k, v in items if not self._try_set(k, v))
        refused, trees, keyed, intern, pending = 0, self._trees, self._keyed, self._intern, self._pending
        packb, fields, parse, heads = msgpack.Packer(use_bin_type=True).pack, _fields, _parse, {}
        made: dict = {}                       # the fields of a usual value -> its item
        v0 = self.version
        tk, tree, pk = None, None, None       # the last tree (a snapshot's entries come by family)
        for key, value in items:
            try:
                # a field missing or of another type, an unusual value: as set does it
                text = value["eid"]
                parsed = (_v4_text(text, heads) or _v6_text(text) or parse(text)) if type(text) is str else None
                if parsed is None or key in keyed:
                    raise LookupError
                iid, fam, pfx, length, net = parsed
                if tk != (iid, fam):
                    tk = (iid, fam)
                    tree, pk = trees.get(tk), pending.get(tk)
                if tree is not None and tree.has_key(pfx):
                    raise LookupError         # a prefix several registrants hold: set
                xtr, rlocs, rle = value["xtr"], value["rlocs"], value.get("rle")
                if type(xtr) is not str or type(rlocs) is not list or (rle is not None and type(rle) is not list):
                    raise LookupError
                site, ttl, reg = value["site"], value["ttl"], value["registrant"]
                proxy, merge = bool(value["proxy"]), bool(value["merge"])
                usual = key == (f"[{iid}]{pfx}|{xtr}" if merge else f"[{iid}]{pfx}|")
                sig = item = None
                if usual and not rle and type(site) is str and type(ttl) is int and type(reg) is str:
                    # the registrations of one registrant share their fields: packed once (the
                    # locators by their bytes: 1, 1.0 and True are equal keys, not equal bytes)
                    sig = (site, ttl, proxy, merge, xtr, reg, packb(rlocs))
                    item = made.get(sig)
                if item is None:
                    item = packb([str(site), rlocs, int(ttl), proxy, merge, xtr, str(reg), rle or None,
                                  None if usual else key])
                    fields(item)              # malformed: refused before any change
                    if sig is not None and len(made) < 4096:
                        made[sig] = item
            except (LookupError, TypeError, ValueError, AttributeError):
                refused += not self._try_set(key, value)     # nothing changed yet: set decides
                tk = None             # (set may have made a tree or merged the pending keys)
                continue
            got = intern.get(item)
            if got is None:
                intern[item] = [item, 1]
            else:
                got[1] += 1
                item = got[0]
            if not usual:
                keyed[key] = f"[{iid}]{pfx}"
            if tree is None:
                tree = trees.get(tk)
                if tree is None:
                    tree = trees[tk] = pytricia.PyTricia(_BITS[fam])
                    self._index[tk] = array("Q") if fam == 4 else []
            tree[pfx] = item
            if pk is None:
                pk = pending.get(tk)
                if pk is None:
                    pk = pending[tk] = []
            pk.append(net << 8 | length)
            self._n += 1
        self.version = max(self.version, v0) + 1
        return refused

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

    def within(self, prefix: Eid) -> list[tuple[Eid, list[Entry]]]:
        """Every stored unicast prefix equal to or inside ``prefix``, with its entries,
        in (network, length) order (for :class:`UnionTable`)."""
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


def _v4_text(text: str, heads: dict):
    """:func:`~common.machines.eidfast.parse_text` of a canonical ``[0]a.b.c.d/len``
    (instance ID 0, IPv4), the first three octets read once per fill (``heads``);
    None for anything else (the caller then asks ``parse_text``)."""
    if not text.startswith("[0]") or not text.isascii():     # (str.isdigit takes other digits)
        return None
    pfx = text[3:]
    addr, slash, ln = pfx.partition("/")
    head, dot, last = addr.rpartition(".")
    top = heads.get(head)
    if top is None:
        top = -1
        parts = head.split(".")
        if len(parts) == 3 and all(p.isdigit() and len(p) <= 3 and (p == "0" or p[0] != "0") and int(p) <= 255
                                   for p in parts):
            top = int(parts[0]) << 24 | int(parts[1]) << 16 | int(parts[2]) << 8
        if len(heads) < 65536:
            heads[head] = top
    if top < 0 or not (last.isdigit() and len(last) <= 3 and (last == "0" or last[0] != "0")) \
            or not (ln.isdigit() and len(ln) <= 2 and (ln == "0" or ln[0] != "0")):
        return None
    octet, length = int(last), int(ln)
    net = top | octet
    if octet > 255 or length > 32 or (length < 32 and net & ((1 << (32 - length)) - 1)):
        return None
    return 0, 4, pfx, length, net


_HEX = frozenset("0123456789abcdef")


def _v6_text(text: str):
    """:func:`~common.machines.eidfast.parse_text` of a canonical ``[0]<IPv6>/len``
    (RFC 5952 text as ``str(IPv6Address)`` writes it, no dotted quad), without
    ``ipaddress``; None for anything else (the caller then asks ``parse_text``)."""
    if not text.startswith("[0]") or not text.isascii():
        return None
    pfx = text[3:]
    addr, slash, ln = pfx.partition("/")
    if not (ln.isdigit() and len(ln) <= 3 and (ln == "0" or ln[0] != "0")) or ":" not in addr:
        return None
    left, dc, right = addr.partition("::")
    lg = left.split(":") if left else []
    if dc:
        rg = right.split(":") if right else []
        run = 8 - len(lg) - len(rg)
        if run < 2 or (lg and lg[-1] == "0") or (rg and rg[0] == "0"):
            return None
        groups = lg + ["0"] * run + rg
    else:
        groups, run = lg, 0
    if len(groups) != 8:
        return None
    net, zeros = 0, 0
    for i, g in enumerate(groups):
        if not (0 < len(g) <= 4 and (g == "0" or g[0] != "0") and _HEX.issuperset(g)):
            return None
        net = net << 16 | int(g, 16)
        if g == "0" and not (dc and len(lg) <= i < len(lg) + run):
            zeros += 1            # another run of zero groups: must be shorter (or later, as long)
            if zeros >= 2 and (zeros > run or (zeros == run and i < len(lg))):
                return None
        else:
            zeros = 0
    length = int(ln)
    if length > 128 or (length < 128 and net & ((1 << (128 - length)) - 1)):
        return None
    return 0, 6, pfx, length, net


def _eid(parsed) -> Eid:
    iid, fam, _pfx, length, net = parsed
    return Eid(iid, IPv4Address(net) if fam == 4 else IPv6Address(net), length)


def _tk(eid: Eid) -> tuple[int, int]:
    return eid.iid, 4 if isinstance(eid.address, IPv4Address) else 6


def _pair(_iid: int, entries: list[Entry]) -> tuple:
    return entries[0].eid, entries


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

