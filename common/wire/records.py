"""EID-records and RLOC-records (RFC 9301 5.4), shared by most message types.

An :class:`EidRecord` keeps the EID exactly as it was on the wire (``eid`` plus
``mask_len``) so that re-encoding is byte-exact; :attr:`EidRecord.prefix` gives
the normalised :class:`~common.wire.addr.Eid` the roles work with.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ipaddress import IPv4Address, IPv6Address

from common.wire.addr import (AfiList, Eid, InstanceIdAddr, address_bits, decode_address, eid_from_wire,
                             encode_address)
from common.wire.errors import DecodeError, EncodeError

ACT_NO_ACTION = 0
ACT_NATIVELY_FORWARD = 1
ACT_SEND_MAP_REQUEST = 2
ACT_DROP_NO_REASON = 3
ACT_DROP_POLICY_DENIED = 4
ACT_DROP_AUTH_FAILURE = 5

ACTION_NAMES = {
    0: "no-action",
    1: "natively-forward",
    2: "send-map-request",
    3: "drop-no-reason",
    4: "drop-policy-denied",
    5: "drop-auth-failure",
    6: "unassigned-6",
    7: "unassigned-7",
}

_REC = struct.Struct("!IBBHH")   # ttl, loc count, mask-len, act|A|rsvd, rsvd|map-version
_LOC = struct.Struct("!BBBBH")   # pri, wt, mpri, mwt, flags

MIN_RECORD_LEN = 12   # TTL .. EID-AFI with AFI 0
MIN_LOCATOR_LEN = 8   # pri .. Loc-AFI with AFI 0


@dataclass(frozen=True, slots=True)
class Locator:
    """An RLOC-record.  ``unused_flags`` keeps bits 0-12 of the flags word."""

    address: object
    priority: int = 1
    weight: int = 100
    mpriority: int = 255
    mweight: int = 0
    local: bool = False       # L
    probed: bool = False      # p
    reachable: bool = True    # R
    unused_flags: int = 0


@dataclass(frozen=True, slots=True)
class EidRecord:
    """An EID-record with its locator-set.

    ``reserved`` holds the 12 bits after A (Map-Referral: bit 0x800 is "incomplete");
    ``rsvd_nibble`` the 4 bits before the map-version (Map-Referral: SigCnt).
    """

    eid: object
    mask_len: int
    ttl: int = 1440
    locators: tuple = ()
    action: int = ACT_NO_ACTION
    authoritative: bool = False
    map_version: int = 0
    reserved: int = 0
    rsvd_nibble: int = 0
    signatures: tuple = ()    # Map-Referral signature blobs, raw

    @property
    def prefix(self) -> Eid:
        return eid_from_wire(self.eid, self.mask_len)

    @property
    def negative(self) -> bool:
        return not self.locators


def encode_locator(loc: Locator) -> bytes:
    flags = (loc.unused_flags << 3) | (loc.local << 2) | (loc.probed << 1) | int(loc.reachable)
    return _LOC.pack(loc.priority, loc.weight, loc.mpriority, loc.mweight, flags) + encode_address(loc.address)


def decode_locator(buf: bytes, off: int, end: int, field: str) -> tuple[Locator, int]:
    if off + 6 > end:
        raise DecodeError(field, off, "truncated RLOC-record")
    pri, wt, mpri, mwt, flags = _LOC.unpack_from(buf, off)
    addr, p = decode_address(buf, off + 6, end, f"{field}.address")
    return Locator(addr, pri, wt, mpri, mwt, bool(flags & 4), bool(flags & 2), bool(flags & 1),
                   flags >> 3), p


def encode_record(rec: EidRecord) -> bytes:
    if len(rec.locators) > 255:
        raise EncodeError("more than 255 locators in one record")
    if not (0 <= rec.action <= 7 and 0 <= rec.map_version < 4096):
        raise EncodeError("action or map-version out of range")
    w1 = (rec.action << 13) | (int(rec.authoritative) << 12) | (rec.reserved & 0xFFF)
    w2 = (rec.rsvd_nibble << 12) | rec.map_version
    parts = [_REC.pack(rec.ttl, len(rec.locators), rec.mask_len, w1, w2), encode_address(rec.eid)]
    parts.extend(encode_locator(loc) for loc in rec.locators)
    parts.extend(rec.signatures)
    return b"".join(parts)


def decode_record(buf: bytes, off: int, end: int, field: str, referral: bool = False) -> tuple[EidRecord, int]:
    if off + 10 > end:
        raise DecodeError(field, off, "truncated EID-record")
    ttl, count, mask_len, w1, w2 = _REC.unpack_from(buf, off)
    eid, p = decode_address(buf, off + 10, end, f"{field}.eid")
    if mask_len > address_bits(eid):
        raise DecodeError(f"{field}.mask_len", off + 5,
                          f"EID mask length {mask_len} beyond the address family")
    if count * MIN_LOCATOR_LEN > end - p:
        raise DecodeError(f"{field}.locator_count", off + 4,
                          f"locator count {count} overruns the message")
    locs = []
    for i in range(count):
        loc, p = decode_locator(buf, p, end, f"{field}.rloc[{i}]")
        locs.append(loc)
    sigs: tuple = ()
    sig_count = w2 >> 12
    if referral and sig_count:
        sigs, p = _decode_signatures(buf, p, end, sig_count, f"{field}.signature")
    return EidRecord(eid, mask_len, ttl, tuple(locs), w1 >> 13, bool(w1 & 0x1000), w2 & 0xFFF,
                     w1 & 0xFFF, sig_count, sigs), p


def _decode_signatures(buf: bytes, p: int, end: int, n: int, field: str) -> tuple[tuple, int]:
    # RFC 8111 6.4.1: TTL(4) expiration(4) inception(4) key tag(2) sig length(2)
    # algorithm(1) reserved(1) reserved(2) signature(sig length)
    sigs = []
    for i in range(n):
        if p + 20 > end:
            raise DecodeError(f"{field}[{i}]", p, "truncated signature")
        slen = struct.unpack_from("!H", buf, p + 14)[0]
        if p + 20 + slen > end:
            raise DecodeError(f"{field}[{i}].length", p + 14, "signature overruns the message")
        sigs.append(bytes(buf[p:p + 20 + slen]))
        p += 20 + slen
    return tuple(sigs), p


def decode_records(buf: bytes, off: int, end: int, count: int, field: str = "record",
                   referral: bool = False) -> tuple[tuple, int]:
    if count * MIN_RECORD_LEN > end - off:
        raise DecodeError(f"{field}_count", 3, f"record count {count} overruns the message")
    recs = []
    for i in range(count):
        rec, off = decode_record(buf, off, end, f"{field}[{i}]", referral)
        recs.append(rec)
    return tuple(recs), off


def ip_of(addr: object):
    """The IPv4/IPv6 address a locator or RLE entry stands for, or None.

    A plain IP is itself; an AFI list (lispers.net's encoding of an RLOC with a
    name) stands for its first IP; an instance-ID LCAF for the address it wraps.
    A MAC, a distinguished name or an opaque LCAF cannot be sent to: None."""
    for _ in range(4):   # the LCAF nesting that occurs in practice
        if isinstance(addr, (IPv4Address, IPv6Address)):
            return addr
        if isinstance(addr, InstanceIdAddr):
            addr = addr.address
        elif isinstance(addr, AfiList):
            addr = next((a for a in addr.items if isinstance(a, (IPv4Address, IPv6Address, InstanceIdAddr))), None)
        else:
            return None
    return None


def locator_sort_key(loc: Locator) -> tuple[int, int]:
    """The one order of RLOCs in stored and sent locator-sets: IPv4 first, by value."""
    return (loc.address.version, int(loc.address))
