"""A shard's reload of its store, in chunks, taking Map-Registers meanwhile (issue 11).

The shard loads its SQLite store into its table (:class:`~common.machines.shardtable.
ShardTable`) and its Clone writer chunk by chunk, yielding to the event loop between
chunks.  When its stream resumed (the workers hold the store's state already: they
carry on answering from it), it need not wait for the whole store to take changes:

- a Map-Register's record is judged against its own EID-prefix's stored
  registrations only (:meth:`common.machines.msrecords.RecordJudge._record`), so before
  a record is judged :meth:`Reload.fault_in` loads that prefix's rows from the store
  (one indexed range query), unless the prefix was loaded that way before;
- the bulk reload reads the store as it was when the reload began (its own SQLite
  connection: WAL keeps that state for it however many commits follow,
  :meth:`roles.ms_store.RegistrationStore.snapshot_chunks`), and skips every row of a
  prefix loaded on demand: such a prefix may have changed since (a registration
  replaced, withdrawn) and the table already holds it as it is now.

Every other row is unchanged since the read began: only a judged record changes a
prefix (and faults it in first), and expiry only lapses rows already loaded.  So the
table is, at every point, the store's committed state restricted to what was loaded,
and complete once the bulk read ends.  docs/replica.md says what the workers see.
"""

from __future__ import annotations

import time

from common.wire.eidtext import format_eid


class Reload:
    """One reload of ``store`` into ``ms`` (a MapServer) and ``writer`` (a packed
    CloneWriter).  ``early``: take Map-Registers while loading (``ms.fault_in`` is set
    until :meth:`finish`)."""

    def __init__(self, ms, store, writer, *, early: bool, chunk: int = 2000, clock=time.monotonic) -> None:
        self.ms, self.store, self.writer, self.clock = ms, store, writer, clock
        self.early = early
        self.bad: list[str] = []          # keys of rows that could not be read
        self.loaded = 0                   # registrations loaded, both ways
        self.faulted: set[str] = set()    # EID-prefix texts loaded on demand
        self.faulted_rows = 0
        self._raws: dict = {}             # the records of one Map-Register share its bytes
        self._chunks = store.snapshot_chunks(chunk) if early else store.load_chunks(chunk, decode=False)
        if early:
            ms.fault_in = self.fault_in

    def insert(self, rows: list) -> int:
        """Load ``(key, value bytes, raw)`` rows into the table and the writer; returns
        how many were registrations (the others are remembered in :attr:`bad`)."""
        raws = self._raws
        rows = [(k, v, raws.setdefault(raw, raw) if raw else raw) for k, v, raw in rows]
        skipped = self.ms.restore(rows, {}, self.clock())
        self.bad.extend(skipped)
        skip = set(skipped)
        self.writer.extend_encoded((k, v) for k, v, _r in rows if k not in skip)
        n = len(rows) - len(skipped)
        self.loaded += n
        return n

    def fault_in(self, eid) -> None:
        """Load ``eid``'s stored registrations now, if the bulk read has not: a record
        for that prefix is about to be judged."""
        text = format_eid(eid)
        if text in self.faulted:
            return
        self.faulted.add(text)
        get = self.ms.table.get
        rows = [r for r in self.store.rows_of(text) if get(r[0]) is None]
        if rows:
            self.faulted_rows += self.insert(rows)

    def step(self) -> bool:
        """Load the next chunk of the bulk read; False when it has ended."""
        rows = next(self._chunks, None)
        if rows is None:
            return False
        if self.faulted:          # loaded already, and maybe changed since the read began
            faulted = self.faulted
            rows = [r for r in rows if r[0].rpartition("|")[0] not in faulted]
        self.insert(rows)
        return True

    def finish(self) -> None:
        """The whole store is loaded: no more loading on demand."""
        self.ms.fault_in = None
        self._raws = {}
        self._chunks.close()
