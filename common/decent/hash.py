"""LISP-Decent pull mode: which map-server set (index) an EID belongs to.

Pure functions implementing the three frozen modes of DESIGN.md section 6:

``draft`` (default)
    SHA-256 of the canonical string (:func:`common.wire.eidtext.format_eid`)
    truncated to ``mask`` bytes (no mask: the whole string, the source of an
    (S,G) included); the digest read as a big-endian integer, mod modulus.
``lispers``
    lispers.net's ``lisp_get_decent_index``: HMAC-SHA-256 keyed ``lisp-decent``
    over the unmasked string, first 6 bytes of the digest big-endian, mod
    modulus; multicast hashes the group alone, ``[<iid>]<group>/<gml>``.  A mask
    is an error.
``prefix``
    The EID is masked to ``mask`` bits (a shorter prefix keeps its own length),
    formatted, and hashed like ``draft``; multicast hashes the masked group alone.

Every node of a deployment must agree on mode, mask and modulus; these
functions are what they agree on, so their output must never change.
"""

from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv4Address, IPv6Address

from common.wire.addr import Eid, Mac, address_bits, clear_host_bits
from common.wire.eidtext import format_address, format_eid, format_group

MODES = ("draft", "lispers", "prefix")

LISPERS_KEY = b"lisp-decent"
LISPERS_WIDTH = 6  # bytes of the HMAC digest lispers.net uses by default


def _check(mode: str, mask: int | None) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown hash mode {mode!r} (one of {', '.join(MODES)})")
    if mask is None:
        return
    if mode == "lispers":
        raise ValueError("lispers mode takes no hash mask (lispers.net hashes the whole string)")
    if not isinstance(mask, int) or isinstance(mask, bool) or mask < 0:
        raise ValueError(f"hash mask must be a non-negative integer, not {mask!r}")
    if mode == "draft" and mask == 0:
        # zero bytes would hash every EID to the same index: surely a mistake
        raise ValueError("a draft hash mask counts bytes of the string and must be at least 1")


def hash_string(eid: Eid, mode: str, mask: int | None) -> str:
    """The exact string hashed for ``eid`` in ``mode``, after the mask.

    ``mask`` is bytes of the string for ``draft``, a prefix length in bits for
    ``prefix``, and must be None for ``lispers``.  Raises ``ValueError`` for an
    unknown mode or a mask the mode does not take.
    """
    _check(mode, mask)
    if mode == "draft":
        s = format_eid(eid)
        if mask is None:
            return s
        # the canonical text is ASCII, so bytes and characters coincide
        return s.encode("ascii")[:mask].decode("ascii")
    if mode == "lispers":
        return format_group(eid) if eid.is_multicast else format_eid(eid)
    # prefix
    if eid.is_multicast:
        glen = eid.group_len if mask is None else min(eid.group_len, mask)
        group = clear_host_bits(eid.group, glen)
        return f"[{eid.iid}]{format_address(group)}/{glen}"
    if mask is None:
        return format_eid(eid)
    length = min(eid.length, mask)
    return format_eid(Eid(eid.iid, clear_host_bits(eid.address, length), length))


def index_of_string(s: str, modulus: int, mode: str = "draft") -> int:
    """The index of an already masked hash string (see :func:`decent_index`)."""
    if not isinstance(modulus, int) or isinstance(modulus, bool) or modulus < 1:
        raise ValueError(f"modulus must be an integer of at least 1, not {modulus!r}")
    data = s.encode("ascii")
    if mode == "lispers":
        digest = hmac.new(LISPERS_KEY, data, hashlib.sha256).digest()
        return int.from_bytes(digest[:LISPERS_WIDTH], "big") % modulus
    if mode not in MODES:
        raise ValueError(f"unknown hash mode {mode!r} (one of {', '.join(MODES)})")
    return int.from_bytes(hashlib.sha256(data).digest(), "big") % modulus


def decent_index(eid: Eid, modulus: int, mode: str = "draft", mask: int | None = None) -> int:
    """Name index (0 .. modulus-1) of ``eid``.

    ``draft``/``prefix``: SHA-256 of :func:`hash_string`, big-endian, mod
    modulus.  ``lispers``: first 6 bytes of HMAC-SHA-256 (key ``lisp-decent``),
    big-endian, mod modulus.  ``ValueError`` if modulus < 1 or the mode/mask is
    invalid.
    """
    return index_of_string(hash_string(eid, mode, mask), modulus, mode)


def dns_name(index: int, suffix: str) -> str:
    """``<index>.<suffix>``, a trailing dot of ``suffix`` dropped."""
    return f"{index}.{suffix.rstrip('.')}"


# ---------------------------------------------------------------------------
# config-check warnings

def mask_warnings(eid: Eid, mode: str, mask: int | None) -> list[str]:
    """Why lookups for addresses inside registered ``eid`` may miss its index.

    ``draft``: for multicast, the mask must cover ``[<iid>]<group>`` and stop
    before the source (no mask hashes the source, which also warns); for every
    EID, the masked string of the prefix and of every host inside it must be
    equal.  ``prefix``: the registered prefix (the group for multicast) must not
    be shorter than the mask.  ``lispers``: nothing to check (no mask).  Returns
    an empty list when the registration is consistent.
    """
    _check(mode, mask)
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
    if mode != "draft":
        return out
    if eid.is_multicast:
        group_text = f"[{eid.iid}]{format_address(eid.group)}"
        full_group = format_group(eid)
        if mask is None:
            out.append(f"{name}: no hash mask, so the source is hashed too; "
                       f"(S,G) and (*,G) entries of one group land on different indexes")
        elif mask < len(group_text):
            out.append(f"{name}: hash mask {mask} cuts into {group_text!r} "
                       f"({len(group_text)} bytes)")
        elif mask > len(full_group) + 1:  # the '-' after the group is shared by (S,G) and (*,G)
            out.append(f"{name}: hash mask {mask} reaches the source (the group part "
                       f"{full_group + '-'!r} is {len(full_group) + 1} bytes)")
        if out:
            return out  # the host check below would only restate the same problem
    want = hash_string(eid, mode, mask)
    for host in _host_candidates(eid):
        got = hash_string(host, mode, mask)
        if got != want:
            out.append(f"{name}: hash mask {_mask_text(mask)} gives {want!r} for the prefix but "
                       f"{got!r} for {format_eid(host)}; lookups inside it may miss its index")
            break
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


__all__ = ["MODES", "hash_string", "decent_index", "index_of_string", "dns_name",
           "mask_warnings"]
