"""Authenticated, durable Map-Registers per second and Map-Notify latency, 1 and 2 shards.

Starts a node (2 map_resolver workers, as the appliance runs) with 8 sites split
4/4 across the shards by name hash (like tests/integration/test_shards.py), each
with its own HMAC-SHA-256 key, and sends it pre-sealed Map-Registers (want
Map-Notify, one record each, one xTR-ID per registration, as many ETRs would) with
bench/c/lispload in raw mode.  A Map-Notify is the acknowledgement: the node sends
it only after the registration is committed to SQLite (WAL, synchronous=NORMAL).

- new registrations at saturation (window of Map-Registers in flight);
- refreshes of the same registrations (nothing changes but the nonce, which is
  still committed) at saturation;
- Map-Notify latency percentiles at fixed offered rates of refreshes (open loop);
- with 1 map_server shard, then 2.

Baselines in the same run, in this process: the raw cost of one HMAC-SHA-256 check
plus one SQLite WAL commit (an INSERT OR REPLACE of a registration-sized row), and
the map_server path without sockets or bus (``MapServer.handle_register`` +
``RegistrationStore.apply`` + sealing the Map-Notify).

    .venv/bin/python bench/register.py [--seconds 3] [--count 30000]

Writes bench/results/register.json and register.png.  Reports figures, not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (BUILD, RATE_UNLIMITED, Node, build_c, count_templates, lispload, lispload_quiet, log, py_spy, ms, pyplot,  # noqa: E402
                      ratio, save_json, site_block, wait_quiet, write_templates)

CLIENT = "127.0.64.1"
# sealed refreshes prepared per measured second: more than a node carries (each is sent
# once; the 2026-12-04 runs capped at 40,000/s and 50,000/s by too few templates were
# reading the template count, not the node)
REFRESH_TEMPLATES_PER_S = 100_000
N_SITES = 8


def split_sites() -> dict:
    """8 site names -> shard (of 2), four on each (as tests/integration/test_shards.py)."""
    from bus.topics import shard_of
    out, i = {}, 0
    while len(out) < N_SITES:
        name = f"site{i}"
        if sum(1 for s in out.values() if s == shard_of(name, 2)) < N_SITES // 2:
            out[name] = shard_of(name, 2)
        i += 1
    return out


SITES = split_sites()
NAMES = list(SITES)


def site_prefix(k: int) -> str:
    return f"10.{64 + k}.0.0/16"


def secret(name: str) -> str:
    return f"k-{name}"


def site_policies() -> list:
    """The node's 8 sites as Map-Server site policies (for the in-process baselines)."""
    from common.machines.mapserver import SiteKey, SitePolicy
    from common.wire.eidtext import parse_eidspec
    return [SitePolicy(name, (SiteKey(0, 2, secret(name).encode()),), ((parse_eidspec(site_prefix(k)), True),))
            for k, name in enumerate(NAMES)]


def watch_of(node) -> dict:
    """The node's map_server, map_resolver and bus PIDs, by short name (ms:0, mr:1, bus:0)."""
    return {k.replace("map_server", "ms").replace("map_resolver", "mr"): v["pid"]
            for k, v in node.status().items()
            if v.get("pid") and k.startswith(("map_server", "map_resolver", "bus"))}


def node_body(shards: int) -> str:
    out = f"[roles]\nmap_resolver = {{ workers = 2 }}\nmap_server = {{ shards = {shards} }}\n"
    out += RATE_UNLIMITED + ("\n[map_server]\nsync = \"normal\"\n"
                             "register_rate = 10000000\nregister_burst = 10000000\n")
    for k, name in enumerate(NAMES):
        out += site_block(name, secret(name), [site_prefix(k)])
    return out


def eid_of(i: int) -> str:
    k = i % N_SITES
    j = i // N_SITES
    return f"[0]10.{64 + k}.{(j >> 8) & 255}.{j & 255}/32"


def registers(n: int, base: int, *, rloc: str = "192.0.2.1", start: int = 0, cycle: int | None = None) -> list[bytes]:
    """n sealed Map-Registers for registrations start.. start+n-1 (or, with ``cycle``,
    start + k % cycle: refreshes of the same ``cycle`` registrations, round after
    round): registration i -> site i % 8, its own xTR-ID; the k-th message has nonce
    base + k."""
    from tests.unit.msfixtures import register
    out = []
    for k in range(n):
        i = start + (k % cycle if cycle else k)
        name = NAMES[i % N_SITES]
        out.append(register([eid_of(i)], nonce=base + k, key=secret(name).encode(),
                            xtr=(i + 1).to_bytes(16, "big"), proxy=True, rlocs=(rloc,)))
    return out


# ------------------------------------------------------------------ baselines

def raw_primitives(msgs, seconds: float = 1.5) -> dict:
    """HMAC-SHA-256 over each message, then one SQLite WAL commit of a row of that size."""
    d = tempfile.mkdtemp(prefix="dbr", dir="/tmp")
    db = sqlite3.connect(os.path.join(d, "x.sqlite"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE r (key TEXT PRIMARY KEY, value BLOB, raw BLOB)")
    key = b"k-site0"
    n_h = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds / 3:
        for m in msgs[:1000]:
            hmac.new(key, m, hashlib.sha256).digest()
        n_h += 1000
    hmac_s = (time.perf_counter() - t0) / n_h
    n_c = 0
    t0 = time.perf_counter()
    cur = db.cursor()
    while time.perf_counter() - t0 < seconds:
        for i, m in enumerate(msgs[:1000]):
            hmac.new(key, m, hashlib.sha256).digest()
            cur.execute("BEGIN")
            cur.execute("INSERT OR REPLACE INTO r VALUES (?, ?, ?)", (f"k{n_c + i}", m[:90], m))
            cur.execute("COMMIT")
        n_c += 1000
    both_s = (time.perf_counter() - t0) / n_c
    db.close()
    os.system(f"rm -rf {d}")
    return {"hmac_per_s": round(1 / hmac_s), "hmac_plus_wal_commit_per_s": round(1 / both_s),
            "us_hmac": round(hmac_s * 1e6, 2), "us_hmac_plus_commit": round(both_s * 1e6, 2)}


def map_server_in_process(n: int) -> dict:
    """The shard's work per Map-Register without sockets or bus: handle, commit, seal."""
    from common.machines.mapserver import MapServer
    from roles.ms_store import RegistrationStore
    sites = site_policies()
    out = {}
    d = tempfile.mkdtemp(prefix="dbm", dir="/tmp")
    try:
        ms_ = MapServer(sites, lifetime=3600)
        store = RegistrationStore(os.path.join(d, "s.sqlite"))
        base = time.time_ns()
        for label, b in (("new", base), ("refresh", base + 10 * n)):
            msgs = registers(n, b)
            t0 = time.perf_counter()
            for m in msgs:
                ms_.handle_register(m, (CLIENT, 5000), 1.0, commit=store.apply)
            dt = time.perf_counter() - t0
            out[label] = {"per_s": round(n / dt), "us_each": round(dt / n * 1e6, 1),
                          "accepted_rows": len(ms_.table)}
        store.close()
        # the path the shard takes now: the edge gate's MAC check, then batches of 256
        # with one commit each (group commit) and the refresh fast path; "before": the
        # same with the new-registration path as it was before its CPU work (issue 10)
        # and the data model before the compact shard (issue 11): tests/unit/msreference.py,
        # which tests/unit/test_ms_fastnew.py proves equal
        from tests.unit.msreference import ReferenceMapServer
        # before and after alternate, 3 rounds each on fresh servers, the best kept:
        # one round is too short to tell them apart on a shared machine
        # every round also refreshes, on both: the refresh fast path before (entries
        # checked by identity in a RegistrationTable, tests/unit/msreference.py) and
        # after (content tokens in the compact ShardTable, issue 11)
        rounds: dict = {k + b: [] for k in ("batched new", "batched refresh", "batched refresh again")
                        for b in (", before", "")}
        for r in range(3):
            for cls, label in ((ReferenceMapServer, "batched new, before"), (MapServer, "batched new")):
                one: dict = {}
                before = ", before" if cls is ReferenceMapServer else ""
                runs = ((label, 0), ("batched refresh" + before, 10 * n), ("batched refresh again" + before, 20 * n))
                _batched(cls, sites, d, n, runs, one, tag=f"{r}")
                for k, v in one.items():
                    rounds[k].append(v)
        for label, got in rounds.items():
            out[label] = dict(max(got, key=lambda x: x["per_s"]), rounds_per_s=[x["per_s"] for x in got],
                              rounds_cpu_us_each=[x["cpu_us_each"] for x in got])
        out["batched new: after / before"] = ratio(out["batched new"]["per_s"],
                                                   out["batched new, before"]["per_s"])
        out["batched refresh: after / before"] = ratio(out["batched refresh"]["per_s"],
                                                       out["batched refresh, before"]["per_s"])
        out["batched refresh: CPU before / after"] = ratio(out["batched refresh, before"]["cpu_us_each"],
                                                           out["batched refresh"]["cpu_us_each"])
    finally:
        os.system(f"rm -rf {d}")
    return out


def _batched(cls, sites, d: str, n: int, runs, out: dict, tag: str = "") -> None:
    from common.machines.regedge import RegisterGate
    from common.machines.sites import SiteTable
    from roles.ms_store import RegistrationStore
    ms_ = cls(sites, lifetime=3600)
    store = RegistrationStore(os.path.join(d, f"b-{cls.__name__}{tag}.sqlite"))
    gate = RegisterGate(SiteTable(sites), rate=1e9, burst=1e9)
    base = time.time_ns()
    try:
        for label, off in runs:
            msgs = registers(n, base + off)
            t0, c0 = time.perf_counter(), time.process_time()
            for k in range(0, n, 256):
                items = []
                for m in msgs[k:k + 256]:
                    v = gate.check(m, (CLIENT, 5000), 1.0)
                    items.append((m, (CLIENT, 5000), v[2], None))
                ms_.handle_batch(items, 1.0, commit=store.apply, send=lambda *a: None)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            # CPU time too: on a shared machine it is disturbed less than wall time
            out[label] = {"per_s": round(n / dt), "us_each": round(dt / n * 1e6, 1),
                          "cpu_us_each": round(dc / n * 1e6, 1), "accepted_rows": len(ms_.table)}
    finally:
        store.close()


# ------------------------------------------------------------------- the node

def paced(rloc: str, what: str, rate: float, args, watch: dict, base: int, make) -> dict:
    """One open-loop run at ``rate`` of the Map-Registers ``make(n)`` returns (nonces
    from ``base``): the sweep point, logged."""
    tfile = write_templates(BUILD / "reg-sweep.bin", make(int(rate * (args.seconds + 0.5)) + 10))
    r = lispload(rloc, tfile, src=CLIENT, rate=rate, seconds=args.seconds, raw=True, base=base,
                 sockets=8, warmup=0.3, drain=1.0, timeout_ms=1000, watch=watch)
    if r["cpu_pct"].get("not_ours", 0) > 15:
        r["quiet"] = False
    lat = r["latency_ns"]
    pt = {"offered": rate, "achieved": r["reply_rate"], "loss": r["loss"],
          "p50_ms": ms(lat.get("p50")), "p99_ms": ms(lat.get("p99")),
          "p99.9_ms": ms(lat.get("p99.9")), "cpu_pct": r["cpu_pct"], "raw": r}
    log(f"    {what} offered {rate:>7,.0f}/s: achieved {r['reply_rate']:>7,.0f}/s "
        f"loss {100 * r['loss']:.2f}%  Map-Notify p50 {pt['p50_ms']}  p99 {pt['p99_ms']}  "
        f"p99.9 {pt['p99.9_ms']} ms")
    return pt


def run_node(shards: int, rloc: str, args, doc: dict) -> dict:
    label = f"{shards} shard{'s' if shards > 1 else ''}"
    res: dict = {"saturation": {}, "sweep": []}
    log(f"node {rloc}: 2 map_resolver workers, {label}; sites per shard: "
        f"{[sum(1 for s in SITES.values() if s % shards == k) for k in range(shards)]}")
    res["quiet"] = wait_quiet()
    with Node(f"benchreg{shards}", rloc, node_body(shards)) as node:
        node.up()
        node.wait_in_sync(2, timeout=30)
        watch = watch_of(node)
        base = time.time_ns()
        new = registers(args.count, base)
        tnew = write_templates(BUILD / "reg-new.bin", new)
        sent_new = 0
        for kind in ("new", "refresh"):
            if kind == "new":
                tfile, b = tnew, base
            else:
                b = base + 10 ** 9
                # enough refreshes for the whole run (each sealed one is sent once; the node
                # has carried ~55,000/s): the registered ones, round after round
                tfile = write_templates(BUILD / "reg-refresh.bin",
                                        registers(max(args.count, int(REFRESH_TEMPLATES_PER_S * (args.seconds + 0.5))), b,
                                                  cycle=max(1, sent_new)))
            win = args.window if kind == "new" else args.refresh_window
            r = lispload_quiet(rloc, tfile, src=CLIENT, window=win, seconds=args.seconds,
                               raw=True, base=b, sockets=8, warmup=0.3, drain=1.0, timeout_ms=1000,
                               watch=watch, attempts=1)  # a sealed Map-Register is sent once
            if kind == "new":
                sent_new = r["sent"]
            lat = r["latency_ns"]
            res["saturation"][kind] = {"per_s": r["reply_rate"], "sent": r["sent"],
                                       "acked": r["received"], "p50_ms": ms(lat.get("p50")),
                                       "p99_ms": ms(lat.get("p99")), "cpu_pct": r["cpu_pct"],
                                       "raw": r}
            res["saturation"][kind]["window"] = win
            log(f"    {label}, {kind:<8} window {win}: {r['reply_rate']:>8,.0f} Map-Notify/s "
                f"({r['received']}/{r['sent']} acknowledged; p50 {ms(lat.get('p50'))} ms) "
                f"cpu {r['cpu_pct']}")
            if r["sent"] >= (len(new) if kind == "new" else count_templates(tfile)):
                log("    (every template was sent before the time was up: the figure is the template count's)")
        # new registrations offered open loop at the latency points (1k and 10k/s,
        # when the node carries them): each template is a prefix not registered before
        res["new_sweep"] = []
        sat_new = res["saturation"]["new"]["per_s"]
        for k, rate in enumerate(sorted({1000.0} | ({10000.0} if sat_new > 10000 else set()))):
            b = base + (30 + k) * 10 ** 9
            res["new_sweep"].append(paced(rloc, f"{label}, new", rate, args, watch, b,
                                          lambda n, b=b, k=k: registers(n, b, start=(2 + k) * args.count)))
        sat = res["saturation"]["refresh"]["per_s"]
        # 1k and 10k/s are the latency points (issue 10), when the node carries them
        rates = sorted({100.0, 1000.0} | ({10000.0} if sat > 10000 else set())
                       | {round(sat * f, -1) for f in (0.5, 0.8, 1.0) if sat * f > 1000})
        for k, rate in enumerate(rates):
            b = base + (2 + k) * 10 ** 9
            res["sweep"].append(paced(rloc, f"{label}, refresh", rate, args, watch, b,
                                      lambda n, b=b: registers(n, b, cycle=max(1, sent_new))))
        if shards == 1 and not args.no_py_spy:
            # where the shard's time goes: new registrations (not yet registered ones)
            b = base + 50 * 10 ** 9
            tfile = write_templates(BUILD / "reg-prof.bin", registers(args.count, b, start=args.count))
            prof = py_spy(watch["ms:0"], args.seconds + 1, lambda: lispload(
                rloc, tfile, src=CLIENT, window=args.window, seconds=args.seconds + 1, raw=True,
                base=b, sockets=8, warmup=0.3, drain=1.0, timeout_ms=1000))
            res["py_spy_map_server"] = prof
            if prof and "own" in prof:
                log("    py-spy on map_server:0 at saturation (new registrations), own time:")
                for f, pct in prof["own"][:8]:
                    log(f"      {pct:5.1f}%  {f}")
        c = node.counters()
        res["counters"] = {k: {n: v for n, v in x.items() if n.startswith(("register", "received",
                                                                             "map-notify", "registrations",
                                                                             "answered", "dropped"))}
                           for k, x in c.items() if k.startswith("map_server")}
        stored = 0
        for s in range(shards):
            import sqlite3 as sq
            db = sq.connect(str(node.state / f"map_server_{s}.sqlite"))
            stored += db.execute("SELECT COUNT(*) FROM registration").fetchone()[0]
            db.close()
        res["rows_in_sqlite"] = stored
        log(f"    durable: {stored} registrations in SQLite; shard counters {res['counters']}")
    return res


def rounds(args) -> int:
    """``--rounds-only new|refresh``: one kind alone, 1 and 2 shards alternating for
    ``--rounds`` rounds, each on a fresh node (quicker than the full run, and the 2 / 1
    ratio from pairs measured next to each other).  Refreshes follow an unmeasured
    run of new registrations that registers what they refresh."""
    build_c("lispload")
    kind = args.rounds_only
    win = args.window if kind == "new" else args.refresh_window
    doc: dict = {"params": vars(args), "kind": kind, "window": win, "rounds": []}
    for k in range(args.rounds):
        for shards in (1, 2):
            rloc = f"127.0.63.{shards}"
            quiet = wait_quiet()
            with Node(f"benchrounds{shards}", rloc, node_body(shards)) as node:
                node.up()
                node.wait_in_sync(2, timeout=30)
                watch = watch_of(node)
                base = time.time_ns()
                tfile = write_templates(BUILD / "reg-new.bin", registers(args.count, base))
                if kind == "refresh":
                    r = lispload(rloc, tfile, src=CLIENT, window=args.window, seconds=2.0, raw=True,
                                 base=base, sockets=8, warmup=0.3, drain=1.0, timeout_ms=1000)
                    base += 10 ** 9
                    tfile = write_templates(BUILD / "reg-refresh.bin",
                                            registers(max(args.count, int(REFRESH_TEMPLATES_PER_S * (args.seconds + 0.5))),
                                                      base, cycle=max(1, r["sent"])))
                r = lispload_quiet(rloc, tfile, src=CLIENT, window=win, seconds=args.seconds,
                                   raw=True, base=base, sockets=8, warmup=0.3, drain=1.0,
                                   timeout_ms=1000, watch=watch, attempts=1)
            lat = r["latency_ns"]
            row = {"round": k, "shards": shards, "per_s": r["reply_rate"], "sent": r["sent"],
                   "acked": r["received"], "p50_ms": ms(lat.get("p50")), "p99_ms": ms(lat.get("p99")),
                   "cpu_pct": r["cpu_pct"], "quiet_before": quiet}
            doc["rounds"].append(row)
            log(f"    round {k}, {shards} shard(s), {kind}, window {win}: {r['reply_rate']:>8,.0f}/s "
                f"({r['received']}/{r['sent']}; p50 {row['p50_ms']} ms) cpu {r['cpu_pct']}")
            if r["sent"] >= count_templates(tfile):
                log("    (every template was sent before the time was up: the figure is the template count's)")
    for shards in (1, 2):
        doc[f"best_{shards}"] = max(x["per_s"] for x in doc["rounds"] if x["shards"] == shards)
    doc["ratio_2_over_1_best"] = ratio(doc["best_2"], doc["best_1"])
    doc["ratio_2_over_1_each_round"] = [ratio(b["per_s"], a["per_s"])
                                        for a, b in zip(doc["rounds"][0::2], doc["rounds"][1::2])]
    log(f"best: 1 shard {doc['best_1']:,.0f}/s, 2 shards {doc['best_2']:,.0f}/s; 2 / 1 per round "
        f"{doc['ratio_2_over_1_each_round']}")
    save_json(f"register-{kind}-rounds", doc)
    return 0


def plot(doc: dict) -> None:
    plt = pyplot()
    if plt is None:
        return
    from benchlib import RESULTS
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, r in doc["nodes"].items():
        xs = [p["offered"] for p in r["sweep"]]
        a1.plot(xs, [p["achieved"] for p in r["sweep"]], "o-", label=label)
        for key, st in (("p50_ms", "o-"), ("p99_ms", "s--"), ("p99.9_ms", "^:")):
            a2.plot(xs, [p[key] or 0 for p in r["sweep"]], st, label=f"{label} {key[:-3]}")
    lim = max(p["offered"] for r in doc["nodes"].values() for p in r["sweep"])
    a1.plot([100, lim], [100, lim], color="grey", lw=0.8, ls=":", label="offered = achieved")
    for c, (label, r) in enumerate(doc["nodes"].items()):
        for kind, ls in (("new", "--"), ("refresh", "-.")):
            a1.axhline(r["saturation"][kind]["per_s"], lw=0.7, ls=ls, color=f"C{c}",
                       label=f"{label}, {kind}, saturation (window)")
    a1.set_xlabel("offered refresh Map-Registers/s (open loop)")
    a1.set_ylabel("Map-Notify/s")
    a1.set_title("authenticated, durable Map-Registers: throughput", fontsize=9)
    a2.set_xlabel("offered refresh Map-Registers/s")
    a2.set_ylabel("Map-Notify latency, ms")
    a2.set_yscale("log")
    a2.set_title("Map-Notify latency percentiles", fontsize=9)
    for a in (a1, a2):
        a.set_xscale("log")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "register.png", dpi=110)
    plt.close(fig)
    log("  wrote bench/results/register.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per load run")
    ap.add_argument("--count", type=int, default=80000, help="new registrations prepared (more than the node takes in --seconds + warm-up)")
    ap.add_argument("--window", type=int, default=1024,
                    help="new Map-Registers in flight at saturation (64 measured the round trip, not the node)")
    # refreshes: 1,024 in flight made shard groups of ~330-490 (of GROUP_MAX 1,024) while the
    # rest of the window was in the other stages, and gave 0.65-0.8x of what 2,048-8,192 give
    # (bench/README.md 2f); new registrations keep 1,024 (at ~3-6k/s, 4,096 would wait past
    # lispload's 1 s timeout)
    ap.add_argument("--refresh-window", type=int, default=4096,
                    help="refresh Map-Registers in flight at saturation")
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot from register.json")
    ap.add_argument("--no-py-spy", action="store_true", help="skip the py-spy profile of the shard")
    ap.add_argument("--rounds-only", choices=("new", "refresh"),
                    help="this kind only, 1 and 2 shards alternating for --rounds rounds")
    ap.add_argument("--rounds", type=int, default=2, help="rounds with --rounds-only")
    args = ap.parse_args()
    if args.rounds_only:
        return rounds(args)
    if args.plot_only:
        import json
        from benchlib import RESULTS
        plot(json.loads((RESULTS / "register.json").read_text()))
        return 0
    t_begin = time.monotonic()
    build_c("lispload")
    doc: dict = {"params": vars(args), "sites": SITES, "nodes": {}}
    log("baselines in process:")
    sample = registers(1000, time.time_ns())
    doc["register_bytes"] = len(sample[0])
    doc["raw_primitives"] = raw_primitives(sample)
    log(f"    HMAC-SHA-256 {doc['raw_primitives']['hmac_per_s']:,}/s; HMAC + SQLite WAL commit "
        f"{doc['raw_primitives']['hmac_plus_wal_commit_per_s']:,}/s")
    doc["map_server_in_process"] = map_server_in_process(5000)
    log(f"    MapServer.handle_register + store.apply (no sockets, no bus): "
        f"{doc['map_server_in_process']}")
    doc["nodes"]["1 shard"] = run_node(1, "127.0.63.1", args, doc)
    doc["nodes"]["2 shards"] = run_node(2, "127.0.63.2", args, doc)
    one, two = doc["nodes"]["1 shard"]["saturation"], doc["nodes"]["2 shards"]["saturation"]
    inproc = doc["map_server_in_process"]
    doc["ratios"] = {
        "new: 2 shards / 1 shard": ratio(two["new"]["per_s"], one["new"]["per_s"]),
        "refresh: 2 shards / 1 shard": ratio(two["refresh"]["per_s"], one["refresh"]["per_s"]),
        "new, 1 shard / map_server path in process": ratio(one["new"]["per_s"], inproc["new"]["per_s"]),
        "refresh, 1 shard / map_server path in process": ratio(one["refresh"]["per_s"],
                                                               inproc["refresh"]["per_s"]),
        "new, 1 shard / HMAC + WAL commit": ratio(one["new"]["per_s"],
                                                  doc["raw_primitives"]["hmac_plus_wal_commit_per_s"]),
    }
    log("ratios:")
    for k, v in doc["ratios"].items():
        log(f"    {k}: {v}")
    doc["elapsed_s"] = round(time.monotonic() - t_begin, 1)
    save_json("register", doc)
    plot(doc)
    log(f"register.py done in {doc['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
