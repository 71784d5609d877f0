"""The Map-Server's registration machine (RFC 9301 5.6, 8.2; WIRE-FORMAT 11.1).

Sans-IO, in three steps that the shell cannot get out of order:

1. **compute** (:meth:`MapServer.compute_register`): decode, authenticate, judge
   every record against every site, check the nonce, and work out the complete
   result (changes, expiry times, nonce updates, the Map-Notify) without touching
   any state.  Nothing can raise half-way through a table update, because there
   is none.
2. **commit**: the shell's ``commit(changes, nonces)`` makes the changes durable
   (SQLite, one transaction).  If it raises, nothing is applied, published or
   acknowledged.
3. **apply** (:meth:`MapServer.apply`): memory follows, then the deltas are
   published, then the Map-Notify leaves, so a worker never lacks a registration
   its ETR was told about.

:meth:`MapServer.handle_register` runs the three with the shell's callables; the
order is a property the unit tests check with a failing and a recording commit.

Sites (:mod:`common.machines.sites`): every shard knows every site's prefixes
and judges a record by the most specific configured prefix containing it, so a
site's key cannot register inside another site's prefix, whatever the shard.
Nonces (RFC 9301 5.6): the registrant is the xTR-ID only when the MAC covers it
(an xTR-ID outside the MAC is anybody's), otherwise (site, key ID, EID-prefix);
``strict`` refuses a nonce not greater than the last accepted one of the same
registrant, ``warn`` accepts and counts it, ``off`` ignores nonces.

Beside this module (methods of :class:`MapServer` in base classes, or helpers):
judging one record (common/machines/msrecords.py), unsolicited Map-Notifies
(common/machines/msnotify.py), the expiry heap and restore
(common/machines/msexpiry.py), the result (common/machines/msresult.py) and the
helpers on message bytes (common/machines/msbytes.py).
"""

from __future__ import annotations

from common.wire.addr import Eid
from common.wire.auth import seal, verify_coverage
from common.wire.eidtext import format_eid
from common.wire.errors import DecodeError
from common.wire.messages import decode_message
from common.wire.register import MapNotify, MapRegister
from common.machines.msbytes import _digest, _refresh_key, reseal
from common.machines.msexpiry import ExpiryHeap
from common.machines.msnotify import NOTIFY_RETRIES, UnsolicitedNotify
from common.machines.msrecords import RecordJudge
from common.machines.msresult import RegisterResult
from common.machines.regnotify import notify_of_register, plain_records
from common.machines.regtable import Entry
from common.machines.shardtable import ShardTable
from common.machines.sites import SiteKey, SitePolicy, SiteTable

__all__ = ["MapServer", "RegisterResult", "SiteKey", "SitePolicy", "SiteTable", "site_covering"]

# warn policy: a byte-identical Map-Register accepted within this window is a replay;
# the last REPLAY_MEMORY messages of each registrant are remembered (memory only)
REPLAY_WINDOW = 24 * 3600.0
REPLAY_MEMORY = 64


class MapServer(RecordJudge, UnsolicitedNotify, ExpiryHeap):
    """One shard's registrations.  ``lifetime``: seconds a registration lives without T=1.

    ``sites``: every site of the node (judging); ``own``: names this shard serves
    (None: all).  ``notify_nonce``: the first nonce of unsolicited Map-Notifies
    (the shell seeds it randomly)."""

    def __init__(self, sites, *, lifetime: float = 180.0, grace: float | None = None,
                 accept_index=None, own=None, notify_nonce: int = 1) -> None:
        self.site_table = SiteTable(sites)
        self.sites = {n: s for n, s in self.site_table.sites.items() if own is None or n in own}
        # the compact form (issue 11): entries are built only for what a Map-Register
        # or a lookup touches
        self.table = ShardTable()
        self.lifetime = lifetime
        self.grace = lifetime if grace is None else grace
        self.expiry: dict[str, float] = {}
        # expiry times in a heap, each with the keys armed for it (a reload arms a
        # chunk of keys at one time: one heap entry, not one per key)
        self._heap: list[float] = []
        self._due: dict[float, list[str]] = {}
        self.nonces: dict[str, int] = {}
        self.raw: dict[str, bytes] = {}
        self.wants_notify: dict[str, bool] = {}
        # pull mode hook: accept_index(eid) -> True/False, or None while the DNS seeds
        # are not known yet (None instead of a function: serve everything)
        self.accept_index = accept_index
        self._notify_nonce = notify_nonce & 0xFFFFFFFFFFFFFFFF
        self.pending: dict[int, list] = {}   # nonce -> [dst, port, data, attempt, next_at, site]
        self.stats: dict[str, dict] = {n: {"last_accepted": None, "refused": {}} for n in self.sites}
        self._plans: dict[bytes, tuple] = {}   # refresh fast path (derived; see _refresh)
        self.seen: dict[str, dict[bytes, float]] = {}   # warn: digests accepted per registrant
        # a shard still reloading its store (issue 11): fault_in(eid) loads what the
        # store holds for that EID-prefix before a record is judged against it (the
        # shell's; None once the whole store is loaded)
        self.fault_in = None

    # -- site lookup --------------------------------------------------------------
    def site_for(self, eid: Eid) -> tuple[SitePolicy | None, bool]:
        """The site whose configured prefix covers ``eid``, and whether it is allowed."""
        hit = self.site_table.covering(eid)
        if hit is None:
            return None, False
        s, p, more = hit
        return s, (p == eid or more)

    # -- step 1: compute ----------------------------------------------------------
    def compute_register(self, data: bytes, src: tuple, now: float,
                         remaining: float | None = None, coverage: str | None = None) -> RegisterResult:
        """The complete result of one Map-Register; changes no state.

        ``remaining``: seconds the registration has left (a push-mode snapshot entry
        keeps the lifetime it had at the member that served it).  ``coverage``: the
        MAC coverage the edge gate verified (:mod:`common.machines.regedge`); None
        verifies here."""
        if coverage is not None and remaining is None:
            fast = self._refresh(data, src, now, coverage)
            if fast is not None:
                return fast
        try:
            msg = decode_message(data)
        except DecodeError as exc:
            return RegisterResult(False, f"malformed:{exc.field}")
        if not isinstance(msg, MapRegister):
            return RegisterResult(False, "not-a-map-register")
        if not msg.records:
            return RegisterResult(False, "no-records")
        eids = [r.prefix for r in msg.records]
        # one site lookup per record: (site, configured prefix, more-specifics) or None
        covering = self.site_table.covering
        hit0 = covering(eids[0])
        # the signing site is the first record's (as the edge gate decides it)
        site = None if hit0 is None else hit0[0]
        if site is None:
            return RegisterResult(False, "no-site", refused=[(e, "no-site") for e in eids])
        if site.name not in self.sites:
            return RegisterResult(False, "wrong-shard", site=site.name)
        key = site.key(msg.key_id)
        if key is None or key.alg_id != msg.alg_id:
            return RegisterResult(False, "auth-key-mismatch", site=site.name)
        if coverage is None:
            coverage = verify_coverage(data, key.secret, allow_none=(key.alg_id == 0))
            if coverage is None:
                return RegisterResult(False, "auth-failure", site=site.name)
        res = RegisterResult(True, site=site.name, nonce=msg.nonce, registrant=str(src[0]))
        # the xTR-ID identifies the registrant only when the MAC vouches for it
        xtr = msg.xtr_id if (msg.xtr_id and coverage == "all") else None
        if xtr is not None:
            keys = [f"{site.name}|{msg.key_id}|x:{xtr.hex()}"]
        else:
            keys = list(dict.fromkeys(f"{site.name}|{msg.key_id}|p:{format_eid(e)}"
                                      for e in eids if e.is_ip))
        lasts = [self.nonces[k] for k in keys if k in self.nonces]
        if site.nonce_policy == "warn":
            res.digest = _digest(data)
        if site.nonce_policy != "off" and lasts and msg.nonce <= max(lasts):
            if site.nonce_policy == "strict":
                return RegisterResult(False, "replayed-nonce", site=site.name)
            # warn: a peer whose nonces do not increase is accepted, but never the same
            # message twice within the replay window
            for k in keys:
                at = self.seen.get(k, {}).get(res.digest)
                if at is not None and now - at < REPLAY_WINDOW:
                    return RegisterResult(False, "replayed-message", site=site.name)
            res.warnings.append("nonce-not-increasing")
        overlay: dict[str, Entry | None] = {}     # this message's own earlier records
        accepted = []
        hits = [hit0]
        hits.extend(covering(e) for e in eids[1:])
        for rec, eid, hit in zip(msg.records, eids, hits):
            why = self._judge(site, rec, eid, hit)
            if why is None:
                why = self._record(msg, rec, eid, xtr or b"", src, now, remaining, data, overlay, res)
            if why is None:
                accepted.append(rec)
            else:
                res.refused.append((eid, why))
        if not accepted:
            return RegisterResult(False, res.refused[0][1], refused=res.refused, site=site.name)
        for k in keys:
            last = self.nonces.get(k)
            res.nonces[k] = msg.nonce if site.nonce_policy != "warn" or last is None else max(last, msg.nonce)
        template = None
        if msg.want_map_notify:
            # the acknowledgement lists exactly what was registered (RFC 9301 5.7)
            # every record accepted and plain IP addresses: the received record bytes
            # are their encoding (common.machines.regnotify)
            if not res.refused and plain_records(msg.records):
                res.notify = notify_of_register(data, key.secret)
            if res.notify is None:
                notify = MapNotify(msg.nonce, tuple(accepted), msg.key_id, msg.alg_id, b"",
                                   xtr_id=msg.xtr_id, site_id=msg.site_id)
                res.notify = seal(notify, key.secret)
            res.notify_to = src
            template = res.notify
        if (not res.refused and not res.warnings and not res.unsolicited and remaining is None
                and self.accept_index is None and not any(c[0] == "delete" for c in res.changes)):
            # the next Map-Register with the same records is a refresh: the fast path,
            # as long as these entries stay the ones it meets
            entries = tuple((k, overlay[k] if k in overlay else self.table.get(k)) for k in res.expiry)
            if all(e is not None for _, e in entries):
                lives = tuple(at - now for at in res.expiry.values())
                res.plan = (_refresh_key(data, coverage), (site.name, tuple(keys), entries, lives, template,
                                                           key.secret, key.alg_id))
        return res

    def _refresh(self, data: bytes, src: tuple, now: float, coverage: str) -> RegisterResult | None:
        """The fast path for a refresh that changes nothing: the same records, flags
        and key as a Map-Register accepted before, whose entries are still the ones it
        made, from the same registrant.  Only the nonce, the expiry and the
        Map-Notify's nonce and MAC change.  None: take the full path."""
        plan = self._plans.get(_refresh_key(data, coverage))
        if plan is None:
            return None
        site_name, keys, entries, lives, template, secret, alg = plan
        registrant = str(src[0])
        holds = self.table.holds
        for _k, token, reg in entries:    # the same content still stored (not object identity)
            if reg != registrant or not holds(token):
                return None
        nonce = int.from_bytes(data[4:12], "big")
        site = self.sites[site_name]
        if site.nonce_policy != "off":
            for k in keys:
                last = self.nonces.get(k)
                if last is not None and nonce <= last:
                    return None      # the full path refuses or warns, with its reasons
        res = RegisterResult(True, site=site_name, nonce=nonce, registrant=registrant)
        if site.nonce_policy == "warn":
            res.digest = _digest(data)
        res.nonces = dict.fromkeys(keys, nonce)
        res.expiry = {k: now + life for (k, _t, _r), life in zip(entries, lives)}
        if template is not None:
            res.notify = reseal(template, nonce, secret, alg)
            res.notify_to = src
        return res

    # -- step 3: apply --------------------------------------------------------------
    def apply(self, res: RegisterResult, now: float, undo: list | None = None) -> None:
        """Make memory follow a result (committed, or about to be in a batch: then
        ``undo`` collects what :meth:`rollback` needs if the commit fails)."""
        if undo is not None:
            # entries only for the keys whose registration changes (a refresh only
            # moves expiry times: _KEPT, no entry built)
            changed = {item[1].key if item[0] == "set" else item[1] for item in res.entries}
            # a key with no expiry armed is stored nowhere (every stored registration is
            # armed: _record, restore): a new registration's undo needs no table read
            get, armed = self.table.get, self.expiry
            undo.append(("state", [(k, (get(k) if k in armed else None) if k in changed else _KEPT, self.raw.get(k),
                                    self.expiry.get(k),
                                    self.wants_notify.get(k)) for k in changed | set(res.expiry)],
                          [(k, self.nonces.get(k)) for k in res.nonces],
                          [n for _d, _p, n, _x in res.unsolicited], self._notify_nonce))
        for item in res.entries:
            if item[0] == "set":
                _, e, raw, wants = item
                self.table.put(e)
                self.raw[e.key] = raw
                self.wants_notify[e.key] = wants
            else:
                self._forget(item[1])
        for key, at in res.expiry.items():
            self._arm(key, at)
        self.nonces.update(res.nonces)
        if res.digest is not None:
            for k in res.nonces:
                ring = self.seen.setdefault(k, {})
                ring[res.digest] = now
                if len(ring) > REPLAY_MEMORY:
                    del ring[next(iter(ring))]
        for dst, port, nonce, data in res.unsolicited:
            self.pending[nonce] = [dst, port, data, 0, now + NOTIFY_RETRIES[0], res.site]
        if res.unsolicited:
            self._notify_nonce = (self._notify_nonce + len(res.unsolicited)) & 0xFFFFFFFFFFFFFFFF
        if res.plan is not None:
            plan = self._plan_tokens(res.plan[1])
            if plan is not None:
                if len(self._plans) >= max(1024, 2 * len(self.table)):
                    self._plans.clear()
                self._plans[res.plan[0]] = plan
        st = self.stats.get(res.site)
        if st is not None:
            st["last_accepted"] = {"at": now, "from": res.registrant}
        self.note_refusals(res)

    def rollback(self, undo: list) -> None:
        """Undo :meth:`apply` calls (newest first) after a failed group commit."""
        for _tag, keys, nonces, pending, notify_nonce in reversed(undo):
            for k, entry, raw, at, wants in keys:
                if entry is None:
                    self._forget(k)
                else:
                    if entry is not _KEPT:
                        self.table.put(entry)
                    self.raw[k] = raw
                    self.wants_notify[k] = wants
                    if at is None:
                        self.expiry.pop(k, None)
                    else:
                        # its heap entry is still there (nothing popped since apply)
                        self.expiry[k] = at
            for k, n in nonces:
                if n is None:
                    self.nonces.pop(k, None)
                else:
                    self.nonces[k] = n
            for n in pending:
                self.pending.pop(n, None)
            self._notify_nonce = notify_nonce

    def _plan_tokens(self, plan: tuple) -> tuple | None:
        """A refresh plan's entries as (key, content token, registrant), taken once
        they are applied (:meth:`ShardTable.token`); None: one is not stored."""
        site_name, keys, entries, lives, template, secret, alg = plan
        out = []
        for k, e in entries:
            token = self.table.token(k)
            if token is None:
                return None
            out.append((k, token, e.registrant))
        return site_name, keys, tuple(out), lives, template, secret, alg

    def note_refusals(self, res: RegisterResult) -> None:
        st = self.stats.get(res.site)
        if st is None:
            return
        reasons = [why for _, why in res.refused] if res.refused else ([] if res.accepted else [res.reason])
        for why in reasons:
            st["refused"][why] = st["refused"].get(why, 0) + 1

    def handle_register(self, data: bytes, src: tuple, now: float, *, commit=None, send=None,
                        publish=None, remaining: float | None = None) -> RegisterResult:
        """compute -> commit -> apply -> publish -> send.  ``commit(changes, nonces)``
        may raise: then nothing is applied, published or sent, and the result says
        ``commit-failed``.  Without callables it only computes and applies (tests)."""
        res = self.compute_register(data, src, now, remaining)
        if not res.accepted:
            self.note_refusals(res)
            return res
        if commit is not None:
            try:
                commit(res.changes, res.nonces)
            except Exception as exc:  # the store failed: memory stays as durable state is
                return RegisterResult(False, "commit-failed", site=res.site, error=repr(exc))
        self.apply(res, now)
        if publish is not None and res.changes:
            publish(res.changes)
        if send is not None:
            if res.notify is not None:
                send(res.notify_to[0], res.notify_to[1], res.notify)
            for dst, port, _nonce, d in res.unsolicited:
                send(dst, port, d)
        return res

    def handle_batch(self, items, now: float, *, commit, send=None, publish=None) -> list:
        """Many Map-Registers, one commit (group commit).  ``items``: (data, src,
        coverage or None, remaining or None).  Each is computed against the state the
        earlier ones left (applied to memory at once, with an undo record); then one
        ``commit(changes, nonces)``; if it raises, every applied result is rolled back
        and none is acknowledged.  Then the deltas are published and the
        Map-Notifies sent, in order.  Returns the results."""
        results, undo, accepted = [], [], []
        for data, src, coverage, remaining in items:
            res = self.compute_register(data, src, now, remaining, coverage)
            results.append(res)
            if not res.accepted:
                self.note_refusals(res)
                continue
            self.apply(res, now, undo)
            accepted.append(res)
        if not accepted:
            return results
        changes = [c for r in accepted for c in r.changes]
        nonces: dict = {}
        for r in accepted:
            nonces.update(r.nonces)
        try:
            commit(changes, nonces)
        except Exception as exc:  # the store failed: memory goes back to what is durable
            self.rollback(undo)
            err = repr(exc)
            return [RegisterResult(False, "commit-failed", site=r.site, error=err) if r.accepted else r
                    for r in results]
        if publish is not None and changes:
            publish(changes)
        if send is not None:
            for r in accepted:
                if r.notify is not None:
                    send(r.notify_to[0], r.notify_to[1], r.notify)
                for dst, port, _nonce, d in r.unsolicited:
                    send(dst, port, d)
        return results

    def snapshot(self) -> list:
        return [(e.key, e.value) for e in self.table.entries()]


_KEPT = object()     # undo: the registration itself was not changed (only its expiry)


def site_covering(sites, eid: Eid) -> SitePolicy | None:
    """The site with the most specific configured prefix covering ``eid``."""
    return SiteTable(sites).site_of(eid)
