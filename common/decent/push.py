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
