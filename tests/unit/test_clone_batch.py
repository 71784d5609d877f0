"""``kv.batch`` (bus/clone_writer.py, bus/clone_reader.py, issue 10): a Clone writer's
``apply(changes)`` publishes a group of changes as one message, and a reader takes it
exactly as the ``kv.updated`` / ``kv.deleted`` messages ``set``/``delete`` would have
published one by one: same table, same seq, same callbacks, same resync on a lost
message."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from bus import clone_frames, clone_writer
from bus.clone import BATCH, DELETED, UPDATED, CloneReader, CloneWriter
from bus.envelope import Header, Source
from common.machines import replica
from tests.unit.fakes import Counters as _Counters

KEYS = st.sampled_from(["a", "b", "c", "d", 7, ("t", 1)])
VALUES = st.one_of(st.none(), st.integers(0, 3), st.text(max_size=3), st.lists(st.integers(0, 2), max_size=2))
CHANGES = st.lists(st.one_of(st.tuples(st.just("set"), KEYS, VALUES, st.just(b"raw")),
                             st.tuples(st.just("delete"), KEYS)), max_size=30)


class _Bus:
    def __init__(self) -> None:
        self.sent: list = []

    def publish(self, topic, type_, body, *, stream=None, seq=None, **_kw) -> None:
        self.sent.append((topic, type_, body, stream, seq))


def _spawn(coro, *, name=None):
    coro.close()          # a snapshot fetch: not run here (the tests compare what asks for one)
    return None


def _ctx():
    return SimpleNamespace(session="w1", bus=_Bus(), counters=_Counters(), timer=lambda _n, d: d,
                           log=logging.getLogger("test_clone_batch"), spawn=_spawn)


def _writers(packed: bool):
    return CloneWriter(_ctx(), "ms.0", heartbeat=1.0, packed=packed), \
        CloneWriter(_ctx(), "ms.0", heartbeat=1.0, packed=packed)


def _one_by_one(w: CloneWriter, changes) -> None:
    for ch in changes:
        if ch[0] == "set":
            w.set(ch[1], ch[2])
        else:
            w.delete(ch[1])


def _expanded(sent: list) -> list:
    """The messages as one change each: a kv.batch's items as the messages they stand for."""
    out = []
    for topic, type_, body, stream, seq in sent:
        if type_ != BATCH:
            out.append((topic, type_, body, stream, seq))
            continue
        d = body["d"]
        for i, it in enumerate(d):
            one = {"k": it[0], "v": it[1]} if len(it) == 2 else {"k": it[0]}
            out.append((topic, UPDATED if len(it) == 2 else DELETED, one, stream, seq - len(d) + 1 + i))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(CHANGES, st.booleans()), max_size=4), st.booleans())
def test_apply_publishes_what_set_and_delete_publish(groups, packed):
    a, b = _writers(packed)
    for changes, asked in groups:
        na, nb = len(a.ctx.bus.sent), len(b.ctx.bus.sent)
        # the shard asks seq_after (the position it commits) before apply, over the same list
        after = a.seq_after(changes) if asked else None
        assert a.apply(changes) == a.seq
        assert after is None or after == a.seq
        _one_by_one(b, changes)
        assert a.seq == b.seq
        assert a.data == b.data
        # one message for a group that changed anything, none for one that did not
        assert len(a.ctx.bus.sent) - na == (1 if len(b.ctx.bus.sent) > nb else 0)
    assert _expanded(a.ctx.bus.sent) == b.ctx.bus.sent


def test_apply_splits_at_batch_max(monkeypatch):
    monkeypatch.setattr(clone_writer, "BATCH_MAX", 3)
    a, b = _writers(True)
    changes = [("set", f"k{i}", i, b"") for i in range(7)]
    a.apply(changes)
    _one_by_one(b, changes)
    assert [(t, len(body["d"]) if t == BATCH else 1, seq) for _to, t, body, _s, seq in a.ctx.bus.sent] == \
        [(BATCH, 3, 3), (BATCH, 3, 6), (UPDATED, 1, 7)]
    assert _expanded(a.ctx.bus.sent) == b.ctx.bus.sent


def _reader():
    """A CloneReader in sync with an empty writer at seq 0 (session w1), recording its callbacks."""
    calls: list = []
    r = CloneReader(_ctx(), "ms.0", on_set=lambda k, v: calls.append(("set", k, v)),
                    on_delete=lambda k: calls.append(("delete", k)), snapshot_timeout=5.0)
    req = next(e.request for e in r.machine.start(0.0) if isinstance(e, replica.SnapshotRequested))
    r._handle(r.machine.snapshot_end(req, "w1", 0, 0.0))
    r._handle(r.machine.heartbeat("w1", 0, 0.0))
    assert r.in_sync
    return r, calls


def _feed(r: CloneReader, sent: list) -> None:
    for n, (topic, type_, body, stream, seq) in enumerate(sent):
        h = Header(type_, f"w1:{n}", Source("map_server", 0, "w1"), 0.0, 1, stream, seq)
        r._on_message(topic, h, body)


@settings(max_examples=100, deadline=None)
@given(st.lists(CHANGES, min_size=1, max_size=4), st.booleans(), st.data())
def test_a_reader_takes_a_batch_as_the_messages_it_stands_for(groups, lose_one, data):
    a, b = _writers(True)
    for changes in groups:
        a.apply(changes)
        _one_by_one(b, changes)
    sent_a, sent_b = a.ctx.bus.sent, b.ctx.bus.sent
    if lose_one and sent_a:
        # a message lost on the way: the batch, and the same changes sent one by one
        i = data.draw(st.integers(0, len(sent_a) - 1))
        lost = set(range(sent_a[i][4] - (len(sent_a[i][2]["d"]) if sent_a[i][1] == BATCH else 1) + 1,
                         sent_a[i][4] + 1))
        sent_a = sent_a[:i] + sent_a[i + 1:]
        sent_b = [m for m in sent_b if m[4] not in lost]
    ra, calls_a = _reader()
    rb, calls_b = _reader()
    _feed(ra, sent_a)
    _feed(rb, sent_b)
    assert calls_a == calls_b
    assert ra.data == rb.data and ra.seq == rb.seq and ra.in_sync == rb.in_sync
    assert ra.machine.state == rb.machine.state
    if not (lose_one and a.ctx.bus.sent):
        assert ra.data == {k: v for k, v in ((k, clone_frames._unpack(e)[1]) for k, e in a.data.items())}


def test_malformed_batch_items_are_dropped_as_single_messages_would_be():
    r, calls = _reader()
    h = Header(BATCH, "w1:1", Source("map_server", 0, "w1"), 0.0, 1, "ms.0", 3)
    r._on_message("ms.0.delta", h, {"d": [["a", 1], [["x"], 2], ["c", 3]]})
    # item 2 ([["x"], 2]: a list key becomes a tuple, fine) - then a really bad one
    h2 = Header(BATCH, "w1:2", Source("map_server", 0, "w1"), 0.0, 1, "ms.0", 5)
    r._on_message("ms.0.delta", h2, {"d": [["d", 4], "not-an-item"]})
    assert calls == [("set", "a", 1), ("set", ("x",), 2), ("set", "c", 3), ("set", "d", 4)]
    assert r.ctx.counters.n.get("dropped.bad-clone-delta") == 1
    r._on_message("ms.0.delta", h2, {"d": []})
    r._on_message("ms.0.delta", h2._replace(seq=None), {"d": [["e", 1]]})
    assert r.ctx.counters.n.get("dropped.bad-clone-delta") == 3
    # the item dropped at seq 5 is a gap for the next change, as a lost kv.updated is
    h3 = Header(UPDATED, "w1:3", Source("map_server", 0, "w1"), 0.0, 1, "ms.0", 6)
    r._on_message("ms.0.delta", h3, {"k": "f", "v": 1})
    assert not r.in_sync
