"""CompactTable.load (values inserted ENCODED, common/machines/compactload.py) makes the
table CompactTable.set makes from the decoded values, row by row: a differential test
over generated registrations (shared and unusual keys, several registrants on one
prefix, multicast, malformed values refused as set refuses them, values laid out
otherwise: fields reordered, a field twice, a key that is not a string, an EID text
longer than 31 bytes, bytes that do not decode).  And the Clone reader's path: a
packed writer's snapshot chunk split without decoding its values (bus/clone_frames.py
``_split_chunk``) and handed to the replica (``snapshot_encoded``) fills the table
the decoded chunk fills."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.clone_frames import _pack, _packed_chunk, _split_chunk, _unpack, freeze
from common.machines.compact import CompactTable
from common.machines.compactload import _parse_v6, _parse_v6_cached
from common.machines.regtable import entry_key
from common.machines.replica import ReplicaReader
from common.machines.shardtable import ShardTable
from tests.unit.test_compact_fill import contents, item, pairs
from tests.unit.test_compact_table import prefix, probes, value

SET_ERRORS = (KeyError, TypeError, ValueError, AttributeError)


def encode(v, how: int) -> bytes:
    """A value's msgpack bytes, laid out as a writer does (0) or otherwise."""
    if how == 1 and isinstance(v, dict):                 # the EID text last
        v = {k: x for k, x in v.items() if k != "eid"} | {"eid": v.get("eid")}
    elif how == 2 and isinstance(v, dict) and len(v) < 15:   # "eid" twice: the last one counts
        fields = list(v.items()) + [("eid", "[0]10.255.0.0/16")]
        return bytes([0x80 | len(fields)]) + b"".join(_pack(k) + _pack(x) for k, x in fields)
    elif how == 3 and isinstance(v, dict):               # a map key that is not a string
        v = dict(v)
        v[7] = "x"
    elif how == 4:
        return b"\xc1"                                   # never valid msgpack
    elif how == 5:
        return _pack(v)[:-1] or b"\x90"                  # truncated
    elif how == 6:
        return _pack([v])                                # not a map
    return _pack(v)


def by_set(rows) -> tuple[CompactTable, set]:
    """The reference: each value decoded as the Clone reader decodes a chunk, then set."""
    t, refused = CompactTable(), set()
    for k, b in rows:
        try:
            t.set(k, msgpack.unpackb(b, strict_map_key=False))
        except (*SET_ERRORS, msgpack.UnpackException):
            refused.add(k)
    return t, refused


hows = st.sampled_from([0] * 12 + [1, 2, 3, 4, 5, 6])


def same(a, b, probes) -> None:
    assert contents(a) == contents(b)
    assert sorted((e.key, e) for e in a.entries()) == sorted((e.key, e) for e in b.entries())
    for p in probes:
        assert a.lookup(p) == b.lookup(p) and a.carve(p) == b.carve(p) and a.best_key(p) == b.best_key(p)


@settings(max_examples=300, deadline=None)
@given(st.lists(item, max_size=60), st.lists(hows, min_size=61, max_size=61), probes, st.sampled_from([1, 3, 1000]))
def test_load_of_encoded_values_makes_the_table_set_makes(spec, how, probes, chunk):
    rows = [(k, encode(v, h)) for (k, v), h in zip(pairs(spec), how)]
    a, refused = by_set(rows)
    b = CompactTable()
    got = [k for i in range(0, len(rows), chunk) for k in b.load(rows[i:i + chunk])]
    assert set(got) == refused and len(got) == len(refused)
    same(a, b, probes)
    # the items a worker stores are the bytes set packs: no flag element, no other layout
    assert sorted(b._intern) == sorted(a._intern)


@settings(max_examples=100, deadline=None)
@given(st.lists(item, max_size=40), st.lists(item, max_size=40), probes)
def test_load_into_a_table_that_holds_keys_already(first, again, probes):
    """Keys stored before (a replaced value, a second registrant on a prefix, an
    unusual key moving): as set replaces them."""
    one, two = pairs(first), pairs(again)
    a, b = CompactTable(), CompactTable()
    for t in (a, b):
        for k, v in one:
            try:
                t.set(k, v)
            except SET_ERRORS:
                pass
    rows = [(k, _pack(v)) for k, v in two]
    refused = set()
    for k, bts in rows:
        try:
            a.set(k, msgpack.unpackb(bts))
        except SET_ERRORS:
            refused.add(k)
    assert set(b.load(rows)) == refused
    same(a, b, probes)


def test_a_watched_table_is_told_of_every_key_as_set_tells_it():
    es = [prefix(4, 0x0A000000 | i << 8, 24) for i in range(5)]
    rows = [(entry_key(e, b""), _pack(value(e, b"", 1))) for e in es]
    seen, want = [], []
    a, b = CompactTable(), CompactTable()
    a.on_change = lambda eid, removed: want.append((eid, removed))
    b.on_change = lambda eid, removed: seen.append((eid, removed))
    for k, v in rows:
        a.set(k, msgpack.unpackb(v))
    assert b.load(rows) == []
    assert seen == want and len([x for x in seen if x[0] is not None]) == 5


def test_the_shard_table_keeps_refusing_what_its_store_reader_refuses():
    """The shard reads its store's values with string map keys only (ShardTable's
    _strict_keys); a worker reads a chunk as the Clone reader decodes it."""
    e = prefix(4, 0x0A010000, 16)
    v = dict(value(e, b"", 1))
    v[7] = "x"
    rows = [(entry_key(e, b""), _pack(v))]
    assert ShardTable().load(rows) == [entry_key(e, b"")]
    assert CompactTable().load(rows) == []


@settings(max_examples=100, deadline=None)
@given(st.lists(item, max_size=60), st.sampled_from([1, 7, 1000]), probes)
def test_a_packed_chunk_split_and_loaded_fills_the_table_the_decoded_chunk_fills(spec, size, probes):
    items = pairs(spec)
    entries = [b"\x92" + _pack(k) + _pack(v) for k, v in items]
    chunks = [_packed_chunk(9, entries[i:i + size]) for i in range(0, len(entries), size)]
    old, new = ReplicaReader(store=CompactTable), ReplicaReader(store=CompactTable)
    for r in (old, new):
        r.start(now=0.0)
    assert new.takes_encoded
    at = 0
    for c in chunks:
        old.snapshot_items(1, ((freeze(k), v) for k, v in _unpack(c)["items"]))
        req, rows = _split_chunk(c)
        assert req == 9 and [b"\x92" + _pack(k) + v for k, v in rows] == entries[at:at + size]
        at += size
        new.snapshot_encoded(1, rows)
    for r in (old, new):
        r.snapshot_end(1, "w", 3, now=0.1)
    assert new.bad_values == old.bad_values
    same(old.data, new.data, probes)


def _v6(groups, length, iid, spelling):
    from ipaddress import IPv6Address
    a = 0
    for g in groups:
        a = a << 16 | g
    addr = IPv6Address(a)
    text = {"canonical": str(addr), "exploded": addr.exploded, "upper": str(addr).upper(),
            "zero-kept": str(addr).replace("::", ":0::", 1)}[spelling]
    return f"[{iid}]{text}/{length}"


v6_texts = st.one_of(
    st.builds(_v6, st.lists(st.sampled_from([0, 0, 0, 0, 1, 0xabc, 0xffff, 0x2001, 0x10]), min_size=8, max_size=8),
              st.sampled_from([0, 16, 48, 56, 64, 127, 128, 129]), st.sampled_from([0, 0, 0, 7, (1 << 24) - 1, 1 << 24]),
              st.sampled_from(["canonical"] * 4 + ["exploded", "upper", "zero-kept"])),
    st.text("0123456789abcdefA:[]/.", min_size=1, max_size=30).map(lambda t: "[0]" + t),
    st.text("0123456789abcdef:/", min_size=1, max_size=30).map(lambda t: "[0]1:" + t),
    st.sampled_from(["[0]::/0", "[0]::1/128", "[0]1::/16", "[0]1:0:0:1::/64", "[0]1::2::3/128", "[0:1]1::/16",
                     "[00]1::/16", "[0]1::/016", "[0]1::/129", "[0]0::/8", "[0]1:0::/32", "[0]1::0:1/128",
                     "[0]1:0:0:2::3/128", "[0]1:0:0:2::/128", "[0]1:2:3:4:5:6:7::/128", "[0]1::ffff:1.2.3.4/128",
                     "[0]2001:db8:1a:2300::/56", "[0]2001:db8:1a:2300::/55", "[1]2001:db8::/32", "[0]a::b:0:0:0/128",
                     "[0]a:0:0::b/128", "[0]::a:0:0:0:0:0/128", "[0]1::/", "[0]1::", "1::/16", "[]1::/16",
                     "[0]0:0:1::a:b:c/128", "[0]1:0:0:2::a:b/128", "[0]1:0:0:2::a:0:0/128", "[0]1:2::a:0:0:b/128"]))


@settings(max_examples=500, deadline=None)
@given(st.lists(v6_texts, min_size=1, max_size=30))
def test_the_cached_ipv6_reader_answers_as_the_plain_one(texts):
    """Texts read one after another with the remembered parts shared, as a load reads
    them: the same answer as _parse_v6 each time."""
    parts = ({}, {}, {})
    for text in texts + texts[::-1]:
        assert _parse_v6_cached(text, parts) == _parse_v6(text), text
