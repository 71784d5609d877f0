"""The node configuration: one TOML document, validated into frozen dataclasses.

Pure: :func:`parse_config` takes the already-parsed TOML (a dict), the name to
show in messages and the directory relative paths resolve against; reading the
file is :mod:`roles.nodeconf`'s job.  Every problem raises :class:`ConfigError`
naming the key path (``site[0].key[0].secret``) and the reason; unknown keys are
errors too, because a misspelt timer silently left at its default is the kind of
mistake that costs an afternoon.

Sections (all optional except ``[node]``)::

    [node]            name, rlocs, control_port, data_port, state_dir, xtr_id, site_id, log_level,
                      log_format
    [roles]           map_resolver, map_server, etr, itr, discovery, dataplane
    [timers]          every protocol timer, in seconds (see TIMER_DEFAULTS)
    [map_resolver]    rate_limit, rate_burst, reply_rate_limit, reply_rate_burst, rate_slots,
                      path_mtu, stale_heartbeats, fast_path, answer_cache, lisp_sec_keys
    [map_server]      proxy_reply_ttl, sync
    [[site]]          name, nonce_policy, lisp_sec, [[site.key]], [[site.prefix]]
    [[database_mapping]]  eid, rlocs, ttl, proxy_reply, want_map_notify
    [etr]             map_servers, decent_key
    [itr]             map_resolvers, lisp_sec, lisp_sec_key
    [decent]          mode = "none" | "pull" | "push", and that mode's keys
    [dataplane]       the LISP data path's TUN interfaces (common.dataplane_config)
    [metrics]         listen: the Prometheus endpoint ("" or absent: no metrics role)

``bus`` and ``watchdog`` always run; :meth:`NodeConfig.instances` lists every
process instance in start order.

The model (constants and dataclasses) is in :mod:`common.config_model`, the section
readers in :mod:`common.config_sections` and :mod:`common.config_decent`; their
public names are importable from here.
"""

from __future__ import annotations

import dataclasses
import posixpath

from common.config_checks import own_map_server
from common.config_decent import _decent, _pull_warnings
from common.config_model import (
    ALWAYS_ON,
    INT_TIMERS,
    ROLE_ORDER,
    SYNC_MODES,
    TIMER_DEFAULTS,
    DatabaseMapping,
    DecentSection,
    EtrSection,
    ItrSection,
    Locator,
    MapResolverSection,
    MapServerRef,
    MapServerSection,
    MetricsSection,
    NodeConfig,
    NodeSection,
    PullSection,
    PushSection,
    Roles,
    Site,
    SitePrefix,
    Timers,
)
from common.config_read import (
    ALGORITHMS,
    ConfigError,
    Endpoint,
    Key,
    _bool,
    _choice,
    _int,
    _list,
    _positive,
    _Table,
)
from common.config_sections import (
    default_xtr_id,
    _etr,
    _itr,
    _mappings,
    _metrics,
    _node,
    _roles,
    _sec_key,
    _sites,
    _timers,
)


def parse_config(data: dict, source: str, base_dir: str) -> NodeConfig:
    """Validate parsed TOML into a :class:`NodeConfig`.

    ``source`` names the file in messages; ``base_dir`` (absolute) is what relative
    paths such as ``node.state_dir`` resolve against.  Raises :class:`ConfigError`.
    """
    if not posixpath.isabs(base_dir):
        raise ValueError(f"base_dir must be absolute, not {base_dir!r}")
    try:
        top = _Table(data, "", ("node", "roles", "timers", "map_resolver", "map_server", "site",
                                "database_mapping", "etr", "itr", "decent", "dataplane",
                                "metrics", "bus"),
                     {"sites": "unknown key (sites are [[site]] tables)",
                      "database_mappings": "unknown key (use [[database_mapping]] tables)"})
        if not top.has("node"):
            raise ConfigError("node", "missing")
        node = _node(top.data["node"], base_dir)
        decent = _decent(top.data.get("decent", {}))
        sites = _sites(top)
        maps = _mappings(top, node)
        roles = _roles(top.data.get("roles", {}), decent.mode, bool(maps))
        timers = _timers(top.data.get("timers", {}))
        mr = _Table(top.data.get("map_resolver", {}), "map_resolver",
                    ("rate_limit", "rate_burst", "reply_rate_limit", "reply_rate_burst", "rate_slots",
                     "path_mtu", "stale_heartbeats", "lisp_sec_keys", "fast_path", "answer_cache",
                     "fast_path_c", "snapshot_turns"))
        mr_sec = MapResolverSection(mr.get("rate_limit", _positive, 1000.0),
                                    mr.get("rate_burst", _positive, 2000.0),
                                    mr.get("reply_rate_limit", _positive, 1000.0),
                                    mr.get("reply_rate_burst", _positive, 2000.0),
                                    mr.get("rate_slots", _int(1024, 1 << 24), 65536),
                                    mr.get("path_mtu", _int(576, 65535), 1400),
                                    mr.get("stale_heartbeats", _int(1, 1000), 3),
                                    mr.get("fast_path", _bool, True),
                                    mr.get("answer_cache", _int(16, 1 << 24), 65536),
                                    lisp_sec_keys=mr.get("lisp_sec_keys", _list(_sec_key), ()),
                                    fast_path_c=mr.get("fast_path_c", _bool, True),
                                    snapshot_turns=mr.get("snapshot_turns", _int(0, 1024), 0))
        for lim, bur in (("rate_limit", "rate_burst"), ("reply_rate_limit", "reply_rate_burst")):
            if getattr(mr_sec, bur) < getattr(mr_sec, lim):
                raise ConfigError(f"map_resolver.{bur}", f"{getattr(mr_sec, bur):g} is smaller than "
                                                         f"map_resolver.{lim} "
                                                         f"({getattr(mr_sec, lim):g})")
        if mr_sec.rate_slots & (mr_sec.rate_slots - 1):
            raise ConfigError("map_resolver.rate_slots", f"{mr_sec.rate_slots} is not a power of two")
        ms = _Table(top.data.get("map_server", {}), "map_server",
                    ("proxy_reply_ttl", "sync", "register_rate", "register_burst"))
        ms_sec = MapServerSection(ms.get("proxy_reply_ttl", _int(0, 0xFFFFFFFF), 1440),
                                  ms.get("sync", _choice(SYNC_MODES), "normal"),
                                  ms.get("register_rate", _positive, 1000.0),
                                  ms.get("register_burst", _positive, 2000.0))
        for k in ("register_rate", "register_burst"):
            if getattr(ms_sec, k) > 10_000_000:
                raise ConfigError(f"map_server.{k}", f"{getattr(ms_sec, k):g} is not a sane rate "
                                                     f"(at most 10,000,000 per second)")
        if ms_sec.register_burst < 1:
            raise ConfigError("map_server.register_burst", "must be at least 1")
        etr = _etr(top.data.get("etr", {}), roles, decent.mode)
        own_map_server(node, roles, sites, maps, etr, ConfigError)
        itr = _itr(top.data.get("itr", {}), node)
        from common.dataplane_config import parse_dataplane
        dataplane = parse_dataplane(top.data.get("dataplane", {}))
        metrics = _metrics(top.data.get("metrics", {}))
        from common.bus_config import parse_bus
        bus = parse_bus(top.data.get("bus", {}), base_dir)
        if bus.satellite and bus.host and "xtr_id" not in top.data["node"]:
            # an xTR-ID names one xTR (RFC 9301 5.6): a satellite's ETR is not the bus
            # host's, and a Map-Server tracks nonces per xTR-ID (issue 10)
            node = dataclasses.replace(node, xtr_id=default_xtr_id(node.name, bus.host))
    except ConfigError as exc:
        raise ConfigError(exc.key_path, exc.reason, source) from None
    return NodeConfig(source, node, roles, timers, mr_sec, ms_sec, sites, maps, etr, itr, decent,
                      _pull_warnings(decent, sites, maps), dataplane, metrics, bus)


__all__ = [
    "ALGORITHMS", "ALWAYS_ON", "ConfigError", "DatabaseMapping", "DecentSection", "Endpoint",
    "EtrSection", "INT_TIMERS", "ItrSection", "Key", "Locator", "MapResolverSection", "MapServerRef",
    "MapServerSection", "MetricsSection", "NodeConfig", "NodeSection", "PullSection", "PushSection", "ROLE_ORDER",
    "Roles", "Site", "SitePrefix", "TIMER_DEFAULTS", "Timers", "parse_config",
]
