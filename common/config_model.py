"""The node configuration's model (common/config.py parses into it): the constants the
sections are read against and the frozen dataclasses of every section.  Pure."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from common.config_read import Endpoint, IPAddress, Key
from common.decent.hash import ALIASES, LookupRange
from common.wire.addr import Eid

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
