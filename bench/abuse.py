"""What one spoofed Map-Request can make a node send, and what a spoofed flood sends to one victim.

In process (common.machines.resolver.Resolver, the worker's decisions), no node:

- amplification: a proxy /16 with k proxy more-specific /32s (k = 0..300) and a
  one-record ECM Map-Request for an EID in the /16: the reply's bytes over the
  request's, with the path MTU bound (map_resolver.path_mtu, default 1,400) and, as
  the baseline, the full RFC 9301 5.5 answer the resolver sent before (the match
  plus every more-specific in one Map-Reply, whatever its size);
- spoofed flood: requests from 10,000 rotating source addresses, all naming one
  victim as ITR-RLOC, as fast as one process can handle them for --seconds of
  wall clock: Map-Replies/s to the victim with the per-destination limit (a
  TokenTable, default 1,000/s, burst 2,000) and without it (the baseline: every
  request answered; the per-source limit never bites with this many sources).

    .venv/bin/python bench/abuse.py [--seconds 3]

Writes bench/results/abuse.json.  A program that reports figures, not a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from ipaddress import IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import log, machine, save_json  # noqa: E402

from common.machines.mapserver import MapServer  # noqa: E402
from common.machines.ratelimit import TokenTable  # noqa: E402
from common.machines.regtable import PrefixSet  # noqa: E402
from common.machines.resolver import Resolver, Send  # noqa: E402
from common.wire.eidtext import parse_eidspec  # noqa: E402
from common.wire.records import encode_record  # noqa: E402
from tests.unit.msfixtures import ecm_request, register, site  # noqa: E402

SRC = ("127.0.0.1", 40000)


def node_with(k: int, mtu: int = 1400):
    ms = MapServer([site(prefixes=(("[0]10.1.0.0/16", True),))])
    assert ms.handle_register(register(["[0]10.1.0.0/16"], nonce=1, proxy=True), SRC, 0).accepted
    net = IPv4Network("10.1.0.0/16")
    for b in range(0, k, 50):
        specs = [f"[0]{net.network_address + 1 + i * 211}/32" for i in range(b, min(k, b + 50))]
        assert ms.handle_register(register(specs, nonce=100 + b, proxy=True, rlocs=("192.0.2.9",)),
                                  SRC, 0).accepted
    r = Resolver(ms.table, PrefixSet([p for s in ms.site_table for p, _ in s.prefixes]), mtu=mtu,
                 rate=1e9, burst=1e9)
    r.in_sync = True
    return ms, r


def amplification() -> dict:
    req = ecm_request("10.1.255.254")
    rows = []
    for k in (0, 1, 10, 20, 40, 45, 46, 47, 48, 49, 50, 100, 200, 300):
        ms, r = node_with(k)
        [a] = r.handle(req, SRC, "127.0.0.1", 0.0)
        assert isinstance(a, Send)
        m = ms.table.lookup(parse_eidspec("10.1.255.254"))   # the match and its more-specifics
        full = 12 + sum(len(encode_record(r._proxy_record(p, es))) for p, es in m.prefixes)
        rows.append({"more_specifics": k, "request_bytes": len(req), "reply_bytes": len(a.data),
                     "records": a.data[3], "ratio": round(len(a.data) / len(req), 2),
                     "full_answer_bytes": full, "full_ratio": round(full / len(req), 2)})
        log(f"k={k:3d}: reply {len(a.data):5d} B ({a.data[3]} records), ratio {rows[-1]['ratio']:6.2f}; "
            f"full answer {full:6d} B, ratio {rows[-1]['full_ratio']:7.2f}")
    return {"rows": rows, "max_ratio": max(x["ratio"] for x in rows),
            "max_full_ratio": max(x["full_ratio"] for x in rows)}


def flood(seconds: float, limited: bool) -> dict:
    _, r = node_with(0)
    if limited:
        r.dest_limiter = TokenTable(bytearray(TokenTable.size(65536)), 0, 65536, 1000.0, 2000.0, bytes(32))
    req = ecm_request("10.1.2.3", itr="127.0.0.99")
    sent = handled = 0
    t0 = time.monotonic()
    per_second = []
    mark, count_at_mark = t0 + 1.0, 0
    while True:
        now = time.monotonic()
        if now >= t0 + seconds:
            break
        for i in range(200):
            for a in r.handle(req, (f"10.{i}.{handled % 50}.1", 4000 + i), "127.0.0.1", now):
                sent += isinstance(a, Send)
            handled += 1
        if now >= mark:
            per_second.append(sent - count_at_mark)
            count_at_mark, mark = sent, mark + 1.0
    dt = time.monotonic() - t0
    return {"requests": handled, "requests_per_s": round(handled / dt), "replies_to_victim": sent,
            "replies_per_s": round(sent / dt), "per_second": per_second}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    doc = {"machine": machine(), "command": " ".join(sys.argv)}
    doc["amplification"] = amplification()
    base = flood(args.seconds, limited=False)
    lim = flood(args.seconds, limited=True)
    log(f"spoofed flood, no destination limit (baseline): {base['requests_per_s']} requests/s -> "
        f"{base['replies_per_s']} replies/s to the victim")
    log(f"spoofed flood, destination limit 1000/s burst 2000: {lim['requests_per_s']} requests/s -> "
        f"{lim['replies_per_s']} replies/s to the victim (per second: {lim['per_second']})")
    doc["flood"] = {"baseline": base, "limited": lim}
    log(f"wrote {save_json('abuse', doc)}")


if __name__ == "__main__":
    main()
