"""Hypothesis strategies for every message the codec encodes.

``wire=True`` variants stay inside what deployed implementations (and Wireshark)
understand: IPv4/IPv6 EIDs, optionally in an instance-ID LCAF, (S,G) multicast-info
EIDs, locators that are plain addresses or RLEs, no reserved bits set.  The default
variants explore everything the codec accepts, to prove round trips.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import strategies as st

from common.wire.addr import (AfiList, DistinguishedName, InstanceIdAddr, Mac, MulticastInfo, NO_ADDRESS,
                         OpaqueLcaf, Rle, RleEntry, address_bits)
from common.wire.ecm import Ecm
from common.wire.ipudp import IpUdp
from common.wire.messages import InfoMessage, MapReferral, MapReply, MapRequest, RequestRecord
from common.wire.records import EidRecord, Locator
from common.wire.register import MapNotify, MapNotifyAck, MapRegister

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 2**64 - 1)

ipv4 = st.builds(IPv4Address, u32)
ipv6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))
ip = st.one_of(ipv4, ipv6)
mac = st.builds(Mac, st.binary(min_size=6, max_size=6))
dname = st.builds(DistinguishedName, st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20))
mcast4 = st.builds(IPv4Address, st.integers(0xE0000000, 0xEFFFFFFF))
mcast6 = st.builds(IPv6Address, st.integers(0xFF << 120, 2**128 - 1))


def _mcast_info(wire: bool):
    def build(fam):
        src = ipv4 if fam == 4 else ipv6
        grp = mcast4 if fam == 4 else mcast6
        bits = 32 if fam == 4 else 128
        return st.builds(MulticastInfo, u32 if not wire else st.integers(0, 0xFFFFFF), src,
                         st.integers(0, bits), grp, st.integers(0, bits),
                         st.just(0) if wire else u8)
    return st.sampled_from([4, 6]).flatmap(build)


def _rle(wire: bool):
    entry = st.builds(RleEntry, ip, u8, st.none() if wire else st.one_of(st.none(), dname.map(lambda d: d.name)))
    return st.builds(Rle, st.lists(entry, min_size=1 if wire else 0, max_size=4).map(tuple))


opaque = st.builds(OpaqueLcaf, st.integers(0, 255).filter(lambda t: t not in (1, 2, 9, 13)),
                   st.binary(max_size=24), u8, u8, u8)


def addresses(depth: int = 2):
    """Any address the codec can carry, LCAFs nested up to ``depth``."""
    base = st.one_of(st.just(NO_ADDRESS), ipv4, ipv6, mac, dname)
    if depth == 0:
        return base
    inner = addresses(depth - 1)
    return st.one_of(
        base, opaque, _rle(False), _mcast_info(False),
        st.builds(InstanceIdAddr, u32, inner, u8),
        st.builds(AfiList, st.lists(inner, max_size=3).map(tuple)),
    )


def eid_and_mask(wire: bool = False):
    """(address, mask-len) pairs a record may carry."""
    if wire:
        plain = st.one_of(ipv4, ipv6)
        iid = st.builds(InstanceIdAddr, st.integers(1, 0xFFFFFF), plain)
        addr = st.one_of(plain, iid, _mcast_info(True))
    else:
        addr = addresses(2)
    return addr.flatmap(lambda a: st.tuples(st.just(a), st.integers(0, min(255, address_bits(a)))))


def locators(wire: bool = False):
    addr = st.one_of(ip, _rle(True)) if wire else addresses(1)
    return st.builds(Locator, addr, u8, u8, u8, u8, st.booleans(), st.booleans(), st.booleans(),
                     st.just(0) if wire else st.integers(0, 0x1FFF))


def records(wire: bool = False, referral: bool = False):
    def build(em, locs, ttl, action, auth, ver, rsvd, nib, sigs):
        if referral:
            nib = len(sigs)
        else:
            sigs = ()
        return EidRecord(em[0], em[1], ttl, tuple(locs), action, auth, ver, rsvd, nib, tuple(sigs))
    sig = st.binary(max_size=12).flatmap(
        lambda s: st.binary(min_size=14, max_size=14).map(lambda h: h + len(s).to_bytes(2, "big") + bytes(4) + s))
    return st.builds(build, eid_and_mask(wire), st.lists(locators(wire), max_size=3), u32,
                     st.integers(0, 5 if wire else 7), st.booleans(), st.integers(0, 4095),
                     st.just(0) if wire else st.integers(0, 4095),
                     st.just(0) if wire else st.integers(0, 15), st.lists(sig, max_size=2))


xtr_ids = st.binary(min_size=16, max_size=16)
site_ids = st.binary(min_size=8, max_size=8)


def map_requests(wire: bool = False):
    def build(nonce, rlocs, recs, src, flags, rsvd, mr, trailer):
        xtr, site = trailer if trailer else (None, None)
        if wire:  # bit 10 is reserved in RFC 9301
            flags = flags[:5] + (False,) + flags[6:]
        return MapRequest(nonce, tuple(rlocs), tuple(recs), src, *flags, rsvd, mr, xtr, site)
    rec = eid_and_mask(wire).map(lambda em: RequestRecord(em[0], em[1], 0))
    if not wire:
        rec = st.builds(lambda r, f: RequestRecord(r.eid, r.mask_len, f), rec, u8)
    trailer = st.one_of(st.none(), st.tuples(xtr_ids, st.one_of(st.none(), site_ids)))
    return st.builds(build, u64, st.lists(ip, min_size=1, max_size=4),
                     st.lists(rec, min_size=1 if wire else 0, max_size=1 if wire else 3),
                     st.one_of(st.just(NO_ADDRESS), ip) if wire else addresses(1),
                     st.tuples(*[st.booleans()] * 8), st.just(0) if wire else st.integers(0, 31),
                     st.one_of(st.none(), records(wire)),
                     st.none() if wire else trailer)


def map_replies(wire: bool = False):
    def build(nonce, recs, p, e, s, rsvd, sec):
        return MapReply(nonce, tuple(recs), p, e, s, rsvd, sec if s else b"")
    return st.builds(build, u64, st.lists(records(wire), min_size=1 if wire else 0, max_size=3),
                     st.booleans(), st.booleans(), st.just(False) if wire else st.booleans(),
                     st.just(0) if wire else st.integers(0, 0x1FFFF), st.binary(max_size=16))


def _auth(wire: bool):
    if wire:
        return st.sampled_from([(0, 1, 20), (0, 2, 32), (0, 0, 0)]).flatmap(
            lambda k: st.tuples(st.just(k[0]), st.just(k[1]), st.binary(min_size=k[2], max_size=k[2])))
    return st.tuples(u8, u8, st.binary(max_size=40))


def _trailer():
    return st.one_of(st.none(), st.tuples(xtr_ids, site_ids))


def map_registers(wire: bool = False):
    def build(nonce, recs, auth, flags, rsvd, tr):
        xtr, site = tr if tr else (None, None)
        return MapRegister(nonce, tuple(recs), *auth, *flags, rsvd, xtr, site)
    return st.builds(build, u64, st.lists(records(wire), min_size=1 if wire else 0, max_size=3), _auth(wire),
                     st.tuples(*[st.booleans()] * 7), st.just(0) if wire else st.integers(0, 4095), _trailer())


def map_notifies(wire: bool = False):
    def build(nonce, recs, auth, rtr, rsvd, tr, unannounced):
        xtr, site = tr if tr else (None, None)
        # the I bit as received: set iff the trailer is there, except lispers.net's
        # unannounced trailer (WIRE-FORMAT 7)
        return MapNotify(nonce, tuple(recs), *auth, rtr, rsvd, xtr, site, (xtr is not None) and not unannounced)
    return st.builds(build, u64, st.lists(records(wire), min_size=1 if wire else 0, max_size=3), _auth(wire),
                     st.just(False) if wire else st.booleans(),
                     st.just(0) if wire else st.integers(0, 0x3FFFF), _trailer(),
                     st.just(False) if wire else st.booleans())


def map_notify_acks(wire: bool = False):
    def build(nonce, recs, auth, rsvd, tr):
        xtr, site = tr if tr else (None, None)
        return MapNotifyAck(nonce, tuple(recs), *auth, rsvd, xtr, site)
    return st.builds(build, u64, st.lists(records(wire), max_size=3), _auth(wire),
                     st.just(0) if wire else st.integers(0, 0xFFFFF), _trailer())


def map_referrals(wire: bool = False):
    return st.builds(MapReferral, u64, st.lists(records(wire, referral=True), max_size=3).map(tuple),
                     st.just(0) if wire else st.integers(0, 0xFFFFF))


def infos(wire: bool = False):
    def build(nonce, em, reply, key, alg, auth, ttl, payload, rsvd, rb):
        return InfoMessage(nonce, em[0], em[1], reply, key, alg, auth, ttl, payload, rsvd, rb)
    return st.builds(build, u64, eid_and_mask(wire), st.booleans(), u8, u8, st.binary(max_size=20), u32,
                     st.one_of(st.just(NO_ADDRESS), dname) if wire else addresses(1),
                     st.just(0) if wire else st.integers(0, 0x7FFFFFF), st.just(0) if wire else u8)


def inner_ip(wire: bool = False):
    def build(fam, data):
        src = data.draw(ipv4 if fam == 4 else ipv6)
        dst = data.draw(ipv4 if fam == 4 else ipv6)
        ports = st.integers(1, 65535).filter(lambda p: p != 4341)
        return IpUdp(src, dst, data.draw(ports), 4342 if wire else data.draw(ports), data.draw(st.integers(1, 255)),
                     data.draw(u8), data.draw(u16 if fam == 4 else st.integers(0, 0xFFFFF)))
    return st.builds(build, st.sampled_from([4, 6]), st.data())


def non_ecm_messages(wire: bool = False):
    return st.one_of(map_requests(wire), map_replies(wire), map_registers(wire), map_notifies(wire),
                     map_notify_acks(wire), map_referrals(wire), infos(wire))


def ecms(wire: bool = False):
    inner = map_requests(wire) if wire else non_ecm_messages(False)
    return st.builds(Ecm, inner, inner_ip(wire), st.booleans(), st.booleans(), st.booleans(),
                     st.just(0) if wire else st.integers(0, 0xFFFFFF))


def messages(wire: bool = False):
    return st.one_of(non_ecm_messages(wire), ecms(wire))
