"""roles/snapgate.py: the workers of a host fetch a stream's snapshot in turns (at most
``slots`` at once per stream), a waiting fetch is told it waits (its replica's
snapshot timeout then counts from the wait's end), and a turn is given back when its
fetch ends or is cancelled; the replica machine's side (snapshot_waiting) too."""

from __future__ import annotations

import asyncio

from common.machines.compact import CompactTable
from common.machines.replica import ReplicaReader, SnapshotRequested
from roles.snapgate import SnapshotGate


def test_one_turn_at_a_time_per_stream_and_the_waiter_is_told(tmp_path):
    async def run():
        a, b = SnapshotGate(str(tmp_path), slots=1), SnapshotGate(str(tmp_path), slots=1)
        order, waits = [], []

        async def fetch(gate, name, stream, hold):
            async with gate(stream, lambda: waits.append(name)):
                order.append((name, "in"))
                await asyncio.sleep(hold)
                order.append((name, "out"))

        await asyncio.gather(fetch(a, "a", "ms.0", 1.2), fetch(b, "b", "ms.0", 0.0),
                             fetch(b, "other", "ms.1", 0.0))
        return order, waits

    order, waits = asyncio.run(run())
    assert order.index(("a", "out")) < order.index(("b", "in"))       # b waited for a's turn to end
    assert order.index(("other", "out")) < order.index(("a", "out"))  # another stream: no wait
    assert waits.count("b") >= 2 and "a" not in waits and "other" not in waits


def test_two_slots_let_two_in_and_a_cancelled_wait_or_turn_gives_nothing_away(tmp_path):
    async def run():
        g = SnapshotGate(str(tmp_path), slots=2)
        inside = asyncio.Event()
        release = asyncio.Event()

        async def hold():
            async with g("ms.0"):
                inside.set()
                await release.wait()

        t1 = asyncio.create_task(hold())
        await inside.wait()
        inside.clear()
        t2 = asyncio.create_task(hold())
        await asyncio.wait_for(inside.wait(), 1.0)                    # a second slot: in at once
        t3 = asyncio.create_task(hold())
        await asyncio.sleep(0.2)
        assert not t3.done()
        t3.cancel()                                                   # cancelled while waiting
        t1.cancel()                                                   # cancelled in its turn
        await asyncio.gather(t1, t3, return_exceptions=True)
        inside.clear()
        t4 = asyncio.create_task(hold())
        await asyncio.wait_for(inside.wait(), 1.0)                    # t1's slot is free again
        release.set()
        await asyncio.gather(t2, t4)

    asyncio.run(run())


def test_a_replica_waiting_its_turn_does_not_time_out_its_snapshot():
    r = ReplicaReader(snapshot_timeout=5.0, store=CompactTable)
    assert r.start(now=0.0) == [SnapshotRequested(1)]
    r.snapshot_waiting(1, now=4.0)
    r.snapshot_waiting(7, now=8.0)           # another request's: ignored
    assert r.handle_timer(8.5) == [] and r.get_timer() == 9.0
    assert r.handle_timer(9.0) == [SnapshotRequested(2)]


def test_a_lock_directory_that_cannot_be_used_gives_no_turns_instead_of_blocking(tmp_path):
    async def run():
        g = SnapshotGate(str(tmp_path / "missing"), slots=1)
        async with g("ms.0"):
            async with asyncio.timeout(1.0):
                async with g("ms.0"):         # no lock file can be made: nobody waits
                    return True

    assert asyncio.run(run())
