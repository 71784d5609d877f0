"""Canonical text of EIDs: the strings LISP-Decent hashes and operators type.

Pure functions, no I/O.  The text is fixed by DESIGN.md section 6 because every
node of a pull deployment must produce the same bytes for the same EID:

* unicast ``[<iid>]<address>/<len>``, IID in decimal and always present;
* multicast ``[<iid>]<group>/<gml>-<source>/<sml>``; (*,G) has source ``0.0.0.0/0``
  or ``::/0``;
* IPv4 dotted quad; IPv6 RFC 5952 section 4, produced here rather than by ``str()``
  (whose treatment of IPv4-mapped addresses changed between Python versions);
  MAC ``xxxx-xxxx-xxxx`` in lowercase.

:func:`parse_eidspec` reads that text back (plus a few friendlier spellings) and
raises :class:`EidSpecError` with a one-line message on anything else.
"""

from __future__ import annotations

import re
from functools import lru_cache
from ipaddress import AddressValueError, IPv4Address, IPv6Address

from common.wire.addr import (AfiList, DistinguishedName, Eid, InstanceIdAddr, Mac,
                         MulticastInfo, NoAddress, OpaqueLcaf, Rle, clear_host_bits)

MAX_IID = 0xFFFFFFFF


class EidSpecError(ValueError):
    """Text that is not a valid EID spec; the message is one line for the operator."""


# ---------------------------------------------------------------------------
# formatting

def format_ipv6(addr: IPv6Address) -> str:
    """RFC 5952 section 4 text of ``addr``.

    Lowercase hex without leading zeros; the longest run of two or more zero
    groups becomes ``::`` (the first such run on a tie); a lone zero group stays
    ``0``; never a dotted-quad tail, so ``::ffff:1.2.3.4`` is ``::ffff:102:304``.
    """
    return _v6_text(int(addr))


@lru_cache(maxsize=1 << 16)
def _v6_text(value: int) -> str:
    """:func:`format_ipv6` of the address with integer ``value``, remembered."""
    groups = [(value >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    best_start, best_len = -1, 1  # a run must beat length 1 to be compressed
    i = 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > best_len:  # strictly longer: ties keep the first run
                best_start, best_len = i, j - i
            i = j
        else:
            i += 1
    text = [format(g, "x") for g in groups]
    if best_start < 0:
        return ":".join(text)
    head = ":".join(text[:best_start])
    tail = ":".join(text[best_start + best_len:])
    return f"{head}::{tail}"


def format_mac(mac: Mac) -> str:
    """``xxxx-xxxx-xxxx``, lowercase, leading zeros kept."""
    h = mac.value.hex()
    return f"{h[0:4]}-{h[4:8]}-{h[8:12]}"


@lru_cache(maxsize=1 << 16)
def _v4_text(n: int) -> str:
    """Dotted quad of the IPv4 address with integer ``n``, remembered: one
    registration formats its EID and RLOCs several times (keys, stored values, the
    table), and RLOCs repeat across registrations.  Keyed by the integer, not the
    address object: ``ipaddress``'s own hash and formatting are slow."""
    return f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def format_address(addr: object) -> str:
    """Readable text of any address of :mod:`common.wire.addr`.

    IPv4, IPv6, MAC and the EID forms are canonical (see the module docstring);
    a distinguished name is ``'name'``, AFI 0 is ``no-address``, and the LCAF
    types only ever shown to people (AFI list, RLE, opaque) get a stable,
    readable form.  Raises ``TypeError`` for an object that is not an address.
    """
    t = type(addr)
    if t is IPv4Address:
        return _v4_text(int(addr))
    if t is IPv6Address:
        return _v6_text(int(addr))
    if isinstance(addr, IPv4Address):
        return _v4_text(int(addr))
    if isinstance(addr, IPv6Address):
        return _v6_text(int(addr))
    if isinstance(addr, Mac):
        return format_mac(addr)
    if isinstance(addr, DistinguishedName):
        return f"'{addr.name}'"
    if isinstance(addr, NoAddress):
        return "no-address"
    if isinstance(addr, InstanceIdAddr):
        return f"[{addr.iid}]{format_address(addr.address)}"
    if isinstance(addr, MulticastInfo):
        return (f"[{addr.iid}]{format_address(addr.group)}/{addr.group_len}"
                f"-{format_address(addr.source)}/{addr.source_len}")
    if isinstance(addr, AfiList):
        return "afi-list(" + ", ".join(format_address(a) for a in addr.items) + ")"
    if isinstance(addr, Rle):
        parts = []
        for e in addr.entries:
            p = f"{format_address(e.address)}:{e.level}"
            parts.append(p if e.name is None else f"{p} '{e.name}'")
        return "rle(" + ", ".join(parts) + ")"
    if isinstance(addr, OpaqueLcaf):
        return f"lcaf-type-{addr.lcaf_type}({addr.body.hex()})"
    raise TypeError(f"not an address: {addr!r}")


def format_eid(eid: Eid) -> str:
    """The canonical (hash-input) string of an EID.

    Unicast ``[<iid>]<address>/<len>``; multicast
    ``[<iid>]<group>/<gml>-<source>/<sml>``.
    """
    if eid.group is not None:
        return (f"[{eid.iid}]{format_address(eid.group)}/{eid.group_len}"
                f"-{format_address(eid.address)}/{eid.length}")
    return f"[{eid.iid}]{format_address(eid.address)}/{eid.length}"


def format_group(eid: Eid) -> str:
    """``[<iid>]<group>/<gml>``: the group EID of a multicast EID alone."""
    if eid.group is None:
        raise ValueError("not a multicast EID")
    return f"[{eid.iid}]{format_address(eid.group)}/{eid.group_len}"


# ---------------------------------------------------------------------------
# parsing

_IID = re.compile(r"\[([^\]]*)\](.*)\Z", re.S)
_MAC_DASH = re.compile(r"[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}\Z")
_MAC_COLON = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}\Z")
_MASKLEN = re.compile(r"[0-9]{1,3}\Z")

_FAMILY = {IPv4Address: ("IPv4", 32), IPv6Address: ("IPv6", 128), Mac: ("MAC", 48)}
_MCAST_V4 = IPv4Address("224.0.0.0")
_MCAST_V6 = IPv6Address("ff00::")


def parse_eidspec(text: str) -> Eid:
    """Read an EID spec into a normalised :class:`~common.wire.addr.Eid`.

    Accepted: ``[<iid>]<prefix>`` or ``<prefix>`` (IID 0), where ``<prefix>`` is
    an IPv4, IPv6 or MAC address (``xxxx-xxxx-xxxx`` or ``xx:xx:xx:xx:xx:xx``)
    with an optional ``/<len>`` (missing: the host route, 32/128/48); and the
    multicast form ``[<iid>]<group>/<gml>-<source>/<sml>`` with a group inside
    224.0.0.0/4 or ff00::/8 and a source of the same family.  Host bits are
    cleared.  Anything else raises :class:`EidSpecError`.
    """
    if not isinstance(text, str):
        raise EidSpecError(f"not an EID spec: {text!r}")
    spec = text.strip()
    if not spec:
        raise EidSpecError("empty EID spec")
    if any(c.isspace() for c in spec):
        raise EidSpecError(f"whitespace inside EID spec {spec!r}")
    iid = 0
    m = _IID.match(spec)
    if m:
        raw, spec = m.group(1), m.group(2)
        # decimal only, bounded before int() so a huge string cannot be slow
        if not raw.isascii() or not raw.isdigit() or len(raw) > 10 or int(raw) > MAX_IID:
            raise EidSpecError(f"bad instance ID [{raw}] (decimal, 0..{MAX_IID})")
        iid = int(raw)
    elif spec.startswith("["):
        raise EidSpecError(f"bad instance ID in {text.strip()!r}: no closing ']'")
    if not spec:
        raise EidSpecError(f"no address after the instance ID in {text.strip()!r}")

    # A dash separates group and source, but a MAC also contains dashes: a MAC
    # (optionally with /len) is recognised first, and only then is '-' a separator.
    if "-" in spec and not _MAC_DASH.match(spec.split("/", 1)[0]):
        gtext, sep, stext = spec.partition("-")
        if "-" in stext:
            raise EidSpecError(f"more than one '-' in multicast EID {spec!r}")
        group, glen = _parse_prefix(gtext, "group")
        source, slen = _parse_prefix(stext, "source")
        if isinstance(group, Mac) or type(group) is not type(source):
            raise EidSpecError(f"group {gtext!r} and source {stext!r} are not both IPv4 or both IPv6")
        base, span = (_MCAST_V4, 4) if isinstance(group, IPv4Address) else (_MCAST_V6, 8)
        if glen < span or clear_host_bits(group, span) != base:
            raise EidSpecError(f"group {gtext} is not inside the multicast range {base}/{span}")
        return Eid(iid, source, slen, group, glen)
    addr, length = _parse_prefix(spec, "address")
    return Eid(iid, addr, length)


def _parse_prefix(text: str, what: str) -> tuple[object, int]:
    """(address with host bits cleared, mask length) of ``addr[/len]``."""
    atext, slash, ltext = text.partition("/")
    addr = _parse_address(atext, what)
    family, bits = _FAMILY[type(addr)]
    if not slash:
        return addr, bits
    if not _MASKLEN.match(ltext):
        raise EidSpecError(f"bad mask length {ltext!r} in {text!r}")
    length = int(ltext)
    if length > bits:
        raise EidSpecError(f"mask length {length} beyond {family}'s {bits} bits")
    return clear_host_bits(addr, length), length


def _parse_address(text: str, what: str) -> object:
    if not text:
        raise EidSpecError(f"missing {what}")
    if _MAC_DASH.match(text):
        return Mac(bytes.fromhex(text.replace("-", "")))
    if _MAC_COLON.match(text):
        return Mac(bytes.fromhex(text.replace(":", "")))
    if "%" in text:  # ipaddress would accept a scope ID, which is no part of an EID
        raise EidSpecError(f"not an address: {text!r} (scope IDs are not allowed)")
    try:
        if ":" in text:
            return IPv6Address(text)
        return IPv4Address(text)
    except (AddressValueError, ValueError):
        raise EidSpecError(f"not an address: {text!r}") from None
