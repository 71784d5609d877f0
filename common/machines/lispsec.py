"""LISP-SEC (RFC 9303) computations: key wrap, KDF, the two HMACs, and the checks.

Pure: no randomness (the ITR's one-time key comes in as bytes), no clock.  The
roles call these through the ITR machine (one-time key per Map-Request, reply
verification), the resolver's Map-Server treatment (:func:`ms_open`,
:func:`ms_forward`, :func:`ms_sign`) and the ETR (:func:`etr_open`,
:func:`sign_reply`).

Keys (docs/lisp-sec.md, section "Keys"):

* ITR-OTK: 128 random bits per Map-Request, sent wrapped with the ITR-MS key
  (``itr.lisp_sec_key`` / ``map_resolver.lisp_sec_keys``) or null-wrapped;
* MS-OTK = HKDF(ITR-OTK, salt = the 8-byte nonce), 16 bytes, SHA-1 or SHA-256 per
  the EID-AD's KDF ID; sent to the ETR wrapped with the site key;
* the EID HMAC is keyed with the ITR-OTK (the ETR never learns it, so it cannot
  widen the EID-AD it must copy), the PKT HMAC with the MS-OTK;
* a configured secret (text) becomes a 128-bit key-encryption key through
  HKDF-SHA-256 (info "lisp-sec key wrap"), never used as is.

Every check returns None when it passes or a short reason (a counter suffix).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from common.wire.errors import DecodeError
from common.wire.lispsec import (HMAC_LEN, HMAC_SHA1_96, HMAC_SHA256_128, ITR_EID_AD_LEN,
                                 KDF_HKDF_SHA1_128, KDF_HKDF_SHA256_128, OTK_FIELD_LEN, WRAP_AES_128,
                                 WRAP_NULL_128, EcmAuth, EidAd, ReplyAuth, decode_reply_auth,
                                 encode_eid_ad, encode_reply_auth)

MODES = ("off", "on", "required")
OTK_LEN = 16
DEFAULT_HMAC = HMAC_SHA256_128
DEFAULT_KDF = KDF_HKDF_SHA256_128
_DIGEST = {HMAC_SHA1_96: hashlib.sha1, HMAC_SHA256_128: hashlib.sha256}
_KDF_HASH = {KDF_HKDF_SHA1_128: hashes.SHA1, KDF_HKDF_SHA256_128: hashes.SHA256}
_S_BIT = 0x02000000
ECM_AUTH_HEAD = 8            # AD type .. OTK encryption ID: the EID-AD starts after the OTK field


class LispSecError(ValueError):
    """A LISP-SEC check failed; ``reason`` is a short counter suffix."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# ---------------------------------------------------------------------------
# primitives

def key_encryption_key(secret: bytes) -> bytes:
    """The 128-bit AES key-wrap key derived from a configured secret."""
    return HKDF(hashes.SHA256(), 16, None, b"lisp-sec key wrap").derive(secret)


def wrap_otk(otk: bytes, secret: bytes | None) -> tuple[int, bytes]:
    """(OTK Encryption ID, the 24-byte OTK field): AES key wrap (RFC 3394) with the
    key derived from ``secret``, or the null wrap (8 zero bytes + the key) without one."""
    if len(otk) != OTK_LEN:
        raise ValueError("a one-time key is 16 bytes")
    if secret is None:
        return WRAP_NULL_128, bytes(8) + otk
    return WRAP_AES_128, aes_key_wrap(key_encryption_key(secret), otk)


def unwrap_otk(wrap_id: int, field: bytes, secrets) -> bytes:
    """The one-time key of an OTK field; AES-wrapped keys are tried against each of
    ``secrets`` (the RFC 3394 integrity check tells the right one)."""
    if len(field) != OTK_FIELD_LEN:
        raise LispSecError("otk-length")
    if wrap_id == WRAP_NULL_128:
        if any(field[:8]):
            raise LispSecError("otk-preamble", "null wrap with a non-zero preamble")
        return bytes(field[8:])
    if wrap_id != WRAP_AES_128:
        raise LispSecError("otk-wrap-unknown", str(wrap_id))
    for s in secrets:
        if s is None:
            continue
        try:
            return aes_key_unwrap(key_encryption_key(s), bytes(field))
        except InvalidUnwrap:
            continue
    raise LispSecError("otk-unwrap", "no configured key unwraps the one-time key")


def derive_ms_otk(kdf_id: int, itr_otk: bytes, nonce: int) -> bytes:
    """MS-OTK = KDF(ITR-OTK, nonce): HKDF, salt = the nonce (8 bytes, network order)."""
    h = _KDF_HASH.get(kdf_id)
    if h is None:
        raise LispSecError("kdf-unknown", str(kdf_id))
    return HKDF(h(), OTK_LEN, struct.pack("!Q", nonce & 0xFFFFFFFFFFFFFFFF), b"").derive(itr_otk)


def mac(hmac_id: int, key: bytes, data: bytes) -> bytes:
    d = _DIGEST.get(hmac_id)
    if d is None:
        raise LispSecError("hmac-unknown", str(hmac_id))
    return hmac.new(key, data, d).digest()[:HMAC_LEN[hmac_id]]


def supported_hmac(hmac_id: int) -> int:
    return hmac_id if hmac_id in _DIGEST else DEFAULT_HMAC


# ---------------------------------------------------------------------------
# EID-AD

def seal_eid_ad(prefixes, kdf_id: int, hmac_id: int, itr_otk: bytes) -> bytes:
    """The encoded EID-AD for ``prefixes`` with its EID HMAC (keyed with the ITR-OTK,
    computed over the whole EID-AD with the HMAC field zeroed)."""
    n = HMAC_LEN[hmac_id]
    raw = encode_eid_ad(EidAd(kdf_id, hmac_id, tuple(prefixes), bytes(n)))
    return raw[:-n] + mac(hmac_id, itr_otk, raw)


def check_eid_ad(raw: bytes, ad: EidAd, itr_otk: bytes) -> str | None:
    """None when the encoded EID-AD ``raw`` (decoded as ``ad``) carries a valid EID HMAC."""
    if ad.short or not ad.prefixes:
        return "eid-ad-empty"
    if ad.hmac_id not in _DIGEST or len(ad.hmac) != HMAC_LEN[ad.hmac_id]:
        return "eid-hmac-id"
    n = len(ad.hmac)
    want = mac(ad.hmac_id, itr_otk, raw[:-n] + bytes(n))
    return None if hmac.compare_digest(want, raw[-n:]) else "eid-hmac"


def ecm_eid_ad_raw(data: bytes) -> bytes:
    """The encoded EID-AD inside an ECM with S=1 (after the header, the AD head and the OTK field)."""
    start = 4 + ECM_AUTH_HEAD + OTK_FIELD_LEN
    length = struct.unpack_from("!H", data, start)[0]
    return bytes(data[start:start + 2 + length])


# ---------------------------------------------------------------------------
# Map-Reply signing and verification

def sign_reply(reply: bytes, eid_ad_raw: bytes, hmac_id: int, ms_otk: bytes) -> bytes:
    """A Map-Reply (encoded, S=0, no authentication data) with S=1 and the
    authentication data: ``eid_ad_raw`` copied as is, then the PKT-AD whose HMAC
    (keyed with the MS-OTK) covers the whole message with that field zeroed."""
    n = HMAC_LEN[hmac_id]
    w0 = struct.unpack_from("!I", reply, 0)[0] | _S_BIT
    tail = struct.pack("!IHH", 1 << 24, 2 + n, hmac_id)
    msg = struct.pack("!I", w0) + bytes(reply[4:]) + tail[:4] + eid_ad_raw + tail[4:] + bytes(n)
    return msg[:-n] + mac(hmac_id, ms_otk, msg)


@dataclass(frozen=True, slots=True)
class Verified:
    """A Map-Reply that passed: the EID-AD's prefixes, the HMACs used."""

    prefixes: tuple
    eid_hmac_id: int
    pkt_hmac_id: int


def verify_reply(data: bytes, reply, itr_otk: bytes, nonce: int) -> Verified:
    """Check a received Map-Reply (``data``, decoded as ``reply``) against the ITR-OTK
    of the request it answers; raise :class:`LispSecError` naming what failed:
    ``unprotected`` (S=0), ``malformed``, ``eid-ad-empty``, ``eid-hmac-id``,
    ``eid-hmac``, ``kdf-unknown``, ``pkt-hmac-id``, ``pkt-hmac``, ``over-claim``."""
    if not reply.security:
        raise LispSecError("unprotected")
    try:
        ra: ReplyAuth = decode_reply_auth(reply.sec_data)
    except DecodeError as exc:
        raise LispSecError("malformed", str(exc)) from None
    sec_at = len(data) - len(reply.sec_data)
    ad_len = struct.unpack_from("!H", reply.sec_data, 4)[0]
    raw_ad = bytes(data[sec_at + 4:sec_at + 6 + ad_len])
    why = check_eid_ad(raw_ad, ra.eid_ad, itr_otk)
    if why:
        raise LispSecError(why)
    ms_otk = derive_ms_otk(ra.eid_ad.kdf_id, itr_otk, nonce)
    if ra.pkt_hmac_id not in _DIGEST or len(ra.pkt_hmac) != HMAC_LEN[ra.pkt_hmac_id]:
        raise LispSecError("pkt-hmac-id")
    n = len(ra.pkt_hmac)
    want = mac(ra.pkt_hmac_id, ms_otk, bytes(data[:-n]) + bytes(n))
    if not hmac.compare_digest(want, bytes(data[-n:])):
        raise LispSecError("pkt-hmac")
    for rec in reply.records:
        try:
            p = rec.prefix
        except Exception:
            raise LispSecError("over-claim", "a record with no prefix form") from None
        if not any(a.contains(p) for a in ra.eid_ad.prefixes):
            raise LispSecError("over-claim", f"{p} is not inside the EID-AD")
    return Verified(ra.eid_ad.prefixes, ra.eid_ad.hmac_id, ra.pkt_hmac_id)


# ---------------------------------------------------------------------------
# the ITR's request

def itr_auth(otk: bytes, secret: bytes | None, *, hmac_id: int = DEFAULT_HMAC,
             kdf_id: int = DEFAULT_KDF) -> EcmAuth:
    """The ECM authentication data an ITR sends: the wrapped ITR-OTK, the 4-byte EID-AD."""
    wrap_id, field = wrap_otk(otk, secret)
    return EcmAuth(hmac_id, wrap_id, field, EidAd(kdf_id))


# ---------------------------------------------------------------------------
# the Map-Server's side

@dataclass(frozen=True, slots=True)
class MsContext:
    """What the Map-Server derived from a request's ECM authentication data."""

    itr_otk: bytes
    ms_otk: bytes
    kdf_id: int
    hmac_id: int
    nonce: int


def ms_open(auth: EcmAuth, nonce: int, itr_secrets) -> MsContext:
    """Unwrap the ITR-OTK and derive the MS-OTK (the ITR's KDF when supported)."""
    if auth.eid_ad.prefixes or auth.eid_ad.hmac:
        raise LispSecError("ecm-eid-ad-filled", "an ITR's EID-AD carries no records")
    itr_otk = unwrap_otk(auth.otk_wrap_id, auth.otk, itr_secrets)
    kdf_id = auth.eid_ad.kdf_id if auth.eid_ad.kdf_id in _KDF_HASH else DEFAULT_KDF
    return MsContext(itr_otk, derive_ms_otk(kdf_id, itr_otk, nonce), kdf_id,
                     supported_hmac(auth.requested_hmac_id), nonce)


def ms_forward(ecm, ctx: MsContext, prefixes, site_secret: bytes | None) -> bytes:
    """The ECM for the ETR (E=1, M=0): the same request, the MS-OTK wrapped with the
    site key, the EID-AD naming ``prefixes`` (what that ETR is registered for)."""
    from common.wire.lispsec import decode_eid_ad
    from common.wire.messages import encode_message
    raw = seal_eid_ad(prefixes, ctx.kdf_id, ctx.hmac_id, ctx.itr_otk)
    ad, _ = decode_eid_ad(raw, 0, len(raw))
    wrap_id, field = wrap_otk(ctx.ms_otk, site_secret)
    auth = EcmAuth(ctx.hmac_id, wrap_id, field, ad)
    return encode_message(replace(ecm, to_etr=True, to_ms=False, auth=auth))


def ms_sign(reply: bytes, ctx: MsContext, prefixes) -> bytes:
    """The Map-Server's own Map-Reply (proxy or negative) signed: EID-AD naming the
    records' prefixes, PKT HMAC with the MS-OTK."""
    raw = seal_eid_ad(prefixes, ctx.kdf_id, ctx.hmac_id, ctx.itr_otk)
    return sign_reply(reply, raw, ctx.hmac_id, ctx.ms_otk)


# ---------------------------------------------------------------------------
# the ETR's side

def etr_open(data: bytes, auth: EcmAuth, secrets) -> tuple[bytes, bytes, int]:
    """(MS-OTK, the EID-AD to copy, PKT HMAC ID) from an ECM a Map-Server forwarded."""
    if auth.eid_ad.short or len(auth.eid_ad.hmac) == 0:
        raise LispSecError("ecm-eid-ad-empty", "not filled by a Map-Server")
    ms_otk = unwrap_otk(auth.otk_wrap_id, auth.otk, secrets)
    return ms_otk, ecm_eid_ad_raw(data), supported_hmac(auth.requested_hmac_id)


class MsLispSec:
    """The Map-Server treatment's LISP-SEC hook (``Resolver.lisp_sec``).

    ``itr_secrets``: the ITR-MS keys an AES-wrapped ITR-OTK may be wrapped with.
    ``site_for(eid)``: ``(mode, site secret or None)`` of the configured site covering
    ``eid``, or None outside every site.  Per site, "off": this site's ETRs get the
    request without LISP-SEC (S=0) and the Map-Server's own replies go unsigned;
    "on": LISP-SEC when the request asks for it; "required": a request without it
    (S=0) for this site's EIDs is dropped.
    """

    def __init__(self, itr_secrets, site_for) -> None:
        self.itr_secrets = tuple(itr_secrets)
        self.site_for = site_for

    def open(self, ecm, req, eids, lookup):
        """(session or None, None) to go on, or (None, (drop reason, detail))."""
        site = self.site_for(eids[0]) if eids else None
        mode = site[0] if site is not None else "on"
        if ecm.auth is None:
            if mode == "required":
                return None, ("lisp-sec-required", str(eids[0]))
            return None, None
        if mode == "off":
            return _Plain(ecm), None
        try:
            ctx = ms_open(ecm.auth, req.nonce, self.itr_secrets)
        except LispSecError as exc:
            return None, (f"lisp-sec.{exc.reason}", str(exc))
        return _Session(ecm, ctx, lookup, self.site_for), None


class _Plain:
    """A site with LISP-SEC off: the ETR gets the request without it; replies unsigned."""

    def __init__(self, ecm) -> None:
        self.ecm = ecm

    def forward(self, eids) -> bytes:
        from common.wire.messages import encode_message
        return encode_message(replace(self.ecm, auth=None, to_etr=True, to_ms=False))

    def sign(self, reply: bytes) -> bytes:
        return reply


class _Session:
    def __init__(self, ecm, ctx: MsContext, lookup, site_for) -> None:
        self.ecm, self.ctx, self.lookup, self.site_for = ecm, ctx, lookup, site_for

    def forward(self, eids) -> bytes:
        """The ECM for one ETR answering ``eids``: the EID-AD names the registered
        prefixes (longest match) the ETR answers for."""
        prefixes = []
        for e in eids:
            m = self.lookup(e)
            p = m.best[0] if m is not None else e
            if p not in prefixes:
                prefixes.append(p)
        site = self.site_for(eids[0]) if eids else None
        return ms_forward(self.ecm, self.ctx, prefixes, site[1] if site is not None else None)

    def sign(self, reply: bytes) -> bytes:
        from common.wire.messages import decode_message
        prefixes = []
        for rec in decode_message(reply).records:
            if rec.prefix not in prefixes:
                prefixes.append(rec.prefix)
        return ms_sign(reply, self.ctx, prefixes)


__all__ = ["MsLispSec", "MODES", "LispSecError", "Verified", "MsContext", "wrap_otk", "unwrap_otk", "derive_ms_otk",
           "mac", "seal_eid_ad", "check_eid_ad", "sign_reply", "verify_reply", "itr_auth", "ms_open",
           "ms_forward", "ms_sign", "etr_open", "key_encryption_key", "ITR_EID_AD_LEN"]
