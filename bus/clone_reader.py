"""A replica of a Clone stream (bus/clone.py describes the protocol): the shell around
:class:`common.machines.replica.ReplicaReader` - subscribes, fetches snapshots over a
DEALER socket, runs the machine's timer and calls back on changes."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Callable, Hashable

import zmq

from bus import topics
from bus.aio import AsyncSocket
from bus.clone_frames import (
    BATCH,
    DELETED,
    GOODBYE,
    HEARTBEAT,
    SNAPSHOT_VERSION,
    UPDATED,
    _pack,
    _split_chunk,
    _unpack,
    freeze,
)
from common.machines import replica
from common.machines.replica import ReplicaReader

if TYPE_CHECKING:
    from roles.runtime import RoleContext


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
