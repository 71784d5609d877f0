"""A packed Clone writer (bus/clone_writer.py, packed=True: items held as encoded [k, v])
sends snapshot chunks byte-identical to the unpacked writer's."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from bus.clone_frames import _pack, _packed_chunk, _unpack

keys = st.one_of(st.text(max_size=30), st.integers(0, 1 << 40), st.binary(max_size=10))
values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-1 << 40, 1 << 40), st.text(max_size=20)),
                      lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c,
                                                                                     max_size=4)), max_leaves=12)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(keys, values), max_size=40), st.integers(0, 1 << 33))
def test_packed_chunk_is_the_same_bytes(items, req):
    plain = _pack({"req": req, "items": [[k, v] for k, v in items]})
    assert _packed_chunk(req, [_pack([k, v]) for k, v in items]) == plain


def test_large_chunks_use_the_longer_array_headers():
    for n in (15, 16, 65535, 65536):
        items = [[i, i] for i in range(n)]
        got = _packed_chunk(1, [_pack(x) for x in items])
        assert got == _pack({"req": 1, "items": items})
        assert _unpack(got)["items"][-1] == [n - 1, n - 1]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=30), values), max_size=20))
def test_extend_encoded_holds_what_extend_holds(items):
    """A store's encoded values given as they are (the shard's reload) are held as
    extend holds the decoded ones."""
    from types import SimpleNamespace

    import msgpack

    from bus.clone import CloneWriter
    a = CloneWriter(SimpleNamespace(session="s1"), "ms.0", heartbeat=1.0, packed=True)
    b = CloneWriter(SimpleNamespace(session="s1"), "ms.0", heartbeat=1.0, packed=True)
    a.extend(items)
    b.extend_encoded((k, msgpack.packb(v)) for k, v in items)
    assert a.data == b.data
