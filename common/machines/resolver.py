"""What a Map-Resolver worker does with each datagram that reaches UDP 4342.

Sans-IO: :meth:`Resolver.handle` takes the bytes, the source and the local address
and returns actions: :class:`Send` (a datagram from 4342), :class:`Punt` (hand it
to another role over the bus, by message type) or :class:`Drop` (count and log).

ECM Map-Requests are answered here, in-process, from the replica (DESIGN.md 2):

* E=1 goes to this node's ETR and nowhere else;
* M=1, and a plain ECM for an EID this node serves, get the Map-Server treatment:
  a proxy reply when a registrant set P=1, the ECM forwarded to one of the
  registrant's ETRs with E=1 when P=0, a negative reply when nothing is registered
  (1 minute inside a configured prefix, 15 minutes with the least-specific prefix
  outside every known one);
* a plain ECM for an EID served elsewhere (pull mode) is forwarded once with M=1.

Nothing is answered while the replica is out of sync.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

import pytricia

from common.wire.addr import Eid, Rle, eid_to_wire
from common.wire.ecm import Ecm, set_ecm_flags
from common.wire.errors import DecodeError
from common.wire.messages import MapRequest, decode_message
from common.wire.records import ACT_NATIVELY_FORWARD, EidRecord, Locator, encode_record, locator_sort_key
from common.machines.natinfo import info_reply
from common.machines.ratelimit import TokenTable
from common.machines.regtable import PrefixSet, RegistrationTable, host_of, negative_prefix

_W0_NONCE = struct.Struct("!IQ")
_BITS = {4: 32, 6: 128}
MAX_RECORDS = 255   # the Record Count field of a Map-Reply

PUNT_TOPICS = {1: "map-request", 2: "map-reply", 3: "map-register", 4: "map-notify",
               5: "map-notify-ack", 6: "map-referral", 7: "info"}


@dataclass(frozen=True, slots=True)
class Send:
    dst: str
    port: int
    data: bytes
    what: str = ""


@dataclass(frozen=True, slots=True)
class Punt:
    kind: str          # "map-register.<shard>", "ecm-etr", "map-notify", ...
    data: bytes
    src: tuple


@dataclass(frozen=True, slots=True)
class Drop:
    reason: str
    detail: str = ""


def RateLimiter(rate: float, burst: float, slots: int = 4096) -> TokenTable:
    """The in-process default: a private :class:`~common.machines.ratelimit.TokenTable`
    (fixed memory, never reset wholesale).  The map_resolver role replaces it with
    the node's shared tables (roles/ratetable.py)."""
    return TokenTable(bytearray(TokenTable.size(slots)), 0, slots, rate, burst, b"in-process")


class Resolver:
    # hooks the map_resolver role may set (issue 12, each self-contained):
    local_db = None        # eid -> bool: inside this node's own database mappings, so its
                           # ETR answers a request the replica holds nothing for, E bit or not
    count = None           # name -> None: counts events that are neither a send nor a drop
    control_port = 4342    # this node's Map-Server port, for Info-Replies
    lisp_sec = None        # common.machines.lispsec.MsLispSec (issue 13): RFC 9303 on the
                           # Map-Server treatment (ETR forwards and the replies built here)

    def __init__(self, table: RegistrationTable, configured: PrefixSet, *, site_of=None, shard_for=None,
                 neg_ttl_non_eid: int = 15, neg_ttl_unregistered: int = 1, proxy_ttl: int = 1440,
                 rate: float = 1000.0, burst: float = 2000.0, serves=None, forward_to=None,
                 neg_floor=None, mtu: int = 1400) -> None:
        self.table = table
        self.mtu = mtu                    # no Map-Reply datagram (IP + UDP + LISP) exceeds it
        self.configured = configured
        self.site_of = site_of or (lambda eid: None)
        self.shard_for = shard_for        # site name -> map_server shard (None: one shard)
        self.neg_ttl_non_eid = neg_ttl_non_eid
        self.neg_ttl_unregistered = neg_ttl_unregistered
        self.proxy_ttl = proxy_ttl
        self.limiter = RateLimiter(rate, burst)
        # optional: Map-Replies per reply destination (the ITR-RLOC a request names);
        # anything with allow(address, now) (common.machines.ratelimit.TokenTable)
        self.dest_limiter = None
        self.serves = serves              # pull mode: eid -> bool; None = serve everything
        self.forward_to = forward_to      # pull mode: (eid, ip version) -> an address of the serving set
        self.neg_floor = neg_floor        # pull mode: eid -> minimum negative prefix length
        self.in_sync = False
        self._cache: dict = {}
        self._cache_version = -1
        # optional eid -> bool: is the replica this EID's answer depends on in sync?
        # (with several map_server shards, one shard resyncing affects only its sites)
        self.ready = None

    def handle(self, data: bytes, src: tuple, local: str, now: float) -> list:
        try:
            msg = decode_message(data)
        except DecodeError as exc:
            return [Drop(f"malformed.{_reason(exc.field)}", str(exc))]
        if not isinstance(msg, Ecm):
            kind = PUNT_TOPICS[data[0] >> 4]
            if kind == "info":
                return self._info(msg, src, local, now)
            if kind in ("map-register", "map-notify-ack"):
                kind = f"{kind}.{self._shard(msg)}"
            return [Punt(kind, data, src)]
        inner = msg.inner
        if msg.zero_checksum and msg.ip.src.version == 6 and self.count is not None:
            self.count("inner-udp-zero-checksum")  # lispers.net; accepted (common.wire.ecm)
        if not isinstance(inner, MapRequest):
            return [Drop("ecm-inner-not-map-request", type(inner).__name__)]
        if inner.probe:
            return [Drop("probe-in-ecm")]
        if 4341 in (msg.ip.sport, msg.ip.dport):
            return [Drop("ecm-inner-port-4341")]
        if not self.limiter.allow(src[0], now):
            return [Drop("rate-limited", src[0])]
        if msg.to_etr:
            return [Punt("ecm-etr", data, src)]
        if msg.ddt:
            return [Drop("ddt-request", "ECM D=1 asks for a Map-Referral; this node is not a DDT node")]
        if inner.dont_map_reply:
            return [Drop("dont-map-reply")]
        eids = [r.prefix for r in inner.records[:MAX_RECORDS]]
        if not eids:
            return [Drop("no-request-records")]
        usable = [e for e in eids if e.is_ip]
        if not usable:
            return [Drop("unsupported-eid-family", str(eids[0]))]
        for eid in usable:
            if not (self.ready(eid) if self.ready is not None else self.in_sync):
                return [Drop("not-in-sync")]
        eid = usable[0]
        if self.local_db is not None and self.local_db(eid) and self.table.lookup(eid) is None:
            # our own EID that our Map-Server holds nothing for: answer as its ETR
            # (OOR's Map-Server forwards to the ETR without the E bit)
            return [Punt("ecm-etr", data, src)]
        if not msg.to_ms and self.serves is not None and not self.serves(eid):
            target = self.forward_to(eid, _version(local)) if self.forward_to else None
            if target is None:
                return [Drop("no-serving-set", str(eid))]
            return [Send(target, 4342, set_ecm_flags(data, to_ms=True), "forwarded-to-set")]
        return self._map_server(data, msg, inner, usable, local, len(eids) - len(usable), now)

    def _info(self, msg, src: tuple, local: str, now: float) -> list:
        """An Info-Request gets an Info-Reply (common.machines.natinfo); a reply is not ours."""
        if msg.reply:
            return [Drop("info-reply-unsolicited", src[0])]
        if not self.limiter.allow(src[0], now):
            return [Drop("rate-limited", src[0])]
        return [Send(src[0], src[1], info_reply(msg, src, local, self.control_port), "info-reply")]

    # -- the Map-Server treatment ---------------------------------------------------
    def _map_server(self, data: bytes, ecm: Ecm, req: MapRequest, eids: list, local: str,
                    unsupported: int, now: float = 0.0) -> list:
        """Every (IP) record of the request answered: proxy and negative records in one
        Map-Reply, and the ECM forwarded once to each registered ETR that answers
        for the others."""
        itr = _itr_rloc(req, local)
        if itr is None:
            return [Drop("no-usable-itr-rloc")]
        sec = None
        if self.lisp_sec is not None:
            sec, refused = self.lisp_sec.open(ecm, req, eids, self.table.lookup)
            if refused is not None:
                return [Drop(*refused)]
        out, count, parts, what = [], 0, [], "negative-reply"
        room = self._room(local)
        if sec is not None:   # room for the LISP-SEC data too: 48 bytes + at most 0.8 x the records
            room = (room - 48) * 5 // 9
        etrs: dict[str, list] = {}
        for eid in eids:
            kind, a, b = self._answer(eid, local)
            if kind == "proxy" and a > 1 and (count + a > MAX_RECORDS or len(b) > room):
                # the match and its more-specifics do not fit what is left: one record
                kind, a, b = self._carved(eid, local)
            if kind == "etr":
                etrs.setdefault(a, []).append(eid)
                continue
            if kind == "none":
                out.append(Drop("no-usable-etr-rloc", a))
                continue
            if count + a > MAX_RECORDS or len(b) > room:
                out.append(Drop("reply-full", str(eid)))
                continue
            count += a
            room -= len(b)
            parts.append(b)
            if kind == "proxy":
                what = "proxy-reply"
        for etr, answered in etrs.items():
            fwd = set_ecm_flags(data, to_etr=True, to_ms=False) if sec is None else sec.forward(answered)
            out.append(Send(etr, 4342, fwd, "forwarded-to-etr"))
        if count and self.dest_limiter is not None and not self.dest_limiter.allow(itr, now):
            out.append(Drop("rate-limited-destination", itr))
        elif count:
            head = _W0_NONCE.pack((2 << 28) | count, req.nonce)
            reply = head + b"".join(parts)
            out.append(Send(itr, ecm.ip.sport, reply if sec is None else sec.sign(reply), what))
        if unsupported:
            out.append(Drop("unsupported-eid-family", f"{unsupported} record(s)"))
        return out

    def _answer(self, eid: Eid, local: str) -> tuple:
        """("proxy", record count, encoded records) / ("etr", address, None) /
        ("none", prefix text, None) / ("negative", 1, encoded record)."""
        if self._cache_version != self.table.version:
            self._cache.clear()
            self._cache_version = self.table.version
        version = _version(local)
        if not eid.is_multicast:
            # the answer for a prefix is the same for every EID inside it until the
            # table changes: cache it by the longest match (and the listener's family,
            # which picks the ETR address)
            hit = self.table.best_key(eid)
            if hit is None and eid.length < _BITS[eid.address.version]:
                # a prefix request that no registration covers: answer for its first
                # address, so a negative never covers what is registered inside it
                eid = host_of(eid)
                hit = self.table.best_key(eid)
            if hit is not None:
                answer = self._cache.get((hit, version))
                if answer is None:
                    answer = self._cache[(hit, version)] = self._positive(self.table.lookup(eid), local)
                return self._carved(eid, local) if answer[0] == "carve" else answer
            return self._negative(eid)
        m = self.table.lookup(eid)
        return self._positive(m, local) if m is not None else self._negative(eid)

    def _positive(self, m, local: str) -> tuple:
        prefix, entries = m.best
        if any(e.proxy for e in entries):
            records = b"".join(encode_record(self._proxy_record(p, es)) for p, es in m.prefixes)
            if len(m.prefixes) > 1 and (len(m.prefixes) > MAX_RECORDS or len(records) > self._room(local)):
                return "carve", 1, None   # answered per EID: see _carved
            return "proxy", len(m.prefixes), records
        etr = _pick_etr(entries, local)
        return ("etr", etr, None) if etr is not None else ("none", str(prefix), None)

    def _room(self, local: str) -> int:
        """Bytes of EID records one Map-Reply datagram to the listener's family holds."""
        return self.mtu - (40 if _version(local) == 6 else 20) - 8 - _W0_NONCE.size

    def _carved(self, eid: Eid, local: str) -> tuple:
        """One proxy record for ``eid`` when its match and the more-specifics inside it
        do not fit one Map-Reply (255 records, the MTU): the largest prefix inside the
        match that holds ``eid`` and no more-specific registration, with the match's
        locators (regtable :meth:`~RegistrationTable.carve`).  A prefix request is
        answered for its first address, so the record never covers a more-specific."""
        host = host_of(eid)
        found = self.table.carve(host)
        if found is None:
            return self._negative(host)
        best, entries, carved = found
        key = ("carved", carved, _version(local))
        answer = self._cache.get(key)
        if answer is None:
            if not any(e.proxy for e in entries):   # the host's own match is not a proxy one
                return self._answer(host, local)
            answer = self._cache[key] = ("proxy", 1, encode_record(self._proxy_record(carved, entries)))
        return answer

    def _negative(self, eid: Eid) -> tuple:
        """A negative record for ``eid``, which no registration covers.

        Cached by the negative prefix it names (cleared with the answer cache by any
        table change): every unmatched host inside a negative prefix N gets N again,
        because N overlaps nothing stored or configured that does not contain the
        first host, and anything containing one host of N contains N; so the same
        configured prefix covers both and the same least-specific prefix results
        (the brute-force oracle in tests/unit/test_negative_oracle.py pins both
        paths).  Not with a pull-mode floor, which is the caller's function."""
        tree = None
        if not eid.is_multicast and self.neg_floor is None and eid.length == _BITS[eid.address.version]:
            tk = ("negative", eid.iid, eid.address.version)
            tree = self._cache.get(tk)
            if tree is None:
                tree = self._cache[tk] = pytricia.PyTricia(eid.length)
            else:
                hit = tree.get(str(eid.address))
                if hit is not None:
                    return hit
        neg, record = self._negative_record(eid)
        answer = ("negative", 1, record)
        if tree is not None:
            tree[f"{neg.address}/{neg.length}"] = answer
        return answer

    def _negative_record(self, eid: Eid) -> tuple:
        """(the negative prefix, its encoded record) for ``eid``."""
        covering = self.configured.covering(eid)
        ttl = self.neg_ttl_non_eid if covering is None else self.neg_ttl_unregistered
        if eid.is_multicast:
            neg = eid
        else:
            floor = self.neg_floor(eid) if self.neg_floor else 0
            if covering is not None:
                floor = max(floor, covering.length)
            neg = negative_prefix(eid, [self.table, self.configured], floor=floor)
        addr, ml = eid_to_wire(neg)
        return neg, encode_record(EidRecord(addr, ml, ttl, (), ACT_NATIVELY_FORWARD))

    def _proxy_record(self, prefix: Eid, entries) -> EidRecord:
        seen, locs, rle, ttl = set(), [], [], self.proxy_ttl
        for e in entries:
            ttl = min(ttl, e.ttl)
            for loc in e.locators:
                if loc.address not in seen:
                    seen.add(loc.address)
                    locs.append(replace(loc, local=False, probed=False))
            for x in e.rle:
                if all(r.address != x.address for r in rle):
                    rle.append(x)
        locs.sort(key=locator_sort_key)
        if rle:
            locs.append(Locator(Rle(tuple(rle)), 255, 0, 1, 100))
        addr, ml = eid_to_wire(prefix)
        return EidRecord(addr, ml, ttl, tuple(locs))

    def _shard(self, msg) -> int:
        if self.shard_for is None:
            return 0
        for r in getattr(msg, "records", ()):
            site = self.site_of(r.prefix)
            if site is not None:
                return self.shard_for(site)
        return 0


def _reason(field: str) -> str:
    # "record[3].eid.afi" -> "record.eid.afi": one counter per kind of fault
    out, depth = [], 0
    for ch in field:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _version(local: str) -> int:
    """IP version of one of our own (canonical) addresses, without parsing it."""
    return 6 if ":" in local else 4


def _itr_rloc(req: MapRequest, local: str) -> str | None:
    version = _version(local)
    for a in req.itr_rlocs:
        if getattr(a, "version", None) == version:
            return str(a)
    return None


def _pick_etr(entries, local: str) -> str | None:
    version = _version(local)
    best = None
    for e in entries:
        for loc in e.locators:
            if loc.address.version == version and loc.priority < 255 and loc.reachable:
                if best is None or loc.priority < best.priority:
                    best = loc
    if best is not None:
        return str(best.address)
    for e in entries:
        reg = e.registrant
        if reg and (":" in reg) == (version == 6):
            return reg
    return None
