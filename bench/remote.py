"""A node across hosts (issue 16): remote Map-Resolver workers over the CURVE bus.

One bus host (127.0.70.1: the bus listening on TCP 7470..7474, one map_server
shard, one local map_resolver worker) and two satellites (127.0.70.2, 127.0.70.3:
one map_resolver worker each, connected over TCP + CURVE).  All three are on this
machine's loopback, so the "remote" workers share the same 2 cores as everything
else: what is measured is the protocol's cost and the work spread, not the
capacity of more hosts.

- lookups/s: bench/c/lispload saturating the local worker alone (baseline), then
  three lisploads at once, one per worker (1 local + 2 remote); the ratio of the sums;
- propagation delay of a registration to a remote worker: a Map-Register for a new
  proxy-reply prefix sent to the bus host, then Map-Requests to a satellite's
  worker until it answers it (p50/p99 over --changes registrations);
- bytes on the wire per registration change: TCP bytes sent by the bus host's
  TCP sockets to the satellites (``ss -ti`` bytes_sent, CURVE and ZMTP framing
  included) during --changes registrations, minus the idle rate (heartbeats)
  measured over the same time, per change and per satellite.

    .venv/bin/python bench/remote.py [--seconds 3] [--changes 100]

Writes bench/results/remote.json.  A program that reports figures, not a test.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (BUILD, RATE_UNLIMITED, Node, ecm_templates, log, lispload, machine,  # noqa: E402
                      pcts, ratio, register_all, save_json, site_block, udp_exchange,
                      wait_quiet, write_templates)

from bus import curve  # noqa: E402
from tests.unit.msfixtures import ecm_request, register  # noqa: E402

HOSTS = ["127.0.70.1", "127.0.70.2", "127.0.70.3"]
CLIENTS = ["127.0.71.1", "127.0.71.2", "127.0.71.3"]
PORT = 7470
SECRET = "bench-secret"
PREFIXES = 256
# no per-source or per-destination limit: every lispload is one ITR-RLOC
UNLIMITED = RATE_UNLIMITED + "reply_rate_limit = 10000000\nreply_rate_burst = 10000000\n"


def bus_body(keys: Path) -> str:
    return (f"[roles]\nmap_resolver = {{ workers = 1 }}\nmap_server = {{ shards = 1 }}\n"
            f'[bus]\nlisten = "tcp://{HOSTS[0]}:{PORT}"\nsecret_key_file = "{keys}/bus.secret"\n'
            f'allowed_keys = ["{keys}/sat1.public", "{keys}/sat2.public"]\nhost = "bench-bus"\n'
            + UNLIMITED + site_block("bench", SECRET, ["10.0.0.0/8"]))


def sat_body(keys: Path, k: int) -> str:
    return (f"[roles]\nmap_server = {{ shards = 1 }}\n"
            f'[bus]\nconnect = "tcp://{HOSTS[0]}:{PORT}"\nserver_key = "{keys}/bus.public"\n'
            f'secret_key_file = "{keys}/sat{k}.secret"\nhost = "bench-sat{k}"\n'
            f'run = ["map_resolver:{k}"]\n'
            + UNLIMITED + site_block("bench", SECRET, ["10.0.0.0/8"]))


def reg(prefix: str, nonce: int) -> bytes:
    return register([prefix], nonce=nonce, key=SECRET.encode(), proxy=True, rlocs=("192.0.2.9",))


def tcp_bytes_sent(port_lo: int, port_hi: int) -> int:
    """Bytes sent so far by the established TCP sockets bound to local ports
    port_lo..port_hi (the bus host's side), from ``ss -ti``."""
    r = subprocess.run(["ss", "-tinH", "state", "established",
                        f"( sport >= :{port_lo} and sport <= :{port_hi} )"],
                       capture_output=True, text=True, timeout=10)
    return sum(int(m) for m in re.findall(r"bytes_sent:(\d+)", r.stdout))


def lookups(seconds: float, tfiles: list, noff: int, uoff: int, targets: list[int]) -> dict:
    """lispload against the workers of ``targets`` (indices into HOSTS) at once."""
    results: dict = {}

    def run(i: int) -> None:
        results[i] = lispload(HOSTS[i], tfiles[i], src=CLIENTS[i], window=64, seconds=seconds,
                              nonce_off=noff, udp_off=uoff)
    threads = [threading.Thread(target=run, args=(i,)) for i in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    total = sum(results[i]["reply_rate"] for i in targets if i in results)
    return {"reply_rate_total": round(total), "per_worker": {HOSTS[i]: round(results[i]["reply_rate"])
                                                             for i in targets if i in results},
            "cpu_pct": {HOSTS[i]: results[i]["cpu_pct"] for i in targets if i in results}}


def propagation(changes: int, base_nonce: int) -> dict:
    delays, missed = [], 0
    for i in range(changes):
        prefix = f"10.250.{i % 256}.0/24"
        t0 = time.perf_counter()
        udp_exchange((HOSTS[0], 4342), reg(prefix, base_nonce + i), src=CLIENTS[0], timeout=0.0001)
        deadline = t0 + 5.0
        while time.perf_counter() < deadline:
            data = udp_exchange((HOSTS[1], 4342), lambda p: ecm_request(
                f"10.250.{i % 256}.1", itr=CLIENTS[1], sport=p), src=CLIENTS[1], timeout=0.05)
            if data and len(data) > 28 and _positive(data):
                delays.append(time.perf_counter() - t0)
                break
        else:
            missed += 1
    p = pcts([d * 1e3 for d in delays], ps=(50, 90, 99))
    return {"ms": {k: (round(v, 2) if k != "n" else v) for k, v in p.items()}, "missed": missed}


def _positive(data: bytes) -> bool:
    from common.wire.messages import MapReply, decode_message
    m = decode_message(data)
    return isinstance(m, MapReply) and bool(m.records) and bool(m.records[0].locators)


def wire_bytes(changes: int, base_nonce: int) -> dict:
    # idle: heartbeats only, over a fixed time
    idle_s = 5.0
    b0 = tcp_bytes_sent(PORT, PORT + 4)
    time.sleep(idle_s)
    idle_rate = (tcp_bytes_sent(PORT, PORT + 4) - b0) / idle_s
    regs = [reg(f"10.251.{i // 256}.{i % 256}/32", base_nonce + i) for i in range(changes)]
    t0 = time.monotonic()
    b0 = tcp_bytes_sent(PORT, PORT + 4)
    ok = register_all((HOSTS[0], 4342), CLIENTS[0], regs, timeout=60)
    time.sleep(1.0)                        # the last deltas leave
    dt = time.monotonic() - t0
    sent = tcp_bytes_sent(PORT, PORT + 4) - b0
    extra = sent - idle_rate * dt
    return {"changes": changes, "acknowledged": ok, "seconds": round(dt, 2),
            "bytes_sent": sent, "idle_bytes_per_s": round(idle_rate),
            "bytes_per_change_all_satellites": round(extra / max(1, ok)),
            "bytes_per_change_per_satellite": round(extra / max(1, ok) / 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--changes", type=int, default=100)
    args = ap.parse_args()
    keys = Path(tempfile.mkdtemp(prefix="rk", dir="/tmp"))
    for name in ("bus", "sat1", "sat2"):
        curve.keygen(str(keys), name)
    nodes = [Node("rb", HOSTS[0], bus_body(keys))] + \
            [Node("rb", HOSTS[k], sat_body(keys, k)) for k in (1, 2)]
    doc: dict = {"note": "bus host and both satellites on one machine's loopback: the 'remote' "
                         "workers share its cores (2, shared with other engineers' work)"}
    try:
        for n in nodes:
            n.up()
        log(f"registering {PREFIXES} proxy-reply prefixes")
        prefixes = [f"10.{i // 256}.{i % 256}.0/24" for i in range(PREFIXES)]
        nonce = int(time.time()) << 8
        regs = [reg(p, nonce + i) for i, p in enumerate(prefixes)]
        doc["registered"] = register_all((HOSTS[0], 4342), CLIENTS[0], regs)
        eids = [f"10.{(i * 7919 % PREFIXES) // 256}.{(i * 7919 % PREFIXES) % 256}.{1 + i % 250}"
                for i in range(1024)]
        tfiles, noff, uoff = [], 0, 0
        for i in range(3):
            msgs, noff, uoff = ecm_templates(eids, CLIENTS[i])
            tfiles.append(write_templates(BUILD / f"remote-{i}.bin", msgs))
        for k in (1, 2):                   # every worker answers before the load
            ok = any(udp_exchange((HOSTS[k], 4342), lambda p, k=k: ecm_request(
                "10.0.0.1", itr=CLIENTS[k], sport=p), src=CLIENTS[k], timeout=0.5)
                for _ in range(60))
            if not ok:
                raise RuntimeError(f"worker on {HOSTS[k]} does not answer")
        doc["quiet_before"] = wait_quiet(30.0)
        log("lookups/s: the local worker alone")
        one = lookups(args.seconds, tfiles, noff, uoff, [0])
        log(f"  {one['reply_rate_total']:,} replies/s  cpu {one['cpu_pct']}")
        log("lookups/s: 1 local + 2 remote workers, loaded at once")
        three = lookups(args.seconds, tfiles, noff, uoff, [0, 1, 2])
        log(f"  {three['reply_rate_total']:,} replies/s  {three['per_worker']}")
        doc["lookups"] = {"one_local": one, "one_local_two_remote": three,
                          "ratio": ratio(three["reply_rate_total"], one["reply_rate_total"])}
        log(f"  ratio (1 local + 2 remote) / (1 local): {doc['lookups']['ratio']}")
        log(f"propagation of a registration to a remote worker ({args.changes} changes)")
        doc["propagation"] = propagation(args.changes, nonce + 100_000)
        log(f"  {doc['propagation']}")
        log("bytes on the wire per registration change")
        doc["wire"] = wire_bytes(args.changes, nonce + 200_000)
        log(f"  {doc['wire']}")
    finally:
        for n in reversed(nodes):
            n.down()
        subprocess.run(["rm", "-rf", str(keys)], timeout=30)
    doc["machine"] = machine()
    save_json("remote", doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
