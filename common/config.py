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
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from common.config_checks import own_map_server
from common.config_read import (
    ALGORITHMS,
    ConfigError,
    Endpoint,
    IPAddress,
    Key,
    _bool,
    _choice,
    _eid,
    _endpoint,
    _hex,
    _int,
    _key,
    _list,
    _multicast,
    _positive,
    _seconds,
    _str,
    _Table,
    _type_name,
    _unicast,
)
from common.decent.hash import ALIASES, LookupRange, canonical_mode, mask_warnings
from common.wire.addr import Eid
from common.wire.eidtext import format_eid

# Start order: the bus first (everything talks through it), discovery before the
# roles that need index sets, the store before its readers, the watchdog last so it
# does not count the others' start-up as silence.
ROLE_ORDER = ("bus", "discovery", "dataplane", "map_server", "map_resolver", "etr", "itr",
              "metrics", "watchdog")
ALWAYS_ON = ("bus", "watchdog")

NONCE_POLICIES = ("strict", "warn", "off")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
METRICS_PORT = 9464            # the Prometheus exporter port for lisp-decent
DECENT_MODES = ("none", "pull", "push")
HASH_MODES = ("rfc9962", "lispers", "prefix") + tuple(ALIASES)  # "draft": rfc9962's old name
SYNC_MODES = ("normal", "full")

TIMER_DEFAULTS: dict[str, float] = {
    "register_interval": 60.0,         # ETR Map-Register period
    "register_interval_fast": 20.0,    # ... during the first fast_period seconds
    "fast_period": 300.0,
    "registration_lifetime": 180.0,    # Map-Server keeps a registration this long (T=0)
    "map_notify_retry_initial": 1.0,   # ETR re-sends a Map-Register awaiting its Map-Notify
    "map_notify_retry_max": 60.0,
    "map_request_retry": 1.0,          # ITR: first retransmission; 1/s per prefix
    "map_request_backoff": 30.0,       # ITR: retransmission interval cap
    "negative_ttl_non_eid": 900.0,     # negative reply for space no site owns
    "negative_ttl_unregistered": 60.0, # negative reply for a configured, unregistered prefix
    "heartbeat_interval": 1.0,         # every role publishes a bus heartbeat this often
    "watchdog_timeout": 10.0,          # silence after which the watchdog restarts a role
    "snapshot_timeout": 5.0,           # a reader re-asks for a snapshot after this long
    "unsolicited_notify_retry": 3.0,   # Map-Server re-sends an unacknowledged Map-Notify
}
INT_TIMERS = {"map_request_max_retries": 10,
              "stop_wait": 10}   # supervisord: SIGTERM, then SIGKILL after this many seconds
# restart_grace defaults to registration_lifetime (DESIGN.md section 5)


# ---------------------------------------------------------------------------
# the model


@dataclass(frozen=True)
class NodeSection:
    name: str
    rlocs: tuple[IPAddress, ...]
    control_port: int
    data_port: int
    state_dir: str           # absolute
    xtr_id: bytes            # 16 bytes
    site_id: bytes           # 8 bytes
    log_level: str           # lowercase, one of LOG_LEVELS
    log_format: str = "text"  # "text" | "json" (one JSON object per line)


@dataclass(frozen=True)
class MetricsSection:
    listen: Endpoint | None = None  # where the metrics role serves /metrics; None: not run


@dataclass(frozen=True)
class Roles:
    map_resolver: int        # workers; 0 = not run
    map_server: int          # shards; 0 = not run
    etr: bool
    itr: bool
    discovery: bool
    dataplane: bool


@dataclass(frozen=True)
class Timers:
    register_interval: float
    register_interval_fast: float
    fast_period: float
    registration_lifetime: float
    map_notify_retry_initial: float
    map_notify_retry_max: float
    map_request_retry: float
    map_request_backoff: float
    map_request_max_retries: int
    negative_ttl_non_eid: float
    negative_ttl_unregistered: float
    heartbeat_interval: float
    watchdog_timeout: float
    restart_grace: float
    snapshot_timeout: float
    unsolicited_notify_retry: float
    stop_wait: int = INT_TIMERS["stop_wait"]


@dataclass(frozen=True)
class MapResolverSection:
    rate_limit: float        # Map-Requests per second per source address
    rate_burst: float
    reply_rate_limit: float = 1000.0   # Map-Replies per second per destination (ITR-RLOC)
    reply_rate_burst: float = 2000.0
    rate_slots: int = 65536  # slots of each shared rate table (a power of two)
    path_mtu: int = 1400     # no Map-Reply datagram (IP + UDP + LISP) exceeds it
    stale_heartbeats: int = 3  # a replica whose writer is silent this many heartbeats is not in sync
    fast_path: bool = True   # common requests answered from cached reply bytes (common/machines/fastpath.py)
    answer_cache: int = 65536  # answers the fast path caches per worker
    fast_path_c: bool = True  # the worker's socket read by the C loop (roles/_fastloop.c) when built
    snapshot_turns: int = 0  # workers of a host fetching one shard's snapshot at once (0: cores - 1; roles/snapgate.py)
    lisp_sec_keys: tuple = field(default=(), repr=False)  # Keys an ITR may wrap its LISP-SEC OTK with


@dataclass(frozen=True)
class MapServerSection:
    proxy_reply_ttl: int     # minutes
    sync: str                # SQLite synchronous: "normal" | "full"
    register_rate: float = 1000.0    # Map-Registers/s per source address, checked before the HMAC
    register_burst: float = 2000.0


@dataclass(frozen=True)
class SitePrefix:
    eid: Eid
    accept_more_specifics: bool


@dataclass(frozen=True)
class Site:
    name: str
    nonce_policy: str        # "strict" | "warn" | "off"
    keys: tuple[Key, ...]
    prefixes: tuple[SitePrefix, ...]
    lisp_sec: str = "on"     # "off" | "on" | "required" (RFC 9303, docs/lisp-sec.md)

    def key(self, key_id: int) -> Key | None:
        for k in self.keys:
            if k.key_id == key_id:
                return k
        return None


@dataclass(frozen=True)
class Locator:
    address: IPAddress
    priority: int
    weight: int
    mpriority: int
    mweight: int


@dataclass(frozen=True)
class DatabaseMapping:
    eid: Eid
    rlocs: tuple[Locator, ...]
    ttl: int                 # minutes
    proxy_reply: bool
    want_map_notify: bool


@dataclass(frozen=True)
class MapServerRef:
    """A Map-Server the ETR registers with."""

    address: IPAddress
    port: int
    key: Key


@dataclass(frozen=True)
class EtrSection:
    map_servers: tuple[MapServerRef, ...]
    decent_key: Key | None   # key for Map-Servers the decent mode finds (pull/push)


@dataclass(frozen=True)
class ItrSection:
    map_resolvers: tuple[Endpoint, ...]  # default: this node's first RLOC, control_port
    lisp_sec: str = "off"    # "off" | "on" | "required" (RFC 9303, docs/lisp-sec.md)
    lisp_sec_key: Key | None = None  # wraps the one-time key (AES key wrap); None: null wrap


@dataclass(frozen=True)
class PullSection:
    modulus: int
    suffix: str              # no trailing dot
    hash_mode: str           # "rfc9962" | "lispers" | "prefix" ("draft" is read as "rfc9962")
    hash_mask: int | None    # bytes (rfc9962) or bits (prefix); None = no mask
    name_servers: tuple[Endpoint, ...]  # empty: the system resolver
    resolve_min: float
    resolve_max: float
    query_timeout: float
    lookup_ranges: tuple[LookupRange, ...] = ()  # RFC 9962 section 5.2 (rfc9962 mode only)
    type_failure_rounds: int = 3   # rounds one of A/AAAA may fail while the other answers
    max_records_per_name: int = 32  # addresses taken from one name's answer
    dnssec: str = "off"            # "off" | "validate" (RFC 9962 section 6)
    trust_anchor: str | None = None       # DS/DNSKEY records of the names' zone, as text
    trust_anchor_file: str | None = None  # or an absolute path to a file holding them


@dataclass(frozen=True)
class PushSection:
    group: IPAddress         # mapping-system group G
    iid: int
    seed_rlocs: tuple[IPAddress, ...]
    seed_group: IPAddress | None  # core seed-group holding the layers' membership
    core_seed: bool          # this node is a member of the core seed-group
    snapshot_on_join: bool
    membership_interval: float
    curve_secret: str | None = field(default=None, repr=False)  # Z85; the members' shared CURVE key
    snapshot_port: int = 4344     # TCP: a member serves its stored Map-Registers here (CURVE)


@dataclass(frozen=True)
class DecentSection:
    mode: str                # "none" | "pull" | "push"
    pull: PullSection | None
    push: PushSection | None


@dataclass(frozen=True)
class NodeConfig:
    source: str
    node: NodeSection
    roles: Roles
    timers: Timers
    map_resolver: MapResolverSection
    map_server: MapServerSection
    sites: tuple[Site, ...]
    database_mappings: tuple[DatabaseMapping, ...]
    etr: EtrSection
    itr: ItrSection
    decent: DecentSection
    warnings: tuple[str, ...] = ()  # not errors: e.g. prefixes inconsistent with the hash mask
    dataplane: Any = None           # common.dataplane_config.DataplaneSection ([dataplane])
    metrics: MetricsSection = MetricsSection()
    bus: Any = None                 # common.bus_config.BusSection ([bus]: a node across hosts)

    def count(self, role: str) -> int:
        """How many instances of ``role`` this node runs (0 if none)."""
        if role in ALWAYS_ON:
            return 1
        if role not in ROLE_ORDER:
            raise KeyError(role)
        if role == "metrics":
            return int(self.metrics.listen is not None)
        return int(getattr(self.roles, role))

    def instances(self) -> list[tuple[str, int]]:
        """Every process instance ``(role, n)`` this host runs, in start order (bus first).
        A satellite (``[bus] connect``) runs the instances of ``bus.run`` and a watchdog."""
        if self.bus is not None and self.bus.satellite:
            return sorted(self.bus.run + (("watchdog", 0),), key=lambda x: (ROLE_ORDER.index(x[0]), x[1]))
        return [(role, n) for role in ROLE_ORDER for n in range(self.count(role))]

    def site(self, name: str) -> Site | None:
        for s in self.sites:
            if s.name == name:
                return s
        return None

    def state_path(self, *parts: str) -> str:
        """A path inside this node's state directory."""
        return posixpath.join(self.node.state_dir, *parts)


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


_PULL_KEYS = ("modulus", "suffix", "hash_mode", "hash_mask", "name_servers", "resolve_min",
              "resolve_max", "query_timeout", "lookup_ranges", "type_failure_rounds",
              "max_records_per_name", "dnssec", "trust_anchor", "trust_anchor_file")
_PUSH_KEYS = ("group", "iid", "seed_rlocs", "seed_group", "core_seed", "snapshot_on_join",
              "membership_interval", "curve_secret", "snapshot_port")
_Z85 = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}\Z")
_DNS_NAME = re.compile(r"(?=.{1,253}\.?\Z)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                       r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?\Z")


def _decent(data: Any) -> DecentSection:
    t = _Table(data, "decent", ("mode",) + _PULL_KEYS + _PUSH_KEYS)
    mode = t.get("mode", _choice(DECENT_MODES), "none")
    unused = {"none": _PULL_KEYS + _PUSH_KEYS, "pull": _PUSH_KEYS, "push": _PULL_KEYS}[mode]
    for k in unused:
        if t.has(k):
            raise ConfigError(t.at(k), f'not used with decent.mode = "{mode}"')
    if mode == "pull":
        return DecentSection(mode, _pull(t), None)
    if mode == "push":
        return DecentSection(mode, None, _push(t))
    return DecentSection(mode, None, None)


def _pull(t: _Table) -> PullSection:
    modulus = t.get("modulus", _int(1, 1 << 24))
    suffix = t.get("suffix", _str)
    if not _DNS_NAME.match(suffix) or suffix == ".":
        raise ConfigError(t.at("suffix"), f"not a DNS name: {suffix!r}")
    named = t.get("hash_mode", _choice(HASH_MODES))
    hash_mode = canonical_mode(named)
    if hash_mode == "lispers":
        if t.has("hash_mask") and t.data["hash_mask"] != "none":
            raise ConfigError(t.at("hash_mask"), 'not allowed with hash_mode "lispers" '
                                                 '(lispers.net hashes the whole string)')
        mask = None
    else:
        if not t.has("hash_mask"):
            unit = "bytes of the EID string" if hash_mode == "rfc9962" else "prefix bits"
            raise ConfigError(t.at("hash_mask"), f'missing: hash_mode "{named}" needs an '
                                                 f'explicit mask ({unit}) or "none"')
        raw = t.data["hash_mask"]
        if raw == "none":
            mask = None
        elif hash_mode == "rfc9962":
            mask = _mask_int(raw, t.at("hash_mask"), 1, 255)
        else:
            mask = _mask_int(raw, t.at("hash_mask"), 1, 128)
    ns = t.get("name_servers", _list(_endpoint(53), unique=True), ())
    rmin = t.get("resolve_min", _seconds, 10.0)
    rmax = t.get("resolve_max", _seconds, 300.0)
    if rmin > rmax:
        raise ConfigError(t.at("resolve_min"), f"{rmin:g} is longer than decent.resolve_max "
                                               f"({rmax:g})")
    return PullSection(modulus, suffix.rstrip("."), hash_mode, mask, ns, rmin, rmax,
                       t.get("query_timeout", _seconds, 2.0), _lookup_ranges(t, hash_mode),
                       t.get("type_failure_rounds", _int(1, 100), 3),
                       t.get("max_records_per_name", _int(1, 1024), 32), *_dnssec(t, suffix))


_ANCHOR = re.compile(r"\S+\s+(?:\d+\s+)?(?:IN\s+)?(DS|DNSKEY)\s+\S", re.I)


def _dnssec(t: _Table, suffix: str) -> tuple:
    """(dnssec, trust_anchor, trust_anchor_file): under "validate" exactly one anchor,
    whose records name the suffix's zone or an ancestor (the role parses them fully)."""
    mode = t.get("dnssec", _choice(("off", "validate")), "off")
    anchor = t.get("trust_anchor", _str, None)
    path = t.get("trust_anchor_file", _str, None)
    if mode == "off":
        for k in ("trust_anchor", "trust_anchor_file"):
            if t.has(k):
                raise ConfigError(t.at(k), 'not used with decent.dnssec = "off"')
        return mode, None, None
    if (anchor is None) == (path is None):
        raise ConfigError(t.at("trust_anchor"), 'decent.dnssec = "validate" needs exactly one of '
                                                'trust_anchor and trust_anchor_file')
    if path is not None and not posixpath.isabs(path):
        raise ConfigError(t.at("trust_anchor_file"), f"must be an absolute path, not {path!r}")
    if anchor is not None:
        zone = suffix.rstrip(".").lower() + "."
        lines = [ln.split(";", 1)[0].strip() for ln in anchor.splitlines()]
        for n, line in enumerate((ln for ln in lines if ln), 1):
            if not _ANCHOR.match(line):
                raise ConfigError(t.at("trust_anchor"), f"record {n}: expected "
                                                        f"'<zone> [ttl] [IN] DS|DNSKEY <data>'")
            owner = line.split()[0].rstrip(".").lower() + "."
            if not (zone == owner or zone.endswith("." + owner) or owner == "."):
                raise ConfigError(t.at("trust_anchor"), f"record {n}: {owner} is not the zone of "
                                                        f"decent.suffix ({suffix.rstrip('.')}) nor above it")
        if not any(lines):
            raise ConfigError(t.at("trust_anchor"), "empty")
    return mode, anchor, path


def _lookup_ranges(t: _Table, hash_mode: str) -> tuple[LookupRange, ...]:
    """``lookup_ranges = [{ range = "[<iid>]<prefix>", length = N }, ...]`` (section 5.2)."""
    if not t.has("lookup_ranges"):
        return ()
    if hash_mode != "rfc9962":
        raise ConfigError(t.at("lookup_ranges"), f'only used with hash_mode "rfc9962", not '
                                                 f'"{hash_mode}"')
    if not isinstance(t.data["lookup_ranges"], list):
        raise ConfigError(t.at("lookup_ranges"), "expected an array of { range, length } tables")
    out: list[LookupRange] = []
    for rdata, rpath in t.tables("lookup_ranges"):
        r = _Table(rdata, rpath, ("range", "length"))
        prefix = r.get("range", _eid)
        if prefix.is_multicast or not isinstance(prefix.address, (IPv4Address, IPv6Address)):
            raise ConfigError(r.at("range"), f"{format_eid(prefix)}: a lookup range is a unicast "
                                             f"IPv4 or IPv6 prefix")
        bits = 32 if isinstance(prefix.address, IPv4Address) else 128
        length = r.get("length", _int(prefix.length, bits))
        if any(o.prefix == prefix for o in out):
            raise ConfigError(r.at("range"), f"{format_eid(prefix)} is listed twice")
        out.append(LookupRange(prefix, length))
    return tuple(out)


def _mask_int(v: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(path, f'expected an integer or "none", got {_type_name(v)}')
    return _int(lo, hi)(v, path)


def _push(t: _Table) -> PushSection:
    return PushSection(
        group=t.get("group", _multicast),
        iid=t.get("iid", _int(0, 0xFFFFFE), 0),  # 0xFFFFFF marks replicated Map-Registers
        seed_rlocs=t.get("seed_rlocs", _list(_unicast, unique=True), ()),
        seed_group=t.get("seed_group", _multicast, None),
        core_seed=t.get("core_seed", _bool, False),
        snapshot_on_join=t.get("snapshot_on_join", _bool, True),
        membership_interval=t.get("membership_interval", _seconds, 60.0),
        curve_secret=_curve(t),
        snapshot_port=t.get("snapshot_port", _int(1, 65535), 4344),
    )


def _curve(t: _Table) -> str | None:
    if not t.has("curve_secret"):
        return None
    v = t.get("curve_secret", _str)
    if not _Z85.match(v):
        raise ConfigError(t.at("curve_secret"), "expected a 40-character Z85 CURVE secret key "
                                                "(python -c 'import zmq; print(zmq.curve_keypair()[1])')")
    return v


def _pull_warnings(decent: DecentSection, sites: tuple[Site, ...],
                   maps: tuple[DatabaseMapping, ...]) -> tuple[str, ...]:
    if decent.pull is None:
        return ()
    pull = decent.pull
    out: list[str] = []
    items = [(f"site[{i}].prefix[{j}].eid", p.eid) for i, s in enumerate(sites)
             for j, p in enumerate(s.prefixes)]
    items += [(f"database_mapping[{i}].eid", m.eid) for i, m in enumerate(maps)]
    for path, eid in items:
        out.extend(f"{path}: {w}" for w in mask_warnings(eid, pull.hash_mode, pull.hash_mask,
                                                         pull.lookup_ranges))
    return tuple(out)


# ---------------------------------------------------------------------------


def default_xtr_id(node_name: str, host: str | None = None) -> bytes:
    """The xTR-ID when ``node.xtr_id`` is not given: from the node's name, and on a
    satellite host also from ``bus.host`` (each host's ETR is its own xTR)."""
    text = f"lisp-decent xtr-id {node_name}" + (f" {host}" if host else "")
    return hashlib.sha256(text.encode()).digest()[:16]


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
    "EtrSection", "ItrSection", "Key", "Locator", "MapResolverSection", "MapServerRef",
    "MapServerSection", "MetricsSection", "NodeConfig", "NodeSection", "PullSection", "PushSection", "ROLE_ORDER",
    "Roles", "Site", "SitePrefix", "TIMER_DEFAULTS", "Timers", "parse_config",
]
