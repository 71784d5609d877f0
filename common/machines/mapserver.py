"""The Map-Server's registration machine (RFC 9301 5.6, 8.2; WIRE-FORMAT 11.1).

Sans-IO: :meth:`MapServer.handle_register` takes the bytes of a Map-Register and
returns a :class:`RegisterResult` saying what changed; the shell makes the changes
durable (SQLite) *before* it sends the Map-Notify in the result (DESIGN.md 5), then
publishes them as deltas.  Refreshes that change nothing only move the expiry in
memory.  :meth:`MapServer.expire` turns lapsed registrations into deletions.

Sites own keys and EID-prefixes; a record whose prefix is not allowed for the site
whose key signed the message is refused (no hijack).  Nonces: per site, ``strict``
rejects a nonce that is not greater than the last one seen for (xTR-ID, key ID),
``warn`` only counts it, ``off`` ignores nonces.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace

from common.wire.addr import Eid, Rle, clear_host_bits
from common.wire.auth import seal, verify
from common.wire.errors import DecodeError
from common.wire.messages import decode_message
from common.machines.regtable import PrefixSet, RegistrationTable, entry_key, entry_value
from common.wire.register import MapNotify, MapRegister


@dataclass(frozen=True, slots=True)
class SiteKey:
    key_id: int
    alg_id: int
    secret: bytes


@dataclass(frozen=True, slots=True)
class SitePolicy:
    name: str
    keys: tuple                      # SiteKey
    prefixes: tuple                  # (Eid, accept_more_specifics)
    nonce_policy: str = "strict"


@dataclass(slots=True)
class RegisterResult:
    """What one Map-Register did.  ``changes``: ("set", key, value, raw) / ("delete", key)."""

    accepted: bool
    reason: str = ""                 # drop reason when not accepted
    changes: list = field(default_factory=list)
    refused: list = field(default_factory=list)   # (eid text, reason) per refused record
    notify: bytes | None = None      # Map-Notify to send after the changes are durable
    notify_to: tuple | None = None   # (address, port)
    nonce_key: str | None = None
    nonce: int = 0
    warnings: list = field(default_factory=list)
    site: str = ""


def _contains(outer: Eid, inner: Eid) -> bool:
    if outer.iid != inner.iid or type(outer.address) is not type(inner.address):
        return False
    if outer.is_multicast != inner.is_multicast:
        return False
    if inner.is_multicast:
        return (type(outer.group) is type(inner.group) and outer.group_len <= inner.group_len
                and clear_host_bits(inner.group, outer.group_len) == outer.group
                and outer.length <= inner.length
                and clear_host_bits(inner.address, outer.length) == outer.address)
    return outer.length <= inner.length and clear_host_bits(inner.address, outer.length) == outer.address


class MapServer:
    """One shard's registrations.  ``lifetime``: seconds a registration lives without T=1."""

    def __init__(self, sites, *, lifetime: float = 180.0, grace: float | None = None,
                 accept_index=None) -> None:
        self.sites = {s.name: s for s in sites}
        self.table = RegistrationTable()
        self.configured = PrefixSet([p for s in sites for p, _ in s.prefixes])
        self.lifetime = lifetime
        self.grace = lifetime if grace is None else grace
        self.expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self.nonces: dict[str, int] = {}
        self.raw: dict[str, bytes] = {}
        # pull mode hook: accept_index(eid) -> True/False, or None while the DNS seeds
        # are not known yet (None instead of a function: serve everything)
        self.accept_index = accept_index

    # -- site lookup --------------------------------------------------------------
    def site_for(self, eid: Eid) -> tuple[SitePolicy | None, bool]:
        """The site whose configured prefix covers ``eid``, and whether it is allowed."""
        best = _best_prefix(self.sites.values(), eid)
        if best is None:
            return None, False
        s, p, more = best
        return s, (p == eid or more)

    # -- registration -------------------------------------------------------------
    def handle_register(self, data: bytes, src: tuple, now: float) -> RegisterResult:
        try:
            msg = decode_message(data)
        except DecodeError as exc:
            return RegisterResult(False, f"malformed:{exc.field}")
        if not isinstance(msg, MapRegister):
            return RegisterResult(False, "not-a-map-register")
        if not msg.records:
            return RegisterResult(False, "no-records")
        try:
            eids = [r.prefix for r in msg.records]
        except ValueError:
            return RegisterResult(False, "bad-eid")
        site = None
        for e in eids:
            site, _ = self.site_for(e)
            if site is not None:
                break
        if site is None:
            return RegisterResult(False, "no-site", refused=[(e, "no-site") for e in eids])
        key = next((k for k in site.keys if k.key_id == msg.key_id), None)
        if key is None or key.alg_id != msg.alg_id:
            return RegisterResult(False, "auth-key-mismatch", site=site.name)
        if not verify(data, key.secret, allow_none=(key.alg_id == 0)):
            return RegisterResult(False, "auth-failure", site=site.name)
        res = RegisterResult(True, site=site.name)
        who = msg.xtr_id.hex() if msg.xtr_id else f"addr:{src[0]}"
        res.nonce_key = f"{site.name}|{who}|{msg.key_id}"
        res.nonce = msg.nonce
        last = self.nonces.get(res.nonce_key)
        if site.nonce_policy != "off" and last is not None and msg.nonce <= last:
            if site.nonce_policy == "strict":
                return RegisterResult(False, "replayed-nonce", site=site.name)
            res.warnings.append("nonce-not-increasing")
        xtr = msg.xtr_id or b""
        for rec, eid in zip(msg.records, eids):
            s2, allowed = self.site_for(eid)
            if s2 is not site or not allowed:
                res.refused.append((eid, "prefix-not-allowed"))
                continue
            if self.accept_index is not None and rec.ttl != 0:
                served = self.accept_index(eid)  # True / False / None: seeds not known yet
                if not served:
                    res.refused.append((eid, "seeds-unknown" if served is None else "index-not-served"))
                    continue
            self._apply_record(msg, rec, eid, xtr, src, now, data, res)
        if len(res.refused) == len(msg.records):
            reason = res.refused[0][1]
            return RegisterResult(False, reason, refused=res.refused, site=site.name)
        self.nonces[res.nonce_key] = max(msg.nonce, last or 0) if site.nonce_policy == "warn" else msg.nonce
        if msg.want_map_notify:
            notify = MapNotify(msg.nonce, msg.records, msg.key_id, msg.alg_id, b"",
                               xtr_id=msg.xtr_id, site_id=msg.site_id)
            res.notify = seal(notify, key.secret)
            res.notify_to = src
        return res

    def _apply_record(self, msg, rec, eid, xtr, src, now, data, res) -> None:
        merge = msg.merge
        key = entry_key(eid, xtr if merge else b"")
        existing = self.table.exact(eid)
        if rec.ttl == 0:  # de-registration
            for e in existing:
                if (not merge) or e.key == key:
                    self._delete(e.key, res)
            return
        rle = None
        locs = []
        for loc in rec.locators:
            if isinstance(loc.address, Rle):
                rle = [[str(x.address), x.level] for x in loc.address.entries]
            else:
                locs.append(replace(loc, local=False, probed=False))
        locs.sort(key=lambda l: (l.address.version, int(l.address)))
        value = entry_value(eid, res.site, locs, ttl=rec.ttl, proxy=msg.proxy_reply, merge=merge,
                            xtr_id=xtr, registrant=str(src[0]), rle=rle)
        if not merge:  # replacement: drop the other registrants' entries for this prefix
            for e in existing:
                if e.key != key:
                    self._delete(e.key, res)
        old = self.table.get(key)
        life = rec.ttl * 60.0 if msg.ttl_is_lifetime else self.lifetime
        self._arm(key, now + life)
        if old is None or _content(old.value) != _content(value):
            self.table.set(key, value)
            self.raw[key] = data
            res.changes.append(("set", key, value, data))

    def _delete(self, key: str, res: RegisterResult | None) -> None:
        if self.table.get(key) is None:
            return
        self.table.delete(key)
        self.expiry.pop(key, None)
        self.raw.pop(key, None)
        if res is not None:
            res.changes.append(("delete", key))

    def _arm(self, key: str, at: float) -> None:
        self.expiry[key] = at
        heapq.heappush(self._heap, (at, key))

    # -- time -----------------------------------------------------------------------
    def next_timer(self) -> float | None:
        while self._heap and self.expiry.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def expire(self, now: float) -> list:
        """Delete every registration whose lifetime has passed; return the changes."""
        out = RegisterResult(True)
        while self._heap and self._heap[0][0] <= now:
            at, key = heapq.heappop(self._heap)
            if self.expiry.get(key) == at:
                self._delete(key, out)
        return out.changes

    def expires_in(self, key: str, now: float) -> float | None:
        at = self.expiry.get(key)
        return None if at is None else max(0.0, at - now)

    # -- restart --------------------------------------------------------------------
    def restore(self, rows, nonces: dict, now: float) -> None:
        """Load persisted registrations: each lives one grace period unless refreshed."""
        for key, value, raw in rows:
            self.table.set(key, value)
            self.raw[key] = raw
            self._arm(key, now + self.grace)
        self.nonces.update(nonces)

    def snapshot(self) -> list:
        return [(e.key, e.value) for e in self.table.entries()]


def _best_prefix(sites, eid: Eid):
    best = None
    for s in sites:
        for p, more in s.prefixes:
            if _contains(p, eid) and (best is None or _spec(p) > _spec(best[1])):
                best = (s, p, more)
    return best


def site_covering(sites, eid: Eid) -> SitePolicy | None:
    """The site with the most specific configured prefix covering ``eid``."""
    best = _best_prefix(sites, eid)
    return None if best is None else best[0]


def _content(v: dict) -> tuple:
    return (v["eid"], v["site"], tuple(map(tuple, v["rlocs"])), v["ttl"], v["proxy"], v["merge"],
            tuple(map(tuple, v.get("rle") or ())))


def _spec(e: Eid) -> tuple:
    return (e.group_len, e.length) if e.is_multicast else (0, e.length)
