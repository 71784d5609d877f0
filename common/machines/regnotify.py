"""The Map-Notify of a Map-Register whose records were all accepted, from its bytes.

:func:`common.wire.auth.seal` of ``MapNotify(nonce, records, key_id, alg_id,
xtr_id=..., site_id=...)`` re-encodes the decoded records.  When every record of
the Map-Register is acknowledged and every address in them is a plain IPv4/IPv6
AFI (AFI 1/2: the codec's decode and encode are exact inverses there; LCAFs lose
reserved bits and flags in a round trip), the encoding is the received record
bytes themselves, so the Map-Notify is: word 0 of type 4 (I set iff the trailer is
there, R and the reserved bits clear, the same record count), the same nonce, key
ID and algorithm ID, a zeroed authentication field of the algorithm's full length,
the same record bytes and trailer, then the MAC over the whole message as
:func:`seal` computes it.  tests/unit/test_ms_fastnew.py checks the identity
against :func:`seal` for generated messages.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

from common.wire.auth import SEND_LEN, mac
from common.wire.register import AUTH_OFFSET, TYPE_MAP_NOTIFY

_PLAIN = (IPv4Address, IPv6Address)
_HDR = struct.Struct("!IQBBH")


def plain_records(records) -> bool:
    """Every EID and locator address a plain IPv4/IPv6 address (byte-exact re-encoding)."""
    for r in records:
        if type(r.eid) not in _PLAIN or r.signatures:
            return False
        for loc in r.locators:
            if type(loc.address) not in _PLAIN:
                return False
    return True


def notify_of_register(data: bytes, secret: bytes) -> bytes | None:
    """The sealed Map-Notify acknowledging every record of the decoded Map-Register
    ``data`` (the caller has checked :func:`plain_records`); None when :func:`seal`
    would not produce one (an algorithm it does not send)."""
    w0, nonce, key_id, alg_id, auth_len = _HDR.unpack_from(data, 0)
    n = SEND_LEN.get(alg_id)
    if n is None:
        return None
    has_trailer = bool(w0 & 0x02000000)
    head = _HDR.pack((TYPE_MAP_NOTIFY << 28) | (has_trailer << 27) | (w0 & 0xFF), nonce, key_id, alg_id, n)
    body = data[AUTH_OFFSET + auth_len:]
    if not n:
        return head + body
    out = bytearray(head)
    out += bytes(n)
    out += body
    out[AUTH_OFFSET:AUTH_OFFSET + n] = mac(alg_id, secret, bytes(out))[:n]
    return bytes(out)


__all__ = ["notify_of_register", "plain_records"]
