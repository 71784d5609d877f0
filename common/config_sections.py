"""The readers of the node configuration's sections ``[node]``, ``[metrics]``,
``[roles]``, ``[timers]``, ``[[site]]``, ``[[database_mapping]]``, ``[etr]`` and
``[itr]``: each reads its TOML table into its dataclass (common/config_model.py).
Called by :func:`common.config.parse_config`, which reads ``[map_resolver]`` and
``[map_server]`` itself; ``[decent]`` is common/config_decent.py's.  Pure."""

from __future__ import annotations

import hashlib
import posixpath
import re
from typing import Any

from common.config_model import (
    ALWAYS_ON,
    INT_TIMERS,
    LOG_FORMATS,
    LOG_LEVELS,
    METRICS_PORT,
    NONCE_POLICIES,
    TIMER_DEFAULTS,
    DatabaseMapping,
    EtrSection,
    ItrSection,
    Locator,
    MapServerRef,
    MetricsSection,
    NodeSection,
    Roles,
    Site,
    SitePrefix,
    Timers,
)
from common.config_read import (
    ConfigError,
    Endpoint,
    Key,
    _bool,
    _choice,
    _eid,
    _endpoint,
    _hex,
    _int,
    _key,
    _list,
    _seconds,
    _str,
    _Table,
    _type_name,
    _unicast,
)
from common.wire.addr import Eid
from common.wire.eidtext import format_eid

# ---------------------------------------------------------------------------
# sections

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")


def _node(data: Any, base_dir: str) -> NodeSection:
    t = _Table(data, "node", ("name", "rlocs", "control_port", "data_port", "state_dir",
                              "xtr_id", "site_id", "log_level", "log_format"))
    name = t.get("name", _str)
    if not _NAME.match(name):
        raise ConfigError("node.name", f"{name!r}: use letters, digits, '_', '.', '-' "
                                       f"(it names the supervisord group and the logs)")
    rlocs = t.get("rlocs", _list(_unicast, unique=True))
    if not rlocs:
        raise ConfigError("node.rlocs", "at least one RLOC is required")
    control_port = t.get("control_port", _int(1, 65535), 4342)
    data_port = t.get("data_port", _int(1, 65535), 4341)
    if data_port == control_port:
        raise ConfigError("node.data_port", f"same as node.control_port ({control_port})")
    state_dir = t.get("state_dir", _str)
    if not state_dir:
        raise ConfigError("node.state_dir", "empty")
    state_dir = posixpath.normpath(posixpath.join(base_dir, state_dir))
    xtr_id = t.get("xtr_id", _hex(32), default_xtr_id(name))
    site_id = t.get("site_id", _hex(16), bytes(8))
    log_level = t.get("log_level", lambda v, p: _choice(LOG_LEVELS)(_str(v, p).lower(), p),
                      "info")
    log_format = t.get("log_format", _choice(LOG_FORMATS), "text")
    return NodeSection(name, rlocs, control_port, data_port, state_dir, xtr_id, site_id,
                       log_level, log_format)


def _metrics(data: Any) -> MetricsSection:
    t = _Table(data, "metrics", ("listen",))
    listen = t.get("listen", _str, "").strip()
    if not listen:
        return MetricsSection(None)
    return MetricsSection(_endpoint(METRICS_PORT)(listen, t.at("listen")))


def _role(t: _Table, key: str, count_key: str | None, default: int) -> int:
    """A role switch: ``true``/``false``, or a table ``{enabled, <count_key>}``."""
    if not t.has(key):
        return default
    v = t.data[key]
    path = t.at(key)
    if isinstance(v, bool):
        return int(v)
    if not isinstance(v, dict):
        raise ConfigError(path, f"expected true, false or a table, got {_type_name(v)}")
    sub = _Table(v, path, ("enabled",) + ((count_key,) if count_key else ()))
    if not sub.get("enabled", _bool, True):
        return 0
    return sub.get(count_key, _int(1, 256), 1) if count_key else 1


def _roles(data: Any, mode: str, has_mappings: bool) -> Roles:
    hints = {r: f"{r} always runs; remove this key" for r in ALWAYS_ON}
    t = _Table(data, "roles", ("map_resolver", "map_server", "etr", "itr", "discovery",
                               "dataplane"), hints)
    roles = Roles(
        map_resolver=_role(t, "map_resolver", "workers", 1),
        map_server=_role(t, "map_server", "shards", 1),
        etr=bool(_role(t, "etr", None, int(has_mappings))),
        itr=bool(_role(t, "itr", None, 0)),
        discovery=bool(_role(t, "discovery", None, int(mode == "pull"))),
        dataplane=bool(_role(t, "dataplane", None, int(mode == "push"))),
    )
    if mode == "pull" and not roles.discovery:
        raise ConfigError("roles.discovery", 'required when decent.mode is "pull"')
    if mode == "push" and not roles.dataplane:
        raise ConfigError("roles.dataplane", 'required when decent.mode is "push"')
    return roles


def _timers(data: Any) -> Timers:
    names = tuple(TIMER_DEFAULTS) + tuple(INT_TIMERS) + ("restart_grace",)
    t = _Table(data, "timers", names)
    v: dict[str, Any] = {k: t.get(k, _seconds, d) for k, d in TIMER_DEFAULTS.items()}
    v["map_request_max_retries"] = t.get("map_request_max_retries", _int(0, 1000),
                                         INT_TIMERS["map_request_max_retries"])
    v["stop_wait"] = t.get("stop_wait", _int(1, 3600), INT_TIMERS["stop_wait"])
    v["restart_grace"] = t.get("restart_grace", _seconds, v["registration_lifetime"])

    def order(short: str, long: str) -> None:
        if v[short] > v[long]:
            raise ConfigError(f"timers.{short}", f"{v[short]:g} is longer than "
                                                 f"timers.{long} ({v[long]:g})")
    for short, long in (("register_interval_fast", "register_interval"),
                        ("map_notify_retry_initial", "map_notify_retry_max"),
                        ("map_request_retry", "map_request_backoff")):
        order(short, long)
    for short, long in (("register_interval", "registration_lifetime"),
                        ("heartbeat_interval", "watchdog_timeout")):
        if v[short] >= v[long]:
            raise ConfigError(f"timers.{short}", f"must be shorter than timers.{long} "
                                                 f"({v[long]:g}), not {v[short]:g}")
    return Timers(**v)


def _sites(top: _Table) -> tuple[Site, ...]:
    sites: list[Site] = []
    names: dict[str, str] = {}
    owners: dict[Eid, tuple[str, str]] = {}  # EID -> (site name, key path)
    for data, path in top.tables("site"):
        t = _Table(data, path, ("name", "nonce_policy", "key", "prefix", "lisp_sec"))
        name = t.get("name", _str)
        if not name:
            raise ConfigError(t.at("name"), "empty")
        if name in names:
            raise ConfigError(t.at("name"), f"duplicate site {name!r} (also {names[name]})")
        names[name] = path
        policy = t.get("nonce_policy", _choice(NONCE_POLICIES), "strict")
        keys: list[Key] = []
        for kdata, kpath in t.tables("key"):
            k = _key(kdata, kpath, "id")
            if any(o.key_id == k.key_id for o in keys):
                raise ConfigError(f"{kpath}.id", f"key id {k.key_id} is defined twice")
            keys.append(k)
        if not keys:
            raise ConfigError(t.at("key"), "missing: a site needs at least one [[site.key]]")
        prefixes: list[SitePrefix] = []
        for pdata, ppath in t.tables("prefix"):
            p = _Table(pdata, ppath, ("eid", "accept_more_specifics"))
            eid = p.get("eid", _eid)
            if eid in owners:
                other, opath = owners[eid]
                raise ConfigError(p.at("eid"), f"{format_eid(eid)} is already allowed for "
                                               f"site {other!r} ({opath})")
            owners[eid] = (name, p.at("eid"))
            prefixes.append(SitePrefix(eid, p.get("accept_more_specifics", _bool, False)))
        if not prefixes:
            raise ConfigError(t.at("prefix"), "missing: a site needs at least one [[site.prefix]]")
        sites.append(Site(name, policy, tuple(keys), tuple(prefixes),
                          t.get("lisp_sec", _choice(LISP_SEC_MODES), "on")))
    return tuple(sites)


def _mappings(top: _Table, node: NodeSection) -> tuple[DatabaseMapping, ...]:
    out: list[DatabaseMapping] = []
    seen: dict[Eid, str] = {}
    for data, path in top.tables("database_mapping"):
        t = _Table(data, path, ("eid", "rlocs", "ttl", "proxy_reply", "want_map_notify"))
        eid = t.get("eid", _eid)
        if eid in seen:
            raise ConfigError(t.at("eid"), f"{format_eid(eid)} is mapped twice (also {seen[eid]})")
        seen[eid] = t.at("eid")
        locs: list[Locator] = []
        if t.has("rlocs"):
            rl = t.data["rlocs"]
            if not isinstance(rl, list) or not rl:
                raise ConfigError(t.at("rlocs"), "expected a non-empty array of "
                                                 "{address, priority, weight, ...} tables")
            for i, ldata in enumerate(rl):
                lp = f"{t.at('rlocs')}[{i}]"
                lt = _Table(ldata, lp, ("address", "priority", "weight", "mpriority", "mweight"))
                loc = Locator(lt.get("address", _unicast), lt.get("priority", _int(0, 255), 1),
                              lt.get("weight", _int(0, 255), 100),
                              lt.get("mpriority", _int(0, 255), 255),
                              lt.get("mweight", _int(0, 255), 0))
                if any(o.address == loc.address for o in locs):
                    raise ConfigError(f"{lp}.address", f"{loc.address} is listed twice")
                locs.append(loc)
        else:
            locs.append(Locator(node.rlocs[0], 1, 100, 255, 0))
        out.append(DatabaseMapping(eid, tuple(locs), t.get("ttl", _int(0, 0xFFFFFFFF), 1440),
                                   t.get("proxy_reply", _bool, False),
                                   t.get("want_map_notify", _bool, True)))
    return tuple(out)


def _etr(data: Any, roles: Roles, mode: str) -> EtrSection:
    t = _Table(data, "etr", ("map_servers", "decent_key"))
    servers: list[MapServerRef] = []
    for sdata, spath in t.tables("map_servers"):
        s = _Table(sdata, spath, ("address", "port", "key_id", "alg", "secret"))
        address = s.get("address", _unicast)
        port = s.get("port", _int(1, 65535), 4342)
        key = _key({k: v for k, v in sdata.items() if k in ("key_id", "alg", "secret")},
                   spath, "key_id")
        if any((o.address, o.port) == (address, port) for o in servers):
            raise ConfigError(s.at("address"), f"{address} port {port} is listed twice")
        servers.append(MapServerRef(address, port, key))
    decent_key = t.get("decent_key", lambda v, p: _key(v, p, "key_id"), None)
    if roles.etr and mode == "none" and not servers:
        raise ConfigError("etr.map_servers", 'missing: roles.etr is enabled and decent.mode '
                                             'is "none", so the ETR needs Map-Servers')
    if roles.etr and mode != "none" and decent_key is None:
        raise ConfigError("etr.decent_key", f'missing: decent.mode is "{mode}", so the ETR needs '
                                            f'the key for the Map-Servers it finds')
    return EtrSection(tuple(servers), decent_key)


def _itr(data: Any, node: NodeSection) -> ItrSection:
    t = _Table(data, "itr", ("map_resolvers", "lisp_sec", "lisp_sec_key"))
    mrs = t.get("map_resolvers", _list(_endpoint(4342), unique=True), ())
    if not mrs:
        mrs = (Endpoint(node.rlocs[0], node.control_port),)
    key = t.get("lisp_sec_key", _sec_key, None)
    return ItrSection(mrs, t.get("lisp_sec", _choice(LISP_SEC_MODES), "off"), key)


LISP_SEC_MODES = ("off", "on", "required")


def _sec_key(v: Any, path: str) -> Key:
    """A LISP-SEC key-wrap key: a key table whose secret is required."""
    k = _key(v, path, "key_id")
    if k.secret is None:
        raise ConfigError(f"{path}.alg", 'a LISP-SEC key needs a secret (not alg "none")')
    return k


def default_xtr_id(node_name: str, host: str | None = None) -> bytes:
    """The xTR-ID when ``node.xtr_id`` is not given: from the node's name, and on a
    satellite host also from ``bus.host`` (each host's ETR is its own xTR)."""
    text = f"lisp-decent xtr-id {node_name}" + (f" {host}" if host else "")
    return hashlib.sha256(text.encode()).digest()[:16]
