"""Every message kind survives encode -> decode unchanged, and bad bytes only ever
raise the codec's own error."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.wire.errors import DecodeError
from common.wire.messages import decode_message, encode_message
from tests import strategies as S

KINDS = {
    "map-request": S.map_requests, "map-reply": S.map_replies, "map-register": S.map_registers,
    "map-notify": S.map_notifies, "map-notify-ack": S.map_notify_acks, "map-referral": S.map_referrals,
    "info": S.infos, "ecm": S.ecms,
}

ROUNDTRIP = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("wire", [False, True], ids=["any", "wire"])
def test_roundtrip(kind, wire):
    @ROUNDTRIP
    @given(KINDS[kind](wire))
    def check(msg):
        data = encode_message(msg)
        assert decode_message(data) == msg
        # and the encoding is canonical: re-encoding gives the same bytes
        assert encode_message(decode_message(data)) == data
    check()


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_only_codec_errors(data: bytes) -> None:
    try:
        decode_message(data)
    except DecodeError as exc:
        assert 0 <= exc.offset <= max(len(data), 1) + 64
        assert str(exc).startswith(f"decode error at offset {exc.offset}")


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_error(data):
    _decode_only_codec_errors(data)


@FUZZ
@given(st.integers(1, 8).flatmap(lambda t: st.tuples(st.just(t), st.binary(max_size=200))))
def test_random_bodies_of_every_type(t_body):
    t, body = t_body
    _decode_only_codec_errors(bytes([t << 4]) + body)


@FUZZ
@given(S.messages(), st.data())
def test_truncations_raise_only_decode_error(msg, data):
    raw = encode_message(msg)
    cut = data.draw(st.integers(0, len(raw) - 1))
    _decode_only_codec_errors(raw[:cut])


@FUZZ
@given(S.messages(), st.data())
def test_bit_flips_raise_only_decode_error(msg, data):
    raw = bytearray(encode_message(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    _decode_only_codec_errors(bytes(raw))


@FUZZ
@given(S.messages(), st.binary(min_size=1, max_size=8))
def test_trailing_garbage_is_an_error_or_kept(msg, junk):
    """Extra bytes never vanish silently: the decode either fails or keeps them."""
    raw = encode_message(msg) + junk
    try:
        got = decode_message(raw)
    except DecodeError:
        return
    assert encode_message(got) == raw
