"""PullView with RFC 9962 section 5.2 lookup ranges: one index function for
registrations and lookups, and negative-reply floors that never cover EIDs
hashing elsewhere."""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from common.decent.hash import LookupRange
from common.decent.pull import PullView
from common.wire.addr import Eid, clear_host_bits
from common.wire.eidtext import parse_eidspec


def sha_index(s: str, m: int) -> int:
    return int.from_bytes(hashlib.sha256(s.encode("ascii")).digest(), "big") % m


def ranges(*pairs):
    return tuple(LookupRange(parse_eidspec(p), n) for p, n in pairs)


RFC = ranges(("[0]240.11.0.0/16", 24), ("[0]240.12.0.0/16", 30), ("[0]240.13.0.0/16", 25))


def test_draft_is_rfc9962_and_lookups_use_the_ranges():
    v = PullView(16, "draft", None, ["127.0.0.1"], RFC)
    assert v.hash_mode == "rfc9962"
    for host, string in (("240.11.1.1", "[0]240.11.1.0/24"), ("240.12.2.5", "[0]240.12.2.4/30"),
                         ("240.13.3.7", "[0]240.13.3.0/25"), ("240.14.1.1", "[0]240.14.1.1/32")):
        assert v.index(parse_eidspec(host)) == sha_index(string, 16)
    # the /24 registration and every host inside it: one index, one serving set
    reg = v.index(parse_eidspec("240.11.1.0/24"))
    v.update({reg: ("127.0.0.1",)})
    assert v.serves(parse_eidspec("240.11.1.0/24"))
    assert all(v.serves(parse_eidspec(f"240.11.1.{h}")) for h in (0, 1, 77, 255))


def test_negative_floor_is_the_lookup_length_inside_a_range():
    v = PullView(4, "rfc9962", None, ["127.0.0.1"], RFC)
    assert v.negative_floor(parse_eidspec("240.11.9.9")) == 24
    assert v.negative_floor(parse_eidspec("240.12.9.9")) == 30
    assert v.negative_floor(parse_eidspec("240.14.9.9")) == 32      # in no range: host route
    assert v.negative_floor(parse_eidspec("2001:db8::1")) == 128
    assert PullView(4, "rfc9962", 8, ["127.0.0.1"]).negative_floor(parse_eidspec("10.0.0.1")) == 32
    assert PullView(4, "prefix", 16, ["127.0.0.1"]).negative_floor(parse_eidspec("10.0.0.1")) == 16


def test_negative_floor_steps_over_a_more_specific_range_inside_the_block():
    # 10.0.0.0/8 -> 16, and inside 10.1.0.0/16 a range 10.1.2.0/24 -> 28:
    # a /16 negative for 10.1.9.9 would cover 10.1.2.0/24, whose lookups hash on /28
    v = PullView(4, "rfc9962", None, ["127.0.0.1"], ranges(("10.0.0.0/8", 16), ("10.1.2.0/24", 28)))
    assert v.negative_floor(parse_eidspec("10.1.9.9")) == 24
    assert v.negative_floor(parse_eidspec("10.9.9.9")) == 16
    assert v.negative_floor(parse_eidspec("10.1.2.9")) == 28


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(4, 28),
                                                      st.integers(0, 4)), min_size=1, max_size=5))
def test_negative_prefix_at_the_floor_hashes_uniformly(value, raw):
    """Every EID inside the floor-length block around an EID hashes like the block's
    own hosts would: it lies in the same most specific range, or in none."""
    rs, seen = [], set()
    for v, plen, extra in raw:
        p = Eid(0, clear_host_bits(IPv4Address(v), plen), plen)
        if p not in seen:
            seen.add(p)
            rs.append(LookupRange(p, min(32, plen + extra)))
    view = PullView(4, "rfc9962", None, ["127.0.0.1"], rs)
    eid = Eid(0, IPv4Address(value), 32)
    floor = view.negative_floor(eid)
    block = Eid(0, clear_host_bits(eid.address, floor), floor)
    from common.decent.hash import _inside, matching_range
    mine = matching_range(eid, rs)
    for r in rs:
        # no range other than the EID's own (and those holding it) starts inside the block
        if r is not mine and _inside(block, r.prefix) and r.prefix.length > floor:
            raise AssertionError((r, floor))
    if mine is None:
        assert floor == 32
    else:
        assert floor >= mine.length
