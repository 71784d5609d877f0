"""Issue 11: a restarted shard resumes its Clone stream (common/machines/replica.py,
bus/clone_writer.py CloneWriter.resume/seq_after, roles/ms_store.py stream_position,
roles/stream_resume.py, docs/replica.md).

A replica at exactly the position a resumed writer continues needs no snapshot; a
replica behind it (changes committed but never published, or lost), ahead of it (a
store restored from a backup) or on another lineage resyncs as at any session change;
the position is committed with the changes, in the same transaction."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from hypothesis import given, settings, strategies as st

from bus.clone import CloneWriter
from common.machines import replica
from common.machines.compact import CompactTable
from common.machines.replica import (KeyDeleted, KeySet, Replaced, ReplicaReader, Resumed, SnapshotRequested,
                                     SyncGained, SyncLost)
from roles import stream_resume
from roles.ms_store import RegistrationStore

P1, P2, P3 = "p1", "p2", "p3"


def synced(seq: int = 5, session: str = P1, keep: bool = True, **kw) -> ReplicaReader:
    r = ReplicaReader(snapshot_timeout=5.0, keep_serving=keep, **kw)
    r.start(now=0.0)
    r.snapshot_items(1, [("a", 1), ("b", 2)])
    r.snapshot_end(1, session, seq, now=0.1)
    assert r.heartbeat(session, seq, now=0.2) == [SyncGained(seq, session)]
    return r


# -- the reader machine ------------------------------------------------------------

def test_a_writer_resuming_the_replicas_position_needs_no_snapshot():
    r = synced()
    assert r.heartbeat(P2, 5, now=1.0, resumes=(P1, 5)) == [Resumed(P2, 5)]
    assert r.in_sync and r.session == P2 and r.seq == 5 and r.resumed == 1
    assert r.request == 1                       # no snapshot asked for
    assert r.delta(P2, 6, "c", 3, now=1.1) == [KeySet("c", 3)]
    assert r.heartbeat(P2, 6, now=2.0, resumes=(P1, 5)) == []   # later heartbeats: as usual
    assert r.data == {"a": 1, "b": 2, "c": 3}


def test_a_gap_after_the_resume_resyncs_without_answering():
    r = synced()
    # the resumed writer already published 6 and 7; the replica heard neither
    assert r.heartbeat(P2, 7, now=1.0, resumes=(P1, 5)) == [Resumed(P2, 5), SyncLost(replica.HEARTBEAT_AHEAD),
                                                            SnapshotRequested(2)]
    assert not r.in_sync
    r = synced()
    r.heartbeat(P2, 5, now=1.0, resumes=(P1, 5))
    assert r.delta(P2, 7, "c", 3, now=1.1) == [SyncLost(replica.GAP), SnapshotRequested(2)]
    assert not r.in_sync


def test_a_replica_behind_the_resumed_position_resyncs_as_at_a_session_change():
    # the old writer committed 6 and died before publishing it
    r = synced()
    assert r.heartbeat(P2, 6, now=1.0, resumes=(P1, 6)) == [SnapshotRequested(2)]
    assert r.in_sync and r.serving             # keep_serving: as today's writer restart
    assert r.resyncs == {replica.SESSION_CHANGED: 1} and r.resumed == 0
    r = synced(keep=False)
    assert r.heartbeat(P2, 6, now=1.0, resumes=(P1, 6)) == [SyncLost(replica.SESSION_CHANGED),
                                                            SnapshotRequested(2)]


def test_a_store_restored_from_a_backup_is_never_continued():
    # the replica followed P1 to 9; the store was restored to P1's position 5
    r = synced(seq=9)
    assert r.heartbeat(P3, 5, now=1.0, resumes=(P1, 5)) == [SnapshotRequested(2)]
    assert r.resumed == 0 and r.resyncs == {replica.SESSION_CHANGED: 1}
    # the same seq on another lineage (a copy of an older session's store) is not the same state
    r = synced(seq=9, session=P2)
    assert r.heartbeat(P3, 9, now=1.0, resumes=(P1, 9)) == [SnapshotRequested(2)]
    assert r.resumed == 0


def test_a_delta_of_a_resumed_writer_heard_before_its_heartbeat_resyncs():
    r = synced()
    assert r.delta(P2, 6, "c", 3, now=1.0) == [SnapshotRequested(2)]
    assert r.resumed == 0 and "c" not in r.data


def test_a_replica_confirming_a_snapshot_continues_a_resumed_writer():
    r = ReplicaReader(snapshot_timeout=5.0, keep_serving=True)
    r.start(now=0.0)
    r.snapshot_items(1, [("a", 1)])
    assert r.snapshot_end(1, P1, 4, now=0.1) == [KeySet("a", 1)]
    assert not r.in_sync                        # no proof from P1 yet; P1 then stops at 4
    assert r.heartbeat(P2, 4, now=1.0, resumes=(P1, 4)) == [Resumed(P2, 4), SyncGained(4, P2)]
    assert r.in_sync and r.request == 1


def test_a_buffered_heartbeat_of_the_resumed_writer_is_replayed_after_the_snapshot():
    r = ReplicaReader(snapshot_timeout=5.0)
    r.start(now=0.0)
    r.heartbeat(P2, 4, now=0.5, resumes=(P1, 4))           # buffered
    r.delta(P2, 5, "b", 2, now=0.6)                         # buffered
    r.snapshot_items(1, [("a", 1)])
    assert r.snapshot_end(1, P1, 4, now=1.0) == [KeySet("a", 1), Resumed(P2, 4), SyncGained(4, P2),
                                                  KeySet("b", 2)]
    assert r.in_sync and r.seq == 5


def test_after_a_goodbye_the_resumed_writer_ends_the_restart_bound_without_a_snapshot():
    r = ReplicaReader(snapshot_timeout=5.0, keep_serving=True, silent_after=1.5, restart_after=30.0)
    r.start(now=0.0)
    r.snapshot_end(1, P1, 5, now=0.1)
    r.heartbeat(P1, 5, now=0.2)
    assert r.goodbye(P1, 5, now=1.0) == []
    assert r.handle_timer(20.0) == [] and r.in_sync        # the restart's silence
    assert r.heartbeat(P2, 5, now=25.0, resumes=(P1, 5)) == [Resumed(P2, 5)]
    assert r.get_timer() == pytest.approx(26.5)             # the usual bound again
    assert r.handle_timer(27.0) == [SyncLost(replica.WRITER_SILENT)]


def test_store_mode_keeps_its_table_through_a_resume():
    r = ReplicaReader(snapshot_timeout=5.0, keep_serving=True, store=CompactTable)
    r.start(now=0.0)
    table = r.data
    assert r.snapshot_end(1, P1, 0, now=0.1) == [Replaced(0)]
    r.heartbeat(P1, 0, now=0.2)
    assert r.heartbeat(P2, 0, now=1.0, resumes=(P1, 0)) == [Resumed(P2, 0)]
    assert r.data is table and r.in_sync


# -- the writer, the store, the shell's glue ----------------------------------------

class _Bus:
    def __init__(self) -> None:
        self.sent: list = []

    def publish(self, topic, type_, body, **kw) -> None:
        self.sent.append((type_, body, kw))


class _Ctx:
    def __init__(self, session: str) -> None:
        self.session = session
        self.bus = _Bus()

    def timer(self, _name, default):
        return default


def feed(reader: ReplicaReader, writer: CloneWriter, now: float) -> list:
    """Deliver what ``writer`` published (in order) to ``reader``."""
    events = []
    for type_, body, kw in writer.ctx.bus.sent:
        session = body.get("s", writer.ctx.session)
        if type_ == "kv.heartbeat":
            res = body.get("resumes")
            events += reader.heartbeat(session, kw["seq"], now, tuple(res) if res else None)
        elif type_ in ("kv.updated", "kv.deleted"):
            events += reader.delta(session, kw["seq"], body["k"], body.get("v"),
                                   deleted=type_ == "kv.deleted", now=now)
    writer.ctx.bus.sent.clear()
    return events


def start_shard(path, session: str) -> tuple[CloneWriter, RegistrationStore, bool]:
    """What roles/map_server.py does with its writer and store on start."""
    store = RegistrationStore(str(path))
    writer = CloneWriter(_Ctx(session), "ms.0", packed=True)
    resumed = stream_resume.resume(writer, store)
    rows, _ = store.load()
    writer.extend((k, v) for k, v, _raw in rows)
    return writer, store, resumed


def commit(writer: CloneWriter, store: RegistrationStore, changes) -> None:
    """As the shard: commit (the position with the changes), then publish."""
    store.apply([c if c[0] == "delete" else (*c, b"") for c in changes])
    for c in changes:
        if c[0] == "set":
            writer.set(c[1], c[2])
        else:
            writer.delete(c[1])


def test_a_restarted_shard_continues_its_stream_and_a_restored_backup_does_not(tmp_path):
    path = tmp_path / "ms.sqlite"
    w1, s1, resumed = start_shard(path, P1)
    assert not resumed and s1.stream_position() == (P1, 0, stream_resume.FORMAT)
    r = ReplicaReader(snapshot_timeout=5.0, keep_serving=True)
    r.start(now=0.0)
    r.snapshot_end(1, P1, 0, now=0.1)
    commit(w1, s1, [("set", "a", {"x": 1}), ("set", "b", {"x": 2})])
    w1.publish_heartbeat()
    assert feed(r, w1, 1.0) == [KeySet("a", {"x": 1}), SyncGained(1, P1), KeySet("b", {"x": 2})]
    assert s1.stream_position() == (P1, 2, stream_resume.FORMAT)
    s1.close()
    shutil.copy(path, tmp_path / "backup.sqlite")        # a backup at P1's seq 2

    w2, s2, resumed = start_shard(path, P2)             # a restart
    assert resumed and w2.resumes == (P1, 2) and w2.seq == 2
    assert s2.stream_position() == (P2, 2, stream_resume.FORMAT)   # its own session, persisted at once
    w2.publish_heartbeat()
    assert feed(r, w2, 2.0) == [Resumed(P2, 2)] and r.request == 1
    commit(w2, s2, [("delete", "a"), ("set", "c", {"x": 3})])
    w2.publish_heartbeat()
    assert feed(r, w2, 3.0) == [KeyDeleted("a"), KeySet("c", {"x": 3})]
    assert r.data == {"b": {"x": 2}, "c": {"x": 3}} and r.in_sync and r.seq == 4
    s2.close()

    shutil.copy(tmp_path / "backup.sqlite", path)        # the backup restored
    w3, s3, resumed = start_shard(path, P3)
    assert resumed and w3.resumes == (P1, 2)
    w3.publish_heartbeat()
    assert feed(r, w3, 4.0) == [SnapshotRequested(2)]    # never continued: P2 went on from there
    assert r.resyncs == {replica.SESSION_CHANGED: 1}
    s3.close()


def test_the_position_is_committed_with_the_changes_or_not_at_all(tmp_path):
    w, s, _ = start_shard(tmp_path / "ms.sqlite", P1)
    commit(w, s, [("set", "a", {"x": 1})])
    assert s.stream_position()[:2] == (P1, 1)
    s.db.execute("CREATE TRIGGER boom BEFORE INSERT ON registration BEGIN SELECT RAISE(ABORT, 'x'); END")
    with pytest.raises(sqlite3.IntegrityError):
        s.apply([("set", "b", {"x": 2}, b"")])
    assert s.stream_position()[:2] == (P1, 1)            # rolled back with the change
    s.apply([], {"k": 7})                                 # nonces only: the position stays
    assert s.stream_position()[:2] == (P1, 1)
    s.position_of = None                                  # a change by anything else
    s.apply([("delete", "a")])
    assert s.stream_position() is None
    s.close()
    w2, s2, resumed = start_shard(tmp_path / "ms.sqlite", P2)
    assert not resumed and w2.resumes is None and w2.seq == 0
    s2.close()


def test_another_value_format_or_unreadable_rows_are_not_continued(tmp_path):
    w, s, _ = start_shard(tmp_path / "ms.sqlite", P1)
    s.save_stream_position(P1, 3, stream_resume.FORMAT + 1)
    s.close()
    w2, s2, resumed = start_shard(tmp_path / "ms.sqlite", P2)
    assert not resumed
    s2.close()
    w3, s3, resumed = start_shard(tmp_path / "ms.sqlite", P3)
    assert resumed and w3.resumes == (P2, 0)
    stream_resume.unresumable(w3, s3)                     # the reload skipped rows
    assert w3.resumes is None and w3.session != P3 and s3.stream_position() is None
    w3.ctx.bus.sent.clear()
    w3.set("a", 1)
    assert w3.ctx.bus.sent[0][1]["s"] == w3.session      # its messages say their session
    r = synced(seq=0, session=P2)
    assert r.delta(w3.session, 1, "a", 1, now=1.0) == [SnapshotRequested(2)]
    s3.apply([("set", "b", {}, b"")])
    assert s3.stream_position() is None                   # and every later commit leaves none
    s3.close()


changes = st.lists(st.one_of(st.tuples(st.just("set"), st.sampled_from("abcd"), st.integers(0, 2)),
                             st.tuples(st.just("delete"), st.sampled_from("abcd"))), max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from("abcd"), st.integers(0, 2)), changes, st.booleans())
def test_seq_after_is_the_seq_publishing_the_changes_reaches(start, chs, packed):
    w = CloneWriter(_Ctx(P1), "ms.0", packed=packed)
    w.load(start.items(), 7)
    want = w.seq_after(chs)
    for c in chs:
        if c[0] == "set":
            w.set(c[1], c[2])
        else:
            w.delete(c[1])
    assert w.seq == want
