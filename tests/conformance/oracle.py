"""Wireshark as an independent oracle for our encodings: the tests' entry point.

:func:`decode_batch` wraps every payload in its own synthetic packet (``capture``),
writes ONE capture and has tshark dissect it once (``tshark``): tshark's start-up
dominates the cost, so a whole batch shares it.  IPv4 and IPv6 outer headers can be
mixed in one batch.  Nothing is cached between calls but the field-type table.

With a pre-shared key, Map-Register / Map-Notify HMACs are checked here, at the
position where Wireshark found the authentication data (``_auth``), so the check
does not rely on our own codec's idea of where the MAC is.

Availability: without tshark the conformance tests skip on a developer machine,
with the reason, but fail when $CI is set, because CI must run them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile

import pytest

from tests.conformance import capture, tshark

MAC_DIGESTS = {1: hashlib.sha1, 2: hashlib.sha256}     # RFC 9301 Algorithm IDs


def tshark_path() -> str | None:
    return tshark.find()


def _unavailable(reason: str) -> None:
    """Skip locally; fail under CI, where tshark is installed on purpose."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"conformance tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require() -> str:
    """The tshark binary, after checking it can be run (else skip / fail under CI)."""
    path = tshark.find()
    if path is None:
        where = os.environ.get("TSHARK")
        _unavailable(f"tshark not runnable at $TSHARK={where}" if where else
                     "tshark not found on PATH (apt-get install tshark, or set $TSHARK)")
    return path


def tshark_version() -> str:
    return tshark.version(require())


def field_types() -> dict[str, str]:
    """Wireshark field name -> FT_* type (from ``tshark -G fields``)."""
    return tshark.field_types(require())


def _first(v):
    return v[0] if isinstance(v, list) else v


def check_mac(res: dict, payload: bytes, base: int, psk: bytes) -> str:
    """HMAC of a Map-Register (3) / Map-Notify (4), at Wireshark's ``lisp.auth`` position.

    "ok": the MAC covers the whole message (auth field zeroed), as we send it;
    "ok without trailer": it verifies only without the 24-byte xTR-ID/Site-ID trailer;
    "mismatch ...": neither; "n/a": not an authenticated message."""
    if _first(res.get("lisp.type")) not in (3, 4) or "lisp.auth" not in res["_positions"]:
        return "n/a"
    pos, size = res["_positions"]["lisp.auth"][0]
    start = pos - base
    alg = _first(res.get("lisp.keyid", 0)) & 0xFF      # Wireshark shows KeyID*256+AlgID
    digest = MAC_DIGESTS.get(alg)
    if digest is None:
        return f"mismatch (unknown algorithm {alg})"
    if size == 0 or start < 0 or start + size > len(payload):
        return f"mismatch (authentication data at {start}+{size})"
    got = payload[start:start + size]
    blank = payload[:start] + bytes(size) + payload[start + size:]
    if hmac.compare_digest(got, hmac.new(psk, blank, digest).digest()[:size]):
        return "ok"
    if len(blank) > 24 and hmac.compare_digest(got, hmac.new(psk, blank[:-24], digest).digest()[:size]):
        return "ok without trailer"
    return "mismatch"


def decode_batch(payloads: list[bytes], kind: str | list[str] = "control",
                 ipv6: bool | list[bool] = False, psk: bytes | None = None) -> list[dict]:
    """Dissect every payload with ONE tshark run; one result dict per payload, in order.

    ``kind`` is "control" (UDP 4342) or "data" (UDP 4341), for all payloads or per
    payload; ``ipv6`` picks the outer header family likewise.  With ``psk`` the
    result also holds "_auth" (see :func:`check_mac`)."""
    binary = require()
    n = len(payloads)
    kinds = kind if isinstance(kind, list) else [kind] * n
    fams = ipv6 if isinstance(ipv6, list) else [ipv6] * n
    if not (len(kinds) == len(fams) == n):
        raise ValueError("kind/ipv6 lists must have one entry per payload")
    packets, bases = [], []
    for payload, k, v6 in zip(payloads, kinds, fams):
        pkt = capture.udp_packet(bytes(payload), *capture.ports(payload, k), ipv6=v6)
        packets.append(pkt)
        bases.append(len(pkt) - len(payload))
    with tempfile.TemporaryDirectory(prefix="lisp-conformance-") as tmp:
        path = os.path.join(tmp, "batch.pcap")
        capture.write_pcap(path, packets)
        results = tshark.dissect(binary, path)
    if len(results) != n:
        raise AssertionError(f"tshark returned {len(results)} packets for {n} frames")
    if psk is not None:
        for res, payload, base in zip(results, payloads, bases):
            res["_auth"] = check_mac(res, bytes(payload), base, psk)
    return results
