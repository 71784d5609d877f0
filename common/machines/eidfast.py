"""A fast reader of canonical EID text (``format_eid``'s ``[iid]address/length``).

``parse_eidspec`` accepts every spelling (MAC, (S,G), spaces, host bits, no IID) and
costs ~20 us (IPv4) to ~60 us (IPv6); the replica and the shard's reload read a
million canonical texts, so the canonical forms are read here directly and anything
else falls back to ``parse_eidspec`` (same result either way:
tests/unit/test_compact_table.py).
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address

from common.wire.addr import Eid
from common.wire.eidtext import format_address, parse_eidspec

_MAX_IID = (1 << 24) - 1


_V4 = re.compile(r"\[(\d{1,8})\]((\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})/(\d{1,2}))\Z")


def _fast_text(text: str):
    """(iid, family, "addr/len", length, network) of a canonical unicast EID text
    (``format_eid``'s form), else None.  Much cheaper than ``parse_eidspec``."""
    m = _V4.match(text)
    if m is not None:
        iid, pfx, a, b, c, d, ln = m.groups()
        iid, a, b, c, d, length = int(iid), int(a), int(b), int(c), int(d), int(ln)
        if a > 255 or b > 255 or c > 255 or d > 255 or length > 32 or iid > _MAX_IID \
                or f"[{iid}]{a}.{b}.{c}.{d}/{length}" != text:
            return None
        net = (a << 24) | (b << 16) | (c << 8) | d
        if length < 32 and net & ((1 << (32 - length)) - 1):
            return None
        return iid, 4, pfx, length, net
    if not text.startswith("["):
        return None
    close = text.find("]")
    raw = text[1:close]
    if not (0 < len(raw) <= 8 and raw.isdigit()) or (len(raw) > 1 and raw[0] == "0"):
        return None
    iid = int(raw)
    addr, slash, ln = text[close + 1:].partition("/")
    if not slash or not ln.isdigit() or len(ln) > 3 or (len(ln) > 1 and ln[0] == "0"):
        return None
    length = int(ln)
    if ":" in addr:
        if length > 128:
            return None
        try:
            a = IPv6Address(addr)
        except ValueError:
            return None
        if str(a) != addr:
            return None
        fam, net, bits = 6, int(a), 128
    else:
        parts = addr.split(".")
        if len(parts) != 4 or length > 32:
            return None
        net = 0
        for p in parts:
            if not (p.isdigit() and len(p) <= 3) or (len(p) > 1 and p[0] == "0"):
                return None
            v = int(p)
            if v > 255:
                return None
            net = (net << 8) | v
        fam, bits = 4, 32
    if iid > _MAX_IID or (length < bits and net & ((1 << (bits - length)) - 1)):
        return None
    return iid, fam, f"{addr}/{length}", length, net


def parse_text(text: str):
    """As :func:`_fast_text` for any EID text parse_eidspec accepts (None: multicast).
    Raises ValueError (EidSpecError) for what is not an EID."""
    got = _fast_text(text)
    if got is not None:
        return got
    eid = parse_eidspec(text)
    if eid.is_multicast or not eid.is_ip:
        return None
    fam = 4 if isinstance(eid.address, IPv4Address) else 6
    return eid.iid, fam, f"{format_address(eid.address)}/{eid.length}", eid.length, int(eid.address)




def parse_eid(text: str) -> Eid:
    """``parse_eidspec(text)``, faster for canonical unicast text."""
    got = _fast_text(text)
    if got is None:
        return parse_eidspec(text)
    iid, fam, _pfx, length, net = got
    return Eid(iid, IPv4Address(net) if fam == 4 else IPv6Address(net), length)
