"""A compact table's item (common/machines/compact.py): one registration without its
EID, msgpack-encoded, read back by :func:`_fields`; and the small helpers the parts of
the table share (bits per family, a tree's key of an EID)."""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Address, ip_address

import msgpack

from common.machines.regtable import Entry, locator_set
from common.wire.addr import Eid, RleEntry

_BITS = {4: 32, 6: 128}


def usual_key(iid: int, pfx: str, xtr_hex: str, merge) -> str:
    """The key an item need not carry: the Map-Server's
    (:func:`~common.machines.regtable.entry_key`: the xTR-ID only when merging)."""
    return f"[{iid}]{pfx}|{xtr_hex}" if merge else f"[{iid}]{pfx}|"


def _pack(site, rlocs, ttl, proxy, merge, xtr_hex, registrant, rle, key) -> bytes:
    return msgpack.packb([site, rlocs, ttl, proxy, merge, xtr_hex, registrant, rle or None, key],
                         use_bin_type=True)


@lru_cache(maxsize=1 << 16)
def _fields(item: bytes) -> tuple:
    """The decoded item (raises ValueError/TypeError/KeyError if it is not one)."""
    site, rlocs, ttl, proxy, merge, xtr, reg, rle, key = msgpack.unpackb(item)
    # the locators through the shared locator-set memory: a new registration's item is
    # distinct (its xTR-ID, its registrant), its RLOC set seldom is (issue 10: a worker
    # validates every published value here; the address text parsed once per set)
    return (str(site), locator_set(rlocs or ()), int(ttl), bool(proxy),
            bool(merge), bytes.fromhex(xtr), str(reg),
            tuple(RleEntry(ip_address(a), int(level)) for a, level in (rle or ())), xtr, key)


def _items(v) -> tuple:
    return v if isinstance(v, tuple) else (v,)


def _tk(eid: Eid) -> tuple[int, int]:
    return eid.iid, 4 if isinstance(eid.address, IPv4Address) else 6


def _pair(_iid: int, entries: list[Entry]) -> tuple:
    return entries[0].eid, entries
