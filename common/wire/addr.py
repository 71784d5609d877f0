"""Addresses on the wire: AFI-encoded addresses and LCAF (RFC 8060).

Every address in a control message is an AFI followed by an address whose length
the AFI implies.  The model is a handful of small frozen classes (plus the stdlib
``ipaddress`` types for IPv4 and IPv6); :func:`decode_address` and
:func:`encode_address` convert between them and bytes.

LCAF types 1 (AFI list), 2 (instance ID), 9 (multicast info) and 13 (RLE) are
decoded; every other type is kept as :class:`OpaqueLcaf` and re-encoded byte for
byte.  Decoding bounds every length against the enclosing LCAF and raises only
:class:`~common.wire.errors.DecodeError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Union

from common.wire.errors import DecodeError, EncodeError

AFI_NONE = 0
AFI_IPV4 = 1
AFI_IPV6 = 2
AFI_MAC = 6
AFI_DN = 17
AFI_LCAF = 16387
AFI_MAC48 = 16389  # IANA "48-bit MAC"; accepted, never sent (WIRE-FORMAT 2.1)

LCAF_AFI_LIST = 1
LCAF_IID = 2
LCAF_MCAST_INFO = 9
LCAF_RLE = 13

# Nesting bound for LCAFs inside LCAFs: real encodings nest two or three deep.
MAX_DEPTH = 8

_H = struct.Struct("!H")
_LCAF_HDR = struct.Struct("!BBBBH")  # rsvd1, flags, type, rsvd2, length


@dataclass(frozen=True, slots=True)
class NoAddress:
    """AFI 0: no address (empty source EID, "no RTR")."""


NO_ADDRESS = NoAddress()


@dataclass(frozen=True, slots=True)
class Mac:
    """An IEEE 802 MAC address (AFI 6; AFI 16389 accepted on receipt)."""

    value: bytes

    def __post_init__(self) -> None:
        if len(self.value) != 6:
            raise EncodeError("a MAC address is 6 bytes")


@dataclass(frozen=True, slots=True)
class DistinguishedName:
    """AFI 17: a NUL-terminated ASCII name."""

    name: str


@dataclass(frozen=True, slots=True)
class AfiList:
    """LCAF type 1: a list of addresses (lispers.net wraps locator extras in it)."""

    items: tuple


@dataclass(frozen=True, slots=True)
class InstanceIdAddr:
    """LCAF type 2: an address qualified by a 32-bit instance ID."""

    iid: int
    address: object
    iid_mask_len: int = 0


@dataclass(frozen=True, slots=True)
class MulticastInfo:
    """LCAF type 9: an (S,G) or (*,G) EID; (*,G) has source 0.0.0.0/0 or ::/0."""

    iid: int
    source: object
    source_len: int
    group: object
    group_len: int
    rlj: int = 0  # legacy R/L/J flags in Rsvd2: sent 0, kept for round trips


@dataclass(frozen=True, slots=True)
class RleEntry:
    """One replication target of an RLE; ``name`` is lispers.net's optional AFI-17 tag."""

    address: object
    level: int = 128
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Rle:
    """LCAF type 13: a replication list (LISP-Decent group membership)."""

    entries: tuple


@dataclass(frozen=True, slots=True)
class OpaqueLcaf:
    """An LCAF type this codec does not interpret, kept as it came."""

    lcaf_type: int
    body: bytes
    rsvd1: int = 0
    flags: int = 0
    rsvd2: int = 0


Address = Union[NoAddress, IPv4Address, IPv6Address, Mac, DistinguishedName, AfiList,
                InstanceIdAddr, MulticastInfo, Rle, OpaqueLcaf]


def address_bits(addr: object) -> int:
    """Bits a mask length may cover for this address (EID mask-len check)."""
    if isinstance(addr, IPv4Address):
        return 32
    if isinstance(addr, IPv6Address):
        return 128
    if isinstance(addr, Mac):
        return 48
    if isinstance(addr, InstanceIdAddr):
        return address_bits(addr.address)
    if isinstance(addr, MulticastInfo):
        return address_bits(addr.source)
    if isinstance(addr, NoAddress):
        return 0
    return 255  # names, lists, RLEs, opaque LCAFs: no family limit


def afi_of(addr: object) -> int:
    if isinstance(addr, IPv4Address):
        return AFI_IPV4
    if isinstance(addr, IPv6Address):
        return AFI_IPV6
    if isinstance(addr, NoAddress):
        return AFI_NONE
    if isinstance(addr, Mac):
        return AFI_MAC
    if isinstance(addr, DistinguishedName):
        return AFI_DN
    if isinstance(addr, (AfiList, InstanceIdAddr, MulticastInfo, Rle, OpaqueLcaf)):
        return AFI_LCAF
    raise EncodeError(f"not an address: {addr!r}")


# ---------------------------------------------------------------------------
# decoding

def decode_address(buf: bytes, off: int, end: int, field: str, depth: int = 0) -> tuple[object, int]:
    """Decode one AFI-encoded address at ``buf[off:end]``; return it and the next offset."""
    if off + 2 > end:
        raise DecodeError(f"{field}.afi", off, "truncated address family")
    afi = (buf[off] << 8) | buf[off + 1]
    p = off + 2
    if afi == AFI_IPV4:
        if p + 4 > end:
            raise DecodeError(field, p, "truncated IPv4 address")
        return IPv4Address(bytes(buf[p:p + 4])), p + 4
    if afi == AFI_IPV6:
        if p + 16 > end:
            raise DecodeError(field, p, "truncated IPv6 address")
        return IPv6Address(bytes(buf[p:p + 16])), p + 16
    if afi == AFI_NONE:
        return NO_ADDRESS, p
    if afi == AFI_LCAF:
        return _decode_lcaf(buf, off, end, field, depth)
    if afi in (AFI_MAC, AFI_MAC48):
        if p + 6 > end:
            raise DecodeError(field, p, "truncated MAC address")
        return Mac(bytes(buf[p:p + 6])), p + 6
    if afi == AFI_DN:
        nul = bytes(buf[p:end]).find(b"\x00")
        if nul < 0:
            raise DecodeError(field, p, "distinguished name not NUL-terminated")
        raw = bytes(buf[p:p + nul])
        try:
            name = raw.decode("ascii")
        except UnicodeDecodeError:
            raise DecodeError(field, p, "distinguished name is not ASCII") from None
        return DistinguishedName(name), p + nul + 1
    raise DecodeError(f"{field}.afi", off, f"unknown AFI {afi}")


def _decode_lcaf(buf: bytes, off: int, end: int, field: str, depth: int) -> tuple[object, int]:
    if depth >= MAX_DEPTH:
        raise DecodeError(field, off, "LCAF nested too deeply")
    p = off + 2
    if p + 6 > end:
        raise DecodeError(f"{field}.lcaf", p, "truncated LCAF header")
    rsvd1, flags, ltype, rsvd2, length = _LCAF_HDR.unpack_from(buf, p)
    body = p + 6
    lend = body + length
    if lend > end:
        raise DecodeError(f"{field}.lcaf.length", p + 4,
                          f"LCAF length {length} overruns the enclosing data by {lend - end}")
    d = depth + 1
    if ltype == LCAF_IID:
        if length < 6:
            raise DecodeError(f"{field}.lcaf.length", p + 4, "instance-ID LCAF shorter than 6")
        iid = struct.unpack_from("!I", buf, body)[0]
        inner, q = decode_address(buf, body + 4, lend, f"{field}.iid.address", d)
        _expect_end(q, lend, f"{field}.iid")
        return InstanceIdAddr(iid, inner, rsvd2), lend
    if ltype == LCAF_MCAST_INFO:
        if length < 8:
            raise DecodeError(f"{field}.lcaf.length", p + 4, "multicast-info LCAF shorter than 8")
        iid, _rsvd, sml, gml = struct.unpack_from("!IHBB", buf, body)
        src, q = decode_address(buf, body + 8, lend, f"{field}.mcast.source", d)
        grp, q = decode_address(buf, q, lend, f"{field}.mcast.group", d)
        _expect_end(q, lend, f"{field}.mcast")
        if sml > address_bits(src):
            raise DecodeError(f"{field}.mcast.source_mask_len", body + 6,
                              f"source mask length {sml} beyond the address family")
        if gml > address_bits(grp):
            raise DecodeError(f"{field}.mcast.group_mask_len", body + 7,
                              f"group mask length {gml} beyond the address family")
        return MulticastInfo(iid, src, sml, grp, gml, rsvd2), lend
    if ltype == LCAF_AFI_LIST:
        items = []
        q = body
        while q < lend:
            item, q = decode_address(buf, q, lend, f"{field}.afi_list[{len(items)}]", d)
            items.append(item)
        return AfiList(tuple(items)), lend
    if ltype == LCAF_RLE:
        entries = []
        q = body
        while q < lend:
            if q + 4 > lend:
                raise DecodeError(f"{field}.rle[{len(entries)}]", q, "truncated RLE entry header")
            level = buf[q + 3]
            a, q = decode_address(buf, q + 4, lend, f"{field}.rle[{len(entries)}].address", d)
            name = None
            if q + 2 <= lend and buf[q] == 0 and buf[q + 1] == AFI_DN:
                dn, q = decode_address(buf, q, lend, f"{field}.rle[{len(entries)}].name", d)
                name = dn.name
            entries.append(RleEntry(a, level, name))
        return Rle(tuple(entries)), lend
    return OpaqueLcaf(ltype, bytes(buf[body:lend]), rsvd1, flags, rsvd2), lend


def _expect_end(q: int, lend: int, field: str) -> None:
    if q != lend:
        raise DecodeError(f"{field}.length", q, f"{lend - q} bytes left inside the LCAF")


# ---------------------------------------------------------------------------
# encoding

def encode_address(addr: object) -> bytes:
    """AFI + address bytes."""
    if isinstance(addr, IPv4Address):
        return b"\x00\x01" + addr.packed
    if isinstance(addr, IPv6Address):
        return b"\x00\x02" + addr.packed
    if isinstance(addr, NoAddress):
        return b"\x00\x00"
    if isinstance(addr, Mac):
        return b"\x00\x06" + addr.value
    if isinstance(addr, DistinguishedName):
        raw = addr.name.encode("ascii")
        if b"\x00" in raw:
            raise EncodeError("a distinguished name cannot contain NUL")
        return b"\x00\x11" + raw + b"\x00"
    if isinstance(addr, InstanceIdAddr):
        body = struct.pack("!I", addr.iid) + encode_address(addr.address)
        return _lcaf(LCAF_IID, body, rsvd2=addr.iid_mask_len)
    if isinstance(addr, MulticastInfo):
        body = (struct.pack("!IHBB", addr.iid, 0, addr.source_len, addr.group_len)
                + encode_address(addr.source) + encode_address(addr.group))
        return _lcaf(LCAF_MCAST_INFO, body, rsvd2=addr.rlj)
    if isinstance(addr, AfiList):
        return _lcaf(LCAF_AFI_LIST, b"".join(encode_address(i) for i in addr.items))
    if isinstance(addr, Rle):
        parts = []
        for e in addr.entries:
            parts.append(struct.pack("!HBB", 0, 0, e.level))
            parts.append(encode_address(e.address))
            if e.name is not None:
                parts.append(encode_address(DistinguishedName(e.name)))
        return _lcaf(LCAF_RLE, b"".join(parts))
    if isinstance(addr, OpaqueLcaf):
        return _lcaf(addr.lcaf_type, addr.body, addr.rsvd1, addr.flags, addr.rsvd2)
    raise EncodeError(f"not an address: {addr!r}")


def _lcaf(ltype: int, body: bytes, rsvd1: int = 0, flags: int = 0, rsvd2: int = 0) -> bytes:
    if len(body) > 0xFFFF:
        raise EncodeError("LCAF body longer than 65535 bytes")
    return _H.pack(AFI_LCAF) + _LCAF_HDR.pack(rsvd1, flags, ltype, rsvd2, len(body)) + body


# ---------------------------------------------------------------------------
# EIDs: the normalised view the roles work with

@dataclass(frozen=True, slots=True, order=False)
class Eid:
    """An EID-prefix or an (S,G) EID, normalised: instance ID, family, host bits cleared.

    Unicast: ``group`` is None and ``address``/``length`` are the prefix.  Multicast:
    ``address``/``length`` are the source, ``group``/``group_len`` the group.
    A plain AFI address and an instance-ID LCAF with IID 0 are the same EID.
    """

    iid: int
    address: object
    length: int
    group: object = None
    group_len: int = 0

    @property
    def is_multicast(self) -> bool:
        return self.group is not None

    @property
    def is_ip(self) -> bool:
        """An IPv4/IPv6 prefix or (S,G): the only EIDs the tables and lookups handle."""
        return isinstance(self.address, (IPv4Address, IPv6Address)) and (
            self.group is None or isinstance(self.group, (IPv4Address, IPv6Address)))

    def contains(self, other: "Eid") -> bool:
        """``other`` lies inside this prefix: same instance ID, family and kind, at
        least as long, and equal on this prefix's bits (groups first for (S,G))."""
        if self.iid != other.iid or type(self.address) is not type(other.address):
            return False
        if self.is_multicast != other.is_multicast:
            return False
        if self.is_multicast:
            if type(self.group) is not type(other.group) or self.group_len > other.group_len:
                return False
            if clear_host_bits(other.group, self.group_len) != self.group:
                return False
        return self.length <= other.length and clear_host_bits(other.address, self.length) == self.address

    def specificity(self) -> tuple[int, int]:
        """Sort key: longer (group, then source) prefixes are more specific."""
        return (self.group_len, self.length) if self.is_multicast else (0, self.length)


def eid_from_wire(addr: object, mask_len: int) -> Eid:
    """The normalised EID of a record's (address, mask-len)."""
    iid = 0
    if isinstance(addr, InstanceIdAddr):
        iid, addr = addr.iid, addr.address
    if isinstance(addr, MulticastInfo):
        return Eid(addr.iid, clear_host_bits(addr.source, addr.source_len), addr.source_len,
                   clear_host_bits(addr.group, addr.group_len), addr.group_len)
    return Eid(iid, clear_host_bits(addr, mask_len), mask_len)


def eid_to_wire(eid: Eid) -> tuple[object, int]:
    """(address, mask-len) for a record; IID 0 unicast is sent as a plain AFI."""
    if eid.group is not None:
        return MulticastInfo(eid.iid, eid.address, eid.length, eid.group, eid.group_len), eid.length
    if eid.iid:
        return InstanceIdAddr(eid.iid, eid.address), eid.length
    return eid.address, eid.length


def clear_host_bits(addr: object, length: int) -> object:
    if isinstance(addr, IPv4Address):
        if length >= 32:
            return addr
        v = int(addr) & (((1 << length) - 1) << (32 - length)) if length else 0
        return IPv4Address(v)
    if isinstance(addr, IPv6Address):
        if length >= 128:
            return addr
        v = int(addr) & (((1 << length) - 1) << (128 - length)) if length else 0
        return IPv6Address(v)
    if isinstance(addr, Mac):
        if length >= 48:
            return addr
        v = int.from_bytes(addr.value, "big") & ((((1 << length) - 1) << (48 - length)) if length else 0)
        return Mac(v.to_bytes(6, "big"))
    return addr
