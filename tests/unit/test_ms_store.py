"""The Map-Server's store: commits never run a WAL checkpoint; checkpoint() does,
from any thread, and what was committed survives a reopen either way."""

from __future__ import annotations

import os
import threading

import msgpack

from roles.ms_store import RegistrationStore


def _changes(b: int, n: int = 64) -> list:
    return [("set", f"k{b}-{i}", {"eid": f"10.{b}.{i}.0/24", "rlocs": []}, bytes(600)) for i in range(n)]


def test_commits_leave_checkpointing_to_checkpoint(tmp_path):
    path = str(tmp_path / "ms.sqlite")
    st = RegistrationStore(path)
    for b in range(80):                 # ~3 MB of rows: past SQLite's 1,000-page autocheckpoint
        st.apply(_changes(b), {f"n{b}": b})
    wal = os.path.getsize(path + "-wal")
    log, done = st.checkpoint()
    assert log > 1000 and done == log   # nothing had been checkpointed by the commits
    st.apply(_changes(99), {})
    # the next transaction restarts the WAL from its beginning: it stops growing
    assert os.path.getsize(path + "-wal") <= wal
    st.close()
    again = RegistrationStore(path)
    rows, nonces = again.load()
    assert len(rows) == 81 * 64 and nonces["n79"] == 79
    again.close()


def test_checkpoint_in_another_thread_while_committing(tmp_path):
    st = RegistrationStore(str(tmp_path / "ms.sqlite"))
    errors = []

    def ckpt() -> None:
        try:
            for _ in range(20):
                st.checkpoint()
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    t = threading.Thread(target=ckpt)
    t.start()
    for b in range(30):
        st.apply(_changes(b, 16), {})
    t.join(10)
    assert not errors
    st.close()
    assert st.checkpoint() == (0, 0)    # after close: a no-op, not an error
    rows, _ = RegistrationStore(str(tmp_path / "ms.sqlite")).load()
    assert len(rows) == 30 * 16


def test_load_chunks_undecoded_gives_the_stored_bytes(tmp_path):
    """The shard's reload takes values as stored: the msgpack of what was committed."""
    st = RegistrationStore(str(tmp_path / "ms.sqlite"))
    st.apply(_changes(1, 10), {})
    want = {k: msgpack.packb(v) for _s, k, v, _r in _changes(1, 10)}
    got = {k: v for rows in st.load_chunks(3, decode=False) for k, v, _raw in rows}
    assert got == want and all(isinstance(v, bytes) for v in got.values())
    assert [r for rows in st.load_chunks(3) for r in rows] == st.load()[0]
    st.close()
