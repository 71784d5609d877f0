"""A restarted shard resumes its Clone stream (issue 11, docs/replica.md).

The shard persists its stream's position - its session and the ``seq`` its changes
lead to - in its SQLite store, in the same transaction as the changes
(:attr:`roles.ms_store.RegistrationStore.position_of`).  It publishes a change only
after committing it, so the persisted ``seq`` is never behind what readers saw, and
the store's rows are the state of that session at that ``seq``.  A restarted shard
loads those rows and resumes there (:meth:`bus.clone.CloneWriter.resume`): a new
session of its own that says which position it continues; a worker whose replica is
at exactly that position needs no snapshot (common.machines.replica).

The position names one state because each session is written by one process only:
the one that created it.  A shard persists its own session (at the ``seq`` it
starts from) before it publishes anything, so a store loaded twice (a backup
restored) starts two sessions, and a replica that followed one cannot continue the
other.  What makes a store unresumable: a change committed by anything but a
shard that persists its position (:meth:`RegistrationStore.apply` without
``position_of`` deletes it), another value format (:data:`FORMAT`), rows the
reload could not read (the loaded table is then not the state the position names).
"""

from __future__ import annotations

# the form of the published values (common.machines.regtable.entry_value, as the
# shard's CloneWriter holds them): a shard whose values differ from those of the
# session it would continue must not continue it.  Bump when that form changes.
FORMAT = 1


def resume(writer, store) -> bool:
    """Before ``writer.start()``: continue the store's persisted position if it has
    one of this :data:`FORMAT`; persist the writer's own session at its ``seq``; from
    then on every commit of ``store`` persists the position its changes lead to.
    Returns whether a position was resumed."""
    pos = store.stream_position()
    resumed = (pos is not None and pos[2] == FORMAT and isinstance(pos[0], str) and type(pos[1]) is int
               and pos[1] >= 0)
    if resumed:
        writer.resume(pos[0], pos[1])
    store.save_stream_position(writer.session, writer.seq, FORMAT)
    store.position_of = lambda changes: (writer.session, writer.seq_after(changes), FORMAT)
    return resumed


def unresumable(writer, store) -> None:
    """The loaded table is not the state the persisted position names (rows were
    skipped): continue nothing (a new session: the workers fetch a snapshot) and leave
    no position behind (every later commit deletes it)."""
    if writer.resumes is not None:
        writer.new_session()
    store.position_of = None
    store.forget_stream_position()
