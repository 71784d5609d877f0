"""common.wire.auth.mac keeps a keyed HMAC object per (algorithm, key) and copies it
per message (issue 10): the MAC is exactly HMAC(key, data) for every key, algorithm
and message, whatever was computed before, and what it keeps is bounded."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given, settings, strategies as st

from common.wire import auth
from common.wire.register import ALG_HMAC_SHA1_96, ALG_HMAC_SHA256_128

DIGEST = {ALG_HMAC_SHA1_96: hashlib.sha1, ALG_HMAC_SHA256_128: hashlib.sha256}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(DIGEST)), st.binary(max_size=80), st.binary(max_size=300)),
                min_size=1, max_size=20))
def test_mac_is_the_hmac_of_the_data_under_its_key(calls):
    for alg, key, data in calls + calls[::-1]:      # again, from the keyed objects kept
        assert auth.mac(alg, key, data) == hmac.new(key, data, DIGEST[alg]).digest()


def test_a_kept_key_is_copied_not_consumed_and_the_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(auth, "_KEYED", {})
    monkeypatch.setattr(auth, "KEYED_MAX", 8)
    want = hmac.new(b"k", b"abc", hashlib.sha256).digest()
    assert [auth.mac(ALG_HMAC_SHA256_128, b"k", b"abc") for _ in range(3)] == [want] * 3
    assert (ALG_HMAC_SHA256_128, b"k") in auth._KEYED
    for i in range(100):
        assert auth.mac(ALG_HMAC_SHA1_96, bytes([i]), b"x") == hmac.new(bytes([i]), b"x", hashlib.sha1).digest()
        assert len(auth._KEYED) <= 8
