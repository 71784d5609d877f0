"""The Map-Resolver worker's decisions: answer, forward, punt or drop."""

from __future__ import annotations

from common.wire.ecm import Ecm
from common.wire.eidtext import format_eid
from common.wire.messages import MapReply, decode_message
from common.wire.records import ACT_NATIVELY_FORWARD
from common.machines.regtable import PrefixSet
from common.machines.resolver import Drop, Punt, Resolver, Send
from tests.unit.msfixtures import ecm_request, register, server, site

SRC = ("127.0.0.1", 40000)
LOCAL = "127.0.0.1"


def setup(proxy=True, sync=True, ms=None, **kw):
    ms = ms or server()
    for i, spec in enumerate(["[0]10.1.0.0/16", "[0]2001:db8:1::/48", "[1000]10.9.8.0/24"]):
        assert ms.handle_register(register([spec], nonce=i + 1, proxy=proxy), SRC, 0).accepted
    conf = PrefixSet([p for p, _ in site().prefixes])
    r = Resolver(ms.table, conf, **kw)
    r.in_sync = sync
    return ms, r


def reply_of(actions) -> MapReply:
    [a] = actions
    assert isinstance(a, Send), a
    m = decode_message(a.data)
    assert isinstance(m, MapReply)
    return m


def test_not_in_sync_answers_nothing():
    _, r = setup(sync=False)
    assert r.handle(ecm_request("10.1.2.3"), SRC, LOCAL, 0) == [Drop("not-in-sync")]


def test_proxy_reply_positive_ipv4_ipv6_iid():
    _, r = setup()
    for spec, want in (("10.1.2.3", "[0]10.1.0.0/16"), ("[0]2001:db8:1::5", "[0]2001:db8:1::/48"),
                       ("[1000]10.9.8.7", "[1000]10.9.8.0/24")):
        m = reply_of(r.handle(ecm_request(spec, nonce=42), SRC, LOCAL, 0))
        assert m.nonce == 42 and format_eid(m.records[0].prefix) == want
        rec = m.records[0]
        assert not rec.authoritative and [str(l.address) for l in rec.locators] == ["192.0.2.1"]
        assert not any(l.local for l in rec.locators)


def test_reply_goes_to_itr_rloc_and_inner_source_port():
    _, r = setup()
    [a] = r.handle(ecm_request("10.1.2.3", sport=45678, itr="127.0.0.5"), SRC, LOCAL, 0)
    assert (a.dst, a.port) == ("127.0.0.5", 45678)


def test_overlapping_prefixes_return_more_specifics():
    from common.machines.mapserver import MapServer
    more = site(prefixes=(("[0]10.1.0.0/16", True), ("[0]2001:db8:1::/48", False), ("[1000]10.9.8.0/24", False)))
    ms, r = setup(ms=MapServer([more]))
    ms.handle_register(register(["[0]10.1.5.0/24"], nonce=50, proxy=True), SRC, 0)
    m = reply_of(r.handle(ecm_request("10.1.7.7"), SRC, LOCAL, 0))
    # RFC 9301 5.5: the best match (/16) plus every more-specific inside it (/24)
    assert [format_eid(x.prefix) for x in m.records] == ["[0]10.1.0.0/16", "[0]10.1.5.0/24"]
    m = reply_of(r.handle(ecm_request("10.1.5.9"), SRC, LOCAL, 0))
    assert [format_eid(x.prefix) for x in m.records] == ["[0]10.1.5.0/24"]


def test_forward_to_etr_when_not_proxy():
    _, r = setup(proxy=False)
    data = ecm_request("10.1.2.3")
    [a] = r.handle(data, SRC, LOCAL, 0)
    assert isinstance(a, Send) and (a.dst, a.port) == ("192.0.2.1", 4342)
    fwd = decode_message(a.data)
    assert isinstance(fwd, Ecm) and fwd.to_etr and not fwd.to_ms
    assert a.data[4:] == data[4:]  # otherwise unchanged


def test_negative_non_eid_least_specific_15_minutes():
    _, r = setup()
    m = reply_of(r.handle(ecm_request("10.200.1.1"), SRC, LOCAL, 0))
    rec = m.records[0]
    assert rec.ttl == 15 and rec.action == ACT_NATIVELY_FORWARD and not rec.locators
    # 10.200.1.1 vs 10.1.0.0/16: 8 bits in common -> /9 10.128.0.0
    assert format_eid(rec.prefix) == "[0]10.128.0.0/9"
    m = reply_of(r.handle(ecm_request("172.16.0.1"), SRC, LOCAL, 0))
    assert format_eid(m.records[0].prefix) == "[0]128.0.0.0/1"


def test_negative_configured_but_unregistered_one_minute():
    ms, r = setup()
    ms.handle_register(register(["[0]10.1.0.0/16"], nonce=99, ttl=0), SRC, 1)  # withdraw
    m = reply_of(r.handle(ecm_request("10.1.2.3"), SRC, LOCAL, 0))
    rec = m.records[0]
    assert rec.ttl == 1 and format_eid(rec.prefix) == "[0]10.1.0.0/16"
    # inside an accept-more-specifics prefix with a registered child: avoid the child
    m = reply_of(r.handle(ecm_request("[1000]10.9.200.1"), SRC, LOCAL, 0))
    assert format_eid(m.records[0].prefix) == "[1000]10.9.128.0/17" and m.records[0].ttl == 1


def test_e_bit_goes_to_etr_only():
    _, r = setup()
    data = ecm_request("10.1.2.3", e=True)
    assert r.handle(data, SRC, LOCAL, 0) == [Punt("ecm-etr", data, SRC)]


def test_punts_by_type_and_shard():
    _, r = setup(site_of=lambda eid: "site-a", shard_for=lambda s: 3)
    reg = register(["[0]10.1.0.0/16"], nonce=100)
    assert r.handle(reg, SRC, LOCAL, 0) == [Punt("map-register.3", reg, SRC)]


def test_malformed_and_probe_dropped():
    _, r = setup()
    [d] = r.handle(b"\x80\x00", SRC, LOCAL, 0)
    assert isinstance(d, Drop) and d.reason.startswith("malformed.")
    [d] = r.handle(b"\x20\x00\x00\x09" + bytes(8), SRC, LOCAL, 0)
    assert d.reason == "malformed.record_count"


def test_rate_limit_per_source():
    _, r = setup(rate=10, burst=5)
    data = ecm_request("10.1.2.3")
    got = [type(a[0]).__name__ for a in (r.handle(data, SRC, LOCAL, 0.0) for _ in range(8))]
    assert got == ["Send"] * 5 + ["Drop"] * 3
    assert isinstance(r.handle(data, ("127.0.0.2", 1), LOCAL, 0.0)[0], Send)  # other source unaffected
    assert isinstance(r.handle(data, SRC, LOCAL, 0.2)[0], Send)             # refilled


def test_per_eid_readiness_overrides_the_global_gate():
    """With several shards, one shard out of sync affects only its own EIDs."""
    _, r = setup(sync=False)
    r.ready = lambda eid: str(eid.address).startswith("10.1.")
    assert isinstance(r.handle(ecm_request("10.1.2.3"), SRC, LOCAL, 0)[0], Send)
    assert r.handle(ecm_request("[1000]10.9.8.7"), SRC, LOCAL, 0) == [Drop("not-in-sync")]


def test_pull_mode_forwards_once_with_m_bit_and_keeps_negatives_inside_the_mask():
    from common.decent.pull import PullView
    from common.wire.eidtext import parse_eidspec
    _, r = setup()
    v = PullView(4, "prefix", 24, ["127.0.0.1"])
    idx = v.index(parse_eidspec("10.1.2.3"))
    v.update({i: (("127.0.0.1",) if i != idx else ("127.0.0.9",)) for i in range(4)})
    r.serves, r.forward_to, r.neg_floor = v.serves, v.forward_target, v.negative_floor
    data = ecm_request("10.1.2.3")
    [a] = r.handle(data, SRC, LOCAL, 0)
    assert (a.dst, a.port) == ("127.0.0.9", 4342)
    fwd = decode_message(a.data)
    assert fwd.to_ms and not fwd.to_etr and a.data[4:] == data[4:]
    # an M=1 request is never forwarded to another set: Map-Server treatment here
    [a] = r.handle(ecm_request("10.1.2.3", m=True), SRC, LOCAL, 0)
    assert isinstance(decode_message(a.data), (MapReply, Ecm))
    assert not (isinstance(decode_message(a.data), Ecm) and decode_message(a.data).to_ms)
    # negatives in prefix mode are never shorter than the mask
    served = [h for h in (f"172.16.{i}.1" for i in range(40)) if v.serves(parse_eidspec(h))]
    assert len(served) >= 5
    for host in served:
        m = reply_of(r.handle(ecm_request(host), SRC, LOCAL, 0))
        assert not m.records[0].locators and m.records[0].mask_len >= 24


def test_cached_answers_follow_table_changes():
    ms, r = setup()
    first = reply_of(r.handle(ecm_request("10.1.2.3", nonce=1), SRC, LOCAL, 0))
    again = reply_of(r.handle(ecm_request("10.1.9.9", nonce=2), SRC, LOCAL, 0))  # same prefix: cached
    assert again.nonce == 2 and again.records == first.records
    ms.handle_register(register(["[0]10.1.0.0/16"], nonce=60, proxy=True, rlocs=("192.0.2.77",)), SRC, 1)
    m = reply_of(r.handle(ecm_request("10.1.2.3", nonce=3), SRC, LOCAL, 0))
    assert [str(l.address) for l in m.records[0].locators] == ["192.0.2.77"]
    ms.handle_register(register(["[0]10.1.0.0/16"], nonce=61, ttl=0), SRC, 2)
    m = reply_of(r.handle(ecm_request("10.1.2.3", nonce=4), SRC, LOCAL, 0))
    assert not m.records[0].locators and m.records[0].ttl == 1
