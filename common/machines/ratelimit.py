"""Rate limits shared by every worker of a node: token buckets in a fixed table.

A :class:`TokenTable` keeps token buckets in ``slots`` fixed-size slots of a
writable buffer that the caller provides (the ``map_resolver`` role maps one file
in the node's state directory, so every worker, on every port, debits the same
buckets; see roles/ratetable.py).  No slot belongs to one address: an address
(a request's source, or a reply's destination ITR-RLOC) hashes with a per-node
secret key to two slots, and a request is allowed only if both hold a token, then
both are debited (the count-min idea applied to token buckets).  Consequences:

* memory is fixed (16 bytes a slot) and nothing is ever evicted or reset: a
  throttled address stays throttled however many other addresses show up;
* an address can never get more than its own rate: its own requests debit its
  slots; other addresses sharing a slot can only make it stricter.  With two slots
  of 65,536, a false throttle needs both slots shared with busy addresses;
* the key is secret (random per node, in the file header), so an attacker cannot
  choose addresses that collide with a victim's slots.

Slots are updated without a lock: two workers updating one slot at the same
instant can lose one debit (the later write wins).  That lets through at most one
extra request per such collision, which is rare at microsecond update windows; the
integration test measures it (tests/integration/test_rate_shared.py).

A slot is ``(debt, last)`` as two doubles, the debt being the tokens missing from a
full bucket at ``last``; a zero-filled buffer starts with every bucket full.  ``now`` is a monotonic
clock shared by the processes (CLOCK_MONOTONIC); a ``last`` in the future (the
file outlived a reboot: more than a minute ahead) counts as a full bucket; one
slightly ahead (another worker's clock read came a little later) adds no tokens.
"""

from __future__ import annotations

import hashlib
import struct

SLOT = struct.Struct("=dd")


class TokenTable:
    def __init__(self, buf, offset: int, slots: int, rate: float, burst: float, key: bytes) -> None:
        if slots < 2 or slots & (slots - 1):
            raise ValueError(f"slots must be a power of two >= 2, not {slots}")
        if len(buf) < offset + slots * SLOT.size:
            raise ValueError("buffer too small for the table")
        self.buf, self.offset, self.slots = buf, offset, slots
        self.rate, self.burst, self.key = rate, burst, key
        self._mask = slots - 1
        self._memo: dict[str, tuple[int, int]] = {}   # name -> its slots (bounded; a pure cache)
        # the same slots as doubles (debt at 2i, last at 2i + 1): indexing is cheaper than struct
        self._d = memoryview(buf)[offset:offset + slots * SLOT.size].cast("B").cast("d")

    @staticmethod
    def size(slots: int) -> int:
        return slots * SLOT.size

    def _slots(self, name: str) -> tuple[int, int]:
        got = self._memo.get(name)
        if got is not None:
            return got
        if len(self._memo) >= 65536:
            self._memo.clear()
        got = self._memo[name] = self._hash_slots(name)
        return got

    def _hash_slots(self, name: str) -> tuple[int, int]:
        h = int.from_bytes(hashlib.blake2b(name.encode(), key=self.key, digest_size=8).digest(), "little")
        i, j = h & self._mask, (h >> 32) & self._mask
        if i == j:
            j ^= 1
        return self.offset + i * SLOT.size, self.offset + j * SLOT.size

    def _tokens(self, pos: int, now: float) -> float:
        debt, last = SLOT.unpack_from(self.buf, pos)
        if last > now + 60.0:
            return self.burst
        # another worker may have written a ``last`` a little after our ``now``
        return min(self.burst, self.burst - debt + max(0.0, now - last) * self.rate)

    def allow(self, name: str, now: float) -> bool:
        """Take one token for ``name`` if it has one."""
        a, b = self._memo.get(name) or self._slots(name)
        a, b = (a - self.offset) >> 3, (b - self.offset) >> 3    # the slots' debt doubles
        d, burst = self._d, self.burst
        # _tokens for both slots, inline (this runs once or twice per Map-Request)
        last = d[a + 1]
        if last > now + 60.0:
            ta = burst
        else:
            ta = burst - d[a] + (now - last) * self.rate if now > last else burst - d[a]
            if ta > burst:
                ta = burst
        if ta < 1.0:
            return False
        last = d[b + 1]
        if last > now + 60.0:
            tb = burst
        else:
            tb = burst - d[b] + (now - last) * self.rate if now > last else burst - d[b]
            if tb > burst:
                tb = burst
        if tb < 1.0:
            return False
        d[a], d[a + 1] = burst - (ta - 1.0), now
        d[b], d[b + 1] = burst - (tb - 1.0), now
        return True

    def tokens(self, name: str, now: float) -> float:
        """What ``name`` could take now (for tests and show commands)."""
        a, b = self._slots(name)
        return min(self._tokens(a, now), self._tokens(b, now))
