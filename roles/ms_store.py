"""The Map-Server's durable registration store: SQLite in WAL mode.

The Map-Server is its only writer.  Every content change is committed here before
the Map-Notify that acknowledges it is sent (DESIGN.md 5); with
``synchronous=NORMAL`` a committed transaction survives a killed process, with
``FULL`` also a power loss.  Refreshes that change nothing are not written: a
restarted Map-Server gives every loaded registration one grace period instead.
The Map-Register as received is kept beside its registration, so it can be
replayed to a peer that wants proof (late joiners in push mode).
"""

from __future__ import annotations

import os
import sqlite3
import threading

from itertools import groupby
from operator import itemgetter

import msgpack

from roles.hostfiles import check_private_file, open_private

SCHEMA = """
CREATE TABLE IF NOT EXISTS registration (key TEXT PRIMARY KEY, value BLOB NOT NULL, raw BLOB);
CREATE TABLE IF NOT EXISTS nonce (key TEXT PRIMARY KEY, nonce TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stream_position (id INTEGER PRIMARY KEY CHECK (id = 0),
    session TEXT NOT NULL, seq INTEGER NOT NULL, format INTEGER NOT NULL);
"""

# one Packer for the committing connection's values (msgpack.packb makes one per call);
# apply runs on the event loop only
_packb = msgpack.Packer(use_bin_type=True).pack


class RegistrationStore:
    def __init__(self, path: str, synchronous: str = "normal") -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        # The store is created 0600 through no symlink; SQLite gives its -wal and -shm
        # files the database file's mode.  Raises roles.hostfiles.UnsafePath.
        for p in (path + "-wal", path + "-shm"):
            check_private_file(p)
        os.close(open_private(path))
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        # checkpoints (the fsyncs of WAL mode) are not run by the committing
        # connection: the role runs :meth:`checkpoint` beside the event loop, so a
        # group commit never waits for one (see the shell's checkpoint task)
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        self.db.executescript(SCHEMA)
        self._ckpt: sqlite3.Connection | None = None
        self._ckpt_lock = threading.Lock()
        self._closed = False
        # the Clone stream's position (issue 11, roles/stream_resume.py): a callable
        # ``(changes) -> (session, seq, format)`` whose answer :meth:`apply` commits with
        # the changes; without it, a change makes the store unresumable
        self.position_of = None

    def load(self) -> tuple[list, dict]:
        rows = [(k, msgpack.unpackb(v), raw) for k, v, raw in
                self.db.execute("SELECT key, value, raw FROM registration")]
        nonces = {k: int(n) for k, n in self.db.execute("SELECT key, nonce FROM nonce")}
        return rows, nonces

    def load_chunks(self, size: int = 5000, decode: bool = True):
        """The registrations as :meth:`load` reads them, ``size`` rows at a time (a
        reload that yields to the event loop between chunks).  ``decode=False``: each
        value as stored, its msgpack bytes (the shard inserts them without decoding,
        common.machines.shardtable)."""
        cur = self.db.execute("SELECT key, value, raw FROM registration")
        while True:
            rows = cur.fetchmany(size)
            if not rows:
                return
            yield [(k, msgpack.unpackb(v), raw) for k, v, raw in rows] if decode else rows

    def snapshot_chunks(self, size: int = 5000):
        """:meth:`load_chunks` (values as stored) read from the store as it is NOW, on
        a connection of its own: WAL gives it that state however many commits the
        shard makes while it iterates (a reload that takes changes meanwhile, issue 11;
        a cursor of the committing connection would meet its own writes).  The read
        begins here, not at the first chunk."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("BEGIN")
        cur = db.execute("SELECT key, value, raw FROM registration")
        first = cur.fetchmany(size)     # the read transaction holds its snapshot from here

        def chunks():
            try:
                rows = first
                while rows:
                    yield rows
                    rows = cur.fetchmany(size)
            finally:
                db.close()
        return chunks()

    def rows_of(self, eid_text: str) -> list:
        """The stored ``(key, value bytes, raw)`` of one EID-prefix: the keys
        ``eid_text + "|" + xTR-ID`` (:func:`~common.machines.regtable.entry_key`)."""
        return self.db.execute("SELECT key, value, raw FROM registration WHERE key >= ? AND key < ?",
                               (eid_text + "|", eid_text + "}")).fetchall()

    def load_nonces(self) -> dict:
        return {k: int(n) for k, n in self.db.execute("SELECT key, nonce FROM nonce")}

    def apply(self, changes, nonces: dict | None = None) -> None:
        """Commit registration changes and nonce updates in one transaction."""
        cur = self.db.cursor()
        cur.execute("BEGIN")
        try:
            # runs of sets and of deletions, each one statement over its rows, in order
            for kind, run in groupby(changes, key=itemgetter(0)):
                if kind == "set":
                    cur.executemany("INSERT OR REPLACE INTO registration VALUES (?, ?, ?)",
                                    [(ch[1], _packb(ch[2]), ch[3]) for ch in run])
                else:
                    cur.executemany("DELETE FROM registration WHERE key = ?", [(ch[1],) for ch in run])
            if nonces:
                # nonces are 64-bit unsigned: stored as text (SQLite integers are signed)
                cur.executemany("INSERT OR REPLACE INTO nonce VALUES (?, ?)",
                                [(key, str(n)) for key, n in nonces.items()])
            if changes:
                self._position(cur, changes)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    # -- the Clone stream's position (issue 11: a restarted shard resumes its stream) --
    def _position(self, cur, changes) -> None:
        if self.position_of is None:
            cur.execute("DELETE FROM stream_position")
        else:
            cur.execute("INSERT OR REPLACE INTO stream_position VALUES (0, ?, ?, ?)",
                        self.position_of(changes))

    def stream_position(self) -> tuple[str, int, int] | None:
        """The persisted ``(session, seq, format)`` of the shard's stream, or None."""
        return self.db.execute("SELECT session, seq, format FROM stream_position").fetchone()

    def save_stream_position(self, session: str, seq: int, fmt: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO stream_position VALUES (0, ?, ?, ?)", (session, seq, fmt))

    def forget_stream_position(self) -> None:
        """Make the store unresumable: the next shard starts a new stream session."""
        self.db.execute("DELETE FROM stream_position")

    def checkpoint(self) -> tuple[int, int]:
        """Copy the WAL into the database (PASSIVE: never blocks the writer), on a
        connection of its own so it can run in another thread while commits go on.
        Returns (WAL frames, frames checkpointed)."""
        with self._ckpt_lock:
            if self._closed:
                return 0, 0
            if self._ckpt is None:
                self._ckpt = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            _busy, log, done = self._ckpt.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return log, done

    def close(self) -> None:
        with self._ckpt_lock:   # waits for a checkpoint running in another thread
            self._closed = True
            if self._ckpt is not None:
                self._ckpt.close()
                self._ckpt = None
        self.db.close()
