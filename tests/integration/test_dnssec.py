"""DNSSEC for the pull-mode seeds (RFC 9962 section 6) against a real NSD.

The zone ``sec.test.`` is signed here with dnspython (a fresh ECDSA P-256 key) and
served by nsd on loopback; a node running only the discovery role validates with
the key's DS as its trust anchor.  Shown: validated sets are used; a tampered
answer (a record changed after signing) and an unsigned zone are refused, the last
good set is kept, counted and logged once; a good zone is taken again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from cli.supervise import pid_alive
from roles import nodeconf
from tests.dnssec_zone import ds_text, signed_zone, zone_text
from tests.integration.nsdserver import NsdServer, require_nsd
from tests.integration.test_discovery import counters, decent, log_text, poll, show_seeds

pytestmark = pytest.mark.integration

ORIGIN = "sec.test."
RECORDS = {0: ["127.0.9.1", "fd00::1"], 1: ["127.0.9.3"]}
GOOD = {0: ["127.0.9.1", "fd00::1"], 1: ["127.0.9.3"]}


def table(conf) -> dict:
    return {r["index"]: r for r in show_seeds(conf)}


def is_state(conf, states: dict, forged=("192.0.2.66", "192.0.2.77")):
    rows = table(conf)
    for row in rows.values():  # whatever the moment, a forged address is never in a set
        assert not set(row["addrs"]) & set(forged), row
    ok = all(rows[i]["state"] == s and rows[i]["addrs"] == GOOD[i] for i, s in states.items())
    return rows if ok else None


def test_validated_sets_used_forged_and_unsigned_refused_set_kept():
    require_nsd()
    z, key = signed_zone(ORIGIN, RECORDS, ns_addr="127.0.53.60")
    good = z.to_text(relativize=False)
    nsd = NsdServer(ORIGIN)
    tmp = Path(tempfile.mkdtemp(prefix="dss", dir="/tmp"))
    conf = tmp / "node.toml"
    pids: set[int] = set()
    try:
        nsd.start(good)
        conf.write_text(f"""
[node]
name = "dnssec{os.getpid()}"
rlocs = ["127.0.9.1"]
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
suffix = "sec.test"
hash_mode = "rfc9962"
hash_mask = "none"
name_servers = ["{nsd.endpoint}"]
resolve_min = 1
resolve_max = 2
query_timeout = 0.5
type_failure_rounds = 100
dnssec = "validate"
trust_anchor = "{ds_text(ORIGIN, key[1])}"
""")
        cfg = nodeconf.load(conf)
        r = decent("up", "-c", str(conf), "--timeout", "30")
        assert r.returncode == 0, r.stdout + r.stderr
        st = json.loads(decent("status", "--json", "-c", str(conf)).stdout)
        pids |= {st["supervisord_pid"]} | {i["pid"] for i in st["roles"].values() if i["pid"]}

        poll(lambda: is_state(conf, {0: "ok", 1: "ok"}), 30, "validated sets used", interval=0.3)
        assert counters(conf).get("dnssec.validated", 0) >= 4

        # tampered: 0's A record changed after signing (its RRSIG no longer matches)
        forged = good.replace("127.0.9.1", "192.0.2.66")
        assert forged != good
        before = counters(conf).get("dnssec.refused", 0)
        nsd.serve(forged)
        # nsd restarts to serve the new zone: a query in that gap times out first, so the
        # reason to wait for is the refusal itself
        def forged_refused():
            rows = is_state(conf, {0: "failing", 1: "ok"})
            return rows if rows and "DNSSEC bogus A for 0.sec.test." in rows[0]["reason"] else None
        poll(forged_refused, 30, "forged A refused, set kept", interval=0.3)
        poll(lambda: counters(conf).get("dnssec.refused", 0) >= before + 3, 30, "refusals counted")
        # logged once, when it started failing (the first reason may be that timeout)
        assert log_text(cfg).count("0.sec.test: resolution failing (A: ") == 1

        # unsigned: the same names without any signature (and a forged address)
        nsd.serve(zone_text(ORIGIN, {0: ["192.0.2.66"], 1: ["192.0.2.77"]}, "127.0.53.60"))
        # as above, a query in nsd's restart gap times out first: wait for the refusal
        def unsigned_refused():
            rows = is_state(conf, {0: "failing", 1: "failing"})
            return rows if rows and "DNSSEC" in rows[1]["reason"] else None
        poll(unsigned_refused, 30, "unsigned answers refused, sets kept", interval=0.3)

        # the signed zone again: validated and used
        nsd.serve(good)
        poll(lambda: is_state(conf, {0: "ok", 1: "ok"}), 30, "good zone taken again", interval=0.3)
    finally:
        decent("down", "-c", str(conf))
        deadline = time.monotonic() + 15
        while any(p > 0 and pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids:
            if pid > 0 and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        nsd.close()
        shutil.rmtree(tmp, ignore_errors=True)
