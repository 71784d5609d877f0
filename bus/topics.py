"""Bus topics: dot-separated, most significant first, so ZeroMQ prefix filters route.

A topic is segments joined by ``.``: lowercase letters, digits, ``-`` and ``_``.
Subscriptions match whole segments (see :func:`matches`): subscribing to
``rx.map-register.1`` gets shard 1, not shard 10.  ZeroMQ filters on raw byte
prefixes, so the bus client subscribes with the raw prefix and drops the extra
matches itself.

Families (see ``docs/bus-protocol.md`` for the message types on each):

==========================  ===================================================
``rx.<msgtype>[.<shard>]``  a datagram received on UDP 4342, punted by type
``rx.<msgtype>.<host>``     one for the ETR/ITR of satellite ``host`` (:func:`rx_xtr`)
``ms.<shard>.delta``        registration deltas of map_server shard (a Clone stream)
``ms.<shard>.hb``           that stream's heartbeat (current seq)
``<stream>.delta|.hb``      any Clone stream (see :func:`stream_delta`)
``hb.<role>.<instance>``    every process's heartbeat (pid, session, counters)
``itr.resolve``             ask the node's ITR to resolve an EID
``discovery.sets``          index -> RLOC set changes from discovery
==========================  ===================================================
"""

from __future__ import annotations

import hashlib
import re

_SEGMENT = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")

# rx.<msgtype>: LISP message types as punted by the map_resolver workers
MAP_REQUEST = "map-request"        # non-ECM Map-Request (RLOC probe, SMR) -> etr
MAP_REPLY = "map-reply"            # -> itr
MAP_REGISTER = "map-register"      # -> map_server shard (rx.map-register.<shard>)
MAP_NOTIFY = "map-notify"          # -> etr
MAP_NOTIFY_ACK = "map-notify-ack"  # -> map_server shard
ECM_ETR = "ecm-etr"                # ECM with E=1 -> etr
INFO = "info"                      # Info-Request/Reply (NAT traversal), unused so far
OTHER = "other"                    # anything else a worker could decode

DP_REPLICATE = "dp.replicate"       # a Map-Register for the push group -> dataplane
DP_QUERY = "dp.query"
DP_MEMBERS = "dp.members"           # the push group gained members -> etr re-registers               # push-mode membership -> `decent show members`
DP_MISS = "dp.miss"                 # the data path found no map-cache entry -> itr
DP_CACHE_QUERY = "dp.cache-query"   # the map-cache the data path uses -> `decent show map-cache`
MAPCACHE_STREAM = "mapcache"        # the itr's map-cache, a Clone stream the dataplane replicates
HEARTBEAT = "hb"
ITR_RESOLVE = "itr.resolve"
DISCOVERY_SETS = "discovery.sets"


def segment(s: str | int) -> str:
    """Validate one topic segment (ints become decimal)."""
    text = str(s)
    if not _SEGMENT.match(text):
        raise ValueError(f"bad topic segment {s!r}: lowercase letters, digits, '-', '_'")
    return text


def join(*parts: str | int) -> str:
    """A topic from segments; each part may itself be a dotted topic."""
    out = []
    for p in parts:
        out.extend(segment(s) for s in str(p).split("."))
    return ".".join(out)


def matches(prefix: str, topic: str) -> bool:
    """Whole-segment prefix match.  ``""`` matches everything; a prefix ending in
    ``.`` is a raw prefix (``"hb."`` matches every heartbeat)."""
    if not prefix or prefix.endswith("."):
        return topic.startswith(prefix)
    return topic == prefix or topic.startswith(prefix + ".")


def rx(msgtype: str, shard: int | None = None) -> str:
    """Where a worker punts a received datagram of ``msgtype``."""
    return join("rx", msgtype) if shard is None else join("rx", msgtype, shard)


# what the etr/itr take from the workers: on a satellite that runs them, punted on
# rx.<msgtype>.<host> (common.bus_config.BusSection.xtr_host), so each ETR/ITR of a node
# across hosts gets the datagrams that reached its own host
XTR_KINDS = (MAP_NOTIFY, ECM_ETR, MAP_REQUEST, MAP_REPLY)


def rx_xtr(msgtype: str, host: str | None) -> str:
    """Where a datagram of ``msgtype`` for this host's ETR/ITR is punted: ``rx.<msgtype>``
    (node-wide) or, qualified by a satellite's ``host``, ``rx.<msgtype>.<host>``.  A
    node-wide subscriber also matches the qualified topics, so it takes only the exact
    topic (the etr and itr roles check)."""
    return rx(msgtype) if host is None else join("rx", msgtype, host)


def heartbeat(role: str, instance: int) -> str:
    return join(HEARTBEAT, role, instance)


def parse_heartbeat(topic: str) -> tuple[str, int] | None:
    """``hb.<role>.<instance>`` -> (role, instance), or None."""
    parts = topic.split(".")
    if len(parts) != 3 or parts[0] != HEARTBEAT or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


# Clone streams ---------------------------------------------------------------

def stream_name(stream: str) -> str:
    """Validate a stream name (dotted segments, e.g. ``ms.3``)."""
    return join(stream)


def stream_delta(stream: str) -> str:
    return join(stream, "delta")


def stream_heartbeat(stream: str) -> str:
    return join(stream, "hb")


def ms_stream(shard: int) -> str:
    """The Clone stream of map_server shard ``shard``'s registrations."""
    return join("ms", shard)


def ms_delta(shard: int) -> str:
    return stream_delta(ms_stream(shard))


def shard_of(site_name: str, shards: int) -> int:
    """The map_server shard owning ``site_name``: stable across processes, hosts and
    Python versions (SHA-256 of the UTF-8 name, first 8 bytes big-endian, mod shards)."""
    if shards < 1:
        raise ValueError("shards must be >= 1")
    digest = hashlib.sha256(site_name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards
