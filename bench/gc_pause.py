"""The map_server shard's garbage-collection pauses as registrations are made live.

In process: ``--count`` new registrations (sealed Map-Registers, checked by the edge
gate first, unmeasured) through ``MapServer.handle_batch`` in groups of 1,024 (524,288 distinct prefixes: beyond, a registration replaces one), with
the collector set as the shard sets it after its reload (``gc.freeze()`` of what is
there, then ``gc.set_threshold(GC_YOUNG, middle, 100)``), once per generation-1
threshold given, each in a fresh process. Prints per generation how many collections
ran, the longest and the total pause (``gc.callbacks``), and the CPU of the whole run,
with the shard's former setting (50) as the baseline of the same run.  Not in
``bench/run.sh``'s default set: ``.venv/bin/python bench/gc_pause.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]


def one(n: int, middle: int) -> dict:
    from common.machines.mapserver import MapServer
    from common.machines.regedge import RegisterGate
    from common.machines.sites import SiteTable
    from register import CLIENT, registers, site_policies
    from roles.map_server import GC_YOUNG

    sites = site_policies()
    ms = MapServer(sites, lifetime=3600)
    gate = RegisterGate(SiteTable(sites), rate=1e9, burst=1e9)
    gc.disable()
    base, chunks = time.time_ns(), []
    for s in range(0, n, 50_000):
        msgs = registers(min(50_000, n - s), base + s, start=s)
        chunks.append([(m, (CLIENT, 5000), gate.check(m, (CLIENT, 5000), 1.0)[2], None) for m in msgs])
    gc.collect()
    gc.freeze()                      # as the shard after its reload
    pauses: dict = {0: [], 1: [], 2: []}
    started: list = []

    def on_gc(phase, info) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        else:
            pauses[info["generation"]].append(time.perf_counter() - started.pop())

    gc.set_threshold(GC_YOUNG, middle, 100)
    gc.enable()
    gc.callbacks.append(on_gc)
    c0 = time.process_time()
    for items in chunks:
        for k in range(0, len(items), 1024):
            ms.handle_batch(items[k:k + 1024], 1.0, commit=lambda _c, _n: None)
    cpu = time.process_time() - c0
    gc.callbacks.remove(on_gc)
    return {"middle": middle, "registrations": len(ms.table), "cpu_s": round(cpu, 2),
            "gens": {g: {"collections": len(p), "max_ms": round(1000 * max(p or [0.0]), 1),
                         "total_ms": round(1000 * sum(p), 1)} for g, p in pauses.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=600_000, help="registrations made live")
    ap.add_argument("--middle", default="50,5", help="generation-1 thresholds, the baseline first")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.count, args.one)))
        return 0
    from benchlib import log, save_json
    doc: dict = {"count": args.count, "runs": []}
    for m in (int(x) for x in args.middle.split(",")):
        r = subprocess.run([sys.executable, __file__, "--count", str(args.count), "--one", str(m)],
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            log(f"middle {m}: failed: {r.stderr.strip()[-300:]}")
            return 1
        res = json.loads(r.stdout)
        doc["runs"].append(res)
        g = res["gens"]
        log(f"generation-1 threshold {m:>3}: {res['registrations']:,} registrations, CPU {res['cpu_s']} s; "
            + "; ".join(f"gen{k}: {v['collections']} collections, longest {v['max_ms']} ms, total {v['total_ms']} ms"
                        for k, v in g.items()))
    base, last = doc["runs"][0], doc["runs"][-1]
    longest = [max(v["max_ms"] for v in r["gens"].values()) for r in (base, last)]
    total = [sum(v["total_ms"] for v in r["gens"].values()) for r in (base, last)]
    doc["longest_pause_ratio"] = round(longest[0] / max(longest[1], 0.1), 2)
    doc["total_gc_time_ratio"] = round(total[1] / max(total[0], 0.1), 3)
    log(f"longest pause: {longest[0]} -> {longest[1]} ms ({doc['longest_pause_ratio']}x shorter); "
        f"total GC time {total[0]:.0f} -> {total[1]:.0f} ms ({doc['total_gc_time_ratio']}x)")
    save_json("gc_pause", doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
