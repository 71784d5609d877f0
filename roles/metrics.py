"""The ``metrics`` role: the node's counters over HTTP in the Prometheus text format.

It listens to every heartbeat on the bus (``hb.<role>.<instance>``: pid, session,
uptime, counters) and serves, on ``[metrics] listen``, what the latest heartbeat of
each configured instance says, converted at scrape time (:func:`families`):

* every counter of every instance as ``lisp_decent_<name>_total{role, instance, host}``
  (``host``: the heartbeat's, so a node across hosts shows every host's instances,
  each host's own ``watchdog:0`` apart),
  the name's dots and dashes as underscores; drops as
  ``lisp_decent_dropped_total{role, instance, host, reason}``; Clone stream events as
  ``lisp_decent_clone_*{stream}``; bus proxy traffic with ``proxy`` and ``direction``;
* the levels roles keep among their counters (:data:`GAUGES`: registrations per
  Map-Server shard and per Map-Resolver replica, replica in-sync, map-cache
  entries, push group members, pull index sets per state) as gauges;
* per instance: ``lisp_decent_up`` (a heartbeat within three intervals),
  ``lisp_decent_process_uptime_seconds``, ``lisp_decent_process_restarts_total``
  (new process sessions seen since this role started) and
  ``lisp_decent_heartbeat_age_seconds``.

The HTTP server is prometheus_client's, in its own thread; the heartbeat table is
shared with it under a lock.
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import start_http_server

from bus import topics
from bus.envelope import Header
from common.counters import DROP_PREFIX
from roles.runtime import HEARTBEAT_TYPE, RoleContext, host_name, run_role

PREFIX = "lisp_decent_"
LABELS = ("role", "instance", "host")

# Counters that hold a level (set, not counted).  Everything else only ever grows.
GAUGES = frozenset({"registrations", "in_sync", "mapcache.entries", "mapcache.restored",
                    "members"})
GAUGE_PREFIXES = ("indexes.",)          # discovery: index sets per resolution state

# (pattern, family, type, extra label names) for names that carry a label value
_PATTERNS: tuple[tuple[re.Pattern, str, str, tuple[str, ...]], ...] = (
    (re.compile(r"dropped\.(.+)"), "dropped", "counter", ("reason",)),
    (re.compile(r"clone\.(.+)\.resync\.([^.]+)"), "clone_resyncs", "counter", ("stream", "reason")),
    (re.compile(r"clone\.(.+)\.synced"), "clone_synced", "counter", ("stream",)),
    (re.compile(r"clone\.(.+)\.snapshots"), "clone_snapshots", "counter", ("stream",)),
    (re.compile(r"proxy\.([^.]+)\.(in|out)"), "bus_proxy_messages", "counter",
     ("proxy", "direction")),
    (re.compile(r"indexes\.([^.]+)"), "index_sets", "gauge", ("state",)),
)
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")
assert DROP_PREFIX == "dropped."


def classify(name: str) -> tuple[str, str, dict[str, str]]:
    """A role counter's name -> (family name without prefix, "counter"|"gauge", labels)."""
    for pattern, family, kind, label_names in _PATTERNS:
        m = pattern.fullmatch(name)
        if m:
            return family, kind, dict(zip(label_names, m.groups()))
    kind = "gauge" if name in GAUGES or name.startswith(GAUGE_PREFIXES) else "counter"
    return _UNSAFE.sub("_", name), kind, {}


@dataclass
class Seen:
    """The latest heartbeat of one instance, as the metrics role saw it."""

    session: str
    received: float          # monotonic time it arrived
    body: dict
    restarts: int = 0        # new sessions after the first one seen


class Heartbeats:
    """The latest heartbeat per (role, instance); written by the bus loop, read by
    the HTTP thread."""

    def __init__(self, own_host: str = "") -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str], Seen] = {}
        self.own_host = own_host

    def note(self, role: str, instance: int, session: str, body: dict, now: float) -> None:
        """Keyed by host too: in a node across hosts each host runs its own
        ``watchdog:0`` (the heartbeat's ``host``; none given: this host)."""
        host = body.get("host") if isinstance(body.get("host"), str) else self.own_host
        with self._lock:
            old = self._seen.get((role, instance, host))
            restarts = 0 if old is None else old.restarts + (old.session != session)
            self._seen[(role, instance, host)] = Seen(session, now, body, restarts)

    def snapshot(self) -> dict[tuple[str, int, str], Seen]:
        with self._lock:
            return dict(self._seen)


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return None


def families(expected: Iterable[tuple[str, int]], seen: dict[tuple[str, int, str], Seen],
             now: float, node: str, default_interval: float = 1.0, host: str = "") -> list:
    """The metric families for one scrape (pure but for prometheus_client's classes).
    ``expected``: this host's instances (``host``); ``seen`` may hold other hosts'."""
    fams: dict[str, Any] = {}
    shapes: dict[str, tuple[str, tuple[str, ...]]] = {}

    def family(name: str, kind: str, doc: str, label_names: tuple[str, ...]):
        key = PREFIX + name
        if key not in fams:
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            fams[key] = cls(key, doc, labels=list(label_names))
            shapes[key] = (kind, label_names)
        elif shapes[key] != (kind, label_names):
            return None        # a name clash between roles: keep the first meaning
        return fams[key]

    info = family("node_info", "gauge", "This node (value 1).", ("node",))
    info.add_metric([node], 1)
    keys = list(dict.fromkeys([(r, n, host) for r, n in expected] + sorted(seen)))
    for role, n, h in keys:
        base = [role, str(n), h]
        hb = seen.get((role, n, h))
        up = family("up", "gauge", "1 if the instance heartbeats on the bus.", LABELS)
        if hb is None:
            up.add_metric(base, 0)
            continue
        interval = _number(hb.body.get("interval")) or default_interval
        age = now - hb.received
        up.add_metric(base, 1 if age <= 3 * interval else 0)
        family("heartbeat_age_seconds", "gauge", "Seconds since the instance's last heartbeat.",
               LABELS).add_metric(base, age)
        uptime = _number(hb.body.get("uptime"))
        if uptime is not None:
            family("process_uptime_seconds", "gauge", "Seconds since the process started.",
                   LABELS).add_metric(base, uptime + age)
        family("process_restarts", "counter",
               "Process restarts (new sessions) seen since the metrics role started.",
               LABELS).add_metric(base, hb.restarts)
        counters = hb.body.get("counters")
        if not isinstance(counters, dict):
            continue
        for name, value in sorted(counters.items()):
            v = _number(value)
            if v is None or not isinstance(name, str):
                continue
            fname, kind, extra = classify(name)
            fam = family(fname, kind, f"Role counter {name!r}" if not extra else
                         f"Role counters {fname} by {', '.join(extra)}.", LABELS + tuple(extra))
            if fam is not None:
                fam.add_metric(base + list(extra.values()), v)
    return list(fams.values())


class _Collector:
    """prometheus_client custom collector over a :class:`Heartbeats` table."""

    def __init__(self, view: Heartbeats, expected: list[tuple[str, int]], node: str,
                 interval: float, clock: Callable[[], float] = time.monotonic,
                 host: str = "") -> None:
        self.view, self.expected, self.node = view, expected, node
        self.interval, self.clock, self.host = interval, clock, host

    def collect(self):
        return families(self.expected, self.view.snapshot(), self.clock(), self.node,
                        self.interval, self.host)


async def main(ctx: RoleContext) -> None:
    listen = ctx.cfg.metrics.listen
    if listen is None:     # run_role refuses instance 0 then; kept for a direct call
        raise RuntimeError("metrics.listen is empty: this node serves no metrics")
    own = host_name(ctx.cfg)
    view = Heartbeats(own)

    def on_heartbeat(topic: str, header: Header, body: Any) -> None:
        key = topics.parse_heartbeat(topic)
        if header.type != HEARTBEAT_TYPE or key is None or not isinstance(body, dict):
            return
        view.note(key[0], key[1], header.src.session, body, time.monotonic())

    ctx.bus.subscribe(topics.HEARTBEAT + ".", on_heartbeat)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(view, ctx.cfg.instances(), ctx.cfg.node.name,
                                 ctx.timer("heartbeat_interval", 1.0), host=own))
    host = str(listen.address)
    try:
        server, thread = start_http_server(listen.port, addr=host, registry=registry)
    except OSError as exc:   # exit 1: supervisord retries (the port may be free later)
        raise RuntimeError(f"metrics.listen: cannot listen on {host}:{listen.port}: "
                           f"{exc.strerror or exc}") from None
    ctx.log.info("serving Prometheus metrics on http://%s/metrics",
                 f"[{host}]:{listen.port}" if ":" in host else f"{host}:{listen.port}")
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        thread.join(timeout=5)


if __name__ == "__main__":
    sys.exit(run_role("metrics", main))
