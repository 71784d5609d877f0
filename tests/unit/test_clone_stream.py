"""A held Clone writer streams the snapshots asked of it while it loads (bus/clone_writer.py,
issue 11): what is loaded so far at once, each loaded chunk as it comes, the end at
release; a change while held abandons them (the readers ask again).  A real ROUTER
and DEALER over an ipc socket in a temporary directory, one event loop."""

from __future__ import annotations

import asyncio

import zmq
import zmq.asyncio

from bus.clone import CloneWriter
from bus.clone_frames import _pack, _unpack
from tests.unit.fakes import Counters as _Counters


class _Bus:
    def __init__(self) -> None:
        self.sent: list = []

    def publish(self, topic, type_, body, **kw) -> None:
        self.sent.append((type_, kw.get("seq")))


class _Endpoints:
    def __init__(self, d) -> None:
        self.d = d

    def snapshot(self, stream) -> str:
        return f"ipc://{self.d}/snap-{stream}.sock"


class _Ctx:
    def __init__(self, d) -> None:
        self.session = "w1"
        self.bus, self.counters, self.endpoints = _Bus(), _Counters(), _Endpoints(d)
        self.zmq = zmq.Context.instance()

    def timer(self, _name, default):
        return default

    def spawn(self, coro, *, name=None):
        return asyncio.get_running_loop().create_task(coro, name=name)

    def every(self, interval, fn, *, name=None):
        async def loop():
            while True:
                await asyncio.sleep(interval)
                fn()
        return asyncio.get_running_loop().create_task(loop(), name=name)


async def _ask(ctx, req: int):
    s = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(ctx.endpoints.snapshot("ms.0"))
    await s.send_multipart([b"snap", _pack({"v": 1, "req": req})])
    return s


async def _read(s, until_end: bool, timeout: float = 2.0):
    """Items received, and the end (None if it did not come within ``timeout``)."""
    items, end = [], None
    while True:
        try:
            kind, body = await asyncio.wait_for(s.recv_multipart(), timeout)
        except asyncio.TimeoutError:
            return items, end
        body = _unpack(body)
        if kind == b"items":
            items += [tuple(x) for x in body["items"]]
            if not until_end:
                return items, end
        elif kind == b"end":
            return items, body


def test_a_held_writer_streams_what_it_loads_and_ends_at_release(tmp_path):
    async def run():
        ctx = _Ctx(tmp_path)
        w = CloneWriter(ctx, "ms.0", packed=True, chunk=3)
        w.resume("w0", 7)
        w.hold()
        w.start()
        w.extend([(f"k{i}", i) for i in range(5)])
        s = await _ask(ctx, 1)
        got, end = await _read(s, until_end=False)
        for _ in range(20):                       # the 5 loaded before the request (chunks of 3)
            if len(got) >= 5:
                break
            more, end = await _read(s, until_end=False, timeout=0.5)
            got += more
        assert sorted(got) == [(f"k{i}", i) for i in range(5)] and end is None
        w.extend([("k5", 5), ("k6", 6)])          # loaded later: streamed as it comes
        more, end = await _read(s, until_end=False)
        assert more == [("k5", 5), ("k6", 6)] and end is None
        w.release()
        rest, end = await _read(s, until_end=True)
        assert rest == [] and end == {"req": 1, "seq": 7, "session": "w1", "count": 7}
        assert ctx.counters.n.get("clone.ms.0.snapshots") == 1
        assert ("kv.heartbeat", 7) in ctx.bus.sent   # confirms the readers at once
        s2 = await _ask(ctx, 2)                   # after release: a whole snapshot as before
        items, end = await _read(s2, until_end=True)
        assert sorted(items) == [(f"k{i}", i) for i in range(7)] and end["seq"] == 7
        s.close()
        s2.close()
        w.close()
    asyncio.run(run())


def test_a_change_while_held_abandons_the_streamed_snapshots(tmp_path):
    async def run():
        ctx = _Ctx(tmp_path)
        w = CloneWriter(ctx, "ms.0", packed=True)
        w.hold()
        w.start()
        w.extend([("a", 1)])
        s = await _ask(ctx, 1)
        got, _ = await _read(s, until_end=False)
        assert got == [("a", 1)]
        w.set("a", 2)                             # not what the shard does: the stream ends
        w.release()
        more, end = await _read(s, until_end=True, timeout=0.5)
        assert end is None and ctx.counters.n.get("dropped.snapshot-abandoned") == 1
        s.close()
        w.close()
    asyncio.run(run())
