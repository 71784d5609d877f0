"""Map-Server and Map-Resolver semantics a review found wrong (one test per defect).

Each test names the defect it pins; all of them failed on the machines before the
compute -> commit -> apply rework.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from common.decent.push import members_of
from common.machines.mapserver import MapServer
from common.machines.msnotify import NOTIFY_RETRIES
from common.machines.regtable import PrefixSet
from common.machines.resolver import Drop, Resolver, Send
from common.wire.addr import (NO_ADDRESS, AfiList, DistinguishedName, InstanceIdAddr, Mac, Rle, RleEntry,
                              eid_to_wire)
from common.wire.auth import seal, verify, verify_coverage
from common.wire.ecm import Ecm
from common.wire.eidtext import format_eid, parse_eidspec
from common.wire.ipudp import IpUdp
from common.wire.messages import MapReply, MapRequest, RequestRecord, decode_message, encode_message
from common.wire.records import EidRecord, Locator
from common.wire.register import MapNotify, MapNotifyAck, MapRegister
from tests.unit.msfixtures import KEY, SITE_ID, XTR, ecm_request, record, register, server, site

SRC = ("127.0.0.1", 50000)
LOCAL4, LOCAL6 = "127.0.0.1", "::1"


def signed(records, nonce=1, key=KEY, xtr=XTR, notify=True, merge=False, proxy=False):
    m = MapRegister(nonce, tuple(records), 0, 2, proxy_reply=proxy, merge=merge, want_map_notify=notify,
                    xtr_id=xtr, site_id=SITE_ID if xtr else None)
    return seal(m, key)


def rec_with(spec, *addresses, ttl=1440):
    addr, ml = eid_to_wire(parse_eidspec(spec))
    return EidRecord(addr, ml, ttl, tuple(Locator(a, 1, 100, 255, 0, True, False, True) for a in addresses))


def resolver_for(ms, **kw):
    r = Resolver(ms.table, PrefixSet([p for s in ms.site_table for p, _ in s.prefixes]), **kw)
    r.in_sync = True
    return r


def reply(actions) -> MapReply:
    sends = [a for a in actions if isinstance(a, Send)]
    assert len(sends) == 1, actions
    m = decode_message(sends[0].data)
    assert isinstance(m, MapReply)
    return m


# -- 1: non-IP locators -------------------------------------------------------------

def test_1_afi_list_locator_registers_its_first_ip_and_nothing_raises():
    ms = server()
    loc = AfiList((DistinguishedName("rtr-1"), IPv4Address("192.0.2.9")))
    r = ms.handle_register(signed([rec_with("[0]10.1.0.0/16", loc)]), SRC, 0)
    assert r.accepted, r.reason
    [e] = ms.table.exact(parse_eidspec("[0]10.1.0.0/16"))
    assert [str(l.address) for l in e.locators] == ["192.0.2.9"]


@pytest.mark.parametrize("bad", [Mac(b"\x00\x11\x22\x33\x44\x55"), DistinguishedName("etr.example"),
                                 NO_ADDRESS])
def test_1_unusable_locator_refuses_that_record_and_keeps_the_rest_consistent(bad):
    ms = server()
    committed = []
    data = signed([rec_with("[0]10.1.0.0/16", IPv4Address("192.0.2.1")),
                   rec_with("[0]2001:db8:1::/48", bad)])
    r = ms.handle_register(data, SRC, 0, commit=lambda ch, n: committed.append(ch))
    assert r.accepted and [(format_eid(e), why) for e, why in r.refused] == [("[0]2001:db8:1::/48",
                                                                              "no-usable-locator")]
    # memory, the commit and the Map-Notify agree: one registration
    assert len(ms.table) == 1 and [c[1] for c in committed[0]] == [r.changes[0][1]]
    assert len(decode_message(r.notify).records) == 1
    # an identical refresh: refused again, not "no change" with an acknowledgement of it
    r2 = ms.handle_register(signed([rec_with("[0]2001:db8:1::/48", bad)], nonce=2), SRC, 1)
    assert not r2.accepted and r2.reason == "no-usable-locator" and r2.notify is None


# -- 2: prefix hijack across shards -------------------------------------------------------

def test_2_a_shard_judges_against_every_sites_prefixes():
    a = site("site-a", key=b"key-a", prefixes=(("[0]10.0.0.0/8", True),))
    b = site("site-b", key=b"key-b", prefixes=(("[0]10.1.0.0/16", False),))
    shard_of_a = MapServer([a, b], own={"site-a"})
    data = signed([rec_with("[0]10.2.0.0/16", IPv4Address("192.0.2.1")),
                   rec_with("[0]10.1.1.0/24", IPv4Address("192.0.2.66"))], key=b"key-a")
    r = shard_of_a.handle_register(data, SRC, 0)
    assert r.accepted
    assert [(format_eid(e), why) for e, why in r.refused] == [("[0]10.1.1.0/24", "prefix-not-allowed")]
    assert shard_of_a.table.lookup(parse_eidspec("10.1.1.1")) is None
    # and the acknowledgement lists only what was registered
    assert [format_eid(x.prefix) for x in decode_message(r.notify).records] == ["[0]10.2.0.0/16"]


def test_2_a_register_for_another_shards_site_is_not_served_here():
    a = site("site-a", key=b"key-a", prefixes=(("[0]10.0.0.0/8", False),))
    b = site("site-b", key=b"key-b", prefixes=(("[0]11.0.0.0/8", False),))
    r = MapServer([a, b], own={"site-a"}).handle_register(
        signed([rec_with("[0]11.0.0.0/8", IPv4Address("192.0.2.1"))], key=b"key-b"), SRC, 0)
    assert not r.accepted and r.reason == "wrong-shard"


# -- 4: per-family answers -------------------------------------------------------------

def test_4_answer_cache_is_per_listener_family():
    ms = server()
    data = signed([rec_with("[0]10.1.0.0/16", IPv4Address("192.0.2.1"), IPv6Address("2001:db8::1"))])
    assert ms.handle_register(data, SRC, 0).accepted
    r = resolver_for(ms)
    req6 = ecm_request("10.1.2.3", itr="::1")
    [a6] = r.handle(req6, ("::1", 40000), LOCAL6, 0)
    [a4] = r.handle(ecm_request("10.1.2.3"), SRC, LOCAL4, 0)
    assert (a6.dst, a4.dst) == ("2001:db8::1", "192.0.2.1")
    [b6] = r.handle(req6, ("::1", 40000), LOCAL6, 0)   # cached now, still per family
    assert b6.dst == "2001:db8::1"


def test_4_reply_goes_to_the_itr_rloc_of_the_listeners_family():
    ms = server()
    assert ms.handle_register(register(["[0]10.1.0.0/16"], proxy=True), SRC, 0).accepted
    r = resolver_for(ms)
    eid = parse_eidspec("10.1.2.3")
    addr, ml = eid_to_wire(eid)
    req = MapRequest(5, (ip_address("2001:db8::77"), ip_address("127.0.0.77")), (RequestRecord(addr, ml),))
    data = encode_message(Ecm(req, IpUdp(ip_address("127.0.0.77"), eid.address, 40001, 4342)))
    [a] = r.handle(data, SRC, LOCAL4, 0)
    assert (a.dst, a.port) == ("127.0.0.77", 40001)
    [a] = r.handle(data, ("::1", 40001), LOCAL6, 0)
    assert a.dst == "2001:db8::77"


# -- 5: non-IP EIDs in a Map-Request ----------------------------------------------------

@pytest.mark.parametrize("eid,ml", [(NO_ADDRESS, 0), (Mac(b"\x02" * 6), 48), (DistinguishedName("host"), 0),
                                    (AfiList((IPv4Address("10.1.1.1"),)), 32)])
def test_5_non_ip_eid_is_dropped_and_counted_not_raised(eid, ml):
    ms = server()
    r = resolver_for(ms)
    req = MapRequest(9, (ip_address("127.0.0.1"),), (RequestRecord(eid, ml),))
    data = encode_message(Ecm(req, IpUdp(ip_address("127.0.0.1"), ip_address("127.0.0.1"), 40000, 4342)))
    out = r.handle(data, SRC, LOCAL4, 0)
    assert out == [Drop("unsupported-eid-family", out[0].detail)]


# -- 6: RLE entries wrapped in an instance-ID LCAF ---------------------------------------

def test_6_rle_entry_in_iid_lcaf_is_stored_as_its_address():
    g = site(prefixes=(("[0]224.1.1.1/32-0.0.0.0/0", False),))
    ms = MapServer([g])
    rle = Rle((RleEntry(InstanceIdAddr(0, IPv4Address("127.0.0.9")), 128), RleEntry(IPv4Address("127.0.0.8"), 128)))
    addr, ml = eid_to_wire(parse_eidspec("[0]224.1.1.1/32-0.0.0.0/0"))
    data = signed([EidRecord(addr, ml, 1440, (Locator(rle, 255, 0, 1, 100),))], merge=True, proxy=True)
    assert ms.handle_register(data, SRC, 0).accepted
    m = ms.table.lookup(parse_eidspec("[0]224.1.1.1/32-0.0.0.0/0"))
    assert members_of(m.best[1]) == ["127.0.0.8", "127.0.0.9"]
    out = reply(resolver_for(ms).handle(ecm_request("[0]224.1.1.1/32-0.0.0.0/0"), SRC, LOCAL4, 0))
    [loc] = out.records[0].locators
    assert sorted(str(e.address) for e in loc.address.entries) == ["127.0.0.8", "127.0.0.9"]


# -- 7: multicast negative TTLs -----------------------------------------------------------

def test_7_multicast_negative_inside_a_configured_prefix_is_one_minute():
    g = site(prefixes=(("[0]224.1.1.0/24-0.0.0.0/0", True),))
    r = resolver_for(MapServer([g]), neg_ttl_non_eid=15, neg_ttl_unregistered=1)
    inside = reply(r.handle(ecm_request("[0]224.1.1.7/32-0.0.0.0/0"), SRC, LOCAL4, 0))
    outside = reply(r.handle(ecm_request("[0]225.1.1.7/32-0.0.0.0/0"), SRC, LOCAL4, 0))
    assert (inside.records[0].ttl, outside.records[0].ttl) == (1, 15)


# -- 8: MAC coverage only where the I bit says --------------------------------------------

def test_8_notify_and_ack_do_not_verify_with_24_bytes_appended():
    n = seal(MapNotify(1, (record("[0]10.1.0.0/16"),), 0, 2, b""), KEY)
    ack = seal(MapNotifyAck(1, (record("[0]10.1.0.0/16"),), 0, 2, b""), KEY)
    assert verify(n, KEY) and verify(ack, KEY)
    junk = bytes(range(24))
    assert not verify(n + junk, KEY)
    assert not verify(ack + junk, KEY)
    # with I=1 announced, RFC 9301's literal coverage (without the trailer) is accepted
    with_i = bytearray(n + junk)
    with_i[0] |= 0x08
    assert decode_message(bytes(with_i)).xtr_id == junk[:16]
    # (the MAC was computed over the bytes without I: recompute over the records only)
    body = bytes(with_i)
    assert verify_coverage(seal(MapNotify(1, (record("[0]10.1.0.0/16"),), 0, 2, b""), KEY), KEY) == "all"
    assert verify_coverage(body, KEY) is None


def test_8_register_short_coverage_is_reported_as_such():
    full = register(["[0]10.1.0.0/16"])
    assert verify_coverage(full, KEY) == "all"
    short = bytearray(full[:-24])
    short[0] &= ~0x02 & 0xFF                       # no trailer: sealed without it
    sealed = seal(decode_message(bytes(short)), KEY)
    with_trailer = bytearray(sealed + XTR + SITE_ID)
    with_trailer[0] |= 0x02                        # I=1 after the MAC was computed
    assert verify_coverage(bytes(with_trailer), KEY) is None   # the I bit is inside the MAC
    m = decode_message(register(["[0]10.1.0.0/16"]))
    assert m.xtr_id == XTR


# -- 9: every record answered, the D bit, the Map-Notify I bit, unsolicited notifies -------

def test_9_every_record_of_a_map_request_is_answered():
    ms = server()
    assert ms.handle_register(register(["[0]10.1.0.0/16"], proxy=True), SRC, 0).accepted
    r = resolver_for(ms)
    recs = tuple(RequestRecord(*eid_to_wire(parse_eidspec(s))) for s in ("10.1.2.3", "192.0.2.99"))
    req = MapRequest(3, (ip_address("127.0.0.1"),), recs)
    data = encode_message(Ecm(req, IpUdp(ip_address("127.0.0.1"), ip_address("10.1.2.3"), 40000, 4342)))
    m = reply(r.handle(data, SRC, LOCAL4, 0))
    assert [format_eid(x.prefix) for x in m.records][0] == "[0]10.1.0.0/16"
    assert len(m.records) == 2 and m.records[1].negative


def test_9_dont_map_reply_gets_no_map_reply():
    ms = server()
    r = resolver_for(ms)
    eid = parse_eidspec("192.0.2.99")
    req = MapRequest(3, (ip_address("127.0.0.1"),), (RequestRecord(*eid_to_wire(eid)),), dont_map_reply=True)
    data = encode_message(Ecm(req, IpUdp(ip_address("127.0.0.1"), eid.address, 40000, 4342)))
    assert r.handle(data, SRC, LOCAL4, 0) == [Drop("dont-map-reply")]


def test_9_map_notify_i_bit_survives_decode():
    plain = seal(MapNotify(1, (), 0, 2, b"", xtr_id=XTR, site_id=SITE_ID), KEY)
    assert decode_message(plain).i_bit is True
    lispers = bytearray(plain)
    lispers[0] &= ~0x08 & 0xFF                  # trailer without the I bit (lispers.net)
    d = decode_message(bytes(lispers))
    assert d.i_bit is False and d.xtr_id == XTR and encode_message(d) == bytes(lispers)


def test_9_unsolicited_map_notify_to_the_previous_registrant_until_acked():
    ms = server()
    a = signed([rec_with("[0]10.1.0.0/16", IPv4Address("192.0.2.1"))], xtr=b"\x0a" * 16)
    assert ms.handle_register(a, ("127.0.0.10", 61000), 0).accepted
    sent = []
    b = signed([rec_with("[0]10.1.0.0/16", IPv4Address("192.0.2.2"))], xtr=b"\x0b" * 16, notify=False)
    r = ms.handle_register(b, ("127.0.0.11", 61001), 1, commit=lambda c, n: None,
                           send=lambda d, p, x: sent.append((d, p, x)))
    assert r.accepted
    [(dst, port, data)] = sent
    assert (dst, port) == ("127.0.0.10", 4342) and verify(data, KEY)
    n = decode_message(data)
    assert [str(l.address) for l in n.records[0].locators] == ["192.0.2.2"]
    # not acknowledged: retransmitted on schedule, then given up
    t, again = 1, []
    for delay in NOTIFY_RETRIES[:-1]:
        t += delay
        out, gave_up = ms.retransmit(t)
        again += out
    assert len(again) == len(NOTIFY_RETRIES) - 1 and gave_up == 0
    # an ack with the wrong key does nothing; the right one stops it
    wrong = seal(MapNotifyAck(n.nonce, n.records, 0, 2, b""), b"wrong")
    assert ms.handle_notify_ack(wrong) == "auth-failure"
    good = seal(MapNotifyAck(n.nonce, n.records, 0, 2, b""), KEY)
    assert ms.handle_notify_ack(good) == "acked" and ms.retransmit(t + 1000) == ([], 0)


def test_9_same_registrant_refresh_sends_no_unsolicited_notify():
    ms = server()
    for nonce, rloc in ((1, "192.0.2.1"), (2, "192.0.2.5")):
        r = ms.handle_register(signed([rec_with("[0]10.1.0.0/16", IPv4Address(rloc))], nonce=nonce), SRC, nonce)
        assert r.accepted and r.unsolicited == []


# -- 10: compute -> commit -> apply ---------------------------------------------------------

def test_10_a_failed_commit_changes_nothing_and_acknowledges_nothing():
    ms = server()
    sent, published = [], []

    def broken(_changes, _nonces):
        raise OSError("disk full")
    r = ms.handle_register(register(["[0]10.1.0.0/16"], nonce=5), SRC, 0, commit=broken,
                           send=lambda *a: sent.append(a), publish=published.append)
    assert not r.accepted and r.reason == "commit-failed" and "disk full" in r.error
    assert len(ms.table) == 0 and ms.nonces == {} and ms.expiry == {} and not sent and not published
    # the same message goes through once the store works again (nonce not consumed)
    assert ms.handle_register(register(["[0]10.1.0.0/16"], nonce=5), SRC, 0, commit=lambda c, n: None).accepted


def test_10_durable_before_published_before_acknowledged():
    ms = server()
    order = []

    def commit(changes, nonces):
        assert len(ms.table) == 0, "memory ran ahead of the store"
        order.append(("commit", [c[0] for c in changes], sorted(nonces.values())))

    def publish(changes):
        assert len(ms.table) == 1
        order.append(("publish", [c[0] for c in changes]))
    r = ms.handle_register(register(["[0]10.1.0.0/16"], nonce=7), SRC, 0, commit=commit, publish=publish,
                           send=lambda d, p, x: order.append(("send", decode_message(x).nonce)))
    assert r.accepted
    assert order == [("commit", ["set"], [7]), ("publish", ["set"]), ("send", 7)]


def test_10_compute_alone_changes_no_state():
    ms = server()
    res = ms.compute_register(register(["[0]10.1.0.0/16"], nonce=3), SRC, 0)
    assert res.accepted and res.changes and res.notify
    assert len(ms.table) == 0 and ms.nonces == {} and ms.expiry == {}
    ms.apply(res, 0)
    assert len(ms.table) == 1 and ms.nonces and ms.expiry


def test_10_expiry_commits_first_and_retries_after_a_failure():
    ms = server(lifetime=10)
    ms.handle_register(register(["[0]10.1.0.0/16"]), SRC, 0)

    def broken(_c, _n):
        raise OSError("I/O error")
    with pytest.raises(OSError):
        ms.expire(11, commit=broken)
    assert len(ms.table) == 1
    assert [c[0] for c in ms.expire(12, commit=lambda c, n: None)] == ["delete"] and len(ms.table) == 0


# -- 11: a snapshot entry keeps its remaining lifetime --------------------------------------

def test_11_snapshot_entry_keeps_the_lifetime_it_had():
    ms = server(lifetime=180)
    assert ms.handle_register(register(["[0]10.1.0.0/16"]), SRC, 100, remaining=4.0).accepted
    assert ms.expires_in(next(iter(ms.expiry)), 100) == 4.0
    assert ms.expire(103) == [] and len(ms.expire(105)) == 1


# -- withdrawals, nonces, registrants -------------------------------------------------------

def test_ttl_zero_with_merge_removes_only_that_registrant():
    ms = server()
    for x, rloc in ((b"\x01" * 16, "192.0.2.1"), (b"\x02" * 16, "192.0.2.2")):
        ms.handle_register(signed([rec_with("[0]10.1.0.0/16", IPv4Address(rloc))], xtr=x, merge=True), SRC, 0)
    assert len(ms.table) == 2
    w = signed([rec_with("[0]10.1.0.0/16", IPv4Address("192.0.2.1"), ttl=0)], nonce=2, xtr=b"\x01" * 16,
               merge=True)
    r = ms.handle_register(w, SRC, 1)
    assert r.accepted and [c[0] for c in r.changes] == ["delete"]
    [e] = ms.table.exact(parse_eidspec("[0]10.1.0.0/16"))
    assert e.xtr_id == b"\x02" * 16


def test_warn_keeps_the_highest_nonce_not_the_last():
    ms = MapServer([site(policy="warn")])
    for n in (10, 3):
        assert ms.handle_register(register(["[0]10.1.0.0/16"], nonce=n), SRC, n).accepted
    assert list(ms.nonces.values()) == [10]


def test_strict_replay_from_another_address_is_refused():
    """Issue 10 (a): without an xTR-ID the registrant is (site, key, prefix), not the
    UDP source, so a captured Map-Register replayed from elsewhere changes nothing."""
    ms = server()
    old = register(["[0]10.1.0.0/16"], nonce=1, xtr=None, rlocs=("192.0.2.1",))
    assert ms.handle_register(old, ("127.0.0.1", 1), 0).accepted
    assert ms.handle_register(register(["[0]10.1.0.0/16"], nonce=2, xtr=None, rlocs=("192.0.2.2",)),
                              ("127.0.0.1", 1), 1).accepted
    r = ms.handle_register(old, ("127.0.0.99", 2), 2)
    assert not r.accepted and r.reason == "replayed-nonce"
    [e] = ms.table.exact(parse_eidspec("[0]10.1.0.0/16"))
    assert str(e.locators[0].address) == "192.0.2.2"


def records_only_mac(msg: MapRegister, key: bytes = KEY) -> bytes:
    """lispers.net's coverage: the MAC stops before the xTR-ID/Site-ID trailer."""
    import hashlib
    import hmac
    from dataclasses import replace as _replace

    from common.wire.register import encode_register_like
    data = bytearray(encode_register_like(_replace(msg, auth_data=bytes(32))))
    data[16:48] = hmac.new(key, bytes(data[:-24]), hashlib.sha256).digest()
    return bytes(data)


def test_strict_replay_with_a_fresh_xtr_id_outside_the_mac_is_refused():
    """Issue 10 (b): an xTR-ID the MAC does not cover identifies nobody, so an old
    message replayed with a fresh xTR-ID is still a replay."""
    ms = server()
    old = records_only_mac(MapRegister(1, (record("[0]10.1.0.0/16"),), 0, 2, xtr_id=XTR, site_id=SITE_ID))
    assert verify_coverage(old, KEY) == "records"
    assert ms.handle_register(old, SRC, 0).accepted
    newer = records_only_mac(MapRegister(2, (record("[0]10.1.0.0/16", rlocs=("192.0.2.2",)),), 0, 2,
                                         xtr_id=XTR, site_id=SITE_ID))
    assert ms.handle_register(newer, SRC, 1).accepted
    forged = old[:-24] + bytes([0x55]) * 16 + SITE_ID      # a "fresh" xTR-ID, MAC still valid
    assert verify_coverage(forged, KEY) == "records"
    r = ms.handle_register(forged, ("127.0.0.99", 9), 2)
    assert not r.accepted and r.reason == "replayed-nonce"
    [e] = ms.table.exact(parse_eidspec("[0]10.1.0.0/16"))
    assert str(e.locators[0].address) == "192.0.2.2"


def test_reregistration_under_a_new_xtr_id_updates_xtr_and_registrant():
    ms = server()
    ms.handle_register(register(["[0]10.1.0.0/16"], nonce=1, xtr=b"\x01" * 16), ("127.0.0.5", 1), 0)
    r = ms.handle_register(register(["[0]10.1.0.0/16"], nonce=2, xtr=b"\x02" * 16), ("127.0.0.6", 1), 1)
    assert r.accepted and [c[0] for c in r.changes] == ["set"]
    [e] = ms.table.exact(parse_eidspec("[0]10.1.0.0/16"))
    assert (e.xtr_id, e.registrant) == (b"\x02" * 16, "127.0.0.6")


def test_mixed_site_register_notify_lists_only_accepted_records():
    a = site("site-a", key=b"key-a", prefixes=(("[0]10.1.0.0/16", False),))
    b = site("site-b", key=b"key-b", prefixes=(("[0]10.2.0.0/16", False),))
    ms = MapServer([a, b])
    data = signed([rec_with("[0]10.1.0.0/16", IPv4Address("192.0.2.1")),
                   rec_with("[0]10.2.0.0/16", IPv4Address("192.0.2.1"))], key=b"key-a")
    r = ms.handle_register(data, SRC, 0)
    assert r.accepted and [format_eid(x.prefix) for x in decode_message(r.notify).records] == ["[0]10.1.0.0/16"]
    assert [why for _, why in r.refused] == ["prefix-not-allowed"]
    # nothing accepted: no Map-Notify at all
    only_b = signed([rec_with("[0]10.2.0.0/16", IPv4Address("192.0.2.1"))], nonce=2, key=b"key-a")
    r = ms.handle_register(only_b, SRC, 1)
    assert not r.accepted and r.notify is None


# -- the resolver's guards ------------------------------------------------------------------

def test_probe_in_ecm_and_inner_port_4341_are_dropped():
    ms = server()
    assert ms.handle_register(register(["[0]10.1.0.0/16"], proxy=True), SRC, 0).accepted
    r = resolver_for(ms)
    eid = parse_eidspec("10.1.2.3")
    req = MapRequest(3, (ip_address("127.0.0.1"),), (RequestRecord(*eid_to_wire(eid)),), probe=True)
    probe = encode_message(Ecm(req, IpUdp(ip_address("127.0.0.1"), eid.address, 40000, 4342)))
    assert r.handle(probe, SRC, LOCAL4, 0) == [Drop("probe-in-ecm")]
    assert r.handle(ecm_request("10.1.2.3", sport=4341), SRC, LOCAL4, 0) == [Drop("ecm-inner-port-4341")]
    assert isinstance(r.handle(ecm_request("10.1.2.3"), SRC, LOCAL4, 0)[0], Send)


def test_the_mutation_check_still_applies():
    """scripts/mutants.py re-introduces each defect above by a source edit; if the
    code moves on, its edits must still apply or the check silently proves nothing."""
    import importlib.util
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("mutants", root / "scripts" / "mutants.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert len(mod.MUTANTS) >= 20
    stale = [name for name, path, old, _new in mod.MUTANTS if old not in (root / path).read_text()]
    assert stale == []


def test_warn_refuses_a_byte_identical_replay_but_accepts_fresh_non_increasing_nonces():
    """Issue 10 (warn): random or repeated nonces are accepted and counted, but a copy
    of a message accepted within the last 24 hours is a replay."""
    ms = MapServer([site(policy="warn")])
    old = register(["[0]10.1.0.0/16"], nonce=50, rlocs=("192.0.2.1",))
    assert ms.handle_register(old, SRC, 0).accepted
    newer = register(["[0]10.1.0.0/16"], nonce=7, rlocs=("192.0.2.2",))      # random nonce, fresh
    r = ms.handle_register(newer, SRC, 1)
    assert r.accepted and "nonce-not-increasing" in r.warnings
    r = ms.handle_register(old, ("127.0.0.99", 9), 2)                        # the old one again
    assert not r.accepted and r.reason == "replayed-message"
    [e] = ms.table.exact(parse_eidspec("[0]10.1.0.0/16"))
    assert str(e.locators[0].address) == "192.0.2.2"
    # past the window it is only a non-increasing nonce again
    assert ms.handle_register(old, SRC, 2 + 24 * 3600 + 1).accepted
