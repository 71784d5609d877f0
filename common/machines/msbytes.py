"""The Map-Server's helpers on message bytes (common/machines/mapserver.py): the digest
a warn-policy site remembers per registrant, the key of the refresh fast path, and a
Map-Notify template resealed with another nonce."""

from __future__ import annotations

import hashlib

from common.wire.auth import mac


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:16]


def _refresh_key(data: bytes, coverage: str) -> bytes:
    """What a refresh must repeat to take the fast path: word 0 (flags, record
    count), key and algorithm IDs, and everything after the authentication data."""
    auth_len = int.from_bytes(data[14:16], "big")
    return coverage.encode() + data[0:4] + data[12:14] + data[16 + auth_len:]


def reseal(template: bytes, nonce: int, secret: bytes, alg: int) -> bytes:
    """A sealed Map-Notify with another nonce: the template's bytes, the nonce
    replaced, the MAC recomputed over the whole message (as :func:`seal` does)."""
    auth_len = int.from_bytes(template[14:16], "big")
    buf = bytearray(template)
    buf[4:12] = nonce.to_bytes(8, "big")
    buf[16:16 + auth_len] = bytes(auth_len)
    if auth_len:
        buf[16:16 + auth_len] = mac(alg, secret, bytes(buf))[:auth_len]
    return bytes(buf)
