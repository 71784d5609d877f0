"""Registration service under a Map-Register flood (issue 10 figures).

A node (2 map_resolver workers, 1 map_server shard, the default watchdog) takes a
flood from one source address at the highest rate bench/c/lispload reaches here
(one socket, open loop), for ``--seconds`` (40 by default), of each kind in turn:

- wrong-key: Map-Registers for a configured prefix, signed with a wrong key;
- random-bytes: datagrams of random bytes;
- no-site: well-signed Map-Registers for prefixes in no site.

Meanwhile a legitimate ETR on another address sends a Map-Register 20 times a second
and waits (1 s) for each Map-Notify.  Reported per kind: the flood rate achieved
(the baseline: what the sender reached), the share of the ETR's Map-Registers
acknowledged, role restarts (PIDs before and after), and where the flood was dropped.

    .venv/bin/python bench/register_flood.py [--seconds 40] [--rate 400000]

Writes bench/results/register_flood.json.  Reports figures, not a test.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import Node, build_c, flood_round, log, save_json  # noqa: E402

RLOC, ATTACKER, ETR = "127.0.65.1", "127.0.65.66", "127.0.65.2"
BODY = """
[roles]
map_resolver = { workers = 2 }
map_server = { shards = 1 }

[[site]]
name = "good"
key = [{ id = 0, alg = "hmac-sha-256-128", secret = "good-key" }]
prefix = [{ eid = "10.65.0.0/16", accept_more_specifics = true }]
"""


def kinds() -> dict:
    from tests.unit.msfixtures import register
    return {
        "wrong-key": [register([f"[0]10.65.{i}.0/24"], nonce=i + 1, key=b"forged", xtr=os.urandom(16))
                      for i in range(256)],
        "random-bytes": [os.urandom(40 + (i % 200)) for i in range(256)],
        "no-site": [register([f"[0]10.{100 + (i % 100)}.{i // 100}.0/24"], nonce=i + 1, key=b"good-key")
                    for i in range(256)],
    }


def legitimate(seconds: float, rate: float, out: dict) -> None:
    from tests.unit.msfixtures import register
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ETR, 0))
    sent = acked = 0
    lat = []
    nonce0 = time.time_ns()
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < seconds:
            nonce = nonce0 + sent
            t1 = time.monotonic()
            s.sendto(register(["[0]10.65.1.0/24"], nonce=nonce, key=b"good-key", xtr=b"\x65" * 16,
                              rlocs=(ETR,)), (RLOC, 4342))
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
                if data[0] >> 4 == 4 and int.from_bytes(data[4:12], "big") == nonce:
                    acked += 1
                    lat.append(time.monotonic() - t1)
                    break
            time.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
    finally:
        s.close()
    lat.sort()
    out.update(sent=sent, acked=acked, share=round(acked / sent, 4) if sent else None,
               p50_ms=round(lat[len(lat) // 2] * 1e3, 2) if lat else None,
               p99_ms=round(lat[int(len(lat) * 0.99)] * 1e3, 2) if lat else None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--rate", type=float, default=400000.0, help="offered flood rate (open loop)")
    args = ap.parse_args()
    build_c("lispload")
    doc: dict = {"params": vars(args), "kinds": {}}
    with Node("benchflood", RLOC, BODY) as node:
        node.up()
        node.wait_in_sync(2, timeout=30)
        for kind, payloads in kinds().items():
            legit: dict = {}
            res = flood_round(node, RLOC, ATTACKER, payloads, kind, args.seconds, args.rate,
                              lambda: legitimate(args.seconds, 20.0, legit))
            res["legitimate"] = legit
            res["dropped_at_workers"] = {k: v for k, v in res["counters"].get("map_resolver", {}).items()
                                         if k.startswith("dropped.")}
            res["dropped_at_shard"] = {k: v for k, v in res["counters"].get("map_server", {}).items()
                                       if k.startswith("dropped.")}
            restarts = res["restarts"]
            doc["kinds"][kind] = res
            log(f"  {kind:<12} flood {res['flood_rate']:>9,}/s for {args.seconds:.0f} s: legitimate "
                f"{legit.get('acked')}/{legit.get('sent')} acknowledged ({100 * (legit.get('share') or 0):.2f}%), "
                f"Map-Notify p50 {legit.get('p50_ms')} p99 {legit.get('p99_ms')} ms; restarts {restarts or 0}; "
                f"workers dropped {sum(res['dropped_at_workers'].values()):,}, "
                f"shard dropped {sum(res['dropped_at_shard'].values()):,}")
            time.sleep(2)
    save_json("register_flood", doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
