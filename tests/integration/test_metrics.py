"""The metrics role on a real node: /metrics over HTTP, parsed with prometheus_client's
parser; counters move after a lig, drops carry their reason, restarts are counted.
The same node logs in JSON ([node] log_format), checked on its log files."""

from __future__ import annotations

import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import SECRET, Node, poll, udp_exchange

pytestmark = pytest.mark.integration

RLOC = "127.0.41.1"
PORT = 9464

BODY = f"""
[metrics]
listen = "{RLOC}:{PORT}"

[roles]
map_resolver = {{ workers = 2 }}
etr = true
itr = true

[[site]]
name = "lab"
[[site.key]]
id = 0
alg = "hmac-sha-256-128"
secret = "{SECRET}"
[[site.prefix]]
eid = "10.1.0.0/16"
accept_more_specifics = true

[[database_mapping]]
eid = "10.1.1.0/24"

[etr]
map_servers = [{{ address = "{RLOC}", key_id = 0, alg = "hmac-sha-256-128", secret = "{SECRET}" }}]
"""

INSTANCES = ["bus:0", "map_server:0", "map_resolver:0", "map_resolver:1", "etr:0", "itr:0",
             "metrics:0", "watchdog:0"]


@pytest.fixture(scope="module")
def node():
    n = Node("itmetrics", RLOC, BODY, node='log_format = "json"')
    try:
        n.up()
        poll(n.all_running, 20, what="every role RUNNING")
        n.wait_lig("10.1.1.7", "[0]10.1.1.0/24")
        yield n
    finally:
        n.down()


def scrape() -> dict:
    """{(sample name, frozenset(labels)): value} from the node's /metrics."""
    with urllib.request.urlopen(f"http://{RLOC}:{PORT}/metrics", timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        assert fam.name.startswith("lisp_decent_"), fam.name
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(got: dict, name: str, **labels) -> float:
    """Sum of ``name`` over the samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in got.items() if n == name and want <= lab)


def inst(key: str) -> dict:
    role, n = key.split(":")
    return {"role": role, "instance": n}


def test_every_instance_is_up(node):
    def all_up():
        got = scrape()
        return all(total(got, "lisp_decent_up", **inst(k)) == 1 for k in INSTANCES) and got
    got = poll(all_up, 10, 0.5, "lisp_decent_up == 1 for every instance")
    for k in INSTANCES:
        assert total(got, "lisp_decent_process_uptime_seconds", **inst(k)) > 0
        assert total(got, "lisp_decent_process_restarts_total", **inst(k)) == 0
    assert total(got, "lisp_decent_node_info", node="itmetrics") == 1


def test_counters_move_after_a_lig(node):
    before = scrape()
    rx0 = total(before, "lisp_decent_received_total", role="map_resolver")
    fwd0 = total(before, "lisp_decent_forwarded_total", role="map_resolver")
    assert node.lig("10.1.1.9") is not None

    def moved():
        got = scrape()
        return (total(got, "lisp_decent_received_total", role="map_resolver") > rx0
                and total(got, "lisp_decent_forwarded_total", role="map_resolver") > fwd0
                and got)
    got = poll(moved, 10, 0.5, "map_resolver received/forwarded counters to move")
    assert total(got, "lisp_decent_registrations", role="map_server") >= 1      # gauge
    assert total(got, "lisp_decent_in_sync", **inst("map_resolver:0")) == 1
    assert total(got, "lisp_decent_register_accepted_total", role="map_server") >= 1
    # the other worker's gauge: its replica took the registration, which its next
    # heartbeat carries (the lig may have reached either worker; in the clean-clone
    # CI it was read before that heartbeat: 0.0)
    poll(lambda: total(scrape(), "lisp_decent_registrations", **inst("map_resolver:1")) >= 1, 10, 0.5,
         "map_resolver:1's registrations gauge")


def test_drops_carry_their_reason(node):
    before = total(scrape(), "lisp_decent_dropped_total", role="map_resolver")
    assert udp_exchange((RLOC, 4342), b"\xf0garbage", src=RLOC, timeout=0.3) is None

    def dropped():
        got = scrape()
        return total(got, "lisp_decent_dropped_total", role="map_resolver") > before and got
    got = poll(dropped, 10, 0.5, "a map_resolver drop to show")
    reasons = {dict(lab).get("reason") for (n, lab), v in got.items()
               if n == "lisp_decent_dropped_total" and dict(lab)["role"] == "map_resolver"}
    assert reasons and None not in reasons


def test_restart_is_counted(node):
    node.decent("restart", "etr", check=True)

    def counted():
        got = scrape()
        return (total(got, "lisp_decent_process_restarts_total", **inst("etr:0")) == 1
                and total(got, "lisp_decent_up", **inst("etr:0")) == 1)
    poll(counted, 15, 0.5, "etr restart to be counted")


def test_logs_are_json_lines(node):
    """[node] log_format = "json": every line a role wrote is one JSON object naming the
    node, role and instance; the drop from test_drops_carry_their_reason is structured."""
    drops = []
    for key in INSTANCES:
        role, n = key.split(":")
        path = node.dir / "st" / "logs" / f"{role}_{n}.log"
        text = path.read_text()
        assert text.strip(), f"{path} is empty"
        for line in text.splitlines():
            obj = json.loads(line)
            assert (obj["node"], obj["role"], obj["instance"]) == ("itmetrics", role, int(n))
            assert {"time", "level", "event", "fields"} <= set(obj)
            if obj["event"] == "dropped":
                drops.append(obj)
    assert any(d["role"] == "map_resolver" and d["fields"]["reason"] and d["fields"]["count"] >= 1
               for d in drops), drops
