"""Lookup service under a single-source flood (issue 11 figure).

A node (2 map_resolver workers, 1 map_server shard, the default watchdog) holds one
proxy-reply registration.  One attacking source floods UDP 4342 at the highest rate
bench/c/lispload reaches here (one socket, open loop, so SO_REUSEPORT puts the whole
flood on one worker) for ``--seconds`` (40 by default), with each kind in turn:

- random-bytes: datagrams of random bytes;
- ecm-garbage: ECM headers around bytes that are no Map-Request.

Meanwhile ``--clients`` legitimate ITRs on other addresses (4 by default) each send an
ECM Map-Request 50 times a second, half for the registered EID (a positive, proxy
Map-Reply) and half for an unregistered EID of the site (a negative Map-Reply), and
wait up to 1 s for each answer.  Reported per kind: the flood rate achieved (the
baseline: what the sender reached), the share of legitimate lookups answered and their
latency, role restarts (PIDs before and after), and where the flood was dropped.

    .venv/bin/python bench/lookup_flood.py [--seconds 40] [--rate 400000]

Writes bench/results/lookup_flood.json.  Reports figures, not a test.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import Node, build_c, flood_round, log, save_json  # noqa: E402

RLOC, ATTACKER, ETR = "127.0.67.1", "127.0.67.66", "127.0.67.2"
CLIENT_NET = "127.0.68."
BODY = """
[roles]
map_resolver = { workers = 2 }
map_server = { shards = 1 }

[[site]]
name = "good"
key = [{ id = 0, alg = "hmac-sha-256-128", secret = "good-key" }]
prefix = [{ eid = "10.67.0.0/16", accept_more_specifics = true }]
"""
REGISTERED, UNREGISTERED = "[0]10.67.1.1/32", "[0]10.67.200.1/32"


def kinds() -> dict:
    ecm = bytes([0x80, 0, 0, 0])
    return {
        "random-bytes": [os.urandom(40 + (i % 200)) for i in range(256)],
        "ecm-garbage": [ecm + os.urandom(60 + (i % 100)) for i in range(256)],
    }


def register_proxy() -> bool:
    """One proxy-reply registration, acknowledged before the floods start."""
    from tests.unit.msfixtures import register
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ETR, 0))
    s.settimeout(1.0)
    try:
        for attempt in range(10):
            nonce = time.time_ns()
            s.sendto(register(["[0]10.67.1.0/24"], nonce=nonce, key=b"good-key", proxy=True,
                              rlocs=(ETR,), ttl=1440), (RLOC, 4342))
            try:
                data = s.recv(4096)
            except socket.timeout:
                continue
            if data[0] >> 4 == 4 and int.from_bytes(data[4:12], "big") == nonce:
                return True
        return False
    finally:
        s.close()


def client(k: int, seconds: float, rate: float, out: dict) -> None:
    from tests.unit.msfixtures import ecm_request
    addr = f"{CLIENT_NET}{10 + k}"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    port = s.getsockname()[1]
    sent = answered = positive = 0
    lat = []
    nonce0 = (k + 1) << 40
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < seconds:
            nonce = nonce0 + sent
            spec = REGISTERED if sent % 2 == 0 else UNREGISTERED
            t1 = time.monotonic()
            s.sendto(ecm_request(spec, nonce=nonce, itr=addr, sport=port), (RLOC, 4342))
            sent += 1
            deadline = t1 + 1.0
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                s.settimeout(left)
                try:
                    data = s.recv(4096)
                except socket.timeout:
                    break
                if data[0] >> 4 == 2 and int.from_bytes(data[4:12], "big") == nonce:
                    answered += 1
                    # a positive reply: its first record (byte 12 on) has a locator count > 0
                    positive += spec == REGISTERED and len(data) > 16 and data[16] > 0
                    lat.append(time.monotonic() - t1)
                    break
            time.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
    finally:
        s.close()
    out.update(sent=sent, answered=answered, positive=positive, lat=lat)


def run_clients(n: int, seconds: float, rate: float) -> dict:
    outs = [dict() for _ in range(n)]
    threads = [threading.Thread(target=client, args=(k, seconds, rate, outs[k])) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 30)
    sent = sum(o.get("sent", 0) for o in outs)
    answered = sum(o.get("answered", 0) for o in outs)
    lat = sorted(x for o in outs for x in o.get("lat", ()))
    return {"sent": sent, "answered": answered, "positive": sum(o.get("positive", 0) for o in outs),
            "loss": round(1 - answered / sent, 5) if sent else None,
            "p50_ms": round(lat[len(lat) // 2] * 1e3, 2) if lat else None,
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1e3, 2) if lat else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--rate", type=float, default=400000.0, help="offered flood rate (open loop)")
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    build_c("lispload")
    doc: dict = {"params": vars(args), "kinds": {}}
    with Node("benchlflood", RLOC, BODY) as node:
        node.up()
        node.wait_in_sync(2, timeout=30)
        if not register_proxy():
            log("the proxy registration was not acknowledged: no figures")
            return 1
        time.sleep(1.0)
        doc["quiet"] = run_clients(args.clients, 3.0, 50.0)
        log(f"  no flood (3 s): {doc['quiet']}")
        for kind, payloads in kinds().items():
            res: dict = {}
            out = flood_round(node, RLOC, ATTACKER, payloads, kind, args.seconds, args.rate,
                              lambda: res.update(run_clients(args.clients, args.seconds, 50.0)))
            out["legitimate"] = res
            restarts, drops = out["restarts"], out["counters"].get("map_resolver", {})
            doc["kinds"][kind] = out
            log(f"  {kind:<12} flood {out['flood_rate']:>9,}/s for {args.seconds:.0f} s: legitimate "
                f"{res.get('answered')}/{res.get('sent')} answered (loss {100 * (res.get('loss') or 0):.2f}%), "
                f"p50 {res.get('p50_ms')} p99 {res.get('p99_ms')} ms; restarts {restarts or 0}; "
                f"workers: {drops}")
            time.sleep(2)
    save_json("lookup_flood", doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
