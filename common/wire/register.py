"""Map-Register (type 3), Map-Notify (4) and Map-Notify-Ack (5), RFC 9301 5.6-5.7.

The three share one layout: flags, record count, nonce, Key ID (1 byte),
Algorithm ID (1 byte), Authentication Data Length, the authentication data, the
records, and the 24-byte xTR-ID/Site-ID trailer.  Computing and checking the MAC
is :mod:`common.wire.auth`'s job; here ``auth_data`` is just bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from common.wire.errors import DecodeError, EncodeError
from common.wire.records import decode_records, encode_record

TYPE_MAP_REGISTER = 3
TYPE_MAP_NOTIFY = 4
TYPE_MAP_NOTIFY_ACK = 5

ALG_NONE = 0
ALG_HMAC_SHA1_96 = 1
ALG_HMAC_SHA256_128 = 2
ALG_HMAC_SHA256_HKDF = 3

TRAILER_LEN = 24
AUTH_OFFSET = 16

_HDR = struct.Struct("!IQBBH")  # word 0, nonce, key id, alg id, auth len


@dataclass(frozen=True, slots=True)
class MapRegister:
    nonce: int
    records: tuple
    key_id: int = 0
    alg_id: int = ALG_HMAC_SHA256_128
    auth_data: bytes = b""
    proxy_reply: bool = False        # P
    security_capable: bool = False   # S
    eid_notify: bool = False         # E (lispers.net: F, refresh-only)
    ttl_is_lifetime: bool = False    # T
    merge: bool = False              # a
    rsvd_r: bool = False             # R (lispers.net: mobile node)
    want_map_notify: bool = False    # M
    reserved: int = 0                # bits 7-18
    xtr_id: bytes | None = None      # with site_id: the I=1 trailer
    site_id: bytes | None = None


@dataclass(frozen=True, slots=True)
class MapNotify:
    nonce: int
    records: tuple
    key_id: int = 0
    alg_id: int = ALG_HMAC_SHA256_128
    auth_data: bytes = b""
    rtr: bool = False                # R: built for an RTR (NAT traversal)
    reserved: int = 0                # bits 6-23
    xtr_id: bytes | None = None
    site_id: bytes | None = None
    i_bit: bool | None = None        # I as received; None: set iff the trailer is sent


@dataclass(frozen=True, slots=True)
class MapNotifyAck:
    nonce: int
    records: tuple
    key_id: int = 0
    alg_id: int = ALG_HMAC_SHA256_128
    auth_data: bytes = b""
    reserved: int = 0                # bits 4-23
    xtr_id: bytes | None = None
    site_id: bytes | None = None
    extra: bytes = b""               # bytes Record Count does not describe (lispers.net acks)


def _trailer(m) -> bytes:
    if m.xtr_id is None:
        return b""
    if len(m.xtr_id) != 16 or m.site_id is None or len(m.site_id) != 8:
        raise EncodeError("xTR-ID is 16 bytes and Site-ID 8 bytes")
    return m.xtr_id + m.site_id


def encode_register_like(m) -> bytes:
    """Encode a MapRegister, MapNotify or MapNotifyAck with its auth_data as given."""
    if len(m.records) > 255:
        raise EncodeError("more than 255 records")
    if isinstance(m, MapRegister):
        w0 = ((TYPE_MAP_REGISTER << 28) | (m.proxy_reply << 27) | (m.security_capable << 26)
              | ((m.xtr_id is not None) << 25) | ((m.reserved & 0xFFF) << 13)
              | (m.eid_notify << 12) | (m.ttl_is_lifetime << 11) | (m.merge << 10)
              | (m.rsvd_r << 9) | (m.want_map_notify << 8))
    elif isinstance(m, MapNotify):
        i_bit = (m.xtr_id is not None) if m.i_bit is None else m.i_bit
        w0 = ((TYPE_MAP_NOTIFY << 28) | (i_bit << 27) | (m.rtr << 26)
              | ((m.reserved & 0x3FFFF) << 8))
    elif isinstance(m, MapNotifyAck):
        w0 = (TYPE_MAP_NOTIFY_ACK << 28) | ((m.reserved & 0xFFFFF) << 8)
    else:
        raise EncodeError(f"not a register-like message: {type(m).__name__}")
    w0 |= len(m.records)
    parts = [_HDR.pack(w0, m.nonce, m.key_id, m.alg_id, len(m.auth_data)), m.auth_data]
    parts.extend(encode_record(r) for r in m.records)
    if isinstance(m, MapNotifyAck):
        parts.append(m.extra)
    parts.append(_trailer(m))
    return b"".join(parts)


def decode_register_like(buf: bytes):
    end = len(buf)
    if end < AUTH_OFFSET:
        raise DecodeError("header", end, "truncated header (16 bytes needed)")
    w0, nonce, key_id, alg_id, auth_len = _HDR.unpack_from(buf, 0)
    mtype = w0 >> 28
    count = w0 & 0xFF
    if AUTH_OFFSET + auth_len > end:
        raise DecodeError("auth_data_length", 14,
                          f"authentication data length {auth_len} overruns the message")
    auth = bytes(buf[AUTH_OFFSET:AUTH_OFFSET + auth_len])
    off = AUTH_OFFSET + auth_len
    if mtype == TYPE_MAP_REGISTER:
        has_trailer = bool(w0 & 0x02000000)
        body_end = end - TRAILER_LEN if has_trailer else end
        if body_end < off:
            raise DecodeError("xtr_id", off, "I=1 but fewer than 24 bytes left for xTR-ID/Site-ID")
        records, off = decode_records(buf, off, body_end, count)
        if off != body_end:
            raise DecodeError("records", off, f"{body_end - off} bytes after the last record")
        xtr, site = (bytes(buf[body_end:body_end + 16]), bytes(buf[body_end + 16:end])) if has_trailer else (None, None)
        return MapRegister(nonce, records, key_id, alg_id, auth, bool(w0 & 0x08000000),
                           bool(w0 & 0x04000000), bool(w0 & 0x1000), bool(w0 & 0x800),
                           bool(w0 & 0x400), bool(w0 & 0x200), bool(w0 & 0x100),
                           (w0 >> 13) & 0xFFF, xtr, site)
    records, off = decode_records(buf, off, end, count)
    rest = end - off
    if mtype == TYPE_MAP_NOTIFY:
        # Receive rule (WIRE-FORMAT 7): exactly 24 remaining bytes are the trailer, I bit or not.
        if rest not in (0, TRAILER_LEN):
            raise DecodeError("records", off, f"{rest} bytes after the last record")
        xtr, site = (bytes(buf[off:off + 16]), bytes(buf[off + 16:end])) if rest else (None, None)
        return MapNotify(nonce, records, key_id, alg_id, auth, bool(w0 & 0x04000000),
                         (w0 >> 8) & 0x3FFFF, xtr, site, bool(w0 & 0x08000000))
    if mtype == TYPE_MAP_NOTIFY_ACK:
        extra = bytes(buf[off:end])
        xtr = site = None
        if len(extra) == TRAILER_LEN:
            xtr, site, extra = extra[:16], extra[16:], b""
        return MapNotifyAck(nonce, records, key_id, alg_id, auth, (w0 >> 8) & 0xFFFFF, xtr, site, extra)
    raise DecodeError("type", 0, f"type {mtype} is not a Map-Register/Notify/Notify-Ack")
