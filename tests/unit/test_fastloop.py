"""The C receive loop (roles/_fastloop.c through roles/fastloop.py, issue 11).

- differential (hypothesis): random tables and changes, generated requests
  (registered, unregistered, more-specifics, IPv4/IPv6 inner headers and EIDs,
  instance IDs, prefix requests, M bits, nonces, tight source and destination
  limits, pull-mode and local-database hooks, both listener families) through the
  C decision (Python path when it hands over) and through the Python FastPath +
  full path, each on its own but equal state: identical actions, byte-identical
  replies, identical shared rate tables and fast-path statistics after every step,
  and the C hands over only what the Python fast path would not answer from its
  cache as it stood;
- mangled requests (truncated, odd lengths, bit flips, checksums fixed or not):
  never an error, identical decisions;
- a shunned source goes to the Python path; a source with bad tokens left does not;
- on a real socket (loopback, ephemeral ports): ``drain`` answers several batches
  with sendmmsg, hands misses and other messages to the worker's Python path in
  their turn with the address uvloop would give, reports rate-limit drops;
- under CI=true the extension must be built.
"""

from __future__ import annotations

import socket
import struct
import time
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.machines.ratelimit import TokenTable
from common.machines.resolver import Drop, Send
from common.machines.shun import Shun
from common.wire.eidtext import parse_eidspec
from roles import fastloop
from tests.unit.test_fastpath import (LOCAL4, LOCAL6, SRC, both, golden_v4, golden_v6, key, lcaf0, make,
                                      ops, refix, request, specs, tdel, tset, value)

KEY = bytes(range(32))
SLOTS = 1024


def test_the_extension_is_built_under_ci():
    if fastloop.required():
        assert fastloop.available(), f"roles._fastloop was not built: {fastloop.WHY_NOT}"
    elif not fastloop.available():
        pytest.skip(f"roles._fastloop not built here ({fastloop.WHY_NOT}); CI=true requires it")


needs_c = pytest.mark.skipif(not fastloop.available() and not fastloop.required(),
                             reason="roles._fastloop not built (CI=true fails above)")


def limits(res, tight: bool, dst=None) -> None:
    """The worker's shared token tables (here on private buffers)."""
    src = (2.0, 4.0) if tight else (1e9, 1e9)
    dst = dst or ((3.0, 6.0) if tight else (1e9, 1e9))
    res.limiter = TokenTable(bytearray(TokenTable.size(SLOTS)), 0, SLOTS, *src, KEY)
    res.dest_limiter = TokenTable(bytearray(TokenTable.size(SLOTS)), 0, SLOTS, *dst, KEY)


class Sides:
    """The Python side (FastPath, then the full path) and the C side (the C
    decision, then the same Python paths when it hands over), on equal state."""

    def __init__(self, regs=(), mtu=1400, kind="regtable", tight=False, dst=None) -> None:
        self.res, self.fast = make(regs, mtu, kind=kind)
        self.cres, self.cfast = make(regs, mtu, kind=kind)
        for r in (self.res, self.cres):
            limits(r, tight, dst)
        self.shun = Shun()
        self.loops = {six: fastloop.CLoop(self.cfast, six, self.shun) for six in (False, True)}
        self.c_answered = self.handed = 0

    def resolvers(self):
        return self.res, self.cres

    def python(self, data, local, now, src=SRC):
        return both(self.fast, self.res, data, local, now, src)

    def c(self, data, local, now, src=SRC):
        hits, misses = self.cfast.stats["hit"], self.cfast.stats["miss"]
        r = self.loops[":" in local].handle(data, src[0], now)
        if r is None:
            self.handed += 1
            assert self.cfast.stats["hit"] == hits
            py = self.cfast.handle(data, src, local, now)
            # handed over: the Python fast path declines it, or fills its cache, or asks a hook
            hook = self.cres.serves is not None or self.cres.local_db is not None
            assert py is None or type(py) is not tuple or self.cfast.stats["miss"] > misses or hook, \
                "the C declined what the Python fast path answered from its cache"
            if py is None:
                return self.cres.handle(data, src, local, now)
            return [Send(*py)] if type(py) is tuple else [py]
        self.c_answered += 1
        if r[0] == "drop":
            return [Drop(r[1], r[2])]
        assert type(r[2]) is bytes
        return [Send(*r)]

    def step(self, data, local=LOCAL4, now=1.0, src=SRC):
        want = self.python(data, local, now, src)
        got = self.c(data, local, now, src)
        assert got == want
        for a, b in ((self.res.limiter, self.cres.limiter), (self.res.dest_limiter, self.cres.dest_limiter)):
            assert bytes(a.buf) == bytes(b.buf)           # the same tokens spent, bit for bit
        assert self.fast.stats == self.cfast.stats
        return got


@needs_c
def test_golden_requests_answered_by_the_c_byte_for_byte():
    s = Sides(["10.1.0.0/16", "[7]10.1.0.0/16", "2001:db8:1::/48"])
    for data, local in ((golden_v4(), LOCAL4), (golden_v6(), LOCAL4), (golden_v6(), LOCAL6),
                        (golden_v4(eid=bytes([10, 9, 0, 1])), LOCAL4),
                        (golden_v6(iid=0, eid=IPv6Address("2001:db8:1::5").packed), LOCAL6)):
        s.step(data, local)                               # the miss fills the cache (Python)
        before = s.c_answered
        for nonce in (1, 2 ** 64 - 1, 0x0102030405060708):
            got = s.step(_nonce(data, nonce), local)
            assert isinstance(got[0], Send) and got[0].data[4:12] == struct.pack("!Q", nonce)
        assert s.c_answered - before == 3                 # every repeat answered by the C


def _nonce(data: bytes, nonce: int) -> bytes:
    """``data`` with another Map-Request nonce, its checksum fixed."""
    m = (24 if data[4] >> 4 == 4 else 44) + 8
    return refix(data[:m + 4] + struct.pack("!Q", nonce) + data[m + 12:])


@needs_c
def test_rate_limits_in_the_c_spend_the_shared_tables_as_python():
    s = Sides(["10.1.0.0/16"], tight=True)
    s.step(golden_v4(), now=0.5, src=("127.0.61.99", 1))
    reasons = []
    for i in range(12):
        got = s.step(golden_v4(nonce=i), now=1.0 + i * 0.01, src=(f"127.0.61.{1 + i // 6}", 5000))
        reasons.append(got[0].reason if isinstance(got[0], Drop) else "sent")
    assert {"sent", "rate-limited", "rate-limited-destination"} <= set(reasons)
    # refilling at 2/s: a source with a fraction of a token is refused as in Python
    s = Sides(["10.1.0.0/16"], tight=True, dst=(1e9, 1e9))
    s.step(golden_v4(), now=1.0, src=("127.0.61.3", 5000))
    now, fractions = 1.0, 0
    for dt in (0, 0, 0, 0.3, 0.3, 0.2, 0.45, 0.05, 0.3, 0.1, 0.35, 0.3):
        now += dt
        fractions += 0.0 < s.res.limiter.tokens("127.0.61.3", now) < 1.0
        s.step(golden_v4(nonce=7), now=now, src=("127.0.61.3", 5000))
    assert fractions >= 3
    assert s.handed == 1                                   # only the first miss


@needs_c
def test_a_shunned_source_goes_to_the_python_path():
    s = Sides(["10.1.0.0/16"])
    s.step(golden_v4())
    loop = s.loops[False]
    assert type(loop.handle(golden_v4(), "127.0.61.7", 2.0)) is tuple
    s.shun.bad("127.0.61.7", 2.0)                          # a bucket with tokens left: still C
    assert type(loop.handle(golden_v4(), "127.0.61.7", 2.0)) is tuple
    for _ in range(int(s.shun.burst)):
        s.shun.bad("127.0.61.7", 2.0)
    assert s.shun.blocked("127.0.61.7", 2.0)
    assert loop.handle(golden_v4(), "127.0.61.7", 2.0) is None
    assert type(loop.handle(golden_v4(), "127.0.61.8", 2.0)) is tuple     # others unaffected


@needs_c
@settings(max_examples=300, deadline=None)
@given(initial=st.lists(specs, max_size=6), steps=st.lists(ops, min_size=1, max_size=40),
       mtu=st.sampled_from([1400, 200]), tight=st.booleans(),
       kind=st.sampled_from(["regtable", "compact", "union"]), pull=st.booleans(), own=st.booleans(),
       nonces=st.lists(st.integers(0, 2 ** 64 - 1), min_size=1, max_size=4))
def test_c_and_python_give_identical_replies_and_decisions(initial, steps, mtu, tight, kind, pull, own, nonces):
    s = Sides(initial, mtu, kind, tight)
    for r in s.resolvers():
        if pull:
            r.serves = lambda eid: (int(eid.address) >> 8) % 2 == 0
            r.forward_to = lambda eid, v: "192.0.2.250" if v == 4 else "2001:db8::250"
            r.neg_floor = lambda eid: 16 if eid.address.version == 4 else 48
        if own:
            r.local_db = lambda eid: eid.address.version == 4 and int(eid.address) >> 16 == 0x0A02
    now = 1.0
    for step in steps:
        now += 0.1
        if step[0] == "set":
            _, spec, rloc, proxy = step
            for r in s.resolvers():
                tset(r.table, key(spec), value(spec, rlocs=(rloc,), proxy=proxy))
        elif step[0] == "delete":
            for r in s.resolvers():
                tdel(r.table, key(step[1]))
        else:
            _, spec, local, src, wrap, m = step
            eid = parse_eidspec(spec)
            for nonce in nonces:        # a miss, then (mostly) the C from the cache
                now += 0.07             # fractional tokens in the limits
                data = (lcaf0(spec) if wrap and eid.iid == 0 and eid.address.version == 4
                        else request(spec, nonce, m))
                s.step(data, local, now, (src, 5000))


@needs_c
@settings(max_examples=400, deadline=None)
@given(base=st.sampled_from(["v4", "v6", "v6-ipv6-eid"]), cut=st.integers(0, 120),
       pad=st.integers(0, 3),
       flips=st.lists(st.tuples(st.integers(0, 119), st.integers(1, 255)), max_size=3), fix=st.booleans(),
       ipv6_listener=st.booleans())
def test_mangled_requests_identical_decisions(base, cut, pad, flips, fix, ipv6_listener):
    """Truncated, padded to odd lengths and bit-flipped requests (checksum fixed up or not)."""
    data = {"v4": golden_v4(), "v6": golden_v6(),
            "v6-ipv6-eid": golden_v6(iid=0, eid=IPv6Address("2001:db8:1::5").packed)}[base]
    data = bytearray(data[:max(1, len(data) - cut)] if cut < 60 else data) + b"\x01" * pad
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
    s = Sides(["10.1.0.0/16", "[7]10.1.0.0/16", "2001:db8:1::/48"])
    for warm in (golden_v4(), golden_v6()):
        s.step(warm, local, 0.0)
    s.step(data, local)
    s.step(data, local)            # again: from the cache if the first filled it


# ------------------------------------------------------------------ on a socket

class Recorder:
    """A worker's Python side as the C loop calls it (what was handed, dropped, sent)."""

    def __init__(self, sock) -> None:
        self.shun, self.handed, self.dropped, self.sent = Shun(), [], [], []
        self.sock = sock
        self.transport = self

    def datagram_received(self, data, addr) -> None:
        self.handed.append((data, addr))

    def _actions(self, actions, src, now) -> None:
        self.dropped.extend((a.reason, a.detail, src) for a in actions)

    def sendto(self, data, addr) -> None:
        self.sent.append((data, addr))
        self.sock.sendto(data, addr)


def udp(host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    return s


def recv_all(sock: socket.socket, n: int, timeout: float = 2.0) -> list:
    sock.settimeout(timeout)
    out = []
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        try:
            out.append(sock.recv(65535))
        except socket.timeout:
            break
    return out


@needs_c
def test_drain_answers_batches_hands_over_the_rest_in_turn_and_reports_drops():
    res, fast = make(["10.1.0.0/16"])
    limits(res, tight=False)
    server, client = udp(), udp()
    server.setblocking(False)
    rec = Recorder(server)
    loop = fastloop.CLoop(fast, False, rec.shun, rec, server)
    port = client.getsockname()[1]
    itr = IPv4Address("127.0.0.1").packed
    assert type(fast.handle(golden_v4(sport=port, itr=itr), ("127.0.0.1", port), LOCAL4, 1.0)) is tuple
    n = 3 * 64 + 5                                        # several recvmmsg batches
    for i in range(n):
        client.sendto(golden_v4(sport=port, itr=itr, nonce=i), server.getsockname())
    client.sendto(b"\x30junk", server.getsockname())     # another message type: Python's
    miss = golden_v4(eid=bytes([10, 1, 7, 7]), sport=port, itr=itr)
    client.sendto(miss, server.getsockname())             # not cached yet: Python's
    time.sleep(0.2)
    total = 0
    for _ in range(10):
        loop.prepare()
        got = loop.core.drain()
        total += got
        if not got:
            break
    counts = loop.account()
    assert total == n + 2
    assert counts["proxy-reply"] + counts["negative-reply"] == n and counts["handed"] == 2
    assert counts["batches"] >= 4
    assert [d for d, _ in rec.handed] == [b"\x30junk", miss]
    assert rec.handed[0][1] == client.getsockname()       # (host, port) as uvloop gives it
    replies = recv_all(client, n)
    assert len(replies) == n
    want = fast.handle(golden_v4(sport=port, itr=itr, nonce=5), ("127.0.0.1", port), LOCAL4, 1.0)[2]
    assert sorted(r[4:12] for r in replies) == sorted(struct.pack("!Q", i) for i in range(n))
    assert all(r[:4] + r[12:] == want[:4] + want[12:] for r in replies)

    # a source over its limit: reported in its turn, nothing sent
    res.limiter.rate, res.limiter.burst = 1.0, 1.0
    loop2 = fastloop.CLoop(fast, False, rec.shun, rec, server)
    for i in range(3):
        client.sendto(golden_v4(sport=port, itr=itr, nonce=i), server.getsockname())
    time.sleep(0.1)
    loop2.prepare()
    assert loop2.core.drain() == 3
    assert [(r, d) for r, d, _ in rec.dropped] == [("rate-limited", "127.0.0.1")] * len(rec.dropped)
    assert len(rec.dropped) >= 2 and rec.dropped[0][2] == ("127.0.0.1", port)
    assert len(recv_all(client, 3, 0.3)) == 3 - len(rec.dropped)
    server.close()
    client.close()


def test_config_key_fast_path_c():
    from common.config import ConfigError, parse_config

    def conf(**mr):
        return parse_config({"node": {"name": "n1", "rlocs": ["127.0.0.1"], "state_dir": "state"},
                             "map_resolver": mr}, "x.toml", "/etc/decent")

    assert conf().map_resolver.fast_path_c is True
    assert conf(fast_path_c=False).map_resolver.fast_path_c is False
    with pytest.raises(ConfigError) as err:
        conf(fast_path_c="no")
    assert err.value.key_path == "map_resolver.fast_path_c"
