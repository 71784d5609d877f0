"""Issue 11 item 3: a replica keeps answering from its complete data while it
resyncs after a writer restart, fills the new snapshot into a fresh table and swaps
it in whole; deltas after the swap apply in sequence order; a gap, a heartbeat
ahead or a silent writer still end answering at once (common/machines/replica.py,
store mode with keep_serving)."""

from __future__ import annotations

from ipaddress import IPv4Address

from common.machines import replica
from common.machines.compact import CompactTable
from common.machines.regtable import entry_key, entry_value
from common.machines.replica import (KeyDeleted, KeySet, Replaced, ReplicaReader, SnapshotRequested,
                                     SyncGained, SyncLost)
from common.wire.addr import Eid
from common.wire.records import Locator

OLD, NEW = "writer-1", "writer-2"


def reg(third: int) -> tuple[str, dict]:
    eid = Eid(0, IPv4Address(f"10.1.{third}.0"), 24)
    return entry_key(eid, b""), entry_value(eid, "s", (Locator(IPv4Address("192.0.2.1")),), ttl=1,
                                            proxy=True, merge=False, xtr_id=b"", registrant="127.0.0.1")


def host(third: int) -> Eid:
    return Eid(0, IPv4Address(f"10.1.{third}.9"), 32)


def synced(keep=True) -> ReplicaReader:
    r = ReplicaReader(snapshot_timeout=5.0, silent_after=1.5, store=CompactTable, keep_serving=keep)
    r.start(now=0.0)
    r.snapshot_items(1, [reg(1), reg(2)])
    assert r.snapshot_end(1, OLD, 10, now=0.1) == [Replaced(2)]
    assert r.heartbeat(OLD, 10, now=0.2) == [SyncGained(10, OLD)]
    return r


def test_a_writer_restart_keeps_answering_from_the_old_replica_until_the_swap():
    r = synced()
    table = r.data
    assert r.delta(OLD, 11, reg(1)[0], deleted=True, now=0.3) == [KeyDeleted(reg(1)[0])]
    # the writer restarts: a new session's heartbeat, nothing lost that the replica holds
    assert r.heartbeat(NEW, 0, now=2.0) == [SnapshotRequested(2)]
    assert r.in_sync and r.serving
    assert table.lookup(host(2)) is not None and table.lookup(host(1)) is None
    # its snapshot is late (the writer reloads): asked again, still answering
    assert r.handle_timer(7.0) == [SnapshotRequested(3)] and r.in_sync
    r.heartbeat(NEW, 0, now=7.5)
    r.snapshot_items(3, [reg(2), reg(3)])
    assert r.in_sync and table.lookup(host(3)) is None   # the fresh table is not visible yet
    # a delta of the new session made meanwhile is buffered, applied after the swap
    r.delta(NEW, 1, reg(2)[0], deleted=True, now=7.6)
    events = r.snapshot_end(3, NEW, 0, now=7.7)
    assert events == [Replaced(2), SyncGained(0, NEW), KeyDeleted(reg(2)[0])]   # heartbeat 0 buffered first
    assert r.data is table                                 # the same object, swapped inside
    assert table.lookup(host(3)) is not None
    assert table.lookup(host(2)) is None and table.lookup(host(1)) is None
    assert r.in_sync and not r.serving


def test_without_keep_serving_a_writer_restart_stops_answers():
    r = synced(keep=False)
    assert r.heartbeat(NEW, 0, now=2.0) == [SyncLost(replica.SESSION_CHANGED), SnapshotRequested(2)]
    assert not r.in_sync


def test_lost_deltas_end_answers_at_once_even_with_keep_serving():
    r = synced()
    assert r.delta(OLD, 12, *reg(5), now=0.5) == [SyncLost(replica.GAP), SnapshotRequested(2)]
    assert not r.in_sync
    r = synced()
    assert r.heartbeat(OLD, 11, now=0.5) == [SyncLost(replica.HEARTBEAT_AHEAD), SnapshotRequested(2)]
    assert not r.in_sync


def test_the_silent_writer_bound_holds_while_resyncing():
    r = synced()
    r.heartbeat(NEW, 0, now=2.0)
    assert r.in_sync and r.get_timer() == min(2.0 + 1.5, 7.0)
    assert r.handle_timer(3.4) == [] and r.in_sync
    assert r.handle_timer(3.5) == [SyncLost(replica.WRITER_SILENT)]
    assert not r.in_sync
    # heard again: still not answering until the snapshot is in and confirmed
    r.heartbeat(NEW, 0, now=4.0)
    assert not r.in_sync
    r.snapshot_items(2, [reg(7)])
    assert r.snapshot_end(2, NEW, 0, now=4.1)[-1] == SyncGained(0, NEW)
    assert r.in_sync


def test_a_silent_replica_whose_writer_restarted_does_not_serve_the_old_data():
    r = synced()
    r.handle_timer(5.0)                                  # silent: not in sync
    assert not r.in_sync
    assert r.heartbeat(NEW, 0, now=6.0) == [SnapshotRequested(2)]
    assert not r.in_sync and not r.serving


def test_a_malformed_value_is_counted_and_never_answered():
    r = synced()
    key, bad = reg(2)
    bad = dict(bad, rlocs=[["nonsense", 1, 1, 1, 1, 1]])
    assert r.delta(OLD, 11, key, bad, now=0.3) == [KeyDeleted(key)]
    assert r.bad_values == 1 and r.data.lookup(host(2)) is None
    assert r.delta(OLD, 12, *reg(4), now=0.4) == [KeySet(*reg(4))]


def goodbye_reader() -> ReplicaReader:
    r = ReplicaReader(snapshot_timeout=5.0, silent_after=1.5, restart_after=30.0, store=CompactTable,
                      keep_serving=True)
    r.start(now=0.0)
    r.snapshot_items(1, [reg(1)])
    r.snapshot_end(1, OLD, 10, now=0.1)
    r.heartbeat(OLD, 10, now=0.2)
    return r


def test_a_clean_stop_at_our_seq_allows_a_restarts_silence_then_the_usual_bound():
    r = goodbye_reader()
    assert r.goodbye(OLD, 10, now=1.0) == []
    assert r.get_timer() == 31.0
    assert r.handle_timer(5.0) == [] and r.in_sync          # past 1.5 s of silence: still answering
    assert r.heartbeat(NEW, 0, now=8.0) == [SnapshotRequested(2)] and r.in_sync
    assert r.get_timer() == 8.0 + 1.5                         # the new writer is heard: usual bound
    assert r.handle_timer(9.5) == [SyncLost(replica.WRITER_SILENT)] and not r.in_sync


def test_a_restart_that_takes_longer_than_its_bound_ends_answers():
    r = goodbye_reader()
    r.goodbye(OLD, 10, now=1.0)
    assert r.handle_timer(31.0) == [SyncLost(replica.WRITER_SILENT)] and not r.in_sync


def test_a_goodbye_past_our_seq_means_deltas_were_lost():
    r = goodbye_reader()
    assert r.goodbye(OLD, 11, now=1.0) == [SyncLost(replica.HEARTBEAT_AHEAD), SnapshotRequested(2)]
    assert not r.in_sync


def test_a_goodbye_of_another_session_or_without_a_restart_bound_changes_nothing():
    r = goodbye_reader()
    assert r.goodbye(NEW, 10, now=1.0) == []
    assert r.handle_timer(2.5) == [SyncLost(replica.WRITER_SILENT)]
    r = synced()                                             # restart_after not given
    assert r.goodbye(OLD, 10, now=1.0) == []
    assert r.handle_timer(2.5) == [SyncLost(replica.WRITER_SILENT)]


def test_a_snapshot_in_progress_is_not_abandoned_while_chunks_arrive():
    r = ReplicaReader(snapshot_timeout=5.0, store=CompactTable)
    r.start(now=0.0)
    for k in range(1, 12):                      # 11 chunks, one every 4 s: 44 s in all
        r.snapshot_items(1, [reg(k)], now=4.0 * k)
        assert r.handle_timer(4.0 * k + 4.9) == []
    assert r.get_timer() == 44.0 + 5.0
    assert r.snapshot_end(1, OLD, 3, now=46.0)[0] == Replaced(11)
    r2 = ReplicaReader(snapshot_timeout=5.0, store=CompactTable)
    r2.start(now=0.0)
    r2.snapshot_items(1, [reg(1)], now=1.0)
    assert r2.handle_timer(6.0) == [SnapshotRequested(2)]    # no chunk for 5 s: asked again
