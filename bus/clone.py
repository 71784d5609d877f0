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

The code: :mod:`bus.clone_writer` (:class:`CloneWriter`), :mod:`bus.clone_reader`
(:class:`CloneReader`) and :mod:`bus.clone_frames` (the message types and the
framing both use); their names stay importable from here.
"""

from __future__ import annotations

from bus.clone_frames import (
    BATCH,
    DELETED,
    GOODBYE,
    HEARTBEAT,
    SNAPSHOT_VERSION,
    UPDATED,
    _pack,
    _packed_chunk,
    _split_chunk,
    _unpack,
    freeze,
)
from bus.clone_reader import CloneReader
from bus.clone_writer import BATCH_MAX, CloneWriter

__all__ = ["BATCH", "BATCH_MAX", "DELETED", "GOODBYE", "HEARTBEAT", "SNAPSHOT_VERSION", "UPDATED",
           "CloneReader", "CloneWriter", "freeze", "_pack", "_packed_chunk", "_split_chunk", "_unpack"]
