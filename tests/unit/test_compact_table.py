"""The compact replica table (common/machines/compact.py) answers exactly as the
RegistrationTable it replaces: a differential test over generated registrations,
updates and deletions; fill order independence; the union over shards; adopt."""

from __future__ import annotations

import random
import zlib
from ipaddress import IPv4Address, IPv6Address

from hypothesis import given, settings, strategies as st

from common.machines.compact import CompactTable
from common.machines.regtable import RegistrationTable, entry_key, entry_value, negative_prefix
from common.machines.uniontable import UnionTable
from common.machines.resolver import Resolver
from common.machines.regtable import PrefixSet
from common.wire.addr import Eid
from common.wire.records import Locator

LOCS = [Locator(IPv4Address("192.0.2.1"), 1, 100, 255, 0),
        Locator(IPv4Address("192.0.2.2"), 2, 50, 255, 0, reachable=False),
        Locator(IPv6Address("2001:db8::1"), 1, 100, 255, 0)]


def prefix(fam: int, bits: int, length: int, iid: int = 0) -> Eid:
    total = 32 if fam == 4 else 128
    a = (bits >> (total - length)) << (total - length) if length else 0
    return Eid(iid, IPv4Address(a) if fam == 4 else IPv6Address(a), length)


def value(eid: Eid, xtr: bytes, n: int) -> dict:
    return entry_value(eid, f"s{n % 3}", tuple(LOCS[:1 + n % 3]), ttl=10 + n % 2, proxy=bool(n % 2),
                       merge=bool(n % 4 == 1), xtr_id=xtr, registrant="127.0.0.1",
                       rle=[["10.9.9.9", 3]] if n % 5 == 0 else None)


# ops: ("set", eid, xtr, n) / ("del", index of an earlier set)
v4 = st.builds(lambda b, l: prefix(4, 0x0A000000 | b, l), st.integers(0, (1 << 24) - 1),
               st.sampled_from([8, 12, 16, 20, 24, 28, 32]))
v6 = st.builds(lambda b, l: prefix(6, (0x20010DB8 << 96) | b, l), st.integers(0, (1 << 96) - 1),
               st.sampled_from([32, 48, 56, 64, 128]))
set_op = st.tuples(st.just("set"), st.one_of(v4, v6), st.sampled_from([b"", b"\x01" * 16, b"\x02" * 16]),
                   st.integers(0, 9))
ops = st.lists(st.one_of(set_op, st.tuples(st.just("del"), st.integers(0, 200))), min_size=1, max_size=80)
probes = st.lists(st.one_of(st.builds(lambda b: prefix(4, 0x0A000000 | b, 32), st.integers(0, (1 << 24) - 1)),
                            st.builds(lambda b: prefix(4, b, 32), st.integers(0, (1 << 32) - 1)),
                            v4, v6), min_size=1, max_size=30)


def run(ops, tables):
    keys = []
    for op in ops:
        if op[0] == "set":
            _, eid, xtr, n = op
            k = entry_key(eid, xtr)
            keys.append(k)
            for t in tables:
                t.set(k, value(eid, xtr, n))
        elif keys:
            k = keys[op[1] % len(keys)]
            for t in tables:
                t.delete(k)


def canon(m):
    """A match, order of the more-specifics aside (pytricia order vs index order)."""
    if m is None:
        return None
    best = (m.best[0], sorted(m.best[1], key=lambda e: e.key))
    return best, sorted((str(p), sorted(es, key=lambda e: e.key), ) for p, es in m.prefixes[1:])


@settings(max_examples=150, deadline=None)
@given(ops, probes)
def test_same_answers_as_the_registration_table(ops, probes):
    ref, new = RegistrationTable(), CompactTable()
    run(ops, [ref, new])
    assert len(ref) == len(new)
    assert sorted(e.key for e in ref.entries()) == sorted(e.key for e in new.entries())
    for e in ref.entries():
        assert new.get(e.key) == e
        assert new.exact(e.eid) == ref.exact(e.eid)
    for q in probes:
        m_ref, m_new = ref.lookup(q), new.lookup(q)
        assert (m_ref is None) == (m_new is None)
        if m_ref is not None:
            # same best prefix, same entries in the same order; same more-specifics
            assert m_new.best == m_ref.best
            assert [p for p, _ in m_new.prefixes] == [p for p, _ in m_ref.prefixes]
            assert list(m_new.prefixes) == list(m_ref.prefixes)
        assert new.best_key(q) == ref.best_key(q)
        assert negative_prefix(q, [new]) == negative_prefix(q, [ref])
        for length in (0, 8, 16, q.length):
            assert new.overlaps_outside(q, length) == ref.overlaps_outside(q, length)
        if q.length in (32, 128):
            assert new.carve(q) == ref.carve(q)


@settings(max_examples=60, deadline=None)
@given(ops, probes, st.integers(0, 3))
def test_union_of_shards_answers_as_one_table(ops, probes, split):
    one = CompactTable()
    shards = [CompactTable(), CompactTable()]
    keys = []
    for i, op in enumerate(ops):
        if op[0] == "set":
            _, eid, xtr, n = op
            k = entry_key(eid, xtr)
            keys.append(k)
            # a key lives in one shard (as a site does)
            for t in (one, shards[zlib.crc32(k.encode()) % 2 if split else 0]):
                t.set(k, value(eid, xtr, n))
        elif keys:
            k = keys[op[1] % len(keys)]
            for t in (one, *shards):
                t.delete(k)
    u = UnionTable(shards)
    assert len(u) == len(one)
    for q in probes:
        assert canon(u.lookup(q)) == canon(one.lookup(q))
        assert u.best_key(q) == one.best_key(q)
        assert negative_prefix(q, [u]) == negative_prefix(q, [one])
        if q.length == 32 and u.carve(q) is not None:
            b, es, c = u.carve(q)
            b1, es1, c1 = one.carve(q)
            assert (b, sorted(es, key=lambda e: e.key), c) == (b1, sorted(es1, key=lambda e: e.key), c1)


def test_fill_order_does_not_matter():
    rng = random.Random(5)
    regs = [(prefix(4, rng.getrandbits(32), rng.choice((16, 20, 24, 28, 32))), i) for i in range(4000)]
    regs += [(prefix(6, rng.getrandbits(128), rng.choice((32, 48, 64))), i) for i in range(500)]
    a, b = CompactTable(), CompactTable()
    for eid, n in regs:
        a.set(entry_key(eid, b""), value(eid, b"", n))
    for eid, n in sorted(regs, key=lambda r: (r[0].address.version, int(r[0].address)), reverse=True):
        b.set(entry_key(eid, b""), value(eid, b"", n))
    a.finalize()
    b.finalize()
    assert {tk: list(k) for tk, k in a._index.items()} == {tk: list(k) for tk, k in b._index.items()}
    assert all(list(k) == sorted(set(k)) for k in a._index.values())
    for _ in range(300):
        q = prefix(4, rng.getrandbits(32), 32)
        assert negative_prefix(q, [a]) == negative_prefix(q, [b])
        assert a.best_key(q) == b.best_key(q)


def test_registrations_of_one_registrant_share_one_item_and_deletes_release_it():
    t = CompactTable()
    eids = [prefix(4, 0x0A000000 | (i << 8), 24) for i in range(100)]
    for i, e in enumerate(eids):
        t.set(entry_key(e, b""), value(e, b"", 2))
    assert len(t._intern) == 1 and next(iter(t._intern.values()))[1] == 100
    for e in eids:
        t.delete(entry_key(e, b""))
    assert len(t) == 0 and not t._intern


def test_adopt_swaps_contents_and_bumps_the_version():
    live, fresh = CompactTable(), CompactTable()
    a, b = prefix(4, 0x0A010000, 16), prefix(4, 0x0A020000, 16)
    live.set(entry_key(a, b""), value(a, b"", 1))
    fresh.set(entry_key(b, b""), value(b, b"", 1))
    v = live.version
    live.adopt(fresh)
    assert live.version > v
    assert live.lookup(prefix(4, 0x0A010203, 32)) is None
    assert live.lookup(prefix(4, 0x0A020203, 32)).best[0] == b


def test_unusual_keys_and_multicast_are_kept():
    t, ref = CompactTable(), RegistrationTable()
    e = prefix(4, 0x0A010000, 16)
    for tab in (t, ref):
        tab.set("odd-key", value(e, b"", 1))
        tab.set("[0]10.1.0.0/16|", value(e, b"", 3))
    assert t.get("odd-key") == ref.get("odd-key")
    assert list(t.lookup(prefix(4, 0x0A010101, 32)).prefixes) == list(ref.lookup(prefix(4, 0x0A010101, 32)).prefixes)
    t.delete("odd-key")
    assert t.get("odd-key") is None and len(t) == 1


def test_a_malformed_value_raises_and_changes_nothing():
    t = CompactTable()
    e = prefix(4, 0x0A010000, 16)
    t.set(entry_key(e, b""), value(e, b"", 1))
    bad = value(e, b"", 1)
    bad["rlocs"] = [["not-an-address", 1, 1, 1, 1, 1]]
    try:
        t.set(entry_key(e, b""), bad)
    except ValueError:
        pass
    else:
        raise AssertionError("accepted a malformed value")
    assert t.get(entry_key(e, b"")).locators == tuple(LOCS[:2])


def test_resolver_replies_are_byte_identical_over_either_table():
    rng = random.Random(9)
    ref, new = RegistrationTable(), CompactTable()
    for i in range(300):
        eid = prefix(4, 0x0A000000 | rng.getrandbits(24), rng.choice((16, 24, 28)))
        for t in (ref, new):
            t.set(entry_key(eid, b""), value(eid, b"", i | 1))   # proxy
    from tests.unit.msfixtures import ecm_request
    conf = PrefixSet([prefix(4, 0x0A000000, 8)])
    ra, rb = Resolver(ref, conf), Resolver(new, conf)
    ra.in_sync = rb.in_sync = True
    ra.limiter.allow = rb.limiter.allow = lambda *a: True
    for _ in range(300):
        host = str(IPv4Address(0x0A000000 | rng.getrandbits(24)))
        req = ecm_request(host, itr="127.0.0.1", sport=5000)
        assert ra.handle(req, ("127.0.0.1", 5000), "127.0.0.2", 0.0) == \
            rb.handle(req, ("127.0.0.1", 5000), "127.0.0.2", 0.0)


def test_every_version_step_is_reported_once_with_the_changed_prefix():
    """The on_change hook contract the fast path's cache relies on (as RegistrationTable)."""
    t = CompactTable()
    seen = []
    t.on_change = lambda eid, removed: seen.append((t.version, eid, removed))
    a, b = prefix(4, 0x0A010000, 16), prefix(6, 0x20010DB8 << 96, 32)
    t.set(entry_key(a, b""), value(a, b"", 1))
    t.set(entry_key(b, b""), value(b, b"", 1))
    t.set(entry_key(a, b""), value(a, b"", 3))       # a replacement: removed, then added
    t.delete(entry_key(a, b""))
    t.delete("[0]10.9.0.0/16|")                      # absent
    versions = [v for v, _, _ in seen]
    assert versions == list(range(versions[0], versions[0] + len(seen))) and versions[-1] == t.version
    assert [(e, r) for _, e, r in seen if e is not None] == \
        [(a, False), (b, False), (a, True), (a, False), (a, True)]
    fresh = CompactTable()
    v = t.version
    t.adopt(fresh)
    assert t.on_change is not None and t.version > v


texts = st.one_of(
    st.builds(lambda i, e: f"[{i}]{e.address}/{e.length}", st.integers(0, (1 << 24) - 1), st.one_of(v4, v6)),
    st.builds(lambda a, n: f"[0]{IPv4Address(a)}/{n}", st.integers(0, (1 << 32) - 1), st.integers(0, 40)),
    st.sampled_from(["[0]010.1.2.0/24", "10.1.2.0/24", "[00]10.1.2.0/24", "[0]10.1.2.0/024", "[0]2001:DB8::/32",
                     "[0]2001:db8:0::/48", "[0]10.1.2.0", "[16777216]10.0.0.0/8", "[0]256.1.1.1/32",
                     "[0]10.1.2.3/24", "[0]10.1.2.0/33", "[0]2001:db8::/129", "[0]1:2:3:4:5:6:7:8/128"]),
    st.text(max_size=20))


@settings(max_examples=400, deadline=None)
@given(texts)
def test_the_fast_eid_reader_agrees_with_parse_eidspec(text):
    from common.machines.eidfast import parse_eid
    from common.wire.eidtext import parse_eidspec
    try:
        want = parse_eidspec(text)
    except ValueError:
        want = None
    try:
        got = parse_eid(text)
    except ValueError:
        got = None
    assert got == want
