"""The Map-Server shard's registration table: the compact form (issue 11).

:class:`ShardTable` is a :class:`~common.machines.compact.CompactTable` (packed
prefixes in ``pytricia``, each registration an interned msgpack *item* without
its EID) with what the shard needs beside the workers' lookups:

- :class:`~common.machines.regtable.Entry` objects come back exactly as they were
  put: a locator's ``unused_flags`` (bits the shard keeps and compares, RFC 9301
  leaves them to the registrant) ride as a seventh element of its item's locator
  when not zero (a worker's :func:`~common.machines.compactitem._fields` ignores it);
- :meth:`token` / :meth:`holds`: a cheap content handle on one registration, so
  the refresh fast path can ask "is this still the registration that plan saw"
  without building an entry (equal items mean equal entries, registrant included);
- a reload's rows are inserted in bulk by the parent's :meth:`load`, their values
  left encoded (the store's msgpack bytes; common/machines/compactload.py) - the
  part after the EID is decoded once per distinct registrant.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import ip_address

import msgpack

from common.machines.compact import CompactTable
from common.machines.compactitem import _fields, _items, usual_key
from common.machines.eidfast import parse_text as _parse
from common.machines.regtable import locator_value
from common.wire.records import Locator


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
    """:func:`~common.machines.compactitem._fields` keeping the locators' unused flags."""
    f = _fields(item)
    rlocs = msgpack.unpackb(item)[1]
    if any(len(x) > 6 for x in rlocs or ()):
        f = (f[0], tuple(_locator(x) for x in rlocs)) + f[2:]
    return f


class ShardTable(CompactTable):
    """See the module docstring."""

    # put() and _entries() are the parent's, with the locators' unused flags kept
    _locator_value = staticmethod(_loc_value)
    _item_fields = staticmethod(_sfields)
    _strict_keys = True       # load: values read as the store's own reader reads them

    # -- content handles (the refresh fast path) -------------------------------------
    def token(self, key: str):
        """A handle on ``key``'s registration as stored now (None: not stored):
        :meth:`holds` is true while the same content is stored under that key."""
        e = self._m.get(key)
        if e is not None:
            return (None, key, e)
        last = self._last_put
        if last is not None and last[0] == key:      # just added (removal forgets it)
            return last[1:]
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
            # the item's own key, or its xTR-ID's (fields 8 and 5), without building its
            # locators as _fields does (issue 10: taken once per new registration)
            f = msgpack.unpackb(item)
            if (f[8] if f[8] is not None else usual_key(tk[0], pfx, f[5], f[4])) == key:
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
