"""Unsolicited Map-Notifies (RFC 9301 8.2; WIRE-FORMAT 7): planned when the RLOC-set of
a prefix changes (the Map-Server's compute step, common/machines/mapserver.py),
retransmitted until a Map-Notify-Ack arrives or the retries run out.  Methods of
:class:`~common.machines.mapserver.MapServer`, on its state (``pending``,
``_notify_nonce``, ``wants_notify``)."""

from __future__ import annotations

from common.wire.addr import Rle, eid_to_wire
from common.wire.auth import seal, verify
from common.wire.errors import DecodeError
from common.wire.messages import decode_message
from common.wire.records import EidRecord, Locator
from common.wire.register import MapNotify, MapNotifyAck
from common.machines.msresult import RegisterResult
from common.machines.regtable import Entry

# unsolicited Map-Notify retransmission (WIRE-FORMAT 7): 3 at 3 s, then 3 doubling
NOTIFY_RETRIES = (3.0, 3.0, 3.0, 6.0, 12.0, 24.0)


class UnsolicitedNotify:
    """Unsolicited Map-Notifies (a base class of
    :class:`~common.machines.mapserver.MapServer`)."""

    def _plan_unsolicited(self, new: Entry, existing: dict, src, res: RegisterResult) -> None:
        """RFC 9301 8.2: when the RLOC-set of a prefix changes, tell the previous
        registrants that asked for Map-Notifies."""
        site = self.sites[new.site]
        key = site.keys[0]
        addr, ml = eid_to_wire(new.eid)
        locs = list(new.locators)
        if new.rle:
            locs.append(Locator(Rle(new.rle), 255, 0, 1, 100))
        record = EidRecord(addr, ml, new.ttl, tuple(locs), authoritative=True)
        for e in existing.values():
            if e.registrant and e.registrant != str(src[0]) and self.wants_notify.get(e.key):
                nonce = (self._notify_nonce + len(res.unsolicited)) & 0xFFFFFFFFFFFFFFFF
                msg = MapNotify(nonce, (record,), key.key_id, key.alg_id, b"")
                res.unsolicited.append((e.registrant, 4342, nonce, seal(msg, key.secret)))

    # -- unsolicited Map-Notify: acks and retransmission ------------------------------
    def handle_notify_ack(self, data: bytes) -> str:
        """A Map-Notify-Ack for one of our unsolicited Map-Notifies: "acked", or why not."""
        try:
            msg = decode_message(data)
        except DecodeError as exc:
            return f"malformed:{exc.field}"
        if not isinstance(msg, MapNotifyAck):
            return "not-a-map-notify-ack"
        p = self.pending.get(msg.nonce)
        if p is None:
            return "unknown-nonce"
        site = self.sites.get(p[5])
        k = site.key(msg.key_id) if site else None
        if k is None or not verify(data, k.secret, allow_none=(k.alg_id == 0)):
            return "auth-failure"
        del self.pending[msg.nonce]
        return "acked"

    def retransmit(self, now: float) -> tuple[list, int]:
        """(datagrams due again, how many were given up) for unacknowledged Map-Notifies."""
        out, gave_up = [], 0
        for nonce, p in list(self.pending.items()):
            if p[4] > now:
                continue
            p[3] += 1
            if p[3] >= len(NOTIFY_RETRIES):
                del self.pending[nonce]
                gave_up += 1
                continue
            p[4] = now + NOTIFY_RETRIES[p[3]]
            out.append((p[0], p[1], p[2]))
        return out, gave_up
