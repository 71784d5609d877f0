"""Push-mode membership helpers: the announcement's wire form and the member list."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from common.wire.addr import MulticastInfo, Rle
from common.wire.auth import verify
from common.wire.eidtext import format_eid
from common.wire.messages import decode_message
from common.decent.push import group_eid, members_from_reply, members_of, membership_register
from common.machines.regtable import RegistrationTable, entry_key, entry_value


def test_group_eid_both_families():
    assert format_eid(group_eid(0, "224.1.1.1")) == "[0]224.1.1.1/32-0.0.0.0/0"
    assert format_eid(group_eid(7, "ff0e::1")) == "[7]ff0e::1/128-::/0"


def test_membership_register_is_rfc8378_shaped():
    data = membership_register(0, "224.1.1.1", IPv4Address("192.0.2.7"), nonce=5, key_id=0, alg_id=2,
                               secret=b"k", xtr_id=b"\x01" * 16, site_id=bytes(8))
    m = decode_message(data)
    assert verify(data, b"k")
    assert m.merge and m.proxy_reply and not m.want_map_notify and m.xtr_id == b"\x01" * 16
    [rec] = m.records
    assert isinstance(rec.eid, MulticastInfo) and rec.eid.group == IPv4Address("224.1.1.1")
    assert rec.eid.source_len == 0 and rec.eid.group_len == 32
    [loc] = rec.locators
    assert isinstance(loc.address, Rle)
    assert [(str(e.address), e.level) for e in loc.address.entries] == [("192.0.2.7", 128)]
    assert members_from_reply(m.records) == ["192.0.2.7"]


def test_members_are_the_union_of_the_merged_rles_lowest_level():
    t = RegistrationTable()
    g = group_eid(0, "224.1.1.1")
    for i, (addr, level) in enumerate([("10.0.0.2", 128), ("10.0.0.1", 128), ("10.0.0.2", 128),
                                       ("10.0.0.9", 200)]):
        xtr = bytes([i]) * 16
        t.set(entry_key(g, xtr), entry_value(g, "s", (), ttl=1, proxy=True, merge=True, xtr_id=xtr,
                                             registrant=addr, rle=[[addr, level]]))
    assert members_of(t.exact(g)) == ["10.0.0.1", "10.0.0.2"]
    assert members_of([]) == []
    v6 = group_eid(0, "ff0e::1")
    t.set(entry_key(v6, b"\x07" * 16), entry_value(v6, "s", (), ttl=1, proxy=True, merge=True,
                                                     xtr_id=b"\x07" * 16, registrant="::1",
                                                     rle=[["fd00::1", 128]]))
    assert members_of(t.exact(v6)) == [str(IPv6Address("fd00::1"))]


# -- replica_verdict: who may replicate to us, and as whose (issue 13) ----------------

def _register(eid: str, rlocs: tuple) -> object:
    from tests.unit.msfixtures import record
    from common.wire.register import MapRegister
    from common.wire.auth import seal
    reg = seal(MapRegister(1, (record(eid, rlocs=rlocs),), 0, 2, xtr_id=b"\x02" * 16,
                           site_id=bytes(8)), b"k")
    return decode_message(reg)


MEMBERS = ["127.0.50.1", "127.0.50.2", "127.0.50.3"]
SEEDS = ["127.0.50.9"]


def test_replica_from_a_non_member_is_dropped():
    from common.decent.push import replica_verdict
    reg = _register("[0]10.50.7.0/24", ("127.0.50.66",))
    assert replica_verdict(reg, "127.0.50.66", MEMBERS, SEEDS) == (None, "replica-not-member")
    # a member's old Map-Register replayed by someone else: dropped too
    old = _register("[0]10.50.2.0/24", ("127.0.50.2",))
    assert replica_verdict(old, "127.0.50.66", MEMBERS, SEEDS) == (None, "replica-not-member")


def test_replica_from_a_member_or_seed_is_accepted_as_its_records_say():
    from common.decent.push import replica_verdict
    reg = _register("[0]10.50.2.0/24", ("127.0.50.2",))
    assert replica_verdict(reg, "127.0.50.2", MEMBERS, SEEDS) == ("127.0.50.2", "")
    # the registrant is from the records, whatever inner source the sender wrote:
    # a member relaying another RLOC's registration names that RLOC
    other = _register("[0]10.50.5.0/24", ("10.9.9.9", "127.0.50.5"))
    assert replica_verdict(other, "127.0.50.9", MEMBERS, SEEDS) == ("10.9.9.9", "")
    assert replica_verdict(other, "127.0.50.1", MEMBERS, SEEDS) == ("10.9.9.9", "")


def test_a_joiner_may_announce_only_its_own_membership():
    from common.decent.push import replica_verdict
    mine = decode_message(membership_register(0, "224.50.0.1", IPv4Address("127.0.50.77"),
                                              nonce=5, key_id=0, alg_id=2, secret=b"k",
                                              xtr_id=b"\x01" * 16, site_id=bytes(8)))
    assert replica_verdict(mine, "127.0.50.77", MEMBERS, SEEDS) == ("127.0.50.77", "")
    # someone else's announcement, replayed from elsewhere: dropped
    assert replica_verdict(mine, "127.0.50.66", MEMBERS, SEEDS) == (None, "replica-not-member")
