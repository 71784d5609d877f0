"""LISP-Decent push mode: the mapping-system group and its members (DESIGN.md 7).

Members register the group EID ``(IID, 0.0.0.0/0, G)`` (``::/0`` with an IPv6 G)
with one RLOC-record holding an RLE of their own RLOC (level 128), merge bit set,
proxy-reply set, no Map-Notify (RFC 8378, WIRE-FORMAT 11.5).  The Map-Server keeps
one entry per member (merge is keyed by xTR-ID) and the union of their RLEs is the
member list: the replication list for Map-Registers sent to G.

Pure helpers; the ``etr`` and ``dataplane`` roles do the sending.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

from common.wire.addr import Eid, Rle, RleEntry, eid_to_wire
from common.wire.auth import seal
from common.wire.records import EidRecord, Locator
from common.wire.register import MapRegister

MEMBER_LEVEL = 128


def group_eid(iid: int, group) -> Eid:
    """The group address EID (0.0.0.0/0, G) or (::/0, G)."""
    g = ip_address(str(group))
    any_src = IPv4Address(0) if g.version == 4 else IPv6Address(0)
    return Eid(iid, any_src, 0, g, g.max_prefixlen)


def membership_record(iid: int, group, rloc, ttl: int) -> EidRecord:
    addr, ml = eid_to_wire(group_eid(iid, group))
    rle = Rle((RleEntry(ip_address(str(rloc)), MEMBER_LEVEL),))
    return EidRecord(addr, ml, ttl, (Locator(rle, 255, 0, 1, 100, reachable=True),))


def membership_register(iid: int, group, rloc, *, nonce: int, key_id: int, alg_id: int, secret: bytes,
                        xtr_id: bytes, site_id: bytes, ttl: int = 3, lifetime: bool = True) -> bytes:
    """A sealed Map-Register announcing ``rloc`` as a member of ``group``.

    ``ttl`` minutes with T=1 (``lifetime``): the membership lapses at every member at
    the same time when the node stops refreshing it."""
    rec = membership_record(iid, group, rloc, ttl)
    m = MapRegister(nonce, (rec,), key_id, alg_id, proxy_reply=True, merge=True,
                    ttl_is_lifetime=lifetime, want_map_notify=False, xtr_id=xtr_id, site_id=site_id)
    return seal(m, secret)


def members_of(entries) -> list[str]:
    """The replication list from registration-table entries of the group EID: the
    union of their RLEs, lowest level only (an ITR replicates to the lowest level)."""
    best: dict[str, int] = {}
    for e in entries:
        for r in e.rle:
            a = str(r.address)
            best[a] = min(r.level, best.get(a, 255))
    if not best:
        return []
    low = min(best.values())
    return sorted((a for a, lv in best.items() if lv == low), key=lambda a: (ip_address(a).version, int(ip_address(a))))


def members_from_reply(records) -> list[str]:
    """Member addresses from the RLE locators of Map-Reply records."""
    out = set()
    for rec in records:
        for loc in rec.locators:
            if isinstance(loc.address, Rle):
                out.update(str(e.address) for e in loc.address.entries)
    return sorted(out, key=lambda a: (ip_address(a).version, int(ip_address(a))))


# -- who may replicate to us (issue 13) ------------------------------------------------

def _locator_addresses(records) -> list[str]:
    """Every RLOC the records name (RLE entries flattened), in order, once."""
    out: dict[str, None] = {}
    for rec in records:
        for loc in rec.locators:
            if isinstance(loc.address, Rle):
                for e in loc.address.entries:
                    out[str(e.address)] = None
            elif isinstance(loc.address, (IPv4Address, IPv6Address)):
                out[str(loc.address)] = None
    return list(out)


def replica_verdict(register, outer_src: str, members, seeds) -> tuple[str | None, str]:
    """Whether to hand a replicated Map-Register (decoded: ``register.records``) that
    arrived from ``outer_src`` to the Map-Server, and as whose.

    Accepted from a current member (the merged RLE, ``members``) or a seed; from
    anyone else only a membership announcement naming exactly that sender (how a
    joiner reaches the seeds).  The registrant, which is also where the Map-Server
    sends a Map-Notify, comes from the Map-Register's own records (which the
    Map-Server authenticates), never from the inner header the sender chose: the
    sender itself when it is one of the records' RLOCs, else the first of them of
    the sender's family (with none, the checked sender).

    Returns ``(registrant, "")`` to accept, ``(None, reason)`` to drop."""
    src = str(ip_address(outer_src))
    named = _locator_addresses(register.records)
    known = {str(ip_address(str(a))) for a in members} | {str(ip_address(str(a))) for a in seeds}
    if src not in known:
        announces = bool(register.records) and all(r.prefix.is_multicast for r in register.records)
        if not (announces and named == [src]):
            return None, "replica-not-member"
    if src in named:
        return src, ""
    same = [a for a in named if ip_address(a).version == ip_address(src).version]
    return (same[0] if same else src), ""


class HeldReplicas:
    """Replicated Map-Registers from senders not (yet) known as members, held until
    the sender is (issue: members starting together).

    A member that has just joined replicates its Map-Registers to every member it
    knows, and a receiver may not know the sender yet (its membership arrives a
    moment later): :func:`replica_verdict` refuses it as ``replica-not-member``.  The
    sender, which already knew the receiver, has no reason to send it again before
    its next register interval.  So the receiver holds what it refused, and when its
    member list gains the sender, takes it again (through the same verdict; the
    Map-Server still checks MAC and nonce).

    Bounded: at most ``per_sender`` Map-Registers per sender address (the latest),
    ``senders`` addresses (the oldest forgotten first), each held ``max_age``
    seconds.  Nothing held is ever applied unless its sender becomes a member."""

    def __init__(self, *, per_sender: int = 16, senders: int = 256, max_age: float = 60.0) -> None:
        self.per_sender, self.senders, self.max_age = per_sender, senders, max_age
        self._held: dict[str, list[tuple[float, bytes]]] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return sum(len(v) for v in self._held.values())

    def hold(self, sender: str, register: bytes, now: float) -> None:
        sender = str(ip_address(sender))
        got = self._held.pop(sender, [])
        got.append((now, register))
        if len(got) > self.per_sender:
            self.evicted += len(got) - self.per_sender
            del got[:len(got) - self.per_sender]
        self._held[sender] = got              # most recently heard last
        while len(self._held) > self.senders:
            oldest = next(iter(self._held))
            self.evicted += len(self._held.pop(oldest))

    def holds(self, sender: str) -> bool:
        return str(ip_address(sender)) in self._held

    def release(self, members, now: float) -> list[tuple[str, bytes]]:
        """(sender, Map-Register) of every held one whose sender is in ``members``,
        oldest first, no older than ``max_age``; they are no longer held."""
        out = []
        for m in {str(ip_address(str(a))) for a in members}:
            for at, reg in self._held.pop(m, ()):
                if now - at <= self.max_age:
                    out.append((at, m, reg))
        out.sort(key=lambda x: x[0])
        return [(m, reg) for _at, m, reg in out]
