"""Shunning a source that floods a worker with datagrams it has to drop.

Sans-IO.  Every datagram a worker drops (malformed, a Map-Register that fails the
edge gate, a rate-limited request) spends a token from its source address's
"bad" bucket; a source whose bucket is empty is shunned: its datagrams are dropped
before any parsing, at the cost of one dictionary lookup, until the bucket has
refilled.  One worker then survives a single-source flood at the rate the sender
reaches, and legitimate traffic that the kernel's flow hash puts on the same worker
is still read and answered.  A source that sends nothing bad never has a bucket.

A spoofed flood can use a legitimate sender's address and get it shunned: that is
true of every per-source budget (RFC 9301 9 notes the same for Map-Requests); it
lasts only as long as the flood plus the refill time.
"""

from __future__ import annotations


class Shun:
    def __init__(self, rate: float = 200.0, burst: float = 1000.0, max_sources: int = 65_536) -> None:
        self.rate, self.burst, self.max_sources = rate, burst, max_sources
        self._b: dict[str, list[float]] = {}

    def blocked(self, src: str, now: float) -> bool:
        """True while ``src`` has no bad tokens left (checked before any parsing)."""
        b = self._b.get(src)
        if b is None or b[0] >= 1.0:
            return False
        b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
        b[1] = now
        return b[0] < 1.0

    def bad(self, src: str, now: float) -> None:
        """``src`` sent a datagram that was dropped."""
        b = self._b.get(src)
        if b is None:
            if len(self._b) >= self.max_sources:
                del self._b[next(iter(self._b))]
            self._b[src] = [self.burst - 1.0, now]
            return
        b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate) - 1.0
        b[1] = now
