"""The ITR as a sans-IO machine: resolve EIDs through Map-Resolvers into the map-cache.

Theory of operation
-------------------
``resolve(eid, now)`` answers from the :class:`~common.machines.mapcache.MapCache` when it
can.  On a miss it creates (or joins) a *pending request* for exactly that EID and
queues an ECM Map-Request for it:

* the inner IP header goes from this node's RLOC (of the EID's family) to the EID
  address, the inner UDP header from the ITR's own port to 4342; the ITR-RLOCs
  are the node's RLOCs; every attempt carries a fresh nonce from the injected
  ``nonce_source()``;
* new requests take the Map-Resolvers in turn (round robin) and every retry moves
  on to the next one (fail-over);
* at most one Map-Request per second per EID-prefix (``map_request_retry``);
  after ``map_request_max_retries`` (10) unanswered retries the request fails
  (a :class:`ResolveFailed` event) and that prefix is not asked for again during
  ``map_request_backoff`` (30 s) (RFC 9301 5.3).

``handle_map_reply`` matches a Map-Reply by nonce only (any nonce of any attempt
of a pending request); unmatched or malformed replies, and P=1 replies with a
record that has A=0, are dropped and counted in ``counters``.  Every record is
installed, and every pending request the records cover completes with a
:class:`Resolved` event.

Solicit-Map-Requests (``handle_map_request`` with S=1) for a cached EID start an
SMR-invoked (s=1) Map-Request for the cached prefix through the Map-Resolvers, at
most one per ``smr_interval`` (3 s) per prefix; an SMR for an EID not in the
cache is ignored (RFC 9301 6.1).

LISP-SEC (RFC 9303, ``lisp_sec`` "on" or "required"): every Map-Request goes out as
an ECM with S=1 carrying a fresh one-time key from the injected ``otk_source()``
(wrapped with ``lisp_sec_key``, or null-wrapped without one), remembered with the
nonce.  A reply is installed only when its EID HMAC (ITR-OTK), its PKT HMAC (the
MS-OTK derived from the ITR-OTK) and the inclusion of every record's prefix in the
EID-AD all check (:func:`common.machines.lispsec.verify_reply`); otherwise it is
refused, counted (``lisp_sec_refused`` and ``lisp_sec_refused.<reason>``) and
reported in ``refusals``, the map-cache untouched and the request still pending.
A reply with S=0 is refused under "required"; under "on" it is accepted as
unprotected (``lisp_sec_unprotected``), the incremental-deployment case of RFC 9303
(docs/lisp-sec.md).

The shell sends ``datagrams_to_send()`` (each ``(address, port, payload)``) from
the ITR's socket and arms one timer for ``next_timer()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from types import SimpleNamespace
from typing import Callable

from common.wire.addr import NO_ADDRESS, Eid, eid_to_wire
from common.config import INT_TIMERS, TIMER_DEFAULTS
from common.wire.ecm import Ecm
from common.machines.lispsec import LispSecError, itr_auth, verify_reply
from common.wire.errors import DecodeError
from common.machines.etr import eid_contains
from common.wire.ipudp import IpUdp
from common.machines.mapcache import DEFAULT_INFINITE_TTL, CacheEntry, MapCache
from common.wire.messages import MapReply, MapRequest, RequestRecord, decode_message, encode_message

CONTROL_PORT = 4342
DEFAULT_SMR_INTERVAL = 3.0


def default_timers() -> SimpleNamespace:
    """The defaults of the timers this machine reads (common.config)."""
    return SimpleNamespace(map_request_retry=TIMER_DEFAULTS["map_request_retry"],
                           map_request_backoff=TIMER_DEFAULTS["map_request_backoff"],
                           map_request_max_retries=INT_TIMERS["map_request_max_retries"])


def build_map_request_ecm(eid: Eid, nonce: int, itr_rlocs, sport: int, *,
                          smr_invoked: bool = False, source_eid=NO_ADDRESS,
                          fallback_dst=None, auth=None) -> bytes:
    """An ECM (E=0, M=0) carrying a Map-Request for ``eid`` (WIRE-FORMAT 4, 8).

    Inner IP: from the first of ``itr_rlocs`` of the EID's family to the EID address
    (the group of an (S,G) EID; ``fallback_dst`` for an EID that is no IP address);
    with no RLOC of that family the source is the IPv4-mapped form of an IPv4 RLOC
    (or 0.0.0.0), since repliers answer the ITR-RLOCs, not the inner source.
    Inner UDP: ``sport`` -> 4342.  ITR-RLOCs: ``itr_rlocs`` (1..32).  ``auth``: the
    LISP-SEC authentication data (S=1), common.wire.lispsec.EcmAuth."""
    rlocs = tuple(itr_rlocs)[:32]
    addr, mask = eid_to_wire(eid)
    req = MapRequest(nonce, rlocs, (RequestRecord(addr, mask),), source_eid=source_eid,
                     smr_invoked=smr_invoked)
    dst = eid.group if eid.group is not None else eid.address
    if not isinstance(dst, (IPv4Address, IPv6Address)):
        dst = fallback_dst if fallback_dst is not None else rlocs[0]
    src = next((a for a in rlocs if type(a) is type(dst)), None)
    if src is None:
        v4 = next((a for a in rlocs if isinstance(a, IPv4Address)), None)
        src = IPv6Address(f"::ffff:{v4}") if isinstance(dst, IPv6Address) and v4 else (
            IPv6Address(0) if isinstance(dst, IPv6Address) else IPv4Address(0))
    return encode_message(Ecm(req, IpUdp(src, dst, sport, CONTROL_PORT), auth=auth))


@dataclass(frozen=True, slots=True)
class Resolved:
    """A pending request was answered; ``entry`` is the cache entry now covering
    ``eid`` (None when the reply withdrew it with TTL 0)."""

    eid: Eid
    entry: CacheEntry | None
    smr_invoked: bool = False


@dataclass(frozen=True, slots=True)
class ResolveFailed:
    """Every attempt for ``eid`` went unanswered; the prefix is backed off."""

    eid: Eid
    attempts: int
    retry_after: float


@dataclass(frozen=True, slots=True)
class Expired:
    """A cache entry's TTL ran out and it was removed."""

    eid: Eid


@dataclass(slots=True)
class _Pending:
    eid: Eid
    smr_invoked: bool
    source_eid: object
    mr_index: int
    next_send: float
    attempts: int = 0
    nonces: set = field(default_factory=set)


def _endpoint(mr) -> tuple:
    return (mr.address, mr.port) if hasattr(mr, "address") else (mr[0], mr[1])


class ItrMachine:
    """The map-cache and the Map-Requests that fill it.

    ``own_rlocs``: the node's RLOCs (ITR-RLOCs, inner source).  ``map_resolvers``:
    objects with ``address`` and ``port`` (common.config.Endpoint) or pairs.
    ``itr_port``: the UDP port of the ITR's socket (inner source port; may be set
    later through the attribute of the same name).  ``nonce_source``: returns a
    fresh 64-bit nonce per call.  ``timers``: see :func:`default_timers`.
    """

    def __init__(self, *, own_rlocs, map_resolvers, nonce_source: Callable[[], int],
                 itr_port: int = 0, timers=None, infinite_ttl: float = DEFAULT_INFINITE_TTL,
                 smr_interval: float = DEFAULT_SMR_INTERVAL, lisp_sec: str = "off",
                 lisp_sec_key: bytes | None = None, otk_source: Callable[[], bytes] | None = None) -> None:
        self.own_rlocs = tuple(own_rlocs)[:32]
        if not self.own_rlocs:
            raise ValueError("the ITR needs at least one RLOC")
        self.map_resolvers = tuple(_endpoint(m) for m in map_resolvers)
        if not self.map_resolvers:
            raise ValueError("the ITR needs at least one Map-Resolver")
        self.nonce_source = nonce_source
        self.itr_port = itr_port
        self.timers = timers if timers is not None else default_timers()
        self.smr_interval = smr_interval
        if lisp_sec not in ("off", "on", "required"):
            raise ValueError(f"lisp_sec must be off, on or required, not {lisp_sec!r}")
        if lisp_sec != "off" and otk_source is None:
            raise ValueError("LISP-SEC needs an otk_source (16 random bytes per call)")
        self.lisp_sec = lisp_sec
        self.lisp_sec_key = lisp_sec_key
        self.otk_source = otk_source
        self._otk: dict[int, bytes] = {}          # nonce -> ITR-OTK of that attempt
        self.refusals: list[tuple] = []           # (eid, reason, detail), for the shell to log
        self.resolvers_for = None     # optional: eid -> Map-Resolver endpoints for it
        self.cache = MapCache(infinite_ttl=infinite_ttl)
        self._pending: dict[Eid, _Pending] = {}
        self._by_nonce: dict[int, Eid] = {}
        self._last_sent: dict[Eid, float] = {}
        self._backoff: dict[Eid, float] = {}
        self._last_smr: dict[Eid, float] = {}
        self._rr = 0
        self._out: list[tuple] = []
        self.counters: dict[str, int] = {}

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    # -- resolving ---------------------------------------------------------------
    def resolve(self, eid: Eid, now: float, *, source_eid=NO_ADDRESS) -> CacheEntry | None:
        """The cache entry covering ``eid``, or None after starting (or joining) a
        pending request; no request is started while ``eid`` is backed off."""
        entry = self.cache.lookup(eid, now)
        if entry is not None:
            self._count("cache_hit")
            return entry
        self._count("cache_miss")
        if eid in self._pending:
            self._count("resolve_joined")
            return None
        until = self._backoff.get(eid)
        if until is not None:
            if now < until:
                self._count("resolve_backed_off")
                return None
            del self._backoff[eid]
        self._start(eid, now, smr_invoked=False, source_eid=source_eid)
        return None

    def pending(self) -> list[Eid]:
        """EIDs with a Map-Request outstanding."""
        return list(self._pending)

    def _start(self, eid: Eid, now: float, *, smr_invoked: bool, source_eid=NO_ADDRESS) -> None:
        last = self._last_sent.get(eid)
        when = now if last is None else max(now, last + self.timers.map_request_retry)
        p = _Pending(eid, smr_invoked, source_eid, self._rr, when)
        self._rr = (self._rr + 1) % len(self.map_resolvers)
        self._pending[eid] = p
        if when <= now:
            self._send(p, now)
        else:
            self._count("map_request_rate_limited")

    def _send(self, p: _Pending, now: float) -> None:
        nonce = self.nonce_source() & 0xFFFFFFFFFFFFFFFF
        p.nonces.add(nonce)
        self._by_nonce[nonce] = p.eid
        mrs = self.map_resolvers
        if self.resolvers_for is not None:  # pull mode: the EID's index set
            mrs = tuple(_endpoint(m) for m in self.resolvers_for(p.eid)) or mrs
        mr = mrs[p.mr_index % len(mrs)]
        auth = None
        if self.lisp_sec != "off":
            otk = bytes(self.otk_source())
            self._otk[nonce] = otk
            auth = itr_auth(otk, self.lisp_sec_key)
        self._out.append((mr[0], mr[1], self._ecm(p, nonce, mr[0], auth)))
        p.attempts += 1
        p.next_send = now + self.timers.map_request_retry
        self._last_sent[p.eid] = now
        self._count("smr_invoked_sent" if p.smr_invoked else "map_request_sent")

    def _ecm(self, p: _Pending, nonce: int, mr_address, auth=None) -> bytes:
        return build_map_request_ecm(p.eid, nonce, self.own_rlocs, self.itr_port,
                                     smr_invoked=p.smr_invoked, source_eid=p.source_eid,
                                     fallback_dst=mr_address, auth=auth)

    # -- replies -----------------------------------------------------------------
    def handle_map_reply(self, data, now: float) -> list:
        """Take a Map-Reply (bytes or a decoded MapReply); return its events."""
        raw = None
        if isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
            try:
                reply = decode_message(raw)
            except DecodeError:
                self._count("map_reply_malformed")
                return []
        else:
            reply = data
        if not isinstance(reply, MapReply):
            self._count("map_reply_not_reply")
            return []
        key = self._by_nonce.get(reply.nonce)
        if key is None:
            self._count("map_reply_unmatched")
            return []
        if reply.probe and not all(r.authoritative for r in reply.records):
            self._count("map_reply_probe_not_authoritative")
            return []
        if self.lisp_sec != "off" and not self._lisp_sec_ok(key, reply, raw):
            return []
        self._count("map_reply_accepted")
        prefixes = []
        for rec in reply.records:
            try:
                prefixes.append(rec.prefix)
                self.cache.install(rec, now)
            except Exception:  # an address kind with no prefix form: nothing to cache
                self._count("map_reply_record_skipped")
        done = [key] + [e for e in self._pending if e != key
                        and any(eid_contains(pfx, e) for pfx in prefixes)]
        events = []
        for e in done:
            p = self._pending.pop(e)
            for n in p.nonces:
                self._by_nonce.pop(n, None)
                self._otk.pop(n, None)
            self._backoff.pop(e, None)
            events.append(Resolved(e, self.cache.lookup(e, now), p.smr_invoked))
        return events

    def _lisp_sec_ok(self, key: Eid, reply: MapReply, raw: bytes | None) -> bool:
        """RFC 9303 6.8 for one matched reply; False (counted, noted) when refused."""
        if not reply.security and self.lisp_sec == "on":
            self._count("lisp_sec_unprotected")
            return True
        otk = self._otk.get(reply.nonce)
        try:
            if otk is None:
                raise LispSecError("no-otk")
            verify_reply(raw if raw is not None else encode_message(reply), reply, otk, reply.nonce)
        except LispSecError as exc:
            self._count("lisp_sec_refused")
            self._count(f"lisp_sec_refused.{exc.reason}")
            self.refusals.append((key, exc.reason, str(exc)))
            del self.refusals[:-64]
            return False
        self._count("lisp_sec_verified")
        return True

    # -- SMR -----------------------------------------------------------------------
    def handle_map_request(self, req: MapRequest, now: float) -> bool:
        """Take a Map-Request sent to the ITR; only SMRs (S=1) matter.  True when an
        SMR-invoked Map-Request was started (or joined one already outstanding)."""
        if not req.smr:
            self._count("map_request_ignored")
            return False
        started = False
        for rr in req.records:
            try:
                want = rr.prefix
            except Exception:
                continue
            entry = self.cache.lookup(want, now)
            if entry is None:
                self._count("smr_not_cached")
                continue
            key = entry.eid
            last = self._last_smr.get(key)
            if last is not None and now - last < self.smr_interval:
                self._count("smr_rate_limited")
                continue
            self._last_smr[key] = now
            started = True
            if key in self._pending:
                self._count("smr_joined")
                continue
            self._start(key, now, smr_invoked=True)
        return started

    # -- time ----------------------------------------------------------------------
    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (None: nothing scheduled)."""
        times = [p.next_send for p in self._pending.values()]
        exp = self.cache.next_expiry()
        if exp is not None:
            times.append(exp)
        return min(times) if times else None

    def handle_timer(self, now: float) -> list:
        """Retransmit (failing over), give up, expire; return the events."""
        t = self.timers
        events: list = []
        for p in list(self._pending.values()):
            if p.next_send > now:
                continue
            if p.attempts > t.map_request_max_retries:
                del self._pending[p.eid]
                for n in p.nonces:
                    self._by_nonce.pop(n, None)
                    self._otk.pop(n, None)
                self._backoff[p.eid] = now + t.map_request_backoff
                self._count("resolve_failed")
                events.append(ResolveFailed(p.eid, p.attempts, now + t.map_request_backoff))
                continue
            if p.attempts:
                p.mr_index += 1   # fail over to the next Map-Resolver
                self._count("map_request_retransmit")
            self._send(p, now)
        events.extend(Expired(e) for e in self.expire(now))
        self._prune(now)
        return events

    def expire(self, now: float) -> list[Eid]:
        """Remove expired cache entries; return their EIDs."""
        return self.cache.expire(now)

    def _prune(self, now: float) -> None:
        gap = max(self.timers.map_request_retry, self.smr_interval)
        if len(self._last_sent) > 2 * len(self._pending) + 256:
            self._last_sent = {k: v for k, v in self._last_sent.items()
                               if k in self._pending or now - v < gap}
        if len(self._last_smr) > 256:
            self._last_smr = {k: v for k, v in self._last_smr.items() if now - v < gap}
        if len(self._backoff) > 256:
            self._backoff = {k: v for k, v in self._backoff.items() if v > now}

    def datagrams_to_send(self) -> list[tuple]:
        """Queued ``(dst_address, dst_port, payload)``; the queue is emptied."""
        out, self._out = self._out, []
        return out

    # -- views -----------------------------------------------------------------------
    def cache_entries(self, now: float) -> list[dict]:
        """Unexpired entries for ``decent show map-cache``: eid, rlocs, ttl,
        expires_in, negative, action (and authoritative), sorted by EID text."""
        rows = [e.view(now) for e in self.cache.entries() if e.expires > now]
        return sorted(rows, key=lambda r: r["eid"])


__all__ = ["ItrMachine", "build_map_request_ecm", "Resolved", "ResolveFailed", "Expired", "default_timers", "CacheEntry",
           "MapCache"]
