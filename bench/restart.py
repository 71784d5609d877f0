"""Restart and cold start of the replicas (issue 11): a shard that resumes its stream
vs one whose workers fetch a snapshot, in the same run; the snapshot fill per entry.

Part 1, in process: a snapshot of the scale bench's registrations (1,000,000 IPv4
/28s + 200,000 IPv6 /56s by default), chunk by chunk as a packed writer sends it,
into a fresh ``CompactTable``: decoded from msgpack then ``set`` per entry (the
first table) or ``fill`` per chunk (the decoded fill), or - as the worker's Clone
reader does now - split without decoding its values (``bus.clone._split_chunk``)
and inserted encoded (``CompactTable.load``): us of CPU per entry, alternating
rounds, the best of each.

Part 2, a real node (1 map_server shard, 2 map_resolver workers, the shard's SQLite
store filled before ``decent up`` as bench/scale.py does): the cold start (first
answer for the last registered EID, both workers in sync), then ``decent restart
map_server:0`` twice with Map-Requests at 1k/s (lispload, open loop, 16 flows) from
2 s before each:

- ``snapshot``: the store's stream position forgotten first (as a store restored from
  a backup, or the code before the resume): the new shard starts a new session, every
  worker fetches its snapshot and swaps it in;
- ``resume``: the store as the shard left it: the new shard resumes its stream and the
  workers continue without a snapshot.

For each: when both workers serve from the new shard's stream (swapped / resumed, from
their logs and counters), when the shard takes changes (a resumed one while it
reloads, roles/ms_reload.py) and has reloaded its store (its log), when a
registration made right after the restart (a Map-Register retried until its
Map-Notify) is answered by a worker, and how many of the 1k/s requests went
unanswered (a reply later than 2 s counts).

    flock /tmp/lisp-bench.lock .venv/bin/python bench/restart.py [--v4 1000000] [--v6 200000]

Writes bench/results/restart.json.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (BUILD, RATE_UNLIMITED, Node, build_c, ecm_templates, lispload, log, machine,  # noqa: E402
                      poll, ratio, rss_kib, save_json, site_block, udp_exchange, wait_quiet, write_templates)
from scale import CLIENT, RLOC, Prober, eids, fill_store, v4, v4_host, value  # noqa: E402

PATTERNS = (("started", " starting (pid"), ("restored", "registrations restored"),
            ("resumes", "stream resumes session"), ("in_sync", "in sync at seq"),
            ("swapped", "replica swapped in"), ("resumed", "the writer resumed at seq"),
            ("goodbye", "the writer stops at seq"), ("stopped", " stopped ("),
            ("taking", "taking Map-Registers"))


def log_times(node, instance: str, since: float) -> dict:
    """Seconds after ``since`` (wall clock) of the interesting log lines of one instance."""
    from datetime import datetime
    out: dict = {}
    for line in node.decent("logs", instance, "-n", "400").stdout.splitlines():
        try:
            ts = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            continue
        if ts >= since:
            for key, pat in PATTERNS:
                if pat in line:
                    out.setdefault(key, []).append(round(ts - since, 2))
    return out


def fill_part(n4: int, n6: int, rounds: int) -> dict:
    """us of CPU per entry: decode + ``set`` per entry, decode + ``fill`` per chunk,
    split + ``load`` per chunk (values encoded)."""
    import gc

    import msgpack

    from bus.clone import _split_chunk, _unpack, freeze
    from common.machines.compact import CompactTable
    chunks = []
    batch = []
    for e in eids(n4, n6):
        batch.append([e + "|", value(e)])
        if len(batch) == 1000:
            chunks.append(msgpack.packb({"req": 1, "items": batch}, use_bin_type=True))
            batch = []
    if batch:
        chunks.append(msgpack.packb({"req": 1, "items": batch}, use_bin_type=True))
    n = n4 + n6

    def one(mode: str) -> float:
        t = CompactTable()
        gc.collect()
        t0 = time.process_time()
        for c in chunks:
            if mode == "load":
                t.load(_split_chunk(c)[1])
                continue
            items = ((freeze(k), v) for k, v in _unpack(c)["items"])
            if mode == "set":
                for k, v in items:
                    t.set(k, v)
            else:
                t.fill(items)
        t.finalize()
        dt = time.process_time() - t0
        assert len(t) == n, (mode, len(t))
        return dt

    def decode_only() -> float:
        t0 = time.process_time()
        for c in chunks:
            for _k, _v in ((freeze(k), v) for k, v in _unpack(c)["items"]):
                pass
        return time.process_time() - t0

    def split_only() -> float:
        t0 = time.process_time()
        for c in chunks:
            _split_chunk(c)
        return time.process_time() - t0

    best: dict = {}
    modes = ("set", "fill", "load")
    for r in range(rounds):
        for mode in (modes if r % 2 == 0 else modes[::-1]):
            dt = one(mode)
            best[mode] = min(best.get(mode, dt), dt)
            log(f"    round {r + 1}: {mode}: {dt / n * 1e6:.2f} us CPU per entry")
    dec = min(decode_only() for _ in range(rounds))
    split = min(split_only() for _ in range(rounds))
    out = {"entries": n, "rounds": rounds,
           "set_us_per_entry": round(best["set"] / n * 1e6, 2),
           "fill_us_per_entry": round(best["fill"] / n * 1e6, 2),
           "load_us_per_entry": round(best["load"] / n * 1e6, 2),
           "decode_only_us_per_entry": round(dec / n * 1e6, 2),
           "split_only_us_per_entry": round(split / n * 1e6, 2),
           "set_over_fill": ratio(best["set"], best["fill"]),
           "fill_over_load": ratio(best["fill"], best["load"])}
    out["set_table_only_us_per_entry"] = round(out["set_us_per_entry"] - out["decode_only_us_per_entry"], 2)
    out["fill_table_only_us_per_entry"] = round(out["fill_us_per_entry"] - out["decode_only_us_per_entry"], 2)
    out["load_table_only_us_per_entry"] = round(out["load_us_per_entry"] - out["split_only_us_per_entry"], 2)
    return out


def counters(node, name: str) -> list[int]:
    c = node.counters()
    return [c.get(f"map_resolver:{w}", {}).get(name, 0) for w in range(2)]


def restart_round(node, mode: str, n: int, n4: int, tf, noff: int, uoff: int, args) -> dict:
    from common.wire.messages import MapReply, decode_message
    from roles.ms_store import RegistrationStore
    from tests.unit.msfixtures import register
    res: dict = {"mode": mode}
    names = ("swapped", "resumed", "synced")
    before = {k: counters(node, f"clone.ms.0.{k}") for k in names}
    load: dict = {}

    def run_load() -> None:
        try:
            load.update(lispload(RLOC, tf, src=CLIENT, rate=1000, seconds=args.load_s, warmup=0, drain=2.0,
                                 timeout_ms=2000, nonce_off=noff, udp_off=uoff))
        except Exception as exc:   # reported, the run goes on
            load["error"] = repr(exc)
    loader = threading.Thread(target=run_load, daemon=True)
    loader.start()
    time.sleep(2.0)
    if mode == "snapshot":     # nothing commits meanwhile: no registration changes in flight
        st = RegistrationStore(str(node.state / "map_server_0.sqlite"))
        st.forget_stream_position()
        st.close()
    wall1, t1 = time.time(), time.monotonic()
    rr = node.decent("restart", "map_server:0", timeout=args.node_timeout)
    res["restart_cmd_s"] = round(time.monotonic() - t1, 2)
    res["restart_cmd_rc"] = rr.returncode
    # a registration made right after the restart: retried until its Map-Notify
    # (the new shard takes it once reloaded), then asked until a worker answers it
    new_eid = v4(n4)          # the next /28 after the bench's
    host = v4_host(n4)
    reg = register([new_eid], nonce=time.time_ns(), key=b"big-secret", proxy=True)
    acked = poll(lambda: udp_exchange((RLOC, 4342), reg, src=CLIENT, timeout=0.5), args.node_timeout, 0.0)
    res["change_acknowledged_s"] = round(time.monotonic() - t1, 2) if acked else None

    def answered() -> bool:
        r = udp_exchange((RLOC, 4342), lambda p: ecm_templates([host], CLIENT, sport=p)[0][0], src=CLIENT,
                         timeout=0.2)
        try:
            m = r and decode_message(r)
        except Exception:
            return False
        return isinstance(m, MapReply) and bool(m.records[0].locators) and m.records[0].mask_len == 28
    ok = acked and poll(answered, args.node_timeout, 0.05)
    res["change_answered_s"] = round(time.monotonic() - t1, 2) if ok else None
    key = "swapped" if mode == "snapshot" else "resumed"
    done = poll(lambda: all(a > b for a, b in zip(counters(node, f"clone.ms.0.{key}"), before[key]))
                and node.in_sync(2, n + 1), args.node_timeout, 0.3)
    res["workers_done_s"] = round(time.monotonic() - t1, 2) if done else None
    loader.join(args.load_s + 60)
    res["load"] = {k: load.get(k) for k in ("sent", "received", "timeouts", "unmatched", "send_errors", "error",
                                            "rate_offered", "wall_s")}
    res["load_latency_ns"] = load.get("latency_ns")
    res["logs"] = {k: log_times(node, k, wall1) for k in ("map_server:0", "map_resolver:0", "map_resolver:1")}
    ms_log = res["logs"]["map_server:0"]
    res["shard_restored_s"] = (ms_log.get("restored") or [None])[-1]
    per_worker = []
    for w in ("map_resolver:0", "map_resolver:1"):
        lg = res["logs"][w]
        per_worker.append(min(lg.get(key) or [None], key=lambda x: x or 0))
    res["workers_on_new_stream_s"] = per_worker
    # serving from the reloaded store: the workers on the new shard's stream and the new
    # shard able to take a change (a resumed shard takes them while it reloads:
    # roles/ms_reload.py; otherwise once reloaded)
    res["shard_taking_changes_s"] = (ms_log.get("taking") or [None])[-1]
    parts = [x for x in per_worker + [res["shard_taking_changes_s"]]]
    res["restart_to_serving_s"] = max(parts) if all(x is not None for x in parts) else None
    after = {k: counters(node, f"clone.ms.0.{k}") for k in names}
    res["counters_delta"] = {k: [a - b for a, b in zip(after[k], before[k])] for k in names}
    st = node.status()
    res["rss_mib"] = {k: round((rss_kib(v["pid"]) or 0) / 1024, 1) for k, v in st.items() if v.get("pid")}
    # take the registration back out (the next round counts n + 1 again)
    unreg = register([new_eid], nonce=time.time_ns(), key=b"big-secret", proxy=True, ttl=0)
    poll(lambda: udp_exchange((RLOC, 4342), unreg, src=CLIENT, timeout=0.5), 30, 0.0)
    poll(lambda: node.in_sync(2, n), 30, 0.3)
    log(f"  restart ({mode}): workers on the new stream after {per_worker} s, shard taking changes after "
        f"{res['shard_taking_changes_s']} s, reloaded after {res['shard_restored_s']} s -> serving the reloaded store after {res['restart_to_serving_s']} s; "
        f"a change made after the restart acknowledged after {res['change_acknowledged_s']} s, answered after "
        f"{res['change_answered_s']} s; counters {res['counters_delta']}; 1k/s load {res['load']}")
    return res


def node_part(n4: int, n6: int, args) -> dict:
    from tests.unit.msfixtures import register
    n = n4 + n6
    res: dict = {"entries": n}
    body = ("[roles]\nmap_resolver = { workers = 2 }\nmap_server = { shards = 1 }\n" + RATE_UNLIMITED
            + "reply_rate_limit = 10000000\nreply_rate_burst = 10000000\n"
            + site_block("big", "big-secret", ["10.0.0.0/8", "2001:db8::/32"]))
    timers = ("\n[timers]\nregistration_lifetime = 7200\nheartbeat_interval = 1\n"
              f"watchdog_timeout = {args.watchdog_timeout}\nsnapshot_timeout = 300\n")
    node = Node("benchrestart", RLOC, body, timers=timers)
    node.conf.write_text(node.conf.read_text().replace('log_level = "warning"', 'log_level = "info"'))
    try:
        raw = register([v4(0)], nonce=1, key=b"big-secret", proxy=True)
        node.state.mkdir(parents=True, exist_ok=True)
        res["store_fill_s"] = round(fill_store(node.state / "map_server_0.sqlite", n4, n6, raw), 1)
        last4 = v4_host(n4 - 1)
        probe = Prober(last4, 28).start()
        try:
            wall0, t0 = time.time(), time.monotonic()
            node.up(timeout=120)
            ok = poll(lambda: probe.first_ok_after(t0), args.node_timeout, 0.2)
            res["cold_start_first_answer_s"] = round(ok, 2) if ok else None
            synced = node.wait_in_sync(2, n, timeout=args.node_timeout)
            res["cold_start_all_workers_in_sync_s"] = round(time.monotonic() - t0, 2) if synced else None
            res["cold_start_logs"] = {k: log_times(node, k, wall0) for k in
                                      ("map_server:0", "map_resolver:0", "map_resolver:1")}
            log(f"  cold start: first answer for {last4} after {res['cold_start_first_answer_s']} s; both "
                f"workers in sync after {res['cold_start_all_workers_in_sync_s']} s; logs {res['cold_start_logs']}")
        finally:
            probe.stop()
        hosts = [v4_host(random.Random(3).randrange(n4)) for _ in range(1024)]
        msgs, noff, uoff = ecm_templates(hosts, CLIENT)
        tf = write_templates(BUILD / "restart-lookups.bin", msgs)
        build_c("lispload")
        res["rounds"] = {}
        for mode in args.modes.split(","):
            res["rounds"][mode] = restart_round(node, mode, n, n4, tf, noff, uoff, args)
    finally:
        node.down()
    return res


def cold_part(n4: int, n6: int, args) -> dict:
    """Cold starts alternating ``[map_resolver] snapshot_turns`` values (roles/snapgate.py:
    how many workers fetch the shard's snapshot at once), one store file copied into each
    fresh node: first answer for the last registered EID, both workers in sync."""
    import shutil

    from tests.unit.msfixtures import register
    n = n4 + n6
    turns = [int(x) for x in args.cold_turns.split(",")]
    saved = BUILD / "cold-store"
    shutil.rmtree(saved, ignore_errors=True)
    saved.mkdir(parents=True)
    raw = register([v4(0)], nonce=1, key=b"big-secret", proxy=True)
    out: dict = {"entries": n, "turns": turns, "runs": []}
    out["store_fill_s"] = round(fill_store(saved / "map_server_0.sqlite", n4, n6, raw), 1)
    timers = ("\n[timers]\nregistration_lifetime = 7200\nheartbeat_interval = 1\n"
              f"watchdog_timeout = {args.watchdog_timeout}\nsnapshot_timeout = 300\n")
    last4 = v4_host(n4 - 1)
    for rep in range(args.cold_reps):
        for t in (turns if rep % 2 == 0 else turns[::-1]):
            body = ("[roles]\nmap_resolver = { workers = 2 }\nmap_server = { shards = 1 }\n" + RATE_UNLIMITED
                    + f"snapshot_turns = {t}\nreply_rate_limit = 10000000\nreply_rate_burst = 10000000\n"
                    + site_block("big", "big-secret", ["10.0.0.0/8", "2001:db8::/32"]))
            node = Node("benchcold", RLOC, body, timers=timers)
            node.conf.write_text(node.conf.read_text().replace('log_level = "warning"', 'log_level = "info"'))
            node.state.mkdir(parents=True, exist_ok=True)
            for f in saved.iterdir():
                shutil.copy(f, node.state / f.name)
            busy = wait_quiet()
            probe = Prober(last4, 28).start()
            try:
                wall0, t0 = time.time(), time.monotonic()
                node.up(timeout=120)
                ok = poll(lambda p=probe, s=t0: p.first_ok_after(s), args.node_timeout, 0.2)
                synced = node.wait_in_sync(2, n, timeout=args.node_timeout)
                r = {"turns": t, "round": rep + 1, "quiet": busy,
                     "first_answer_s": round(ok, 2) if ok else None,
                     "all_workers_in_sync_s": round(time.monotonic() - t0, 2) if synced else None,
                     "logs": {k: log_times(node, k, wall0) for k in ("map_server:0", "map_resolver:0",
                                                                      "map_resolver:1")}}
            finally:
                probe.stop()
                node.down()
            out["runs"].append(r)
            log(f"  cold start, snapshot_turns = {t} (round {rep + 1}): first answer {r['first_answer_s']} s, "
                f"both workers in sync {r['all_workers_in_sync_s']} s; logs {r['logs']}")
    shutil.rmtree(saved, ignore_errors=True)
    for t in turns:
        mine = [r for r in out["runs"] if r["turns"] == t]
        out[f"turns_{t}_best_first_answer_s"] = min((r["first_answer_s"] for r in mine if r["first_answer_s"]),
                                                    default=None)
        out[f"turns_{t}_best_all_in_sync_s"] = min((r["all_workers_in_sync_s"] for r in mine
                                                    if r["all_workers_in_sync_s"]), default=None)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--v4", type=int, default=1_000_000, help="IPv4 registrations (< 1048576)")
    ap.add_argument("--v6", type=int, default=200_000, help="IPv6 registrations")
    ap.add_argument("--fill-rounds", type=int, default=2, help="in-process rounds of each fill (best kept)")
    ap.add_argument("--skip-fill", action="store_true", help="no in-process part")
    ap.add_argument("--skip-node", action="store_true", help="only the in-process part")
    ap.add_argument("--modes", default="snapshot,resume", help="restart rounds, in order")
    ap.add_argument("--load-s", type=float, default=60, help="seconds of 1k/s Map-Requests per restart")
    ap.add_argument("--node-timeout", type=float, default=300, help="bound on each wait, s")
    ap.add_argument("--watchdog-timeout", type=float, default=600)
    ap.add_argument("--cold-turns", default="", help="cold starts alternating these [map_resolver] "
                    "snapshot_turns values, e.g. 1,2 (roles/snapgate.py); none by default")
    ap.add_argument("--cold-reps", type=int, default=2, help="rounds of --cold-turns")
    args = ap.parse_args()
    t_begin = time.monotonic()
    doc: dict = {"params": vars(args), "machine": machine(), "quiet": wait_quiet()}
    if not args.skip_fill:
        log(f"snapshot fill in process, {args.v4 + args.v6:,} entries:")
        doc["fill"] = fill_part(args.v4, args.v6, args.fill_rounds)
        log(f"  {doc['fill']}")
    if args.cold_turns:
        log(f"cold starts by snapshot_turns {args.cold_turns}, {args.v4 + args.v6:,} registrations:")
        doc["cold"] = cold_part(args.v4, args.v6, args)
    if not args.skip_node:
        log(f"node {RLOC} with {args.v4 + args.v6:,} registrations:")
        doc["quiet_node"] = wait_quiet()
        doc["node"] = node_part(args.v4, args.v6, args)
        r = doc["node"]["rounds"]
        if "snapshot" in r and "resume" in r:
            doc["restart_to_serving_snapshot_over_resume"] = ratio(r["snapshot"]["restart_to_serving_s"],
                                                                   r["resume"]["restart_to_serving_s"])
            log(f"  restart to serving: snapshot {r['snapshot']['restart_to_serving_s']} s, resume "
                f"{r['resume']['restart_to_serving_s']} s ({doc['restart_to_serving_snapshot_over_resume']}x)")
    doc["elapsed_s"] = round(time.monotonic() - t_begin, 1)
    save_json("restart", doc)
    log(f"restart.py done in {doc['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
