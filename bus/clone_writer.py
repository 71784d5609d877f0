"""The writer of a Clone stream (bus/clone.py describes the protocol): publishes each
change as a delta, heartbeats, and serves snapshots over a ROUTER socket."""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any, Hashable, Iterable

import msgpack
import zmq

from bus import topics
from bus.aio import AsyncSocket
from bus.clone_frames import BATCH, DELETED, GOODBYE, HEARTBEAT, UPDATED, _pack, _packed_chunk, _unpack

if TYPE_CHECKING:
    from roles.runtime import RoleContext

BATCH_MAX = 1024           # changes per kv.batch message at most


class CloneWriter:
    """The single writer of a stream.  ``load`` (optional) before ``start``."""

    def __init__(self, ctx: RoleContext, stream: str, *, heartbeat: float | None = None,
                 chunk: int = 1000, packed: bool = False) -> None:
        self.ctx = ctx
        # packed: each item held as its encoded snapshot entry (msgpack ``[k, v]``,
        # bytes) instead of the value's object graph - a fraction of the memory, and a
        # snapshot chunk is a join of bytes (``data`` then maps keys to those bytes)
        self.packed = packed
        self.stream = topics.stream_name(stream)
        self.heartbeat_interval = heartbeat or ctx.timer("heartbeat_interval", 1.0)
        self.chunk = chunk
        self.seq = 0
        self._data: dict[Hashable, Any] = {}
        self._delta_topic = topics.stream_delta(self.stream)
        self._hb_topic = topics.stream_heartbeat(self.stream)
        self._router: AsyncSocket | None = None
        self._tasks: list[asyncio.Task] = []
        self._loaded = asyncio.Event()     # snapshots are served once set (see hold)
        self._loaded.set()
        self.session = ctx.session         # the stream's session (new_session changes it)
        self._pack = msgpack.Packer(use_bin_type=True).pack   # as _pack, without a Packer per call
        self.resumes: tuple | None = None  # (session, seq) this session continues (resume)
        self._streams: list = []           # (ident, req) of snapshots streamed while held
        self._packed_for: tuple | None = None   # (changes, their packed sets): seq_after -> apply

    @property
    def data(self) -> dict[Hashable, Any]:
        """The table (read it, do not modify it: use set/delete)."""
        return self._data

    def __len__(self) -> int:
        return len(self._data)

    def load(self, items: Iterable[tuple[Hashable, Any]], seq: int) -> None:
        """Start from the writer's own store: the table as of ``seq``."""
        self._data = {}
        self.extend(items)
        self.seq = seq

    def hold(self) -> None:
        """Heartbeat from :meth:`start` on but serve no snapshot until :meth:`release`:
        the writer is still loading its store (:meth:`extend`); readers keep their
        replica meanwhile (issue 11, docs/replica.md)."""
        self._loaded.clear()

    def extend(self, items: Iterable[tuple[Hashable, Any]]) -> None:
        """Add loaded items without publishing them (while held, at ``seq`` 0)."""
        if self.packed:
            self._extended([(k, _pack([k, v])) for k, v in items])
        else:
            self._data.update(items)

    def extend_encoded(self, items: Iterable[tuple[Hashable, bytes]]) -> None:
        """As :meth:`extend` for a packed writer, each value given as its msgpack
        bytes (e.g. as a store keeps it): held as ``[k, v]`` without decoding it."""
        assert self.packed
        self._extended([(k, b"\x92" + _pack(k) + v) for k, v in items])

    def _extended(self, entries: list) -> None:
        self._data.update(entries)
        if self._streams:       # snapshots served while the store loads get them at once
            chunk = [e for _k, e in entries]
            for ident, req in list(self._streams):
                self._stream_items(ident, req, chunk)

    def release(self) -> None:
        """The store is loaded: serve snapshots; those streamed while it loaded end here
        (the table as of ``seq`` now, which nothing changed while held)."""
        self._loaded.set()
        streams, self._streams = self._streams, []
        for ident, req in streams:
            self._end(ident, req, self.seq, self.session, len(self._data))
        if streams:
            self.publish_heartbeat()   # lets the readers confirm at once

    def resume(self, session: str, seq: int) -> None:
        """Continue a persisted position (before :meth:`start`): the table this writer
        loads is the state of ``session`` at ``seq``, which that session published up
        to and no further; readers at exactly that position continue without a
        snapshot (issue 11, common.machines.replica, docs/replica.md)."""
        self.seq = seq
        self.resumes = (session, seq)

    def new_session(self) -> None:
        """Start a session of the writer's own choosing (the table is not the state a
        resumed position named): readers resync; later messages carry it as ``"s"``."""
        self.session = secrets.token_hex(8)
        self.resumes = None
        if self._tasks:
            self.publish_heartbeat()

    def seq_after(self, changes) -> int:
        """The ``seq`` :meth:`set`/:meth:`delete` will reach over ``changes``
        (``("set", key, value, ...)`` / ``("delete", key)``), published or not: what a
        store persists with the changes in the same transaction."""
        seq, seen, missing = self.seq, {}, object()
        packed: list = []
        for ch in changes:
            key = ch[1]
            cur = seen[key] if key in seen else self._data.get(key, missing)
            if ch[0] == "set":
                stored = self._pack([key, ch[2]]) if self.packed else ch[2]
                packed.append(stored)
                if cur is missing or cur != stored:
                    seq += 1
                seen[key] = stored
            else:
                if cur is not missing:
                    seq += 1
                seen[key] = missing
        if self.packed:
            # apply() over the same list next (the shard's commit, then its publish)
            # takes these bytes instead of packing every value again
            self._packed_for = (changes, packed, len(changes))
        return seq

    def _body(self, body: dict) -> dict:
        if self.session != self.ctx.session:
            body["s"] = self.session
        return body

    def set(self, key: Hashable, value: Any) -> int:
        """Set ``key``; publishes a delta unless the value is unchanged.  Returns seq."""
        if self._streams:
            self._abandon_streams()
        stored = self._pack([key, value]) if self.packed else value
        if key in self._data and self._data[key] == stored:
            return self.seq
        self._data[key] = stored
        self.seq += 1
        self.ctx.bus.publish(self._delta_topic, UPDATED, self._body({"k": key, "v": value}),
                             stream=self.stream, seq=self.seq)
        return self.seq

    def apply(self, changes) -> int:
        """``("set", key, value, ...)`` / ``("delete", key)`` changes in order, each as
        :meth:`set` / :meth:`delete` makes it (an unchanged value or an absent key
        publishes nothing), published as one ``kv.batch`` message per
        :data:`BATCH_MAX` changes instead of one message each (a single change: its own
        ``kv.updated`` / ``kv.deleted``).  Returns seq."""
        if self._streams:
            self._abandon_streams()
        data, pack, out = self._data, self._pack, []
        memo, self._packed_for = self._packed_for, None
        if memo is not None and memo[0] is changes and memo[2] == len(changes):
            # what seq_after packed for this very list: one per set, in order
            pre = iter(memo[1])
            pack = lambda _kv: next(pre)     # noqa: E731
        for ch in changes:
            key = ch[1]
            if ch[0] == "set":
                stored = pack([key, ch[2]]) if self.packed else ch[2]
                if key in data and data[key] == stored:
                    continue
                data[key] = stored
                out.append([key, ch[2]])
            elif key in data:
                del data[key]
                out.append([key])
        for i in range(0, len(out), BATCH_MAX):
            part = out[i:i + BATCH_MAX]
            self.seq += len(part)
            if len(part) > 1:
                self.ctx.bus.publish(self._delta_topic, BATCH, self._body({"d": part}),
                                     stream=self.stream, seq=self.seq)
            elif len(part[0]) == 2:
                self.ctx.bus.publish(self._delta_topic, UPDATED, self._body({"k": part[0][0], "v": part[0][1]}),
                                     stream=self.stream, seq=self.seq)
            else:
                self.ctx.bus.publish(self._delta_topic, DELETED, self._body({"k": part[0][0]}),
                                     stream=self.stream, seq=self.seq)
        return self.seq

    def delete(self, key: Hashable) -> int | None:
        """Delete ``key``; returns the delta's seq, or None if it was absent."""
        if self._streams:
            self._abandon_streams()
        if key not in self._data:
            return None
        del self._data[key]
        self.seq += 1
        self.ctx.bus.publish(self._delta_topic, DELETED, self._body({"k": key}),
                             stream=self.stream, seq=self.seq)
        return self.seq

    def publish_heartbeat(self) -> None:
        body = {"count": len(self._data)}
        if self.resumes is not None:
            body["resumes"] = list(self.resumes)
        self.ctx.bus.publish(self._hb_topic, HEARTBEAT, self._body(body),
                             stream=self.stream, seq=self.seq)

    def start(self) -> None:
        """Bind the snapshot socket and start serving and heartbeating."""
        sock = self.ctx.zmq.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, 0)  # a snapshot is queued whole, never dropped
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.ctx.endpoints.snapshot(self.stream))
        self._router = AsyncSocket(sock)
        self._tasks = [self.ctx.spawn(self._serve(), name=f"clone-serve {self.stream}"),
                       self.ctx.every(self.heartbeat_interval, self.publish_heartbeat,
                                      name=f"clone-hb {self.stream}")]
        self.publish_heartbeat()

    async def _serve(self) -> None:
        assert self._router is not None
        while True:
            frames = await self._router.recv_multipart()
            if len(frames) != 3 or frames[1] != b"snap":
                self.ctx.counters.drop("bad-snapshot-request", f"{self.stream}: "
                                       f"{len(frames)} frames")
                continue
            try:
                req = _unpack(frames[2])["req"]
            except Exception as exc:
                self.ctx.counters.drop("bad-snapshot-request", f"{self.stream}: {exc!r}")
                continue
            if not self._loaded.is_set() and self.packed:
                self._stream_start(frames[0], req)   # streamed as the store loads (hold)
                continue
            await self._loaded.wait()
            await self._send_snapshot(frames[0], req)

    # -- snapshots streamed while held: what is loaded so far, then each loaded chunk as
    # it comes, the end at release (a packed writer; nothing is set or deleted meanwhile)
    def _stream_start(self, ident: bytes, req: Any) -> None:
        self._streams.append((ident, req))
        self._stream_items(ident, req, list(self._data.values()))

    def _stream_items(self, ident: bytes, req: Any, entries: list) -> None:
        assert self._router is not None
        try:
            for i in range(0, len(entries), self.chunk):
                self._router.sock.send_multipart([ident, b"items", _packed_chunk(req, entries[i:i + self.chunk])],
                                                 zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the reader went away
            self.ctx.counters.drop("snapshot-abandoned", f"{self.stream}: {exc}")
            if (ident, req) in self._streams:
                self._streams.remove((ident, req))

    def _abandon_streams(self) -> None:
        """A change while snapshots stream (not the shard's way): they get no end; the
        readers ask again after their snapshot timeout and get a whole one."""
        self.ctx.counters.drop("snapshot-abandoned", f"{self.stream}: {len(self._streams)} streamed snapshot(s), "
                               f"the table changed while held")
        self._streams = []

    def _end(self, ident: bytes, req: Any, seq: int, session: str, count: int) -> bool:
        assert self._router is not None
        try:
            self._router.sock.send_multipart(
                [ident, b"end", _pack({"req": req, "seq": seq, "session": session, "count": count})], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self.ctx.counters.drop("snapshot-abandoned", f"{self.stream}: {exc}")
            return False
        self.ctx.counters.inc(f"clone.{self.stream}.snapshots")
        return True

    async def _send_snapshot(self, ident: bytes, req: Any) -> None:
        assert self._router is not None
        items = list(self._data.items())  # consistent with self.seq right now
        seq, session = self.seq, self.session
        try:
            for i in range(0, len(items), self.chunk):
                if self.packed:
                    body = _packed_chunk(req, [v for _k, v in items[i:i + self.chunk]])
                else:
                    body = _pack({"req": req, "items": [[k, v] for k, v in items[i:i + self.chunk]]})
                self._router.sock.send_multipart([ident, b"items", body], zmq.NOBLOCK)
                await asyncio.sleep(0)  # let the loop breathe between chunks
            self._router.sock.send_multipart(
                [ident, b"end", _pack({"req": req, "seq": seq, "session": session,
                                       "count": len(items)})], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the reader went away
            self.ctx.counters.drop("snapshot-abandoned", f"{self.stream}: {exc}")
            return
        self.ctx.counters.inc(f"clone.{self.stream}.snapshots")
        self.publish_heartbeat()  # lets the reader confirm at once (common.machines.replica)

    def close(self) -> None:
        if self._tasks and self._loaded.is_set():
            self.ctx.bus.publish(self._hb_topic, GOODBYE, self._body({"count": len(self._data)}),
                                 stream=self.stream, seq=self.seq)
        for t in self._tasks:
            t.cancel()
        self._tasks = []
        if self._router is not None:
            self._router.close(0)
            self._router = None
