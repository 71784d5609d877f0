"""Registrations inserted into a compact table from their ENCODED values (issue 11).

:meth:`CompactTable.load <common.machines.compact.CompactTable.load>` is
:func:`load_rows`: ``(key, value)`` rows whose value is a published value's msgpack
bytes (as the shard's store keeps them, and as a packed Clone writer sends them in a
snapshot) are inserted without decoding each value.  A value as
:func:`~common.machines.regtable.entry_value` writes it is a map whose first field is
its EID text; what follows the text - the same bytes for every registration of one
registrant - is decoded once into the table's item.  The EID text is read by
:func:`_parse_v4_cached` / :func:`_parse_v6` (canonical text only).  Anything else
(multicast, a key of its own, another layout, a key already stored, a table others
watch) takes the table's :meth:`set` on the decoded value, so the table holds what
``set`` per row would make, and refuses what ``set`` refuses
(tests/unit/test_compact_load.py).

Used by the shard's reload (:class:`~common.machines.shardtable.ShardTable`) and by
a Map-Resolver worker's snapshot fill (common/machines/replica.py
``snapshot_encoded``).
"""

from __future__ import annotations

import re

import msgpack

from common.machines.compactitem import _fields, _pack
from common.machines.regtable import entry_from_value

_FILL_CACHE = 4096      # distinct encoded registrations (without the EID) remembered per call
_MAX_IID = (1 << 24) - 1
_HEXTETS = re.compile(r"(?:0|[1-9a-f][0-9a-f]{0,3})(?::(?:0|[1-9a-f][0-9a-f]{0,3}))*\Z")
_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, msgpack.UnpackException)


def load_rows(table, rows) -> list:
    """Insert ``(key, value)`` rows into ``table``, ``value`` a published value
    (:func:`~common.machines.regtable.entry_value`'s dict) or its msgpack bytes.
    Returns the keys of rows that are not registrations (nothing stored for them:
    what :meth:`set` refuses).  ``table._strict_keys``: whether a map key other
    than a string makes a value unreadable (the shard's store decodes so; a worker's
    Clone reader does not)."""
    strict = table._strict_keys
    bad = []
    cache: dict = {}
    heads: dict = {}      # IPv4 text up to its last dot -> (iid, network of 3 octets, "]" index)
    tails: dict = {}      # "octet/length" -> (octet, length)
    six: tuple = ({}, {}, {})     # _parse_v6_cached's remembered parts
    prev_rest, prev = b"", None
    last_iid, last_fam, tree, pk, last_ref, last_item, added = -1, 0, None, None, None, None, 0
    trees, intern, pending, keyed = table._trees, table._intern, table._pending, table._keyed
    direct = table.on_change is None
    for key, value in rows:
        if type(value) is not bytes or len(value) < 7 or not value.startswith(b"\xa3eid", 1):
            last_iid, last_ref = -1, None
            if not _load_one(table, key, value, strict):
                bad.append(key)
            continue
        h = value[5]
        if 0xA0 <= h <= 0xBF:
            at, end = 6, 6 + h - 0xA0
        elif h == 0xD9:
            at, end = 7, 7 + value[6]
        else:
            at = end = 0
        # the registrations of one registrant come together: the previous row's
        # rest is compared in place before the cache is asked
        if end and len(value) - end == len(prev_rest) and value.endswith(prev_rest):
            got = prev
        else:
            got = cache.get(value[end:]) if end else None
            if got is None and end:
                got = _rest_item(value[:1] + b"\xa3eid\xa0" + value[end:], strict)
                if len(cache) >= _FILL_CACHE:
                    cache.clear()
                cache[value[end:]] = got
            if got:
                prev_rest, prev = value[end:], got
        if not got or got[0] != value[0]:
            last_iid, last_ref = -1, None
            if not _load_one(table, key, value, strict):
                bad.append(key)
            continue
        try:
            text = value[at:end].decode()
        except ValueError:
            bad.append(key)       # (set cannot take it either: the value does not decode)
            continue
        _head, suffix, item = got
        parsed = _parse_v4_cached(text, heads, tails) if ":" not in text else _parse_v6_cached(text, six)
        if parsed is None or key != text + suffix:
            last_iid, last_ref = -1, None
            if not _load_one(table, key, value, strict):
                bad.append(key)
            continue
        if parsed[0] != last_iid or parsed[1] != last_fam:
            tk = (parsed[0], parsed[1])
            tree = trees.get(tk)
            pk = pending.get(tk)
            if pk is None and tree is not None:
                pk = pending[tk] = []
            last_iid, last_fam = (-1, 0) if tree is None else tk
        pfx = parsed[2]
        if not direct or tree is None or key in keyed or tree.has_key(pfx):
            table._add(key, parsed, item, True)    # the general path (replaces, hooks)
            last_iid, last_ref = -1, None          # it may have changed trees, index, interning
            continue
        if item is not last_item or last_ref is None:
            last_ref, last_item = intern.get(item), item
            if last_ref is None:
                last_ref = intern[item] = [item, 0]
        last_ref[1] += 1
        tree[pfx] = last_ref[0]
        pk.append(parsed[4] << 8 | parsed[3])
        added += 1
    table._n += added
    table.version += added
    return bad


def _load_one(table, key, value, strict: bool) -> bool:
    """One row the general way (:meth:`set`); False: not a registration."""
    try:
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = msgpack.unpackb(value, strict_map_key=strict)
        table.set(key, value)
        return True
    except _ERRORS:
        return False


def _rest_item(blob: bytes, strict: bool = True):
    """(map header byte, the usual key's part after the EID - ``"|"``, plus the
    xTR-ID hex when merging - item) of an encoded value whose EID text was emptied
    (the caller reads the EID), or None when it is not a registration or not one this
    reader takes (then :meth:`set` decides)."""
    try:
        v = msgpack.unpackb(blob, strict_map_key=strict)
        if type(v) is not dict or v.get("eid") != "" or len(v) != blob[0] & 0x0F:
            return None           # a field twice (the last one wins in set): not here
        v["eid"] = "[0]0.0.0.0/0"          # the EID is checked by the caller
        entry_from_value("", v)            # what the reference restore refuses, refused here
        xtr = str(v.get("xtr", ""))
        item = _pack(str(v.get("site", "")), [list(x) for x in v.get("rlocs", ())],
                     int(v.get("ttl", 0)), bool(v.get("proxy")), bool(v.get("merge")), xtr,
                     str(v.get("registrant", "")), [list(x) for x in v.get("rle") or ()], None)
        _fields(item)
        return blob[0], "|" + xtr if v.get("merge") else "|", item
    except _ERRORS:
        return None


_V4 = re.compile(r"\[(0|[1-9][0-9]{0,7})\](" + r"\.".join([r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"] * 4)
                 + r"/(3[0-2]|[12]?[0-9]))\Z")
_V4_HEAD = re.compile(r"\[(0|[1-9][0-9]{0,7})\]" + r"\.".join([r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"] * 3)
                      + r"\.\Z")
_V4_TAIL = re.compile(r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])\Z")
_CACHE_MAX = 1 << 16


def _parse_v4_cached(text: str, heads: dict, tails: dict):
    """:func:`_parse_v4`, the text read in two parts, each remembered: what comes
    before the last octet (prefixes that share three octets share it) and the last
    octet with the length (at most 8,448 of them).  Same answers (a test says so)."""
    dot = text.rfind(".") + 1
    head = text[:dot]
    hd = heads.get(head)
    if hd is None:
        m = _V4_HEAD.match(head)
        if m is None:
            hd = False
        else:
            iid, a, b, c = m.groups()
            hd = (int(iid), int(a) << 24 | int(b) << 16 | int(c) << 8, head.index("]") + 1)
            if hd[0] > _MAX_IID:
                hd = False
        if len(heads) >= _CACHE_MAX:
            heads.clear()
        heads[head] = hd
    if not hd:
        return None
    tail = text[dot:]
    tl = tails.get(tail)
    if tl is None:
        m = _V4_TAIL.match(tail)
        tl = (int(m.group(1)), int(m.group(2))) if m is not None else False
        if len(tails) >= _CACHE_MAX:
            tails.clear()
        tails[tail] = tl
    if not tl:
        return None
    net, length = hd[1] | tl[0], tl[1]
    if length < 32 and net & ((1 << (32 - length)) - 1):
        return None
    return hd[0], 4, text[hd[2]:], length, net


def _parse_v4(text: str):
    """As :func:`_parse_v6` for IPv4: a canonical text only (decimal without
    leading zeros, no host bits), else None."""
    m = _V4.match(text)
    if m is None:
        return None
    iid, pfx, a, b, c, d, ln = m.groups()
    iid, length = int(iid), int(ln)
    net = int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)
    if iid > _MAX_IID or (length < 32 and net & ((1 << (32 - length)) - 1)):
        return None
    return iid, 4, pfx, length, net


def _parse_v6(text: str):
    """:func:`~common.machines.eidfast.parse_text` of a canonical IPv6 EID text
    (``format_eid``'s ``[iid]address/length``, RFC 5952 address), several times
    cheaper than ``ipaddress``; None for anything else (the caller falls back)."""
    close = text.find("]")
    slash = text.rfind("/")
    if close < 2 or slash < close or text[0] != "[":
        return None
    addr = text[close + 1:slash]
    try:
        iid = int(text[1:close])
        length = int(text[slash + 1:])
    except ValueError:
        return None
    if not (0 <= length <= 128 and 0 <= iid <= _MAX_IID) or f"[{iid}]{addr}/{length}" != text:
        return None
    head, dc, tail = addr.partition("::")
    if dc:
        # canonical: lower-case hextets without leading zeros, "::" standing for the
        # leftmost longest run of at least two zero hextets, all of that run
        hs = head.split(":") if head else []
        ts = tail.split(":") if tail else []
        z = 8 - len(hs) - len(ts)
        if z < 2 or (head and (not _HEXTETS.match(head) or hs[-1] == "0")) \
                or (tail and (not _HEXTETS.match(tail) or ts[0] == "0")) \
                or (":" + head + ":").find(":0" * z + ":") >= 0 \
                or (":" + tail + ":").find(":0" * (z + 1) + ":") >= 0:
            return None
        hexs = "".join([h.rjust(4, "0") for h in hs]) + "0000" * z + "".join([h.rjust(4, "0") for h in ts])
    else:
        hs = addr.split(":")
        if len(hs) != 8 or not _HEXTETS.match(addr) or (":" + addr + ":").find(":0:0:") >= 0:
            return None
        hexs = "".join([h.rjust(4, "0") for h in hs])
    net = int(hexs, 16)
    if length < 128 and net & ((1 << (128 - length)) - 1):
        return None
    return iid, 6, text[close + 1:], length, net


def _v6_head(head: str):
    """``[iid]`` and the hextets before the last one ahead of ``::``, each followed by
    ``:``: (iid, "]" index, hextet count, their value, longest run of zero hextets)."""
    close = head.find("]")
    raw = head[1:close]
    if close < 0 or head[0] != "[" or not (raw.isdigit() and raw.isascii() and len(raw) <= 8 and (raw == "0" or raw[0] != "0")):
        return False
    iid = int(raw)
    groups = head[close + 1:-1]
    if iid > _MAX_IID or (groups and not _HEXTETS.match(groups)) or (not groups and len(head) != close + 1):
        return False
    hs = groups.split(":") if groups else []
    value, best = _hextets(hs)
    return iid, close, len(hs), value, best


def _hextets(hs: list) -> tuple[int, int]:
    """(value, longest run of zero hextets) of canonical hextet texts."""
    value, run, best = 0, 0, 0
    for h in hs:
        value = value << 16 | int(h, 16)
        run = run + 1 if h == "0" else 0
        best = max(best, run)
    return value, best


def _v6_tail(tail: str):
    """What follows ``::``: hextets (the first not zero) and ``/length``: (hextet
    count, their value, longest run of zero hextets, length)."""
    groups, slash, ln = tail.partition("/")
    if not (slash and ln.isdigit() and ln.isascii() and len(ln) <= 3 and (ln == "0" or ln[0] != "0")) \
            or int(ln) > 128 or (groups and (not _HEXTETS.match(groups) or groups.startswith("0"))):
        return False
    hs = groups.split(":") if groups else []
    value, best = _hextets(hs)
    return len(hs), value, best, int(ln)


def _parse_v6_cached(text: str, parts: tuple):
    """:func:`_parse_v6` of a text ``[iid]<hextets>:<hextet>::<hextets>/<length>``
    read in three remembered parts: what comes before the last hextet ahead of
    ``::`` (prefixes that share it share the part), that hextet, and what follows
    ``::``; the canonical rules (RFC 5952: ``::`` for the leftmost longest run of at
    least two zero hextets, all of it) checked from each part's hextet count and
    longest zero run.  Other texts: :func:`_parse_v6`.  Same answers (a test says so)."""
    dc = text.find("::")
    c = text.rfind(":", 0, dc) if dc > 0 else -1
    if c < 0:
        c = text.find("]")
        if c < 0 or dc < 0 or c > dc:
            return _parse_v6(text)
    heads, mids, tails = parts
    head = text[:c + 1]
    hd = heads.get(head)
    if hd is None:
        hd = _v6_head(head)
        if len(heads) >= _CACHE_MAX:
            heads.clear()
        heads[head] = hd
    mid = text[c + 1:dc]
    mv = mids.get(mid)
    if mv is None:
        mv = int(mid, 16) if mid != "0" and _HEXTETS.match(mid) and ":" not in mid else 0
        if len(mids) >= _CACHE_MAX:
            mids.clear()
        mids[mid] = mv
    tail = text[dc + 2:]
    tl = tails.get(tail)
    if tl is None:
        tl = _v6_tail(tail)
        if len(tails) >= _CACHE_MAX:
            tails.clear()
        tails[tail] = tl
    if not hd or not mv or not tl:
        return _parse_v6(text)        # a part this reader does not take: the plain reader says
    iid, close, nh, hv, hrun = hd
    nt, tv, trun, length = tl
    z = 8 - nh - 1 - nt
    if z < 2 or hrun >= z or trun > z:
        return None
    net = ((hv << 16 | mv) << (16 * (z + nt))) | tv
    if length < 128 and net & ((1 << (128 - length)) - 1):
        return None
    return iid, 6, text[close + 1:], length, net
