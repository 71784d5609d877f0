"""LISP-Decent pull-mode hash: the three modes against independently computed vectors.

``draft`` is the old name of ``rfc9962`` and is used here too, to pin the alias.

Every expected index here is computed from a string written out by hand, with
hashlib/hmac directly, never through the module's own formatting.
"""

from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.wire.addr import Eid, Mac, clear_host_bits
from common.decent.hash import (ALIASES, MODES, LookupRange, apply_ranges, canonical_mode,
                                decent_index, dns_name, hash_string, index_of_string,
                                mask_warnings, range_warnings)
from common.wire.eidtext import format_eid, parse_eidspec

MODULI = (1, 2, 4, 7, 255, 1000)


def sha_index(s: str, m: int) -> int:
    return int.from_bytes(hashlib.sha256(s.encode("ascii")).digest(), "big") % m


def lispers_index(s: str, m: int) -> int:
    d = hmac.new(b"lisp-decent", s.encode("ascii"), hashlib.sha256).digest()
    return int.from_bytes(d[:6], "big") % m


# ---------------------------------------------------------------------------
# WIRE-FORMAT.md 13.4 computed examples, mv = 4, as literals

@pytest.mark.parametrize("spec, draft, draft8_string, draft8, lispers", [
    ("[0]240.0.1.0/24", 2, "[0]240.0", 0, 3),
    ("[0]240.0.1.1/32", 2, "[0]240.0", 0, 2),
    ("[1000]fd::2222/128", 0, "[1000]fd", 3, 0),
])
def test_wire_format_table(spec, draft, draft8_string, draft8, lispers):
    eid = parse_eidspec(spec)
    assert hash_string(eid, "draft", None) == spec
    assert decent_index(eid, 4) == draft
    assert decent_index(eid, 4, "draft") == draft
    assert hash_string(eid, "draft", 8) == draft8_string
    assert decent_index(eid, 4, "draft", 8) == draft8
    assert decent_index(eid, 4, "lispers") == lispers


def test_wire_format_table_lispers_digests():
    # the table also quotes the first 6 HMAC bytes
    for s, head in [("[0]240.0.1.0/24", 0x79930D7743CF), ("[0]240.0.1.1/32", 0x194AE250365E),
                    ("[1000]fd::2222/128", 0x9C580BF97A5C)]:
        assert hmac.new(b"lisp-decent", s.encode(), hashlib.sha256).digest()[:6] == \
            head.to_bytes(6, "big")


# ---------------------------------------------------------------------------
# hand-written vectors, all three modes

# (spec, mode, mask, the exact string that must be hashed)
VECTORS = [
    # rfc9962 (alias draft), whole string; multicast: exactly [<iid>]<group> (section 5.1)
    ("10.1.2.3/16", "draft", None, "[0]10.1.0.0/16"),
    ("10.1.2.3/16", "rfc9962", None, "[0]10.1.0.0/16"),
    ("[0]224.1.1.1-2.2.2.2", "draft", None, "[0]224.1.1.1"),                         # (S,G)
    ("[0]224.1.1.1-2.2.2.2", "rfc9962", None, "[0]224.1.1.1"),
    ("224.1.1.1/32-0.0.0.0/0", "rfc9962", None, "[0]224.1.1.1"),                     # (*,G)
    ("[0]233.252.1.1-10.0.0.1", "rfc9962", 14, "[0]233.252.1.1"),                   # RFC: "12" = 14
    ("224.1.0.0/16-0.0.0.0/0", "rfc9962", None, "[0]224.1.0.0"),                     # group prefix
    ("[7]FF0E:0:0::1-2001:db8::5", "rfc9962", None, "[7]ff0e::1"),                   # IPv6 (S,G)
    ("[7]ff0e::1/128-::/0", "draft", None, "[7]ff0e::1"),                            # IPv6 (*,G)
    ("2001:DB8:0:0:1::/32", "draft", None, "[0]2001:db8::/32"),
    ("2001:db8:0:0:1:0:0:1", "draft", None, "[0]2001:db8::1:0:0:1/128"),
    ("::ffff:1.2.3.4", "draft", None, "[0]::ffff:102:304/128"),
    ("[3]0a0b-0c0d-0e0f/40", "draft", None, "[3]0a0b-0c0d-0e00/40"),
    # draft with a byte mask: truncation, nothing else
    ("[0]224.1.1.1-2.2.2.2", "draft", 12, "[0]224.1.1.1"),
    ("224.1.1.1/32-0.0.0.0/0", "draft", 12, "[0]224.1.1.1"),
    ("[7]ff0e::1/128-::/0", "draft", 9, "[7]ff0e::"),
    ("10.1.2.3", "draft", 7, "[0]10.1"),
    ("10.1.2.3", "draft", 500, "[0]10.1.2.3/32"),
    # lispers: unmasked; multicast hashes the group alone
    ("[0]240.0.1.0/24", "lispers", None, "[0]240.0.1.0/24"),
    ("[0]224.1.1.1-2.2.2.2", "lispers", None, "[0]224.1.1.1/32"),
    ("224.1.1.1/32-0.0.0.0/0", "lispers", None, "[0]224.1.1.1/32"),
    ("[7]ff0e::1-2001:db8::5", "lispers", None, "[7]ff0e::1/128"),
    ("[7]ff0e::1/128-::/0", "lispers", None, "[7]ff0e::1/128"),
    ("[5]2001:db8::1", "lispers", None, "[5]2001:db8::1/128"),
    ("aa:bb:cc:dd:ee:ff", "lispers", None, "[0]aabb-ccdd-eeff/48"),
    # prefix: mask in bits; a shorter prefix keeps its length; multicast: masked group
    ("10.1.2.3", "prefix", 16, "[0]10.1.0.0/16"),
    ("10.0.0.0/8", "prefix", 16, "[0]10.0.0.0/8"),
    ("[4]10.1.2.3", "prefix", None, "[4]10.1.2.3/32"),
    ("2001:db8:1:2::5", "prefix", 48, "[0]2001:db8:1::/48"),
    ("[2]fd00:1:2:3:4:5:6:7", "prefix", 64, "[2]fd00:1:2:3::/64"),
    ("[0]232.1.2.3-10.0.0.1", "prefix", 24, "[0]232.1.2.0/24"),
    ("232.1.2.3/32-0.0.0.0/0", "prefix", 24, "[0]232.1.2.0/24"),
    ("232.1.2.3-10.0.0.1", "prefix", None, "[0]232.1.2.3/32"),
    ("[7]ff0e::1:2-::/0", "prefix", 112, "[7]ff0e::1:0/112"),
    ("[7]ff0e::1:2-2001:db8::1", "prefix", 16, "[7]ff0e::/16"),
    ("0a0b-0c0d-0e0f", "prefix", 24, "[0]0a0b-0c00-0000/24"),
]


@pytest.mark.parametrize("spec, mode, mask, string", VECTORS)
def test_hash_vectors(spec, mode, mask, string):
    eid = parse_eidspec(spec)
    assert hash_string(eid, mode, mask) == string
    oracle = lispers_index if mode == "lispers" else sha_index
    for m in MODULI:
        assert decent_index(eid, m, mode, mask) == oracle(string, m)
        assert index_of_string(string, m, mode) == oracle(string, m)


def test_default_mode_is_rfc9962():
    eid = parse_eidspec("[0]224.1.1.1-2.2.2.2")
    assert decent_index(eid, 255) == sha_index("[0]224.1.1.1", 255)
    eid = parse_eidspec("[0]240.0.1.1")
    assert decent_index(eid, 255) == sha_index("[0]240.0.1.1/32", 255)


def test_modulus_one_is_always_zero():
    for spec, mode, mask, _ in VECTORS:
        assert decent_index(parse_eidspec(spec), 1, mode, mask) == 0


# ---------------------------------------------------------------------------
# argument errors

@pytest.mark.parametrize("modulus", [0, -1, 2.0, True, None])
def test_bad_modulus(modulus):
    with pytest.raises(ValueError):
        decent_index(parse_eidspec("10.0.0.1"), modulus)


@pytest.mark.parametrize("mode, mask", [
    ("lispers", 8), ("lispers", 0), ("draft", 0), ("draft", -1), ("prefix", -1),
    ("prefix", 1.5), ("sha1", None), ("DRAFT", None), ("rfc9962", 0), ("RFC9962", None),
])
def test_bad_mode_or_mask(mode, mask):
    eid = parse_eidspec("10.0.0.1")
    for call in (lambda: hash_string(eid, mode, mask), lambda: decent_index(eid, 4, mode, mask),
                 lambda: mask_warnings(eid, mode, mask)):
        with pytest.raises(ValueError):
            call()


def test_modes_and_dns_name():
    assert MODES == ("rfc9962", "lispers", "prefix")
    assert ALIASES == {"draft": "rfc9962"}
    assert canonical_mode("draft") == canonical_mode("rfc9962") == "rfc9962"
    assert dns_name(3, "map-server.lispers.net") == "3.map-server.lispers.net"
    assert dns_name(0, "map-server.example.") == "0.map-server.example"


# ---------------------------------------------------------------------------
# config-check warnings

def _warn(spec, mode, mask):
    return mask_warnings(parse_eidspec(spec), mode, mask)


def test_warnings_prefix_mode():
    assert _warn("10.1.0.0/16", "prefix", 16) == []
    assert _warn("10.1.2.0/24", "prefix", 16) == []
    assert _warn("10.1.2.0/24", "prefix", None) == []
    [w] = _warn("10.0.0.0/8", "prefix", 16)
    assert "shorter than the hash mask" in w and "[0]10.0.0.0/8" in w
    [w] = _warn("224.1.0.0/16-0.0.0.0/0", "prefix", 24)
    assert "group prefix /16" in w
    assert _warn("224.1.2.0/24-0.0.0.0/0", "prefix", 24) == []


def test_warnings_lispers_mode_none():
    assert _warn("10.0.0.0/8", "lispers", None) == []
    assert _warn("[0]224.1.1.1-2.2.2.2", "lispers", None) == []


def test_warnings_draft_unicast():
    # the seed's own example: "[0]240.0" covers 240.0.0.0/16 hosts
    assert _warn("[0]240.0.1.0/24", "draft", 8) == []
    assert _warn("240.0.0.0/16", "draft", 8) == []
    assert _warn("10.0.0.0/24", "draft", 9) == []          # "[0]10.0.0"
    [w] = _warn("10.0.0.0/23", "draft", 9)                  # 10.0.1.x -> "[0]10.0.1"
    assert "'[0]10.0.1'" in w
    [w] = _warn("10.0.0.0/24", "draft", None)               # whole string: "/24" vs "/32"
    assert "[0]10.0.0.0/32" in w or "[0]10.0.0.255/32" in w
    assert _warn("10.0.0.1/32", "draft", None) == []        # a host route is only itself
    [w] = _warn("10.0.0.0/8", "draft", 14)                  # mask reaches the "/8"
    assert "lookups inside it may miss its index" in w
    assert _warn("0a0b-0c0d-0000/32", "draft", 13) == []    # "[0]0a0b-0c0d-"
    assert _warn("0a0b-0c0d-0000/32", "draft", 14) != []    # "-0" vs "-f"


def test_warnings_draft_ipv6_zero_compression():
    # 2001:db8::/64: first and last host agree on "[0]2001:db8::" but
    # 2001:db8:0:0:1:: is written "2001:db8:0:0:1::"
    [w] = _warn("2001:db8::/64", "draft", 13)
    assert "'[0]2001:db8:0'" in w
    assert _warn("2001:db8::/64", "draft", 11) == []       # "[0]2001:db8"
    assert _warn("2001:db8:1:2::/64", "draft", 16) == []   # "[0]2001:db8:1:2:"
    assert _warn("2001:db8:1:2::/64", "draft", 17) != []   # "::" vs ":1" (2001:db8:1:2:1::)


def test_warnings_draft_multicast():
    # the source is never hashed (section 5.1), so only a mask cutting into
    # "[<iid>]<group>" or a group prefix whose groups differ can warn
    sg = "[0]224.1.1.1/32-2.2.2.2/32"
    assert _warn(sg, "draft", 12) == []                     # "[0]224.1.1.1"
    assert _warn(sg, "draft", 17) == []                     # longer than the string: all of it
    assert _warn(sg, "draft", None) == []
    [w] = _warn(sg, "draft", 11)
    assert "cuts into '[0]224.1.1.1'" in w
    # (*, 224.1.0.0/16): "[0]224.1.0.0" but group 224.1.2.3 -> "[0]224.1.2.3"
    [w] = _warn("224.1.0.0/16-0.0.0.0/0", "draft", 12)
    assert "lookups inside it may miss its index" in w
    [w] = _warn("224.1.0.0/16-0.0.0.0/0", "rfc9962", None)
    assert "lookups inside it may miss its index" in w
    # a shorter mask makes every group inside agree, but the RFC says the hashed
    # string MUST include "[<iid>]<group>", so that still warns
    [w] = _warn("224.1.0.0/16-0.0.0.0/0", "draft", 9)
    assert "cuts into '[0]224.1.0.0'" in w
    assert _warn("[7]ff0e::1/128-::/0", "draft", 10) == []      # "[7]ff0e::1"
    assert _warn("[7]ff0e::1/128-::/0", "draft", 16) == []
    assert _warn("[7]ff0e::1/128-::/0", "draft", 9) != []       # "[7]ff0e::"


def test_multicast_sg_and_starg_share_the_index():
    # section 5.1: (S,G) and (*,G) of one group land on one index, whatever the source
    for m in MODULI:
        want = sha_index("[3]239.1.2.3", m)
        for spec in ("[3]239.1.2.3-0.0.0.0/0", "[3]239.1.2.3-10.0.0.1", "[3]239.1.2.3-192.0.2.0/24"):
            assert decent_index(parse_eidspec(spec), m, "rfc9962") == want


# ---------------------------------------------------------------------------
# RFC 9962 section 5.2 lookup ranges

def _ranges(*pairs):
    return tuple(LookupRange(parse_eidspec(p), n) for p, n in pairs)


RFC_RANGES = _ranges(("[0]240.11.0.0/16", 24), ("[0]240.12.0.0/16", 30), ("[0]240.13.0.0/16", 25))


@pytest.mark.parametrize("spec, string", [
    # the RFC's own example (its "0-32 bytes" means bits)
    ("[0]240.11.1.1", "[0]240.11.1.0/24"),
    ("[0]240.12.2.5", "[0]240.12.2.4/30"),
    ("[0]240.13.3.7", "[0]240.13.3.0/25"),
    ("[0]240.14.1.1", "[0]240.14.1.1/32"),
    # a registration of exactly the lookup length hashes its own prefix, the same string
    ("[0]240.11.1.0/24", "[0]240.11.1.0/24"),
    # a longer one is masked like the lookups of its hosts
    ("[0]240.11.1.128/28", "[0]240.11.1.0/24"),
    # a shorter one keeps its own string (and config check warns)
    ("[0]240.11.0.0/20", "[0]240.11.0.0/20"),
    # another instance-ID is in no range
    ("[1]240.11.1.1", "[1]240.11.1.1/32"),
])
def test_lookup_ranges_rfc_example(spec, string):
    eid = parse_eidspec(spec)
    assert hash_string(eid, "rfc9962", None, RFC_RANGES) == string
    assert hash_string(eid, "draft", None, RFC_RANGES) == string
    for m in MODULI:
        assert decent_index(eid, m, "rfc9962", None, RFC_RANGES) == sha_index(string, m)


def test_lookup_ranges_most_specific_wins_and_ipv6():
    ranges = _ranges(("[0]10.0.0.0/8", 16), ("[0]10.1.0.0/16", 28), ("[0]10.1.2.0/24", 24),
                     ("[9]2001:db8::/32", 48), ("[9]2001:db8:5::/48", 64))
    cases = [("10.9.9.9", "[0]10.9.0.0/16"), ("10.1.9.77", "[0]10.1.9.64/28"),
             ("10.1.2.3", "[0]10.1.2.0/24"), ("11.1.1.1", "[0]11.1.1.1/32"),
             ("[9]2001:db8:7:1::1", "[9]2001:db8:7::/48"),
             ("[9]2001:db8:5:1::1", "[9]2001:db8:5:1::/64"),
             ("2001:db8:5:1::1", "[0]2001:db8:5:1::1/128")]
    for spec, string in cases:
        assert hash_string(parse_eidspec(spec), "rfc9962", None, ranges) == string
    # the hash mask applies after the range
    assert hash_string(parse_eidspec("10.1.9.77"), "rfc9962", 9, ranges) == "[0]10.1.9"
    # a multicast EID is never masked by a range, even one over its group's bits
    mranges = ranges + _ranges(("[0]239.1.0.0/16", 24))
    assert hash_string(parse_eidspec("[0]239.1.2.3-10.0.0.1"), "rfc9962", None, mranges) == \
        "[0]239.1.2.3"
    assert apply_ranges(parse_eidspec("10.9.9.9"), ()) == parse_eidspec("10.9.9.9")


def test_lookup_ranges_errors():
    p = parse_eidspec("[0]240.11.0.0/16")
    for bad in (15, 33, -1, True, 24.0):
        with pytest.raises(ValueError):
            LookupRange(p, bad)
    with pytest.raises(ValueError):
        LookupRange(parse_eidspec("239.0.0.0/8-0.0.0.0/0"), 16)
    with pytest.raises(ValueError):
        LookupRange(parse_eidspec("0a0b-0c0d-0e0f/24"), 32)
    for mode, mask in (("lispers", None), ("prefix", 16)):
        with pytest.raises(ValueError):
            hash_string(parse_eidspec("240.11.1.1"), mode, mask, RFC_RANGES)
    assert range_warnings(RFC_RANGES) == []
    [w] = range_warnings(RFC_RANGES + _ranges(("[0]240.11.0.0/16", 28)))
    assert "listed twice" in w


def test_lookup_range_warnings():
    assert mask_warnings(parse_eidspec("240.11.1.0/24"), "rfc9962", None, RFC_RANGES) == []
    assert mask_warnings(parse_eidspec("240.11.1.128/25"), "rfc9962", None, RFC_RANGES) == []
    assert mask_warnings(parse_eidspec("240.11.1.1/32"), "rfc9962", None, RFC_RANGES) == []
    [w] = mask_warnings(parse_eidspec("240.11.0.0/20"), "rfc9962", None, RFC_RANGES)
    assert "shorter than the lookup length /24 of range [0]240.11.0.0/16" in w
    [w] = mask_warnings(parse_eidspec("240.0.0.0/8"), "rfc9962", None, RFC_RANGES[:1])
    assert "covers lookup range [0]240.11.0.0/16" in w
    # without ranges a /24 registration and its /32 lookups disagree (the old warning)
    assert mask_warnings(parse_eidspec("240.11.1.0/24"), "rfc9962", None) != []


@settings(max_examples=200)
@given(st.integers(0, 2**32 - 1), st.integers(8, 24), st.integers(0, 8), st.integers(0, 8),
       st.integers(1, 1000))
def test_lookup_range_hosts_land_on_the_registration_index(value, rlen, extra, slack, modulus):
    # a registration inside a range, at least the lookup length long, and every
    # host inside it: one string, one index
    length = min(32, rlen + extra)
    rng = LookupRange(Eid(0, clear_host_bits(IPv4Address(value), rlen), rlen), length)
    reglen = min(32, length + slack)
    reg = Eid(0, clear_host_bits(IPv4Address(value), reglen), reglen)
    host = Eid(0, IPv4Address(value), 32)
    assert mask_warnings(reg, "rfc9962", None, (rng,)) == []
    assert decent_index(host, modulus, "rfc9962", None, (rng,)) == \
        decent_index(reg, modulus, "rfc9962", None, (rng,))


# ---------------------------------------------------------------------------
# properties

def _addr(family_bits: int, value: int):
    return IPv4Address(value) if family_bits == 32 else IPv6Address(value)


@st.composite
def prefix_and_host(draw):
    """(registered prefix EID, host EID inside it, mask <= prefix length)."""
    bits = draw(st.sampled_from([32, 128]))
    iid = draw(st.integers(0, 2**32 - 1))
    length = draw(st.integers(0, bits))
    mask = draw(st.integers(0, length))
    base = draw(st.integers(0, 2**bits - 1)) >> (bits - length) << (bits - length) if length else 0
    host = base | draw(st.integers(0, (1 << (bits - length)) - 1))
    return Eid(iid, _addr(bits, base), length), Eid(iid, _addr(bits, host), bits), mask


@settings(max_examples=300)
@given(prefix_and_host(), st.integers(1, 1000))
def test_prefix_mode_hosts_land_on_the_prefix_index(case, modulus):
    prefix, host, mask = case
    assert mask_warnings(prefix, "prefix", mask) == []
    assert hash_string(host, "prefix", mask) == hash_string(prefix, "prefix", mask)
    assert decent_index(host, modulus, "prefix", mask) == decent_index(prefix, modulus, "prefix", mask)


@settings(max_examples=200)
@given(st.booleans(), st.integers(0, 2**28 - 1), st.integers(0, 2**32 - 1),
       st.integers(4, 32), st.integers(0, 28), st.integers(1, 1000))
def test_prefix_mode_multicast_hosts_land_on_the_group_index(v4, gbits, sval, glen, mslack, modulus):
    if v4:
        group, bits = IPv4Address((224 << 24) | gbits), 32
        source = IPv4Address(sval)
    else:
        group, bits = IPv6Address((0xFF << 120) | (gbits << 92)), 128
        glen, source = glen * 4, IPv6Address(sval << 96)
    mask = max(0, glen - mslack)
    registered = Eid(0, IPv4Address(0) if v4 else IPv6Address(0), 0, clear_host_bits(group, glen), glen)
    lookup = Eid(0, source, bits, group, bits)
    assert mask_warnings(registered, "prefix", mask) == []
    assert decent_index(lookup, modulus, "prefix", mask) == \
        decent_index(registered, modulus, "prefix", mask)


# IPv6 groups biased to the values that move zero compression around: mostly
# zeros, so that runs of every length appear on both sides of the prefix length
_group = st.one_of(st.sampled_from([0, 0, 0, 0, 1, 0xFFFF]), st.integers(0, 0xFFFF))


@st.composite
def draft_case(draw):
    if draw(st.booleans()):
        bits = 128
        value = sum(g << (16 * (7 - i)) for i, g in enumerate(draw(st.lists(_group, min_size=8, max_size=8))))
        hostv = sum(g << (16 * (7 - i)) for i, g in enumerate(draw(st.lists(_group, min_size=8, max_size=8))))
    else:
        bits = 32
        value, hostv = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
    # group-aligned lengths are the common case and the interesting one for "::"
    length = draw(st.one_of(st.integers(0, bits), st.integers(0, bits // 16).map(lambda g: 16 * g)))
    hostmask = (1 << (bits - length)) - 1
    base = value & ~hostmask
    prefix = Eid(0, _addr(bits, base), length)
    host = Eid(0, _addr(bits, base | (hostv & hostmask)), bits)
    text = format_eid(prefix)
    # masks ending around a "::" are where IPv6 text stops being monotonic
    near = [i + k for i in range(len(text)) if text.startswith("::", i) for k in (0, 1, 2, 3)]
    anywhere = st.integers(1, len(text) + 2)
    mask = draw(st.one_of(anywhere, st.sampled_from(near)) if near else anywhere)
    return prefix, host, mask


@settings(max_examples=300, deadline=None)
@given(draft_case())
def test_draft_no_warning_means_every_host_matches(case):
    prefix, host, mask = case
    if mask_warnings(prefix, "draft", mask) == []:
        assert hash_string(host, "draft", mask) == hash_string(prefix, "draft", mask)


def test_mac_prefix_string_and_index():
    eid = Eid(0, Mac(bytes.fromhex("0a0b0c0d0e0f")), 48)
    assert decent_index(eid, 7, "draft") == sha_index("[0]0a0b-0c0d-0e0f/48", 7)


def _groups_to_v6(groups) -> IPv6Address:
    return IPv6Address(sum(g << (16 * (7 - i)) for i, g in enumerate(groups)))


def test_draft_no_warning_means_every_host_matches_small_universe():
    # Exhaustive over a universe where zero compression has the most room to move:
    # every group 0 or 1, prefix lengths on group boundaries, every useful mask.
    # (Random sampling rarely hits the one host whose zero run outgrows the prefix's.)
    from itertools import product
    for k in range(0, 8):  # fixed groups; k = 8 is a host route, nothing to check
        hosts = list(product((0, 1), repeat=8 - k))
        for fixed in product((0, 1), repeat=k):
            prefix = Eid(0, _groups_to_v6(fixed + (0,) * (8 - k)), 16 * k)
            full = hash_string(prefix, "draft", None)
            host_strings = [format_eid(Eid(0, _groups_to_v6(fixed + h), 128)) for h in hosts]
            for mask in range(1, len(full) + 2):
                want = full[:mask]
                agree = all(s[:mask] == want for s in host_strings)
                assert (mask_warnings(prefix, "draft", mask) == []) == agree, (full, mask)


@st.composite
def partial_group_prefix(draw):
    """An IPv6 prefix whose partly masked group has at most 256 values and
    at most three host groups after it."""
    g = draw(st.integers(4, 7))
    j = draw(st.integers(8, 15))
    groups = draw(st.lists(_group, min_size=8, max_size=8))
    length = 16 * g + j
    value = int(_groups_to_v6(groups)) & ~((1 << (128 - length)) - 1)
    return Eid(0, IPv6Address(value), length)


@settings(max_examples=60, deadline=None)
@given(partial_group_prefix(), st.data())
def test_draft_warning_matches_brute_force_partial_group(prefix, data):
    from itertools import product
    length = prefix.length
    g, j = divmod(length, 16)
    base = int(prefix.address)
    lo_bit = 16 * (7 - g)
    hosts = []
    for v in range(1 << (16 - j)):
        for rest in product((0, 1), repeat=7 - g):
            tail = sum(r << (16 * (len(rest) - 1 - i)) for i, r in enumerate(rest))
            hosts.append(format_eid(Eid(0, IPv6Address(base | (v << lo_bit) | tail), 128)))
    full = format_eid(prefix)
    mask = data.draw(st.integers(1, len(full) + 1))
    want = full[:mask]
    agree = all(h[:mask] == want for h in hosts)
    if mask_warnings(prefix, "draft", mask) == []:
        assert agree


@settings(max_examples=200)
@given(st.integers(0, 2**32 - 1), st.integers(24, 31), st.data())
def test_draft_warning_matches_brute_force_ipv4(value, length, data):
    prefix = Eid(0, IPv4Address(value & ~((1 << (32 - length)) - 1)), length)
    full = format_eid(prefix)
    mask = data.draw(st.integers(1, len(full) + 1))
    hosts = [format_eid(Eid(0, IPv4Address(int(prefix.address) + i), 32))
             for i in range(1 << (32 - length))]
    agree = all(h[:mask] == full[:mask] for h in hosts)
    assert (mask_warnings(prefix, "draft", mask) == []) == agree


# ---------------------------------------------------------------------------
# lispers mode writes EIDs as lispers.net does (socket.inet_ntop is the oracle)

def test_lispers_ipv4_mapped_and_compatible_vectors():
    from common.decent.hash import lispers_string
    for spec, string in (("::ffff:10.0.0.1", "[0]::ffff:10.0.0.1/128"),
                         ("[5]::10.0.0.1", "[5]::10.0.0.1/128"),
                         ("::1", "[0]::1/128"), ("::", "[0]::/128"),
                         ("::ffff:0:0/96", "[0]::ffff:0.0.0.0/96"),
                         ("::1:0:0:1", "[0]::1:0:0:1/128"),
                         ("2001:db8::a00:1", "[0]2001:db8::a00:1/128")):
        eid = parse_eidspec(spec)
        assert hash_string(eid, "lispers", None) == string
        for m in MODULI:
            assert decent_index(eid, m, "lispers") == lispers_index(string, m)
    # the address as configured keeps its host bits (lispers.net does not clear them)
    eid = parse_eidspec("10.1.1.5/24")
    assert lispers_string(eid, IPv4Address("10.1.1.5")) == "[0]10.1.1.5/24"
    assert lispers_string(eid) == "[0]10.1.1.0/24"
    # multicast: the group EID alone
    assert lispers_string(parse_eidspec("[2]ff0e::1-::ffff:1.2.3.4")) == "[2]ff0e::1/128"


_word = st.one_of(st.sampled_from([0, 0, 0, 0xFFFF, 1]), st.integers(0, 0xFFFF))


@settings(max_examples=500)
@given(st.lists(_word, min_size=8, max_size=8))
def test_lispers_ipv6_text_is_inet_ntop(words):
    import socket
    from common.decent.hash import lispers_ipv6
    addr = IPv6Address(sum(w << (16 * (7 - i)) for i, w in enumerate(words)))
    assert lispers_ipv6(addr) == socket.inet_ntop(socket.AF_INET6, addr.packed)


def test_lispers_ipv6_text_is_inet_ntop_on_the_ipv4_forms():
    import socket
    from common.decent.hash import lispers_ipv6
    for v4 in (0, 1, 0xFFFF, 0x10000, 0x0A000001, 0xFFFFFFFF):
        for head in (0, 0xFFFF << 32, 1 << 32, 0xFFFE << 32, 1 << 48):
            addr = IPv6Address(head | v4)
            assert lispers_ipv6(addr) == socket.inet_ntop(socket.AF_INET6, addr.packed), hex(int(addr))
