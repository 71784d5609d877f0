"""`decent show registrations` at scale (roles/ms_show.py): the shard lists at most
``limit`` registrations, optionally inside an EID-prefix or of one site, read lazily
from its table, so the work per query is bounded by what it shows.

- ``iter_within`` yields exactly the entries inside the prefix (of the site), in
  (instance ID, family, network, length) order, for both table kinds;
- a query for 10 of 50,000 registrations builds at most 11 entries;
- ``answer`` reports ``more`` and ``total`` exactly, and refuses bad filters."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.machines.compact import CompactTable
from common.machines.mapserver import MapServer
from common.machines.regtable import entry_key
from common.machines.shardtable import ShardTable
from common.machines.sites import SitePolicy
from common.wire.addr import Eid
from roles import ms_show
from tests.unit.test_compact_fill import item, pairs
from tests.unit.test_compact_table import prefix, value

SET_ERRORS = (KeyError, TypeError, ValueError, AttributeError)

queries = st.one_of(
    st.none(),
    st.builds(lambda b, n: prefix(4, 0x0A000000 | b, n), st.integers(0, (1 << 24) - 1), st.sampled_from([8, 12, 16, 24])),
    st.builds(lambda b, n: prefix(6, (0x20010DB8 << 96) | b, n), st.integers(0, (1 << 96) - 1),
              st.sampled_from([32, 48, 64])),
    st.just(prefix(4, 0, 0)), st.just(prefix(4, 0x0A000000, 8, iid=7)))


def order(e) -> tuple:
    return (int(e.eid.is_multicast), e.eid.iid, e.eid.address.version, int(e.eid.address), e.eid.length)


def fill(kind, spec):
    t = kind()
    for j in range(12):       # one registrant's registrations: one shared item
        eid = prefix(4, 0x0AC80000 | j << 8, 24)
        t.set(entry_key(eid, b"\x05" * 16), value(eid, b"\x05" * 16, 3))
    for i, (k, v) in enumerate(pairs(spec)):
        try:
            t.set(k, dict(v, site=f"site-{i % 3}"))
        except SET_ERRORS:
            pass
    return t


@settings(max_examples=150, deadline=None)
@given(st.lists(item, max_size=60), queries, st.sampled_from([None, "site-0", "s0", "nowhere"]),
       st.sampled_from([CompactTable, ShardTable]))
def test_iter_within_yields_the_entries_inside_the_prefix_of_the_site_in_order(spec, pfx, site, kind):
    t = fill(kind, spec)
    got = list(t.iter_within(pfx, site))
    want = [e for e in t.entries() if (pfx is None or pfx.contains(e.eid)) and site in (None, e.site)]
    assert sorted((e.key for e in got)) == sorted(e.key for e in want)
    assert len(got) == len(want)
    unicast = [order(e) for e in got if not e.eid.is_multicast]
    assert unicast == sorted(unicast)
    assert all(not e.eid.is_multicast for e in got[:len(unicast)])   # (S,G) last


def ms_with(n: int) -> MapServer:
    ms = MapServer([SitePolicy("a", (), ((prefix(4, 0x0A000000, 8), True),)),
                    SitePolicy("b", (), ((prefix(4, 0x0B000000, 8), True),))], lifetime=180.0)
    for i in range(n):
        site = "a" if i % 5 else "b"
        eid = Eid(0, IPv4Address((10 if site == "a" else 11) << 24 | i << 4), 28)
        ms.table.set(entry_key(eid, b""), dict(value(eid, b"", i), site=site))
    return ms


def test_a_query_for_ten_of_fifty_thousand_builds_at_most_eleven_entries():
    ms = ms_with(50_000)
    built = []
    real = ms.table._entries
    ms.table._entries = lambda *a: built.append(1) or real(*a)
    out = ms_show.answer(ms, {"what": "registrations", "limit": 10}, 0, 0.0)
    assert len(out["registrations"]) == 10 and out["more"] is True and out["total"] == 50_000
    assert len(built) <= 11
    built.clear()
    out = ms_show.answer(ms, {"what": "registrations", "limit": 10, "site": "b"}, 0, 0.0)
    assert [r["site"] for r in out["registrations"]] == ["b"] * 10 and out["total"] == 10_000
    assert len(built) <= 11
    built.clear()
    out = ms_show.answer(ms, {"what": "sites"}, 0, 0.0)
    assert out["registrations"] == [] and not built
    assert {s["name"]: s["registrations"] for s in out["sites"]} == {"a": 40_000, "b": 10_000}


def test_answer_counts_what_is_left_and_filters_by_prefix():
    ms = ms_with(300)
    every = ms_show.answer(ms, {"what": "registrations", "limit": 300}, 0, 0.0)
    assert len(every["registrations"]) == 300 and every["more"] is False and every["total"] == 300
    # 10.0.0.0/20 holds i << 4 for i < 256 of site a (i % 5 != 0)
    inside = ms_show.answer(ms, {"what": "registrations", "eid": "10.0.0.0/20", "limit": 1000}, 0, 0.0)
    want = sorted(f"[0]10.0.{i >> 4}.{(i & 15) << 4}/28" for i in range(256) if i % 5)
    assert sorted(r["eid"] for r in inside["registrations"]) == want
    assert inside["more"] is False and inside["total"] is None      # unknown without a scan
    cut = ms_show.answer(ms, {"what": "registrations", "eid": "10.0.0.0/20", "limit": len(want) - 1}, 0, 0.0)
    assert cut["more"] is True and len(cut["registrations"]) == len(want) - 1
    exact = ms_show.answer(ms, {"what": "registrations", "eid": "10.0.0.16/28"}, 0, 0.0)
    assert [r["eid"] for r in exact["registrations"]] == ["[0]10.0.0.16/28"]
    assert ms_show.answer(ms, {"what": "registrations", "eid": "[7]10.0.0.0/8"}, 0, 0.0)["registrations"] == []


@pytest.mark.parametrize("body, reason", [
    ({"eid": "10.0.0.300/8"}, "eid:"), ({"eid": 5}, "eid: not a string"), ({"site": ["a"]}, "site:"),
    ({"limit": 0}, "limit:"), ({"limit": ms_show.LIMIT_MAX + 1}, "limit:"), ({"limit": "9"}, "limit:"),
    ({"limit": True}, "limit:")])
def test_a_bad_filter_is_answered_with_its_reason(body, reason):
    out = ms_show.answer(ms_with(3), dict(body, what="registrations"), 2, 0.0)
    assert out["shard"] == 2 and out["error"].startswith(reason) and "registrations" not in out


@pytest.mark.parametrize("kind", [CompactTable, ShardTable])
def test_a_shorter_prefix_at_the_same_network_is_not_inside(kind):
    t = kind()
    for n in (8, 16, 24):
        eid = prefix(4, 0x0A000000, n)
        t.set(entry_key(eid, b""), value(eid, b"", n))
    assert [e.eid.length for e in t.iter_within(prefix(4, 0x0A000000, 16))] == [16, 24]
    assert [e.eid.length for e in t.iter_within(None)] == [8, 16, 24]
