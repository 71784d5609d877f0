"""The Map-Resolver fast path (common/machines/fastpath.py, issue 11).

- golden requests built by hand (IPv4 and IPv6 inner headers, plain and instance-ID
  EIDs, several ITR-RLOCs) are answered by the fast path, byte for byte as the full
  path answers them;
- every unusual or malformed variant is left to the full path (``None``) before any
  rate limit is spent, so fast path + full path drop or answer exactly as the full
  path alone;
- the answer cache is invalidated by table changes: registration, change, deletion,
  a more-specific under a cached covering prefix, a registration inside a cached
  negative, a deletion that lets a negative grow, a swapped table;
- a differential test (hypothesis): random tables and changes, random requests
  (IPv4/IPv6, IIDs, LCAF-wrapped IID 0, registered, unregistered, more-specifics,
  non-proxy registrations, several listener families, tight rate limits), fast path +
  full path against a second resolver that only has the full path: identical actions.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.machines.compact import CompactTable
from common.machines.fastpath import FastPath
from common.machines.regtable import PrefixSet, RegistrationTable, entry_key, entry_value
from common.machines.resolver import Drop, RateLimiter, Resolver, Send
from common.machines.uniontable import UnionTable
from common.wire.addr import Eid, InstanceIdAddr
from common.wire.ecm import Ecm
from common.wire.eidtext import parse_eidspec
from common.wire.ipudp import IpUdp, udp_checksum
from common.wire.messages import MapRequest, RequestRecord, encode_message
from common.wire.records import Locator

SRC = ("127.0.61.1", 5000)
LOCAL4, LOCAL6 = "127.0.60.1", "::1"
CONFIGURED = ("10.0.0.0/8", "2001:db8::/32", "[7]10.0.0.0/8")


def loc(a: str, pri: int = 1) -> Locator:
    return Locator(ip_address(a), pri, 100, 255, 0, False, False, True)


def value(spec: str, rlocs=("192.0.2.1",), proxy=True, ttl=1440) -> dict:
    return entry_value(parse_eidspec(spec), "s", [loc(r) for r in rlocs], ttl=ttl, proxy=proxy, merge=False,
                       xtr_id=b"", registrant="192.0.2.9")


def key(spec: str) -> str:
    return entry_key(parse_eidspec(spec), b"")


def new_table(kind: str):
    if kind == "compact":
        return CompactTable()
    if kind == "union":     # one replica per map_server shard
        return UnionTable([CompactTable(), CompactTable()])
    return RegistrationTable()


def tset(table, k: str, v: dict) -> None:
    part = table.tables[sum(k.encode()) % 2] if isinstance(table, UnionTable) else table
    part.set(k, v)


def tdel(table, k: str) -> None:
    part = table.tables[sum(k.encode()) % 2] if isinstance(table, UnionTable) else table
    part.delete(k)


def make(regs=(), mtu=1400, rate=1e9, burst=1e9, kind="regtable"):
    table = new_table(kind)
    for spec in regs:
        tset(table, key(spec), value(spec))
    res = Resolver(table, PrefixSet([parse_eidspec(p) for p in CONFIGURED]), rate=rate, burst=burst, mtu=mtu)
    res.in_sync = True
    return res, FastPath(res)


def both(fast: FastPath, res: Resolver, data: bytes, local: str = LOCAL4, now: float = 1.0, src=SRC) -> list:
    r = fast.handle(data, src, local, now)
    if r is None:
        return res.handle(data, src, local, now)
    return [Send(*r)] if type(r) is tuple else [r]


# ---------------------------------------------------------------- golden requests

def golden_v4(eid: bytes = bytes([10, 1, 2, 3]), nonce: int = 0x0102030405060708, sport: int = 40000,
              itr: bytes = bytes([127, 0, 61, 1])) -> bytes:
    """An ECM Map-Request built field by field: inner IPv4, AFI-0 source EID, one
    IPv4 ITR-RLOC, one /32 record."""
    mr = (struct.pack("!IQ", 0x10000001, nonce) + b"\x00\x00" + b"\x00\x01" + itr
          + b"\x00\x20" + b"\x00\x01" + eid)
    src, dst = IPv4Address(itr), IPv4Address(eid)
    seg = struct.pack("!HHHH", sport, 4342, 8 + len(mr), 0) + mr
    csum = udp_checksum(src, dst, seg)
    udp = struct.pack("!HHHH", sport, 4342, 8 + len(mr), csum)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(mr), 0, 0, 64, 17, 0, src.packed, dst.packed)
    return b"\x80\x00\x00\x00" + ip + udp + mr


def golden_v6(iid: int = 7, eid: bytes = IPv4Address("10.1.2.3").packed, nonce: int = 99,
              sport: int = 40001) -> bytes:
    """Inner IPv6, an IPv4 source EID, two ITR-RLOCs (IPv6 then IPv4), the record's
    EID inside an instance-ID LCAF."""
    afi = 1 if len(eid) == 4 else 2
    addr = struct.pack("!H", afi) + eid
    lcaf = struct.pack("!HBBBBHI", 16387, 0, 0, 2, 0, 4 + len(addr), iid) + addr
    mr = (struct.pack("!IQ", 0x10000101, nonce) + b"\x00\x01" + bytes([10, 9, 9, 9])
          + b"\x00\x02" + IPv6Address("2001:db8:ffff::1").packed + b"\x00\x01" + bytes([127, 0, 61, 1])
          + bytes([0, 8 * len(eid)]) + lcaf)
    src, dst = IPv6Address("2001:db8:ffff::1"), IPv6Address("2001:db8::5")
    seg = struct.pack("!HHHH", sport, 4342, 8 + len(mr), 0) + mr
    csum = udp_checksum(src, dst, seg)
    ip = struct.pack("!IHBB16s16s", 6 << 28, 8 + len(mr), 17, 64, src.packed, dst.packed)
    return b"\x80\x00\x00\x00" + ip + struct.pack("!HHHH", sport, 4342, 8 + len(mr), csum) + mr


def refix(data: bytes) -> bytes:
    """``data`` with its inner UDP checksum made right again (after a mutation)."""
    if data[4] >> 4 == 4:
        u, src, dst = 24, IPv4Address(data[16:20]), IPv4Address(data[20:24])
    else:
        u, src, dst = 44, IPv6Address(data[12:28]), IPv6Address(data[28:44])
    seg = data[u:u + 6] + b"\x00\x00" + data[u + 8:]
    return data[:u + 6] + struct.pack("!H", udp_checksum(src, dst, seg)) + data[u + 8:]


def test_golden_ipv4_request_answered_by_the_fast_path_as_the_full_path():
    res, fast = make(["10.1.0.0/16"])
    data = golden_v4()
    r = fast.handle(data, SRC, LOCAL4, 1.0)
    assert type(r) is tuple
    assert [Send(*r)] == make(["10.1.0.0/16"])[0].handle(data, SRC, LOCAL4, 1.0)
    dst, port, reply, what = r
    assert (dst, port, what) == ("127.0.61.1", 40000, "proxy-reply")
    assert reply[:4] == b"\x20\x00\x00\x01" and reply[4:12] == (0x0102030405060708).to_bytes(8, "big")
    # a second request for the same EID: a cache hit with its own nonce and port
    r2 = fast.handle(golden_v4(nonce=5, sport=41000), SRC, LOCAL4, 1.0)
    assert r2[1] == 41000 and r2[2][4:12] == (5).to_bytes(8, "big") and r2[2][12:] == reply[12:]
    assert fast.stats["hit"] == 2 and fast.stats["miss"] == 1


def test_golden_ipv6_inner_header_iid_lcaf_and_itr_rloc_by_listener_family():
    regs = ["[7]10.1.0.0/16", "2001:db8:1::/48"]
    for local, itr in ((LOCAL4, "127.0.61.1"), (LOCAL6, "2001:db8:ffff::1")):
        res, fast = make(regs)
        ref, _ = make(regs)
        data = golden_v6()
        r = fast.handle(data, SRC, local, 1.0)
        assert type(r) is tuple and r[0] == itr and r[3] == "proxy-reply"
        assert [Send(*r)] == ref.handle(data, SRC, local, 1.0)
    # an IPv6 EID (IID 0 in an LCAF) and an unregistered one (negative)
    for eid, what in (("2001:db8:1::5", "proxy-reply"), ("2001:db8:2::5", "negative-reply")):
        res, fast = make(regs)
        ref, _ = make(regs)
        data = golden_v6(iid=0, eid=IPv6Address(eid).packed)
        r = fast.handle(data, SRC, LOCAL4, 1.0)
        assert type(r) is tuple and r[3] == what
        assert [Send(*r)] == ref.handle(data, SRC, LOCAL4, 1.0)


def _mutants():
    g4, g6 = golden_v4(), golden_v6()
    mr4 = 32   # offset of the Map-Request in golden_v4
    yield "bad checksum", g4[:30] + bytes([g4[30] ^ 1]) + g4[31:]
    yield "zero checksum", g4[:30] + b"\x00\x00" + g4[32:]
    yield "truncated", g4[:-1]
    yield "trailing byte", g4 + b"\x00"
    yield "lisp-sec S bit", b"\x88" + g4[1:]
    yield "ddt D bit", b"\x84" + g4[1:]
    yield "to-etr E bit", b"\x82" + g4[1:]
    yield "not an ecm", g4[4:]
    yield "ipv4 options", None
    yield "fragment", refix(g4[:10] + b"\x20\x00" + g4[12:])
    yield "inner not udp", refix(g4[:13] + b"\x06" + g4[14:])
    yield "ip total length", g4[:6] + struct.pack("!H", len(g4)) + g4[8:]
    yield "udp length", g4[:28] + struct.pack("!H", len(g4) - 23) + g4[30:]
    yield "port 4341", refix(g4[:26] + struct.pack("!H", 4341) + g4[28:])
    yield "source port 4341", refix(g4[:24] + struct.pack("!H", 4341) + g4[26:])
    for bit, name in ((0x02000000, "probe"), (0x00002000, "dont-map-reply"), (0x04000000, "M bit"),
                      (0x00100000, "I bit")):
        w0 = struct.unpack_from("!I", g4, mr4)[0] | bit
        yield name, refix(g4[:mr4] + struct.pack("!I", w0) + g4[mr4 + 4:])
    yield "two records", refix(g4[:mr4 + 3] + b"\x02" + g4[mr4 + 4:] + g4[-8:])
    yield "no records", refix(g4[:mr4 + 3] + b"\x00" + g4[mr4 + 4:-8])
    yield "map-reply inside", refix(g4[:mr4] + b"\x20" + g4[mr4 + 1:])
    yield "prefix request", refix(g4[:-7] + b"\x18" + g4[-6:])
    yield "mask too long", refix(g4[:-7] + b"\x21" + g4[-6:])
    yield "itr-rloc count past the end", refix(g4[:mr4 + 2] + b"\x05" + g4[mr4 + 3:])
    yield "unknown source afi", refix(g4[:mr4 + 12] + b"\x00\x09" + g4[mr4 + 14:])
    yield "unsupported eid afi", refix(g4[:-6] + b"\x00\x06" + g4[-4:] + b"\x00\x00")
    yield "no itr-rloc of the listener family", refix(g4)   # asked on an IPv6 listener below
    yield "lcaf type 9 eid", refix(g6[:-14] + bytes([g6[-14] ^ 0x0B]) + g6[-13:])
    yield "ipv6 payload length", g6[:8] + struct.pack("!H", len(g6) - 43) + g6[10:]
    short = g6[:44 + 8 + 12]     # consistent lengths, a good checksum, nothing after the nonce
    short = short[:8] + struct.pack("!H", 20) + short[10:48] + struct.pack("!H", 20) + short[50:]
    yield "ipv6, map-request header only", refix(short)


def test_unusual_and_malformed_requests_go_to_the_full_path_untouched():
    names = []
    for name, data in _mutants():
        if data is None:
            continue
        local = LOCAL6 if name == "no itr-rloc of the listener family" else LOCAL4
        res, fast = make(["10.1.0.0/16", "[7]10.1.0.0/16"], rate=1.0, burst=3.0)
        ref, _ = make(["10.1.0.0/16", "[7]10.1.0.0/16"], rate=1.0, burst=3.0)
        for warm in (golden_v6(),) if local == LOCAL6 else (golden_v4(), golden_v6()):
            # the EIDs' answers are cached: a hit if the fast path accepted the mutant
            assert type(fast.handle(warm, ("127.9.9.9", 1), local, 0.0)) is tuple, name
            ref.handle(warm, ("127.9.9.9", 1), local, 0.0)
        for i in range(5):   # past the burst: the limiter must see each exactly once
            assert fast.handle(data, SRC, local, 1.0) is None, name
            assert res.handle(data, SRC, local, 1.0) == ref.handle(data, SRC, local, 1.0), name
        names.append(name)
    assert len(names) >= 25


def test_full_path_drops_the_malformed_ones_the_fast_path_declined():
    """The mutants are real faults: the full path drops each with the reason it names."""
    res, fast = make(["10.1.0.0/16"])
    g4 = golden_v4()
    bad = g4[:30] + bytes([g4[30] ^ 1]) + g4[31:]
    assert fast.handle(bad, SRC, LOCAL4, 1.0) is None
    [d] = res.handle(bad, SRC, LOCAL4, 1.0)
    assert isinstance(d, Drop) and d.reason == "malformed.inner.udp.checksum"
    [d] = res.handle(g4 + b"\x00", SRC, LOCAL4, 1.0)
    assert isinstance(d, Drop) and d.reason.startswith("malformed.")


def test_rate_limits_apply_on_the_fast_path_in_the_full_paths_order():
    res, fast = make(["10.1.0.0/16"], rate=1.0, burst=2.0)
    res.dest_limiter = RateLimiter(1.0, 3.0)
    out = [both(fast, res, golden_v4(nonce=i), src=(f"127.0.61.{1 + i // 3}", 5000)) for i in range(9)]
    reasons = [a[0].reason if isinstance(a[0], Drop) else "sent" for a in out]
    # each source gets its burst of 2; the destination (one ITR-RLOC) 3 in all
    assert reasons == ["sent", "sent", "rate-limited", "sent", "rate-limited-destination", "rate-limited",
                       "rate-limited-destination", "rate-limited-destination", "rate-limited"]
    assert fast.stats["hit"] >= 8


def test_not_in_sync_pull_mode_and_local_database_go_to_the_full_path():
    res, fast = make(["10.1.0.0/16"])
    fast.handle(golden_v4(), SRC, LOCAL4, 1.0)
    res.in_sync = False
    assert fast.handle(golden_v4(), SRC, LOCAL4, 1.0) is None
    assert res.handle(golden_v4(), SRC, LOCAL4, 1.0) == [Drop("not-in-sync")]
    res.in_sync = True
    res.serves = lambda eid: False
    assert fast.handle(golden_v4(), SRC, LOCAL4, 1.0) is None          # M=0 in pull mode
    assert type(fast.handle(b"\x81" + golden_v4()[1:], SRC, LOCAL4, 1.0)) is tuple   # M=1: served here
    res.serves = None
    neg = golden_v4(eid=bytes([10, 2, 0, 1]))
    assert type(fast.handle(neg, SRC, LOCAL4, 1.0)) is tuple
    res.local_db = lambda eid: True
    assert fast.handle(neg, SRC, LOCAL4, 1.0) is None                  # our own ETR may answer it


# ---------------------------------------------------------------- invalidation

def request(spec: str, nonce: int = 1, m: bool = False) -> bytes:
    eid = parse_eidspec(spec)
    addr = InstanceIdAddr(eid.iid, eid.address) if eid.iid else eid.address
    req = MapRequest(nonce, (ip_address("127.0.61.1"), IPv6Address("2001:db8::2")),
                     (RequestRecord(addr, eid.length),))
    dst = eid.address if eid.address.version == 4 else IPv6Address("2001:db8::1")
    src = ip_address("127.0.61.1") if dst.version == 4 else IPv6Address("2001:db8::2")
    return encode_message(Ecm(req, IpUdp(src, dst, 40000, 4342), to_ms=m))


KINDS = pytest.mark.parametrize("kind", ["regtable", "compact", "union"])


class Pair:
    """A resolver with the fast path and a reference resolver (full path only) kept
    with the same table contents."""

    def __init__(self, regs=(), mtu=1400, kind="regtable") -> None:
        self.res, self.fast = make(regs, mtu, kind=kind)
        self.ref, _ = make(regs, mtu)

    def set(self, spec: str, **kw) -> None:
        for r in (self.res, self.ref):
            tset(r.table, key(spec), value(spec, **kw))

    def delete(self, spec: str) -> None:
        for r in (self.res, self.ref):
            tdel(r.table, key(spec))

    def ask(self, spec: str, local: str = LOCAL4) -> list:
        data = request(spec)
        got = both(self.fast, self.res, data, local)
        assert got == self.ref.handle(data, SRC, local, 1.0), spec
        return got


@KINDS
def test_register_change_delete_never_answer_stale(kind):
    p = Pair(kind=kind)
    assert p.ask("10.1.2.3/32")[0].what == "negative-reply"
    p.set("10.1.0.0/16")                                     # a negative covering a new registration
    assert p.ask("10.1.2.3/32")[0].what == "proxy-reply"
    before = p.ask("10.1.2.3/32")[0].data
    p.set("10.1.0.0/16", rlocs=("192.0.2.77",))              # changed locators
    after = p.ask("10.1.2.3/32")[0].data
    assert after != before and IPv4Address("192.0.2.77").packed in after
    p.delete("10.1.0.0/16")
    assert p.ask("10.1.2.3/32")[0].what == "negative-reply"
    assert p.fast.stats["invalidated"] >= 3


@KINDS
def test_more_specific_added_under_a_cached_covering_prefix(kind):
    p = Pair(["10.1.0.0/16"], kind=kind)
    one = p.ask("10.1.9.9/32")[0].data
    p.set("10.1.2.0/24")                                     # listed in the /16's answer from now on
    two = p.ask("10.1.9.9/32")[0].data
    assert two[3] == 2 and one[3] == 1
    p.delete("10.1.2.0/24")
    assert p.ask("10.1.9.9/32")[0].data == one


@KINDS
def test_carved_answers_follow_more_specifics(kind):
    p = Pair(["10.1.0.0/16"] + [f"10.1.{i}.0/24" for i in range(30)], mtu=600, kind=kind)
    carved = p.ask("10.1.200.1/32")[0].data
    assert carved[3] == 1                                    # one carved record
    p.set("10.1.200.0/24")
    assert p.ask("10.1.200.1/32")[0].data != carved


@KINDS
def test_registration_covering_a_cached_small_negative(kind):
    p = Pair(["10.1.2.0/25"], kind=kind)
    assert p.ask("10.1.2.200/32")[0].what == "negative-reply"       # names 10.1.2.128/25
    p.set("10.1.0.0/16")                                             # contains that negative
    assert p.ask("10.1.2.200/32")[0].what == "proxy-reply"


@KINDS
def test_deleting_a_neighbour_lets_a_cached_negative_grow(kind):
    p = Pair(["10.1.0.0/25"], kind=kind)
    small = p.ask("10.1.0.200/32")[0].data
    p.delete("10.1.0.0/25")                                  # the negative prefix is now larger
    assert p.ask("10.1.0.200/32")[0].data != small


@KINDS
def test_other_instance_ids_and_families_keep_their_answers(kind):
    p = Pair(["10.1.0.0/16", "[7]10.1.0.0/16", "2001:db8:1::/48"], kind=kind)
    for s in ("10.1.2.3/32", "[7]10.1.2.3/32", "2001:db8:1::1/128", "2001:db8:2::1/128"):
        p.ask(s)
    hits = p.fast.stats["hit"]
    p.set("[7]10.1.5.0/24")
    for s in ("10.1.2.3/32", "2001:db8:1::1/128", "2001:db8:2::1/128"):
        p.ask(s)
    assert p.fast.stats["hit"] == hits + 3                  # untouched by a change in IID 7
    p.ask("[7]10.1.2.3/32")
    assert p.fast.stats["miss"] == 5


def test_a_change_the_hook_did_not_see_clears_the_cache():
    p = Pair(["10.1.0.0/16"])
    p.ask("10.1.2.3/32")
    for r in (p.res, p.ref):                                  # a swapped table (e.g. after a resync)
        t = RegistrationTable()
        t.set(key("10.1.2.0/24"), value("10.1.2.0/24", rlocs=("192.0.2.5",)))
        r.table = t
    assert IPv4Address("192.0.2.5").packed in p.ask("10.1.2.3/32")[0].data
    p.res.table.on_change = None                              # a change without the hook
    for r in (p.res, p.ref):
        r.table.set(key("10.1.2.0/24"), value("10.1.2.0/24", rlocs=("192.0.2.6",)))
    assert IPv4Address("192.0.2.6").packed in p.ask("10.1.2.3/32")[0].data


def test_the_cache_is_bounded():
    res, fast = make(["10.1.0.0/16"])
    fast.max_entries = 64
    for i in range(300):
        assert type(fast.handle(golden_v4(eid=bytes([10, 1, i % 256, 1 + i // 256])), SRC, LOCAL4, 1.0)) is tuple
        assert len(fast._c[0]) <= 64


# ---------------------------------------------------------------- differential

V4NETS = ["10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25", "10.1.3.4/32", "10.2.0.0/16", "10.0.0.0/12",
          "10.1.0.0/20", "11.0.0.0/8"]
V6NETS = ["2001:db8:1::/48", "2001:db8:1:2::/64", "2001:db8::/40", "2001:db8:1:2::5/128"]
HOSTS = ["10.1.2.3", "10.1.2.200", "10.1.3.4", "10.1.9.9", "10.2.0.1", "10.3.0.1", "10.15.255.255",
         "11.1.1.1", "12.0.0.1", "10.1.0.5"]
HOSTS6 = ["2001:db8:1::1", "2001:db8:1:2::5", "2001:db8:1:2::6", "2001:db8:2::1", "2001:db9::1"]

specs = st.one_of(st.builds(lambda iid, n: f"[{iid}]{n}", st.sampled_from([0, 7]), st.sampled_from(V4NETS)),
                  st.sampled_from(V6NETS))
ops = st.one_of(
    st.tuples(st.just("set"), specs, st.sampled_from(["192.0.2.1", "192.0.2.2", "2001:db8:ff::1"]),
              st.booleans()),
    st.tuples(st.just("delete"), specs),
    st.tuples(st.just("ask"), st.one_of(
        st.builds(lambda iid, h: f"[{iid}]{h}/32", st.sampled_from([0, 7]), st.sampled_from(HOSTS)),
        st.builds(lambda h: f"{h}/128", st.sampled_from(HOSTS6)),
        st.builds(lambda h: f"{h}/24", st.sampled_from(HOSTS[:4]))),        # prefix requests: full path
        st.sampled_from([LOCAL4, LOCAL6]), st.sampled_from(["127.0.61.1", "127.0.61.2"]),
        st.booleans(), st.booleans()))


def lcaf0(spec: str) -> bytes:
    """The same request with IID 0 sent inside an instance-ID LCAF."""
    eid = parse_eidspec(spec)
    req = MapRequest(3, (ip_address("127.0.61.1"), IPv6Address("2001:db8::2")),
                     (RequestRecord(InstanceIdAddr(0, eid.address), eid.length),))
    return encode_message(Ecm(req, IpUdp(IPv4Address("127.0.61.1"), IPv4Address("10.0.0.1"), 40000, 4342)))


@settings(max_examples=300, deadline=None)
@given(initial=st.lists(specs, max_size=6), steps=st.lists(ops, min_size=1, max_size=40),
       mtu=st.sampled_from([1400, 200]), tight=st.booleans(),
       kind=st.sampled_from(["regtable", "compact", "union"]), pull=st.booleans(), own=st.booleans())
def test_fast_path_and_full_path_give_identical_actions(initial, steps, mtu, tight, kind, pull, own):
    """The reference is a RegistrationTable with the full path only; the fast path's
    resolver reads a RegistrationTable, a CompactTable or a UnionTable of two.  With
    ``pull``, pull mode's hooks (half the EIDs served elsewhere, a negative floor);
    with ``own``, a local database (10.2.0.0/16: this node's ETR answers)."""
    rate = dict(rate=2.0, burst=4.0) if tight else {}
    res, fast = make(initial, mtu, kind=kind, **rate)
    ref, _ = make(initial, mtu, **rate)
    for r in (res, ref):
        if pull:
            r.serves = lambda eid: (int(eid.address) >> 8) % 2 == 0
            r.forward_to = lambda eid, v: "192.0.2.250" if v == 4 else "2001:db8::250"
            r.neg_floor = lambda eid: 16 if eid.address.version == 4 else 48
        if own:
            r.local_db = lambda eid: eid.address.version == 4 and int(eid.address) >> 16 == 0x0A02
    if tight:
        res.dest_limiter, ref.dest_limiter = RateLimiter(3.0, 6.0), RateLimiter(3.0, 6.0)
    now = 1.0
    for step in steps:
        now += 0.1
        if step[0] == "set":
            _, spec, rloc, proxy = step
            for r in (res, ref):
                tset(r.table, key(spec), value(spec, rlocs=(rloc,), proxy=proxy))
        elif step[0] == "delete":
            for r in (res, ref):
                tdel(r.table, key(step[1]))
        else:
            _, spec, local, src, wrap, m = step
            eid = parse_eidspec(spec)
            data = (lcaf0(spec) if wrap and eid.iid == 0 and eid.address.version == 4
                    else request(spec, int(now * 10), m))
            got = both(fast, res, data, local, now, (src, 5000))
            assert got == ref.handle(data, (src, 5000), local, now), (spec, local)


# ---------------------------------------------------------------- configuration

def test_config_keys_fast_path_and_answer_cache():
    from common.config import ConfigError, parse_config

    def conf(**mr):
        return parse_config({"node": {"name": "n1", "rlocs": ["127.0.0.1"], "state_dir": "state"},
                             "map_resolver": mr}, "x.toml", "/etc/decent")

    assert (conf().map_resolver.fast_path, conf().map_resolver.answer_cache) == (True, 65536)
    c = conf(fast_path=False, answer_cache=1000).map_resolver
    assert (c.fast_path, c.answer_cache) == (False, 1000)
    for bad in ({"fast_path": "yes"}, {"answer_cache": 3}):
        with pytest.raises(ConfigError) as err:
            conf(**bad)
        assert err.value.key_path == f"map_resolver.{next(iter(bad))}"


@settings(max_examples=400, deadline=None)
@given(base=st.sampled_from(["v4", "v6", "v6-ipv6-eid"]), cut=st.integers(0, 120),
       flips=st.lists(st.tuples(st.integers(0, 119), st.integers(1, 255)), max_size=3), fix=st.booleans(),
       ipv6_listener=st.booleans())
def test_mangled_requests_never_raise_and_match_the_full_path(base, cut, flips, fix, ipv6_listener):
    """Truncated and bit-flipped requests (checksum fixed up or not): the fast path
    never raises, and fast + full path act exactly as the full path alone."""
    data = {"v4": golden_v4(), "v6": golden_v6(),
            "v6-ipv6-eid": golden_v6(iid=0, eid=IPv6Address("2001:db8:1::5").packed)}[base]
    data = bytearray(data[:max(1, len(data) - cut)] if cut < 60 else data)
    for i, x in flips:
        if i < len(data):
            data[i] ^= x
    data = bytes(data)
    if fix and len(data) > 52 and data[4] >> 4 in (4, 6):
        try:
            data = refix(data)
        except (ValueError, struct.error):
            pass
    local = LOCAL6 if ipv6_listener else LOCAL4
    res, fast = make(["10.1.0.0/16", "[7]10.1.0.0/16", "2001:db8:1::/48"])
    ref, _ = make(["10.1.0.0/16", "[7]10.1.0.0/16", "2001:db8:1::/48"])
    for warm in (golden_v4(), golden_v6()):
        fast.handle(warm, SRC, local, 0.0)
        ref.handle(warm, SRC, local, 0.0)
    assert both(fast, res, data, local) == ref.handle(data, SRC, local, 1.0)
