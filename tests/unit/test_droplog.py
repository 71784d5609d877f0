"""Counters and the rate-limited drop log, with a fake clock."""

from __future__ import annotations

import logging

from bus.counters import RoleCounters
from common.counters import Counters, DropLimiter


def test_first_drop_logged_then_one_line_per_interval_with_count():
    d = DropLimiter(interval=10.0)
    assert d.note("bad-mac", "from 192.0.2.1", now=100.0) == "dropped.bad-mac: from 192.0.2.1"
    for i in range(5):
        assert d.note("bad-mac", f"from 192.0.2.{i}", now=101.0 + i) is None
    line = d.note("bad-mac", "from 192.0.2.99", now=110.0)
    assert line == "dropped.bad-mac: 6 more since the last report (last: from 192.0.2.99)"
    assert d.note("bad-mac", "x", now=111.0) is None


def test_reasons_are_limited_independently():
    d = DropLimiter(interval=5.0)
    assert d.note("a", "1", now=0.0) is not None
    assert d.note("b", "1", now=0.5) is not None
    assert d.note("a", "2", now=1.0) is None
    assert d.note("b", "2", now=1.0) is None


def test_flush_reports_the_tail_of_a_burst():
    d = DropLimiter(interval=10.0)
    d.note("short", "x", now=0.0)
    d.note("short", "y", now=1.0)
    d.note("short", "z", now=2.0)
    assert d.flush(now=9.9) == []
    assert d.flush(now=10.0) == ["dropped.short: 2 more since the last report (last: z)"]
    assert d.flush(now=30.0) == []  # nothing new since


def test_counters_count_every_drop():
    c = Counters(drop_interval=60.0)
    c.inc("rx")
    c.inc("rx", 4)
    c.set("gauge", 7)
    for t in range(100):
        c.drop("truncated", "", now=float(t) / 10)
    assert c.snapshot() == {"rx": 5, "gauge": 7, "dropped.truncated": 100}
    assert c.get("missing") == 0


def test_role_counters_log_with_injected_clock(caplog):
    now = [0.0]
    log = logging.getLogger("test-droplog")
    c = RoleCounters(log, drop_interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test-droplog"):
        for i in range(1000):
            now[0] = i * 0.01       # 1000 drops over 10 s
            c.drop("bad-envelope", f"#{i}")
        now[0] = 10.5
        c.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "dropped.bad-envelope: #0"
    assert lines[1] == "dropped.bad-envelope: 999 more since the last report (last: #999)"
    assert len(lines) == 2
    assert c.get("dropped.bad-envelope") == 1000
