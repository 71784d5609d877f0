"""The ETR machine, driven in memory with a fake clock and a fake Map-Server."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from common.wire.auth import seal, verify
from common.config import DatabaseMapping, Key, Locator as CfgLocator, MapServerRef
from common.wire.eidtext import parse_eidspec
from common.machines.etr import EtrMachine, default_timers
from common.wire.messages import MapReply, MapRequest, RequestRecord, decode_message
from common.wire.register import MapNotify, MapRegister

A = ip_address
SECRET = "lab-secret"
XTR = bytes(range(1, 17))
SITE = bytes.fromhex("1122334455667788")
KEY = Key(0, "hmac-sha-256-128", 2, SECRET)
MS1 = MapServerRef(A("192.0.2.10"), 4342, KEY)
MS2 = MapServerRef(A("192.0.2.20"), 4342, Key(3, "hmac-sha-1-96", 1, "other"))
OWN = (A("192.0.2.1"), A("2001:db8::1"))


def mapping(eid="10.1.1.0/24", rlocs=("192.0.2.1",), ttl=1440, proxy=False, notify=True):
    return DatabaseMapping(parse_eidspec(eid), tuple(CfgLocator(A(r), 1, 100, 255, 0) for r in rlocs),
                           ttl, proxy, notify)


def machine(maps=None, servers=(MS1,), nonce_start=1000):
    return EtrMachine([mapping()] if maps is None else maps, servers, own_rlocs=OWN, xtr_id=XTR,
                      site_id=SITE, nonce_start=nonce_start, timers=default_timers())


def notify_for(data: bytes, secret: str, *, nonce=None) -> bytes:
    """What a Map-Server answers to a Map-Register with M=1."""
    reg = decode_message(data)
    n = MapNotify(reg.nonce if nonce is None else nonce, reg.records, reg.key_id, reg.alg_id,
                  xtr_id=reg.xtr_id, site_id=reg.site_id)
    return seal(n, secret.encode())


def run_until(m, end, ack=None):
    """Drive the timer to ``end``; return [(time, datagram)], acking with ``ack`` if given."""
    sent = []
    while True:
        t = m.next_timer()
        if t is None or t > end:
            return sent
        m.handle_timer(t)
        for d in m.datagrams_to_send():
            sent.append((t, d))
            if ack:
                assert m.handle_map_notify(notify_for(d[2], ack), d[0], 4342, t)


def test_schedule_fast_then_slow():
    m = machine(maps=[mapping(notify=False)])
    assert m.next_timer() is None
    m.start(0.0)
    first = m.datagrams_to_send()
    assert [(d[0], d[1]) for d in first] == [(MS1.address, 4342)]
    times = [t for t, _ in run_until(m, 500)]
    assert times == [20.0 * i for i in range(1, 16)] + [360.0, 420.0, 480.0]


def test_schedule_with_map_notify_acks():
    m = machine()
    m.start(0.0)
    d = m.datagrams_to_send()[0]
    assert m.handle_map_notify(notify_for(d[2], SECRET), MS1.address, 4342, 0.05)
    assert m.status()["192.0.2.10:4342"]["registered"]
    times = [t for t, _ in run_until(m, 400, ack=SECRET)]
    assert times == [20.0 * i for i in range(1, 16)] + [360.0]


def test_nonce_strictly_increasing_across_restart():
    m = machine(maps=[mapping(notify=False)], servers=(MS1, MS2), nonce_start=10**18)
    m.start(0.0)
    nonces = [decode_message(d[2]).nonce for d in m.datagrams_to_send()]
    nonces += [decode_message(d[2]).nonce for _, d in run_until(m, 200)]
    assert nonces == sorted(set(nonces)) and len(nonces) > 10
    # the role restarts: the shell passes a later time-based start value
    m2 = machine(maps=[mapping(notify=False)], servers=(MS1, MS2), nonce_start=10**18 + 10**9)
    m2.start(0.0)
    later = [decode_message(d[2]).nonce for d in m2.datagrams_to_send()]
    assert min(later) > max(nonces)
    assert later == sorted(set(later))


def test_retransmission_backoff_and_stop():
    m = machine()
    m.start(0.0)
    first = m.datagrams_to_send()
    sent = run_until(m, 200)
    times = [0.0] + [t for t, _ in sent]
    assert [b - a for a, b in zip(times, times[1:])] == [1, 2, 4, 8, 16, 32, 60, 60]
    nonces = [decode_message(first[0][2]).nonce] + [decode_message(d[2]).nonce for _, d in sent]
    assert nonces == sorted(set(nonces))           # every retransmission: a new nonce
    st = m.status()["192.0.2.10:4342"]
    assert st["retries"] == 8 and not st["registered"]
    assert st["outstanding_nonces"] == [nonces[-1]]
    # a Map-Notify for a superseded nonce does not count
    assert not m.handle_map_notify(notify_for(first[0][2], SECRET), MS1.address, 4342, 200)
    last = sent[-1][1][2]
    assert m.handle_map_notify(notify_for(last, SECRET), MS1.address, 4342, 200.0)
    st = m.status()["192.0.2.10:4342"]
    assert st["registered"] and st["last_registered"] == 200.0 and st["retries"] == 0
    assert st["outstanding_nonces"] == []
    # back on the periodic schedule (the last retransmission at 183 was also the
    # periodic round, so the next one is 20 s later); no more retransmissions
    assert m.next_timer() == 203.0
    assert run_until(m, 202.9) == []


def test_bad_map_notify_ignored():
    m = machine()
    m.start(0.0)
    d = m.datagrams_to_send()[0][2]
    assert not m.handle_map_notify(notify_for(d, "wrong-secret"), MS1.address, 4342, 0.1)
    assert not m.handle_map_notify(notify_for(d, SECRET, nonce=decode_message(d).nonce + 1),
                                   MS1.address, 4342, 0.1)
    assert not m.handle_map_notify(notify_for(d, SECRET), A("192.0.2.99"), 4342, 0.1)
    assert not m.handle_map_notify(b"\x40\x00", MS1.address, 4342, 0.1)
    assert not m.handle_map_notify(d, MS1.address, 4342, 0.1)  # a Map-Register, not a Notify
    assert m.counters["map_notify_bad_mac"] == 1
    assert m.counters["map_notify_unmatched"] == 2
    assert m.status()["192.0.2.10:4342"]["outstanding_nonces"] == [decode_message(d).nonce]
    assert m.next_timer() == 1.0    # still retransmitting
    assert m.handle_map_notify(notify_for(d, SECRET), MS1.address, 4342, 0.2)


def test_record_and_locator_content():
    maps = [mapping("10.1.1.0/24", rlocs=("2001:db8::9", "198.51.100.7", "192.0.2.1", "2001:db8::1"),
                    ttl=77),
            mapping("[1000]10.2.1.0/24")]
    m = machine(maps=maps, servers=(MS1, MS2))
    m.start(5.0)
    out = m.datagrams_to_send()
    assert [(d[0], d[1]) for d in out] == [(MS1.address, 4342), (MS2.address, 4342)]
    for (dst, _, data), ms in zip(out, (MS1, MS2)):
        assert verify(data, ms.key.secret_bytes)
        reg = decode_message(data)
        assert isinstance(reg, MapRegister)
        assert reg.key_id == ms.key.key_id and reg.alg_id == ms.key.alg_id
        assert len(reg.auth_data) == (32 if ms.key.alg_id == 2 else 20)
        assert reg.xtr_id == XTR and reg.site_id == SITE
        assert reg.want_map_notify and not reg.proxy_reply
        r0, r1 = reg.records
        assert r0.prefix == parse_eidspec("10.1.1.0/24") and r0.ttl == 77 and r0.authoritative
        assert [str(l.address) for l in r0.locators] == ["192.0.2.1", "198.51.100.7", "2001:db8::1",
                                                         "2001:db8::9"]
        assert [l.local for l in r0.locators] == [True, False, True, False]
        assert all(l.reachable and not l.probed for l in r0.locators)
        assert r1.prefix == parse_eidspec("[1000]10.2.1.0/24") and r1.ttl == 1440


def test_no_map_notify_wanted_sets_m0():
    m = machine(maps=[mapping(notify=False)])
    m.start(0.0)
    reg = decode_message(m.datagrams_to_send()[0][2])
    assert not reg.want_map_notify
    assert m.next_timer() == 20.0


def test_more_than_20_mappings_split():
    maps = [mapping(f"10.{i // 256}.{i % 256}.0/24") for i in range(45)]
    m = machine(maps=maps)
    m.start(0.0)
    regs = [decode_message(d[2]) for d in m.datagrams_to_send()]
    assert [len(r.records) for r in regs] == [20, 20, 5]
    assert [r.prefix for g in regs for r in g.records] == [mp.eid for mp in maps]
    assert len({r.nonce for r in regs}) == 3
    # two of three acknowledged: only the missing one is retransmitted
    m2 = machine(maps=maps)
    m2.start(0.0)
    ds = m2.datagrams_to_send()
    for d in ds[:2]:
        assert m2.handle_map_notify(notify_for(d[2], SECRET), MS1.address, 4342, 0.5)
    assert not m2.status()["192.0.2.10:4342"]["registered"]
    m2.handle_timer(1.0)
    again = m2.datagrams_to_send()
    assert [len(decode_message(d[2]).records) for d in again] == [5]
    assert m2.handle_map_notify(notify_for(again[0][2], SECRET), MS1.address, 4342, 1.1)
    assert m2.status()["192.0.2.10:4342"]["registered"]


def test_split_ack_completes_registration():
    maps = [mapping(f"10.{i // 256}.{i % 256}.0/24") for i in range(25)]
    m = machine(maps=maps)
    m.start(0.0)
    ds = m.datagrams_to_send()
    assert len(ds) == 2
    assert m.handle_map_notify(notify_for(ds[0][2], SECRET), MS1.address, 4342, 0.1)
    assert not m.status()["192.0.2.10:4342"]["registered"]
    assert m.handle_map_notify(notify_for(ds[1][2], SECRET), MS1.address, 4342, 0.2)
    assert m.status()["192.0.2.10:4342"]["registered"]


def test_proxy_reply_grouping():
    maps = [mapping("10.1.1.0/24"), mapping("10.1.2.0/24", proxy=True), mapping("10.1.3.0/24"),
            mapping("10.1.4.0/24", proxy=True, notify=False)]
    m = machine(maps=maps)
    m.start(0.0)
    regs = [decode_message(d[2]) for d in m.datagrams_to_send()]
    assert len(regs) == 2
    by_p = {r.proxy_reply: [str(rec.prefix.address) for rec in r.records] for r in regs}
    assert by_p == {False: ["10.1.1.0", "10.1.3.0"], True: ["10.1.2.0", "10.1.4.0"]}
    assert all(r.want_map_notify for r in regs)


def _request(eid, itr_rlocs=("192.0.2.50",), probe=False, nonce=0xABCDEF):
    e = parse_eidspec(eid)
    from common.wire.addr import eid_to_wire
    addr, mask = eid_to_wire(e)
    return MapRequest(nonce, tuple(A(a) for a in itr_rlocs), (RequestRecord(addr, mask),), probe=probe)


def test_authoritative_map_reply():
    maps = [mapping("10.1.1.0/24", rlocs=("192.0.2.1", "2001:db8::1"), ttl=30)]
    m = machine(maps=maps)
    req = _request("10.1.1.77", itr_rlocs=("2001:db8:ffff::5", "192.0.2.50"))
    m2 = EtrMachine(maps, (MS1,), own_rlocs=(A("192.0.2.1"),), xtr_id=XTR, site_id=SITE,
                    nonce_start=1)
    dst, port, data = m2.handle_map_request(req, (A("192.0.2.50"), 61000), 0.0)
    assert (dst, port) == (A("192.0.2.50"), 61000)       # first ITR-RLOC of a family we have
    dst, port, data = m.handle_map_request(req, (A("192.0.2.50"), 61000), 0.0)
    assert (dst, port) == (A("2001:db8:ffff::5"), 61000)  # we have IPv6 too: the first one
    rep = decode_message(data)
    assert isinstance(rep, MapReply) and rep.nonce == 0xABCDEF and not rep.probe
    (rec,) = rep.records
    assert rec.authoritative and rec.ttl == 30 and rec.prefix == parse_eidspec("10.1.1.0/24")
    assert [str(l.address) for l in rec.locators] == ["192.0.2.1", "2001:db8::1"]
    assert all(l.local and l.reachable and not l.probed for l in rec.locators)
    assert m.handle_map_request(_request("10.9.9.9"), (A("192.0.2.50"), 1), 0.0) is None
    assert m.handle_map_request(_request("[5]10.1.1.77"), (A("192.0.2.50"), 1), 0.0) is None
    assert m.counters["map_request_not_ours"] == 2


def test_reply_includes_more_specifics():
    maps = [mapping("2001:db8::/32"), mapping("2001:db8:1::/48"), mapping("2001:db8:1:1::/64"),
            mapping("2001:db8:1:2::/64")]
    m = machine(maps=maps)
    one = decode_message(m.handle_map_request(_request("2001:db8:1:1::1"), (A("192.0.2.50"), 1), 0)[2])
    assert [str(r.prefix.address) + "/" + str(r.prefix.length) for r in one.records] == ["2001:db8:1:1::/64"]
    three = decode_message(m.handle_map_request(_request("2001:db8:1:5::5"), (A("192.0.2.50"), 1), 0)[2])
    assert [r.prefix.length for r in three.records] == [48, 64, 64]


def test_probe_reply():
    maps = [mapping("10.1.1.0/24", rlocs=("192.0.2.1", "198.51.100.1"))]
    m = EtrMachine(maps, (MS1,), own_rlocs=(A("192.0.2.1"), A("198.51.100.1")), xtr_id=XTR,
                   site_id=SITE, nonce_start=1)
    req = _request("10.1.1.0/24", probe=True, nonce=42)
    dst, port, data = m.handle_map_request(req, (A("203.0.113.9"), 4342), 0.0,
                                           local_addr=A("198.51.100.1"))
    assert (dst, port) == (A("192.0.2.50"), 4342)
    rep = decode_message(data)
    assert rep.probe and rep.nonce == 42 and all(r.authoritative for r in rep.records)
    assert [l.probed for l in rep.records[0].locators] == [False, True]
    # without knowing the probed address, no p bit
    rep2 = decode_message(m.handle_map_request(req, (A("203.0.113.9"), 4342), 0.0)[2])
    assert rep2.probe and not any(l.probed for l in rep2.records[0].locators)


def test_no_usable_itr_rloc_uses_reply_to():
    m = EtrMachine([mapping()], (MS1,), own_rlocs=(A("192.0.2.1"),), xtr_id=XTR, site_id=SITE,
                   nonce_start=1)
    req = _request("10.1.1.1", itr_rlocs=("2001:db8::77",))
    dst, port, _ = m.handle_map_request(req, (A("203.0.113.9"), 5000), 0.0)
    assert (dst, port) == (A("203.0.113.9"), 5000)
    assert m.handle_map_request(req, None, 0.0) is None


def test_withdraw_ttl_zero():
    m = machine(maps=[mapping(), mapping("10.1.2.0/24", proxy=True)], servers=(MS1, MS2))
    m.start(0.0)
    before = max(decode_message(d[2]).nonce for d in m.datagrams_to_send())
    out = m.withdraw(MS2)
    assert m.datagrams_to_send() == []                 # returned, not queued
    assert len(out) == 2 and all(d[:2] == (MS2.address, 4342) for d in out)
    for _, _, data in out:
        assert verify(data, MS2.key.secret_bytes)
        reg = decode_message(data)
        assert reg.nonce > before and not reg.want_map_notify
        assert all(r.ttl == 0 for r in reg.records)
    assert set(m.status()) == {"192.0.2.10:4342", "192.0.2.20:4342"}


def test_set_map_servers_withdraws_and_adds():
    m = machine(servers=(MS1, MS2))
    m.start(0.0)
    m.datagrams_to_send()
    ms3 = MapServerRef(A("2001:db8::10"), 4342, KEY)
    m.set_map_servers((MS1, ms3), 3.0)
    out = m.datagrams_to_send()
    gone = [decode_message(d[2]) for d in out if d[0] == MS2.address]
    new = [decode_message(d[2]) for d in out if d[0] == ms3.address]
    assert len(gone) == 1 and gone[0].records[0].ttl == 0
    assert len(new) == 1 and new[0].records[0].ttl == 1440 and new[0].want_map_notify
    assert set(m.status()) == {"192.0.2.10:4342", "[2001:db8::10]:4342"}


def test_notify_from_one_server_acks_only_that_server():
    m = machine(servers=(MS1, MS2))
    m.start(0.0)
    d1, d2 = m.datagrams_to_send()
    # MS2's nonce presented by MS1's address: refused
    assert not m.handle_map_notify(notify_for(d2[2], "other"), MS1.address, 4342, 0.1)
    assert m.handle_map_notify(notify_for(d2[2], "other"), MS2.address, 4342, 0.1)
    st = m.status()
    assert st["192.0.2.20:4342"]["registered"] and not st["192.0.2.10:4342"]["registered"]
    m.handle_timer(1.0)
    assert [d[0] for d in m.datagrams_to_send()] == [MS1.address]


def test_nonce_wraps_within_64_bits():
    m = machine(maps=[mapping(notify=False)], nonce_start=(1 << 64) - 1)
    m.start(0.0)
    assert decode_message(m.datagrams_to_send()[0][2]).nonce == (1 << 64) - 1
    assert m.next_nonce == 0


@pytest.mark.parametrize("alg_id,name,mac_len", [(1, "hmac-sha-1-96", 20), (2, "hmac-sha-256-128", 32)])
def test_algorithms(alg_id, name, mac_len):
    ms = MapServerRef(A("192.0.2.10"), 4342, Key(0, name, alg_id, "s"))
    m = machine(servers=(ms,))
    m.start(0.0)
    data = m.datagrams_to_send()[0][2]
    assert data[13] == alg_id and int.from_bytes(data[14:16], "big") == mac_len
    assert m.handle_map_notify(notify_for(data, "s"), ms.address, 4342, 0.1)
