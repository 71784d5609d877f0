"""The ETR as a sans-IO machine: periodic Map-Registers and authoritative Map-Replies.

Theory of operation
-------------------
The machine is built from the node's database mappings, the Map-Servers to
register with (address, port, key), the xTR-ID/Site-ID, the timers and
``nonce_start``.  It reads no clock and draws no random numbers: time comes in as
``now`` and every Map-Register nonce is the previous one plus one, starting at
``nonce_start`` (the shell passes a time-based value such as ``time.time_ns()``
so that nonces keep increasing across restarts, DESIGN.md 5).

Registration (RFC 9301 5.6, 8.2; WIRE-FORMAT 6, 7)::

    start(now) ---> round: every message to every Map-Server, next round after
                    register_interval_fast (20 s) while now - start < fast_period
                    (5 min), register_interval (60 s) afterwards
    a message with M=1 is outstanding until its Map-Notify (MAC verified with that
    server's key, same nonce, from that server's address) arrives; while any is
    outstanding the server is re-sent the unacknowledged messages (new nonces) after
    map_notify_retry_initial (1 s), doubling up to map_notify_retry_max (60 s).
    A periodic round that falls due meanwhile is folded into the next
    retransmission, so the backoff is not reset by the schedule.
    All messages of a round acknowledged -> the server is "registered" at that time.

The records are grouped into messages by the P (proxy-reply) flag, which is a
message-level flag, and at most 20 records go into one message.  Each record is
the mapping's EID with its TTL, A=1, and its locators sorted (IPv4 before IPv6,
ascending) with L=1 on the node's own RLOCs and R=1.

The shell calls :meth:`EtrMachine.datagrams_to_send` after every call and sends
each ``(address, port, payload)``; it arms one timer for :meth:`next_timer`.
:meth:`withdraw` builds TTL-0 Map-Registers (pull mode, a server leaving the
set); a role restart never withdraws.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import ip_address, IPv4Address
from types import SimpleNamespace

from common.wire.addr import Eid, clear_host_bits, eid_to_wire
from common.wire.auth import seal, verify
from common.config import TIMER_DEFAULTS
from common.wire.errors import DecodeError
from common.wire.messages import MapReply, MapRequest, decode_message, encode_message
from common.wire.records import EidRecord, Locator
from common.wire.register import MapNotify, MapRegister

MAX_RECORDS_PER_REGISTER = 20
NONCE_MASK = (1 << 64) - 1

_TIMER_NAMES = ("register_interval", "register_interval_fast", "fast_period",
                "map_notify_retry_initial", "map_notify_retry_max")


def default_timers() -> SimpleNamespace:
    """The RFC 9301 defaults of the timers this machine reads (common.config.TIMER_DEFAULTS)."""
    return SimpleNamespace(**{k: TIMER_DEFAULTS[k] for k in _TIMER_NAMES})


def locator_sort_key(address) -> tuple[int, int]:
    """IPv4 before IPv6, then ascending (RFC 9301 5.5)."""
    return (0 if isinstance(address, IPv4Address) else 1, int(address))


def eid_contains(outer: Eid, inner: Eid) -> bool:
    """True when prefix ``outer`` covers ``inner`` (same instance ID and family)."""
    if outer.iid != inner.iid or type(outer.address) is not type(inner.address):
        return False
    if (outer.group is None) != (inner.group is None):
        return False
    if outer.group is not None:
        if (type(outer.group) is not type(inner.group) or outer.group_len > inner.group_len
                or clear_host_bits(inner.group, outer.group_len) != outer.group):
            return False
    if not hasattr(outer.address, "packed") and not hasattr(outer.address, "value"):
        return outer == inner
    return (outer.length <= inner.length
            and clear_host_bits(inner.address, outer.length) == outer.address)


@dataclass(frozen=True, slots=True)
class _Batch:
    """One Map-Register's worth of records (same P flag, at most 20)."""

    records: tuple
    proxy_reply: bool
    want_notify: bool


@dataclass(slots=True)
class _ServerState:
    ref: object                          # .address, .port, .key (.key_id, .alg_id, .secret_bytes)
    next_register: float = 0.0
    pending: dict = field(default_factory=dict)  # batch index -> outstanding nonce
    retry_at: float | None = None
    retry_interval: float = 0.0
    retries: int = 0
    registered_at: float | None = None
    last_sent: float | None = None
    sent: int = 0
    notifies: int = 0


def _server_key(ref) -> tuple:
    return (ref.address, ref.port)


class EtrMachine:
    """Registers database mappings with Map-Servers and answers Map-Requests for them.

    ``mappings``: objects with ``eid`` (Eid), ``rlocs`` (each ``address``,
    ``priority``, ``weight``, ``mpriority``, ``mweight``), ``ttl`` (minutes),
    ``proxy_reply`` and ``want_map_notify`` (common.config.DatabaseMapping).
    ``map_servers``: objects with ``address``, ``port`` and ``key`` (``key_id``,
    ``alg_id``, ``secret_bytes``) (common.config.MapServerRef).  ``own_rlocs`` are
    the node's RLOCs (L=1 on those locators; the families a Map-Reply can go to).
    ``timers`` needs the attributes named in :func:`default_timers`.
    """

    def __init__(self, mappings, map_servers, *, own_rlocs, xtr_id: bytes, site_id: bytes,
                 nonce_start: int = 0, timers=None, nonce_source=None) -> None:
        self.timers = timers if timers is not None else default_timers()
        self.own_rlocs = tuple(own_rlocs)
        self.xtr_id = xtr_id
        self.site_id = site_id
        self.mappings = tuple(mappings)
        self._nonce = nonce_start & NONCE_MASK
        # several machines of one xTR (pull mode: one per index) share one counter,
        # since a Map-Server checks nonces per xTR-ID and key
        self._nonce_source = nonce_source
        self._records = tuple(self._record(m) for m in self.mappings)
        self._batches = self._make_batches()
        self._servers: dict[tuple, _ServerState] = {}
        for ref in map_servers:
            self._servers.setdefault(_server_key(ref), _ServerState(ref))
        self._started: float | None = None
        self._out: list[tuple] = []
        self.counters: dict[str, int] = {}

    # -- building --------------------------------------------------------------
    def _record(self, m) -> EidRecord:
        addr, mask = eid_to_wire(m.eid)
        locs = tuple(Locator(r.address, r.priority, r.weight, r.mpriority, r.mweight,
                             local=r.address in self.own_rlocs, reachable=True)
                     for r in sorted(m.rlocs, key=lambda r: locator_sort_key(r.address)))
        return EidRecord(addr, mask, m.ttl, locs, authoritative=True)

    def _make_batches(self) -> tuple:
        groups: dict[bool, list] = {}
        for m, rec in zip(self.mappings, self._records):
            groups.setdefault(bool(m.proxy_reply), []).append((m, rec))
        out = []
        for proxy, items in groups.items():
            for i in range(0, len(items), MAX_RECORDS_PER_REGISTER):
                chunk = items[i:i + MAX_RECORDS_PER_REGISTER]
                out.append(_Batch(tuple(r for _, r in chunk), proxy,
                                  any(m.want_map_notify for m, _ in chunk)))
        return tuple(out)

    def _next_nonce(self) -> int:
        if self._nonce_source is not None:
            return self._nonce_source() & NONCE_MASK
        n = self._nonce
        self._nonce = (self._nonce + 1) & NONCE_MASK
        return n

    def _seal(self, batch: _Batch, ref, *, records=None, want_notify=None) -> tuple[int, bytes]:
        nonce = self._next_nonce()
        key = ref.key
        msg = MapRegister(nonce, batch.records if records is None else records,
                          key_id=key.key_id, alg_id=key.alg_id, proxy_reply=batch.proxy_reply,
                          want_map_notify=batch.want_notify if want_notify is None else want_notify,
                          xtr_id=self.xtr_id, site_id=self.site_id)
        return nonce, seal(msg, key.secret_bytes)

    def _send(self, st: _ServerState, indices, now: float) -> None:
        for i in indices:
            nonce, data = self._seal(self._batches[i], st.ref)
            self._out.append((st.ref.address, st.ref.port, data))
            st.sent += 1
            if self._batches[i].want_notify:
                st.pending[i] = nonce
        st.last_sent = now
        self.counters["map_register_sent"] = self.counters.get("map_register_sent", 0) + len(indices)

    def _interval(self, now: float) -> float:
        t = self.timers
        if self._started is not None and now - self._started < t.fast_period:
            return t.register_interval_fast
        return t.register_interval

    def _round(self, st: _ServerState, now: float) -> None:
        """Every message to one server; the next round is scheduled."""
        self._send(st, range(len(self._batches)), now)
        st.next_register = now + self._interval(now)

    # -- the aioquic-style API ---------------------------------------------------
    def start(self, now: float) -> None:
        """Begin: the first round to every Map-Server is queued at once."""
        self._started = now
        for st in self._servers.values():
            self._round(st, now)
            self._arm_retry(st, now, first=True)

    def register_now(self, now: float) -> None:
        """An extra round to every Map-Server at once (push mode: the group gained
        members, who must learn these mappings without waiting a period)."""
        if self._started is None:
            return
        for st in self._servers.values():
            self._round(st, now)
            self._arm_retry(st, now, first=True)

    def _arm_retry(self, st: _ServerState, now: float, first: bool) -> None:
        if not st.pending:
            st.retry_at = None
            return
        t = self.timers
        if first or st.retry_at is None:
            st.retry_interval = t.map_notify_retry_initial
            st.retries = 0
        else:
            st.retry_interval = min(st.retry_interval * 2, t.map_notify_retry_max)
        st.retry_at = now + st.retry_interval

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (None: nothing scheduled)."""
        if self._started is None:
            return None
        times = [st.retry_at if st.pending else st.next_register for st in self._servers.values()]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Send what is due: periodic rounds and Map-Notify retransmissions."""
        if self._started is None:
            return
        for st in self._servers.values():
            if st.pending:
                if st.retry_at is not None and now >= st.retry_at:
                    st.retries += 1
                    self.counters["map_register_retransmit"] = self.counters.get("map_register_retransmit", 0) + 1
                    if now >= st.next_register:
                        self._round(st, now)   # a periodic round folded into the retry
                    else:
                        self._send(st, sorted(st.pending), now)
                    self._arm_retry(st, now, first=False)
            elif now >= st.next_register:
                self._round(st, now)
                self._arm_retry(st, now, first=True)

    def datagrams_to_send(self) -> list[tuple]:
        """Queued ``(dst_address, dst_port, payload)``; the queue is emptied."""
        out, self._out = self._out, []
        return out

    def handle_map_notify(self, data: bytes, src_addr, src_port: int, now: float) -> bool:
        """Take a Map-Notify; True when it acknowledged an outstanding Map-Register.

        It must decode, come from the address of a Map-Server with a Map-Register
        outstanding under the same nonce, and carry a MAC valid under that server's
        key; anything else is ignored (and counted in ``counters``)."""
        try:
            msg = decode_message(data)
        except DecodeError:
            return self._drop("map_notify_malformed")
        if not isinstance(msg, MapNotify):
            return self._drop("map_notify_not_notify")
        try:
            src = ip_address(str(src_addr))
        except ValueError:
            return self._drop("map_notify_bad_source")
        for st in self._servers.values():
            if ip_address(str(st.ref.address)) != src:
                continue
            idx = next((i for i, n in st.pending.items() if n == msg.nonce), None)
            if idx is None:
                continue
            if not verify(data, st.ref.key.secret_bytes):
                return self._drop("map_notify_bad_mac")
            del st.pending[idx]
            st.notifies += 1
            if not st.pending:
                st.registered_at = now
                st.retry_at = None
                st.retries = 0
                if st.next_register <= now:
                    st.next_register = now + self._interval(now)
            return True
        return self._drop("map_notify_unmatched")

    def _drop(self, reason: str) -> bool:
        self.counters[reason] = self.counters.get(reason, 0) + 1
        return False

    # -- Map-Servers joining and leaving (pull mode) ----------------------------
    def set_map_servers(self, map_servers, now: float, *, withdraw: bool = True) -> None:
        """Replace the Map-Server set: new servers get a round now; servers that left
        are forgotten and, with ``withdraw``, sent TTL-0 Map-Registers."""
        new = {_server_key(r): r for r in map_servers}
        for k in list(self._servers):
            if k not in new:
                st = self._servers.pop(k)
                if withdraw:
                    self._out.extend(self.withdraw(st.ref))
        for k, ref in new.items():
            if k not in self._servers:
                st = self._servers[k] = _ServerState(ref)
                if self._started is not None:
                    self._round(st, now)
                    self._arm_retry(st, now, first=True)
            else:
                self._servers[k].ref = ref   # a key change applies to the next message

    def withdraw(self, map_server) -> list[tuple]:
        """TTL-0 Map-Registers (M=0) of every mapping, addressed to ``map_server``.

        Returned, not queued; the server set is unchanged.  Nonces are consumed, so
        they stay increasing."""
        out = []
        for b in self._batches:
            recs = tuple(replace(r, ttl=0) for r in b.records)
            _, data = self._seal(b, map_server, records=recs, want_notify=False)
            out.append((map_server.address, map_server.port, data))
        return out

    def status(self) -> dict:
        """Per Map-Server ``"address:port"``: registered, last_registered, last_sent,
        outstanding_nonces, retries, next_register, sent, notifies."""
        out = {}
        for st in self._servers.values():
            a = st.ref.address
            name = f"[{a}]:{st.ref.port}" if a.version == 6 else f"{a}:{st.ref.port}"
            out[name] = {"address": str(a), "port": st.ref.port,
                         "registered": st.registered_at is not None and not st.pending,
                         "last_registered": st.registered_at, "last_sent": st.last_sent,
                         "outstanding_nonces": sorted(st.pending.values()),
                         "retries": st.retries,
                         "next_register": st.retry_at if st.pending else st.next_register,
                         "sent": st.sent, "notifies": st.notifies}
        return out

    @property
    def next_nonce(self) -> int:
        """The nonce the next Map-Register will carry."""
        return self._nonce

    # -- Map-Requests -------------------------------------------------------------
    def owns(self, eid: Eid) -> bool:
        """True when one of the database mappings covers ``eid``."""
        return any(eid_contains(m.eid, eid) for m in self.mappings)

    def handle_map_request(self, req: MapRequest, reply_to=None, now: float = 0.0, *,
                           local_addr=None, lisp_sec=None) -> tuple | None:
        """The authoritative Map-Reply for a Map-Request, as ``(address, port, payload)``.

        ``reply_to`` is ``(address, port)`` of the request's sender (the inner
        header of an ECM, or the UDP source of a direct RLOC-probe): the port is the
        reply's destination port (4342 without it), the address is used when no
        ITR-RLOC is of a family this node has an RLOC in.  Each request record covered by a mapping
        is answered with that mapping (and any mapping more specific inside it),
        A=1, its TTL and its sorted locators.  A probe (P=1) gets P=1; the locator
        equal to ``local_addr`` (the address the probe arrived on) gets p=1.
        ``lisp_sec``: ``(MS-OTK, EID-AD bytes, PKT HMAC ID)`` from a Map-Server's ECM
        with S=1 (common.machines.lispsec.etr_open): the reply gets S=1, that EID-AD
        and its PKT HMAC (RFC 9303 6.6).
        None when no record is ours, or there is nowhere to send the reply."""
        recs: list[EidRecord] = []
        for rr in req.records:
            try:
                want = rr.prefix
            except Exception:  # an address kind with no prefix form is never ours
                continue
            cover = [i for i, m in enumerate(self.mappings) if eid_contains(m.eid, want)]
            if not cover:
                continue
            best = max(cover, key=lambda i: (self.mappings[i].eid.length, self.mappings[i].eid.group_len))
            chosen = [best] + [i for i, m in enumerate(self.mappings)
                               if i != best and eid_contains(self.mappings[best].eid, m.eid)]
            for i in chosen:
                rec = self._records[i]
                if req.probe and local_addr is not None:
                    rec = replace(rec, locators=tuple(replace(l, probed=(l.address == local_addr))
                                                      for l in rec.locators))
                if rec not in recs:
                    recs.append(rec)
        if not recs:
            return self._none("map_request_not_ours")
        families = {type(a) for a in self.own_rlocs}
        dst = next((a for a in req.itr_rlocs if type(a) in families), None)
        if dst is None and reply_to is not None:
            dst = reply_to[0]
        if dst is None:
            return self._none("map_request_no_itr_rloc")
        reply = MapReply(req.nonce, tuple(recs), probe=req.probe)
        self.counters["map_reply_sent"] = self.counters.get("map_reply_sent", 0) + 1
        payload = encode_message(reply)
        if lisp_sec is not None:
            from common.machines.lispsec import sign_reply
            ms_otk, eid_ad, hmac_id = lisp_sec
            payload = sign_reply(payload, eid_ad, hmac_id, ms_otk)
            self.counters["map_reply_signed"] = self.counters.get("map_reply_signed", 0) + 1
        return (dst, reply_to[1] if reply_to is not None else 4342, payload)

    def _none(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1
        return None


__all__ = ["EtrMachine", "MAX_RECORDS_PER_REGISTER", "default_timers", "eid_contains",
           "locator_sort_key"]
