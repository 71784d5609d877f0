"""The registration table's fill: any arrival order, one sorted index, same answers."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from common.machines.regtable import Entry, RegistrationTable, negative_prefix
from common.wire.addr import Eid


def entry(i: int, addr: int, length: int) -> Entry:
    a = (addr >> (32 - length)) << (32 - length)
    return Entry(f"k{i}", Eid(0, IPv4Address(a), length), "s", (), 1, True, False, b"", "")


def test_fill_order_does_not_matter_and_deletes_after_a_fill_are_seen():
    rng = random.Random(11)
    entries = [entry(i, rng.getrandbits(32), rng.choice((16, 20, 24, 28, 32))) for i in range(3000)]
    a, b = RegistrationTable(), RegistrationTable()
    for e in entries:
        a.put(e)
    for e in sorted(entries, key=lambda e: int(e.eid.address)):
        b.put(e)
    for e in entries[::3]:      # deletes interleaved with pending additions
        a.delete(e.key)
        b.delete(e.key)
    assert a._sorted_nets((0, 4)) == b._sorted_nets((0, 4)) == sorted(set(a._sorted_nets((0, 4))))
    live = {int(e.eid.address) for e in entries[1::3]} | {int(e.eid.address) for e in entries[2::3]}
    assert set(a._sorted_nets((0, 4))) == live
    for _ in range(300):
        q = Eid(0, IPv4Address(rng.getrandbits(32)), 32)
        assert negative_prefix(q, [a]) == negative_prefix(q, [b])


def test_add_after_reads_is_merged_before_the_next_read():
    t = RegistrationTable()
    t.put(entry(1, 0x0A000000, 8))
    q = Eid(0, IPv4Address("10.1.2.3"), 32)
    assert negative_prefix(q, [t], floor=8).length == 8
    t.put(entry(2, 0x0A020000, 16))     # 10.2/16, pending until the next read
    assert negative_prefix(q, [t], floor=8).length > 8
