"""CompactTable.fill (a snapshot's chunk at once, common/machines/compactfill.py) makes the
same table as CompactTable.set on each item: a differential test over generated
registrations (shared and unusual keys, several registrants on one prefix, multicast,
malformed values, values that are equal but not byte-equal); the replica's snapshot
path uses it (common/machines/replica.py)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import given, settings, strategies as st

from common.machines.compact import CompactTable
from common.machines.compactfill import _v4_text, _v6_text
from common.machines.eidfast import parse_text
from common.machines.regtable import entry_key
from common.machines.replica import ReplicaReader
from tests.unit.test_compact_table import prefix, probes, texts, v4, v6, value


def contents(t: CompactTable):
    """Everything a table holds, as comparable data."""
    trees = {tk: sorted((p, tr[p]) for p in tr) for tk, tr in t._trees.items() if len(tr)}
    index = {tk: list(t._sorted(tk)) for tk in t._trees if len(t._trees[tk])}
    return (trees, index, sorted((k, v[1]) for k, v in t._intern.items()), dict(t._keyed), len(t),
            sorted(e.key for e in t._m.entries()))


def odd(v: dict, kind: int) -> dict:
    v = dict(v)
    if kind == 1:
        v["rlocs"] = [[a, True if p == 1 else p, *rest] for a, p, *rest in v["rlocs"]]   # True, not 1
    elif kind == 2:
        v["rlocs"] = [["not-an-address", 1, 1, 1, 1, 1]]                                 # malformed
    elif kind == 3:
        v["ttl"] = float(v["ttl"])
    elif kind == 4:
        v["eid"] = v["eid"].replace("[0]", "[00]")                                        # not canonical
    elif kind == 5:
        del v["site"]
    elif kind == 6:
        v["ttl"] += 100                                                                   # one field apart
    elif kind == 7:
        v["proxy"], v["merge"] = not v["proxy"], 1
    return v


item = st.tuples(st.one_of(v4, v6), st.sampled_from([b"", b"\x01" * 16, b"\x02" * 16]), st.integers(0, 9),
                 st.sampled_from([0] * 6 + [1, 2, 3, 4, 5, 6, 7]), st.booleans())


def pairs(spec):
    out, seen = [], set()
    for eid, xtr, n, kind, unusual in spec:
        v = odd(value(eid, xtr, n), kind)
        # the Map-Server's keys (the xTR-ID only when merging), or always with the xTR-ID
        k = (f"key-{eid}-{xtr.hex()}" if unusual else
             entry_key(eid, xtr if n % 2 or v.get("merge") else b""))
        if k not in seen:         # a snapshot's keys are distinct
            seen.add(k)
            out.append((k, v))
    out.append(("[0](10.1.1.1,239.1.1.1)/64|", {"eid": "[0](10.1.1.1/32,239.1.1.1/32)", "site": "s", "rlocs": [],
                                                 "ttl": 1, "xtr": "", "registrant": "r"}))
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(item, max_size=60), probes, st.sampled_from([1, 3, 1000]))
def test_fill_makes_the_table_set_makes(spec, probes, chunk):
    items = pairs(spec)
    a, b = CompactTable(), CompactTable()
    refused = 0
    for k, v in items:
        try:
            a.set(k, v)
        except (KeyError, TypeError, ValueError, AttributeError):
            refused += 1
    got = sum(b.fill(items[i:i + chunk]) for i in range(0, len(items), chunk))
    assert got == refused
    assert contents(a) == contents(b)
    for p in probes:
        assert a.lookup(p) == b.lookup(p) and a.carve(p) == b.carve(p)
    assert b.version > 0


def test_values_one_field_apart_get_their_own_items():
    base = [prefix(4, 0x0A000000 | i << 8, 24) for i in range(8)]
    items = [(entry_key(e, b""), odd(value(e, b"", 2), kind)) for e, kind in zip(base, (0, 6, 7, 1, 0, 6, 7, 1))]
    a, b = CompactTable(), CompactTable()
    for k, v in items:
        a.set(k, v)
    assert b.fill(items) == 0
    assert contents(a) == contents(b) and len(b._intern) == 4


def test_fill_into_a_table_that_holds_keys_already():
    a, b = CompactTable(), CompactTable()
    e1, e2, e3 = (prefix(4, 0x0A000000 | i << 16, 16) for i in (1, 2, 3))
    for t in (a, b):
        t.set("odd", value(e1, b"", 1))
        t.set(entry_key(e2, b""), value(e2, b"", 1))
    again = [("odd", value(e3, b"", 2)), (entry_key(e2, b""), value(e2, b"", 3)),
             (entry_key(e1, b"\x01" * 16), value(e1, b"\x01" * 16, 4))]
    for k, v in again:
        a.set(k, v)
    assert b.fill(again) == 0
    assert contents(a) == contents(b)


def test_a_filled_table_keeps_working_as_a_table():
    t = CompactTable()
    e = prefix(4, 0x0A010000, 16)
    assert t.fill([(entry_key(e, b""), value(e, b"", 1))]) == 0
    t.set(entry_key(e, b"\x01" * 16), value(e, b"\x01" * 16, 2))        # a second registrant
    t.delete(entry_key(e, b""))
    assert [x.key for x in t.exact(e)] == [entry_key(e, b"\x01" * 16)]
    seen, want = [], []
    t.on_change = lambda eid, removed: seen.append((eid, removed))
    twin = CompactTable()
    twin.on_change = lambda eid, removed: want.append((eid, removed))
    e2 = prefix(4, 0x0A020000, 16)
    t.fill([(entry_key(e2, b""), value(e2, b"", 1))])                   # a watched table: per key
    twin.set(entry_key(e2, b""), value(e2, b"", 1))
    assert seen == want and (e2, False) in seen


@settings(max_examples=300, deadline=None)
@given(st.one_of(texts, st.builds(lambda a, n: f"[0]{IPv4Address(a)}/{n}", st.integers(0, (1 << 32) - 1),
                                  st.integers(0, 32)),
                 st.sampled_from(["[0]1.2.3.04/32", "[0]1.2.3.4/032", "[0]01.2.3.4/32", "[0]1.2.3/24",
                                  "[0]1.2.3.4.5/32", "[0]1.2.3.256/32", "[0]1.2.3.4/", "[0]1.2.3.4", "[0]/8",
                                  "[0]1.2.3.+4/32", "[0]1.2.3.٣/32", "[0]1.2.3.0/0", "[0]0.0.0.0/0"])))
def test_the_fill_reader_of_ipv4_text_agrees_with_parse_text(text):
    got = _v4_text(text, {})
    if got is not None:
        assert got == parse_text(text)
    elif text.startswith("[0]") and "." in text and ":" not in text:
        try:
            want = parse_text(text)
        except ValueError:
            want = None
        assert want is None or want[1] != 4 or want[2] + "" != text[3:]   # only non-canonical ones left


def _sparse6(groups, n):
    a = 0
    for g in groups:
        a = a << 16 | g
    return f"[0]{IPv6Address(a)}/{n}"


def _spellings(text):
    """Other spellings of the same address: exploded, uppercase, leading zeros, another ::."""
    body, _, n = text[3:].partition("/")
    full = IPv6Address(body).exploded
    out = [f"[0]{full}/{n}", text.upper().replace("[0]", "[0]"), f"[0]{full.replace(':0000', ':0')}/{n}"]
    g = full.split(":")
    for i in range(7):
        if g[i] == "0000" and g[i + 1] == "0000":
            out.append("[0]" + ":".join(x.lstrip("0") or "0" for x in g[:i]) + "::" +
                       ":".join(x.lstrip("0") or "0" for x in g[i + 2:]) + f"/{n}")
    return out


six = st.builds(_sparse6, st.lists(st.sampled_from([0, 0, 0, 1, 0xdb8, 0xffff, 0x2001, 0xa]), min_size=8,
                                   max_size=8), st.sampled_from([0, 16, 32, 48, 56, 64, 127, 128, 129]))


@settings(max_examples=400, deadline=None)
@given(st.one_of(six, six.flatmap(lambda t: st.sampled_from(_spellings(t))), texts,
                 st.sampled_from(["[0]::/0", "[0]::/128", "[0]::1/128", "[0]1::/16", "[0]1:0:0:1::/64",
                                  "[0]1::1:0:0:1/128", "[0]::ffff:1.2.3.4/128", "[0]::ffff:102:304/128",
                                  "[0]1:2:3:4:5:6:7::/128", "[0]1::2::3/128", "[0]:::/8", "[0]1:2:3:4:5:6:7:8:9/128",
                                  "[0]fe80::1%1/128", "[0]2001:db8::/056", "[0]2001:0db8::/32", "[0]١::/16"])))
def test_the_fill_reader_of_ipv6_text_agrees_with_parse_text(text):
    try:
        want = parse_text(text)
    except ValueError:
        want = None
    got = _v6_text(text)
    if got is not None:
        assert got == want
    elif want is not None and want[1] == 6 and text.startswith("[0]") and want[2] == text[3:]:
        assert "." in text or "%" in text, text    # left to parse_text: a dotted quad, a scope


def test_the_replica_fills_its_snapshot_table_in_chunks():
    r = ReplicaReader(store=CompactTable)
    r.start(now=0.0)
    es = [prefix(4, 0x0A000000 | i << 8, 24) for i in range(50)]
    bad = value(es[0], b"", 1)
    bad["rlocs"] = [["nope", 1, 1, 1, 1, 1]]
    r.snapshot_items(1, ((entry_key(e, b""), value(e, b"", 1)) for e in es[:30]))
    r.snapshot_items(1, [(entry_key(e, b""), value(e, b"", 1)) for e in es[30:]] + [("x|", bad)])
    r.snapshot_end(1, "w", 0, now=0.1)
    assert len(r.data) == 50 and r.bad_values == 1
