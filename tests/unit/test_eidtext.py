"""Canonical EID text: RFC 5952 IPv6, the hash-input strings, and EID-spec parsing."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.wire.addr import (AfiList, DistinguishedName, Eid, InstanceIdAddr, Mac, MulticastInfo,
                         NO_ADDRESS, OpaqueLcaf, Rle, RleEntry, clear_host_bits)
from common.wire.eidtext import EidSpecError, format_address, format_eid, format_ipv6, parse_eidspec


# ---------------------------------------------------------------------------
# RFC 5952

@pytest.mark.parametrize("text, want", [
    ("::", "::"),
    ("::1", "::1"),
    ("1::", "1::"),
    ("2001:DB8::A", "2001:db8::a"),                          # 4.3 lowercase
    ("2001:0db8:0000:0000:0000:0000:0002:0001", "2001:db8::2:1"),  # 4.1 leading zeros
    ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),        # 4.2.2 lone zero kept
    ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),                 # 4.2.3 longest run
    ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),           # 4.2.3 first run on a tie
    ("0:0:1:0:0:1:0:0", "::1:0:0:1:0:0"),
    ("1:0:0:2:0:0:0:0", "1:0:0:2::"),
    ("::ffff:1.2.3.4", "::ffff:102:304"),                    # no dotted-quad tail
    ("::1.2.3.4", "::102:304"),
    ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
    ("fd::2222", "fd::2222"),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
])
def test_format_ipv6_examples(text, want):
    assert format_ipv6(IPv6Address(text)) == want


def _reference_5952(addr: IPv6Address) -> str:
    """An independent RFC 5952 formatter: a regex over the uncompressed hextets."""
    padded = ":" + ":".join(format(int(h, 16), "x") for h in addr.exploded.split(":")) + ":"
    runs = [m for m in re.finditer(r":(?:0:)+", padded) if m.group().count("0") >= 2]
    if runs:
        best = max(runs, key=lambda m: (m.group().count("0"), -m.start()))
        padded = padded[:best.start()] + "::" + padded[best.end():]
    if not padded.startswith("::"):
        padded = padded[1:]
    if not padded.endswith("::"):
        padded = padded[:-1]
    return padded


# groups drawn mostly from 0 so that zero runs of every length and position occur
_group = st.one_of(st.just(0), st.just(0), st.integers(1, 0xFFFF))
ipv6_addresses = st.lists(_group, min_size=8, max_size=8).map(
    lambda gs: IPv6Address(sum(g << (16 * (7 - i)) for i, g in enumerate(gs))))


@settings(max_examples=300)
@given(ipv6_addresses)
def test_format_ipv6_matches_reference(addr):
    assert format_ipv6(addr) == _reference_5952(addr)


@settings(max_examples=300)
@given(ipv6_addresses)
def test_format_ipv6_matches_ipaddress_where_it_is_5952(addr):
    # ipaddress writes IPv4-mapped addresses with a dotted tail on newer Pythons
    if addr.ipv4_mapped is None:
        assert format_ipv6(addr) == addr.compressed
    assert IPv6Address(format_ipv6(addr)) == addr


# ---------------------------------------------------------------------------
# format_address / format_eid

@settings(max_examples=300)
@given(st.integers(0, (1 << 32) - 1), ipv6_addresses)
def test_address_text_is_the_same_whether_remembered_or_not(n, v6):
    """The text is remembered by (family, integer): an IPv4 address and an IPv6
    address of the same integer never share one, a repeat gives the same text."""
    for _ in range(2):
        assert format_address(IPv4Address(n)) == str(IPv4Address(n))
        assert format_address(IPv6Address(n)) == _reference_5952(IPv6Address(n))
        assert format_address(v6) == _reference_5952(v6)


def test_format_address_kinds():
    assert format_address(IPv4Address("10.1.2.3")) == "10.1.2.3"
    assert format_address(IPv6Address("::ffff:1.2.3.4")) == "::ffff:102:304"
    assert format_address(Mac(bytes.fromhex("0A0B0C0D0E0F"))) == "0a0b-0c0d-0e0f"
    assert format_address(DistinguishedName("site-a")) == "'site-a'"
    assert format_address(NO_ADDRESS) == "no-address"
    assert format_address(InstanceIdAddr(7, IPv6Address("fd::1"))) == "[7]fd::1"
    assert format_address(MulticastInfo(0, IPv4Address("2.2.2.2"), 32,
                                        IPv4Address("224.1.1.1"), 32)) == "[0]224.1.1.1/32-2.2.2.2/32"
    assert format_address(Rle((RleEntry(IPv4Address("1.1.1.1")),
                               RleEntry(IPv4Address("2.2.2.2"), 5, "x")))) == \
        "rle(1.1.1.1:128, 2.2.2.2:5 'x')"
    assert format_address(AfiList((IPv4Address("1.1.1.1"), DistinguishedName("n")))) == \
        "afi-list(1.1.1.1, 'n')"
    assert format_address(OpaqueLcaf(14, b"\x01\xff")) == "lcaf-type-14(01ff)"
    with pytest.raises(TypeError):
        format_address("1.2.3.4")


def test_format_eid_strings():
    assert format_eid(Eid(0, IPv4Address("240.0.1.0"), 24)) == "[0]240.0.1.0/24"
    assert format_eid(Eid(1000, IPv6Address("fd::2222"), 128)) == "[1000]fd::2222/128"
    assert format_eid(Eid(3, Mac(bytes.fromhex("0a0b0c0d0e0f")), 48)) == "[3]0a0b-0c0d-0e0f/48"
    sg = Eid(0, IPv4Address("2.2.2.2"), 32, IPv4Address("224.1.1.1"), 32)
    assert format_eid(sg) == "[0]224.1.1.1/32-2.2.2.2/32"
    star_g = Eid(0, IPv4Address("0.0.0.0"), 0, IPv4Address("224.1.1.1"), 32)
    assert format_eid(star_g) == "[0]224.1.1.1/32-0.0.0.0/0"
    star_g6 = Eid(9, IPv6Address("::"), 0, IPv6Address("ff0e::1"), 128)
    assert format_eid(star_g6) == "[9]ff0e::1/128-::/0"


# ---------------------------------------------------------------------------
# parse_eidspec

@pytest.mark.parametrize("text, want", [
    ("10.1.2.3", Eid(0, IPv4Address("10.1.2.3"), 32)),
    ("[5]10.1.2.3/16", Eid(5, IPv4Address("10.1.0.0"), 16)),
    ("  [4294967295]0.0.0.0/0 ", Eid(0xFFFFFFFF, IPv4Address("0.0.0.0"), 0)),
    ("2001:DB8:0:0:1::/32", Eid(0, IPv6Address("2001:db8::"), 32)),
    ("[1000]fd::2222", Eid(1000, IPv6Address("fd::2222"), 128)),
    ("::ffff:1.2.3.4", Eid(0, IPv6Address("::ffff:102:304"), 128)),
    ("0A0B-0C0D-0E0F", Eid(0, Mac(bytes.fromhex("0a0b0c0d0e0f")), 48)),
    ("[2]0a:0b:0c:0d:0e:ff/44", Eid(2, Mac(bytes.fromhex("0a0b0c0d0ef0")), 44)),
    ("[0]224.1.1.1/32-2.2.2.2/32",
     Eid(0, IPv4Address("2.2.2.2"), 32, IPv4Address("224.1.1.1"), 32)),
    ("224.1.1.1-2.2.2.2", Eid(0, IPv4Address("2.2.2.2"), 32, IPv4Address("224.1.1.1"), 32)),
    ("[0]224.1.1.1/32-0.0.0.0/0",
     Eid(0, IPv4Address("0.0.0.0"), 0, IPv4Address("224.1.1.1"), 32)),
    ("224.1.2.3/4-10.9.9.9/8", Eid(0, IPv4Address("10.0.0.0"), 8, IPv4Address("224.0.0.0"), 4)),
    ("[9]FF0E::1-::/0", Eid(9, IPv6Address("::"), 0, IPv6Address("ff0e::1"), 128)),
])
def test_parse_eidspec_good(text, want):
    assert parse_eidspec(text) == want


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("   ", "empty"),
    ("1.2.3.4/33", "mask length 33 beyond IPv4's 32 bits"),
    ("fd::/129", "mask length 129 beyond IPv6's 128 bits"),
    ("0a0b-0c0d-0e0f/49", "mask length 49 beyond MAC's 48 bits"),
    ("1.2.3.4/", "bad mask length"),
    ("1.2.3.4/-1", "bad mask length"),
    ("1.2.3.4/1e1", "bad mask length"),
    ("[x]1.2.3.4", "bad instance ID"),
    ("[-1]1.2.3.4", "bad instance ID"),
    ("[4294967296]1.2.3.4", "bad instance ID"),
    ("[]1.2.3.4", "bad instance ID"),
    ("[1 1.2.3.4", "whitespace"),
    ("[1.2.3.4", "bad instance ID"),
    ("[7]", "no address"),
    ("foo", "not an address: 'foo'"),
    ("1.2.3", "not an address"),
    ("01.2.3.4", "not an address"),
    ("1.2.3.4.5", "not an address"),
    ("fe80::1%eth0", "scope"),
    ("1:2:3:4:5:6:7:8:9", "not an address"),
    ("10.0.0.1-2.2.2.2", "not inside the multicast range 224.0.0.0/4"),
    ("224.0.0.0/3-2.2.2.2", "not inside the multicast range"),
    ("fe00::1-::/0", "not inside the multicast range ff00::/8"),
    ("224.1.1.1-::/0", "not both IPv4 or both IPv6"),
    ("224.1.1.1-2.2.2.2-3.3.3.3", "more than one '-'"),
    ("224.1.1.1-", "missing source"),
    ("-2.2.2.2", "missing group"),
    ("1.2.3.4 /24", "whitespace"),
])
def test_parse_eidspec_bad(text, fragment):
    with pytest.raises(EidSpecError) as info:
        parse_eidspec(text)
    msg = str(info.value)
    assert fragment in msg
    assert "\n" not in msg
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------
# round trip

iids = st.one_of(st.integers(0, 5), st.integers(0, 0xFFFFFFFF))


@st.composite
def unicast_eids(draw):
    kind = draw(st.sampled_from(["v4", "v6", "mac"]))
    if kind == "v4":
        addr, bits = IPv4Address(draw(st.integers(0, 2**32 - 1))), 32
    elif kind == "v6":
        addr, bits = draw(ipv6_addresses), 128
    else:
        addr, bits = Mac(draw(st.binary(min_size=6, max_size=6))), 48
    length = draw(st.integers(0, bits))
    return Eid(draw(iids), clear_host_bits(addr, length), length)


@st.composite
def multicast_eids(draw):
    if draw(st.booleans()):
        group = IPv4Address((224 << 24) | draw(st.integers(0, 2**28 - 1)))
        glen = draw(st.integers(4, 32))
        source, bits = IPv4Address(draw(st.integers(0, 2**32 - 1))), 32
    else:
        group = IPv6Address((0xFF << 120) | draw(st.integers(0, 2**120 - 1)))
        glen = draw(st.integers(8, 128))
        source, bits = draw(ipv6_addresses), 128
    slen = draw(st.one_of(st.just(0), st.just(bits), st.integers(0, bits)))
    return Eid(draw(iids), clear_host_bits(source, slen), slen, clear_host_bits(group, glen), glen)


@settings(max_examples=300)
@given(st.one_of(unicast_eids(), multicast_eids()))
def test_parse_format_round_trip(eid):
    text = format_eid(eid)
    assert parse_eidspec(text) == eid
    assert format_eid(parse_eidspec(text)) == text


@settings(max_examples=200)
@given(unicast_eids())
def test_parse_clears_host_bits(eid):
    # write the prefix with all host bits set: parsing must clear them again
    bits = {IPv4Address: 32, IPv6Address: 128, Mac: 48}[type(eid.address)]
    host = (1 << (bits - eid.length)) - 1
    if isinstance(eid.address, Mac):
        v = int.from_bytes(eid.address.value, "big") | host
        text = f"[{eid.iid}]{format_address(Mac(v.to_bytes(6, 'big')))}/{eid.length}"
    else:
        text = f"[{eid.iid}]{type(eid.address)(int(eid.address) | host)}/{eid.length}"
    assert parse_eidspec(text) == eid
