"""LISP-Decent pull mode as the roles see it: which index an EID hashes to, who
serves it, whether this node does (DESIGN.md section 6).

:class:`PullView` wraps the index -> address-set table (fed from the ``seeds``
Clone stream) with the deployment's hash parameters and the node's RLOCs.
"""

from __future__ import annotations

from ipaddress import ip_address

from common.wire.addr import Eid, address_bits, clear_host_bits
from common.decent.hash import _inside, canonical_mode, decent_index, matching_range


class PullView:
    """``index(eid)`` is the same function for a registered prefix and a looked-up
    EID: the lookup ranges (RFC 9962 section 5.2) mask both to the range's length."""

    def __init__(self, modulus: int, hash_mode: str, hash_mask: int | None, rlocs,
                 lookup_ranges=()) -> None:
        self.modulus, self.hash_mode, self.hash_mask = modulus, canonical_mode(hash_mode), hash_mask
        self.ranges = tuple(lookup_ranges)
        self.rlocs = {ip_address(str(r)) for r in rlocs}
        self.sets: dict[int, tuple[str, ...]] = {}
        self._rr: dict[int, int] = {}

    def update(self, sets: dict[int, tuple[str, ...]]) -> None:
        self.sets = dict(sets)

    def index(self, eid: Eid) -> int:
        return decent_index(eid, self.modulus, self.hash_mode, self.hash_mask, self.ranges)

    def servers(self, eid: Eid) -> tuple[str, ...]:
        return self.sets.get(self.index(eid), ())

    def serves_index(self, index: int) -> bool:
        return any(ip_address(a) in self.rlocs for a in self.sets.get(index, ()))

    def serves(self, eid: Eid) -> bool:
        """True when one of this node's RLOCs is in the set of ``eid``'s index."""
        return self.serves_index(self.index(eid))

    def served_indexes(self) -> set[int]:
        return {i for i in self.sets if self.serves_index(i)}

    def forward_target(self, eid: Eid, version: int | None = None) -> str | None:
        """One address of the serving set (round robin), never our own; ``version``
        restricts it to a family our socket can reach."""
        i = self.index(eid)
        cands = [a for a in self.sets.get(i, ()) if ip_address(a) not in self.rlocs
                 and (version is None or ip_address(a).version == version)]
        if not cands:
            return None
        n = self._rr.get(i, 0)
        self._rr[i] = n + 1
        return cands[n % len(cands)]

    def negative_floor(self, eid: Eid) -> int:
        """The shortest negative prefix that cannot cover EIDs hashing elsewhere:
        the mask in ``prefix`` mode; inside a lookup range its lookup length, or
        longer where a more specific range lies inside that block; the host route
        otherwise (``rfc9962`` outside every range, ``lispers``)."""
        if self.hash_mode == "prefix" and self.hash_mask is not None:
            return min(self.hash_mask, eid.length)
        r = matching_range(eid, self.ranges) if self.ranges else None
        if r is None:
            return address_bits(eid.address)
        floor = r.length
        for _ in range(len(self.ranges)):  # each pass can only lengthen the floor
            block = Eid(eid.iid, clear_host_bits(eid.address, floor), floor)
            longer = [q.prefix.length for q in self.ranges
                      if q.prefix.length > floor and _inside(block, q.prefix)]
            if not longer:
                break
            floor = max(longer)
        return min(floor, eid.length)
