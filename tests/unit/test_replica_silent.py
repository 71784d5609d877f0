"""A replica whose writer has gone silent is no longer in sync (issue 11 item 3)."""

from __future__ import annotations

from common.machines import replica
from common.machines.replica import KeySet, ReplicaReader, SnapshotRequested, SyncGained, SyncLost

W = "writer-1"


def synced(silent_after=1.5, seq=10) -> ReplicaReader:
    r = ReplicaReader(snapshot_timeout=5.0, silent_after=silent_after)
    r.start(now=0.0)
    r.snapshot_items(1, [("a", 1)])
    r.snapshot_end(1, W, seq, now=0.1)
    assert r.heartbeat(W, seq, now=0.2) == [SyncGained(seq, W)]
    return r


def test_silence_for_the_bound_ends_sync_and_a_heartbeat_restores_it():
    r = synced()
    assert r.get_timer() == 0.2 + 1.5
    assert r.handle_timer(1.6) == [] and r.in_sync
    assert r.heartbeat(W, 10, now=1.0) == []          # heard: the bound restarts
    assert r.handle_timer(2.4) == [] and r.in_sync
    assert r.handle_timer(2.5) == [SyncLost(replica.WRITER_SILENT)]
    assert not r.in_sync and r.data == {"a": 1}       # the data stays, unanswered
    assert r.handle_timer(9.0) == []                  # said once
    assert r.resyncs[replica.WRITER_SILENT] == 1
    assert r.heartbeat(W, 10, now=9.5) == [SyncGained(10, W)]
    assert r.in_sync


def test_after_silence_the_next_delta_restores_sync():
    r = synced()
    r.handle_timer(5.0)
    assert r.delta(W, 11, "b", 2, now=5.1) == [KeySet("b", 2), SyncGained(11, W)]
    assert r.in_sync


def test_after_silence_missed_deltas_mean_a_resync_said_once():
    r = synced()
    assert r.handle_timer(5.0) == [SyncLost(replica.WRITER_SILENT)]
    # the heartbeat is ahead: deltas were lost during the outage; no second SyncLost
    assert r.heartbeat(W, 12, now=6.0) == [SnapshotRequested(2)]
    assert r.state == replica.AWAITING and not r.in_sync


def test_without_a_bound_silence_changes_nothing():
    r = synced(silent_after=None)
    assert r.get_timer() is None
    assert r.handle_timer(1e6) == [] and r.in_sync
