"""LISP-SEC (RFC 9303) through the real machines: ITR -> Map-Resolver/Map-Server -> ETR -> ITR.

Each test wires an ItrMachine, the Resolver's Map-Server treatment (with the
MsLispSec hook the map_resolver role installs) and an EtrMachine, and moves the
datagrams between them by hand.  The "attacker" tests play an ETR that holds the
MS-OTK it was sent (so it can make a valid PKT HMAC) but not the ITR-OTK.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import replace
from ipaddress import ip_address as A

import pytest

from common.config import DatabaseMapping, Key, Locator as CfgLocator, MapServerRef
from common.machines.etr import EtrMachine
from common.machines.itr import ItrMachine, Resolved
from common.machines.lispsec import MsLispSec, etr_open, seal_eid_ad, sign_reply
from common.machines.regtable import PrefixSet
from common.machines.resolver import Drop, Resolver, Send
from common.wire.ecm import Ecm
from common.wire.eidtext import format_eid, parse_eidspec
from common.wire.messages import MapReply, decode_message, encode_message
from common.wire.records import EidRecord, Locator
from tests.unit.msfixtures import KEY, register, site

ITR_KEY = b"itr-ms-secret"
SRC = ("127.0.0.1", 40000)
LOCAL = "127.0.0.1"
ETR_RLOC = "192.0.2.1"
SITE = site(prefixes=(("[0]10.1.0.0/16", True), ("[0]2001:db8:1::/48", False), ("[1000]10.9.0.0/16", True)))


def otk_counter():
    n = itertools.count(1)
    return lambda: struct.pack("!QQ", 0xA5A5, next(n))


def world(*, itr_mode="required", site_mode="on", proxy=False, ms_keys=(ITR_KEY,), itr_key=ITR_KEY,
          registered="10.1.1.0/24"):
    from common.machines.mapserver import MapServer
    ms = MapServer([SITE])
    assert ms.handle_register(register([f"[0]{registered}"], nonce=1, proxy=proxy), SRC, 0).accepted
    res = Resolver(ms.table, PrefixSet([p for p, _ in SITE.prefixes]))
    res.in_sync = True
    configured = [p for p, _ in SITE.prefixes]
    res.lisp_sec = MsLispSec(ms_keys, lambda eid: (site_mode, KEY) if any(p.contains(eid) for p in configured)
                             else None)
    nonces = itertools.count(1000)
    itr = ItrMachine(own_rlocs=(A("127.0.0.1"),), map_resolvers=((A("127.0.0.1"), 4342),),
                     nonce_source=lambda: next(nonces), itr_port=40000, lisp_sec=itr_mode,
                     lisp_sec_key=itr_key, otk_source=otk_counter())
    etr = EtrMachine([DatabaseMapping(parse_eidspec(registered), (CfgLocator(A(ETR_RLOC), 1, 100, 255, 0),),
                                      1440, proxy, True)],
                     (MapServerRef(A("192.0.2.10"), 4342, Key(0, "hmac-sha-256-128", 2, KEY.decode())),),
                     own_rlocs=(A("127.0.0.1"),), xtr_id=bytes(16), site_id=bytes(8))
    return itr, res, etr


def ask(itr, res, eid="10.1.1.1", now=0.0):
    """The ITR's Map-Request for ``eid`` through the resolver: (request bytes, actions)."""
    assert itr.resolve(parse_eidspec(eid), now) is None
    [(_a, _p, data)] = itr.datagrams_to_send()
    return data, res.handle(data, SRC, LOCAL, 0.0)


def etr_answer(etr, fwd: bytes) -> bytes:
    """What our ETR role does with a forwarded ECM (roles/etr.py on_punt)."""
    msg = decode_message(fwd)
    sec = etr_open(fwd, msg.auth, [KEY]) if msg.auth is not None else None
    out = etr.handle_map_request(msg.inner, (str(msg.ip.src), msg.ip.sport), 0.0, lisp_sec=sec)
    return out[2]


def cached(itr, eid="10.1.1.1"):
    e = itr.cache.lookup(parse_eidspec(eid), 0.0)
    return None if e is None else format_eid(e.eid)


def test_etr_reply_verifies_end_to_end():
    itr, res, etr = world()
    req, [fwd] = ask(itr, res)
    assert decode_message(req).auth is not None          # S=1 from the ITR
    assert isinstance(fwd, Send) and fwd.dst == ETR_RLOC and fwd.what == "forwarded-to-etr"
    f = decode_message(fwd.data)
    assert f.to_etr and f.auth.eid_ad.prefixes == (parse_eidspec("10.1.1.0/24"),)
    assert f.auth.otk != decode_message(req).auth.otk    # the MS-OTK, wrapped with the site key
    reply = etr_answer(etr, fwd.data)
    assert decode_message(reply).security
    [ev] = itr.handle_map_reply(reply, 0.0)
    assert isinstance(ev, Resolved) and cached(itr) == "[0]10.1.1.0/24"
    assert itr.counters["lisp_sec_verified"] == 1 and "lisp_sec_refused" not in itr.counters


def test_proxy_reply_verifies():
    itr, res, _ = world(proxy=True)
    _, [a] = ask(itr, res)
    assert a.what == "proxy-reply" and decode_message(a.data).security
    [ev] = itr.handle_map_reply(a.data, 0.0)
    assert isinstance(ev, Resolved) and cached(itr) == "[0]10.1.1.0/24"
    assert itr.counters["lisp_sec_verified"] == 1


def test_negative_reply_verifies():
    itr, res, _ = world(proxy=True)
    _, [a] = ask(itr, res, "10.200.0.1")
    assert a.what == "negative-reply" and decode_message(a.data).security
    [ev] = itr.handle_map_reply(a.data, 0.0)
    assert isinstance(ev, Resolved) and itr.counters["lisp_sec_verified"] == 1


def _over_claim(fwd: bytes, record_prefix: str, *, forge_eid_ad: bool = False) -> bytes:
    """An ETR registered for 10.1.1.0/24 answering with ``record_prefix``, signed with
    the MS-OTK it received; optionally with an EID-AD of its own making."""
    msg = decode_message(fwd)
    ms_otk, eid_ad, hmac_id = etr_open(fwd, msg.auth, [KEY])
    p = parse_eidspec(record_prefix)
    rec = EidRecord(p.address, p.length, 1440, (Locator(A("203.0.113.66"), 1, 100, 255, 0),),
                    authoritative=True)
    plain = encode_message(MapReply(msg.inner.nonce, (rec,)))
    if forge_eid_ad:   # the best it can do: key the EID HMAC with what it has
        eid_ad = seal_eid_ad([p], msg.auth.eid_ad.kdf_id, hmac_id, ms_otk)
    return sign_reply(plain, eid_ad, hmac_id, ms_otk)


@pytest.mark.parametrize("prefix", ["10.0.0.0/8", "10.1.0.0/16"])
def test_over_claiming_reply_refused_with_lisp_sec(prefix):
    itr, res, _ = world()
    _, [fwd] = ask(itr, res)
    assert itr.handle_map_reply(_over_claim(fwd.data, prefix), 0.0) == []
    assert itr.counters["lisp_sec_refused.over-claim"] == 1
    assert cached(itr) is None and itr.pending() == [parse_eidspec("10.1.1.1")]
    [(eid, reason, _detail)] = itr.refusals
    assert reason == "over-claim"


def test_over_claim_with_a_forged_eid_ad_refused():
    itr, res, _ = world()
    _, [fwd] = ask(itr, res)
    assert itr.handle_map_reply(_over_claim(fwd.data, "10.0.0.0/8", forge_eid_ad=True), 0.0) == []
    assert itr.counters["lisp_sec_refused.eid-hmac"] == 1 and cached(itr) is None


def test_over_claiming_reply_accepted_with_lisp_sec_off():
    itr, res, _ = world(itr_mode="off")
    req, [fwd] = ask(itr, res)
    assert decode_message(req).auth is None and decode_message(fwd.data).auth is None
    msg = decode_message(fwd.data)
    p = parse_eidspec("10.0.0.0/8")
    rec = EidRecord(p.address, p.length, 1440, (Locator(A("203.0.113.66"), 1, 100, 255, 0),),
                    authoritative=True)
    [ev] = itr.handle_map_reply(encode_message(MapReply(msg.inner.nonce, (rec,))), 0.0)
    assert isinstance(ev, Resolved) and cached(itr) == "[0]10.0.0.0/8"


def test_tampered_eid_ad_refused():
    itr, res, etr = world()
    _, [fwd] = ask(itr, res)
    reply = bytearray(etr_answer(etr, fwd.data))
    m = decode_message(bytes(reply))
    ad_at = len(reply) - len(m.sec_data) + 4
    # the EID-AD record's mask length (after length, KDF ID, count, reserved, HMAC ID, reserved)
    assert reply[ad_at + 9] == 24
    reply[ad_at + 9] = 16
    assert itr.handle_map_reply(bytes(reply), 0.0) == []
    assert itr.counters["lisp_sec_refused.eid-hmac"] == 1 and cached(itr) is None


def test_tampered_record_refused_by_pkt_hmac():
    itr, res, etr = world()
    _, [fwd] = ask(itr, res)
    reply = bytearray(etr_answer(etr, fwd.data))
    at = reply.find(bytes(A(ETR_RLOC).packed))
    reply[at + 3] ^= 1                                   # another RLOC
    assert itr.handle_map_reply(bytes(reply), 0.0) == []
    assert itr.counters["lisp_sec_refused.pkt-hmac"] == 1 and cached(itr) is None


def test_wrong_itr_key_at_the_map_server_is_dropped():
    itr, res, _ = world(ms_keys=(b"another-key",))
    _, [drop] = ask(itr, res)
    assert isinstance(drop, Drop) and drop.reason == "lisp-sec.otk-unwrap"


def test_reply_made_for_another_otk_refused():
    itr, res, etr = world()
    _, [fwd] = ask(itr, res)
    reply = etr_answer(etr, fwd.data)
    nonce = decode_message(reply).nonce
    itr._otk[nonce] = bytes(16)                          # the ITR holds a different one-time key
    assert itr.handle_map_reply(reply, 0.0) == []
    assert itr.counters["lisp_sec_refused.eid-hmac"] == 1 and cached(itr) is None


def test_replayed_reply_refused():
    itr, res, etr = world()
    _, [fwd] = ask(itr, res)
    old = etr_answer(etr, fwd.data)
    assert itr.handle_map_reply(old, 0.0)                # accepted once
    assert itr.handle_map_reply(old, 0.0) == []          # the same reply again: no request
    assert itr.counters["map_reply_unmatched"] == 1
    itr.cache.expire(1e12)
    _, [fwd2] = ask(itr, res, now=10.0)
    new_nonce = decode_message(fwd2.data).inner.nonce
    replayed = old[:4] + struct.pack("!Q", new_nonce) + old[12:]   # the old reply, the new nonce
    assert itr.handle_map_reply(replayed, 0.0) == []
    assert itr.counters["lisp_sec_refused.eid-hmac"] == 1 and cached(itr) is None


def test_on_accepts_a_peer_without_lisp_sec():
    # the site's ETR does not do LISP-SEC (site lisp_sec "off"): it gets S=0 and answers S=0
    itr, res, etr = world(itr_mode="on", site_mode="off")
    _, [fwd] = ask(itr, res)
    assert decode_message(fwd.data).auth is None
    [ev] = itr.handle_map_reply(etr_answer(etr, fwd.data), 0.0)
    assert isinstance(ev, Resolved) and cached(itr) == "[0]10.1.1.0/24"
    assert itr.counters["lisp_sec_unprotected"] == 1


def test_required_refuses_a_peer_without_lisp_sec():
    itr, res, etr = world(itr_mode="required", site_mode="off")
    _, [fwd] = ask(itr, res)
    assert itr.handle_map_reply(etr_answer(etr, fwd.data), 0.0) == []
    assert itr.counters["lisp_sec_refused.unprotected"] == 1 and cached(itr) is None


def test_on_still_refuses_a_bad_lisp_sec_reply():
    itr, res, _ = world(itr_mode="on")
    _, [fwd] = ask(itr, res)
    assert itr.handle_map_reply(_over_claim(fwd.data, "10.0.0.0/8"), 0.0) == []
    assert itr.counters["lisp_sec_refused.over-claim"] == 1


def test_site_required_drops_requests_without_lisp_sec():
    itr, res, _ = world(itr_mode="off", site_mode="required")
    _, [drop] = ask(itr, res)
    assert isinstance(drop, Drop) and drop.reason == "lisp-sec-required"


def test_null_wrapped_otk_works_end_to_end():
    itr, res, etr = world(itr_key=None)
    req, [fwd] = ask(itr, res)
    auth = decode_message(req).auth
    assert auth.otk_wrap_id == 1 and auth.otk[:8] == bytes(8)
    [ev] = itr.handle_map_reply(etr_answer(etr, fwd.data), 0.0)
    assert isinstance(ev, Resolved)


def test_each_request_gets_a_fresh_one_time_key():
    itr, res, _ = world()
    a, _ = ask(itr, res, "10.1.1.1")
    b, _ = ask(itr, res, "10.1.1.2")
    assert decode_message(a).auth.otk != decode_message(b).auth.otk


def test_signed_proxy_reply_with_many_more_specifics_stays_within_the_mtu():
    from common.machines.mapserver import MapServer
    ms = MapServer([SITE])
    assert ms.handle_register(register(["[0]10.1.0.0/16"], nonce=1, proxy=True), SRC, 0).accepted
    for i in range(40):   # 41 records fit one unsigned reply; signed they would not
        assert ms.handle_register(register([f"[0]10.1.{i}.0/24"], nonce=10 + i, proxy=True), SRC, 0).accepted
    for mode in ("off", "required"):
        itr, res, _ = world(itr_mode=mode, proxy=True)
        res.table = ms.table
        _, [a] = ask(itr, res, "10.1.200.1")
        m = decode_message(a.data)
        assert a.what == "proxy-reply" and len(a.data) <= res.mtu - 20 - 8
        assert len(m.records) == (41 if mode == "off" else 1)    # signed: carved to one record
        [ev] = itr.handle_map_reply(a.data, 0.0)
        assert isinstance(ev, Resolved)
