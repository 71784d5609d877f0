"""A DNSSEC-signed zone for tests, signed at test time with dnspython, and the
answers an authoritative server gives from it (for unit tests without a server)."""

from __future__ import annotations

import time

import dns.dnssec
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec
from dns.dnssectypes import Algorithm


def zone_text(origin: str, records: dict, ns_addr: str = "127.0.0.1") -> str:
    """``records``: index -> addresses (A or AAAA by family)."""
    lines = [f"$ORIGIN {origin}", "$TTL 60",
             f"@ IN SOA ns.{origin} admin.{origin} 1 60 60 600 30", f"@ IN NS ns.{origin}",
             f"ns IN A {ns_addr}"]
    for i, addrs in records.items():
        for a in addrs:
            lines.append(f"{i} IN {'AAAA' if ':' in a else 'A'} {a}")
    return "\n".join(lines) + "\n"


def new_key():
    key = ec.generate_private_key(ec.SECP256R1())
    return key, dns.dnssec.make_dnskey(key.public_key(), Algorithm.ECDSAP256SHA256, flags=257)


def signed_zone(origin: str, records: dict, key=None, *, inception=None, expiration=None,
                lifetime: int | None = 3600, ns_addr: str = "127.0.0.1") -> tuple:
    """(zone, (private key, DNSKEY)) of ``records`` signed with ``key`` (new if None)."""
    key = key or new_key()
    if inception is None:
        # as real signers do: valid from a little before now, so a check whose "now"
        # was taken a moment before signing (across a second boundary) still passes
        inception = time.time() - 300
    z = dns.zone.from_text(zone_text(origin, records, ns_addr), origin=origin, relativize=False)
    with z.writer() as txn:
        dns.dnssec.sign_zone(z, txn, keys=[key], inception=inception, expiration=expiration,
                             lifetime=None if expiration else lifetime)
    return z, key


def ds_text(origin: str, dnskey) -> str:
    return f"{origin} IN DS {dns.dnssec.make_ds(origin, dnskey, 'SHA256')}"


def _rrsets(z, name, rdtype):
    node = z.get_node(name)
    if node is None:
        return []
    out = []
    rds = node.get_rdataset(dns.rdataclass.IN, rdtype)
    if rds is not None:
        out.append(dns.rrset.from_rdata_list(name, rds.ttl, list(rds)))
        sig = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
        if sig is not None:
            rr = dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
            rr.update(sig)
            out.append(rr)
    return out


def answer(z, qname: str, rdtype: str) -> dns.message.Message:
    """What an authoritative server for ``z`` answers (DO set)."""
    q = dns.message.make_query(qname, rdtype, want_dnssec=True)
    r = dns.message.make_response(q)
    name, t = dns.name.from_text(qname), dns.rdatatype.from_text(rdtype)
    soa = _rrsets(z, z.origin, dns.rdatatype.SOA)
    if z.get_node(name) is not None:
        found = _rrsets(z, name, t)
        if found:
            r.answer.extend(found)
        else:  # NODATA: the NSEC at the name
            r.authority.extend(soa + _rrsets(z, name, dns.rdatatype.NSEC))
        return r
    r.set_rcode(dns.rcode.NXDOMAIN)
    r.authority.extend(soa)
    for n in z.nodes:
        for nsec in _rrsets(z, n, dns.rdatatype.NSEC)[:1]:
            nxt = nsec[0].next
            if (n < name < nxt) or (nxt <= n and (name > n or name < nxt)):
                r.authority.extend(_rrsets(z, n, dns.rdatatype.NSEC))
    return r
