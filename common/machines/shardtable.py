"""The Map-Server shard's registration table: the compact form (issue 11).

:class:`ShardTable` is a :class:`~common.machines.compact.CompactTable` (packed
prefixes in ``pytricia``, each registration an interned msgpack *item* without
its EID) with what the shard needs beside the workers' lookups:

- :class:`~common.machines.regtable.Entry` objects come back exactly as they were
  put: a locator's ``unused_flags`` (bits the shard keeps and compares, RFC 9301
  leaves them to the registrant) ride as a seventh element of its item's locator
  when not zero (a worker's :func:`~common.machines.compact._fields` ignores it);
- :meth:`token` / :meth:`holds`: a cheap content handle on one registration, so
  the refresh fast path can ask "is this still the registration that plan saw"
  without building an entry (equal items mean equal entries, registrant included);
- :meth:`load`: a reload's rows inserted in bulk, their values left encoded (the
  store's msgpack bytes) - the part after the EID is decoded once per distinct
  registrant, the EID text read by :mod:`common.machines.eidfast`.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Address, ip_address

import msgpack

from common.machines.compact import CompactTable, _fields, _items, _pack
from common.machines.eidfast import parse_text as _parse
from common.machines.regtable import Entry, entry_from_value, locator_value
from common.wire.addr import Eid
from common.wire.eidtext import format_address
from common.wire.records import Locator

_FILL_CACHE = 4096      # distinct encoded registrations (without the EID) remembered per fill


def _loc_value(loc: Locator) -> list:
    v = locator_value(loc)
    if loc.unused_flags:
        v.append(loc.unused_flags)
    return v


def _locator(v) -> Locator:
    return Locator(ip_address(v[0]), v[1], v[2], v[3], v[4], bool(v[5] & 4), bool(v[5] & 2), bool(v[5] & 1),
                   v[6] if len(v) > 6 else 0)


@lru_cache(maxsize=1 << 16)
def _sfields(item: bytes) -> tuple:
    """:func:`~common.machines.compact._fields` keeping the locators' unused flags."""
    f = _fields(item)
    rlocs = msgpack.unpackb(item)[1]
    if any(len(x) > 6 for x in rlocs or ()):
        f = (f[0], tuple(_locator(x) for x in rlocs)) + f[2:]
    return f


class ShardTable(CompactTable):
    """See the module docstring."""

    def put(self, e: Entry) -> None:
        if e.eid.is_multicast:
            super().put(e)
            return
        fam = 4 if isinstance(e.eid.address, IPv4Address) else 6
        pfx = f"{format_address(e.eid.address)}/{e.eid.length}"
        parsed = (e.eid.iid, fam, pfx, e.eid.length, int(e.eid.address))
        xtr = e.xtr_id.hex()
        usual = e.key == f"[{e.eid.iid}]{pfx}|{xtr}"
        item = _pack(e.site, [_loc_value(x) for x in e.locators], e.ttl, e.proxy, e.merge, xtr,
                     e.registrant, [[format_address(r.address), r.level] for r in e.rle],
                     None if usual else e.key)
        self._add(e.key, parsed, item, usual)

    def _entries(self, iid: int, pfx: str, v) -> list[Entry]:
        a, _, n = pfx.partition("/")
        eid = Eid(iid, ip_address(a), int(n))
        out = []
        for item in _items(v):
            site, locs, ttl, proxy, merge, xtr, reg, rle, xtr_hex, key = _sfields(item)
            out.append(Entry(key if key is not None else f"[{iid}]{pfx}|{xtr_hex}", eid, site, locs,
                             ttl, proxy, merge, xtr, reg, rle))
        return out

    # -- content handles (the refresh fast path) -------------------------------------
    def token(self, key: str):
        """A handle on ``key``'s registration as stored now (None: not stored):
        :meth:`holds` is true while the same content is stored under that key."""
        e = self._m.get(key)
        if e is not None:
            return (None, key, e)
        text = self._keyed.get(key) or key.rpartition("|")[0]
        try:
            parsed = _parse(text)
        except ValueError:
            return None
        if parsed is None:
            return None
        tk, pfx = (parsed[0], parsed[1]), parsed[2]
        tree = self._trees.get(tk)
        if tree is None or not tree.has_key(pfx):
            return None
        for item in _items(tree[pfx]):
            f = _fields(item)
            if (f[9] if f[9] is not None else f"[{tk[0]}]{pfx}|{f[8]}") == key:
                return (tk, pfx, item)
        return None

    def holds(self, token) -> bool:
        """Is the registration ``token`` was taken from still stored, unchanged?  An
        item names its key (the xTR-ID, or the key itself when unusual), so an equal
        item at the same prefix is the same key's, with the same content."""
        tk, pfx, item = token
        if tk is None:
            return self._m.get(pfx) == item
        tree = self._trees.get(tk)
        if tree is None or not tree.has_key(pfx):
            return False
        v = tree[pfx]
        return v == item or (type(v) is tuple and item in v)

    # -- reload --------------------------------------------------------------------
    def load(self, rows) -> list:
        """Insert ``(key, value)`` rows of a reload, ``value`` a published value
        (:func:`~common.machines.regtable.entry_value`'s dict) or its msgpack bytes
        as the store keeps it.  Returns the keys of rows that are not registrations
        (skipped, nothing stored for them)."""
        bad = []
        cache: dict[bytes, tuple | None] = {}
        direct = self.on_change is None
        for key, value in rows:
            try:
                if isinstance(value, (bytes, bytearray, memoryview)):
                    split = _split_eid(bytes(value))
                    if split is None:
                        self.set(key, msgpack.unpackb(value))
                        continue
                    text, rest = split
                    parsed = _parse(text)
                    if parsed is None:            # multicast: the general path
                        self.set(key, msgpack.unpackb(value))
                        continue
                    got = cache.get(rest, 0)
                    if got == 0:
                        got = _rest_item(rest)
                        if len(cache) >= _FILL_CACHE:
                            cache.clear()
                        cache[rest] = got
                    if got is None:
                        raise ValueError("not a registration")
                    xtr, item = got
                    iid, _fam, pfx = parsed[0], parsed[1], parsed[2]
                    if key != f"[{iid}]{pfx}|{xtr}":
                        self.set(key, msgpack.unpackb(value))    # a key of its own: rare
                        continue
                else:
                    self.set(key, value)
                    continue
            except (KeyError, TypeError, ValueError, IndexError, msgpack.UnpackException):
                bad.append(key)
                continue
            tk = (parsed[0], parsed[1])
            tree = self._trees.get(tk)
            if not direct or tree is None or key in self._keyed or tree.has_key(pfx):
                self._add(key, parsed, item, True)     # the general path (replaces, hooks)
                continue
            got = self._intern.get(item)
            if got is None:
                self._intern[item] = [item, 1]
            else:
                got[1] += 1
                item = got[0]
            tree[pfx] = item
            self._pending.setdefault(tk, []).append(parsed[4] << 8 | parsed[3])
            self._n += 1
            self.version += 1
        return bad


def _split_eid(blob: bytes):
    """(EID text, the rest) of an encoded value whose first field is ``"eid"`` (as
    :func:`~common.machines.regtable.entry_value` orders it); None otherwise.  The
    rest keeps the map's header byte, so equal rests are equal values but the EID."""
    if len(blob) < 6 or not 0x80 <= blob[0] <= 0x8F or blob[1:5] != b"\xa3eid":
        return None
    h = blob[5]
    if 0xA0 <= h <= 0xBF:
        n, at = h - 0xA0, 6
    elif h == 0xD9 and len(blob) > 6:
        n, at = blob[6], 7
    else:
        return None
    if len(blob) < at + n:
        return None
    return blob[at:at + n].decode(), blob[:1] + blob[at + n:]


def _rest_item(rest: bytes):
    """(xTR-ID hex, item) of the registration ``rest`` encodes (its EID aside), or
    None when it is not one."""
    try:
        v = msgpack.unpackb(rest[:1] + b"\xa3eid\xa0" + rest[1:])
        v["eid"] = "[0]0.0.0.0/0"          # the EID is checked by the caller
        entry_from_value("", v)            # what the reference restore refuses, refused here
        xtr = str(v.get("xtr", ""))
        item = _pack(str(v.get("site", "")), [list(x) for x in v.get("rlocs", ())],
                     int(v.get("ttl", 0)), bool(v.get("proxy")), bool(v.get("merge")), xtr,
                     str(v.get("registrant", "")), [list(x) for x in v.get("rle") or ()], None)
        _fields(item)
        return xtr, item
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, msgpack.UnpackException):
        return None
