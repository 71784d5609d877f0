"""A replica of a single writer's key/value table: the Clone reader, sans-IO.

Theory of operation (ZeroMQ guide chapter 5, "Clone", with one tightening).

The writer gives every change a sequence number (``seq`` + 1), publishes it as a
delta, publishes a heartbeat carrying its current ``seq`` every second, and serves
snapshots ``(items, seq, session)`` on request.  ``session`` changes whenever the
writer process restarts.  The reader:

1. subscribes to the stream first (the shell does that before :meth:`start`), then
   asks for a snapshot (:class:`SnapshotRequested`), buffering every delta and
   heartbeat that arrives meanwhile (state ``awaiting-snapshot``);
2. applies the snapshot, emitting :class:`KeySet`/:class:`KeyDeleted` for what
   differs from the replica it had, then replays the buffered messages of the
   snapshot's session, oldest first, through the rules below (state
   ``confirming``);
3. is **in sync** once a message of that session proves that nothing after the
   snapshot can be missed, and from then on applies deltas in order (``in-sync``).

The tightening is step 3.  Pub/sub subscriptions propagate asynchronously: a delta
published just after the snapshot was taken may have been published before the
reader's subscription reached the writer, and would never arrive.  Messages on one
stream arrive in the order they were published, so receiving a delta ``s`` proves
that every delta from ``s`` on will arrive, and a heartbeat ``h`` that every delta
after ``h`` will.  With a snapshot at ``n`` the replica is complete when the first
such proof is a delta ``s <= n + 1`` or a heartbeat ``h <= n``; a delta beyond
``n + 1`` is a gap and a heartbeat beyond ``n`` means deltas were missed.  (The
writer publishes a heartbeat right after serving a snapshot, so confirming takes
milliseconds, not a heartbeat period.)

Resync (a fresh snapshot; the replica keeps its data until the snapshot arrives,
and :attr:`in_sync` is False meanwhile) happens on:

- a gap: a delta whose ``seq`` is more than one past the replica's;
- a heartbeat ahead of the replica (the deltas in between were lost);
- a delta or heartbeat from another writer session (the writer restarted);
- a snapshot that does not arrive within ``snapshot_timeout`` (asked again; with
  ``now`` given to :meth:`ReplicaReader.snapshot_items`, each chunk that arrives
  restarts the wait, so a large snapshot in progress is not abandoned);
- more than ``max_buffer`` messages buffered while waiting for a snapshot.

A silent writer (issue 11): with ``silent_after`` set (the shell passes a number of
writer heartbeat periods), an in-sync replica that has heard nothing of the stream
for that long is no longer in sync (:class:`SyncLost` ``writer-silent``): the bus
may be down or hung, and changes made meanwhile (deletions, expiries) would not
reach it.  It keeps its data and its position and is in sync again
(:class:`SyncGained`) as soon as a message of the same session proves nothing was
missed (a heartbeat at its ``seq`` or the next delta); anything else resyncs as
above.

Serving while resyncing (issue 11, docs/replica.md): with ``store`` given (a
factory of tables with ``set``/``delete``/``adopt``, e.g.
:class:`common.machines.compact.CompactTable`), the replica *is* such a table and a
snapshot fills a fresh one, which replaces the old in one step
(:class:`Replaced`) instead of one event per key.  With ``keep_serving``, a replica
that was in sync stays in sync through a resync whose cause lost nothing it holds -
the writer restarted (a new session: its state is reloaded from the same committed
store), a snapshot that is late, a buffer overflow after a complete snapshot - and
answers from its current, complete data until the new snapshot is swapped in; a gap
or a heartbeat ahead (deltas lost) ends it at once, and so does the silent-writer
bound.

A writer that stops cleanly says so (:meth:`ReplicaReader.goodbye`, its last
``seq``): a replica in sync at that ``seq`` holds the final state of that session,
which nobody can change until a new writer starts from the same committed store; so
the silent bound is ``restart_after`` (longer: a process restart) instead of
``silent_after`` until anything is heard again (the new writer's first heartbeat
then resyncs as above, serving meanwhile with ``keep_serving``).

A writer that resumes its stream (issue 11, docs/replica.md): a writer process that
reloads a committed store whose last published position it persisted with the
changes - session ``P`` at ``seq`` ``M`` - starts a session of its own ``Q`` and says,
in every heartbeat, that ``Q`` resumes ``(P, M)``.  Every session is written by one
process only, so ``(P, M)`` names one state; a replica at exactly ``(P, M)`` holds it
and continues in ``Q`` without a snapshot (:class:`Resumed`; the heartbeat then
proves, as any heartbeat does, that every later delta of ``Q`` will arrive).  Any
other position - behind ``M`` (changes committed but never published, or lost), ahead
of it (a store restored from a backup), another lineage - is a session change as
before; a delta of ``Q`` heard before any of its heartbeats too.

Keys must be hashable (str, bytes, int, tuples of them); values anything.
Inputs return lists of events; nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Iterable

IDLE = "idle"
AWAITING = "awaiting-snapshot"
CONFIRMING = "confirming"
IN_SYNC = "in-sync"

# resync reasons (also the counter names the shell uses)
GAP = "gap"
HEARTBEAT_AHEAD = "heartbeat-ahead"
SESSION_CHANGED = "writer-session-changed"
SNAPSHOT_TIMEOUT = "snapshot-timeout"
WRITER_SILENT = "writer-silent"
BUFFER_OVERFLOW = "buffer-overflow"


@dataclass(frozen=True, slots=True)
class SnapshotRequested:
    """Send a snapshot request tagged ``request``; ignore replies to older ones."""
    request: int


@dataclass(frozen=True, slots=True)
class KeySet:
    key: Hashable
    value: Any


@dataclass(frozen=True, slots=True)
class KeyDeleted:
    key: Hashable


@dataclass(frozen=True, slots=True)
class Replaced:
    """A snapshot was swapped in whole (store mode): ``count`` keys now."""
    count: int


@dataclass(frozen=True, slots=True)
class Resumed:
    """A resumed writer continues the replica's position: ``session`` now, no snapshot."""
    session: str
    seq: int


@dataclass(frozen=True, slots=True)
class SyncGained:
    seq: int
    session: str


@dataclass(frozen=True, slots=True)
class SyncLost:
    reason: str


Event = SnapshotRequested | KeySet | KeyDeleted | Replaced | Resumed | SyncGained | SyncLost

# resyncs that lose nothing the replica holds: it may keep answering (keep_serving)
KEEPS_SERVING = frozenset({SESSION_CHANGED, SNAPSHOT_TIMEOUT, BUFFER_OVERFLOW})


class ReplicaError(Exception):
    """The caller drove the machine in a way it does not support."""


@dataclass(frozen=True, slots=True)
class _Delta:
    session: str
    seq: int
    key: Hashable
    value: Any
    deleted: bool


@dataclass(frozen=True, slots=True)
class _Heartbeat:
    session: str
    seq: int
    resumes: tuple | None = None    # (the session, the seq) this writer's session continues


class ReplicaReader:
    """The reader side of one stream.  See the module docstring."""

    def __init__(self, *, snapshot_timeout: float = 5.0, max_buffer: int = 100_000,
                 silent_after: float | None = None, store=None, keep_serving: bool = False,
                 restart_after: float | None = None) -> None:
        self.snapshot_timeout = snapshot_timeout
        self._store = store                  # factory of tables (store mode), or None: a dict
        self.keep_serving = keep_serving
        self.restart_after = restart_after   # the silent bound after a writer's goodbye
        self._parted = False                 # the writer said goodbye at our seq
        self.serving = False                 # resyncing, answering from the current data
        self.bad_values = 0                  # store mode: values the table refused
        self.silent_after = silent_after     # seconds without a message: not in sync
        self.silent = False
        self._heard: float | None = None
        self.max_buffer = max_buffer
        self.state = IDLE
        self.data: Any = {} if store is None else store()
        self.seq: int | None = None          # the writer seq the replica reflects
        self.session: str | None = None      # the writer session it came from
        self.resyncs: dict[str, int] = {}    # reason -> count
        self.resumed = 0                     # writer sessions continued without a snapshot
        self._request = 0
        self._deadline: float | None = None
        self._buffer: list[_Delta | _Heartbeat] = []
        self._overflow = False
        self._snap: Any = self._fresh()

    def _fresh(self):
        return {} if self._store is None else self._store()

    @property
    def in_sync(self) -> bool:
        """True while the replica is known to equal the writer's table at ``seq``, or
        (``serving``) to be a complete, committed state of it while a resync runs."""
        return (self.state == IN_SYNC or self.serving) and not self.silent

    @property
    def request(self) -> int:
        """The id of the snapshot request currently awaited (0 before start)."""
        return self._request

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> list[Event]:
        if self.state != IDLE:
            raise ReplicaError("already started")
        return self._resync(now, None)

    def delta(self, session: str, seq: int, key: Hashable, value: Any = None, *,
              deleted: bool = False, now: float) -> list[Event]:
        """A published change: ``key`` set to ``value``, or deleted."""
        return self._feed(_Delta(session, seq, key, value, deleted), now)

    def heartbeat(self, session: str, seq: int, now: float, resumes: tuple | None = None) -> list[Event]:
        """The writer's periodic statement of its current ``seq``; ``resumes``: the
        ``(session, seq)`` a resumed writer continues (see the module docstring)."""
        return self._feed(_Heartbeat(session, seq, resumes), now)

    def goodbye(self, session: str, seq: int, now: float) -> list[Event]:
        """The writer is stopping; ``seq`` is its last.  See the module docstring."""
        if self.state != IN_SYNC or self.silent or session != self.session:
            return []
        assert self.seq is not None
        self._heard = now
        if seq > self.seq:
            return self._resync(now, HEARTBEAT_AHEAD)
        if seq == self.seq and self.restart_after is not None:
            self._parted = True
        return []

    def _quiet_bound(self) -> float | None:
        return self.restart_after if self._parted else self.silent_after

    def snapshot_items(self, request: int, items: Iterable[tuple[Hashable, Any]],
                       now: float | None = None) -> None:
        """One chunk of the snapshot answering ``request`` (stale requests ignored);
        with ``now``, the snapshot timeout counts from this chunk on."""
        if self.state == AWAITING and request == self._request:
            if now is not None:
                self._deadline = now + self.snapshot_timeout
            if self._store is None:
                self._snap.update(items)
                return
            fill = getattr(self._snap, "fill", None)
            if fill is not None:      # a chunk at once (CompactTable.fill: no per-key work)
                self.bad_values += fill(items)
                return
            for k, v in items:
                try:
                    self._snap.set(k, v)
                except (KeyError, TypeError, ValueError, AttributeError):
                    self.bad_values += 1

    def snapshot_waiting(self, request: int, now: float) -> None:
        """The fetch answering ``request`` waits for its turn on this host (the
        shell's snapshot gate), not for the writer: the snapshot timeout counts from
        ``now``."""
        if self.state == AWAITING and request == self._request:
            self._deadline = now + self.snapshot_timeout

    @property
    def takes_encoded(self) -> bool:
        """Store mode with a table that inserts encoded values (``load``): a snapshot's
        values may be handed as their msgpack bytes (:meth:`snapshot_encoded`)."""
        return self._store is not None and hasattr(self._snap, "load")

    def snapshot_encoded(self, request: int, items: Iterable[tuple[Hashable, bytes]],
                         now: float | None = None) -> None:
        """:meth:`snapshot_items` with each value as its msgpack bytes, as a packed
        writer sends it (only when :attr:`takes_encoded`): the table inserts them
        without decoding each (:meth:`CompactTable.load
        <common.machines.compact.CompactTable.load>`, the same table as ``set``)."""
        if self.state == AWAITING and request == self._request:
            if now is not None:
                self._deadline = now + self.snapshot_timeout
            self.bad_values += len(self._snap.load(items))

    def snapshot_end(self, request: int, session: str, seq: int, now: float) -> list[Event]:
        """The snapshot answering ``request`` is complete: the writer was at ``seq``."""
        if self.state != AWAITING or request != self._request:
            return []
        if self._store is None:
            events = self._replace(self._snap)
        else:
            self.data.adopt(self._snap)
            events = [Replaced(len(self.data))]
        self._snap = self._fresh()
        self.seq = seq
        self.session = session
        self._deadline = None
        self._heard = now
        self.state = CONFIRMING
        buffered, self._buffer = self._buffer, []
        if self._overflow:
            self._overflow = False
            return events + self._resync(now, BUFFER_OVERFLOW)
        for msg in buffered:
            if msg.session != self.session and not self._continues(msg):
                continue  # an older writer's (or a newer one's: its heartbeat will come)
            events += self._live(msg, now)
            if self.state == AWAITING:  # the replay found a gap: stop here
                break
        return events

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` next wants to run, or None."""
        bound = self._quiet_bound()
        if (self.state == IN_SYNC or self.serving) and not self.silent and bound is not None \
                and self._heard is not None:
            quiet = self._heard + bound
            return quiet if self._deadline is None else min(quiet, self._deadline)
        return self._deadline

    def handle_timer(self, now: float) -> list[Event]:
        if self._deadline is not None and now >= self._deadline and self.state == AWAITING:
            return self._resync(now, SNAPSHOT_TIMEOUT)
        bound = self._quiet_bound()
        if (self.state == IN_SYNC or self.serving) and not self.silent and bound is not None \
                and self._heard is not None and now >= self._heard + bound:
            if self.state != IN_SYNC:      # resyncing: the new snapshot brings it back
                self.serving = False
            else:
                self.silent = True
            self.resyncs[WRITER_SILENT] = self.resyncs.get(WRITER_SILENT, 0) + 1
            return [SyncLost(WRITER_SILENT)]
        return []

    # --------------------------------------------------------------- internals

    def _feed(self, msg: _Delta | _Heartbeat, now: float) -> list[Event]:
        self._heard = now
        self._parted = False
        if self.state == IDLE:
            return []
        if self.state == AWAITING:
            if len(self._buffer) >= self.max_buffer:
                self._overflow = True
                self._buffer.clear()
            elif not self._overflow:
                self._buffer.append(msg)
            return []
        return self._live(msg, now)

    def _live(self, msg: _Delta | _Heartbeat, now: float) -> list[Event]:
        """A message in state confirming or in-sync."""
        events: list[Event] = []
        if msg.session != self.session:
            if not self._continues(msg):
                return self._resync(now, SESSION_CHANGED)
            self.session = msg.session      # the same state, a new writer: no snapshot
            self.resumed += 1
            events.append(Resumed(msg.session, self.seq))
        assert self.seq is not None
        if isinstance(msg, _Heartbeat):
            if msg.seq > self.seq:
                return events + self._resync(now, HEARTBEAT_AHEAD)
        else:
            if msg.seq > self.seq + 1:
                return events + self._resync(now, GAP)
            if msg.seq == self.seq + 1:
                events.append(self._apply(msg))
            # else: already in the snapshot (or a duplicate)
        if self.state == CONFIRMING or (self.state == IN_SYNC and self.silent):
            self.state, self.silent, self.serving = IN_SYNC, False, False
            events.append(SyncGained(self.seq, self.session))
        return events

    def _continues(self, msg) -> bool:
        """Does ``msg`` come from a writer that resumed exactly the replica's position?"""
        return (type(msg) is _Heartbeat and msg.resumes is not None and self.seq is not None
                and tuple(msg.resumes) == (self.session, self.seq))

    def _apply(self, d: _Delta) -> Event:
        self.seq = d.seq
        if self._store is not None:
            if not d.deleted:
                try:
                    self.data.set(d.key, d.value)
                    return KeySet(d.key, d.value)
                except (KeyError, TypeError, ValueError, AttributeError):
                    self.bad_values += 1   # not kept: never answered from an old value
            self.data.delete(d.key)
            return KeyDeleted(d.key)
        if d.deleted:
            self.data.pop(d.key, None)
            return KeyDeleted(d.key)
        self.data[d.key] = d.value
        return KeySet(d.key, d.value)

    def _replace(self, snap: dict[Hashable, Any]) -> list[Event]:
        """Make ``data`` equal ``snap``; the events say what changed."""
        old = self.data
        events: list[Event] = [KeyDeleted(k) for k in old if k not in snap]
        missing = object()
        events += [KeySet(k, v) for k, v in snap.items() if old.get(k, missing) != v]
        self.data = snap
        return events

    def _resync(self, now: float, reason: str | None) -> list[Event]:
        events: list[Event] = []
        keep = self.keep_serving and self.in_sync and reason in KEEPS_SERVING
        if reason is not None:
            self.resyncs[reason] = self.resyncs.get(reason, 0) + 1
            if self.in_sync and not keep:   # (a silent replica said so already)
                events.append(SyncLost(reason))
        self.state, self.silent, self.serving = AWAITING, False, keep
        self._request += 1
        self._deadline = now + self.snapshot_timeout
        self._buffer = []
        self._overflow = False
        self._snap = self._fresh()
        events.append(SnapshotRequested(self._request))
        return events
