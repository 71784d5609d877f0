"""The Map-Server registration machine, driven with a hand-advanced clock."""

from __future__ import annotations

from common.wire.auth import verify
from common.wire.messages import decode_message
from common.wire.register import MapNotify
from tests.unit.msfixtures import KEY, register, server, site
from common.machines.mapserver import MapServer

SRC = ("127.0.0.1", 50000)


def test_register_accepted_with_notify_to_source_port():
    ms = server()
    r = ms.handle_register(register(["[0]10.1.0.0/16", "[0]2001:db8:1::/48"], nonce=5), SRC, now=0)
    assert r.accepted and r.site == "site-a"
    assert [c[0] for c in r.changes] == ["set", "set"]
    assert r.notify_to == SRC
    n = decode_message(r.notify)
    assert isinstance(n, MapNotify) and n.nonce == 5 and len(n.records) == 2
    assert verify(r.notify, KEY)
    assert len(ms.table) == 2


def test_no_notify_without_m_bit():
    r = server().handle_register(register(["[0]10.1.0.0/16"], notify=False), SRC, 0)
    assert r.accepted and r.notify is None


def test_wrong_key_refused():
    ms = server()
    r = ms.handle_register(register(["[0]10.1.0.0/16"], key=b"wrong"), SRC, 0)
    assert not r.accepted and r.reason == "auth-failure" and len(ms.table) == 0


def test_prefix_outside_site_refused_no_hijack():
    ms = server()
    r = ms.handle_register(register(["[0]10.2.0.0/16"]), SRC, 0)
    assert not r.accepted and r.reason == "no-site"
    from common.wire.eidtext import format_eid
    assert [(format_eid(e), why) for e, why in r.refused] == [("[0]10.2.0.0/16", "no-site")]
    # a more-specific of a prefix without accept-more-specifics
    r = ms.handle_register(register(["[0]10.1.1.0/24"]), SRC, 0)
    assert not r.accepted and r.reason == "prefix-not-allowed"
    # mixed: the allowed record is kept, the other refused
    r = ms.handle_register(register(["[0]10.1.0.0/16", "[0]10.1.1.0/24"], nonce=2), SRC, 0)
    assert r.accepted and len(r.changes) == 1 and r.refused[0][1] == "prefix-not-allowed"


def test_accept_more_specifics():
    r = server().handle_register(register(["[1000]10.9.8.0/24"]), SRC, 0)
    assert r.accepted and r.changes[0][1].startswith("[1000]10.9.8.0/24|")


def test_replay_policies():
    for policy, accepted in (("strict", False), ("warn", True), ("off", True)):
        ms = MapServer([site(policy=policy)])
        assert ms.handle_register(register(["[0]10.1.0.0/16"], nonce=10), SRC, 0).accepted
        # the same nonce in a different message (another RLOC)
        r = ms.handle_register(register(["[0]10.1.0.0/16"], nonce=10, rlocs=("192.0.2.7",)), SRC, 1)
        assert r.accepted is accepted, policy
        if policy == "warn":
            assert "nonce-not-increasing" in r.warnings
        # the same bytes again: a replay under strict and warn, accepted under off
        again = ms.handle_register(register(["[0]10.1.0.0/16"], nonce=10), SRC, 2)
        assert again.accepted is (policy == "off"), policy
    ms = server()
    ms.handle_register(register(["[0]10.1.0.0/16"], nonce=10), SRC, 0)
    assert ms.handle_register(register(["[0]10.1.0.0/16"], nonce=11), SRC, 1).accepted


def test_refresh_changes_nothing_but_expiry():
    ms = server(lifetime=180)
    ms.handle_register(register(["[0]10.1.0.0/16"], nonce=1), SRC, 0)
    r = ms.handle_register(register(["[0]10.1.0.0/16"], nonce=2), SRC, 100)
    assert r.accepted and r.changes == [] and r.notify is not None
    assert ms.expire(250) == []          # refreshed at 100: lives to 280
    assert [c[0] for c in ms.expire(281)] == ["delete"]


def test_t_bit_uses_record_ttl_as_lifetime():
    ms = server(lifetime=180)
    ms.handle_register(register(["[0]10.1.0.0/16"], ttl=10, t=True), SRC, 0)
    assert ms.expire(599) == [] and len(ms.expire(601)) == 1


def test_ttl_zero_deregisters():
    ms = server()
    ms.handle_register(register(["[0]10.1.0.0/16"], nonce=1), SRC, 0)
    r = ms.handle_register(register(["[0]10.1.0.0/16"], nonce=2, ttl=0), SRC, 1)
    assert r.accepted and r.changes[0][0] == "delete" and len(ms.table) == 0


def test_merge_keyed_by_xtr_id_and_replacement_without_merge():
    ms = server()
    ms.handle_register(register(["[0]10.1.0.0/16"], xtr=b"\x01" * 16, merge=True, rlocs=("192.0.2.1",)), SRC, 0)
    ms.handle_register(register(["[0]10.1.0.0/16"], xtr=b"\x02" * 16, merge=True, rlocs=("192.0.2.2",)), SRC, 0)
    assert len(ms.table) == 2
    r = ms.handle_register(register(["[0]10.1.0.0/16"], xtr=b"\x03" * 16, nonce=2), SRC, 1)
    assert sorted(c[0] for c in r.changes) == ["delete", "delete", "set"] and len(ms.table) == 1


def test_restart_restores_with_grace():
    ms = server(lifetime=180)
    ms.handle_register(register(["[0]10.1.0.0/16"], nonce=9), SRC, 0)
    rows = [(k, v, ms.raw[k]) for k, v in ms.snapshot()]
    ms2 = server(lifetime=180)
    ms2.restore(rows, dict(ms.nonces), now=1000)
    assert len(ms2.table) == 1 and ms2.expire(1179) == [] and len(ms2.expire(1181)) == 1
    # the restored nonce still guards against replay
    assert not ms2.handle_register(register(["[0]10.1.0.0/16"], nonce=9), SRC, 1001).accepted


def test_sha1_interop_key_field_0x0001():
    ms = MapServer([site(alg=1)])
    data = register(["[0]10.1.0.0/16"], alg=1)
    assert data[12:14] == b"\x00\x01" and int.from_bytes(data[14:16], "big") == 20
    r = ms.handle_register(data, ("127.0.0.9", 61111), 0)
    assert r.accepted and r.notify_to == ("127.0.0.9", 61111) and verify(r.notify, KEY)


def test_malformed_is_a_reason_not_an_exception():
    r = server().handle_register(b"\x30\x00\x00\x05" + bytes(12), SRC, 0)
    assert not r.accepted and r.reason.startswith("malformed")
