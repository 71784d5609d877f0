"""The Clone reader machine, driven by hand with a fake clock."""

from __future__ import annotations

import random

import pytest

from common.machines import replica
from common.machines.replica import (KeyDeleted, KeySet, ReplicaError, ReplicaReader, SnapshotRequested,
                            SyncGained, SyncLost)

W = "writer-1"      # writer session
W2 = "writer-2"     # the same writer after a restart


def started(**kw) -> tuple[ReplicaReader, int]:
    r = ReplicaReader(snapshot_timeout=5.0, **kw)
    ev = r.start(now=0.0)
    assert ev == [SnapshotRequested(1)]
    assert r.state == replica.AWAITING and not r.in_sync
    return r, 1


def snapshot(r: ReplicaReader, req: int, items: dict, seq: int, session: str = W,
             now: float = 0.1) -> list:
    r.snapshot_items(req, list(items.items()))
    return r.snapshot_end(req, session, seq, now=now)


def in_sync_at(seq: int, items: dict | None = None) -> ReplicaReader:
    r, req = started()
    snapshot(r, req, items or {}, seq)
    assert r.heartbeat(W, seq, now=0.2) == [SyncGained(seq, W)]
    return r


def test_not_in_sync_until_proven():
    r, req = started()
    assert not r.in_sync
    ev = snapshot(r, req, {"a": 1, "b": 2}, 10)
    assert set(ev) == {KeySet("a", 1), KeySet("b", 2)}
    # snapshot applied but nothing proves our subscription is live yet
    assert r.state == replica.CONFIRMING and not r.in_sync
    assert r.data == {"a": 1, "b": 2} and r.seq == 10
    assert r.heartbeat(W, 10, now=0.3) == [SyncGained(10, W)]
    assert r.in_sync


def test_buffered_deltas_older_than_snapshot_are_skipped_newer_applied_in_order():
    r, req = started()
    # arrive while waiting for the snapshot
    for seq, k, v in [(9, "a", 0), (10, "b", 2), (11, "c", 3), (12, "a", 4)]:
        assert r.delta(W, seq, k, v, now=0.05) == []
    assert r.delta(W, 13, "b", deleted=True, now=0.05) == []
    assert r.data == {} and not r.in_sync
    ev = snapshot(r, req, {"a": 1, "b": 2}, 10)
    # snapshot applied, delta 9 proves liveness (<= n + 1), 11..13 applied in order
    assert ev == [KeySet("a", 1), KeySet("b", 2), SyncGained(10, W),
                  KeySet("c", 3), KeySet("a", 4), KeyDeleted("b")]
    assert r.in_sync and r.seq == 13 and r.data == {"a": 4, "c": 3}


def test_buffered_gap_after_snapshot_means_resync():
    r, req = started()
    r.delta(W, 13, "x", 1, now=0.05)  # 11 and 12 never arrived
    ev = snapshot(r, req, {"a": 1}, 10)
    assert ev == [KeySet("a", 1), SnapshotRequested(2)]
    assert not r.in_sync and r.state == replica.AWAITING
    assert r.resyncs == {replica.GAP: 1}
    assert r.data == {"a": 1}  # kept while the fresh snapshot comes


def test_first_buffered_heartbeat_ahead_of_snapshot_means_resync():
    r, req = started()
    r.heartbeat(W, 12, now=0.05)   # deltas 11, 12 were published before we listened
    ev = snapshot(r, req, {}, 10)
    assert ev == [SnapshotRequested(2)] and r.resyncs == {replica.HEARTBEAT_AHEAD: 1}


def test_buffered_heartbeat_before_snapshot_proves_liveness():
    r, req = started()
    r.heartbeat(W, 8, now=0.05)
    r.delta(W, 9, "a", 9, now=0.06)
    r.delta(W, 10, "b", 10, now=0.07)
    ev = snapshot(r, req, {"a": 9, "b": 10}, 10)
    assert ev[-1] == SyncGained(10, W) and r.in_sync


def test_buffered_messages_of_another_session_are_ignored():
    r, req = started()
    r.delta("old-writer", 500, "zzz", 1, now=0.05)
    r.heartbeat("old-writer", 500, now=0.05)
    ev = snapshot(r, req, {"a": 1}, 3)
    assert ev == [KeySet("a", 1)] and r.state == replica.CONFIRMING


def test_live_gap_resyncs_and_says_so():
    r = in_sync_at(5, {"a": 1})
    assert r.delta(W, 6, "b", 2, now=1.0) == [KeySet("b", 2)]
    ev = r.delta(W, 8, "c", 3, now=1.1)  # 7 was lost
    assert ev == [SyncLost(replica.GAP), SnapshotRequested(2)]
    assert not r.in_sync
    # deltas keep arriving: buffered, not applied
    assert r.delta(W, 9, "d", 4, now=1.2) == []
    assert "d" not in r.data
    ev = snapshot(r, 2, {"a": 1, "b": 2, "x": 7, "c": 3}, 8, now=1.3)
    # the buffered delta 9 is applied and proves the subscription live
    assert ev == [KeySet("x", 7), KeySet("c", 3), KeySet("d", 4), SyncGained(9, W)]
    assert r.in_sync and r.seq == 9


def test_live_heartbeat_ahead_resyncs():
    r = in_sync_at(5)
    assert r.heartbeat(W, 5, now=1.0) == []
    assert r.heartbeat(W, 4, now=1.0) == []  # behind: harmless
    assert r.heartbeat(W, 6, now=2.0) == [SyncLost(replica.HEARTBEAT_AHEAD),
                                          SnapshotRequested(2)]
    assert not r.in_sync


def test_writer_session_change_resyncs_and_diffs():
    r = in_sync_at(5, {"a": 1, "b": 2})
    ev = r.heartbeat(W2, 0, now=3.0)  # the writer restarted (and its seq went back)
    assert ev == [SyncLost(replica.SESSION_CHANGED), SnapshotRequested(2)]
    ev = snapshot(r, 2, {"a": 1, "c": 3}, 0, session=W2, now=3.1)
    assert ev == [KeyDeleted("b"), KeySet("c", 3)]
    assert r.session == W2 and not r.in_sync
    assert r.delta(W2, 1, "d", 4, now=3.2) == [KeySet("d", 4), SyncGained(1, W2)]
    assert r.data == {"a": 1, "c": 3, "d": 4}


def test_delta_from_another_session_resyncs_too():
    r = in_sync_at(5)
    assert r.delta(W2, 1, "a", 1, now=1.0)[0] == SyncLost(replica.SESSION_CHANGED)


def test_duplicates_are_ignored_in_sync():
    r = in_sync_at(5, {"a": 1})
    assert r.delta(W, 5, "a", 99, now=1.0) == []
    assert r.data == {"a": 1}


def test_delete_of_absent_key_in_a_delta_is_harmless():
    r = in_sync_at(1)
    assert r.delta(W, 2, "nope", deleted=True, now=1.0) == [KeyDeleted("nope")]
    assert r.seq == 2 and r.data == {}


def test_snapshot_timeout_asks_again_and_ignores_stale_replies():
    r, req = started()
    assert r.get_timer() == 5.0
    assert r.handle_timer(4.9) == []
    assert r.handle_timer(5.0) == [SnapshotRequested(2)]
    assert r.resyncs == {replica.SNAPSHOT_TIMEOUT: 1}
    assert r.get_timer() == 10.0
    # the reply to request 1 finally shows up: ignored
    assert snapshot(r, 1, {"old": 1}, 3) == []
    assert r.data == {} and r.state == replica.AWAITING
    assert snapshot(r, 2, {"new": 1}, 4) == [KeySet("new", 1)]
    assert r.get_timer() is None and r.handle_timer(100.0) == []


def test_snapshot_in_chunks():
    r, req = started()
    r.snapshot_items(req, [("a", 1)])
    r.snapshot_items(req, [("b", 2)])
    r.snapshot_items(req + 5, [("zzz", 0)])
    assert r.snapshot_end(req, W, 2, now=0.1) == [KeySet("a", 1), KeySet("b", 2)]


def test_buffer_overflow_resyncs_after_snapshot():
    r, req = started(max_buffer=3)
    for s in range(11, 16):
        r.delta(W, s, s, s, now=0.1)
    ev = snapshot(r, req, {}, 10)
    assert ev == [SnapshotRequested(2)] and r.resyncs == {replica.BUFFER_OVERFLOW: 1}


def test_idle_ignores_input_and_start_once():
    r = ReplicaReader()
    assert r.delta(W, 1, "a", 1, now=0) == [] and r.heartbeat(W, 1, now=0) == []
    assert r.snapshot_end(1, W, 1, now=0) == []
    r.start(now=0)
    with pytest.raises(ReplicaError):
        r.start(now=1)


def test_random_loss_always_converges_or_knows_it_has_not():
    """A writer changes a table; the reader loses random messages.  Whenever the
    reader claims in_sync, its data equals the writer's table at its seq."""
    rng = random.Random(1)
    for trial in range(200):
        table: dict = {}
        history: list[dict] = [{}]
        r = ReplicaReader(snapshot_timeout=1.0)
        pending = r.start(now=0.0)
        now = 0.0
        for step in range(60):
            now += 0.1
            seq = len(history) - 1
            # the writer acts
            if rng.random() < 0.7:
                k = rng.randrange(6)
                if k in table and rng.random() < 0.3:
                    del table[k]
                    msg = ("d", seq + 1, k, None, True)
                else:
                    table[k] = rng.randrange(100)
                    msg = ("d", seq + 1, k, table[k], False)
                history.append(dict(table))
            else:
                msg = ("h", seq)
            # the network may lose it
            if rng.random() > 0.15:
                if msg[0] == "d":
                    pending += r.delta(W, msg[1], msg[2], msg[3], deleted=msg[4], now=now)
                else:
                    pending += r.heartbeat(W, msg[1], now=now)
            # the snapshot service answers requests, sometimes late or never
            reqs = [e for e in pending if isinstance(e, SnapshotRequested)]
            pending = []
            for e in reqs:
                if rng.random() < 0.8:
                    r.snapshot_items(e.request, list(table.items()))
                    pending += r.snapshot_end(e.request, W, len(history) - 1, now=now)
            pending += r.handle_timer(now)
            if r.in_sync:
                assert r.data == history[r.seq], (trial, step)
