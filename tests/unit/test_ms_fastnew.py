"""The cheaper new-registration path changes no result (issue 10).

Differential: the optimised :class:`MapServer` (one site lookup per record, no
``dataclasses.replace``, the Map-Notify from the received record bytes) against
:class:`tests.unit.msreference.ReferenceMapServer` (the path before, verbatim), fed
the same generated Map-Registers: every RegisterResult field, every commit, every
datagram sent and the whole state after must be equal.  And the Map-Notify built
from the bytes is byte-identical to :func:`seal` of the decoded records whenever
:func:`plain_records` lets it be used.
"""

from __future__ import annotations

import dataclasses

import msgpack
from ipaddress import IPv4Address, IPv6Address, ip_address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.machines.mapserver import MapServer
from common.machines.regnotify import notify_of_register, plain_records
from common.wire.addr import InstanceIdAddr, Mac, Rle, RleEntry, eid_to_wire
from common.wire.auth import mac, seal
from common.wire.eidtext import parse_eidspec
from common.wire.errors import EncodeError
from common.wire.messages import decode_message
from common.wire.records import EidRecord, Locator
from common.wire.register import MapNotify, MapRegister, encode_register_like
from tests import strategies as S
from tests.unit.msfixtures import site
from tests.unit.msreference import ReferenceMapServer

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- the Map-Notify from the received bytes ----------------------------------------

plain_ip = st.one_of(S.ipv4, S.ipv6)


def _plain_record(addr, mask, locs, ttl, action, a, ver, rsvd, nib):
    return EidRecord(addr, min(mask, 32 if addr.version == 4 else 128), ttl, tuple(locs), action, a, ver,
                     rsvd, nib)


plain_records_st = st.builds(
    _plain_record, plain_ip, st.integers(0, 128),
    st.lists(st.builds(Locator, plain_ip, S.u8, S.u8, S.u8, S.u8, st.booleans(), st.booleans(),
                       st.booleans(), st.integers(0, 0x1FFF)), max_size=3),
    S.u32, st.integers(0, 7), st.booleans(), st.integers(0, 4095), st.integers(0, 4095), st.integers(0, 15))


def _register(nonce, recs, key_id, alg, auth, flags, rsvd, tr):
    xtr, sid = tr if tr else (None, None)
    return MapRegister(nonce, tuple(recs), key_id, alg, auth, *flags, rsvd, xtr, sid)


def plain_registers():
    return st.builds(_register, S.u64, st.lists(plain_records_st, min_size=1, max_size=4), S.u8,
                     st.sampled_from([0, 1, 2, 3, 9]), st.binary(max_size=40),
                     st.tuples(*[st.booleans()] * 7), st.integers(0, 4095), S._trailer())


def _reference_notify(msg, key):
    try:
        return seal(MapNotify(msg.nonce, msg.records, msg.key_id, msg.alg_id, b"",
                              xtr_id=msg.xtr_id, site_id=msg.site_id), key)
    except EncodeError:
        return None


@FAST
@given(plain_registers(), st.binary(min_size=1, max_size=32))
def test_notify_from_bytes_is_seal_of_the_decoded_records(msg, key):
    data = encode_register_like(msg)
    got = decode_message(data)
    assert plain_records(got.records)
    assert notify_of_register(data, key) == _reference_notify(got, key)


@FAST
@given(S.map_registers(False), st.binary(min_size=1, max_size=32))
def test_notify_from_bytes_only_where_the_codec_is_exact(msg, key):
    """Any Map-Register the codec carries (LCAFs, names, MACs...): where
    :func:`plain_records` says yes, the bytes give what :func:`seal` gives."""
    data = encode_register_like(msg)
    got = decode_message(data)
    if plain_records(got.records):
        assert notify_of_register(data, key) == _reference_notify(got, key)


def test_plain_records_refuses_an_lcaf_that_does_not_round_trip():
    iid = InstanceIdAddr(0, IPv4Address("192.0.2.1"))
    assert not plain_records((EidRecord(iid, 32, 10, ()),))
    assert not plain_records((EidRecord(IPv4Address("10.0.0.0"), 8, 10, (Locator(iid),)),))
    assert plain_records((EidRecord(IPv6Address("2001:db8::"), 32, 10, (Locator(IPv4Address("192.0.2.1")),)),))


# -- the whole MapServer, differential ---------------------------------------------

KEY_A, KEY_B = b"site-a-secret", b"site-b-secret"
EIDS = ["[0]10.1.0.0/16", "[0]10.1.3.0/24", "[0]10.1.5.0/24", "[0]10.1.5.128/25", "[0]10.2.0.0/16",
        "[0]10.2.7.0/24", "[0]10.77.0.0/16", "[0]2001:db8:1::/48", "[1000]10.9.1.0/24", "[1000]10.9.0.0/16",
        "[0]2001:db8:2:1::/64"]
RLOCS = [IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"), IPv6Address("2001:db8::1"),
         InstanceIdAddr(0, IPv4Address("192.0.2.3")), Rle((RleEntry(IPv4Address("192.0.2.9"), 5),)),
         Mac(b"\x00\x11\x22\x33\x44\x55")]
XTRS = [None, bytes(range(16)), bytes(range(1, 17))]
SRCS = [("127.0.0.1", 4342), ("127.0.0.2", 4342)]


def sites(policy_a, policy_b):
    return [site("site-a", KEY_A, policy=policy_a),
            site("site-b", KEY_B, prefixes=(("[0]10.2.0.0/16", True), ("[0]10.1.5.0/24", True),
                                            ("[0]2001:db8:2::/48", True)), policy=policy_b, alg=1)]


locator_st = st.builds(lambda a, pri, loc, prb, r, u: Locator(RLOCS[a], pri, 100, 255, 0, loc, prb, r, u),
                       st.integers(0, len(RLOCS) - 1), st.integers(0, 3), st.booleans(), st.booleans(),
                       st.booleans(), st.sampled_from([0, 0, 5]))
record_st = st.builds(
    lambda e, locs, ttl, act, ver: EidRecord(*eid_to_wire(parse_eidspec(EIDS[e])), ttl, tuple(locs), act,
                                             True, ver),
    st.integers(0, len(EIDS) - 1), st.lists(locator_st, max_size=3), st.sampled_from([0, 1, 1440, 1440]),
    st.sampled_from([0, 0, 3]), st.sampled_from([0, 0, 7]))
message_st = st.fixed_dictionaries({
    "records": st.lists(record_st, min_size=1, max_size=3),
    "nonce_step": st.sampled_from([1, 1, 1, 0, -3]),
    "xtr": st.integers(0, len(XTRS) - 1),
    "flags": st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),  # P, a, M, T
    "key": st.sampled_from(["a", "b", "b", "wrong"]),
    "cover": st.sampled_from(["all", "all", "records", "short"]),
    "src": st.integers(0, len(SRCS) - 1),
    "gate": st.sampled_from([True, True, False]),
    "remaining": st.sampled_from([None, None, None, 30.0]),
    "repeat": st.booleans(),
})


def _build(m, nonce):
    key = {"a": (KEY_A, 2), "b": (KEY_B, 1), "wrong": (b"forged", 2)}[m["key"]]
    xtr = XTRS[m["xtr"]]
    p, a, notify, t = m["flags"]
    alg = key[1]
    n = 32 if alg == 2 else 20
    if m["cover"] == "short":
        n = 16 if alg == 2 else 12
    msg = MapRegister(nonce, tuple(m["records"]), 0, alg, bytes(n), proxy_reply=p, merge=a,
                      want_map_notify=notify, ttl_is_lifetime=t, xtr_id=xtr,
                      site_id=bytes(8) if xtr else None)
    buf = bytearray(encode_register_like(msg))
    covered = bytes(buf[:-24]) if (m["cover"] == "records" and xtr) else bytes(buf)
    buf[16:16 + n] = mac(alg, key[0], covered)[:n]
    cov = "records" if (m["cover"] == "records" and xtr) else "all"
    return bytes(buf), (cov if m.get("gate") and m["key"] != "wrong" else None)


def _armed(ms):
    """The (time, key) pairs that will expire something: the reference keeps a heap of
    pairs, the compact shard a heap of times with the keys armed at each."""
    if isinstance(ms, ReferenceMapServer):
        pairs = ms._heap
    else:
        pairs = [(at, k) for at, keys in ms._due.items() for k in keys]
    return sorted({(at, k) for at, k in pairs if ms.expiry.get(k) == at})


def _plans(ms):
    """The refresh plans, without how each checks its entries (Entry identity in the
    reference, content tokens in the compact shard): the keys and registrants; the
    Map-Notify template without its nonce and MAC (both replaced when it is used)."""
    out = {}
    for rk, (site_name, keys, entries, lives, template, *rest) in ms._plans.items():
        regs = tuple((e[0], e[1].registrant if len(e) == 2 else e[2]) for e in entries)
        if template is not None:
            template = template[:4] + template[12:16] + template[16 + int.from_bytes(template[14:16], "big"):]
        out[rk] = (site_name, keys, regs, lives, template, *rest)
    return out


def _results(rs):
    """RegisterResults without ``plan``: a refresh whose entries were replaced by equal
    ones takes the fast path in the compact shard (content tokens) and the full path in
    the reference (Entry identity); the outcome is the same, but the full path's result
    carries a new plan and the fast path's none."""
    return [dataclasses.replace(r, plan=None) for r in rs]


def _state(ms):
    return ({e.key: e for e in ms.table.entries()}, ms.expiry, ms.nonces, ms.raw, ms.wants_notify, ms.pending,
            _plans(ms), ms.seen, ms.stats, ms._notify_nonce, _armed(ms), len(ms.table))


def _served(eid):
    return None if eid.length == 25 else eid.length != 64


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["strict", "warn", "off"]), st.sampled_from(["strict", "warn", "off"]),
       st.lists(message_st, min_size=1, max_size=14), st.lists(st.integers(1, 5), min_size=14, max_size=14),
       st.booleans(), st.booleans())
def test_optimised_map_server_equals_the_reference(pol_a, pol_b, msgs, cuts, index, per_message):
    ss = sites(pol_a, pol_b)
    kw = {"lifetime": 180.0, "notify_nonce": 77, "accept_index": _served if index else None}
    fast, ref = MapServer(ss, **kw), ReferenceMapServer(ss, **kw)
    logs = {id(fast): [], id(ref): []}
    items, nonce, last = [], 100, None
    for m in msgs:
        nonce = max(1, nonce + m["nonce_step"])
        if m["repeat"] and last is not None:     # the same records again: refreshes
            m = dict(last, nonce_step=1, key=last["key"], gate=m["gate"])
        data, cov = _build(m, nonce)
        items.append((data, SRCS[m["src"]], cov, m["remaining"]))
        last = m
    now, i, c = 10.0, 0, 0
    while i < len(items):
        group = items[i:i + cuts[c]]
        i, c, now = i + len(group), c + 1, now + 7.0
        out = {}
        for ms in (fast, ref):
            log = logs[id(ms)]
            commit = lambda ch, no, log=log: log.append(("commit", list(ch), dict(no)))  # noqa: E731
            send = lambda d, p, x, log=log: log.append(("send", d, p, x))  # noqa: E731
            if per_message:
                out[id(ms)] = [ms.handle_register(d, s, now, commit=commit, send=send, remaining=r)
                               for d, s, _c, r in group]
            else:
                out[id(ms)] = ms.handle_batch(group, now, commit=commit, send=send,
                                              publish=lambda ch, log=log: log.append(("publish", list(ch))))
            log.append(("expired", ms.expire(now + 100.0 * (c % 3 == 0))))
        assert _results(out[id(fast)]) == _results(out[id(ref)])
        assert logs[id(fast)] == logs[id(ref)]
        assert _state(fast) == _state(ref)
        assert fast.next_timer() == ref.next_timer()
    # a restart: both reload what the reference holds (the compact shard from the
    # store's encoded values as well), then take every message again
    rows = [(k, v, ref.raw[k]) for k, v in ref.snapshot()]
    fast, ref = MapServer(ss, **kw), ReferenceMapServer(ss, **kw)
    assert fast.restore([(k, msgpack.packb(v), r) for k, v, r in rows], {}, now) == []
    assert ref.restore(rows, {}, now) == []
    assert _state(fast) == _state(ref)
    for ms in (fast, ref):
        logs[id(ms)] = []
        log = logs[id(ms)]
        out[id(ms)] = ms.handle_batch(items, now + 1.0, commit=lambda ch, no, log=log: log.append((ch, no)),
                                      send=lambda d, p, x, log=log: log.append((d, p, x)))
        log.append(("expired", ms.expire(now + 1.0 + 100.0 * (len(items) % 2))))
    assert _results(out[id(fast)]) == _results(out[id(ref)])
    assert logs[id(fast)] == logs[id(ref)]
    assert _state(fast) == _state(ref)
    assert fast.next_timer() == ref.next_timer()


def test_a_plain_register_takes_the_bytes_path(monkeypatch):
    """Every record accepted, plain addresses: the Map-Notify does not go through seal."""
    import common.machines.mapserver as msmod

    def boom(*_a):
        raise AssertionError("seal called")
    data, _ = _build({"records": [EidRecord(*eid_to_wire(parse_eidspec("[0]10.1.0.0/16")), 1440,
                                            (Locator(ip_address("192.0.2.1")),))],
                      "xtr": 1, "flags": (False, False, True, False), "key": "a", "cover": "all"}, 5)
    want = ReferenceMapServer(sites("strict", "strict")).compute_register(data, SRCS[0], 1.0).notify
    monkeypatch.setattr(msmod, "seal", boom)
    assert MapServer(sites("strict", "strict")).compute_register(data, SRCS[0], 1.0).notify == want


def test_the_differential_test_sees_a_different_notify():
    """The comparison can fail: a Map-Notify with one MAC byte changed is not equal."""
    data, _ = _build({"records": [EidRecord(*eid_to_wire(parse_eidspec("[0]10.1.0.0/16")), 1440,
                                            (Locator(ip_address("192.0.2.1")),))],
                      "xtr": 1, "flags": (False, False, True, False), "key": "a", "cover": "all"}, 5)
    ss = sites("strict", "strict")
    a = MapServer(ss).compute_register(data, SRCS[0], 1.0)
    b = ReferenceMapServer(ss).compute_register(data, SRCS[0], 1.0)
    assert a == b and a.notify is not None
    bad = bytearray(a.notify)
    bad[20] ^= 1
    a.notify = bytes(bad)
    assert a != b
