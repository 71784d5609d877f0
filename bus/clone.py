"""Clone streams (ZeroMQ guide ch. 5): one writer's key/value table, replicated.

:class:`CloneWriter` is the single writer of stream ``S``: every change is
published on ``S.delta`` with ``seq`` + 1, a heartbeat with the current ``seq`` goes
out on ``S.hb`` every interval (and right after each snapshot it serves), and
snapshots are served over a ROUTER bound on ``snap-S.sock``.
:class:`CloneReader` keeps a replica with :class:`common.machines.replica.ReplicaReader`
(the pure machine: buffering, gaps, sessions, in-sync) and calls back on changes.

Bus messages (envelope header ``stream = S``, ``seq`` set; ``src.session`` is the
writer session):

- ``kv.updated``  on ``S.delta``, body ``{"k": key, "v": value}``
- ``kv.deleted``  on ``S.delta``, body ``{"k": key}``
- ``kv.batch``    on ``S.delta``, body ``{"d": [[key, value] or [key], ...]}``: several
  changes in one message (:meth:`CloneWriter.apply`), ``[key, value]`` an update and
  ``[key]`` a deletion; header ``seq`` is the last one's, the i-th of n has ``seq - n + 1
  + i``.  A reader takes each as the ``kv.updated`` / ``kv.deleted`` it stands for (a
  reader that does not know the type ignores it and resyncs at the next message: a gap)
- ``kv.heartbeat`` on ``S.hb``,   body ``{"count": n}`` (header ``seq`` = current), plus
  ``"resumes": [session, seq]`` from a writer that resumed a persisted position
  (:meth:`CloneWriter.resume`; readers at exactly that position need no snapshot)
- ``kv.goodbye``   on ``S.hb``,   body ``{"count": n}`` (header ``seq`` = the last: the
  writer stops; readers allow a restart's silence, common.machines.replica)

Snapshot socket (DEALER -> ROUTER), all bodies msgpack maps:

- request ``[b"snap", {"v": 1, "req": r}]``
- replies ``[b"items", {"req": r, "items": [[k, v], ...]}]`` (zero or more chunks)
  then ``[b"end", {"req": r, "seq": n, "session": s, "count": c}]``

The stream's session is the writer process's (``src.session``) unless the writer
chose another (:meth:`CloneWriter.new_session`): then every message body carries it
as ``"s"`` (and the snapshot's ``end`` says it).

Keys are str, bytes, int or tuples of those (msgpack arrays arrive as tuples);
values anything msgpack-able (arrays arrive as lists).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterable

import msgpack
import zmq

from bus import topics
from bus.aio import AsyncSocket
from common.machines import replica
from common.machines.replica import ReplicaReader

if TYPE_CHECKING:
    from roles.runtime import RoleContext

SNAPSHOT_VERSION = 1
UPDATED = "kv.updated"
DELETED = "kv.deleted"
BATCH = "kv.batch"         # several changes in one message (CloneWriter.apply)
BATCH_MAX = 1024           # changes per kv.batch message at most
HEARTBEAT = "kv.heartbeat"
GOODBYE = "kv.goodbye"     # the writer is stopping (header seq = its last): see replica


def freeze(key: Any) -> Hashable:
    """A decoded key made hashable again (msgpack arrays come back as lists)."""
    if isinstance(key, list):
        return tuple(freeze(k) for k in key)
    return key


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(frame: bytes) -> Any:
    return msgpack.unpackb(frame, raw=False, strict_map_key=False)


def _packed_chunk(req: Any, entries: list[bytes]) -> bytes:
    """``_pack({"req": req, "items": [[k, v], ...]})`` from entries already packed as
    ``[k, v]`` (the same bytes; msgpack arrays are a header then their elements)."""
    n = len(entries)
    head = bytes([0x90 | n]) if n < 16 else (b"\xdc" + n.to_bytes(2, "big") if n < 1 << 16
                                             else b"\xdd" + n.to_bytes(4, "big"))
    return b"".join([b"\x82", _pack("req"), _pack(req), _pack("items"), head, *entries])


_SPLIT_ERRORS = (ValueError, TypeError, msgpack.UnpackException)   # (OutOfData, ExtraData, FormatError: ValueError)


def _split_chunk(frame: bytes) -> tuple[Any, list] | None:
    """A snapshot chunk ``{"req": r, "items": [[k, v], ...]}`` read as ``(r, [(k,
    v's msgpack bytes), ...])``: the values are not decoded (a store-mode replica
    inserts them encoded, common.machines.compactload).  None when the chunk is laid
    out otherwise or does not decode (the caller then decodes it whole)."""
    up = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(frame), 1))
    try:
        up.feed(frame)
        if up.read_map_header() != 2 or up.unpack() != "req":
            return None
        req = up.unpack()
        if up.unpack() != "items":
            return None
        rah, unpack, tell, skip = up.read_array_header, up.unpack, up.tell, up.skip
        out = []
        for _ in range(rah()):
            if rah() != 2:
                return None
            k = unpack()
            if type(k) is not str:
                k = freeze(k)
                hash(k)
            at = tell()
            skip()
            out.append((k, frame[at:tell()]))
        if tell() != len(frame):
            return None
    except _SPLIT_ERRORS:
        return None
    return req, out


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


def _resumes(body: Any) -> tuple | None:
    """A heartbeat's ``"resumes": [session, seq]``, or None (absent or malformed)."""
    r = body.get("resumes") if isinstance(body, dict) else None
    if isinstance(r, list) and len(r) == 2 and isinstance(r[0], str) and type(r[1]) is int:
        return r[0], r[1]
    return None


class CloneReader:
    """A replica of stream ``stream``; ``on_set(key, value)``, ``on_delete(key)``.

    ``on_sync(seq)`` is called when the replica becomes in sync, ``on_unsync(reason)``
    when it stops being so.  Callbacks are plain functions.
    """

    def __init__(self, ctx: RoleContext, stream: str,
                 on_set: Callable[[Hashable, Any], None] | None = None,
                 on_delete: Callable[[Hashable], None] | None = None, *,
                 on_sync: Callable[[int], None] | None = None,
                 on_unsync: Callable[[str], None] | None = None,
                 snapshot_timeout: float | None = None, max_buffer: int = 100_000,
                 silent_heartbeats: int | None = None, store=None, keep_serving: bool = False,
                 on_replace: Callable[[int], None] | None = None,
                 restart_heartbeats: int | None = None, snapshot_gate=None) -> None:
        self.ctx = ctx
        # snapshot_gate(stream, waiting): an async context manager a snapshot fetch
        # holds (turns among a host's workers, roles/snapgate.py); None: no turns
        self.snapshot_gate = snapshot_gate
        self.on_replace = on_replace    # store mode: a snapshot was swapped in (key count)
        self.stream = topics.stream_name(stream)
        self.on_set = on_set
        self.on_delete = on_delete
        self.on_sync = on_sync
        self.on_unsync = on_unsync
        timeout = snapshot_timeout or ctx.timer("snapshot_timeout", 5.0)
        # silent_heartbeats: writer heartbeat periods without a message after which the
        # replica is no longer in sync (common.machines.replica); None: never
        silent = (silent_heartbeats * ctx.timer("heartbeat_interval", 1.0)
                  if silent_heartbeats else None)
        # after the writer's goodbye: the silence of its restart (None: as silent)
        restart = (restart_heartbeats * ctx.timer("heartbeat_interval", 1.0)
                   if restart_heartbeats and silent else None)
        # store: a factory of tables the replica is kept in (common.machines.replica, store
        # mode: snapshots fill a fresh one, swapped in whole); keep_serving: answer from it
        # while a writer restart resyncs
        self.machine = ReplicaReader(snapshot_timeout=timeout, max_buffer=max_buffer, silent_after=silent,
                                     store=store, keep_serving=keep_serving, restart_after=restart)
        self._bad = 0
        self._sub = None
        self._fetch: asyncio.Task | None = None
        self._timer: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self.last_heard: float | None = None  # time.monotonic() of the stream's last message

    @property
    def in_sync(self) -> bool:
        """True while the replica is known complete (see :mod:`common.machines.replica`).  It
        stays True if the writer goes quiet unless ``silent_heartbeats`` was given."""
        return self.machine.in_sync

    @property
    def data(self) -> dict[Hashable, Any]:
        return self.machine.data

    @property
    def seq(self) -> int | None:
        return self.machine.seq

    def start(self) -> None:
        """Subscribe, then ask for the first snapshot."""
        self._sub = self.ctx.bus.subscribe(self.stream, self._on_message)
        self._timer = self.ctx.spawn(self._run_timer(), name=f"clone-timer {self.stream}")
        self._handle(self.machine.start(time.monotonic()))

    def _on_message(self, _topic: str, header: Any, body: Any) -> None:
        now = self.last_heard = time.monotonic()
        session = header.src.session
        if isinstance(body, dict) and "s" in body:
            session = body["s"]
            if not isinstance(session, str):
                self.ctx.counters.drop("bad-clone-delta", f"{self.stream}: {header.type}: session")
                return
        if header.type == HEARTBEAT:
            if header.seq is not None:
                self._handle(self.machine.heartbeat(session, header.seq, now, _resumes(body)))
            return
        if header.type == GOODBYE:
            if header.seq is not None:
                self._handle(self.machine.goodbye(session, header.seq, now))
                self.ctx.log.info("clone %s: the writer stops at seq %s; answering from the replica "
                                  "until its successor's snapshot (at most %s s of silence)", self.stream,
                                  header.seq, self.machine.restart_after)
            return
        if header.type == BATCH:
            self._on_batch(header, body, session, now)
            return
        if header.type not in (UPDATED, DELETED):
            return  # unknown types are ignored
        if header.seq is None or not isinstance(body, dict) or "k" not in body:
            self.ctx.counters.drop("bad-clone-delta", f"{self.stream}: {header.type}")
            return
        try:
            key = freeze(body["k"])
            hash(key)
        except TypeError:
            self.ctx.counters.drop("bad-clone-delta", f"{self.stream}: unhashable key")
            return
        self._handle(self.machine.delta(session, header.seq, key, body.get("v"),
                                        deleted=header.type == DELETED, now=now))

    def _on_batch(self, header: Any, body: Any, session: str, now: float) -> None:
        """A ``kv.batch``: each change as the ``kv.updated`` / ``kv.deleted`` message it
        stands for, in order (a malformed one dropped as such a message would be)."""
        d = body.get("d") if isinstance(body, dict) else None
        if header.seq is None or type(header.seq) is not int or not isinstance(d, list) or not d:
            self.ctx.counters.drop("bad-clone-delta", f"{self.stream}: {header.type}")
            return
        first = header.seq - len(d) + 1
        delta = self.machine.delta
        for i, it in enumerate(d):
            if not isinstance(it, list) or len(it) not in (1, 2):
                self.ctx.counters.drop("bad-clone-delta", f"{self.stream}: {header.type} item {i}")
                continue
            try:
                key = freeze(it[0])
                hash(key)
            except TypeError:
                self.ctx.counters.drop("bad-clone-delta", f"{self.stream}: unhashable key")
                continue
            self._handle(delta(session, first + i, key, it[1] if len(it) == 2 else None,
                               deleted=len(it) == 1, now=now))

    def _handle(self, events: list[replica.Event]) -> None:
        if self.machine.bad_values != self._bad:
            self.ctx.counters.drop("bad-clone-value", f"{self.stream}: {self.machine.bad_values - self._bad} "
                                   f"value(s) the replica refused (not kept)")
            self._bad = self.machine.bad_values
        for ev in events:
            if isinstance(ev, replica.KeySet):
                if self.on_set:
                    self.on_set(ev.key, ev.value)
            elif isinstance(ev, replica.KeyDeleted):
                if self.on_delete:
                    self.on_delete(ev.key)
            elif isinstance(ev, replica.Replaced):
                self.ctx.counters.inc(f"clone.{self.stream}.swapped")
                if self.on_replace:
                    self.on_replace(ev.count)
            elif isinstance(ev, replica.SnapshotRequested):
                if self._fetch is not None and self._fetch is not asyncio.current_task():
                    self._fetch.cancel()
                self._fetch = self.ctx.spawn(self._fetch_snapshot(ev.request),
                                             name=f"clone-snapshot {self.stream}")
                self._wake.set()  # re-arm the timer
            elif isinstance(ev, replica.Resumed):
                self.ctx.counters.inc(f"clone.{self.stream}.resumed")
                self.ctx.log.info("clone %s: the writer resumed at seq %d (session %s): no snapshot needed",
                                  self.stream, ev.seq, ev.session)
            elif isinstance(ev, replica.SyncGained):
                self.ctx.counters.inc(f"clone.{self.stream}.synced")
                self.ctx.log.info("clone %s: in sync at seq %d (%d keys)", self.stream,
                                  ev.seq, len(self.machine.data))
                if self.on_sync:
                    self.on_sync(ev.seq)
            elif isinstance(ev, replica.SyncLost):
                self.ctx.counters.inc(f"clone.{self.stream}.resync.{ev.reason}")
                if ev.reason == replica.WRITER_SILENT:
                    self.ctx.log.warning("clone %s: nothing heard from the writer for %.1f s; "
                                         "not in sync until it is heard again", self.stream,
                                         self.machine.silent_after)
                else:
                    self.ctx.log.warning("clone %s: out of sync (%s), fetching a snapshot",
                                         self.stream, ev.reason)
                if self.on_unsync:
                    self.on_unsync(ev.reason)

    async def _fetch_snapshot(self, request: int) -> None:
        if self.snapshot_gate is None:
            return await self._fetch_now(request)
        # a turn among the host's workers first (roles/snapgate.py), the wait not
        # counted as the writer's
        async with self.snapshot_gate(self.stream, lambda: self.machine.snapshot_waiting(request, time.monotonic())):
            return await self._fetch_now(request)

    async def _fetch_now(self, request: int) -> None:
        # A fresh DEALER per request: nothing queued for an older request lingers.
        sock = self.ctx.zmq.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        prefix = self.ctx.endpoints.connect_snapshot(sock, self.stream)  # satellite: via the bus host
        asock = AsyncSocket(sock)
        try:
            await asock.send_multipart(prefix + [b"snap", _pack({"v": SNAPSHOT_VERSION, "req": request})])
            while True:
                frames = await asock.recv_multipart()
                split = (_split_chunk(frames[1]) if len(frames) > 1 and frames[0] == b"items"
                         and self.machine.takes_encoded else None)
                if split is not None:    # values handed encoded: the table inserts them as they are
                    if split[0] == request:
                        self.machine.snapshot_encoded(request, split[1], time.monotonic())
                        self._handle([])     # counts refused values
                        await asyncio.sleep(0)
                    continue
                try:
                    kind, body = frames[0], _unpack(frames[1])
                    if body["req"] != request:
                        continue
                    if kind == b"items":
                        self.machine.snapshot_items(
                            request, ((freeze(k), v) for k, v in body["items"]), time.monotonic())
                        self._handle([])     # counts refused values
                        await asyncio.sleep(0)   # a chunk at a time: the loop keeps answering
                    elif kind == b"end":
                        self._handle(self.machine.snapshot_end(
                            request, body["session"], body["seq"], time.monotonic()))
                        return
                except (IndexError, KeyError, TypeError, ValueError) as exc:
                    self.ctx.counters.drop("bad-snapshot", f"{self.stream}: {exc!r}")
        finally:
            asock.close(0)
            if self._fetch is asyncio.current_task():
                self._fetch = None

    async def _run_timer(self) -> None:
        while True:
            self._wake.clear()
            deadline = self.machine.get_timer()
            delay = 1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(self._wake.wait(), min(delay, 1.0))
            except asyncio.TimeoutError:
                pass
            self._handle(self.machine.handle_timer(time.monotonic()))

    def close(self) -> None:
        if self._sub is not None:
            self._sub.cancel()
        for t in (self._fetch, self._timer):
            if t is not None:
                t.cancel()
