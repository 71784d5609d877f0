"""A shard takes Map-Registers while it reloads its store (issue 11, roles/ms_reload.py).

Differential: the same stored registrations and the same Map-Registers give the same
table, store, published stream, expiry and Map-Notifies whether the Map-Registers are
handled after the whole reload or between its chunks (an EID-prefix loaded on demand
before its record is judged, the bulk read skipping it later).  The Map-Registers
touch prefixes the bulk read has not reached yet: a withdrawal (resurrected by a
reload that does not skip it), a changed locator set (reverted by one), a second
registrant merging with a stored one (judged alone by a reload that does not load
on demand), a stale replay (accepted without the stored nonces)."""

from __future__ import annotations

import shutil

import msgpack

from common.machines.mapserver import MapServer
from roles.ms_reload import Reload
from roles.ms_store import RegistrationStore
from tests.unit.msfixtures import KEY, register, site

NOW = 100.0
SRC = ("127.0.0.1", 4342)
XA, XB = b"\xaa" * 16, b"\xbb" * 16
SITES = [site(prefixes=(("[0]10.0.0.0/8", True),))]


def pfx(i: int) -> str:
    return f"[0]10.1.{i}.0/24"


class Writer:
    """What a packed CloneWriter holds: loaded rows, then the published changes."""

    def __init__(self) -> None:
        self.data: dict = {}

    def extend_encoded(self, items) -> None:
        for k, v in items:
            self.data[k] = msgpack.unpackb(v)

    def publish(self, changes) -> None:
        for ch in changes:
            if ch[0] == "set":
                self.data[ch[1]] = msgpack.unpackb(msgpack.packb(ch[2]))
            else:
                self.data.pop(ch[1], None)


def server() -> MapServer:
    return MapServer(SITES, lifetime=600, notify_nonce=7)


def build_store(path: str) -> None:
    ms, st, nonce = server(), RegistrationStore(path), 1
    for lo in range(0, 200, 10):        # 0-99 without merge, 100-199 merging (xTR-ID A)
        items = [(register([pfx(i) for i in range(lo, lo + 10)], nonce=nonce, key=KEY, xtr=XA,
                           merge=lo >= 100), SRC, None, None)]
        nonce += 1
        assert all(r.accepted for r in ms.handle_batch(items, NOW - 50, commit=st.apply))
    st.close()


def batches() -> list:
    old = register([pfx(97)], nonce=5, key=KEY, xtr=XA)             # a stale copy (nonce 5 < 20)
    msgs = [
        [register([pfx(i) for i in range(190, 200)], nonce=1000, key=KEY, xtr=XA, merge=True)],
        [register([pfx(195)], nonce=10, key=KEY, xtr=XB, merge=True, rlocs=("192.0.2.7",))],
        [register([pfx(99)], nonce=1001, key=KEY, xtr=XA, ttl=0)],
        [register([pfx(98)], nonce=1002, key=KEY, xtr=XA, rlocs=("192.0.2.1", "192.0.2.2"))],
        [register(["[0]10.2.0.0/24"], nonce=11, key=KEY, xtr=XB)],
        [old],
        [register([pfx(3), pfx(150)], nonce=1003, key=KEY, xtr=XA, merge=True)],
    ]
    return [[(m, SRC, None, None) for m in b] for b in msgs]


def run(path: str, early: bool):
    """(table, store rows, writer data, expiry, results) after the batches, handled after
    the reload (``early`` False) or between its chunks."""
    ms, st, w = server(), RegistrationStore(path), Writer()
    ms.nonces.update(st.load_nonces())
    load = Reload(ms, st, w, early=early, chunk=16, clock=lambda: NOW)
    results, todo = [], batches()
    if not early:
        while load.step():
            pass
    while todo:
        if early:
            assert load.step(), "the reload ended before every batch was handled during it"
        results += [(r.accepted, r.reason, r.notify, tuple(r.unsolicited))
                    for r in ms.handle_batch(todo.pop(0), NOW, commit=st.apply, publish=w.publish)]
    while load.step():
        pass
    load.finish()
    assert ms.fault_in is None and not load.bad
    table = sorted((e.key, e.value) for e in ms.table.entries())
    rows = sorted((k, msgpack.unpackb(v)) for rs in st.load_chunks(1000, decode=False) for k, v, _raw in rs)
    st.close()
    return table, rows, w.data, dict(ms.expiry), results, load


def test_map_registers_during_the_reload_give_what_they_give_after_it(tmp_path):
    base = str(tmp_path / "base.sqlite")
    build_store(base)
    for name in ("after", "during"):
        shutil.copy(base, str(tmp_path / f"{name}.sqlite"))
    after = run(str(tmp_path / "after.sqlite"), early=False)
    during = run(str(tmp_path / "during.sqlite"), early=True)
    table, rows, data, expiry, results, load = during
    assert results == after[4]
    assert [a for a, *_ in results] == [True, True, True, True, True, False, True]   # the stale copy refused
    assert table == after[0]
    assert rows == after[1]
    assert expiry == after[3]
    assert data == after[2] == dict(rows)           # the stream holds what the store holds
    keys = {k for k, _v in table}
    assert not any(k.startswith(pfx(99) + "|") for k in keys)                  # withdrawn, not resurrected
    assert {k for k in keys if k.startswith(pfx(195) + "|")} == {f"{pfx(195)}|{XA.hex()}", f"{pfx(195)}|{XB.hex()}"}
    assert len([v for k, v in table if k.startswith(pfx(98) + "|")][0]["rlocs"]) == 2
    # loaded on demand: prefixes the bulk read had not reached (it skipped them later)
    assert pfx(99) in load.faulted and pfx(195) in load.faulted and load.faulted_rows >= 3
    assert load.loaded == 200 and len(table) == 200 - 1 + 3   # 195 and 3 gain a merging registrant, one new


def test_the_bulk_read_sees_the_store_as_it_was_when_it_began(tmp_path):
    path = str(tmp_path / "s.sqlite")
    build_store(path)
    st = RegistrationStore(path)
    chunks = st.snapshot_chunks(50)
    st.apply([("delete", k) for k, _v, _r in st.rows_of(pfx(199))] +
             [("set", "[0]10.3.0.0/24|", {"eid": "[0]10.3.0.0/24"}, b"")])
    keys = [k for rows in chunks for k, _v, _r in rows]
    assert len(keys) == 200 and any(k.startswith(pfx(199) + "|") for k in keys)
    assert not any(k.startswith("[0]10.3.") for k in keys)
    assert [r[0] for r in st.rows_of(pfx(19))] == [f"{pfx(19)}|"]   # not 10.1.190-199
    assert st.rows_of(pfx(199)) == []
    st.close()
