"""Encapsulated Control Message (type 8), RFC 9301 5.8.

A 4-byte LISP header (S, D, E, M flags) then an inner IPv4 or IPv6 header, an inner
UDP header whose checksum is computed on encode and verified on decode, and the
inner control message.

An inner UDP checksum of 0 is accepted and noted in :attr:`Ecm.zero_checksum`: over
IPv4 RFC 768 defines 0 as "no checksum", and lispers.net sends every ECM that way,
over IPv6 too (where RFC 8200 forbids it; the outer datagram carries its own
checksum, so the receiver accepts it and counts it).  A non-zero checksum must be
right.  With S=1 the LISP-SEC authentication data (RFC 9303 6.1,
:class:`~common.wire.lispsec.EcmAuth`) sits between the ECM header and the inner
IP header; :attr:`Ecm.auth` holds it, and S is set exactly when it is not None.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from common.wire.errors import DecodeError, EncodeError
from common.wire.ipudp import IpUdp, build_ip_udp, parse_ip_udp

TYPE_ECM = 8
ECM_S = 0x08000000
ECM_D = 0x04000000
ECM_E = 0x02000000
ECM_M = 0x01000000


@dataclass(frozen=True, slots=True)
class Ecm:
    """An ECM and its inner message.  ``ip`` holds the inner IP/UDP header fields."""

    inner: object
    ip: IpUdp
    ddt: bool = False        # D: DDT-originated, wants a Map-Referral
    to_etr: bool = False     # E: forward to the ETR
    to_ms: bool = False      # M: destined to a Map-Server
    reserved: int = 0        # bits 8-31
    zero_checksum: bool = False  # the inner UDP checksum is (decoded) / is sent as (encoded) 0
    auth: object = None          # S=1: the LISP-SEC EcmAuth (common.wire.lispsec)

    @property
    def security(self) -> bool:
        return self.auth is not None


def encode_ecm(m: Ecm) -> bytes:
    from common.wire.messages import encode_message
    if isinstance(m.inner, Ecm):
        raise EncodeError("an ECM inside an ECM")
    w0 = ((TYPE_ECM << 28) | ((m.auth is not None) << 27) | (m.ddt << 26) | (m.to_etr << 25)
          | (m.to_ms << 24) | (m.reserved & 0xFFFFFF))
    auth = b""
    if m.auth is not None:
        from common.wire.lispsec import encode_ecm_auth
        auth = encode_ecm_auth(m.auth)
    return struct.pack("!I", w0) + auth + build_ip_udp(m.ip, encode_message(m.inner),
                                                       checksum=not m.zero_checksum)


def decode_ecm(buf: bytes) -> Ecm:
    from common.wire.messages import decode_message
    if len(buf) < 4:
        raise DecodeError("header", len(buf), "truncated ECM header")
    w0 = struct.unpack_from("!I", buf, 0)[0]
    auth, ip_at = None, 4
    if w0 & ECM_S:
        from common.wire.lispsec import decode_ecm_auth
        auth, ip_at = decode_ecm_auth(buf, 4, len(buf))
    ip, start, stop = parse_ip_udp(buf, ip_at, "inner", allow_zero_checksum=True)
    if stop != len(buf):
        raise DecodeError("inner.udp.length", stop, f"{len(buf) - stop} bytes after the inner datagram")
    if start < stop and buf[start] >> 4 == TYPE_ECM:
        raise DecodeError("inner.type", start, "an ECM inside an ECM")
    try:
        inner = decode_message(bytes(buf[start:stop]))
    except DecodeError as exc:
        # offsets in errors count from the first byte of the outer message
        raise DecodeError(f"inner.{exc.field}", exc.offset + start, exc.reason) from None
    zero = struct.unpack_from("!H", buf, start - 2)[0] == 0
    return Ecm(inner, ip, bool(w0 & ECM_D), bool(w0 & ECM_E), bool(w0 & ECM_M), w0 & 0xFFFFFF, zero, auth)


def set_ecm_flags(data: bytes, *, to_etr: bool | None = None, to_ms: bool | None = None) -> bytes:
    """The same ECM with E and/or M changed and nothing else touched (for forwarding)."""
    w0 = struct.unpack_from("!I", data, 0)[0]
    if to_etr is not None:
        w0 = (w0 | ECM_E) if to_etr else (w0 & ~ECM_E)
    if to_ms is not None:
        w0 = (w0 | ECM_M) if to_ms else (w0 & ~ECM_M)
    return struct.pack("!I", w0 & 0xFFFFFFFF) + bytes(data[4:])
