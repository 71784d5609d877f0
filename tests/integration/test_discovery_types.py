"""The ``discovery`` role behind a resolver that drops every AAAA query (issue 12).

dnsmasq (tests/integration/dnsserver.py) serves the names; in front of it, a small
UDP relay started here passes A queries on and drops AAAA ones, as some resolvers
do.  Before issue 12 such a name was "failing" forever: a new index never got
servers.  With ``type_failure_rounds = 2`` the A records are accepted after two
rounds; ``max_records_per_name = 2`` caps index 0's three A records at the first
two.  Only processes this file started are stopped, by pid.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import dns.message
import dns.rdatatype
import pytest

from cli.supervise import pid_alive
from tests.integration.dnsserver import DnsServer, free_port, require_dnsmasq
from tests.integration.test_discovery import counters, decent, log_text, poll, show_seeds
from roles import nodeconf

pytestmark = pytest.mark.integration

SUFFIX = "ms.aaaa.test"
RECORDS = {0: ["127.0.9.13", "127.0.9.11", "127.0.9.12", "fd00:9::1"], 1: ["127.0.9.21"]}
RELAY = "127.0.53.42"


class AaaaDroppingRelay:
    """UDP DNS relay: A (and any other) queries to ``upstream``, AAAA queries dropped."""

    def __init__(self, upstream: tuple) -> None:
        self.upstream = upstream
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((RELAY, free_port(RELAY)))
        self.port = self.sock.getsockname()[1]
        self.dropped = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.sock], [], [], 0.1)[0]:
                continue
            data, client = self.sock.recvfrom(4096)
            try:
                q = dns.message.from_wire(data)
            except Exception:
                continue
            if q.question and q.question[0].rdtype == dns.rdatatype.AAAA:
                self.dropped += 1
                continue
            up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                up.settimeout(1.0)
                up.sendto(data, self.upstream)
                self.sock.sendto(up.recvfrom(4096)[0], client)
            except OSError:
                pass
            finally:
                up.close()

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self.sock.close()


def test_a_records_accepted_when_aaaa_queries_are_dropped_and_capped():
    require_dnsmasq()
    server = DnsServer(SUFFIX, address="127.0.53.41", ttl=1)
    tmp = Path(tempfile.mkdtemp(prefix="dsa", dir="/tmp"))
    pids: set[int] = set()
    relay = None
    try:
        server.start()
        server.set_records(RECORDS)
        relay = AaaaDroppingRelay((server.address, server.port))
        conf = tmp / "node.toml"
        conf.write_text(f"""
[node]
name = "dtypes{os.getpid()}"
rlocs = ["127.0.9.11"]
state_dir = "state"

[roles]
map_resolver = false
map_server = false
etr = false
itr = false
discovery = true

[decent]
mode = "pull"
modulus = 2
suffix = "{SUFFIX}"
hash_mode = "rfc9962"
hash_mask = "none"
name_servers = ["{RELAY}:{relay.port}"]
resolve_min = 1
resolve_max = 2
query_timeout = 0.5
type_failure_rounds = 2
max_records_per_name = 2
""")
        cfg = nodeconf.load(conf)
        r = decent("up", "-c", str(conf), "--timeout", "30")
        assert r.returncode == 0, r.stdout + r.stderr
        st = json.loads(decent("status", "--json", "-c", str(conf)).stdout)
        pids |= {st["supervisord_pid"]} | {i["pid"] for i in st["roles"].values() if i["pid"]}

        def accepted():
            rows = {row["index"]: row for row in show_seeds(conf)}
            return rows if (rows[0]["addrs"] == ["127.0.9.11", "127.0.9.12"]
                            and rows[1]["addrs"] == ["127.0.9.21"]
                            and all(r["state"] == "ok" for r in rows.values())) else None
        poll(accepted, 60, "A records accepted, index 0 capped at two", interval=0.5)
        assert relay.dropped >= 4          # both names' AAAA queries, at least twice each
        c = counters(conf)
        assert c.get("resolve.type-accepted", 0) >= 2 and c.get("resolve.truncated", 0) >= 1
        log = log_text(cfg)
        assert log.count(f"0.{SUFFIX}: AAAA failed 2 rounds in a row") == 1
        assert log.count("more than max_records_per_name (2)") == 1
    finally:
        decent("down", "-c", str(tmp / "node.toml"))
        deadline = time.monotonic() + 15
        while any(p > 0 and pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids:
            if pid > 0 and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if relay is not None:
            relay.close()
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)
