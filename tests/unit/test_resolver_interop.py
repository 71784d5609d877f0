"""Resolver behaviour that live interop with lispers.net and OOR asked for (issue 12):
ECMs with a zero inner UDP checksum answered, Info-Requests answered with an
Info-Reply, and a node's own EIDs answered by its ETR whatever the E bit."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address as V4, IPv6Address as V6

from common.machines.etr import eid_contains
from common.machines.natinfo import INFO_REPLY_TTL, LCAF_NAT_TRAVERSAL
from common.machines.regtable import PrefixSet, RegistrationTable
from common.machines.resolver import Drop, Punt, Resolver, Send
from common.wire.addr import NO_ADDRESS, OpaqueLcaf, decode_address, eid_to_wire
from common.wire.ecm import Ecm
from common.wire.eidtext import parse_eidspec
from common.wire.ipudp import IpUdp
from common.wire.messages import InfoMessage, MapReply, MapRequest, RequestRecord, decode_message, encode_message
from tests.unit.msfixtures import register, server

SRC = ("127.0.0.1", 40000)
LOCAL = "127.0.0.1"


def resolver(ms=None, **kw) -> Resolver:
    table = ms.table if ms is not None else RegistrationTable()
    r = Resolver(table, PrefixSet([parse_eidspec("10.0.0.0/8"), parse_eidspec("fd00::/8")]), **kw)
    r.in_sync = True
    return r


def ecm(spec: str, *, zero: bool, v6: bool = False, e: bool = False, nonce: int = 5) -> bytes:
    addr, ml = eid_to_wire(parse_eidspec(spec))
    itr = V6("::1") if v6 else V4("127.0.0.1")
    req = MapRequest(nonce, (itr,), (RequestRecord(addr, ml),))
    dst = V6("fd00::9") if v6 else V4("10.9.9.9")
    return encode_message(Ecm(req, IpUdp(itr, dst, 40001, 4342), to_etr=e, zero_checksum=zero))


def test_zero_checksum_ecm_ipv4_is_answered_and_not_counted():
    counted = []
    r = resolver()
    r.count = counted.append
    data = ecm("10.1.2.3", zero=True)
    assert data[4 + 20 + 6:4 + 20 + 8] == b"\x00\x00"
    [a] = r.handle(data, SRC, LOCAL, 0)
    assert isinstance(a, Send) and a.what == "negative-reply" and (a.dst, a.port) == ("127.0.0.1", 40001)
    m = decode_message(a.data)
    assert isinstance(m, MapReply) and m.nonce == 5 and not m.records[0].locators
    assert counted == []


def test_zero_checksum_ecm_ipv6_is_answered_and_counted():
    counted = []
    r = resolver()
    r.count = counted.append
    [a] = r.handle(ecm("fd00::1:2", zero=True, v6=True), ("::1", 40000), "::1", 0)
    assert isinstance(a, Send) and isinstance(decode_message(a.data), MapReply)
    assert counted == ["inner-udp-zero-checksum"]
    # a checksummed IPv6 ECM is not counted, and a wrong non-zero one is still dropped
    r.handle(ecm("fd00::1:2", zero=False, v6=True), ("::1", 40000), "::1", 0)
    assert counted == ["inner-udp-zero-checksum"]
    bad = bytearray(ecm("fd00::1:2", zero=False, v6=True))
    bad[-1] ^= 1
    [d] = r.handle(bytes(bad), ("::1", 40000), "::1", 0)
    assert isinstance(d, Drop) and d.reason == "malformed.inner.udp.checksum"


def _nat_fields(lcaf: OpaqueLcaf):
    ms_port, etr_port = struct.unpack_from("!HH", lcaf.body, 0)
    out, q = [], 4
    while q < len(lcaf.body):
        a, q = decode_address(lcaf.body, q, len(lcaf.body), "nat")
        out.append(a)
    return ms_port, etr_port, out


def test_info_request_gets_an_info_reply():
    r = resolver()
    r.control_port = 4342
    # as lispers.net sends it: key ID 0, no authentication data, EID with its hostname
    req = InfoMessage(0x1122334455667788, V4("10.1.2.3"), 32, ttl=0)
    [a] = r.handle(encode_message(req), ("198.51.100.7", 51234), "127.0.0.1", 0)
    assert isinstance(a, Send) and (a.dst, a.port, a.what) == ("198.51.100.7", 51234, "info-reply")
    rep = decode_message(a.data)
    assert isinstance(rep, InfoMessage) and rep.reply and rep.nonce == 0x1122334455667788
    assert (rep.eid, rep.mask_len, rep.ttl, rep.auth_data) == (V4("10.1.2.3"), 32, INFO_REPLY_TTL, b"")
    assert isinstance(rep.payload, OpaqueLcaf) and rep.payload.lcaf_type == LCAF_NAT_TRAVERSAL
    ms_port, etr_port, addrs = _nat_fields(rep.payload)
    # the requester's address and port as seen, then this node's Map-Server address
    assert (ms_port, etr_port) == (4342, 51234)
    assert addrs == [V4("198.51.100.7"), V4("127.0.0.1"), NO_ADDRESS, NO_ADDRESS]
    # the first byte: type 7 with R set
    assert a.data[0] == 0x78


def test_info_request_ipv6_and_reply_dropped_and_rate_limited():
    r = resolver(rate=1.0, burst=1.0)
    req = encode_message(InfoMessage(9, NO_ADDRESS, 0))
    [a] = r.handle(req, ("2001:db8::7", 4342), "::1", 0)
    _, _, addrs = _nat_fields(decode_message(a.data).payload)
    assert addrs[:2] == [V6("2001:db8::7"), V6("::1")]
    assert r.handle(req, ("2001:db8::7", 4342), "::1", 0) == [Drop("rate-limited", "2001:db8::7")]
    unsolicited = encode_message(InfoMessage(9, NO_ADDRESS, 0, reply=True))
    assert r.handle(unsolicited, ("192.0.2.1", 4342), LOCAL, 5) == [Drop("info-reply-unsolicited", "192.0.2.1")]


def test_own_eid_without_e_bit_goes_to_the_etr_when_the_replica_holds_nothing():
    own = (parse_eidspec("10.7.0.0/16"),)
    r = resolver()
    r.local_db = lambda eid: any(eid_contains(m, eid) for m in own)
    data = ecm("10.7.1.1", zero=True)                     # as OOR's Map-Server forwards it: E=0
    assert r.handle(data, SRC, LOCAL, 0) == [Punt("ecm-etr", data, SRC)]
    # not ours: the Map-Server treatment (a negative reply here)
    [a] = r.handle(ecm("10.8.1.1", zero=False), SRC, LOCAL, 0)
    assert isinstance(a, Send) and a.what == "negative-reply"


def test_own_eid_registered_here_keeps_the_map_server_treatment():
    ms = server()
    assert ms.handle_register(register(["[0]10.1.0.0/16"], nonce=1, proxy=True), SRC, 0).accepted
    r = resolver(ms)
    r.local_db = lambda eid: eid_contains(parse_eidspec("10.1.0.0/16"), eid)
    [a] = r.handle(ecm("10.1.2.3", zero=False), SRC, LOCAL, 0)
    assert isinstance(a, Send) and a.what == "proxy-reply"
