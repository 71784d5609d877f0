"""DNSSEC validation of the discovery role's answers (``decent.dnssec = "validate"``).

RFC 9962 section 6 recommends DNSSEC for the pull-mode DNS: without it a forged
answer sends an index's registrations (and their HMACs) to an attacker's servers.
Under ``validate`` every A/AAAA answer must be proven by the zone's keys, which are
proven by the configured trust anchor (a DS or DNSKEY of the zone that holds the
``<index>.<suffix>`` names):

* the zone's DNSKEY RRset must be signed by a key the anchor names (a DS digest or
  the DNSKEY itself); it is kept until its TTL runs out, at most ``keys_max_age``;
* an answer must carry an RRSIG by that zone that validates now (an expired or
  not yet valid signature is bogus);
* NXDOMAIN must come with a validating NSEC that covers the name, NODATA with a
  validating NSEC at the name whose type bitmap lacks the type (NSEC3 and
  wildcard proofs are not handled: such an answer counts as unproven).

Anything else (unsigned, bogus, unproven) is a :class:`Lookup` failure whose
reason starts with ``DNSSEC``: the seeds machine keeps the last good set, logs once
per state change and the role counts it.  The queries go straight to the
configured name servers (or the system's) with the DO bit, so the records and
their signatures come back as served.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import dns.asyncquery
import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdata
import dns.resolver
import dns.rrset

from common.decent.seeds import Lookup


class AnchorError(ValueError):
    """A trust anchor that does not parse; the message is one line."""


class Bogus(Exception):
    """An answer that DNSSEC does not prove (unsigned, bogus, expired, unproven)."""


def load_anchor(text: str) -> tuple[dns.name.Name, dns.rrset.RRset]:
    """The zone and the DS or DNSKEY RRset of ``text``: one record per line,
    ``<zone> [<ttl>] [IN] DS|DNSKEY <rdata>`` (comments after ``;``).  All records
    must be of one zone and one type."""
    zone = rtype = None
    rdatas = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        kinds = [i for i, t in enumerate(tokens) if t.upper() in ("DS", "DNSKEY")]
        if not kinds or kinds[0] == 0:
            raise AnchorError(f"line {n}: expected '<zone> [ttl] [IN] DS|DNSKEY <data>'")
        i = kinds[0]
        try:
            owner = dns.name.from_text(tokens[0])
            t = dns.rdatatype.from_text(tokens[i].upper())
            rd = dns.rdata.from_text(dns.rdataclass.IN, t, " ".join(tokens[i + 1:]))
        except (dns.exception.DNSException, ValueError) as exc:
            raise AnchorError(f"line {n}: {exc}") from None
        if zone is not None and (owner != zone or t != rtype):
            raise AnchorError(f"line {n}: every record must be a {dns.rdatatype.to_text(rtype)} "
                              f"of {zone}")
        zone, rtype = owner, t
        rdatas.append(rd)
    if zone is None:
        raise AnchorError("no DS or DNSKEY record")
    return zone, dns.rrset.from_rdata_list(zone, 0, rdatas)


async def query(servers: list[tuple[str, int]], qname: dns.name.Name, rdtype,
                timeout: float) -> dns.message.Message:
    """One DO query, to each server in turn until one answers (TCP on truncation)."""
    q = dns.message.make_query(qname, rdtype, want_dnssec=True)
    last: Exception | None = None
    for addr, port in servers:
        try:
            r = await dns.asyncquery.udp(q, addr, port=port, timeout=timeout)
            if r.flags & dns.flags.TC:
                r = await dns.asyncquery.tcp(q, addr, port=port, timeout=timeout)
            return r
        except (dns.exception.DNSException, OSError, asyncio.TimeoutError) as exc:
            last = exc
    raise last or dns.exception.Timeout()


def system_servers() -> list[tuple[str, int]]:
    """The system resolver's name servers (port 53)."""
    return [(str(a), 53) for a in dns.resolver.Resolver().nameservers]


def _sig(section, name, covers) -> dns.rrset.RRset | None:
    for rrset in section:
        if rrset.name == name and rrset.rdtype == dns.rdatatype.RRSIG and rrset.covers == covers:
            return rrset
    return None


@dataclass
class Validator:
    zone: dns.name.Name
    anchor: dns.rrset.RRset
    keys_max_age: float = 300.0
    _keys: dns.rrset.RRset | None = None
    _keys_until: float = 0.0
    _lock: asyncio.Lock | None = None

    def _validate(self, rrset, section, keys, now: float) -> None:
        sig = _sig(section, rrset.name, rrset.rdtype)
        if sig is None:
            raise Bogus(f"unsigned {dns.rdatatype.to_text(rrset.rdtype)} for {rrset.name}")
        if any(s.signer != self.zone for s in sig):
            raise Bogus(f"{rrset.name} signed by {sig[0].signer}, not by the anchored zone {self.zone}")
        try:
            dns.dnssec.validate(rrset, sig, {self.zone: keys}, now=now)
        except dns.dnssec.ValidationFailure as exc:
            raise Bogus(f"bogus {dns.rdatatype.to_text(rrset.rdtype)} for {rrset.name}: {exc}") from None

    def trust_keys(self, response: dns.message.Message, now: float) -> dns.rrset.RRset:
        """The zone's DNSKEY RRset from ``response``, proven by the anchor (or Bogus)."""
        if response.rcode() != dns.rcode.NOERROR:
            raise Bogus(f"DNSKEY query for {self.zone}: {dns.rcode.to_text(response.rcode())}")
        keys = next((r for r in response.answer if r.name == self.zone
                     and r.rdtype == dns.rdatatype.DNSKEY), None)
        if keys is None:
            raise Bogus(f"no DNSKEY for {self.zone}")
        if self.anchor.rdtype == dns.rdatatype.DS:
            trusted = [k for k in keys for ds in self.anchor
                       if _ds_matches(self.zone, k, ds)]
        else:
            trusted = [k for k in keys if k in self.anchor]
        if not trusted:
            raise Bogus(f"no DNSKEY of {self.zone} matches the trust anchor")
        self._validate(keys, response.answer, dns.rrset.from_rdata_list(self.zone, keys.ttl, trusted),
                       now)
        return keys

    async def keys(self, fetch, now: float) -> dns.rrset.RRset:
        """The proven DNSKEY RRset, fetched with ``fetch()`` when the cached one is stale."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one DNSKEY query when many names fall due at once
            if self._keys is None or now >= self._keys_until:
                self._keys = None
                keys = self.trust_keys(await fetch(), now)
                self._keys, self._keys_until = keys, now + min(float(keys.ttl), self.keys_max_age)
            return self._keys

    def check(self, response: dns.message.Message, qname: dns.name.Name, rdtype,
              keys: dns.rrset.RRset, now: float) -> Lookup:
        """The :class:`Lookup` ``response`` proves for ``qname``/``rdtype`` (Bogus otherwise);
        a failure rcode is a plain failure, as without DNSSEC."""
        rcode = response.rcode()
        tname = dns.rdatatype.to_text(rdtype)
        if rcode == dns.rcode.NOERROR:
            rrset = next((r for r in response.answer if r.name == qname and r.rdtype == rdtype), None)
            if rrset is not None:
                self._validate(rrset, response.answer, keys, now)
                return Lookup("answer", tuple(r.address for r in rrset), rrset.ttl)
            nsec = self._proven_nsecs(response, keys, now)
            at = next((r for r in nsec if r.name == qname), None)
            types = _nsec_types(at) if at is not None else None
            if types is None or rdtype in types or dns.rdatatype.CNAME in types:
                raise Bogus(f"no {tname} for {qname} without an NSEC proving it")
            return Lookup("answer", (), _negative_ttl(response))
        if rcode == dns.rcode.NXDOMAIN:
            nsec = self._proven_nsecs(response, keys, now)
            if not any(_covers(r, qname) for r in nsec):
                raise Bogus(f"NXDOMAIN for {qname} without an NSEC covering it")
            return Lookup("nxdomain", ttl=_negative_ttl(response))
        return Lookup("failure", reason=f"{tname}: {dns.rcode.to_text(rcode)}")

    def _proven_nsecs(self, response, keys, now) -> list:
        out = []
        for r in response.authority:
            if r.rdtype == dns.rdatatype.NSEC:
                self._validate(r, response.authority, keys, now)
                out.append(r)
        return out


def _ds_matches(zone, key, ds) -> bool:
    try:
        return dns.dnssec.make_ds(zone, key, ds.digest_type) == ds
    except (dns.dnssec.UnsupportedAlgorithm, ValueError):
        return False


def _nsec_types(rrset) -> set:
    types = set()
    for rd in rrset:
        for window, bitmap in rd.windows:
            for i, byte in enumerate(bitmap):
                for bit in range(8):
                    if byte & (0x80 >> bit):
                        types.add(window * 256 + i * 8 + bit)
    return types


def _covers(rrset, qname) -> bool:
    """NSEC ``rrset`` proves that ``qname`` does not exist (canonical order, RFC 4034 6.1)."""
    owner = rrset.name
    for rd in rrset:
        nxt = rd.next
        if owner < nxt:
            if owner < qname < nxt:
                return True
        elif qname > owner or qname < nxt:  # the last NSEC of the zone wraps to the apex
            return True
    return False


def _negative_ttl(response) -> int | None:
    for r in response.authority:
        if r.rdtype == dns.rdatatype.SOA:
            return min(r.ttl, r[0].minimum)
    return None


async def validated_lookup(servers, validator: Validator, name: str, rdtype: str,
                           timeout: float) -> Lookup:
    """One validated A or AAAA lookup, never raising: an answer, NXDOMAIN or a failure
    (``DNSSEC ...`` when the answer is not proven)."""
    qname = dns.name.from_text(name)
    t = dns.rdatatype.from_text(rdtype)
    try:
        keys = await validator.keys(lambda: query(servers, validator.zone, dns.rdatatype.DNSKEY,
                                                  timeout), time.time())
        response = await query(servers, qname, t, timeout)
        return validator.check(response, qname, t, keys, time.time())
    except Bogus as exc:
        return Lookup("failure", reason=f"{rdtype}: DNSSEC {exc}")
    except (dns.exception.Timeout, asyncio.TimeoutError):
        return Lookup("failure", reason=f"{rdtype}: timeout")
    except (dns.exception.DNSException, OSError) as exc:
        return Lookup("failure", reason=f"{rdtype}: {type(exc).__name__}")


__all__ = ["AnchorError", "Bogus", "Validator", "load_anchor", "query", "system_servers",
           "validated_lookup"]
