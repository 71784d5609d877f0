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
