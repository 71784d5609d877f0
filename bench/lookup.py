"""Map-Request -> Map-Reply on a running node, against echo baselines measured in the same run.

Starts a node on 127.0.60.1 (map_resolver workers, one map_server shard, the rate
limit raised), registers --prefixes proxy-reply /24s with authenticated
Map-Registers, then loads it with ECM Map-Requests from bench/c/lispload (a C load
generator compiled here with gcc) for registered EIDs (proxy Map-Replies) and
unregistered ones (negative Map-Replies):

- saturation: replies/s with a window of requests in flight (--windows), with 1
  worker (``decent stop map_resolver:1``) and 2 workers;
- open-loop paced offered rates (1k/s, 10k/s and fractions of the saturation rate):
  achieved replies/s and p50/p99/p99.9 latency; the highest sustained rate is the
  highest offered one answered at >= 98 % with <= 0.1 % loss and a p50 <= 10 ms.

The same with the fast path off (``[map_resolver] fast_path = false``: every request
through the full decode, as before issue 11), on a second node measured first with
one worker: the "before" figures of the same run; and with the Python fast path alone
(``fast_path_c = false``: no C receive loop), on a third node with one worker.  The
main node runs the default: the C receive loop (roles/_fastloop.c) in front of the
Python fast path.

Baselines, same generator, same message sizes (request in, reply out): a bare uvloop
UDP echo (bench/echo_uvloop.py, the practical Python limit) and a C echo
(bench/c/echo.c, recvmmsg/sendmmsg, the machine's limit).  The generator shares the
machine's cores with what it loads: its CPU use is reported beside each figure.
Also an in-process profile of ``common.machines.resolver.Resolver.handle`` (cProfile).

    .venv/bin/python bench/lookup.py [--seconds 3] [--quick]

Writes bench/results/lookup.json, lookup_throughput.png, lookup_latency.png.
A program that reports figures, not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (BUILD, PY, RATE_UNLIMITED, REPO, Node, build_c, ecm_templates, log,  # noqa: E402
                      lispload_quiet, machine, ms, py_spy, pyplot, ratio, register_all, save_json, site_block,
                      udp_exchange, wait_quiet, write_templates)

RLOC = "127.0.60.1"          # the node
RLOC_FULL = "127.0.60.2"     # the same node with the fast path off (the full path: before)
RLOC_PYFAST = "127.0.60.3"   # the same node with the Python fast path only (fast_path_c = false)
CLIENT = "127.0.61.1"        # the load generator (ITR-RLOC of every request)
ECHO_C = "127.0.62.1"        # C echo baseline
ECHO_PY = "127.0.62.2"       # uvloop echo baseline
SECRET = "bench-secret"


def node_body(workers: int, fast: bool = True, c: bool = True) -> str:
    return (f"[roles]\nmap_resolver = {{ workers = {workers} }}\nmap_server = {{ shards = 1 }}\n"
            + RATE_UNLIMITED + "reply_rate_limit = 10000000\nreply_rate_burst = 10000000\n"
            + ("" if fast else "fast_path = false\n") + ("" if c else "fast_path_c = false\n")
            + site_block("bench", SECRET, ["10.0.0.0/8", "2001:db8::/32"]))


def registered_prefixes(n: int) -> list[str]:
    return [f"[0]10.{i // 256}.{i % 256}.0/24" for i in range(n)]


def templates(n_prefixes: int, count: int = 1024):
    """(positive msgs, negative msgs, nonce offset, udp offset)."""
    pos = [f"10.{(i * 7919 % n_prefixes) // 256}.{(i * 7919 % n_prefixes) % 256}.{1 + i % 250}"
           for i in range(count)]
    neg = [f"10.{200 + i % 50}.{(i * 31) % 256}.{1 + i % 250}" for i in range(count)]
    p, noff, uoff = ecm_templates(pos, CLIENT)
    q, noff2, uoff2 = ecm_templates(neg, CLIENT)
    assert (noff, uoff) == (noff2, uoff2) and len({len(m) for m in p + q}) == 1
    return p, q, noff, uoff


# ------------------------------------------------------------------- running load

class Target:
    """Where the load goes and how to run it."""

    def __init__(self, name: str, addr: str, tfile: Path, noff: int, uoff: int, watch=None,
                 seconds: float = 3.0, sockets: int = 16, attempts: int = 3) -> None:
        self.name, self.addr, self.tfile = name, addr, tfile
        self.noff, self.uoff, self.watch = noff, uoff, watch or {}
        self.seconds, self.sockets, self.attempts = seconds, sockets, attempts

    def run(self, **kw) -> dict:
        kw.setdefault("seconds", self.seconds)
        kw.setdefault("sockets", self.sockets)
        kw.setdefault("attempts", self.attempts)
        return lispload_quiet(self.addr, self.tfile, src=CLIENT, nonce_off=self.noff,
                              udp_off=self.uoff, watch=self.watch, **kw)


def saturation(t: Target, windows) -> dict:
    runs = []
    for w in windows:
        r = t.run(window=w)
        runs.append(r)
        log(f"    {t.name:<28} window {w:>4}: {r['reply_rate']:>10,.0f} replies/s  "
            f"p50 {ms(r['latency_ns'].get('p50'))} ms  loss-timeouts {r['timeouts']}  "
            f"cpu {r['cpu_pct']}{'' if r['quiet'] else '  (DISTURBED by other work)'}")
    best = max(runs, key=lambda r: r["reply_rate"])
    return {"best_reply_rate": best["reply_rate"], "best_window": best["window"], "runs": runs}


def sustained_point(offered: float, achieved: float, loss: float, p50_ns) -> bool:
    """Sustained: >= 98 % answered, <= 0.1 % lost, and no standing queue (p50 <= 10 ms)."""
    return achieved >= 0.98 * offered and loss <= 0.001 and p50_ns is not None and p50_ns <= 10e6


def sweep(t: Target, sat_rate: float, quick: bool, rates=None) -> dict:
    fracs = (0.5, 0.9, 1.1) if quick else (0.25, 0.5, 0.7, 0.85, 1.0, 1.15)
    rates = rates or sorted({1000.0, 10000.0} | {round(sat_rate * f, -2) for f in fracs if sat_rate * f > 1000})
    points = []
    for rate in rates:
        r = t.run(rate=rate, attempts=min(2, t.attempts))
        lat = r["latency_ns"]
        sustained = sustained_point(rate, r["reply_rate"], r["loss"], lat.get("p50"))
        points.append({"offered": rate, "achieved": r["reply_rate"], "loss": r["loss"],
                       "p50_ms": ms(lat.get("p50")), "p99_ms": ms(lat.get("p99")),
                       "p99.9_ms": ms(lat.get("p99.9")), "max_ms": ms(lat.get("max")),
                       "send_lateness_p99_ms": ms(r["send_lateness_ns"].get("p99")),
                       "sustained": sustained, "cpu_pct": r["cpu_pct"], "quiet": r["quiet"], "raw": r})
        log(f"    {t.name:<28} offered {rate:>9,.0f}/s: achieved {r['reply_rate']:>9,.0f}/s "
            f"loss {100 * r['loss']:.2f}%  p50 {ms(lat.get('p50'))}  p99 {ms(lat.get('p99'))}  "
            f"p99.9 {ms(lat.get('p99.9'))} ms  cpu {r['cpu_pct']}"
            f"{'' if r['quiet'] else '  (DISTURBED by other work)'}")
        if r["loss"] > 0.2 and rate > 10000:
            break  # far past saturation: more only fills socket buffers
    ok = [p for p in points if p["sustained"]]
    best = max(ok, key=lambda p: p["offered"]) if ok else None
    return {"points": points, "highest_sustained": best and {k: v for k, v in best.items() if k != "raw"}}


def start_proc(cmd, ready_line: bool = False) -> subprocess.Popen:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    if ready_line:
        line = p.stdout.readline()
        if "ready" not in line:
            p.kill()
            raise RuntimeError(f"{cmd[1]} did not start: {p.stderr.read()}")
    return p


def stop_procs(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


# ------------------------------------------------------------------ in-process

def in_process(n_prefixes: int, pos, neg, seconds: float = 1.0) -> dict:
    """Resolver.handle alone (no sockets): calls/s per kind, and a cProfile summary."""
    from ipaddress import ip_address

    from common.wire.eidtext import parse_eidspec
    from common.wire.records import Locator
    from common.machines.regtable import PrefixSet, RegistrationTable, entry_key, entry_value
    from common.machines.resolver import Resolver
    table = RegistrationTable()
    loc = [Locator(ip_address("192.0.2.1"), 1, 100, 255, 0, False, False, True)]
    for p in registered_prefixes(n_prefixes):
        e = parse_eidspec(p)
        table.set(entry_key(e, b""), entry_value(e, "bench", loc, ttl=1440, proxy=True, merge=False,
                                                 xtr_id=b"", registrant=CLIENT))
    conf = PrefixSet([parse_eidspec("10.0.0.0/8"), parse_eidspec("2001:db8::/32")])
    from common.machines.fastpath import FastPath
    res = Resolver(table, conf, rate=1e9, burst=1e9)
    res.in_sync = True
    fast = FastPath(res)
    out = {}
    for name, fn in (("", res.handle), ("fast path, ", fast.handle)):
        for kind, msgs in (("registered", pos), ("unregistered", neg)):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                for m in msgs[:256]:
                    fn(m, (CLIENT, 5000), RLOC, 1.0)
                n += 256
            dt = time.perf_counter() - t0
            out[name + kind] = {"calls_per_s": round(n / dt), "us_per_call": round(dt / n * 1e6, 2)}
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(20):
        for m in pos[:256]:
            res.handle(m, (CLIENT, 5000), RLOC, 1.0)
    prof.disable()
    s = io.StringIO()
    st = pstats.Stats(prof, stream=s)
    st.sort_stats("tottime").print_stats(18)
    out["profile_registered_tottime"] = s.getvalue()
    # cumulative time by top-level stage of Resolver.handle
    stages = {}
    for (file, _line, fn), (_cc, _nc, _tt, ct, _callers) in st.stats.items():
        if fn in ("decode_message", "_map_server", "lookup", "_proxy_record", "encode_message",
                  "_itr_rloc", "allow", "handle", "decode_ecm", "parse_ip_udp", "_decode_map_request"):
            stages[f"{Path(file).stem}.{fn}"] = max(stages.get(f"{Path(file).stem}.{fn}", 0), ct)
    total = stages.get("resolver.handle") or 1
    out["profile_stages_pct_of_handle"] = {k: round(100 * v / total, 1) for k, v in
                                           sorted(stages.items(), key=lambda kv: -kv[1])}
    return out


# --------------------------------------------------------------------------- plots

def plot(doc: dict) -> None:
    plt = pyplot()
    if plt is None:
        return
    from benchlib import RESULTS
    doc = {**doc, "machine": machine()}
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, sw in doc["sweeps"].items():
        xs = [p["offered"] for p in sw["points"]]
        ax.plot(xs, [p["achieved"] for p in sw["points"]], marker="o", label=name)
    lim = max(p["offered"] for sw in doc["sweeps"].values() for p in sw["points"])
    ax.plot([0, lim], [0, lim], color="grey", lw=0.8, ls=":", label="offered = achieved")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load, requests/s (open loop)")
    ax.set_ylabel("replies/s")
    ax.set_title(f"Map-Request -> Map-Reply throughput vs offered load\n{doc['machine']['cores']} cores, "
                 f"{doc['machine']['cpu_model']}; the load generator shares the cores", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "lookup_throughput.png", dpi=110)
    plt.close(fig)

    names = list(doc["sweeps"])
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4.5), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        pts = [p for p in doc["sweeps"][name]["points"] if p["p50_ms"] is not None]
        xs = [p["offered"] for p in pts]
        for key, style in (("p50_ms", "o-"), ("p99_ms", "s-"), ("p99.9_ms", "^-")):
            ax.plot(xs, [max(p[key], 1e-3) for p in pts], style, label=key.replace("_ms", ""))
        ax.axhline(1.0, color="red", lw=0.8, ls="--", label="goal p99 1 ms")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("offered requests/s")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("latency, ms")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Map-Request -> Map-Reply latency percentiles vs offered load (open loop)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(RESULTS / "lookup_latency.png", dpi=110)
    plt.close(fig)
    log("  wrote bench/results/lookup_throughput.png, lookup_latency.png")


def one_worker_node(doc, args, kw, tpos, tneg, noff, uoff, rloc, name, label, body, counters_key) -> None:
    """A node with one worker in another configuration (the full path: before; the
    Python fast path without the C loop): saturation and latency at 1k and 10k/s."""
    from tests.unit.msfixtures import register
    log(f"node {rloc}: 1 worker, {label}; registering {args.prefixes} proxy-reply /24s")
    with Node(name, rloc, body) as node:
        node.up()
        if not node.wait_in_sync(1, timeout=30):
            raise RuntimeError("worker not in sync")
        base = time.time_ns()
        pfx = registered_prefixes(args.prefixes)
        regs = [register(pfx[i:i + 100], nonce=base + i, key=SECRET.encode(), proxy=True)
                for i in range(0, len(pfx), 100)]
        acked = register_all((rloc, 4342), CLIENT, regs, timeout=60)
        log(f"  {acked}/{len(regs)} Map-Registers acknowledged; in sync: "
            f"{node.wait_in_sync(1, args.prefixes, timeout=60)}")
        wpid = {"w0": node.pid("map_resolver:0")}
        for kind, tf in (("registered", tpos), ("unregistered", tneg)):
            t = Target(f"1 worker {label}, {kind}", rloc, tf, noff, uoff, wpid, **kw)
            doc["saturation"][t.name] = saturation(t, args.windows_list)
        t = Target(f"1 worker {label}, registered", rloc, tpos, noff, uoff, wpid, **kw)
        doc["sweeps"][f"1 worker, {label}"] = sweep(t, 0, True, rates=[1000.0, 10000.0])
        c = node.counters()
        doc[counters_key] = {k: v for k, v in c.items() if k.startswith("map_resolver")}


# ---------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per load run")
    ap.add_argument("--prefixes", type=int, default=10000, help="registered proxy-reply /24s")
    ap.add_argument("--windows", default="64,256", help="requests in flight for saturation")
    ap.add_argument("--sockets", type=int, default=16, help="client sockets (flows)")
    ap.add_argument("--quick", action="store_true", help="fewer sweep points")
    ap.add_argument("--attempts", type=int, default=3,
                    help="runs per measurement until one is quiet (others < 15%% of a core)")
    ap.add_argument("--no-full-path", action="store_true",
                    help="skip the node with the fast path off (the before figures)")
    ap.add_argument("--no-python-fast", action="store_true",
                    help="skip the node with the Python fast path only (fast_path_c = false)")
    ap.add_argument("--no-py-spy", action="store_true", help="skip the py-spy profile")
    ap.add_argument("--plot-only", action="store_true", help="redraw the plots from lookup.json")
    args = ap.parse_args()
    if args.plot_only:
        import json
        from benchlib import RESULTS
        plot(json.loads((RESULTS / "lookup.json").read_text()))
        return 0
    windows = args.windows_list = [int(w) for w in args.windows.split(",")]
    t_begin = time.monotonic()
    build_c("lispload")
    echo_bin = build_c("echo")
    pos, neg, noff, uoff = templates(args.prefixes)
    tpos = write_templates(BUILD / "lookup-registered.bin", pos)
    tneg = write_templates(BUILD / "lookup-unregistered.bin", neg)
    doc: dict = {"params": vars(args), "request_bytes": len(pos[0]), "saturation": {}, "sweeps": {},
                 "quiet": {"start": wait_quiet()}, "loadavg": {"start": os.getloadavg()}}
    kw = dict(seconds=args.seconds, sockets=args.sockets, attempts=args.attempts)
    from tests.unit.msfixtures import register

    # ------------------- before: the fast path off; the Python fast path alone
    if not args.no_full_path:
        one_worker_node(doc, args, kw, tpos, tneg, noff, uoff, RLOC_FULL, "benchlookupfull", "full path",
                        node_body(1, fast=False), "node_counters_full_path")
    if not args.no_python_fast:
        one_worker_node(doc, args, kw, tpos, tneg, noff, uoff, RLOC_PYFAST, "benchlookuppy",
                        "python fast path", node_body(1, c=False), "node_counters_python_fast_path")

    # -------------------------------------------------------------- the node
    log(f"node {RLOC}: 2 workers, 1 map_server shard; registering {args.prefixes} proxy-reply /24s")
    with Node("benchlookup", RLOC, node_body(2)) as node:
        node.up()
        if not node.wait_in_sync(2, timeout=30):
            raise RuntimeError("workers not in sync")
        base = time.time_ns()
        pfx = registered_prefixes(args.prefixes)
        regs = [register(pfx[i:i + 100], nonce=base + i, key=SECRET.encode(), proxy=True)
                for i in range(0, len(pfx), 100)]
        acked = register_all((RLOC, 4342), CLIENT, regs, timeout=60)
        synced = node.wait_in_sync(2, args.prefixes, timeout=60)
        log(f"  {acked}/{len(regs)} Map-Registers acknowledged; replicas in sync: {synced}")
        sizes = {}
        from common.wire.messages import decode_message
        for kind, msgs in (("registered", pos), ("unregistered", neg)):
            eid = "10.0.0.9" if kind == "registered" else "10.200.0.9"
            r = udp_exchange((RLOC, 4342), lambda p, e=eid: ecm_templates([e], CLIENT, sport=p)[0][0],
                             src=CLIENT)
            sizes[kind] = len(r) if r else None
            reply = decode_message(r) if r else None
            log(f"  {kind}: request {len(msgs[0])} bytes -> reply {sizes[kind]} bytes "
                f"({'negative' if reply and not reply.records[0].locators else 'positive'})")
        doc["reply_bytes"] = sizes
        pids = {f"w{i}": node.pid(f"map_resolver:{i}") for i in range(2)}

        # one worker
        node.decent("stop", "map_resolver:1")
        time.sleep(0.5)
        for kind, tf in (("registered", tpos), ("unregistered", tneg)):
            t = Target(f"1 worker, {kind}", RLOC, tf, noff, uoff, {"w0": pids["w0"]}, **kw)
            doc["saturation"][t.name] = saturation(t, windows)
        t1 = Target("1 worker, registered", RLOC, tpos, noff, uoff, {"w0": pids["w0"]}, **kw)
        doc["sweeps"]["1 worker"] = sweep(t1, doc["saturation"][t1.name]["best_reply_rate"], args.quick)
        if not args.no_py_spy:
            log("  py-spy on the worker at saturation (window 64):")
            doc["py_spy_1_worker"] = py_spy(pids["w0"], args.seconds + 1,
                                            lambda: t1.run(window=64, seconds=args.seconds + 1, attempts=1))
            if doc["py_spy_1_worker"] and "own" in doc["py_spy_1_worker"]:
                for f, pct in doc["py_spy_1_worker"]["own"][:8]:
                    log(f"    {pct:5.1f}% own  {f}")

        # two workers
        node.decent("start", "map_resolver:1")
        node.wait_in_sync(2, args.prefixes, timeout=60)
        pids["w1"] = node.pid("map_resolver:1")
        for kind, tf in (("registered", tpos), ("unregistered", tneg)):
            t = Target(f"2 workers, {kind}", RLOC, tf, noff, uoff, pids, **kw)
            doc["saturation"][t.name] = saturation(t, windows)
        t2 = Target("2 workers, registered", RLOC, tpos, noff, uoff, pids, **kw)
        doc["sweeps"]["2 workers"] = sweep(t2, doc["saturation"][t2.name]["best_reply_rate"], args.quick)
        c = node.counters()
        doc["node_counters"] = {k: v for k, v in c.items() if k.startswith("map_resolver")}
        fastn = sum(v.get("fastpath.answered", 0) for v in doc["node_counters"].values())
        alln = sum(v.get("answered", 0) for v in doc["node_counters"].values())
        cn = sum(v.get("fastpath.c", 0) for v in doc["node_counters"].values())
        log(f"  answered by the fast path: {fastn:,} of {alln:,}, by the C loop {cn:,} "
            f"(workers' counters, incl. restarts' loss)")

    # ----------------------------------------------------------- baselines
    rsize = sizes.get("registered") or 40
    doc["quiet"]["baselines"] = wait_quiet()
    log(f"baselines: echo {len(pos[0])}-byte requests with {rsize}-byte replies")
    procs = [start_proc([PY, str(REPO / "bench" / "echo_uvloop.py"), "--addr", ECHO_PY,
                         "--nonce-off", str(noff), "--reply-size", str(rsize), "--seconds", "300"],
                        ready_line=True)]
    try:
        t = Target("uvloop echo, 1 process", ECHO_PY, tpos, noff, uoff, {"echo": procs[0].pid}, **kw)
        doc["saturation"][t.name] = saturation(t, windows)
        doc["sweeps"]["uvloop echo"] = sweep(t, doc["saturation"][t.name]["best_reply_rate"], args.quick)
        procs.append(start_proc([PY, str(REPO / "bench" / "echo_uvloop.py"), "--addr", ECHO_PY,
                                 "--nonce-off", str(noff), "--reply-size", str(rsize), "--seconds",
                                 "300"], ready_line=True))
        t = Target("uvloop echo, 2 processes", ECHO_PY, tpos, noff, uoff,
                   {"echo0": procs[0].pid, "echo1": procs[1].pid}, **kw)
        doc["saturation"][t.name] = saturation(t, windows)
    finally:
        stop_procs(procs)
    cproc = start_proc([str(echo_bin), "-a", ECHO_C, "-n", str(noff), "-s", str(rsize), "-t", "300"])
    try:
        time.sleep(0.3)
        t = Target("C echo, 1 process", ECHO_C, tpos, noff, uoff, {"echo": cproc.pid}, **kw)
        doc["saturation"][t.name] = saturation(t, windows)
        t2c = Target("C echo, 1 process, 2 generator threads", ECHO_C, tpos, noff, uoff,
                     {"echo": cproc.pid}, **kw)
        doc["saturation"][t2c.name] = saturation_threads(t2c, windows)
        doc["sweeps"]["C echo"] = sweep(t, doc["saturation"][t.name]["best_reply_rate"], True)
    finally:
        stop_procs([cproc])

    # ------------------------------------------------------------ in process
    log("in-process Resolver.handle (no sockets, no counters):")
    doc["in_process"] = in_process(args.prefixes, pos, neg)
    for k in ("registered", "unregistered", "fast path, registered", "fast path, unregistered"):
        log(f"    {k}: {doc['in_process'][k]['calls_per_s']:,} calls/s "
            f"({doc['in_process'][k]['us_per_call']} us each)")
    log(f"    stages (% of handle, cumulative): {doc['in_process']['profile_stages_pct_of_handle']}")

    # -------------------------------------------------------------- ratios
    S = {k: v["best_reply_rate"] for k, v in doc["saturation"].items()}
    w1, w2 = S["1 worker, registered"], S["2 workers, registered"]
    doc["ratios"] = {
        "1 worker / uvloop echo (goal >= 0.5)": ratio(w1, S["uvloop echo, 1 process"]),
        "1 worker unregistered / uvloop echo": ratio(S["1 worker, unregistered"],
                                                     S["uvloop echo, 1 process"]),
        "1 worker full path (before) / uvloop echo": ratio(S.get("1 worker full path, registered"),
                                                           S["uvloop echo, 1 process"]),
        "1 worker full path (before) unregistered / uvloop echo": ratio(
            S.get("1 worker full path, unregistered"), S["uvloop echo, 1 process"]),
        "1 worker Python fast path (no C loop) / uvloop echo": ratio(
            S.get("1 worker python fast path, registered"), S["uvloop echo, 1 process"]),
        "1 worker Python fast path (no C loop) unregistered / uvloop echo": ratio(
            S.get("1 worker python fast path, unregistered"), S["uvloop echo, 1 process"]),
        "C loop / Python fast path, 1 worker, registered": ratio(
            w1, S.get("1 worker python fast path, registered")),
        "C loop / Python fast path, 1 worker, unregistered": ratio(
            S["1 worker, unregistered"], S.get("1 worker python fast path, unregistered")),
        "fast path / full path, 1 worker, registered": ratio(w1, S.get("1 worker full path, registered")),
        "fast path / full path, 1 worker, unregistered": ratio(S["1 worker, unregistered"],
                                                               S.get("1 worker full path, unregistered")),
        "2 workers / 1 worker (goal >= 1.6 on >= 4 cores)": ratio(w2, w1),
        "2 uvloop echo processes / 1": ratio(S["uvloop echo, 2 processes"], S["uvloop echo, 1 process"]),
        "1 worker / C echo": ratio(w1, S["C echo, 1 process"]),
        "uvloop echo / C echo": ratio(S["uvloop echo, 1 process"], S["C echo, 1 process"]),
        "1 worker on the wire / Resolver.handle in process": ratio(
            w1, doc["in_process"]["registered"]["calls_per_s"]),
    }
    doc["p99_at_10k_ms"] = {n: next((p["p99_ms"] for p in sw["points"] if p["offered"] == 10000.0), None)
                            for n, sw in doc["sweeps"].items()}
    log("ratios:")
    for k, v in doc["ratios"].items():
        log(f"    {k}: {v}")
    log(f"p99 at 10k requests/s (goal <= 1 ms): {doc['p99_at_10k_ms']}")
    for n, sw in doc["sweeps"].items():
        log(f"highest sustained, {n}: {sw['highest_sustained'] and {k: sw['highest_sustained'][k] for k in ('offered', 'p50_ms', 'p99_ms', 'p99.9_ms')}}")
    doc["loadavg"]["end"] = os.getloadavg()
    log(f"load average (1, 5, 15 min) at the start {doc['loadavg']['start']}, at the end {doc['loadavg']['end']}")
    doc["elapsed_s"] = round(time.monotonic() - t_begin, 1)
    save_json("lookup", doc)
    plot(doc)
    log(f"lookup.py done in {doc['elapsed_s']} s")
    return 0


def saturation_threads(t: Target, windows) -> dict:
    """The C echo with two generator threads (is one generator thread the limit?)."""
    runs = []
    for w in windows:
        r = t.run(window=w, threads=2)
        runs.append(r)
        log(f"    {t.name:<28} window {w:>4}: {r['reply_rate']:>10,.0f} replies/s  cpu {r['cpu_pct']}"
            f"{'' if r['quiet'] else '  (DISTURBED by other work)'}")
    best = max(runs, key=lambda r: r["reply_rate"])
    return {"best_reply_rate": best["reply_rate"], "best_window": best["window"], "runs": runs}


if __name__ == "__main__":
    sys.exit(main())
