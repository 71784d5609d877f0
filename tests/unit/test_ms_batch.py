"""The Map-Register path at scale: the edge gate, group commit, the refresh fast path."""

from __future__ import annotations

import os

from common.machines.mapserver import MapServer
from common.machines.regedge import RegisterGate, SourceBudget
from common.machines.sites import SiteTable
from common.wire.auth import seal, verify
from common.wire.eidtext import parse_eidspec
from common.wire.messages import decode_message
from common.wire.register import MapNotify
from tests.unit.msfixtures import KEY, register, server, site

SRC = ("127.0.0.1", 50000)


def gate(**kw):
    return RegisterGate(SiteTable([site()]), **kw)


# -- the edge gate -------------------------------------------------------------------

def test_gate_passes_a_good_register_with_its_coverage():
    assert gate().check(register(["[0]10.1.0.0/16"]), SRC, 0) == ("punt", 0, "all")


def test_gate_drops_by_reason_before_the_shard():
    g = gate()
    assert g.check(register(["[0]10.1.0.0/16"], key=b"forged"), SRC, 0)[:2] == ("drop", "auth-failure")
    assert g.check(register(["[0]10.77.0.0/16"]), SRC, 0)[:2] == ("drop", "no-site")
    assert g.check(os.urandom(3), SRC, 0)[:2] == ("drop", "malformed.header")
    junk = bytearray(os.urandom(200))
    junk[0] = 0x10                      # a Map-Request type
    assert g.check(bytes(junk), SRC, 0)[:2] == ("drop", "not-a-map-register")
    junk[0] = 0x30
    junk[3] = 1
    junk[13], junk[14], junk[15] = 2, 0, 77   # SHA-256 with a 77-byte MAC
    assert g.check(bytes(junk), SRC, 0)[:2] == ("drop", "auth-length")


def test_gate_budget_is_spent_before_the_hmac():
    g = gate(rate=1.0, burst=3.0)
    forged = register(["[0]10.1.0.0/16"], key=b"forged")
    reasons = [g.check(forged, SRC, 0)[1] for _ in range(5)]
    assert reasons == ["auth-failure"] * 3 + ["source-over-budget"] * 2
    # another source has its own budget; time refills
    assert g.check(register(["[0]10.1.0.0/16"]), ("127.0.0.2", 1), 0)[0] == "punt"
    assert g.check(register(["[0]10.1.0.0/16"]), SRC, 2.0)[0] == "punt"


def test_source_budget_memory_is_bounded():
    b = SourceBudget(1.0, 1.0, max_sources=100)
    for i in range(1000):
        b.allow(f"10.0.{i >> 8}.{i & 255}", 0)
    assert len(b._b) == 100


def test_gate_and_shard_agree_on_the_shard():
    a = site("site-a", key=b"ka", prefixes=(("[0]10.1.0.0/16", False),))
    b = site("site-b", key=b"kb", prefixes=(("[0]10.2.0.0/16", False),))
    g = RegisterGate(SiteTable([a, b]), {"site-a": 0, "site-b": 1}.get)
    assert g.check(register(["[0]10.2.0.0/16"], key=b"kb"), SRC, 0) == ("punt", 1, "all")
    ms1 = MapServer([a, b], own={"site-b"})
    assert ms1.handle_register(register(["[0]10.2.0.0/16"], key=b"kb"), SRC, 0).accepted


# -- group commit ----------------------------------------------------------------------

def test_batch_one_commit_each_sees_the_earlier_ones():
    ms = server()
    commits = []
    items = [(register(["[0]10.1.0.0/16"], nonce=1), SRC, None, None),
             (register(["[0]10.1.0.0/16"], nonce=1), SRC, None, None),      # replay inside the batch
             (register(["[0]2001:db8:1::/48"], nonce=2), SRC, None, None)]
    res = ms.handle_batch(items, 0, commit=lambda c, n: commits.append((c, n)))
    assert [r.accepted for r in res] == [True, False, True] and res[1].reason == "replayed-nonce"
    assert len(commits) == 1 and [c[0] for c in commits[0][0]] == ["set", "set"]
    assert len(ms.table) == 2


def test_batch_failed_commit_rolls_everything_back():
    ms = server()
    assert ms.handle_register(register(["[0]10.1.0.0/16"], nonce=1, rlocs=("192.0.2.1",)), SRC, 0).accepted
    before = ([e.locators for e in ms.table.entries()], dict(ms.nonces), dict(ms.expiry))
    sent = []

    def broken(_c, _n):
        raise OSError("disk full")
    items = [(register(["[0]10.1.0.0/16"], nonce=2, rlocs=("192.0.2.9",)), SRC, None, None),
             (register(["[0]2001:db8:1::/48"], nonce=3), SRC, None, None)]
    res = ms.handle_batch(items, 5, commit=broken, send=lambda *a: sent.append(a))
    assert [r.reason for r in res] == ["commit-failed", "commit-failed"] and not sent
    assert ([e.locators for e in ms.table.entries()], dict(ms.nonces), dict(ms.expiry)) == before
    assert ms.expire(179) == [] and len(ms.expire(181)) == 1   # the old lifetime stands


def test_batch_order_commit_publish_send():
    ms = server()
    order = []
    items = [(register(["[0]10.1.0.0/16"], nonce=4), SRC, None, None)]
    ms.handle_batch(items, 0, commit=lambda c, n: order.append("commit"),
                    publish=lambda c: order.append("publish"), send=lambda *a: order.append("send"))
    assert order == ["commit", "publish", "send"]


# -- the refresh fast path -----------------------------------------------------------------

def test_fast_refresh_gives_what_the_full_path_gives():
    fast, full = server(), server()
    xtr = bytes(range(16))
    for ms in (fast, full):
        assert ms.handle_register(register(["[0]10.1.0.0/16"], nonce=1, xtr=xtr), SRC, 0, ).accepted
    # the first accepted refresh through the gate's coverage arms the plan
    assert fast.handle_batch([(register(["[0]10.1.0.0/16"], nonce=2, xtr=xtr), SRC, "all", None)], 1,
                             commit=lambda c, n: None)[0].accepted
    assert full.handle_register(register(["[0]10.1.0.0/16"], nonce=2, xtr=xtr), SRC, 1).accepted
    assert fast._plans
    data = register(["[0]10.1.0.0/16"], nonce=3, xtr=xtr)
    a = fast.compute_register(data, SRC, 2, coverage="all")
    b = full.compute_register(data, SRC, 2)
    assert a.plan is None and b.plan is not None            # a: taken by the fast path
    assert (a.accepted, a.changes, a.nonces, a.expiry, a.notify_to) == \
        (b.accepted, b.changes, b.nonces, b.expiry, b.notify_to)
    assert a.notify == b.notify and verify(a.notify, KEY)
    n = decode_message(a.notify)
    assert isinstance(n, MapNotify) and n.nonce == 3
    # a replay or another registrant's address goes to the full path, which refuses / records it
    fast.apply(a, 2)
    r = fast.compute_register(data, SRC, 3, coverage="all")
    assert not r.accepted and r.reason == "replayed-nonce"
    moved = fast.compute_register(register(["[0]10.1.0.0/16"], nonce=9, xtr=xtr), ("127.0.0.7", 1), 4,
                                  coverage="all")
    assert moved.accepted and [c[0] for c in moved.changes] == ["set"]   # the registrant changed


def test_fast_path_not_taken_after_the_entry_changed():
    ms = server()
    xtr = bytes(range(16))
    ms.handle_register(register(["[0]10.1.0.0/16"], nonce=1, xtr=xtr, rlocs=("192.0.2.1",)), SRC, 0)
    ms.handle_batch([(register(["[0]10.1.0.0/16"], nonce=2, xtr=xtr, rlocs=("192.0.2.1",)), SRC, "all", None)],
                    1, commit=lambda c, n: None)
    ms.handle_register(register(["[0]10.1.0.0/16"], nonce=3, xtr=xtr, rlocs=("192.0.2.2",)), SRC, 2)
    r = ms.compute_register(register(["[0]10.1.0.0/16"], nonce=4, xtr=xtr, rlocs=("192.0.2.1",)), SRC, 3,
                            coverage="all")
    assert r.accepted and [c[0] for c in r.changes] == ["set"]
    [e] = ms.table.exact(parse_eidspec("[0]10.1.0.0/16"))
    assert str(e.locators[0].address) == "192.0.2.2"    # compute changed nothing yet


def test_reseal_matches_seal():
    from common.machines.msbytes import reseal
    from tests.unit.msfixtures import record
    t = seal(MapNotify(1, (record("[0]10.1.0.0/16"),), 0, 2, b""), KEY)
    assert reseal(t, 77, KEY, 2) == seal(MapNotify(77, (record("[0]10.1.0.0/16"),), 0, 2, b""), KEY)


# -- shunning a flooding source ----------------------------------------------------------

def test_shun_blocks_a_source_after_its_bad_burst_and_lets_it_back():
    from common.machines.shun import Shun
    s = Shun(rate=10.0, burst=5.0, max_sources=100)
    assert not s.blocked("10.0.0.1", 0)
    for _ in range(5):
        s.bad("10.0.0.1", 0)
    assert s.blocked("10.0.0.1", 0) and not s.blocked("10.0.0.2", 0)
    assert not s.blocked("10.0.0.1", 0.2)          # refilled two tokens
    for i in range(1000):
        s.bad(f"10.1.{i >> 8}.{i & 255}", 0)
    assert len(s._b) == 100                          # bounded


def test_kernel_filter_drops_only_the_shunned_source():
    import socket

    from roles.kernelshun import KernelShun
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        r.bind(("127.0.78.1", 0))
        a.bind(("127.0.78.2", 0))
        b.bind(("127.0.78.3", 0))
        r.settimeout(0.3)
        k = KernelShun(r.fileno(), hold=1.0)
        assert k.shun("127.0.78.2", 0) and k.error is None
        a.sendto(b"a", r.getsockname())
        b.sendto(b"b", r.getsockname())
        got = []
        try:
            while True:
                got.append(r.recv(16))
        except socket.timeout:
            pass
        assert got == [b"b"]
        assert k.tick(0.5) == 0 and k.tick(1.5) == 1
        a.sendto(b"a", r.getsockname())
        assert r.recv(16) == b"a"
    finally:
        for s in (r, a, b):
            s.close()


def test_fast_refresh_after_a_reload_checks_content_not_objects():
    """The compact shard (issue 11): a reloaded shard arms the fast path on the first
    refresh; the plan holds while the same registration is stored - also when it was
    put back as another object - and not once it changed."""
    from dataclasses import replace

    import msgpack
    xtr = bytes(range(16))
    ms = server(lifetime=180)
    assert ms.handle_register(register(["[0]10.1.0.0/16"], nonce=1, xtr=xtr), SRC, 0).accepted
    rows = [(k, msgpack.packb(v), ms.raw[k]) for k, v in ms.snapshot()]
    ms2 = server(lifetime=180)
    assert ms2.restore(rows, dict(ms.nonces), now=10) == []
    first = ms2.handle_batch([(register(["[0]10.1.0.0/16"], nonce=2, xtr=xtr), SRC, "all", None)], 11,
                             commit=lambda c, n: None)[0]
    assert first.accepted and first.changes == [] and first.plan is not None
    [key] = first.expiry
    a = ms2.compute_register(register(["[0]10.1.0.0/16"], nonce=3, xtr=xtr), SRC, 12, coverage="all")
    assert a.accepted and a.plan is None and a.expiry == {key: 12 + 180.0}     # the fast path
    ms2.table.put(replace(ms2.table.get(key)))                                # equal, another object
    b = ms2.compute_register(register(["[0]10.1.0.0/16"], nonce=3, xtr=xtr), SRC, 12, coverage="all")
    assert b.accepted and b.plan is None
    ms2.table.put(replace(ms2.table.get(key), ttl=7))                         # changed
    c = ms2.compute_register(register(["[0]10.1.0.0/16"], nonce=3, xtr=xtr), SRC, 12, coverage="all")
    assert c.accepted and c.plan is not None and [ch[0] for ch in c.changes] == ["set"]   # the full path
