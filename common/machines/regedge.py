"""The Map-Register gate at the edge: what a map_resolver worker checks before a
Map-Register costs a Map-Server shard anything (issue 10; RFC 9301 5.6, 8.2).

Sans-IO.  :meth:`RegisterGate.check` reads the header at fixed offsets, spends the
source's budget (a token bucket per source address, before any HMAC), decodes only
the first record's EID to find the site (and so the shard), and verifies the HMAC
with that site's key.  A forged, unknown or unwanted Map-Register is dropped here,
counted by reason; a good one goes to its shard with the MAC coverage that verified
(``"all"`` or ``"records"``), which the shard uses to decide whether the xTR-ID
identifies the registrant.  The shard trusts that verdict: the bus is the node's own
(a private directory; DESIGN 4).

Order matters for cost: everything before the HMAC is a few dictionary and struct
operations, so a flood of random bytes, of Map-Registers for prefixes in no site, or
from one source beyond its budget costs no HMAC at all.
"""

from __future__ import annotations

import struct

from common.wire.addr import decode_address, eid_from_wire
from common.wire.auth import ACCEPT_LEN, verify_coverage
from common.wire.errors import DecodeError
from common.machines.sites import SiteTable

_HDR = struct.Struct("!IQBBH")       # word 0, nonce, key id, alg id, auth length
_REC = 10                            # record bytes before the EID-prefix AFI
_ALEN = {1: 6, 2: 18}                # AFI -> its bytes with the address (IPv4, IPv6)
MEMO_MAX = 65_536                    # remembered first-record lookups


class SourceBudget:
    """A token bucket per source address; bounded memory (the oldest source is
    forgotten first, so a flood of spoofed sources cannot grow the table)."""

    def __init__(self, rate: float, burst: float, max_sources: int = 65_536) -> None:
        self.rate, self.burst, self.max_sources = rate, burst, max_sources
        self._b: dict[str, list[float]] = {}

    def allow(self, src: str, now: float) -> bool:
        b = self._b.get(src)
        if b is None:
            if len(self._b) >= self.max_sources:
                del self._b[next(iter(self._b))]
            b = self._b[src] = [self.burst, now]
        else:
            b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
            b[1] = now
        if b[0] < 1.0:
            return False
        b[0] -= 1.0
        return True


class RegisterGate:
    """``check(data, src, now)`` -> ("punt", shard, coverage) or ("drop", reason, detail)."""

    def __init__(self, sites: SiteTable, shard_for=None, *, rate: float = 1000.0,
                 burst: float = 2000.0) -> None:
        self.sites = sites
        self.shard_for = shard_for or (lambda _name: 0)
        self.budget = SourceBudget(rate, burst)
        # (mask-len, AFI and address bytes, key ID) of a first record whose EID is a
        # plain IPv4 or IPv6 address -> (site or None, its key of that ID or None):
        # what decoding the EID and looking it up gave (refreshes repeat it).  Bounded.
        self._memo: dict[bytes, tuple] = {}
        self._shards: dict[str, int] = {}      # site name -> its shard

    def check(self, data: bytes, src: tuple, now: float) -> tuple:
        n = len(data)
        if n < 16 + _REC + 2:
            return ("drop", "malformed.header", f"{n} bytes")
        w0, _nonce, key_id, alg, auth_len = _HDR.unpack_from(data, 0)
        if w0 >> 28 != 3:
            return ("drop", "not-a-map-register", str(w0 >> 28))
        if w0 & 0xFF == 0:
            return ("drop", "no-records", "")
        if auth_len not in ACCEPT_LEN.get(alg, ()) or 16 + auth_len + _REC + 2 > n:
            return ("drop", "auth-length", f"algorithm {alg}, {auth_len} bytes")
        if not self.budget.allow(src[0], now):
            return ("drop", "source-over-budget", src[0])
        off = 16 + auth_len
        a = off + _REC
        alen = _ALEN.get(data[a] << 8 | data[a + 1])
        mk = (data[off + 5:off + 6] + data[a:a + alen] + data[12:13]
              if alen is not None and a + alen <= n else None)
        hit = self._memo.get(mk) if mk is not None else None
        if hit is None:
            hit = self._lookup(data, off, n, key_id)
            if hit[0] == "drop":
                return hit
            if mk is not None:
                if len(self._memo) >= MEMO_MAX:
                    self._memo.clear()
                self._memo[mk] = hit
        site, key = hit
        if site is None:
            return ("drop", "no-site", key)
        if key is None or key.alg_id != alg:
            return ("drop", "auth-key-mismatch", site.name)
        coverage = verify_coverage(data, key.secret, allow_none=(key.alg_id == 0))
        if coverage is None:
            return ("drop", "auth-failure", site.name)
        shard = self._shards.get(site.name)
        if shard is None:         # (a hash of the name: once per configured site)
            shard = self._shards[site.name] = self.shard_for(site.name)
        return ("punt", shard, coverage)

    def _lookup(self, data: bytes, off: int, n: int, key_id: int) -> tuple:
        """(site, key of ``key_id``) of the first record's EID, (None, EID text)
        outside every site, or a drop when the EID cannot be read."""
        try:
            addr, _end = decode_address(data, off + _REC, n, "record[0].eid")
            eid = eid_from_wire(addr, data[off + 5])
        except (DecodeError, ValueError, TypeError) as exc:
            return ("drop", "malformed.record.eid", str(exc))
        site = self.sites.site_of(eid)
        if site is None:
            return (None, str(eid))
        return (site, site.key(key_id))
