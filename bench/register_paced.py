"""Paced refreshes: what a node achieves when ETRs refresh at a steady rate (issue 10).

``register.py`` measures saturation with a window of Map-Registers in flight; ETRs
that refresh every minute arrive paced instead, one or two per event-loop turn, and
each then pays a bus message and a SQLite transaction of its own unless the worker
and the shard let a batch gather (roles/coalesce.py).  This program runs one node
(2 map_resolver workers, 1 map_server shard, the sites of ``register.py``), registers
``--count`` registrations, then offers refreshes of them open loop (lispload paced)
at each of ``--rates`` for ``--seconds``: achieved Map-Notifies/s, loss, p50 / p99,
the CPU of the node's processes, and the shard's Map-Registers per group and the
workers' per bus message over the step (their counters).

``--windows 1024,4096``: closed-loop steps as well (after the paced ones): that many
Map-Registers kept in flight for ``--seconds`` each (``register.py``'s saturation),
with the same figures.

``--against DIR``: another checkout (e.g. ``git worktree add /tmp/before HEAD~1``):
the node runs from each tree in turn (rounds alternate), so before and after are
measured in the same run.

    flock /tmp/lisp-bench.lock .venv/bin/python bench/register_paced.py [--against DIR]
        [--rates 2000,5000,8000,11000] [--rounds 2]

Writes bench/results/register_paced.json.  Figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _counter(c: dict, prefix: str, name: str) -> int:
    return sum(v.get(name, 0) for k, v in c.items() if k.startswith(prefix))


def one_tree(root: str, rates: list[float], seconds: float, count: int, windows: list[int] = ()) -> dict:
    """The node from ``root``'s code; the sweep (run in a child process of that tree)."""
    sys.path[:0] = [root, str(Path(root) / "bench")]
    from benchlib import BUILD, Node, lispload, ms, write_templates
    from register import CLIENT, node_body, registers
    rloc = "127.0.67.1"
    BUILD.mkdir(parents=True, exist_ok=True)     # (a fresh worktree has none)
    out: dict = {"root": root, "steps": []}
    with Node("benchpaced", rloc, node_body(1)) as node:
        node.up()
        node.wait_in_sync(2, timeout=30)
        watch = {k.replace("map_server", "ms").replace("map_resolver", "mr"): v["pid"]
                 for k, v in node.status().items() if v.get("pid") and k.startswith(("map_", "bus"))}
        base = time.time_ns()
        tnew = write_templates(BUILD / "paced-new.bin", registers(count, base))
        r = lispload(rloc, tnew, src=CLIENT, window=256, seconds=60, raw=True, base=base, sockets=8,
                     warmup=0, drain=1.0, timeout_ms=1000)
        out["registered"] = r["received"]
        steps = [("rate", x) for x in rates] + [("window", w) for w in windows]
        for k, (how, rate) in enumerate(steps):
            # a window's step gets templates for 40,000/s: each nonce is sent once
            n = int((rate if how == "rate" else 40000) * (seconds + 0.5)) + 10
            b = base + (1 + k) * 10 ** 9
            tfile = write_templates(BUILD / "paced-refresh.bin", registers(n, b, cycle=count))
            c0 = node.counters()
            r = lispload(rloc, tfile, src=CLIENT, raw=True, base=b, sockets=8, warmup=0.3, drain=1.0,
                         timeout_ms=1000, watch=watch, seconds=seconds,
                         **({"rate": rate} if how == "rate" else {"window": int(rate)}))
            c1 = node.counters()
            groups = _counter(c1, "map_server", "register.groups") - _counter(c0, "map_server", "register.groups")
            recv = _counter(c1, "map_server", "received") - _counter(c0, "map_server", "received")
            batches = (_counter(c1, "map_resolver", "register.batches")
                       - _counter(c0, "map_resolver", "register.batches"))
            lat = r["latency_ns"]
            step = {("offered" if how == "rate" else "window"): rate, "achieved": r["reply_rate"], "loss": r["loss"],
                    "p50_ms": ms(lat.get("p50")), "p99_ms": ms(lat.get("p99")), "cpu_pct": r["cpu_pct"],
                    "per_group": round(recv / groups, 1) if groups else None,
                    "per_message": round(recv / batches, 1) if batches else None,
                    # CPU per acknowledged refresh, us, per process and for the machine
                    "us_each": {k: round(1e4 * v / r["reply_rate"], 1) for k, v in r["cpu_pct"].items()
                                if k != "not_ours"} if r["reply_rate"] else {}}
            out["steps"].append(step)
            print(f"  {root}: {'offered' if how == 'rate' else 'window'} {rate:>7,.0f}{'/s' if how == 'rate' else ''} achieved {step['achieved']:>7,.0f}/s loss "
                  f"{100 * step['loss']:.2f}% p50 {step['p50_ms']} p99 {step['p99_ms']} ms; per group "
                  f"{step['per_group']}, per worker message {step['per_message']}; cpu {step['cpu_pct']}; "
                  f"us each {step['us_each']}",
                  file=sys.stderr, flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", default="2000,5000,8000,11000", help="offered refreshes/s, in order")
    ap.add_argument("--windows", default="", help="closed-loop steps too: Map-Registers in flight, e.g. 1024,4096")
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per rate")
    ap.add_argument("--count", type=int, default=20000, help="registrations refreshed")
    ap.add_argument("--rounds", type=int, default=1, help="rounds (per tree with --against)")
    ap.add_argument("--against", metavar="DIR", help="another checkout: alternate rounds, before vs this tree")
    ap.add_argument("--one", metavar="ROOT", help=argparse.SUPPRESS)    # a child: one tree's sweep
    args = ap.parse_args()
    rates = [float(x) for x in args.rates.split(",") if x]
    windows = [int(x) for x in args.windows.split(",") if x]
    if args.one:
        print(json.dumps(one_tree(args.one, rates, args.seconds, args.count, windows)))
        return 0
    trees = [("before", args.against), ("after", str(HERE.parent))] if args.against else \
        [("this tree", str(HERE.parent))]
    rounds: dict = {label: [] for label, _ in trees}
    for r in range(args.rounds):
        for label, root in trees:
            # this program in every tree (the node's code is the tree's: one_tree)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--one", root,
                   "--rates", args.rates, "--windows", args.windows, "--seconds", str(args.seconds), "--count", str(args.count)]
            res = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, text=True, timeout=1800)
            if res.returncode != 0:
                raise SystemExit(f"round in {root} failed")
            rounds[label].append(json.loads(res.stdout.strip().splitlines()[-1]))
    doc = {"rates": rates, "windows": windows, "seconds": args.seconds, "count": args.count, "trees": dict(trees), "rounds": rounds}
    for i, rate in enumerate(rates + windows):
        row = {label: max((x["steps"][i] for x in got), key=lambda s: s["achieved"]) for label, got in rounds.items()}
        print((f"offered {rate:>7,.0f}/s: " if i < len(rates) else f"window {rate:>7,}: ") + "; ".join(
            f"{label} {s['achieved']:,.0f}/s p50 {s['p50_ms']} p99 {s['p99_ms']} ms, per group {s['per_group']}"
            for label, s in row.items()))
    sys.path.insert(0, str(HERE))
    from benchlib import save_json
    save_json("register_paced", doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
