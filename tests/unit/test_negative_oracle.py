"""Negative Map-Replies against a brute-force oracle (RFC 9301 8.4, WIRE-FORMAT 11.6).

Random registration tables and configured site prefixes (IPv4, IPv6, two instance
IDs, nested and overlapping), host and prefix requests, answered by the real
Resolver.  For every request that no registration covers, the negative prefix must
contain the requested EID's first address, overlap no registered or configured
prefix that does not contain that address, be no shorter than the configured
aggregate it falls in, and be the least specific such prefix.  The oracle checks
every length against every stored prefix, with plain integers.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import given, settings
from hypothesis import strategies as st

from common.machines.regtable import PrefixSet, RegistrationTable, entry_key, entry_value
from common.machines.resolver import Resolver, Send
from common.wire.addr import Eid, clear_host_bits
from common.wire.messages import MapReply, decode_message
from common.wire.records import Locator
from tests.unit.msfixtures import ecm_request

BASES = {4: (int(IPv4Address("10.0.0.0")), 32, IPv4Address), 6: (int(IPv6Address("2001:db8::")), 128, IPv6Address)}


@st.composite
def prefixes(draw, family=None):
    fam = family or draw(st.sampled_from([4, 6]))
    base, bits, cls = BASES[fam]
    length = draw(st.integers(8 if fam == 4 else 32, bits))
    # addresses near each other (inside the first /8 or /32, low bits mostly) so they interact
    span = bits - (8 if fam == 4 else 32)
    off = draw(st.integers(0, (1 << span) - 1)) & ~((1 << (bits - length)) - 1 if length < bits else 0)
    iid = draw(st.sampled_from([0, 0, 0, 7]))
    return Eid(iid, clear_host_bits(cls(base + off), length), length)


def _overlaps(a: Eid, b: Eid) -> bool:
    if a.iid != b.iid or type(a.address) is not type(b.address):
        return False
    n = min(a.length, b.length)
    return clear_host_bits(a.address, n) == clear_host_bits(b.address, n)


def _contains(p: Eid, addr, iid) -> bool:
    return p.iid == iid and type(p.address) is type(addr) and clear_host_bits(addr, p.length) == p.address


def oracle(req: Eid, registered, configured):
    """(prefix, ttl minutes) or None when a registration covers the request."""
    bits = 32 if isinstance(req.address, IPv4Address) else 128
    if any(_contains(p, req.address, req.iid) and p.length <= req.length for p in registered):
        return None                                    # covered: a positive answer
    if any(_contains(p, req.address, req.iid) for p in registered):
        return None                                    # first address registered: positive too
    covering = [p for p in configured if _contains(p, req.address, req.iid)]
    floor = max((p.length for p in covering), default=0)
    others = [p for p in list(registered) + list(configured) if not _contains(p, req.address, req.iid)]
    for length in range(floor, bits + 1):
        cand = Eid(req.iid, clear_host_bits(req.address, length), length)
        if not any(_overlaps(cand, p) for p in others):
            return cand, (1 if covering else 15)
    raise AssertionError("a host prefix always fits")


@settings(max_examples=400, deadline=None)
@given(registered=st.lists(prefixes(), max_size=12), configured=st.lists(prefixes(), max_size=4),
       requests=st.lists(st.tuples(prefixes(), st.booleans()), min_size=1, max_size=6))
def test_negative_reply_matches_the_oracle(registered, configured, requests):
    table = RegistrationTable()
    loc = (Locator(IPv4Address("192.0.2.1")),)
    for i, p in enumerate(registered):
        table.set(entry_key(p, bytes([i])), entry_value(p, "s", loc, ttl=1440, proxy=True, merge=False,
                                                        xtr_id=bytes([i]), registrant="192.0.2.1"))
    r = Resolver(table, PrefixSet(configured), neg_ttl_non_eid=15, neg_ttl_unregistered=1)
    r.in_sync = True
    for req, as_host in requests:
        if as_host:
            bits = 32 if isinstance(req.address, IPv4Address) else 128
            req = Eid(req.iid, req.address, bits)
        want = oracle(req, registered, configured)
        spec = f"[{req.iid}]{req.address}/{req.length}"
        out = r.handle(ecm_request(spec), ("127.0.0.1", 40000), "127.0.0.1", 0)
        [send] = [a for a in out if isinstance(a, Send)]
        m = decode_message(send.data)
        assert isinstance(m, MapReply)
        rec = m.records[0]
        if want is None:
            assert not rec.negative, (spec, rec)
            continue
        prefix, ttl = want
        assert rec.negative and (rec.prefix, rec.ttl) == (prefix, ttl), (spec, rec.prefix, prefix)
