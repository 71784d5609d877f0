"""The Map-Server's new-registration path as it was before the CPU work of issue 10
(commit 94a2e31: one site lookup per use, ``dataclasses.replace`` on locators, the
Map-Notify encoded from the decoded records by :func:`seal`), kept only as the
reference the differential test (tests/unit/test_ms_fastnew.py) and
bench/register.py's same-run "before" figure compare the optimised
:class:`MapServer` against.  The three methods are that commit's, verbatim.

And the data model before the shard went compact (issue 11, at 1a97a67): a
:class:`RegistrationTable` of :class:`Entry` objects, refresh plans checked by
entry identity, one heap entry per armed key, ``restore`` building an entry per
row.  Those methods (``_refresh`` to ``restore`` below) are that commit's, verbatim.
"""

from __future__ import annotations

import heapq
from dataclasses import replace

from common.machines.mapserver import REPLAY_MEMORY, REPLAY_WINDOW, MapServer
from common.machines.msbytes import _digest, _refresh_key, reseal
from common.machines.msnotify import NOTIFY_RETRIES
from common.machines.msresult import RegisterResult
from common.machines.regtable import Entry, RegistrationTable, entry_from_value, entry_key
from common.machines.sites import SitePolicy
from common.wire.addr import Eid, Rle, RleEntry
from common.wire.auth import seal, verify_coverage
from common.wire.eidtext import format_eid
from common.wire.errors import DecodeError
from common.wire.messages import decode_message
from common.wire.records import EidRecord, ip_of, locator_sort_key
from common.wire.register import MapNotify, MapRegister


class ReferenceMapServer(MapServer):
    """:class:`MapServer` with the pre-optimisation compute path and data model."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.table = RegistrationTable()
        self._heap: list[tuple[float, str]] = []
        del self._due

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
        # the signing site is the first record's (as the edge gate decides it)
        site = self.site_table.site_of(eids[0])
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
        for rec, eid in zip(msg.records, eids):
            why = self._judge(site, rec, eid)
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

    def _judge(self, site: SitePolicy, rec: EidRecord, eid: Eid) -> str | None:
        if not eid.is_ip:
            return "unsupported-eid-family"
        if not self.site_table.allows(site, eid):
            return "prefix-not-allowed"
        if self.accept_index is not None and rec.ttl != 0:
            served = self.accept_index(eid)  # True / False / None: seeds not known yet
            if not served:
                return "seeds-unknown" if served is None else "index-not-served"
        return None

    def _record(self, msg, rec, eid, xtr, src, now, remaining, data, overlay, res) -> str | None:
        merge = msg.merge
        key = entry_key(eid, xtr if merge else b"")
        existing = {e.key: e for e in self.table.exact(eid)}
        for k, e in overlay.items():
            if e is None:
                existing.pop(k, None)
            elif e.eid == eid:
                existing[k] = e
        if rec.ttl == 0:  # de-registration: the registrant's own entry, or all without merge
            for k in list(existing):
                if (not merge) or k == key:
                    self._plan_delete(k, overlay, res)
            return None
        locs, rle, unusable = [], [], 0
        for loc in rec.locators:
            if isinstance(loc.address, Rle):
                for x in loc.address.entries:
                    ip = ip_of(x.address)
                    if ip is None:
                        unusable += 1
                    elif all(r.address != ip for r in rle):
                        rle.append(RleEntry(ip, x.level))
                continue
            ip = ip_of(loc.address)
            if ip is None:
                unusable += 1
                continue
            locs.append(replace(loc, address=ip, local=False, probed=False))
        if unusable:
            res.warnings.append("locator-unusable")
        if rec.locators and not locs and not rle:
            return "no-usable-locator"
        locs.sort(key=locator_sort_key)
        new = Entry(key, eid, res.site, tuple(locs), rec.ttl, msg.proxy_reply, merge, xtr,
                    str(src[0]), tuple(rle))
        old_set = {e.locators for e in existing.values()}
        if not merge:  # replacement: drop the other registrants' entries for this prefix
            for k in list(existing):
                if k != key:
                    self._plan_delete(k, overlay, res)
        old = existing.get(key)
        if remaining is not None:
            life = remaining
        else:
            life = rec.ttl * 60.0 if msg.ttl_is_lifetime else self.lifetime
        res.expiry[key] = now + life
        if not new.same(old):
            overlay[key] = new
            res.entries.append(("set", new, data, msg.want_map_notify))
            res.changes.append(("set", key, new.value, data))
            if old_set and new.locators not in old_set:
                self._plan_unsolicited(new, existing, src, res)
        return None

    # -- the data model before the compact shard (1a97a67), verbatim --------------
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
        for k, e in entries:
            if self.table.get(k) is not e or e.registrant != registrant:
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
        res.expiry = {k: now + life for (k, _e), life in zip(entries, lives)}
        if template is not None:
            res.notify = reseal(template, nonce, secret, alg)
            res.notify_to = src
        return res

    def apply(self, res: RegisterResult, now: float, undo: list | None = None) -> None:
        """Make memory follow a result (committed, or about to be in a batch: then
        ``undo`` collects what :meth:`rollback` needs if the commit fails)."""
        if undo is not None:
            touched = {item[1].key if item[0] == "set" else item[1] for item in res.entries} | set(res.expiry)
            undo.append(("state", [(k, self.table.get(k), self.raw.get(k), self.expiry.get(k),
                                    self.wants_notify.get(k)) for k in touched],
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
            if len(self._plans) >= max(1024, 2 * len(self.table)):
                self._plans.clear()
            self._plans[res.plan[0]] = res.plan[1]
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

    def _arm(self, key: str, at: float) -> None:
        self.expiry[key] = at
        heapq.heappush(self._heap, (at, key))

    def _forget(self, key: str) -> None:
        self.table.delete(key)
        self.expiry.pop(key, None)
        self.raw.pop(key, None)
        self.wants_notify.pop(key, None)

    def next_timer(self) -> float | None:
        while self._heap and self.expiry.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        nxt = self._heap[0][0] if self._heap else None
        for p in self.pending.values():
            nxt = p[4] if nxt is None else min(nxt, p[4])
        return nxt

    def expire(self, now: float, commit=None) -> list:
        """Delete every lapsed registration, committed first when ``commit`` is given;
        if it raises, nothing is deleted and the next call retries."""
        lapsed, seen = [], set()
        while self._heap and self._heap[0][0] <= now:
            at, key = heapq.heappop(self._heap)
            if self.expiry.get(key) == at and key not in seen:   # a key may sit twice in the heap
                seen.add(key)
                lapsed.append((at, key))
        changes = [("delete", key) for _, key in lapsed]
        if changes and commit is not None:
            try:
                commit(changes, {})
            except Exception:
                for item in lapsed:
                    heapq.heappush(self._heap, item)
                raise
        for ch in changes:
            self._forget(ch[1])
        return changes

    def restore(self, rows, nonces: dict, now: float) -> list:
        """Load persisted registrations: each lives one grace period unless refreshed.
        Returns the keys of rows that could not be read (skipped)."""
        bad = []
        for key, value, raw in rows:
            try:
                e = entry_from_value(key, value)
            except (KeyError, TypeError, ValueError):
                bad.append(key)
                continue
            self.table.put(e)
            self.raw[key] = raw
            self._arm(key, now + self.grace)
        self.nonces.update(nonces)
        return bad
