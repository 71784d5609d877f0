"""A snapshot's chunk added to a compact table at once: the body of
:meth:`CompactTable.fill <common.machines.compact.CompactTable.fill>` (see there), and
the readers of canonical EID text it takes before ``parse_text``."""

from __future__ import annotations

from array import array

import msgpack
import pytricia

from common.machines.compactitem import _BITS, _fields
from common.machines.eidfast import parse_text as _parse


def fill_items(table, items) -> int:
    """:meth:`CompactTable.fill <common.machines.compact.CompactTable.fill>` of ``table``."""
    if table.on_change is not None:        # a table others watch: one event per key
        return sum(1 for k, v in items if not table._try_set(k, v))
    refused, trees, keyed, intern, pending = 0, table._trees, table._keyed, table._intern, table._pending
    packb, fields, parse, heads = msgpack.Packer(use_bin_type=True).pack, _fields, _parse, {}
    made: dict = {}                       # the fields of a usual value -> its item
    v0 = table.version
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
            refused += not table._try_set(key, value)     # nothing changed yet: set decides
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
                table._index[tk] = array("Q") if fam == 4 else []
        tree[pfx] = item
        if pk is None:
            pk = pending.get(tk)
            if pk is None:
                pk = pending[tk] = []
        pk.append(net << 8 | length)
        table._n += 1
    table.version = max(table.version, v0) + 1
    return refused


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
