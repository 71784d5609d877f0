"""roles.dnssec_check against answers from a zone signed here with dnspython."""

from __future__ import annotations

import time

import dns.name
import dns.rdatatype
import pytest

from roles.dnssec_check import AnchorError, Bogus, Validator, load_anchor
from tests.dnssec_zone import answer, ds_text, new_key, signed_zone

ORIGIN = "sec.test."
RECORDS = {0: ["127.0.9.1", "fd00::1"], 1: ["127.0.9.3"]}


def validator(key, anchor_text=None):
    zone, anchor = load_anchor(anchor_text or ds_text(ORIGIN, key[1]))
    return Validator(zone, anchor)


def check(v, z, qname, rdtype, now=None):
    now = now or time.time()
    keys = v.trust_keys(answer(z, ORIGIN, "DNSKEY"), now)
    return v.check(answer(z, qname, rdtype), dns.name.from_text(qname), dns.rdatatype.from_text(rdtype),
                   keys, now)


def test_validated_answers_nodata_and_nxdomain():
    z, key = signed_zone(ORIGIN, RECORDS)
    v = validator(key)
    got = check(v, z, "0.sec.test.", "A")
    assert (got.kind, got.addrs, got.ttl) == ("answer", ("127.0.9.1",), 60)
    assert check(v, z, "0.sec.test.", "AAAA").addrs == ("fd00::1",)
    nodata = check(v, z, "1.sec.test.", "AAAA")
    assert (nodata.kind, nodata.addrs) == ("answer", ())
    nx = check(v, z, "7.sec.test.", "A")
    assert nx.kind == "nxdomain" and nx.ttl == 30
    # a DNSKEY anchor works as well as a DS
    v2 = validator(key, f"{ORIGIN} 3600 IN DNSKEY {key[1]}")
    assert check(v2, z, "0.sec.test.", "A").addrs == ("127.0.9.1",)


def test_tampered_answer_is_bogus():
    z, key = signed_zone(ORIGIN, RECORDS)
    v = validator(key)
    r = answer(z, "0.sec.test.", "A")
    a = next(x for x in r.answer if x.rdtype == dns.rdatatype.A)
    a.clear()
    a.add(dns.rdata.from_text("IN", "A", "192.0.2.66"))
    keys = v.trust_keys(answer(z, ORIGIN, "DNSKEY"), time.time())
    with pytest.raises(Bogus, match="bogus A"):
        v.check(r, dns.name.from_text("0.sec.test."), dns.rdatatype.A, keys, time.time())


def test_unsigned_answer_and_unproven_negatives_are_bogus():
    z, key = signed_zone(ORIGIN, RECORDS)
    v = validator(key)
    keys = v.trust_keys(answer(z, ORIGIN, "DNSKEY"), time.time())
    r = answer(z, "0.sec.test.", "A")
    r.answer = [x for x in r.answer if x.rdtype != dns.rdatatype.RRSIG]
    with pytest.raises(Bogus, match="unsigned A"):
        v.check(r, dns.name.from_text("0.sec.test."), dns.rdatatype.A, keys, time.time())
    r = answer(z, "7.sec.test.", "A")
    r.authority = [x for x in r.authority if x.rdtype != dns.rdatatype.NSEC]
    with pytest.raises(Bogus, match="NXDOMAIN .* without an NSEC"):
        v.check(r, dns.name.from_text("7.sec.test."), dns.rdatatype.A, keys, time.time())
    # an NSEC that does not cover the name proves nothing
    r = answer(z, "7.sec.test.", "A")
    with pytest.raises(Bogus):
        v.check(r, dns.name.from_text("0a.sec.test."), dns.rdatatype.A, keys, time.time())


def test_expired_signatures_and_wrong_anchor_are_bogus():
    now = time.time()
    z, key = signed_zone(ORIGIN, RECORDS, inception=now - 7200, expiration=now - 3600)
    v = validator(key)
    with pytest.raises(Bogus, match="DNSKEY"):
        v.trust_keys(answer(z, ORIGIN, "DNSKEY"), now)
    z, key = signed_zone(ORIGIN, RECORDS)
    other = new_key()
    with pytest.raises(Bogus, match="no DNSKEY of sec.test. matches the trust anchor"):
        validator(other).trust_keys(answer(z, ORIGIN, "DNSKEY"), now)
    # a zone signed by another key than the anchored one: its answers are bogus
    z2, _ = signed_zone(ORIGIN, RECORDS, other)
    keys = validator(key).trust_keys(answer(z, ORIGIN, "DNSKEY"), now)
    with pytest.raises(Bogus):
        validator(key).check(answer(z2, "0.sec.test.", "A"), dns.name.from_text("0.sec.test."),
                             dns.rdatatype.A, keys, now)


def test_load_anchor():
    _, key = new_key(), None
    z, key = signed_zone(ORIGIN, RECORDS)
    zone, rrset = load_anchor(ds_text(ORIGIN, key[1]) + "  ; the KSK\n\n")
    assert zone == dns.name.from_text(ORIGIN) and rrset.rdtype == dns.rdatatype.DS and len(rrset) == 1
    for bad, what in (("", "no DS or DNSKEY"), ("sec.test. IN A 1.2.3.4", "line 1"),
                      ("sec.test. IN DS 1 13 2 zz", "line 1"),
                      (ds_text(ORIGIN, key[1]) + "\nother.test. IN DS 1 13 2 " + "00" * 32, "line 2")):
        with pytest.raises(AnchorError, match=what):
            load_anchor(bad)


def test_discovery_refuses_to_start_on_a_bad_anchor(tmp_path):
    from types import SimpleNamespace
    from roles.discovery import _validator
    logged = []
    ctx = SimpleNamespace(log=SimpleNamespace(error=lambda *a: logged.append(a[0] % a[1:]),
                                              info=lambda *a: None))
    pull = SimpleNamespace(trust_anchor=None, trust_anchor_file=str(tmp_path / "missing.ds"),
                           name_servers=(), resolve_max=30.0)
    with pytest.raises(SystemExit) as exc:
        _validator(ctx, pull)
    assert exc.value.code == 2 and "decent.trust_anchor_file" in logged[0]
    bad = tmp_path / "bad.ds"
    bad.write_text("sec.test. IN DS 1 13 2 zz\n")
    pull.trust_anchor_file = str(bad)
    with pytest.raises(SystemExit):
        _validator(ctx, pull)
    assert "line 1" in logged[1]
    z, key = signed_zone(ORIGIN, RECORDS)
    good = tmp_path / "good.ds"
    good.write_text(ds_text(ORIGIN, key[1]) + "\n")
    pull.trust_anchor_file = str(good)
    pull.name_servers = (SimpleNamespace(address="127.0.0.53", port=5353),)
    v, servers = _validator(ctx, pull)
    assert v.zone == dns.name.from_text(ORIGIN) and servers == [("127.0.0.53", 5353)]
