"""The Map-Resolver's fast path: the common ECM Map-Request answered from cached bytes.

Sans-IO, in front of :class:`common.machines.resolver.Resolver` (the full path, which
stays the reference).  :meth:`FastPath.handle` takes what ``Resolver.handle`` takes and
returns ``None`` (not ours: the caller runs the full path, which then does everything,
the rate limits included), a :class:`~common.machines.resolver.Drop`, or a tuple
``(destination, port, reply bytes, what)`` equal to the full path's one ``Send``.

The common request, read at fixed offsets without decoding it into objects: an ECM
with no flag but M (S=1 LISP-SEC, D, E go to the full path), an inner IPv4 header of
20 bytes or an IPv6 header, inner UDP with a non-zero checksum (verified here, as one
sum taken modulo 0xFFFF), neither port 4341, and in it a Map-Request with no P, M, I or
D bit, one record and nothing after it, a source EID of AFI 0/1/2, ITR-RLOCs of AFI 1/2
(one of the listener's family), and a host EID (/32 or /128, plain or inside an
instance-ID LCAF).  Everything else, and the cases where the full path would not
answer from the table (replica not in sync; pull mode, M=0, an EID served elsewhere:
forwarded; a negative for this node's own database: punted to its ETR; both asked
per request through the same functions), is handed to the full path before any rate
limit is spent, so the full path sees exactly what it would have seen.  A pull-mode
negative floor (static per EID) is part of the cached negative.

The answer cache maps the record's bytes (mask length onwards: the EID as encoded)
and the listener's family to the reply's encoded header and records; the nonce is
copied into them per request.  An answer the full path gives in another form (sent
to an ETR, no usable ETR, too big) is cached as "full path".  A miss decodes the
request once and asks the resolver for the answer (``Resolver._answer``, the same
code the full path runs), so both paths give byte-identical replies.

Invalidation is exact per change (the table calls :meth:`FastPath._changed` through
its ``on_change`` hook after each version step: RegistrationTable and CompactTable,
each table of a UnionTable, whose version is their sum): a change
to prefix P drops the answers whose longest match contains P (P itself, and covering
prefixes whose answer lists or carves around more-specifics), and the negatives
overlapping P; when P may have gone, also the negatives under the configured prefix
P falls in (or outside every configured prefix), which could now grow.  A table
change the hook did not report (a version step it did not see, or another table
object) clears the whole cache.  The cache holds at most ``max_entries`` answers
(then it is cleared and refilled).
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

import pytricia

from common.machines.resolver import MAX_RECORDS, Drop
from common.wire.addr import eid_from_wire
from common.wire.errors import DecodeError
from common.wire.messages import MapRequest, decode_message
from common.wire.records import decode_record

_HEAD = struct.Struct("!I")
_BITS = {4: 32, 6: 128}
# Map-Request flags the fast path leaves to the full path: P (probe), M (a Map-Reply
# record inside), I (xTR-ID trailer), D (don't reply)
_MR_SPECIAL = 0x02000000 | 0x04000000 | 0x00100000 | 0x00002000
_FULL = False          # cache entry: this EID's answer is given by the full path


class FastPath:
    def __init__(self, resolver, max_entries: int = 65536) -> None:
        self.res = resolver
        self.max_entries = max_entries
        self.stats = {"hit": 0, "miss": 0, "invalidated": 0, "cleared": 0}
        self._table = None
        self._seen = -1
        self._names: dict[bytes, str] = {}       # ITR-RLOC bytes -> text (memo)
        self._clear()

    # -- the request ------------------------------------------------------------
    def handle(self, data: bytes, src: tuple, local: str, now: float):
        res = self.res
        if res.table is not self._table or res.table.version != self._seen:
            self._attach()
        if not res.in_sync:
            return None                  # per-EID readiness: the full path decides
        n = len(data)
        if n < 60:
            return None
        b0 = data[0]
        if b0 != 0x80 and b0 != 0x81:
            return None
        v = data[4]
        if v == 0x45:
            if data[13] != 17 or data[10] & 0x3F or data[11] or (data[6] << 8 | data[7]) != n - 4:
                return None
            u = 24
            pseudo = int.from_bytes(data[16:24], "big")
        elif v >> 4 == 6:
            if data[10] != 17 or (data[8] << 8 | data[9]) != n - 44:
                return None
            u = 44
            pseudo = int.from_bytes(data[12:44], "big")
        else:
            return None
        sport = data[u] << 8 | data[u + 1]
        ulen = data[u + 4] << 8 | data[u + 5]
        if (ulen != n - u or sport == 4341 or (data[u + 2] << 8 | data[u + 3]) == 4341
                or not (data[u + 6] or data[u + 7])):
            return None
        seg = int.from_bytes(data[u:], "big")
        if (pseudo + 17 + ulen + (seg << 8 if ulen & 1 else seg)) % 0xFFFF:
            return None                  # a bad checksum: the full path drops it
        m = u + 8
        w0 = int.from_bytes(data[m:m + 4], "big")
        if w0 >> 28 != 1 or w0 & _MR_SPECIAL or (w0 & 0xFF) != 1:
            return None
        p = m + 12
        if p + 2 > n:
            return None
        afi = data[p] << 8 | data[p + 1]
        if afi == 1:
            p += 6
        elif afi == 2:
            p += 18
        elif afi:
            return None
        else:
            p += 2
        six = ":" in local
        want = 2 if six else 1
        itr = None
        for _ in range(((w0 >> 8) & 0x1F) + 1):
            if p + 2 > n:
                return None
            afi = data[p] << 8 | data[p + 1]
            if afi == 1:
                if itr is None and want == 1:
                    itr = data[p + 2:p + 6]
                p += 6
            elif afi == 2:
                if itr is None and want == 2:
                    itr = data[p + 2:p + 18]
                p += 18
            else:
                return None
        if itr is None or p + 4 > n:
            return None
        key = data[p + 1:]
        cache = self._c[six]
        e = cache.get(key)
        if e is None:
            e = self._fill(data, key, six, local)
            if e is None:
                return None
        if e is _FULL:
            return None
        head, records, what, neg, eid = e
        if neg and res.local_db is not None and res.local_db(eid):
            return None                  # our own ETR answers it (the full path punts)
        if b0 == 0x80 and res.serves is not None and not res.serves(eid):
            return None                  # pull mode: served elsewhere (the full path forwards)
        self.stats["hit"] += 1
        # the full path's order from here: source limit, answer, destination limit
        s = src[0]
        if not res.limiter.allow(s, now):
            return Drop("rate-limited", s)
        name = self._names.get(itr)
        if name is None:
            name = self._name(itr)
        dl = res.dest_limiter
        if dl is not None and not dl.allow(name, now):
            return Drop("rate-limited-destination", name)
        return name, sport, head + data[m + 4:m + 12] + records, what

    def _name(self, raw: bytes) -> str:
        if len(self._names) >= 65536:
            self._names.clear()
        name = self._names[raw] = str(IPv4Address(raw) if len(raw) == 4 else IPv6Address(raw))
        return name

    # -- filling --------------------------------------------------------------------
    def _fill(self, data: bytes, key: bytes, six: bool, local: str):
        """The cache entry for ``key`` computed by the full path's code (None: the
        request does not decode; the full path drops it)."""
        try:
            msg = decode_message(data)
        except DecodeError:
            return None
        req = getattr(msg, "inner", None)
        if not isinstance(req, MapRequest) or len(req.records) != 1:
            return None     # not reached for what handle() accepts; kept safe
        self.stats["miss"] += 1
        if len(self._c[0]) + len(self._c[1]) >= self.max_entries or self._refs > 4 * self.max_entries:
            self._clear()
        cache = self._c[six]
        eid = req.records[0].prefix
        if not eid.is_ip or eid.is_multicast or eid.length != _BITS[eid.address.version]:
            cache[key] = _FULL
            return _FULL
        res = self.res
        sec = getattr(res, "lisp_sec", None)
        if sec is not None and sec.open(msg, req, [eid], res.table.lookup) != (None, None):
            cache[key] = _FULL          # LISP-SEC wants this EID's answer another way
            return _FULL
        kind, a, b = res._answer(eid, local)
        room = res._room(local)
        if kind == "proxy" and a > 1 and (a > MAX_RECORDS or len(b) > room):
            kind, a, b = res._carved(eid, local)
        tk = (eid.iid, eid.address.version)
        if kind in ("proxy", "negative") and a <= MAX_RECORDS and len(b) <= room:
            entry = (_HEAD.pack((2 << 28) | a), b, "proxy-reply" if kind == "proxy" else "negative-reply",
                     kind == "negative", eid)
        else:
            entry = _FULL
        ref = (six, key)
        hit = res.table.best_key(eid)
        if hit is not None:
            _index(self._pos, tk, hit[1], ref)
        elif entry is not _FULL and entry[3]:
            rec, _ = decode_record(b, 0, len(b), "negative")
            neg = eid_from_wire(rec.eid, rec.mask_len)
            _index(self._neg, tk, f"{neg.address}/{neg.length}", ref)
            cover = res.configured.covering(eid)
            c = None if cover is None else (int(cover.address), cover.length)
            self._negcov.setdefault(tk, {}).setdefault(c, set()).add(ref)
            self._refs += 1
        else:
            return None     # an answer that depends on no prefix we can index: not cached
        self._refs += 1
        cache[key] = entry
        return entry

    # -- invalidation -----------------------------------------------------------------
    def _clear(self) -> None:
        self._c = ({}, {})               # listener IPv4, IPv6: record bytes -> entry
        self._pos: dict = {}             # (iid, family) -> pytricia: longest match -> refs
        self._neg: dict = {}             # (iid, family) -> pytricia: negative prefix -> refs
        self._negcov: dict = {}          # (iid, family) -> {configured (net, len) | None: refs}
        self._refs = 0
        self.stats["cleared"] += 1

    def _attach(self) -> None:
        """Follow the resolver's table (a new object after a swap) and start afresh."""
        t = self.res.table
        if self._table is not t:
            # a UnionTable (one replica per shard) has its tables: each reports its changes
            for old in getattr(self._table, "tables", None) or (() if self._table is None else (self._table,)):
                if getattr(old, "on_change", None) == self._changed:
                    old.on_change = None
            for part in getattr(t, "tables", None) or (t,):
                part.on_change = self._changed
            self._table = t
        self._clear()
        self._seen = t.version

    def _changed(self, eid, removed: bool) -> None:
        """The table's hook: called after each change, with the changed prefix (None:
        nothing changed) and whether a registration was removed."""
        t = self._table
        if t is None or t.version != self._seen + 1:
            self._attach()
            return
        self._seen = t.version
        if eid is None or eid.is_multicast or not eid.is_ip:
            return
        tk = (eid.iid, eid.address.version)
        p = f"{eid.address}/{eid.length}"
        pos = self._pos.get(tk)
        if pos is not None:
            self._drop_covering(pos, p)
        neg = self._neg.get(tk)
        if neg is not None:
            self._drop_covering(neg, p)
            temp = not neg.has_key(p)
            if temp:
                neg[p] = set()
            for k in list(neg.children(p)):
                self._drop(neg, k)
            if temp:
                del neg[p]
        if removed:
            covers = self._negcov.get(tk)
            if covers:
                bits = _BITS[eid.address.version]
                x = int(eid.address)
                for c in [c for c in covers if c is None or _overlap(c, x, eid.length, bits)]:
                    for six, key in covers.pop(c):
                        if self._c[six].pop(key, None) is not None:
                            self.stats["invalidated"] += 1

    def _drop_covering(self, tree, p: str) -> None:
        k = tree.get_key(p)
        while k is not None:
            parent = tree.parent(k)
            self._drop(tree, k)
            k = parent

    def _drop(self, tree, k: str) -> None:
        for six, key in tree[k]:
            if self._c[six].pop(key, None) is not None:
                self.stats["invalidated"] += 1
        del tree[k]


def _index(trees: dict, tk: tuple, prefix: str, ref: tuple) -> None:
    tree = trees.get(tk)
    if tree is None:
        tree = trees[tk] = pytricia.PyTricia(_BITS[tk[1]])
    refs = tree.get(prefix) if tree.has_key(prefix) else None
    if refs is None:
        tree[prefix] = {ref}
    else:
        refs.add(ref)


def _overlap(c: tuple, x: int, length: int, bits: int) -> bool:
    n = min(c[1], length)
    return (c[0] >> (bits - n)) == (x >> (bits - n)) if n else True
