"""One record of a Map-Register judged and planned (RFC 9301 5.6): the part of the
Map-Server's compute step (common/machines/mapserver.py) that works out, per EID-record,
whether it is allowed and which entries it sets or deletes (planned into the result).
Methods of :class:`~common.machines.mapserver.MapServer`, on its state."""

from __future__ import annotations

from common.wire.addr import Eid, Rle, RleEntry
from common.wire.records import EidRecord, Locator, ip_of, locator_sort_key
from common.machines.msresult import RegisterResult
from common.machines.regtable import Entry, entry_key
from common.machines.sites import SitePolicy


class RecordJudge:
    """Judging and planning one record (a base class of
    :class:`~common.machines.mapserver.MapServer`)."""

    def _judge(self, site: SitePolicy, rec: EidRecord, eid: Eid, hit) -> str | None:
        """``hit``: ``site_table.covering(eid)``, looked up once per record."""
        if not eid.is_ip:
            return "unsupported-eid-family"
        # SiteTable.allows, from the lookup already made
        if hit is None or hit[0].name != site.name or not (hit[1] == eid or hit[2]):
            return "prefix-not-allowed"
        if self.accept_index is not None and rec.ttl != 0:
            served = self.accept_index(eid)  # True / False / None: seeds not known yet
            if not served:
                return "seeds-unknown" if served is None else "index-not-served"
        return None

    def _record(self, msg, rec, eid, xtr, src, now, remaining, data, overlay, res) -> str | None:
        merge = msg.merge
        key = entry_key(eid, xtr if merge else b"")
        if self.fault_in is not None:
            self.fault_in(eid)
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
            if ip is loc.address and not loc.local and not loc.probed:
                locs.append(loc)      # already as stored (frozen: shared, not copied)
            else:                     # dataclasses.replace, without its introspection
                locs.append(Locator(ip, loc.priority, loc.weight, loc.mpriority, loc.mweight, False,
                                    False, loc.reachable, loc.unused_flags))
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

    def _plan_delete(self, key: str, overlay: dict, res: RegisterResult) -> None:
        if overlay.get(key, 0) is None or (key not in overlay and self.table.get(key) is None):
            return
        overlay[key] = None
        res.entries.append(("delete", key))
        res.changes.append(("delete", key))
        res.expiry.pop(key, None)
