"""Sites: who may register which EID-prefixes, with which keys (RFC 9301 8.2, 9).

:class:`SiteTable` is the one site lookup of the node: the Map-Server machine, the
Map-Resolver (which shard, configured-but-unregistered) and the roles all ask it.
Every shard holds the whole table (all sites' configured prefixes), so a shard
judges a record against every site, not only its own: a site's key cannot
register a more-specific inside another site's prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

import pytricia

from common.wire.addr import Eid
from common.wire.eidtext import format_address


@dataclass(frozen=True, slots=True)
class SiteKey:
    key_id: int
    alg_id: int
    secret: bytes


@dataclass(frozen=True, slots=True)
class SitePolicy:
    name: str
    keys: tuple                      # SiteKey
    prefixes: tuple                  # (Eid, accept_more_specifics)
    nonce_policy: str = "strict"

    def key(self, key_id: int) -> SiteKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)


class SiteTable:
    """Configured prefixes of every site, most specific match first."""

    def __init__(self, sites) -> None:
        self.sites: dict[str, SitePolicy] = {}
        self._trees: dict[tuple[int, int], pytricia.PyTricia] = {}
        self._mcast: list[tuple[Eid, SitePolicy, bool]] = []
        for s in sites:
            self.sites[s.name] = s
            for p, more in s.prefixes:
                if p.is_multicast:
                    self._mcast.append((p, s, more))
                    continue
                v = 4 if isinstance(p.address, IPv4Address) else 6
                tree = self._trees.setdefault((p.iid, v), pytricia.PyTricia(32 if v == 4 else 128))
                k = f"{format_address(p.address)}/{p.length}"
                if not tree.has_key(k):          # a prefix configured twice: the first site keeps it
                    tree[k] = (p, s, more)

    def __iter__(self):
        return iter(self.sites.values())

    def covering(self, eid: Eid) -> tuple[SitePolicy, Eid, bool] | None:
        """(site, configured prefix, accept-more-specifics) of the most specific
        configured prefix containing ``eid``; None outside every site."""
        if not eid.is_ip:
            return None
        if eid.is_multicast:
            best = None
            for p, s, more in self._mcast:
                if p.contains(eid) and (best is None or p.specificity() > best[0].specificity()):
                    best = (p, s, more)
            return None if best is None else (best[1], best[0], best[2])
        tree = self._trees.get((eid.iid, eid.address.version))
        if tree is None:
            return None
        hit = tree.get(f"{format_address(eid.address)}/{eid.length}")
        return None if hit is None else (hit[1], hit[0], hit[2])

    def site_of(self, eid: Eid) -> SitePolicy | None:
        hit = self.covering(eid)
        return None if hit is None else hit[0]

    def allows(self, site: SitePolicy, eid: Eid) -> bool:
        """May ``site`` register ``eid``: its own prefix, or a more-specific where
        the most specific configured prefix is the site's and accepts them."""
        hit = self.covering(eid)
        return hit is not None and hit[0].name == site.name and (hit[1] == eid or hit[2])
