"""The edge gate remembers the first record's site lookup (issue 10): a refresh
repeats its Map-Register's first EID, so decoding it and finding its site is done
once per (mask-len, address, key ID), not per message.  The verdicts are exactly
those of looking it up every time, for good, forged, unknown-key, no-site and
malformed Map-Registers alike; the memory is bounded."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from common.machines import regedge
from common.machines.regedge import RegisterGate
from common.machines.sites import SiteTable
from tests.unit.msfixtures import KEY, register, site

SRC = ("127.0.0.1", 4342)
SITES = [site(), site("site-b", key=b"b-secret", prefixes=(("[0]10.2.0.0/16", True), ("[0]10.2.5.0/24", False)))]

specs = st.sampled_from(["[0]10.1.0.0/16", "[0]10.1.7.0/24", "[0]10.2.0.0/16", "[0]10.2.5.0/24",
                         "[0]10.2.5.1/32", "[0]10.77.0.0/16", "[0]2001:db8:1::/48", "[0]2001:db8:9::/48",
                         "[1000]10.9.1.0/24", "[0]0.0.0.0/0"])
keys = st.sampled_from([KEY, b"b-secret", b"forged"])


def looked_up_every_time(data: bytes) -> tuple:
    """A fresh gate each time: nothing remembered."""
    return RegisterGate(SiteTable(SITES), rate=1e9, burst=1e9).check(data, SRC, 0)


@st.composite
def messages(draw):
    data = register([draw(specs)], nonce=draw(st.integers(1, 2 ** 40)), key=draw(keys),
                    xtr=draw(st.sampled_from([None, bytes(range(16))])))
    mutate = draw(st.sampled_from(["none", "key-id", "mask", "alg", "truncate"]))
    b = bytearray(data)
    off = 16 + int.from_bytes(b[14:16], "big")
    if mutate == "key-id":
        b[12] = draw(st.integers(1, 255))
    elif mutate == "mask":
        b[off + 5] = draw(st.integers(0, 255))        # longer than the address: malformed
    elif mutate == "alg":
        b[13] = 1
    elif mutate == "truncate":
        b = b[:off + 10 + draw(st.integers(2, 8))]
    return bytes(b)


@settings(max_examples=300, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=12), st.integers(0, 3))
def test_remembered_verdicts_are_those_of_a_lookup_every_time(msgs, repeat):
    g = RegisterGate(SiteTable(SITES), rate=1e9, burst=1e9)
    for _ in range(1 + repeat):
        for m in msgs:
            assert g.check(m, SRC, 0) == looked_up_every_time(m)


def test_a_refresh_does_not_look_its_site_up_again():
    g = RegisterGate(SiteTable(SITES), rate=1e9, burst=1e9)
    calls = []
    real = g.sites.site_of
    g.sites.site_of = lambda eid: calls.append(eid) or real(eid)
    for n in range(1, 6):
        assert g.check(register(["[0]10.1.0.0/16"], nonce=n), SRC, 0) == ("punt", 0, "all")
    assert g.check(register(["[0]10.1.0.0/16"], nonce=9, key=b"forged"), SRC, 0)[1] == "auth-failure"
    assert len(calls) == 1


def test_what_the_gate_remembers_is_bounded(monkeypatch):
    monkeypatch.setattr(regedge, "MEMO_MAX", 50)
    g = RegisterGate(SiteTable(SITES), rate=1e9, burst=1e9)
    for i in range(300):
        eid = f"[0]10.1.{i >> 8}.{i & 255}/32"
        assert g.check(register([eid]), SRC, 0)[0] == "punt"
        assert len(g._memo) <= 50


def test_the_shard_of_a_site_is_computed_once():
    calls = []
    g = RegisterGate(SiteTable(SITES), lambda name: calls.append(name) or {"site-a": 0, "site-b": 1}[name],
                     rate=1e9, burst=1e9)
    for n in range(1, 4):
        assert g.check(register(["[0]10.1.0.0/16"], nonce=n), SRC, 0) == ("punt", 0, "all")
        assert g.check(register(["[0]10.2.0.0/16"], nonce=n, key=b"b-secret"), SRC, 0) == ("punt", 1, "all")
    assert calls == ["site-a", "site-b"]
