"""The Map-Server's new-registration path as it was before the CPU work of issue 10
(commit 94a2e31: one site lookup per use, ``dataclasses.replace`` on locators, the
Map-Notify encoded from the decoded records by :func:`seal`), kept only as the
reference the differential test (tests/unit/test_ms_fastnew.py) and
bench/register.py's same-run "before" figure compare the optimised
:class:`MapServer` against.  The three methods are that commit's, verbatim.
"""

from __future__ import annotations

from dataclasses import replace

from common.machines.mapserver import (
    REPLAY_WINDOW,
    MapServer,
    RegisterResult,
    _digest,
    _refresh_key,
)
from common.machines.regtable import Entry, entry_key
from common.machines.sites import SitePolicy
from common.wire.addr import Eid, Rle, RleEntry
from common.wire.auth import seal, verify_coverage
from common.wire.eidtext import format_eid
from common.wire.errors import DecodeError
from common.wire.messages import decode_message
from common.wire.records import EidRecord, ip_of, locator_sort_key
from common.wire.register import MapNotify, MapRegister


class ReferenceMapServer(MapServer):
    """:class:`MapServer` with the pre-optimisation compute path."""

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

