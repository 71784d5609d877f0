"""The negative answer cache (Resolver._negative) against the brute-force oracle:
after a negative answer names prefix N, other hosts inside N (answered from the
cache) and outside it still get exactly the oracle's answer, byte for byte the
same as a resolver with an empty cache."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from common.machines.regtable import PrefixSet, RegistrationTable, entry_key, entry_value
from common.machines.resolver import Resolver, Send
from common.wire.addr import Eid
from common.wire.records import Locator
from tests.unit.msfixtures import ecm_request
from tests.unit.test_negative_oracle import oracle, prefixes

SRC, LOCAL = ("127.0.0.1", 40000), "127.0.0.1"


def resolver(registered, configured) -> Resolver:
    table = RegistrationTable()
    loc = (Locator(IPv4Address("192.0.2.1")),)
    for i, p in enumerate(registered):
        table.set(entry_key(p, bytes([i])), entry_value(p, "s", loc, ttl=1440, proxy=True, merge=False,
                                                        xtr_id=bytes([i]), registrant="192.0.2.1"))
    r = Resolver(table, PrefixSet(configured), neg_ttl_non_eid=15, neg_ttl_unregistered=1)
    r.in_sync = True
    return r


def reply(r, eid: Eid) -> bytes:
    [send] = [a for a in r.handle(ecm_request(f"[{eid.iid}]{eid.address}/{eid.length}"), SRC, LOCAL, 0)
              if isinstance(a, Send)]
    return send.data


@settings(max_examples=300, deadline=None)
@given(registered=st.lists(prefixes(), max_size=12), configured=st.lists(prefixes(), max_size=4),
       first=prefixes(), offsets=st.lists(st.integers(0, (1 << 128) - 1), min_size=1, max_size=8))
def test_cached_negatives_equal_fresh_ones_and_the_oracle(registered, configured, first, offsets):
    bits = 32 if isinstance(first.address, IPv4Address) else 128
    first = Eid(first.iid, first.address, bits)
    warm = resolver(registered, configured)
    want = oracle(first, registered, configured)
    reply(warm, first)
    if want is None:
        return
    neg, _ttl = want
    for off in offsets:   # hosts inside the negative prefix: answered from the cache
        host = Eid(neg.iid, type(neg.address)(int(neg.address) + off % (1 << (bits - neg.length))), bits)
        assert oracle(host, registered, configured) is not None
        assert reply(warm, host) == reply(resolver(registered, configured), host)
