"""The LISP data-plane header (RFC 9300 5.3) and push-mode replication packets.

The 8-byte header: N L E V I R K K flags, a 24-bit nonce or two 12-bit map-versions,
and a 24-bit instance ID with 8 locator-status bits (or 32 LSBs when I=0).
Instance ID 0xFFFFFF marks LISP-Decent mapping-system traffic (WIRE-FORMAT 10.1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from common.wire.errors import DecodeError, EncodeError
from common.wire.ipudp import IpUdp, build_ip_udp, parse_ip_udp

DECENT_IID = 0xFFFFFF
HEADER_LEN = 8


@dataclass(frozen=True, slots=True)
class DataHeader:
    nonce_present: bool = False     # N
    lsb_valid: bool = False         # L
    echo_nonce: bool = False        # E
    version_present: bool = False   # V
    iid_present: bool = False       # I
    rsvd_r: bool = False            # R
    key_id: int = 0                 # KK
    nonce: int = 0                  # 24 bits (N=1), or 0
    source_version: int = 0         # 12 bits (V=1 and N=0)
    dest_version: int = 0
    iid: int = 0                    # 24 bits (I=1)
    lsb: int = 0                    # 8 bits with I=1, 32 bits with I=0


def encode_data_header(h: DataHeader) -> bytes:
    if h.nonce_present and h.version_present:
        raise EncodeError("N and V cannot both be set")
    flags = ((h.nonce_present << 7) | (h.lsb_valid << 6) | (h.echo_nonce << 5) | (h.version_present << 4)
             | (h.iid_present << 3) | (h.rsvd_r << 2) | (h.key_id & 3))
    if h.version_present:
        mid = (h.source_version << 12) | h.dest_version
    else:
        mid = h.nonce
    w1 = ((h.iid << 8) | (h.lsb & 0xFF)) if h.iid_present else h.lsb
    return struct.pack("!I I", (flags << 24) | (mid & 0xFFFFFF), w1 & 0xFFFFFFFF)


def decode_data_header(buf: bytes) -> DataHeader:
    if len(buf) < HEADER_LEN:
        raise DecodeError("lisp_data.header", len(buf), "truncated LISP data header")
    w0, w1 = struct.unpack_from("!II", buf, 0)
    flags, mid = w0 >> 24, w0 & 0xFFFFFF
    n, v, i = bool(flags & 0x80), bool(flags & 0x10), bool(flags & 0x08)
    if n and v:
        v = False  # RFC 9300: treat as a nonce
    nonce = mid if n else 0
    sv, dv = (mid >> 12, mid & 0xFFF) if v else (0, 0)
    return DataHeader(n, bool(flags & 0x40), bool(flags & 0x20), v, i, bool(flags & 0x04), flags & 3,
                      nonce, sv, dv, (w1 >> 8) if i else 0, (w1 & 0xFF) if i else w1)


def encapsulate_replica(register: bytes, src, group, sport: int = 4342, ttl: int = 64) -> bytes:
    """The UDP-4341 payload replicating a Map-Register to one member: LISP header
    (I=1, IID 0xFFFFFF) + inner IP (src -> group) + UDP (to 4342) + Map-Register."""
    hdr = encode_data_header(DataHeader(iid_present=True, iid=DECENT_IID))
    return hdr + build_ip_udp(IpUdp(src, group, sport, 4342, ttl), register)


def decapsulate_replica(payload: bytes) -> tuple[DataHeader, IpUdp, bytes]:
    """Split a received 4341 payload into header, inner IP/UDP and the control message.

    Raises DecodeError when it is not mapping-system traffic (IID 0xFFFFFF with an
    inner multicast destination and UDP port 4342)."""
    h = decode_data_header(payload)
    if not (h.iid_present and h.iid == DECENT_IID):
        raise DecodeError("lisp_data.iid", 4, "not mapping-system traffic (IID != 0xFFFFFF)")
    ip, start, stop = parse_ip_udp(payload, HEADER_LEN, "inner")
    if not ip.dst.is_multicast:
        raise DecodeError("inner.ip.dst", HEADER_LEN, "inner destination is not a group address")
    if ip.dport != 4342:
        raise DecodeError("inner.udp.dport", HEADER_LEN, "inner destination port is not 4342")
    return h, ip, bytes(payload[start:stop])
