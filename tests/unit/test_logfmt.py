"""Role log lines as text or JSON ([node] log_format), the drop log's limits in both."""

from __future__ import annotations

import io
import json
import re

import pytest

from bus.counters import RoleCounters
from common.config import ConfigError, parse_config
from roles.logfmt import make_logger

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


def lines(buf: io.StringIO) -> list[str]:
    return buf.getvalue().splitlines()


def test_json_line_has_the_documented_keys():
    buf = io.StringIO()
    log = make_logger("etr", 0, "info", "json", "n1", stream=buf)
    log.info("starting (pid %d, session %s)", 42, "ab")
    log.debug("not shown at info")
    [line] = lines(buf)
    obj = json.loads(line)
    assert set(obj) == {"time", "node", "role", "instance", "level", "event", "message", "fields"}
    assert TIME.match(obj["time"])
    assert (obj["node"], obj["role"], obj["instance"], obj["level"]) == ("n1", "etr", 0, "info")
    assert obj["event"] == "starting (pid %d, session %s)"
    assert obj["message"] == "starting (pid 42, session ab)"
    assert obj["fields"] == {}


def test_json_extra_fields_and_exceptions_stay_on_one_line():
    buf = io.StringIO()
    log = make_logger("map_server", 2, "debug", "json", "n1", stream=buf)
    log.info("committed", extra={"event": "commit", "fields": {"eid": "10.1.0.0/16", "n": 3}})
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("handler failed")
    first, second = (json.loads(x) for x in lines(buf))
    assert first["event"] == "commit" and first["fields"] == {"eid": "10.1.0.0/16", "n": 3}
    assert second["level"] == "error" and second["instance"] == 2
    assert "ValueError: boom" in second["fields"]["exception"]


def test_drop_log_keeps_its_limit_in_json():
    buf = io.StringIO()
    now = [0.0]
    counters = RoleCounters(make_logger("map_resolver", 1, "info", "json", "n1", stream=buf),
                            drop_interval=10.0, clock=lambda: now[0])
    for i in range(5):                       # a burst: one line, at the first drop
        now[0] = i * 0.5
        counters.drop("bad-packet", f"from 192.0.2.{i}")
    assert len(lines(buf)) == 1
    counters.flush()                          # interval not over: nothing
    assert len(lines(buf)) == 1
    now[0] = 10.0
    counters.flush()                          # the burst's tail, counted
    first, tail = (json.loads(x) for x in lines(buf))
    assert first["event"] == tail["event"] == "dropped" and first["level"] == "warning"
    assert first["fields"] == {"reason": "bad-packet", "count": 1, "detail": "from 192.0.2.0"}
    assert tail["fields"] == {"reason": "bad-packet", "count": 4, "detail": "from 192.0.2.4"}
    assert tail["message"] == "dropped.bad-packet: 4 more since the last report (last: from 192.0.2.4)"
    assert counters.get("dropped.bad-packet") == 5


def test_text_format_is_unchanged():
    buf = io.StringIO()
    counters = RoleCounters(make_logger("etr", 0, "info", "text", "n1", stream=buf),
                            clock=lambda: 0.0)
    counters.drop("bad-punt", "short")
    [line] = lines(buf)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} etr:0 WARNING dropped.bad-punt: short",
                        line)


def test_config_log_format():
    base = {"node": {"name": "n1", "rlocs": ["127.0.0.1"], "state_dir": "s"}}
    assert parse_config(base, "x.toml", "/etc").node.log_format == "text"
    base["node"]["log_format"] = "json"
    assert parse_config(base, "x.toml", "/etc").node.log_format == "json"
    base["node"]["log_format"] = "xml"
    with pytest.raises(ConfigError) as e:
        parse_config(base, "x.toml", "/etc")
    assert e.value.key_path == "node.log_format" and "'text', 'json'" in e.value.reason
