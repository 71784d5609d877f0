"""The metrics role's conversion of heartbeats to Prometheus families, and its config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from common.config import ConfigError, parse_config
from roles import metrics
from roles.metrics import GAUGES, Heartbeats, classify

REPO = Path(__file__).resolve().parents[2]


def node(**extra) -> dict:
    d = {"node": {"name": "n1", "rlocs": ["127.0.0.1"], "state_dir": "state"}}
    d.update(extra)
    return d


def scrape(view: Heartbeats, expected, now: float) -> dict:
    """Exposition text parsed back: {(sample name, frozenset(labels)): value}."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(metrics._Collector(view, expected, "n1", 1.0, clock=lambda: now, host="h1"))
    text = generate_latest(reg).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def lab(**kw) -> frozenset:
    kw.setdefault("host", "h1")
    return frozenset(kw.items())


def test_classify_names_families_and_labels():
    assert classify("received") == ("received", "counter", {})
    assert classify("register.accepted") == ("register_accepted", "counter", {})
    assert classify("dropped.register.bad-hmac") == ("dropped", "counter",
                                                     {"reason": "register.bad-hmac"})
    assert classify("registrations") == ("registrations", "gauge", {})
    assert classify("mapcache.entries") == ("mapcache_entries", "gauge", {})
    assert classify("indexes.resolved") == ("index_sets", "gauge", {"state": "resolved"})
    assert classify("clone.ms.0.resync.gap") == ("clone_resyncs", "counter",
                                                 {"stream": "ms.0", "reason": "gap"})
    assert classify("clone.mapcache.synced") == ("clone_synced", "counter",
                                                 {"stream": "mapcache"})
    assert classify("proxy.bus.in") == ("bus_proxy_messages", "counter",
                                        {"proxy": "bus", "direction": "in"})


def test_scrape_shows_counters_gauges_and_liveness():
    view = Heartbeats("h1")
    view.note("map_resolver", 0, "s1", {"uptime": 5.0, "interval": 1.0, "counters": {
        "received": 7, "answered": 6, "dropped.bad-packet": 1, "registrations": 3,
        "in_sync": 1}}, now=100.0)
    view.note("map_server", 0, "s2", {"uptime": 9.0, "interval": 1.0, "counters": {
        "register.accepted": 4, "dropped.register.bad-hmac": 2}}, now=90.0)
    expected = [("map_server", 0), ("map_resolver", 0), ("itr", 0)]
    got = scrape(view, expected, now=100.5)
    mr, ms = lab(role="map_resolver", instance="0"), lab(role="map_server", instance="0")
    assert got[("lisp_decent_received_total", mr)] == 7
    assert got[("lisp_decent_answered_total", mr)] == 6
    assert got[("lisp_decent_dropped_total", mr | lab(reason="bad-packet"))] == 1
    assert got[("lisp_decent_dropped_total", ms | lab(reason="register.bad-hmac"))] == 2
    assert got[("lisp_decent_register_accepted_total", ms)] == 4
    assert got[("lisp_decent_registrations", mr)] == 3          # a gauge: no _total
    assert ("lisp_decent_registrations_total", mr) not in got
    assert got[("lisp_decent_in_sync", mr)] == 1
    assert got[("lisp_decent_up", mr)] == 1
    assert got[("lisp_decent_up", ms)] == 0                     # 10.5 s silent > 3 intervals
    assert got[("lisp_decent_up", lab(role="itr", instance="0"))] == 0   # never heard
    assert got[("lisp_decent_process_uptime_seconds", mr)] == pytest.approx(5.5)
    assert got[("lisp_decent_heartbeat_age_seconds", ms)] == pytest.approx(10.5)
    assert got[("lisp_decent_node_info", frozenset({("node", "n1")}))] == 1


def test_restarts_count_new_sessions():
    view = Heartbeats("h1")
    for t, session in enumerate(["a", "a", "b", "b", "c"]):
        view.note("etr", 0, session, {"uptime": 1.0, "counters": {}}, now=float(t))
    got = scrape(view, [("etr", 0)], now=4.0)
    assert got[("lisp_decent_process_restarts_total", lab(role="etr", instance="0"))] == 2


def test_bad_heartbeat_values_are_skipped():
    view = Heartbeats("h1")
    view.note("itr", 0, "s", {"uptime": "soon", "counters": {"received": "many", "sent": 2}},
              now=1.0)
    got = scrape(view, [("itr", 0)], now=1.0)
    it = lab(role="itr", instance="0")
    assert got[("lisp_decent_sent_total", it)] == 2
    assert not any(name == "lisp_decent_received_total" for name, _ in got)
    assert not any(name == "lisp_decent_process_uptime_seconds" for name, _ in got)


def test_every_level_a_role_sets_is_a_gauge():
    """Roles keep levels among their counters with ``counters.set("name", ...)``; each
    literal one must be classified as a gauge here (copies of counters use variables)."""
    literal = re.compile(r"counters\.set\(\s*\"([^\"]+)\"")
    found = set()
    for path in (REPO / "roles").glob("*.py"):
        found |= set(literal.findall(path.read_text()))
    assert found, "no counters.set(...) found: has the API changed?"
    assert found <= GAUGES, f"levels not declared in roles.metrics.GAUGES: {found - GAUGES}"


def test_config_metrics_listen():
    cfg = parse_config(node(metrics={"listen": "127.0.0.2:9500"}), "x.toml", "/etc")
    assert (str(cfg.metrics.listen.address), cfg.metrics.listen.port) == ("127.0.0.2", 9500)
    assert ("metrics", 0) in cfg.instances()
    cfg = parse_config(node(metrics={"listen": "[::1]"}), "x.toml", "/etc")
    assert (str(cfg.metrics.listen.address), cfg.metrics.listen.port) == ("::1", 9464)
    for off in (node(), node(metrics={}), node(metrics={"listen": ""})):
        cfg = parse_config(off, "x.toml", "/etc")
        assert cfg.metrics.listen is None and cfg.count("metrics") == 0
        assert ("metrics", 0) not in cfg.instances()


@pytest.mark.parametrize("table,path,reason", [
    ({"listen": "localhost:9464"}, "metrics.listen", "not an IPv4 or IPv6 address"),
    ({"listen": "127.0.0.1:99999"}, "metrics.listen", "out of range"),
    ({"listen": "127.0.0.1:http"}, "metrics.listen", "bad port"),
    ({"listen": 9464}, "metrics.listen", "expected a string"),
    ({"port": 9464}, "metrics.port", "unknown key"),
])
def test_config_metrics_errors(table, path, reason):
    with pytest.raises(ConfigError) as e:
        parse_config(node(metrics=table), "x.toml", "/etc")
    assert e.value.key_path == path and reason in e.value.reason


def test_grafana_dashboard_uses_only_metrics_we_export():
    import json
    dash = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    used = {m for p in dash["panels"] for t in p["targets"]
            for m in re.findall(r"lisp_decent_\w+", t["expr"])}
    view = Heartbeats("h1")
    view.note("map_resolver", 0, "s", {"uptime": 1.0, "counters": {
        "received": 1, "answered": 1, "forwarded": 1, "dropped.x": 1, "registrations": 1,
        "in_sync": 1}}, now=0.0)
    view.note("map_server", 0, "s", {"uptime": 1.0, "counters": {"register.accepted": 1}}, now=0.0)
    view.note("itr", 0, "s", {"uptime": 1.0, "counters": {"mapcache.entries": 1}}, now=0.0)
    view.note("dataplane", 0, "s", {"uptime": 1.0, "counters": {"members": 1}}, now=0.0)
    view.note("discovery", 0, "s", {"uptime": 1.0, "counters": {"indexes.resolved": 1}}, now=0.0)
    exported = {name for name, _ in scrape(view, [], now=0.0)}
    assert used and used <= exported, used - exported


def test_a_node_across_hosts_shows_each_hosts_instances_apart():
    """Each host runs its own watchdog:0; satellites' workers heartbeat through the
    bus host: the scrape keeps them apart by the heartbeat's host."""
    view = Heartbeats("h1")
    view.note("watchdog", 0, "a", {"uptime": 1.0, "host": "h1", "counters": {"restarts": 1}}, now=0.0)
    view.note("watchdog", 0, "b", {"uptime": 1.0, "host": "sat1", "counters": {"restarts": 5}}, now=0.0)
    view.note("map_resolver", 2, "c", {"uptime": 1.0, "host": "sat1", "counters": {"answered": 9}},
              now=0.0)
    got = scrape(view, [("watchdog", 0)], now=0.5)
    assert got[("lisp_decent_restarts_total", lab(role="watchdog", instance="0"))] == 1
    assert got[("lisp_decent_restarts_total", lab(role="watchdog", instance="0", host="sat1"))] == 5
    assert got[("lisp_decent_answered_total", lab(role="map_resolver", instance="2", host="sat1"))] == 9
    assert got[("lisp_decent_up", lab(role="map_resolver", instance="2", host="sat1"))] == 1
