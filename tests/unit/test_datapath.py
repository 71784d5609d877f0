"""The data-path decisions (common.machines.datapath) on hand-built packets."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

from common.machines.datapath import (MAPPING_SYSTEM, DataPath, Encap, Icmp, Mapping, Miss, Native,
                                      Rloc, choose_rloc, flow_hash, fragment_ipv4, source_port)
from common.wire.addr import Eid
from common.wire.datahdr import decode_data_header, encapsulate_replica
from common.wire.ipudp import IpUdp, build_ip_udp, inet_checksum
from common.wire.records import ACT_DROP_NO_REASON, ACT_DROP_POLICY_DENIED, ACT_NATIVELY_FORWARD

R1, R2 = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2")


def eid(text: str, iid: int = 0) -> Eid:
    a, _, n = text.partition("/")
    return Eid(iid, ip_address(a), int(n))


def udp4(src: str, dst: str, sport: int = 1000, dport: int = 2000, size: int = 64, df: bool = False) -> bytes:
    pkt = bytearray(build_ip_udp(IpUdp(ip_address(src), ip_address(dst), sport, dport), bytes(size - 28)))
    if df:
        pkt[6] |= 0x40
        pkt[10:12] = b"\0\0"
        pkt[10:12] = struct.pack("!H", inet_checksum(bytes(pkt[:20])))
    return bytes(pkt)


def udp6(src: str, dst: str, size: int = 80, sport: int = 1000) -> bytes:
    return build_ip_udp(IpUdp(ip_address(src), ip_address(dst), sport, 2000), bytes(size - 48))


def dp(**kw) -> DataPath:
    kw.setdefault("own_rlocs", [R1])
    kw.setdefault("database", [eid("10.1.0.0/24"), eid("fd00:1::/48"), eid("10.1.0.0/24", 7)])
    return DataPath(**kw)


def test_encapsulation_header_port_and_iid():
    d = dp(nonce_seed=41)
    d.set_mapping(Mapping(eid("10.2.0.0/24", 5), (Rloc(R2),)))
    pkt = udp4("10.1.0.2", "10.2.0.9")
    [act] = d.encapsulate(pkt, 5, 0.0)
    assert isinstance(act, Encap) and act.rloc == R2
    sport, dport, ulen, csum = struct.unpack_from("!HHHH", act.segment)
    assert dport == 4341 and ulen == len(act.segment) == 16 + len(pkt) and csum == 0
    assert 49152 <= sport <= 65535 and sport == act.sport
    h = decode_data_header(act.segment[8:16])
    assert h.nonce_present and h.nonce == 42 and h.iid_present and h.iid == 5
    assert h.lsb_valid and h.lsb == 1
    assert act.segment[16:] == pkt and act.ttl == 64 == pkt[8]
    d.set_mapping(Mapping(eid("fd00:2::/48", 5), (Rloc(R2),)))
    v6 = bytearray(udp6("fd00:1::2", "fd00:2::9"))
    v6[7] = 17
    assert d.encapsulate(bytes(v6), 5, 0.0)[0].ttl == 17
    assert d.counters["encap.packets"] == 2 and d.counters["encap.bytes"] == len(pkt) + len(v6)


def test_bits_as_configured():
    d = dp(nonce_bit=False, lsb_bit=False, iid_bit=False)
    d.set_mapping(Mapping(eid("10.2.0.0/24"), (Rloc(R2),)))
    [act] = d.encapsulate(udp4("10.1.0.2", "10.2.0.9"), 0, 0.0)
    assert act.segment[8:16] == bytes(8)


def test_source_port_follows_the_flow():
    d = dp()
    d.set_mapping(Mapping(eid("10.2.0.0/24"), (Rloc(R2),)))
    a = d.encapsulate(udp4("10.1.0.2", "10.2.0.9", sport=1111), 0, 0)[0].sport
    b = d.encapsulate(udp4("10.1.0.2", "10.2.0.9", sport=1111), 0, 0)[0].sport
    ports = {d.encapsulate(udp4("10.1.0.2", "10.2.0.9", sport=p), 0, 0)[0].sport for p in range(1000, 1032)}
    assert a == b and len(ports) > 16


def test_rloc_choice_priority_weight_reachability():
    low = Rloc(IPv4Address("198.51.100.1"), priority=1, weight=0)
    high = Rloc(IPv4Address("198.51.100.2"), priority=2)
    assert choose_rloc([high, low], 7) == low
    assert choose_rloc([Rloc(low.address, 1, 0, reachable=False), high], 7) == high
    assert choose_rloc([Rloc(low.address, 255), Rloc(high.address, 255)], 7) is None
    # weights 75/25 among equal priorities: shares follow the weights, per flow
    a = Rloc(IPv4Address("198.51.100.3"), 1, 75)
    b = Rloc(IPv4Address("198.51.100.4"), 1, 25)
    picks = [choose_rloc([a, b], flow_hash(bytes([10, 0, 0, i % 256]), b"\x0a\x02\x00\x01", 17, i, 53))
             for i in range(4000)]
    share = picks.count(a) / len(picks)
    assert 0.7 < share < 0.8
    # family: an IPv6 RLOC is skipped by a node with IPv4 RLOCs only
    v6 = Rloc(IPv6Address("2001:db8::1"), 1)
    assert choose_rloc([v6, high], 1, (4,)) == high


def test_longest_match_and_expiry():
    d = dp()
    d.set_mapping(Mapping(eid("10.2.0.0/16"), (Rloc(R1),), expires=100.0))
    d.set_mapping(Mapping(eid("10.2.3.0/24"), (Rloc(R2),), expires=50.0))
    assert d.encapsulate(udp4("10.1.0.2", "10.2.3.4"), 0, 10.0)[0].rloc == R2
    assert d.encapsulate(udp4("10.1.0.2", "10.2.3.4"), 0, 60.0)[0].rloc == R1
    assert isinstance(d.encapsulate(udp4("10.1.0.2", "10.2.3.4"), 0, 200.0)[0], Miss)


def test_miss_queues_rate_limits_and_releases():
    d = dp(miss_interval=1.0, queue_per_eid=2)
    pkt = udp4("10.1.0.2", "10.9.0.1")
    [m] = d.encapsulate(pkt, 3, 0.0)
    assert isinstance(m, Miss) and m.eid == Eid(3, IPv4Address("10.9.0.1"), 32)
    assert d.encapsulate(pkt, 3, 0.2) == []          # within miss_interval: no second request
    assert d.encapsulate(pkt, 3, 0.3) == []
    assert d.counters["drop.miss-queue-full"] == 1
    assert d.release(0.4) == []
    d.set_mapping(Mapping(eid("10.9.0.0/16", 3), (Rloc(R2),)))
    out = d.release(0.5)
    assert [type(a) for a in out] == [Encap, Encap] and out[0].segment[16:] == pkt
    assert d.release(0.6) == []


def test_negative_natively_forward_and_drop_with_icmp():
    d = dp()
    d.set_mapping(Mapping(eid("10.50.0.0/16"), (), ACT_NATIVELY_FORWARD))
    d.set_mapping(Mapping(eid("10.60.0.0/16"), (), ACT_DROP_NO_REASON))
    d.set_mapping(Mapping(eid("10.70.0.0/16"), (), ACT_DROP_POLICY_DENIED))
    pkt = udp4("10.1.0.2", "10.50.1.1")
    assert d.encapsulate(pkt, 0, 0) == [Native(pkt, 0)]
    [ic] = d.encapsulate(udp4("10.1.0.2", "10.60.1.1"), 0, 0)
    assert isinstance(ic, Icmp)
    p = ic.packet
    assert p[9] == 1 and p[12:16] == bytes([10, 60, 1, 1]) and p[16:20] == bytes([10, 1, 0, 2])
    assert p[20:22] == bytes([3, 1]) and inet_checksum(p[:20]) == 0 and inet_checksum(p[20:]) == 0
    [ic] = d.encapsulate(udp4("10.1.0.2", "10.70.1.1"), 0, 0)
    assert ic.packet[20:22] == bytes([3, 13])
    assert d.counters["drop.negative-drop-no-reason"] == 1
    # no native interface: natively-forward becomes unreachable
    d2 = dp(native_forward=False)
    d2.set_mapping(Mapping(eid("10.50.0.0/16", 4), (), ACT_NATIVELY_FORWARD))
    [ic] = d2.encapsulate(pkt, 4, 0)
    assert isinstance(ic, Icmp) and ic.iid == 4 and ic.packet[20:22] == bytes([3, 1])
    assert d2.counters["drop.native-no-interface"] == 1


def test_mtu_ipv4_df_gets_frag_needed():
    d = dp(underlay_mtu=1500)
    d.set_mapping(Mapping(eid("10.2.0.0/24"), (Rloc(R2),)))
    fits = udp4("10.1.0.2", "10.2.0.9", size=1464, df=True)
    assert isinstance(d.encapsulate(fits, 0, 0)[0], Encap)
    big = udp4("10.1.0.2", "10.2.0.9", size=1465, df=True)
    [ic] = d.encapsulate(big, 0, 0)
    p = ic.packet
    assert p[20:22] == bytes([3, 4]) and struct.unpack_from("!H", p, 26)[0] == 1464
    assert p[28:48] == big[:20]


def test_mtu_ipv4_without_df_is_fragmented_to_fit():
    d = dp(underlay_mtu=600)
    d.set_mapping(Mapping(eid("10.2.0.0/24"), (Rloc(R2),)))
    big = udp4("10.1.0.2", "10.2.0.9", size=1400)
    out = d.encapsulate(big, 0, 0)
    assert len(out) == 3 and all(isinstance(a, Encap) and 20 + len(a.segment) <= 600 for a in out)
    frags = [a.segment[16:] for a in out]
    # reassemble: offsets and MF bits are right and the payload comes back
    data = b"".join(f[20:] for f in frags)
    assert data == big[20:]
    assert [(struct.unpack_from("!H", f, 6)[0] & 0x2000) != 0 for f in frags] == [True, True, False]
    assert all(inet_checksum(f[:20]) == 0 for f in frags)
    assert fragment_ipv4(big, 20) == []


def test_mtu_ipv6_packet_too_big():
    d = dp(underlay_mtu=1500)
    d.set_mapping(Mapping(eid("fd00:2::/48"), (Rloc(R2),)))
    big = udp6("fd00:1::2", "fd00:2::9", size=1465)
    [ic] = d.encapsulate(big, 0, 0)
    p = ic.packet
    assert p[6] == 58 and p[40] == 2 and struct.unpack_from("!I", p, 44)[0] == 1464
    assert p[8:24] == big[24:40] and p[24:40] == big[8:24]
    pseudo = p[8:40] + struct.pack("!I3xB", len(p) - 40, 58)
    assert inet_checksum(pseudo + p[40:]) == 0
    assert isinstance(d.encapsulate(udp6("fd00:1::2", "fd00:2::9", size=1464), 0, 0)[0], Encap)


def test_no_icmp_about_icmp_errors():
    d = dp()
    d.set_mapping(Mapping(eid("10.60.0.0/16"), (), ACT_DROP_NO_REASON))
    err = bytearray(udp4("10.1.0.2", "10.60.1.1"))
    err[9] = 1
    err[20] = 3  # an ICMP destination unreachable
    assert d.encapsulate(bytes(err), 0, 0) == []


def test_decapsulation_accepts_only_own_eids_in_the_right_iid():
    d = dp()
    src = dp(own_rlocs=[R2], database=[])
    src.set_mapping(Mapping(eid("10.1.0.0/16", 7), (Rloc(R1),)))
    src.set_mapping(Mapping(eid("10.1.0.0/16", 8), (Rloc(R1),)))
    src.set_mapping(Mapping(eid("10.3.0.0/16"), (Rloc(R1),)))
    pkt = udp4("10.2.0.2", "10.1.0.5")
    ok = src.encapsulate(pkt, 7, 0)[0].segment[8:]
    assert d.decapsulate(ok) == (7, pkt)
    assert d.decapsulate(src.encapsulate(pkt, 8, 0)[0].segment[8:]) is None
    assert d.decapsulate(src.encapsulate(udp4("10.2.0.2", "10.3.0.5"), 0, 0)[0].segment[8:]) is None
    assert d.decapsulate(b"\x08" + bytes(5)) is None
    assert d.decapsulate(bytes(8) + b"\x75" + bytes(30)) is None
    assert d.counters["drop.decap-not-our-eid"] == 2
    assert d.counters["drop.decap-truncated"] == 1
    assert d.counters["drop.decap-inner-version"] == 1
    assert d.counters["decap.packets"] == 1
    # trailing padding after the inner packet is cut off
    assert d.decapsulate(ok + b"\0\0\0\0") == (7, pkt)


def test_mapping_system_traffic_is_handed_back():
    d = dp()
    rep = encapsulate_replica(b"\x30" + bytes(40), R2, IPv4Address("224.50.0.1"))
    assert d.decapsulate(rep) == MAPPING_SYSTEM


def test_source_port_range():
    assert {source_port(h) >> 14 for h in (0, 1, 0xFFFFFFFF, 0x12345678)} == {3}


def test_encapsulation_picks_what_choose_rloc_picks():
    a = Rloc(IPv4Address("198.51.100.3"), 1, 75)
    b = Rloc(IPv4Address("198.51.100.4"), 1, 25)
    c = Rloc(IPv4Address("198.51.100.5"), 2, 100)
    d = dp()
    d.set_mapping(Mapping(eid("10.2.0.0/24"), (c, a, b)))
    seen = set()
    for p in range(200):
        pkt = udp4("10.1.0.2", "10.2.0.9", sport=3000 + p)
        [act] = d.encapsulate(pkt, 0, 0)
        h = flow_hash(bytes([10, 1, 0, 2]), bytes([10, 2, 0, 9]), 17, 3000 + p, 2000)
        assert act.rloc == choose_rloc((c, a, b), h).address and act.dest == str(act.rloc)
        seen.add(act.rloc)
    assert seen == {a.address, b.address}
    # a changed mapping is used at once (the per-destination memo is dropped)
    d.set_mapping(Mapping(eid("10.2.0.0/24"), (c,)))
    assert d.encapsulate(udp4("10.1.0.2", "10.2.0.9"), 0, 0)[0].rloc == c.address
