"""LISP-Decent pull mode: which map-server set (index) an EID belongs to.

Pure functions implementing the three frozen modes of DESIGN.md section 6:

``rfc9962`` (the standard; ``draft`` is its old name and stays an alias)
    RFC 9962 section 5.1: SHA-256 of the canonical string
    (:func:`common.wire.eidtext.format_eid`) truncated to ``mask`` bytes; the
    digest read as a big-endian integer, mod modulus.  Multicast entries hash
    exactly ``[<iid>]<group>`` (never the source).  Section 5.2 lookup ranges
    (:class:`LookupRange`): an EID inside a range is masked to the range's
    lookup length (the most specific range wins) before it is formatted.
``lispers``
    lispers.net's ``lisp_get_decent_index``: HMAC-SHA-256 keyed ``lisp-decent``
    over the unmasked string, first 6 bytes of the digest big-endian, mod
    modulus; multicast hashes the group alone, ``[<iid>]<group>/<gml>``.  A mask
    is an error.  The string is written as lispers.net writes it
    (:func:`lispers_string`): IPv6 as ``inet_ntop`` does (an IPv4-mapped or
    IPv4-compatible address ends in a dotted quad), and the address as given,
    host bits included, when the caller has it.
``prefix``
    The EID is masked to ``mask`` bits (a shorter prefix keeps its own length),
    formatted, and hashed like ``rfc9962``; multicast hashes the masked group
    alone.  One lookup range covering the whole space, registrations included.

Every node of a deployment must agree on mode, mask, ranges and modulus; these
functions are what they agree on, so their output must never change.
"""

from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv4Address, IPv6Address

from dataclasses import dataclass

from common.wire.addr import Eid, Mac, address_bits, clear_host_bits
from common.wire.eidtext import format_address, format_eid

MODES = ("rfc9962", "lispers", "prefix")
ALIASES = {"draft": "rfc9962"}  # the name before RFC 9962 was published

LISPERS_KEY = b"lisp-decent"
LISPERS_WIDTH = 6  # bytes of the HMAC digest lispers.net uses by default


@dataclass(frozen=True)
class LookupRange:
    """RFC 9962 section 5.2: EIDs looked up inside ``prefix`` hash on ``length`` bits."""

    prefix: Eid   # a unicast IPv4 or IPv6 prefix, with its instance-ID
    length: int   # the lookup length in bits, at least the prefix's own length

    def __post_init__(self) -> None:
        p = self.prefix
        if p.is_multicast or not isinstance(p.address, (IPv4Address, IPv6Address)):
            raise ValueError(f"a lookup range is a unicast IPv4 or IPv6 prefix, not {format_eid(p)}")
        bits = address_bits(p.address)
        if isinstance(self.length, bool) or not isinstance(self.length, int) or \
                not p.length <= self.length <= bits:
            raise ValueError(f"lookup length of {format_eid(p)} must be an integer from "
                             f"{p.length} to {bits}, not {self.length!r}")

    def __str__(self) -> str:
        return f"{format_eid(self.prefix)}={self.length}"


def canonical_mode(mode: str) -> str:
    """``mode`` with its alias resolved (``draft`` -> ``rfc9962``); ValueError if unknown."""
    mode = ALIASES.get(mode, mode)
    if mode not in MODES:
        names = ", ".join(MODES + tuple(ALIASES))
        raise ValueError(f"unknown hash mode {mode!r} (one of {names})")
    return mode


def _inside(prefix: Eid, eid: Eid) -> bool:
    """Unicast ``eid`` lies inside unicast ``prefix`` (same IID and family, at least as long)."""
    return (prefix.iid == eid.iid and type(prefix.address) is type(eid.address)
            and not eid.is_multicast and prefix.length <= eid.length
            and clear_host_bits(eid.address, prefix.length) == prefix.address)


def matching_range(eid: Eid, ranges) -> LookupRange | None:
    """The most specific range holding unicast ``eid`` (same IID and family), or None."""
    best = None
    if eid.is_multicast:
        return None
    for r in ranges:
        if _inside(r.prefix, eid) and (best is None or r.prefix.length > best.prefix.length):
            best = r
    return best


def apply_ranges(eid: Eid, ranges) -> Eid:
    """``eid`` masked to the lookup length of its most specific range (section 5.2).

    An EID in no range, a multicast EID, and a prefix no longer than the lookup
    length come back unchanged: a looked-up host EID is hashed as itself when no
    range holds it, and a registered prefix of exactly the lookup length hashes
    its own prefix, the same string as every lookup inside it.
    """
    r = matching_range(eid, ranges) if ranges else None
    if r is None or eid.length <= r.length:
        return eid
    return Eid(eid.iid, clear_host_bits(eid.address, r.length), r.length)


def _check(mode: str, mask: int | None, ranges=()) -> str:
    mode = canonical_mode(mode)
    if ranges and mode != "rfc9962":
        raise ValueError(f"lookup ranges apply to the rfc9962 mode only, not {mode}")
    if mask is None:
        return mode
    if mode == "lispers":
        raise ValueError("lispers mode takes no hash mask (lispers.net hashes the whole string)")
    if not isinstance(mask, int) or isinstance(mask, bool) or mask < 0:
        raise ValueError(f"hash mask must be a non-negative integer, not {mask!r}")
    if mode == "rfc9962" and mask == 0:
        # zero bytes would hash every EID to the same index: surely a mistake
        raise ValueError("an rfc9962 hash mask counts bytes of the string and must be at least 1")
    return mode


def hash_string(eid: Eid, mode: str, mask: int | None, ranges=()) -> str:
    """The exact string hashed for ``eid`` in ``mode``, after the ranges and the mask.

    ``mask`` is bytes of the string for ``rfc9962``, a prefix length in bits for
    ``prefix``, and must be None for ``lispers``; ``ranges`` (rfc9962 only) are
    :class:`LookupRange` s applied first.  Raises ``ValueError`` for an unknown
    mode or a mask or ranges the mode does not take.
    """
    mode = _check(mode, mask, ranges)
    if mode == "rfc9962":
        if eid.is_multicast:
            s = f"[{eid.iid}]{format_address(eid.group)}"
        else:
            s = format_eid(apply_ranges(eid, ranges) if ranges else eid)
        if mask is None:
            return s
        # the canonical text is ASCII, so bytes and characters coincide
        return s.encode("ascii")[:mask].decode("ascii")
    if mode == "lispers":
        return lispers_string(eid)
    # prefix
    if eid.is_multicast:
        glen = eid.group_len if mask is None else min(eid.group_len, mask)
        group = clear_host_bits(eid.group, glen)
        return f"[{eid.iid}]{format_address(group)}/{glen}"
    if mask is None:
        return format_eid(eid)
    length = min(eid.length, mask)
    return format_eid(Eid(eid.iid, clear_host_bits(eid.address, length), length))


def lispers_ipv6(addr: IPv6Address) -> str:
    """IPv6 text as lispers.net writes it (the C library's ``inet_ntop``).

    RFC 5952 zero compression (the first longest run of two or more zero groups),
    except that an address whose zero run starts the address and is six groups
    long (IPv4-compatible, ``::a.b.c.d``) or five groups long followed by ``ffff``
    (IPv4-mapped, ``::ffff:a.b.c.d``) ends in a dotted quad.
    """
    v = int(addr)
    groups = [(v >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    start, run, i = -1, 1, 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > run:
                start, run = i, j - i
            i = j
        else:
            i += 1
    if start == 0 and (run == 6 or (run == 5 and groups[5] == 0xFFFF)):
        return ("::ffff:" if run == 5 else "::") + str(IPv4Address(v & 0xFFFFFFFF))
    return format_address(addr)


def _lispers_address(addr: object) -> str:
    return lispers_ipv6(addr) if isinstance(addr, IPv6Address) else format_address(addr)


def lispers_string(eid: Eid, address: object = None) -> str:
    """The string lispers.net hashes: ``[<iid>]<eid>/<ml>`` for unicast, the group
    EID ``[<iid>]<group>/<gml>`` for multicast, addresses as lispers.net writes
    them.  ``address``: the unicast address as received or configured, host bits
    kept (lispers.net does not clear them); default the EID's own."""
    if eid.is_multicast:
        return f"[{eid.iid}]{_lispers_address(eid.group)}/{eid.group_len}"
    if address is None or type(address) is not type(eid.address):
        address = eid.address
    return f"[{eid.iid}]{_lispers_address(address)}/{eid.length}"


def index_of_string(s: str, modulus: int, mode: str = "rfc9962") -> int:
    """The index of an already masked hash string (see :func:`decent_index`)."""
    if not isinstance(modulus, int) or isinstance(modulus, bool) or modulus < 1:
        raise ValueError(f"modulus must be an integer of at least 1, not {modulus!r}")
    data = s.encode("ascii")
    if canonical_mode(mode) == "lispers":
        digest = hmac.new(LISPERS_KEY, data, hashlib.sha256).digest()
        return int.from_bytes(digest[:LISPERS_WIDTH], "big") % modulus
    return int.from_bytes(hashlib.sha256(data).digest(), "big") % modulus


def decent_index(eid: Eid, modulus: int, mode: str = "rfc9962", mask: int | None = None,
                 ranges=()) -> int:
    """Name index (0 .. modulus-1) of ``eid``.

    ``rfc9962``/``prefix``: SHA-256 of :func:`hash_string`, big-endian, mod
    modulus.  ``lispers``: first 6 bytes of HMAC-SHA-256 (key ``lisp-decent``),
    big-endian, mod modulus.  ``ValueError`` if modulus < 1 or the mode, mask or
    ranges are invalid.
    """
    return index_of_string(hash_string(eid, mode, mask, ranges), modulus, mode)


def dns_name(index: int, suffix: str) -> str:
    """``<index>.<suffix>``, a trailing dot of ``suffix`` dropped."""
    return f"{index}.{suffix.rstrip('.')}"


# ---------------------------------------------------------------------------
# config-check warnings

def mask_warnings(eid: Eid, mode: str, mask: int | None, ranges=()) -> list[str]:
    """Why lookups for addresses inside registered ``eid`` may miss its index.

    ``rfc9962``: for multicast, the mask must not cut into ``[<iid>]<group>``
    (the source is never hashed); a unicast prefix inside a lookup range must
    be at least the range's lookup length long, and must not cover a more
    specific range partly; for every EID, the string of the prefix and of every
    host inside it (ranges, then mask applied) must be equal.  ``prefix``: the
    registered prefix (the group for multicast) must not be shorter than the
    mask.  ``lispers``: nothing to check (no mask).  Returns an empty list when
    the registration is consistent.
    """
    mode = _check(mode, mask, ranges)
    name = format_eid(eid)
    out: list[str] = []
    if mode == "prefix":
        if mask is not None:
            plen = eid.group_len if eid.is_multicast else eid.length
            what = "group prefix" if eid.is_multicast else "prefix"
            if plen < mask:
                out.append(f"{name}: {what} /{plen} is shorter than the hash mask /{mask}; "
                           f"lookups inside it hash to other indexes")
        return out
    if mode != "rfc9962":
        return out
    if eid.is_multicast:
        group_text = f"[{eid.iid}]{format_address(eid.group)}"
        if mask is not None and mask < len(group_text):
            out.append(f"{name}: hash mask {mask} cuts into {group_text!r} "
                       f"({len(group_text)} bytes)")
            return out  # the host check below would only restate the same problem
    else:
        r = matching_range(eid, ranges)
        if r is not None and eid.length < r.length:
            out.append(f"{name}: prefix /{eid.length} is shorter than the lookup length /{r.length} "
                       f"of range {format_eid(r.prefix)}; lookups inside it hash to other indexes")
        for q in ranges:
            if _inside(eid, q.prefix) and q.prefix.length > eid.length:
                out.append(f"{name}: covers lookup range {format_eid(q.prefix)}, whose lookups hash "
                           f"on /{q.length} prefixes, not on this registration")
        if out:
            return out
    want = hash_string(eid, mode, mask, ranges)
    for host in _host_candidates(eid):
        got = hash_string(host, mode, mask, ranges)
        if got != want:
            out.append(f"{name}: hash mask {_mask_text(mask)} gives {want!r} for the prefix but "
                       f"{got!r} for {format_eid(host)}; lookups inside it may miss its index")
            break
    return out


def range_warnings(ranges) -> list[str]:
    """Lookup ranges that contradict each other: the same prefix listed twice."""
    seen: dict = {}
    out = []
    for r in ranges:
        if r.prefix in seen:
            out.append(f"lookup range {format_eid(r.prefix)} is listed twice "
                       f"(lengths {seen[r.prefix]} and {r.length})")
        seen.setdefault(r.prefix, r.length)
    return out


def _mask_text(mask: int | None) -> str:
    return "none" if mask is None else str(mask)


def _host_candidates(eid: Eid):
    """Host EIDs inside ``eid`` whose strings expose any variation of the masked text.

    Nothing when ``eid`` is itself a host entry.  For unicast, hosts inside the
    prefix; for multicast, host groups inside the group prefix with the source
    left as registered: the caller only gets here when the mask stops before the
    source, so the source cannot change the masked text.
    """
    if eid.is_multicast:
        gbits = address_bits(eid.group)
        if eid.group_len >= gbits:
            return
        for g in _addr_candidates(eid.group, eid.group_len):
            yield Eid(eid.iid, eid.address, eid.length, g, gbits)
        return
    bits = address_bits(eid.address)
    if not isinstance(eid.address, (IPv4Address, IPv6Address, Mac)) or eid.length >= bits:
        return
    for a in _addr_candidates(eid.address, eid.length):
        yield Eid(eid.iid, a, bits)


def _addr_candidates(addr: object, length: int):
    """Addresses inside ``addr/length`` covering every variation of their text.

    IPv4 (fixed octets, decimal) and MAC (fixed-width hex) text only varies
    where the first and last address differ, so those two suffice.  IPv6 text
    does not: zero compression moves with the zero groups, so ``2001:db8::`` and
    ``2001:db8::ffff:ffff:ffff:ffff`` agree on ``[0]2001:db8::`` while
    ``2001:db8:0:0:1::`` does not.  There every host group takes 0, 1 and ffff
    (every zero pattern; first characters that differ) and the partly masked
    group its ends, the values around each hex length change, and 1 when it can
    be zero (the same argument applied to its range).
    """
    if not isinstance(addr, IPv6Address):
        if not isinstance(addr, (IPv4Address, Mac)):
            yield addr
            return
        bits = address_bits(addr)
        base = int(addr) if isinstance(addr, IPv4Address) else int.from_bytes(addr.value, "big")
        for v in (base, base | ((1 << (bits - length)) - 1)):
            yield IPv4Address(v) if isinstance(addr, IPv4Address) else Mac(v.to_bytes(6, "big"))
        return
    base = int(addr)
    choices: list[tuple[int, ...]] = []
    for i in range(8):
        lo_bit = 16 * (7 - i)  # bit offset of this group's least significant bit
        fixed = max(0, min(16, length - 16 * i))  # leading bits of the group inside the mask
        g = (base >> lo_bit) & 0xFFFF
        if fixed == 16:
            choices.append((g,))
        elif fixed == 0:
            choices.append((0, 1, 0xFFFF))
        else:
            lo, hi = g, g | ((1 << (16 - fixed)) - 1)
            vals = {lo, hi}
            if lo == 0:
                vals.add(1)
            for edge in (0x10, 0x100, 0x1000):
                if max(lo, 1) <= edge - 1 and edge <= hi:
                    vals.update((edge - 1, edge))
            choices.append(tuple(sorted(vals)))
    yield from _combine(choices, 0, 0)


def _combine(choices: list[tuple[int, ...]], i: int, acc: int):
    if i == len(choices):
        yield IPv6Address(acc)
        return
    for v in choices[i]:
        yield from _combine(choices, i + 1, (acc << 16) | v)


__all__ = ["ALIASES", "MODES", "LookupRange", "apply_ranges", "canonical_mode", "decent_index",
           "dns_name", "hash_string", "index_of_string", "lispers_ipv6", "lispers_string",
           "mask_warnings", "matching_range", "range_warnings"]
