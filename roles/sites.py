"""Sites from the node config as the pure machines want them."""

from __future__ import annotations

from bus.topics import shard_of
from common.machines.sites import SiteKey, SitePolicy, SiteTable


def policies(cfg, shard: int | None = None) -> list[SitePolicy]:
    """The sites (all, or those of map_server shard ``shard``) as SitePolicy objects."""
    n = max(1, cfg.count("map_server"))
    out = []
    for s in cfg.sites:
        if shard is not None and shard_of(s.name, n) != shard:
            continue
        keys = tuple(SiteKey(k.key_id, k.alg_id, k.secret_bytes) for k in s.keys)
        out.append(SitePolicy(s.name, keys, tuple((p.eid, p.accept_more_specifics) for p in s.prefixes),
                              s.nonce_policy))
    return out


def site_lookup(cfg):
    """eid -> name of the configured site whose prefix covers it (or None)."""
    table = SiteTable(policies(cfg))

    def site_of(eid):
        s = table.site_of(eid)
        return None if s is None else s.name
    return site_of


def shard_for(cfg):
    n = max(1, cfg.count("map_server"))
    return lambda site: shard_of(site, n)
