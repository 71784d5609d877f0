"""Builders shared by the Map-Server / Map-Resolver machine tests."""

from __future__ import annotations

from ipaddress import IPv4Address as V4, ip_address

from common.wire.addr import eid_to_wire
from common.wire.auth import seal
from common.wire.ecm import Ecm
from common.wire.eidtext import parse_eidspec
from common.wire.ipudp import IpUdp
from common.machines.mapserver import MapServer, SiteKey, SitePolicy
from common.wire.messages import MapRequest, RequestRecord, encode_message
from common.wire.records import EidRecord, Locator
from common.wire.register import MapRegister

KEY = b"site-a-secret"
XTR = bytes(range(16))
SITE_ID = bytes(8)


def site(name="site-a", key=KEY, prefixes=(("[0]10.1.0.0/16", False), ("[0]2001:db8:1::/48", False),
                                           ("[1000]10.9.0.0/16", True)), policy="strict", alg=2):
    return SitePolicy(name, (SiteKey(0, alg, key),), tuple((parse_eidspec(p), m) for p, m in prefixes), policy)


def record(spec, rlocs=("192.0.2.1",), ttl=1440, pri=1):
    addr, ml = eid_to_wire(parse_eidspec(spec))
    return EidRecord(addr, ml, ttl, tuple(Locator(ip_address(r), pri, 100, 255, 0, True, False, True)
                                          for r in rlocs), authoritative=True)


def register(specs, nonce=1, key=KEY, xtr=XTR, proxy=False, merge=False, notify=True, ttl=1440,
             rlocs=("192.0.2.1",), alg=2, t=False):
    recs = tuple(record(s, rlocs, ttl) for s in specs)
    m = MapRegister(nonce, recs, 0, alg, proxy_reply=proxy, merge=merge, want_map_notify=notify,
                    ttl_is_lifetime=t, xtr_id=xtr, site_id=SITE_ID if xtr else None)
    return seal(m, key)


def ecm_request(spec, nonce=77, itr="127.0.0.1", sport=40000, e=False, m=False):
    eid = parse_eidspec(spec)
    addr, ml = eid_to_wire(eid)
    req = MapRequest(nonce, (ip_address(itr),), (RequestRecord(addr, ml),))
    dst = eid.address if eid.address.version == 4 else V4("127.0.0.1")
    src = ip_address(itr) if dst.version == ip_address(itr).version else V4("127.0.0.1")
    return encode_message(Ecm(req, IpUdp(src, dst, sport, 4342), to_etr=e, to_ms=m))


def server(**kw):
    return MapServer([site()], **kw)
