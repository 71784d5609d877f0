"""roles.coalesce: a batch is flushed at the next loop turn while idle, after the wait
while busy, at once by its owner when full; and the worker's Map-Register batcher
publishes one bus message for what a busy millisecond brought (issue 10)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from roles.coalesce import Coalescer
from roles.regbatch import RegisterBatcher
from tests.unit.fakes import Counters


def test_idle_flushes_at_the_next_turn_busy_waits():
    t = [100.0]
    co = Coalescer(lambda: None, lambda: t[0], wait=0.001, busy_within=0.002)
    assert co.delay(t[0]) == 0.0                 # never flushed: idle
    co.flushed()
    t[0] += 0.0015
    assert co.delay(t[0]) == 0.001               # flushed 1.5 ms ago: busy
    t[0] += 0.001
    assert co.delay(t[0]) == 0.0                 # 2.5 ms ago: idle again


def test_schedule_runs_once_and_flushed_cancels():
    async def run():
        loop = asyncio.get_running_loop()
        calls: list[float] = []
        co = Coalescer(lambda: (calls.append(loop.time()), co.flushed()), loop.time, wait=0.02,
                       busy_within=0.05)
        co.schedule()
        co.schedule()                            # already scheduled: one flush
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(calls) == 1                   # idle: at the next turn
        t0 = loop.time()
        co.schedule()                            # busy now: after the wait
        await asyncio.sleep(0.005)
        assert len(calls) == 1 and co.scheduled
        await asyncio.sleep(0.04)
        assert len(calls) == 2 and calls[1] - t0 >= 0.019
        co.schedule()
        co.flushed()                             # the owner flushed (a full batch): nothing runs
        assert not co.scheduled
        await asyncio.sleep(0.05)
        assert len(calls) == 2
    asyncio.run(run())


class _Bus:
    def __init__(self) -> None:
        self.sent: list = []

    def publish(self, topic, type_, body) -> None:
        self.sent.append((topic, len(body["batch"])))


def test_a_busy_worker_sends_what_a_millisecond_brings_in_one_message(monkeypatch):
    import roles.regbatch as rb
    monkeypatch.setattr(rb.RegisterGate, "__init__", lambda self, *a, **k: None)
    monkeypatch.setattr(rb.RegisterGate, "check", lambda self, d, s, now: ("punt", 0, "all"))
    monkeypatch.setattr(rb, "policies", lambda cfg: [])
    monkeypatch.setattr(rb, "shard_for", lambda cfg: None)
    cfg = SimpleNamespace(map_server=SimpleNamespace(register_rate=1e9, register_burst=1e9))

    async def run():
        ctx = SimpleNamespace(counters=Counters(), bus=_Bus())
        b = RegisterBatcher(ctx, cfg)
        b.coalesce.wait, b.coalesce.busy_within = 0.02, 0.05
        b.offer(b"x", ("192.0.2.1", 4342))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert [n for _t, n in ctx.bus.sent] == [1]        # idle: at the next turn
        for _ in range(5):                       # a steady stream, one per turn: gathered
            b.offer(b"x", ("192.0.2.1", 4342))
            await asyncio.sleep(0)
        assert len(ctx.bus.sent) == 1
        await asyncio.sleep(0.05)
        assert [n for _t, n in ctx.bus.sent] == [1, 5]
        for _ in range(rb.MAX_BATCH):            # a full batch goes at once
            b.offer(b"x", ("192.0.2.1", 4342))
        assert [n for _t, n in ctx.bus.sent] == [1, 5, rb.MAX_BATCH]
    asyncio.run(run())
