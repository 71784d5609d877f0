"""Issue 11 item 4: a Map-Reply never exceeds 255 records nor one datagram of the
path MTU; a match whose more-specifics do not fit is answered with one carved record."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from common.machines.mapserver import MapServer
from common.machines.regtable import PrefixSet
from common.machines.resolver import Drop, Resolver, Send
from common.wire.eidtext import format_eid
from common.wire.messages import MapReply, decode_message
from tests.unit.msfixtures import ecm_request, register, site

SRC = ("127.0.0.1", 40000)
PROXY16 = IPv4Network("10.1.0.0/16")
MORE = ("192.0.2.9",)        # the /32s' locator, distinct from the /16's 192.0.2.1


def build(n_specific=300, mtu=1400, stride=211, first=1):
    """A proxy /16 (may hold more-specifics) and ``n_specific`` proxy /32s inside it."""
    ms = MapServer([site(prefixes=(("[0]10.1.0.0/16", True), ("[0]2001:db8:1::/48", False)))])
    assert ms.handle_register(register(["[0]10.1.0.0/16"], nonce=1, proxy=True), SRC, 0).accepted
    hosts = [PROXY16.network_address + first + (i * stride) % 65534 for i in range(n_specific)]
    assert len(set(hosts)) == n_specific
    for b in range(0, n_specific, 50):
        specs = [f"[0]{h}/32" for h in hosts[b:b + 50]]
        res = ms.handle_register(register(specs, nonce=100 + b, proxy=True, rlocs=MORE), SRC, 0)
        assert res.accepted
    r = Resolver(ms.table, PrefixSet([p for s in ms.site_table for p, _ in s.prefixes]), mtu=mtu)
    r.in_sync = True
    return ms, r, set(hosts)


def answer(r, addr, *, itr="127.0.0.1"):
    data = ecm_request(str(addr), itr=itr)
    actions = r.handle(data, SRC, "127.0.0.1", 0)
    [a] = actions
    assert isinstance(a, Send), actions
    # the datagram the kernel sends: IPv4 20 + UDP 8 + the Map-Reply
    assert 20 + 8 + len(a.data) <= r.mtu
    m = decode_message(a.data)            # well formed: decodes completely
    assert isinstance(m, MapReply)
    assert len(m.records) == (a.data[3])  # the record count is the count, not flags
    return m, data, a.data


def check_one(m, addr, hosts):
    """The single record answers ``addr`` correctly (see the module docstring)."""
    [rec] = m.records
    net = IPv4Network(f"{rec.prefix.address}/{rec.prefix.length}")
    assert addr in net
    locs = [str(l.address) for l in rec.locators]
    if addr in hosts:
        assert net.prefixlen == 32 and locs == list(MORE)
        return
    assert net.subnet_of(PROXY16) and locs == ["192.0.2.1"]
    assert not any(IPv4Address(h) in net for h in hosts), f"{net} covers a more-specific"
    if net.prefixlen > 16:   # the largest such prefix: its parent covers a more-specific
        parent = net.supernet()
        assert any(IPv4Address(h) in parent for h in hosts)


def test_300_more_specifics_every_reply_fits_and_answers_its_eid():
    _, r, hosts = build()
    ratio = 0.0
    # every registered /32, each one's neighbours, and a sweep of the /16
    addrs = set(hosts) | {h + 1 for h in hosts} | {h - 1 for h in hosts}
    addrs |= {PROXY16.network_address + i for i in range(0, 65536, 97)}
    for addr in sorted(addrs):
        if addr not in PROXY16:
            continue
        m, req, rep = answer(r, addr)
        check_one(m, addr, hosts)
        ratio = max(ratio, len(rep) / len(req))
    assert ratio < 2.0   # one record per request: no amplification through more-specifics


def test_more_specifics_returned_while_they_fit():
    _, r, hosts = build(n_specific=5)
    m, _, _ = answer(r, "10.1.255.254")
    assert [format_eid(x.prefix) for x in m.records][0] == "[0]10.1.0.0/16"
    assert len(m.records) == 6   # RFC 9301 5.5: the match and every more-specific


def test_mtu_alone_forces_the_carved_record():
    # 5 more-specifics fit 1,400 bytes; not 100 bytes of records
    _, r, hosts = build(n_specific=5, mtu=20 + 8 + 12 + 100)
    m, _, _ = answer(r, "10.1.255.254")
    check_one(m, IPv4Address("10.1.255.254"), hosts)


def test_256_more_specifics_never_overflow_the_record_count():
    # records small enough that 256 fit the MTU: the 255-record bound must carve
    _, r, hosts = build(n_specific=256, mtu=65000)
    m, _, _ = answer(r, "10.1.255.254")
    check_one(m, IPv4Address("10.1.255.254"), hosts)


@pytest.mark.parametrize("first", [0, 1])
def test_prefix_request_carved_for_its_first_address(first):
    # first=0: the /16's first address is itself a registered /32: that is the answer
    _, r, hosts = build(first=first)
    data = ecm_request("[0]10.1.0.0/16")
    [a] = r.handle(data, SRC, "127.0.0.1", 0)
    m = decode_message(a.data)
    check_one(m, IPv4Address("10.1.0.0"), hosts)


def test_a_match_that_fits_alone_is_carved_when_the_rest_of_the_reply_is_full():
    from common.wire.ecm import Ecm
    from common.wire.ipudp import IpUdp
    from common.wire.messages import MapRequest, RequestRecord, encode_message
    _, r, hosts = build(n_specific=5)
    whole = len(answer(r, "10.1.255.254")[2]) - 12     # the /16 and its 5 more-specifics
    _, r, hosts = build(n_specific=300)
    carved = len(answer(r, "10.1.255.254")[2]) - 12    # one carved record
    _, r, hosts = build(n_specific=5, mtu=28 + 12 + whole + carved)
    addrs = [IPv4Address("10.1.255.254"), IPv4Address("10.1.255.250")]
    req = MapRequest(9, (IPv4Address("127.0.0.1"),), tuple(RequestRecord(a, 32) for a in addrs))
    data = encode_message(Ecm(req, IpUdp(IPv4Address("127.0.0.1"), addrs[0], 40000, 4342)))
    [send] = r.handle(data, SRC, "127.0.0.1", 0)
    m = decode_message(send.data)
    assert len(m.records) == 7 and 28 + len(send.data) <= r.mtu
    check_one(MapReply(9, m.records[6:]), addrs[1], hosts)


@pytest.mark.parametrize("mtu", [200, 1400])
def test_multi_record_request_stays_within_the_mtu(mtu):
    from common.wire.ecm import Ecm
    from common.wire.ipudp import IpUdp
    from common.wire.messages import MapRequest, RequestRecord, encode_message
    _, r, hosts = build(mtu=mtu)
    addrs = [IPv4Address("10.1.255.254") - i for i in range(0, 40 * 3, 3)]
    req = MapRequest(9, (IPv4Address("127.0.0.1"),), tuple(RequestRecord(a, 32) for a in addrs))
    data = encode_message(Ecm(req, IpUdp(IPv4Address("127.0.0.1"), addrs[0], 40000, 4342)))
    actions = r.handle(data, SRC, "127.0.0.1", 0)
    [send] = [a for a in actions if isinstance(a, Send)]
    drops = [a for a in actions if isinstance(a, Drop)]
    assert 28 + len(send.data) <= mtu
    m = decode_message(send.data)
    assert len(m.records) + sum(1 for d in drops if d.reason == "reply-full") == len(addrs)
    for rec in m.records:   # each answered record is a correct answer for some requested EID
        net = IPv4Network(f"{rec.prefix.address}/{rec.prefix.length}")
        [addr] = [a for a in addrs if a in net][:1] or [None]
        assert addr is not None
        check_one(MapReply(m.nonce, (rec,)), addr, hosts)
    if mtu == 1400:
        assert not drops   # 40 one-record answers of 24 bytes fit
