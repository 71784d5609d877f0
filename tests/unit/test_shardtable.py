"""The shard's compact table (common/machines/shardtable.py): a reload from the
store's encoded values gives the table the published values give, malformed rows
are skipped and counted, entries come back as they were put (unused locator flags
included), and a content token holds while the same content is stored under its
key - whatever object put it there."""

from __future__ import annotations

import random
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

import msgpack
from hypothesis import given, settings, strategies as st

from common.machines.regtable import Entry, RegistrationTable, entry_from_value, entry_key, entry_value
from common.machines.shardtable import ShardTable
from common.wire.addr import Eid
from common.wire.eidtext import parse_eidspec
from common.wire.records import Locator

LOCS = [Locator(IPv4Address("192.0.2.1"), 1, 100, 255, 0),
        Locator(IPv4Address("192.0.2.2"), 2, 50, 255, 0, reachable=False),
        Locator(IPv6Address("2001:db8::1"), 1, 100, 255, 0)]


def entry(text: str, n: int, xtr: bytes = b"", key: str | None = None, locs=None) -> Entry:
    eid = parse_eidspec(text)
    return Entry(key or entry_key(eid, xtr), eid, f"s{n % 3}", tuple(locs or LOCS[:1 + n % 3]), 10 + n % 2,
                 bool(n % 2), bool(xtr), xtr, f"127.0.0.{1 + n % 2}")


def rows_of(entries) -> list:
    return [(e.key, e.value) for e in entries]


def _random_entries(seed: int, n: int) -> list:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        if rnd.random() < 0.7:
            text = f"[{rnd.choice((0, 0, 7))}]10.{rnd.randrange(256)}.{rnd.randrange(256)}.0/24"
        else:
            text = f"[0]2001:db8:{rnd.randrange(65536):x}::/48"
        xtr = rnd.choice((b"", bytes(range(16)), bytes(range(1, 17))))
        out.append(entry(text, rnd.randrange(12), xtr))
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 200))
def test_load_of_encoded_values_equals_the_reference_restore(seed, n):
    ents = _random_entries(seed, n)
    ref = RegistrationTable()
    for k, v in rows_of(ents):
        ref.put(entry_from_value(k, v))
    enc, dec = ShardTable(), ShardTable()
    # malformed rows among them (each takes the general path, which may touch the
    # trees, the index and the interning the bulk path keeps at hand)
    rows = [(k, msgpack.packb(v)) for k, v in rows_of(ents)]
    rnd = random.Random(seed)
    bad = []
    for i in range(n // 20):
        k = f"bad{i}"
        bad.append(k)
        rows.insert(rnd.randrange(len(rows) + 1), (k, msgpack.packb(dict(ents[0].value, eid="[0]10.0.0.0/99"))))
    assert sorted(enc.load(rows)) == sorted(bad)
    assert dec.load(rows_of(ents)) == []
    want = sorted((e.key, e) for e in ref.entries())
    for t in (enc, dec):
        assert len(t) == len(ref)
        assert sorted((e.key, e) for e in t.entries()) == want
        for e in ents:
            assert t.get(e.key) == ref.get(e.key)
            host = Eid(e.eid.iid, e.eid.address, 32 if isinstance(e.eid.address, IPv4Address) else 128)
            assert t.lookup(host) == ref.lookup(host)


def test_load_skips_what_is_not_a_registration():
    good = entry("[0]10.1.0.0/16", 1)
    v = good.value
    rows = [("bad-eid", msgpack.packb(dict(v, eid="[0]10.1.0.0/99"))),
            ("bad-rloc", msgpack.packb(dict(v, eid="[0]10.2.0.0/16", rlocs=[["not-an-ip", 1, 1, 1, 1, 1]]))),
            ("not-a-map", msgpack.packb([1, 2, 3])),
            ("garbage", b"\xc1\xc1"),
            (good.key, msgpack.packb(v))]
    t = ShardTable()
    assert t.load(rows) == ["bad-eid", "bad-rloc", "not-a-map", "garbage"]
    assert len(t) == 1 and t.get(good.key) == entry_from_value(good.key, v)


def test_load_takes_multicast_and_keys_of_their_own():
    sg = entry_from_value("sg|", entry_value(parse_eidspec("[0]224.1.1.1/32-10.0.0.0/8"), "s0", LOCS[:1],
                                             ttl=10, proxy=False, merge=False, xtr_id=b"", registrant="x"))
    odd = entry("[0]10.3.0.0/16", 2, key="legacy-key")
    t = ShardTable()
    assert t.load([(sg.key, msgpack.packb(sg.value)), (odd.key, msgpack.packb(odd.value))]) == []
    assert t.get("sg|") == sg and t.get("legacy-key") == entry_from_value("legacy-key", odd.value)


def test_entries_come_back_as_put_unused_flags_included():
    e = entry("[0]10.4.0.0/16", 0, locs=(replace(LOCS[0], unused_flags=5), LOCS[1]))
    t = ShardTable()
    t.put(e)
    assert t.get(e.key) == e and t.get(e.key).locators[0].unused_flags == 5
    assert t.exact(e.eid) == [e]


def test_a_token_holds_while_the_same_content_is_stored():
    a = entry("[0]10.5.0.0/16", 1, bytes(range(16)))
    b = entry("[0]10.5.0.0/16", 2, bytes(range(1, 17)))    # another registrant at the prefix
    t = ShardTable()
    t.put(a)
    t.put(b)
    tok = t.token(a.key)
    assert tok is not None and t.holds(tok)
    t.put(replace(b, ttl=99))                 # the other registrant changes: a unchanged
    assert t.holds(tok)
    t.put(replace(a, ttl=99))                 # a changes
    assert not t.holds(tok)
    t.put(replace(a))                         # equal content again (another object)
    assert t.holds(tok)
    t.delete(a.key)
    assert not t.holds(tok) and t.token(a.key) is None
    t.put(replace(a, registrant="127.0.0.9"))  # same prefix and key, another registrant
    assert not t.holds(tok)


def test_the_token_of_the_last_put_is_the_one_read_from_the_table():
    """ShardTable.token answers the key just put from what put stored (issue 10); the
    same handle as read back from the tree, and None once the key is deleted."""
    a = entry("[0]10.6.0.0/16", 1, bytes(range(16)))
    b = entry("[0]10.6.0.0/16", 2, bytes(range(1, 17)))
    t = ShardTable()
    for e in (a, b, replace(a, ttl=7), entry("[0]10.7.0.0/24", 3, b"")):
        t.put(e)
        fresh = t.token(e.key)
        t._last_put = None                    # read from the tree instead
        assert fresh == t.token(e.key) and t.holds(fresh)
    t.put(a)
    t.delete(a.key)
    assert t.token(a.key) is None and t.token(b.key) is not None


def _v6_text(hextets, length, spelling, iid):
    v = 0
    for h in hextets:
        v = v << 16 | h
    a = IPv6Address(v)
    text = {"canonical": str(a), "exploded": a.exploded, "upper": str(a).upper(),
            "zero-kept": str(a).replace("::", ":0::", 1)}[spelling]
    return f"[{iid}]{text}/{length}"


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([0, 0, 0, 1, 0xABC, 0xFFFF, 0x1234]), min_size=8, max_size=8),
       st.integers(0, 128), st.sampled_from(["canonical", "canonical", "exploded", "upper", "zero-kept"]),
       st.sampled_from([0, 1000, (1 << 24) - 1, 1 << 24, -1]))
def test_the_ipv6_text_reader_agrees_with_eidfast(hextets, length, spelling, iid):
    """_parse_v6 answers as eidfast does for the texts it takes, and takes every
    canonical text without host bits (the others fall back to eidfast)."""
    from common.machines.eidfast import _fast_text
    from common.machines.compactload import _parse_v6
    text = _v6_text(hextets, length, spelling, iid)
    got, want = _parse_v6(text), _fast_text(text)
    assert got is None or got == want, text
    if spelling == "canonical" and "." not in text:
        assert got == want, text


@settings(max_examples=400, deadline=None)
@given(st.integers(0, (1 << 32) - 1), st.integers(0, 32), st.sampled_from([0, 7, 99999999, (1 << 24) - 1, 1 << 24]),
       st.sampled_from(["canonical", "canonical", "leading-zero", "masked", "wide"]))
def test_the_ipv4_text_reader_agrees_with_eidfast(net, length, iid, spelling):
    from common.machines.eidfast import _fast_text
    from common.machines.compactload import _parse_v4
    if spelling == "masked":
        net = net >> (32 - length) << (32 - length) if length else 0
    addr = str(IPv4Address(net))
    if spelling == "leading-zero":
        addr = "0" + addr
    text = f"[{iid}]{addr}/{'0' if spelling == 'wide' else ''}{length}"
    got, want = _parse_v4(text), _fast_text(text)
    assert got is None or got == want, text
    if spelling in ("canonical", "masked"):
        assert got == want, text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, (1 << 32) - 1), st.integers(0, 32), st.sampled_from([0, 7, 1 << 24]),
                          st.sampled_from(["canonical", "masked", "masked", "leading-zero", "wide"])),
                min_size=1, max_size=30))
def test_the_cached_ipv4_reader_answers_as_the_plain_one(texts):
    """Texts read one after another with the head and tail caches shared, as a
    reload reads them: the same answer as _parse_v4 each time."""
    from common.machines.compactload import _parse_v4, _parse_v4_cached
    heads, tails = {}, {}
    for net, length, iid, spelling in texts + texts:
        if spelling == "masked":
            net = net >> (32 - length) << (32 - length) if length else 0
        addr = str(IPv4Address(net))
        if spelling == "leading-zero":
            addr = "0" + addr
        text = f"[{iid}]{addr}/{'0' if spelling == 'wide' else ''}{length}"
        assert _parse_v4_cached(text, heads, tails) == _parse_v4(text), text
