"""Push mode: replicated Map-Registers from a sender not yet known as a member are
held (common/decent/push.py HeldReplicas) and taken again once it is one, so members
starting together do not wait a register interval for each other's mappings.  Held
ones are bounded (per sender, senders, age) and only a member's are ever released."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from common.decent.push import HeldReplicas


def test_released_only_for_senders_that_became_members_oldest_first():
    h = HeldReplicas()
    h.hold("127.0.50.4", b"a", 1.0)
    h.hold("127.0.50.5", b"b", 2.0)
    h.hold("127.0.50.4", b"c", 3.0)
    assert h.release(["127.0.50.9"], 4.0) == []
    assert h.release(["127.0.50.4", "127.0.50.7"], 4.0) == [("127.0.50.4", b"a"), ("127.0.50.4", b"c")]
    assert h.release(["127.0.50.4"], 5.0) == []            # released once
    assert len(h) == 1
    assert h.release(["127.0.50.5"], 5.0) == [("127.0.50.5", b"b")]


def test_the_same_address_spelt_differently_is_one_sender():
    h = HeldReplicas()
    h.hold("2001:db8::0001", b"a", 1.0)
    assert h.holds("2001:db8::1") and not h.holds("2001:db8::2")
    assert h.release(["2001:db8::1"], 2.0) == [("2001:db8::1", b"a")]


def test_too_old_is_not_released():
    h = HeldReplicas(max_age=10.0)
    h.hold("10.0.0.1", b"old", 0.0)
    h.hold("10.0.0.1", b"new", 8.0)
    assert h.release(["10.0.0.1"], 12.0) == [("10.0.0.1", b"new")]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.binary(max_size=4)), min_size=1, max_size=400))
def test_bounded_per_sender_and_in_senders_keeping_the_latest(holds):
    h = HeldReplicas(per_sender=3, senders=5, max_age=1e9)
    for i, (who, reg) in enumerate(holds):
        h.hold(f"10.0.0.{who}", reg + i.to_bytes(2, "big"), float(i))
    assert len(h) <= 15 and len(h) + h.evicted == len(holds)
    got = h.release([f"10.0.0.{w}" for w in range(41)], 1e6)
    assert len(got) == len(holds) - h.evicted and len(h) == 0
    order = [int.from_bytes(r[-2:], "big") for _m, r in got]
    assert order == sorted(order)                           # oldest first
    recent: list[int] = []                                   # senders, last heard first
    for who, _ in reversed(holds):
        if who not in recent:
            recent.append(who)
    senders = {m for m, _r in got}
    assert senders <= {f"10.0.0.{w}" for w in recent[:5]}
    for w in {int(m.rsplit(".", 1)[1]) for m in senders}:
        mine = [i for i, (who, _) in enumerate(holds) if who == w]
        kept = [i for i, (m, _r) in zip(order, got) if m == f"10.0.0.{w}"]
        assert kept == mine[len(mine) - len(kept):] and len(kept) <= 3   # its latest
    last = len(holds) - 1                                    # the latest hold is never lost
    assert order[-1] == last and got[-1][0] == f"10.0.0.{holds[last][0]}"
