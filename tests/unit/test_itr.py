"""The ITR machine and its map-cache, in memory with a fake clock."""

from __future__ import annotations

import itertools
from ipaddress import ip_address

from common.wire.addr import eid_to_wire
from common.config import Endpoint
from common.wire.ecm import Ecm
from common.wire.eidtext import parse_eidspec
from common.machines.itr import Expired, ItrMachine, ResolveFailed, Resolved
from common.machines.mapcache import MapCache
from common.wire.messages import MapReply, MapRequest, RequestRecord, decode_message, encode_message
from common.wire.records import ACT_DROP_POLICY_DENIED, ACT_NATIVELY_FORWARD, EidRecord, Locator

A = ip_address
E = parse_eidspec
OWN = (A("192.0.2.1"), A("2001:db8::1"))
MRS = (Endpoint(A("198.51.100.1"), 4342), Endpoint(A("198.51.100.2"), 4342),
       Endpoint(A("198.51.100.3"), 4342))


def machine(mrs=MRS[:1]):
    counter = itertools.count(0x1000)
    return ItrMachine(own_rlocs=OWN, map_resolvers=mrs, nonce_source=lambda: next(counter),
                      itr_port=50000)


def rec(eid, ttl=60, rlocs=("203.0.113.1",), action=0, auth=False):
    addr, mask = eid_to_wire(E(eid))
    return EidRecord(addr, mask, ttl, tuple(Locator(A(r)) for r in rlocs), action, auth)


def sent_requests(m):
    """[(mr address, port, Ecm)] of what the machine queued."""
    return [(a, p, decode_message(d)) for a, p, d in m.datagrams_to_send()]


def answer(m, ecm, *records, probe=False, nonce=None):
    reply = MapReply(ecm.inner.nonce if nonce is None else nonce, tuple(records), probe=probe)
    return encode_message(reply)


def test_miss_sends_ecm_map_request_then_hit():
    m = machine()
    assert m.resolve(E("10.1.1.1"), 0.0) is None
    ((dst, port, ecm),) = sent_requests(m)
    assert (dst, port) == (MRS[0].address, 4342)
    assert isinstance(ecm, Ecm) and not (ecm.to_etr or ecm.to_ms)
    req = ecm.inner
    assert isinstance(req, MapRequest) and req.nonce == 0x1000
    assert req.itr_rlocs == OWN and not req.smr_invoked and not req.probe
    assert [r.prefix for r in req.records] == [E("10.1.1.1/32")]
    assert (ecm.ip.src, ecm.ip.dst, ecm.ip.sport, ecm.ip.dport) == (OWN[0], A("10.1.1.1"), 50000, 4342)
    events = m.handle_map_reply(answer(m, ecm, rec("10.1.1.0/24", ttl=10)), 0.2)
    assert [type(e) for e in events] == [Resolved]
    assert events[0].eid == E("10.1.1.1") and events[0].entry.eid == E("10.1.1.0/24")
    hit = m.resolve(E("10.1.1.200"), 1.0)
    assert hit is not None and hit.eid == E("10.1.1.0/24") and not hit.negative
    assert [str(l.address) for l in hit.locators] == ["203.0.113.1"]
    assert m.datagrams_to_send() == []
    assert m.counters["cache_hit"] == 1 and m.counters["cache_miss"] == 1


def test_ipv6_and_iid_inner_header():
    m = machine()
    m.resolve(E("[7]2001:db8:1:1::5"), 0.0)
    ((_, _, ecm),) = sent_requests(m)
    assert (ecm.ip.src, ecm.ip.dst) == (OWN[1], A("2001:db8:1:1::5"))
    assert ecm.inner.records[0].prefix == E("[7]2001:db8:1:1::5/128")
    only_v4 = ItrMachine(own_rlocs=(A("192.0.2.1"),), map_resolvers=MRS[:1], nonce_source=lambda: 1)
    only_v4.resolve(E("2001:db8::5"), 0.0)
    ((_, _, ecm),) = sent_requests(only_v4)
    assert ecm.ip.src == A("::ffff:192.0.2.1") and ecm.inner.itr_rlocs == (A("192.0.2.1"),)


def test_pending_is_joined():
    m = machine()
    m.resolve(E("10.1.1.1"), 0.0)
    assert m.resolve(E("10.1.1.1"), 0.1) is None
    assert len(m.datagrams_to_send()) == 1
    assert m.pending() == [E("10.1.1.1")]


def test_reply_completes_every_covered_pending():
    m = machine()
    m.resolve(E("10.1.1.1"), 0.0)
    m.resolve(E("10.1.1.2"), 0.0)
    m.resolve(E("10.9.9.9"), 0.0)
    first, _, _ = sent_requests(m)
    events = m.handle_map_reply(answer(m, first[2], rec("10.1.1.0/24")), 0.1)
    assert sorted(str(e.eid.address) for e in events) == ["10.1.1.1", "10.1.1.2"]
    assert m.pending() == [E("10.9.9.9")]


def test_nonce_matching():
    m = machine()
    m.resolve(E("10.1.1.1"), 0.0)
    ((_, _, ecm),) = sent_requests(m)
    assert m.handle_map_reply(answer(m, ecm, rec("10.1.1.0/24"), nonce=0xDEAD), 0.1) == []
    assert m.counters["map_reply_unmatched"] == 1
    assert m.handle_map_reply(b"\x20\x00", 0.1) == []
    assert m.counters["map_reply_malformed"] == 1
    # a retransmission carries a new nonce; the late answer to the first still counts
    m.handle_timer(1.0)
    ((_, _, ecm2),) = sent_requests(m)
    assert ecm2.inner.nonce != ecm.inner.nonce
    events = m.handle_map_reply(answer(m, ecm, rec("10.1.1.0/24")), 1.1)
    assert len(events) == 1 and isinstance(events[0], Resolved)
    # ... and after completion neither nonce matches any more
    assert m.handle_map_reply(answer(m, ecm2, rec("10.1.1.0/24")), 1.2) == []
    assert m.counters["map_reply_unmatched"] == 2


def test_probe_reply_needs_authoritative_records():
    m = machine()
    m.resolve(E("10.1.1.1"), 0.0)
    ((_, _, ecm),) = sent_requests(m)
    bad = answer(m, ecm, rec("10.1.1.0/24", auth=True), rec("10.1.2.0/24", auth=False), probe=True)
    assert m.handle_map_reply(bad, 0.1) == []
    assert m.counters["map_reply_probe_not_authoritative"] == 1
    assert m.pending() == [E("10.1.1.1")]
    good = decode_message(answer(m, ecm, rec("10.1.1.0/24", auth=True), probe=True))
    assert len(m.handle_map_reply(good, 0.2)) == 1      # a decoded MapReply is taken too


def test_ttl_expiry_and_timer():
    m = machine()
    m.resolve(E("10.1.1.1"), 0.0)
    ((_, _, ecm),) = sent_requests(m)
    m.handle_map_reply(answer(m, ecm, rec("10.1.1.0/24", ttl=1)), 10.0)
    assert m.next_timer() == 70.0
    assert m.resolve(E("10.1.1.1"), 69.9) is not None
    assert m.handle_timer(70.0) == [Expired(E("10.1.1.0/24"))]
    assert m.cache_entries(70.0) == []
    assert m.next_timer() is None


def test_ttl_zero_deletes_and_local_policy_ttl():
    c = MapCache()
    c.install(rec("10.1.1.0/24", ttl=5), 0.0)
    assert c.install(rec("10.1.1.0/24", ttl=0), 1.0) is None
    assert c.lookup(E("10.1.1.1"), 1.0) is None and len(c) == 0
    e = c.install(rec("10.1.1.0/24", ttl=0xFFFFFFFF), 0.0)
    assert e.expires == 86400.0
    assert MapCache(infinite_ttl=600).install(rec("10.1.1.0/24", ttl=0xFFFFFFFF), 0.0).expires == 600


def test_negative_entries():
    m = machine()
    m.resolve(E("10.200.0.1"), 0.0)
    ((_, _, ecm),) = sent_requests(m)
    neg = rec("10.128.0.0/9", ttl=15, rlocs=(), action=ACT_NATIVELY_FORWARD)
    (ev,) = m.handle_map_reply(answer(m, ecm, neg), 0.5)
    assert ev.entry.negative and ev.entry.action == ACT_NATIVELY_FORWARD
    hit = m.resolve(E("10.130.1.1"), 1.0)
    assert hit.negative and hit.action == ACT_NATIVELY_FORWARD
    (row,) = m.cache_entries(60.5)
    assert row == {"eid": "[0]10.128.0.0/9", "rlocs": [], "ttl": 15, "expires_in": 840.0,
                   "negative": True, "action": "natively-forward", "authoritative": False}
    c = MapCache()
    c.install(rec("10.0.0.0/8", rlocs=(), action=ACT_DROP_POLICY_DENIED), 0.0)
    assert c.lookup(E("10.1.1.1"), 1.0).view(1.0)["action"] == "drop-policy-denied"


def test_less_specific_never_outlives_more_specific():
    c = MapCache()
    c.install(rec("10.1.1.0/24", ttl=1), 0.0)
    big = c.install(rec("10.1.0.0/16", ttl=60), 10.0)
    assert big.expires == 60.0                      # capped by the /24 beneath it
    other = c.install(rec("10.2.0.0/16", ttl=60), 10.0)
    assert other.expires == 3610.0                  # nothing beneath: full TTL
    # the other order: a covering entry is lowered when a shorter-lived more-specific arrives
    c2 = MapCache()
    c2.install(rec("10.0.0.0/8", ttl=60), 0.0)
    c2.install(rec("10.1.0.0/16", ttl=30), 0.0)
    c2.install(rec("10.1.1.0/24", ttl=1), 0.0)
    assert [c2.exact(E(p)).expires for p in ("10.0.0.0/8", "10.1.0.0/16", "10.1.1.0/24")] == [60.0] * 3
    assert sorted(str(e.address) for e in c2.expire(60.0)) == ["10.0.0.0", "10.1.0.0", "10.1.1.0"]
    # an expired child not yet swept does not cap a new entry
    c3 = MapCache()
    c3.install(rec("10.1.1.0/24", ttl=1), 0.0)
    assert c3.install(rec("10.1.0.0/16", ttl=60), 100.0).expires == 3700.0
    assert c3.lookup(E("10.1.1.1"), 100.0).eid == E("10.1.0.0/16")


def test_longest_match_per_iid_and_family():
    c = MapCache()
    c.install(rec("10.0.0.0/8"), 0.0)
    c.install(rec("10.1.0.0/16", rlocs=("203.0.113.2",)), 0.0)
    c.install(rec("[5]10.0.0.0/8", rlocs=("203.0.113.5",)), 0.0)
    c.install(rec("2001:db8::/32"), 0.0)
    assert c.lookup(E("10.1.2.3"), 1).eid == E("10.1.0.0/16")
    assert c.lookup(E("10.2.2.3"), 1).eid == E("10.0.0.0/8")
    assert c.lookup(E("[5]10.1.2.3"), 1).eid == E("[5]10.0.0.0/8")
    assert c.lookup(E("[6]10.1.2.3"), 1) is None
    assert c.lookup(E("2001:db8:5::1"), 1).eid == E("2001:db8::/32")
    assert c.lookup(E("10.0.0.0/7"), 1) is None        # a wider question is not answered
    assert c.lookup(E("10.1.0.0/16"), 1).eid == E("10.1.0.0/16")


def test_rate_limit_one_per_second_per_prefix():
    m = machine()
    m.resolve(E("10.1.1.1"), 0.0)
    ((_, _, ecm),) = sent_requests(m)
    m.handle_map_reply(answer(m, ecm, rec("10.1.1.1/32", ttl=0)), 0.1)   # withdrawn at once
    assert m.resolve(E("10.1.1.1"), 0.2) is None
    assert m.datagrams_to_send() == []                                    # not before 1.0
    assert m.next_timer() == 1.0
    m.handle_timer(1.0)
    assert len(m.datagrams_to_send()) == 1
    # another prefix is not held back
    m.resolve(E("10.1.1.2"), 1.0)
    assert len(m.datagrams_to_send()) == 1


def test_retries_then_backoff():
    m = machine()
    m.resolve(E("10.1.1.1"), 0.0)
    times = [0.0]
    m.datagrams_to_send()
    events = []
    t = 0.0
    while t < 40:
        t = m.next_timer()
        events += m.handle_timer(t)
        times += [t] * len(m.datagrams_to_send())
        if events:
            break
    assert times == [float(i) for i in range(11)]        # the request and 10 retries, 1/s
    assert events == [ResolveFailed(E("10.1.1.1"), 11, 41.0)]
    assert m.pending() == [] and m.next_timer() is None
    assert m.resolve(E("10.1.1.1"), 20.0) is None
    assert m.datagrams_to_send() == [] and m.counters["resolve_backed_off"] == 1
    m.resolve(E("10.1.1.1"), 41.0)
    assert len(m.datagrams_to_send()) == 1


def test_round_robin_and_failover():
    m = machine(mrs=MRS)
    m.resolve(E("10.1.1.1"), 0.0)
    for t in (1.0, 2.0, 3.0):
        m.handle_timer(t)
    first = [d[0] for d in m.datagrams_to_send()]
    assert first == [MRS[0].address, MRS[1].address, MRS[2].address, MRS[0].address]
    m.resolve(E("10.1.1.2"), 3.5)
    m.resolve(E("10.1.1.3"), 3.5)
    assert [d[0] for d in m.datagrams_to_send()] == [MRS[1].address, MRS[2].address]


def test_smr_triggers_smr_invoked_request():
    m = machine()
    m.resolve(E("10.1.1.1"), 0.0)
    ((_, _, ecm),) = sent_requests(m)
    m.handle_map_reply(answer(m, ecm, rec("10.1.1.0/24")), 0.1)
    addr, mask = eid_to_wire(E("10.1.1.9"))
    smr = MapRequest(77, (A("203.0.113.1"),), (RequestRecord(addr, mask),), smr=True)
    assert m.handle_map_request(smr, 5.0)
    ((dst, _, ecm2),) = sent_requests(m)
    assert dst == MRS[0].address                               # through the mapping system
    assert ecm2.inner.smr_invoked and not ecm2.inner.smr
    assert ecm2.inner.records[0].prefix == E("10.1.1.0/24")    # the cached prefix
    assert not m.handle_map_request(smr, 6.0)                  # 1 per 3 s per prefix
    assert m.counters["smr_rate_limited"] == 1
    (ev,) = m.handle_map_reply(answer(m, ecm2, rec("10.1.1.0/24", rlocs=("203.0.113.9",))), 6.5)
    assert ev.smr_invoked and str(ev.entry.locators[0].address) == "203.0.113.9"
    assert m.handle_map_request(smr, 8.0)
    assert len(m.datagrams_to_send()) == 1


def test_smr_for_uncached_eid_ignored():
    m = machine()
    addr, mask = eid_to_wire(E("10.1.1.9"))
    smr = MapRequest(77, (A("203.0.113.1"),), (RequestRecord(addr, mask),), smr=True)
    assert not m.handle_map_request(smr, 0.0)
    assert m.datagrams_to_send() == [] and m.counters["smr_not_cached"] == 1
    plain = MapRequest(78, (A("203.0.113.1"),), (RequestRecord(addr, mask),))
    assert not m.handle_map_request(plain, 0.0)


def test_cache_entries_view():
    m = machine()
    m.resolve(E("10.1.1.1"), 0.0)
    ((_, _, ecm),) = sent_requests(m)
    m.handle_map_reply(answer(m, ecm, rec("10.1.1.0/24", ttl=2, auth=True),
                              rec("10.1.2.0/24", ttl=2)), 0.0)
    rows = m.cache_entries(30.0)
    assert [r["eid"] for r in rows] == ["[0]10.1.1.0/24", "[0]10.1.2.0/24"]
    assert rows[0]["rlocs"] == [{"address": "203.0.113.1", "priority": 1, "weight": 100,
                                 "reachable": True}]
    assert rows[0]["expires_in"] == 90.0 and rows[0]["ttl"] == 2 and not rows[0]["negative"]
    assert rows[0]["action"] == "no-action" and rows[0]["authoritative"]
