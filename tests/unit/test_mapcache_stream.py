"""The itr's map-cache as the data path receives it (Clone stream values), and
MapCache.put (the itr restoring its saved cache)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from common.machines.datapath import Rloc
from common.machines.mapcache import CacheEntry, MapCache
from common.wire.addr import Eid
from common.wire.eidtext import format_eid
from common.wire.records import ACT_NATIVELY_FORWARD, Locator
from roles.itr import _value
from roles.tun import mapping_from


def test_stream_value_round_trip():
    eid = Eid(7, IPv6Address("fd00:2::"), 48)
    locs = (Locator(IPv4Address("172.16.2.2"), 1, 60), Locator(IPv4Address("172.16.3.2"), 2, 40, reachable=False))
    e = CacheEntry(eid, locs, 1440, 100.0, 200.0)
    v = _value(e, offset=1000.0)
    assert v["expires_at"] == 1200.0 and v["ttl"] == 1440
    m = mapping_from(format_eid(eid), v)
    assert m.eid == eid and m.expires == 1200.0 and m.action == 0
    assert m.rlocs == (Rloc(IPv4Address("172.16.2.2"), 1, 60, True), Rloc(IPv4Address("172.16.3.2"), 2, 40, False))
    neg = mapping_from("[0]10.99.0.0/16", _value(CacheEntry(Eid(0, IPv4Address("10.99.0.0"), 16), (), 15, 0.0, 5.0,
                                                            ACT_NATIVELY_FORWARD), 0.0))
    assert neg.negative and neg.action == ACT_NATIVELY_FORWARD


def test_stream_values_the_data_path_cannot_use():
    assert mapping_from("not an eid", {}) is None
    assert mapping_from("[0]10.1.0.0/24", {"rlocs": [["x", 1, 1, True]], "action": 0, "expires_at": 1}) is None
    assert mapping_from("[0]224.1.1.1/32-10.0.0.0/8", {"rlocs": [], "action": 0, "expires_at": 1}) is None


def test_put_restores_and_caps_covers():
    c = MapCache()
    big = CacheEntry(Eid(0, IPv4Address("10.0.0.0"), 8), (), 60, 0.0, 500.0)
    small = CacheEntry(Eid(0, IPv4Address("10.1.0.0"), 16), (Locator(IPv4Address("192.0.2.1")),), 1, 0.0, 50.0)
    c.put(big)
    c.put(small)
    assert c.lookup(Eid(0, IPv4Address("10.1.2.3"), 32), 10.0) == small
    assert c.exact(big.eid).expires == 50.0        # a cover never outlives what it covers
    assert c.expire(60.0) and len(c) == 0
