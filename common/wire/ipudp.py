"""IPv4/IPv6 + UDP headers, as carried inside ECMs and LISP data packets.

Pure byte work: build a header pair around a payload with a correct UDP checksum,
and parse one back, verifying that checksum.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from common.wire.errors import DecodeError, EncodeError

PROTO_UDP = 17


def inet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum, complemented."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo(src, dst, udp_len: int) -> bytes:
    if isinstance(src, IPv4Address):
        return src.packed + dst.packed + struct.pack("!BBH", 0, PROTO_UDP, udp_len)
    return src.packed + dst.packed + struct.pack("!I3xB", udp_len, PROTO_UDP)


def udp_checksum(src, dst, udp_segment: bytes) -> int:
    """The UDP checksum of a segment whose checksum field is zero (0 is sent as 0xFFFF)."""
    return inet_checksum(_pseudo(src, dst, len(udp_segment)) + udp_segment) or 0xFFFF


@dataclass(frozen=True, slots=True)
class IpUdp:
    """The IP and UDP header fields worth keeping (the rest are computed)."""

    src: object
    dst: object
    sport: int
    dport: int
    ttl: int = 64
    tos: int = 0           # IPv4 TOS / IPv6 traffic class
    ident: int = 0         # IPv4 identification / IPv6 flow label


def build_ip_udp(h: IpUdp, payload: bytes, checksum: bool = True) -> bytes:
    """IP header + UDP header + payload; the UDP checksum is computed unless ``checksum`` is False."""
    if type(h.src) is not type(h.dst) or not isinstance(h.src, (IPv4Address, IPv6Address)):
        raise EncodeError("inner source and destination must be IP addresses of one family")
    udp_len = 8 + len(payload)
    if udp_len > 0xFFFF:
        raise EncodeError("UDP payload too long")
    seg = struct.pack("!HHHH", h.sport, h.dport, udp_len, 0) + payload
    csum = udp_checksum(h.src, h.dst, seg) if checksum else 0
    udp = struct.pack("!HHHH", h.sport, h.dport, udp_len, csum)
    if isinstance(h.src, IPv4Address):
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, h.tos, 20 + udp_len, h.ident, 0, h.ttl, PROTO_UDP, 0,
                         h.src.packed, h.dst.packed)
        ip = ip[:10] + struct.pack("!H", inet_checksum(ip)) + ip[12:]
    else:
        first = (6 << 28) | ((h.tos & 0xFF) << 20) | (h.ident & 0xFFFFF)
        ip = struct.pack("!IHBB16s16s", first, udp_len, PROTO_UDP, h.ttl, h.src.packed, h.dst.packed)
    return ip + udp + payload


def parse_ip_udp(buf: bytes, off: int, field: str, verify: bool = True,
                 allow_zero_checksum: bool = False) -> tuple[IpUdp, int, int]:
    """Parse IP + UDP at ``buf[off:]``; return (header, payload start, payload end).

    The UDP length delimits the payload.  With ``verify`` the UDP checksum must be
    non-zero and correct (RFC 9301 5.1); data packets pass ``allow_zero_checksum``.
    """
    end = len(buf)
    if off >= end:
        raise DecodeError(f"{field}.ip", off, "missing inner IP header")
    version = buf[off] >> 4
    if version == 4:
        if off + 20 > end:
            raise DecodeError(f"{field}.ip", off, "truncated IPv4 header")
        vihl, tos, total, ident, frag, ttl, proto, _c = struct.unpack_from("!BBHHHBBH", buf, off)
        ihl = (vihl & 0x0F) * 4
        if ihl < 20 or off + ihl > end:
            raise DecodeError(f"{field}.ip.ihl", off, f"bad IPv4 header length {ihl}")
        if total < ihl + 8 or off + total > end:
            raise DecodeError(f"{field}.ip.total_length", off + 2, f"IPv4 total length {total} does not fit")
        if frag & 0x3FFF:
            raise DecodeError(f"{field}.ip.fragment", off + 6, "fragmented inner packet")
        src = IPv4Address(bytes(buf[off + 12:off + 16]))
        dst = IPv4Address(bytes(buf[off + 16:off + 20]))
        u = off + ihl
        ip_end = off + total
    elif version == 6:
        if off + 40 > end:
            raise DecodeError(f"{field}.ip", off, "truncated IPv6 header")
        first, plen, proto, ttl = struct.unpack_from("!IHBB", buf, off)
        tos, ident = (first >> 20) & 0xFF, first & 0xFFFFF
        src = IPv6Address(bytes(buf[off + 8:off + 24]))
        dst = IPv6Address(bytes(buf[off + 24:off + 40]))
        u = off + 40
        ip_end = u + plen
        if ip_end > end:
            raise DecodeError(f"{field}.ip.payload_length", off + 4, f"IPv6 payload length {plen} does not fit")
    else:
        raise DecodeError(f"{field}.ip.version", off, f"IP version {version}")
    if proto != PROTO_UDP:
        raise DecodeError(f"{field}.ip.protocol", off, f"inner protocol {proto} is not UDP")
    if u + 8 > ip_end:
        raise DecodeError(f"{field}.udp", u, "truncated UDP header")
    sport, dport, ulen, csum = struct.unpack_from("!HHHH", buf, u)
    if ulen < 8 or u + ulen > ip_end:
        raise DecodeError(f"{field}.udp.length", u + 4, f"UDP length {ulen} does not fit")
    if verify:
        if csum == 0:
            if not allow_zero_checksum:
                raise DecodeError(f"{field}.udp.checksum", u + 6, "UDP checksum is zero")
        else:
            seg = bytes(buf[u:u + 6]) + b"\x00\x00" + bytes(buf[u + 8:u + ulen])
            want = udp_checksum(src, dst, seg)
            if csum != want:
                raise DecodeError(f"{field}.udp.checksum", u + 6,
                                  f"UDP checksum 0x{csum:04x}, expected 0x{want:04x}")
    return IpUdp(src, dst, sport, dport, ttl, tos, ident), u + 8, u + ulen
