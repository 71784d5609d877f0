"""Shared token tables (common.machines.ratelimit): fixed memory, no wholesale reset,
shared by every user of one buffer, and the per-destination limit on replies."""

from __future__ import annotations

from common.machines.ratelimit import TokenTable
from common.machines.resolver import Drop, Send
from tests.unit.msfixtures import ecm_request
from tests.unit.test_resolver import LOCAL, setup

KEY = bytes(range(32))


def table(buf=None, slots=1024, rate=10.0, burst=20.0):
    buf = buf if buf is not None else bytearray(TokenTable.size(slots))
    return TokenTable(buf, 0, slots, rate, burst, KEY), buf


def test_burst_then_rate():
    t, _ = table()
    assert sum(t.allow("192.0.2.1", 100.0) for _ in range(50)) == 20
    assert sum(t.allow("192.0.2.1", 101.0) for _ in range(50)) == 10   # one second at 10/s


def test_a_throttled_source_stays_throttled_whatever_else_arrives():
    t, _ = table(slots=1024)
    while t.allow("198.51.100.7", 5.0):
        pass
    for i in range(100_000):   # far more distinct sources than slots
        t.allow(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 5.0)
    assert not t.allow("198.51.100.7", 5.0)
    assert t.tokens("198.51.100.7", 5.0) < 1.0


def test_no_address_gets_more_than_its_own_rate_under_collisions():
    t, _ = table(slots=16, rate=10.0, burst=20.0)    # tiny: every address collides
    got = {a: 0 for a in ("a", "b", "c", "d", "e")}
    for step in range(100):                          # 10 s in 0.1 s steps
        for a in got:
            for _ in range(5):
                got[a] += t.allow(a, 1000.0 + step * 0.1)
    assert max(got.values()) <= 20 + 10 * 10 + 1


def test_two_users_of_one_buffer_share_the_buckets():
    w1, buf = table()
    w2, _ = table(buf)              # another worker mapping the same file
    allowed = 0
    for i in range(60):
        allowed += (w1 if i % 2 else w2).allow("203.0.113.9", 7.0)
    assert allowed == 20


def test_replies_to_one_destination_are_limited_whoever_asks():
    _, r = setup()
    r.dest_limiter, _ = table(rate=1.0, burst=5.0)
    sent = drops = 0
    for i in range(40):  # spoofed: 40 sources, each naming the victim as ITR-RLOC
        [a] = r.handle(ecm_request("10.1.2.3", itr="127.0.0.99"), (f"127.0.1.{i}", 4000), LOCAL, 50.0)
        sent += isinstance(a, Send)
        drops += a == Drop("rate-limited-destination", "127.0.0.99")
    assert (sent, drops) == (5, 35)
    [a] = r.handle(ecm_request("10.1.2.3", itr="127.0.0.98"), ("127.0.2.1", 4000), LOCAL, 50.0)
    assert isinstance(a, Send)   # another destination is not affected


def test_a_slightly_later_write_by_another_worker_refills_nothing():
    w1, buf = table()
    w2, _ = table(buf)
    while w1.allow("192.0.2.5", 10.001):   # worker 1 read its clock a little later
        pass
    assert not w2.allow("192.0.2.5", 10.0)
