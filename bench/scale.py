"""Scale: 1,000,000 IPv4 + 200,000 IPv6 registrations: memory, lookups/s, restart to serving.

Issue 11: the worker's replica is now a ``CompactTable`` (child ``compact``; the
replica as it was, dict + ``RegistrationTable``, is still measured as ``table``
unless --skip-old), and the node part sends Map-Requests at 1k/s (lispload, open
loop) across ``decent restart map_server:0`` and counts the unanswered ones.

Part 1, in child processes (so each RSS is its own, read from /proc):

- ``pytricia``: bare pytricia trees holding the prefixes (value: a small int) - the
  floor for the data structure;
- ``table``: what a map_resolver worker holds: the replica dict (values decoded from
  msgpack chunks of 1000, as a snapshot arrives) and a ``RegistrationTable`` filled
  from it with ``set`` - fill time, resident memory, longest-prefix lookups/s
  (``RegistrationTable.lookup`` of random host EIDs, hits and misses);
- ``order``: ``RegistrationTable.set`` cost in registration order vs random order at
  smaller sizes (its sorted list of networks is kept with ``bisect.insort``).

Part 1b (child ``shard``): the map_server shard's reload of its SQLite store in
process, before (tests/unit/msreference.py: a ``RegistrationTable`` of ``Entry``
objects, values decoded) and after (the compact ``ShardTable``, values as stored)
the issue 11 change, same run, from one store: resident memory with the Clone
writer's held items, seconds and us per row (``--shard-only``: only this and the
node part, the other in-process figures kept from the last scale.json).

Part 2, a real node (1 map_server shard, 2 map_resolver workers): the shard's SQLite
file is filled with the registrations before ``decent up`` (as roles/ms_store.py
writes them: key, msgpack value, the raw Map-Register), then: time until a
Map-Request for the last registered EID is answered, until every worker's replica
is in sync, the resident memory of each process, replies/s at saturation with the
big table, and the outage of ``decent restart map_server:0`` (store reload, then
every worker re-fetches the snapshot).

    .venv/bin/python bench/scale.py [--v4 1000000] [--v6 200000] [--skip-node]

Sizes are options; a run whose node part would exceed --node-timeout seconds is
cut there and says so.  Writes bench/results/scale.json and scale.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (BUILD, PY, RATE_UNLIMITED, REPO, Node, build_c, ecm_templates, hwm_kib,  # noqa: E402
                      lispload, log, poll, pyplot, ratio, rss_kib, save_json, site_block,
                      udp_exchange, wait_quiet, write_templates)

RLOC = "127.0.65.1"
CLIENT = "127.0.65.100"
LOC = ["192.0.2.1", 1, 100, 255, 0, 1]


def v4(i: int) -> str:
    """The i-th IPv4 registration: /28s in 10.0.0.0/8 (2^20 of them)."""
    return f"[0]10.{(i >> 12) & 255}.{(i >> 4) & 255}.{(i & 15) << 4}/28"


def v4_host(i: int) -> str:
    return f"10.{(i >> 12) & 255}.{(i >> 4) & 255}.{((i & 15) << 4) + 5}"


def v6(i: int) -> str:
    """The i-th IPv6 registration: /56s in 2001:db8::/32."""
    return f"[0]2001:db8:{(i >> 8) & 0xffff:x}:{(i & 255) << 8:x}::/56"


def v6_host(i: int) -> str:
    return f"2001:db8:{(i >> 8) & 0xffff:x}:{(i & 255) << 8:x}::5"


def value(eid: str) -> dict:
    """As common.machines.regtable.entry_value makes it for a proxy-reply registration."""
    return {"eid": eid, "site": "big", "rlocs": [list(LOC)], "ttl": 1440, "proxy": True,
            "merge": False, "xtr": "", "registrant": "127.0.0.1"}


def eids(n4: int, n6: int):
    for i in range(n4):
        yield v4(i)
    for i in range(n6):
        yield v6(i)


# ------------------------------------------------------------------ children

def rss_now() -> int:
    return rss_kib(os.getpid()) or 0


def child_pytricia(n4: int, n6: int, lookups: int) -> dict:
    import pytricia
    r0 = rss_now()
    t4, t6 = pytricia.PyTricia(32), pytricia.PyTricia(128)
    t0 = time.perf_counter()
    for i in range(n4):
        t4[v4(i)[3:]] = i
    for i in range(n6):
        t6[v6(i)[3:]] = i
    fill = time.perf_counter() - t0
    r1 = rss_now()
    rnd = random.Random(1)
    hosts = [v4_host(rnd.randrange(n4)) if k % 6 else v6_host(rnd.randrange(max(1, n6)))
             for k in range(lookups)]
    t0 = time.perf_counter()
    hit = 0
    for h in hosts:
        hit += (t6 if ":" in h else t4).get_key(h) is not None
    dt = time.perf_counter() - t0
    return {"entries": n4 + n6, "rss_kib": r1, "rss_delta_kib": r1 - r0,
            "bytes_per_entry": round((r1 - r0) * 1024 / max(1, n4 + n6)),
            "fill_s": round(fill, 2), "lookups_per_s": round(lookups / dt), "hit_share": hit / lookups}


def child_table(n4: int, n6: int, lookups: int) -> dict:
    """A map_resolver worker's replica: msgpack-decoded values + RegistrationTable."""
    import msgpack

    from common.wire.eidtext import parse_eidspec
    from common.machines.regtable import RegistrationTable
    r0 = rss_now()
    replica: dict = {}
    t0 = time.perf_counter()
    chunk = []
    for e in eids(n4, n6):
        chunk.append([e + "|", value(e)])
        if len(chunk) == 1000:
            replica.update((k, v) for k, v in msgpack.unpackb(msgpack.packb(chunk)))
            chunk = []
    if chunk:
        replica.update((k, v) for k, v in msgpack.unpackb(msgpack.packb(chunk)))
    decode_s = time.perf_counter() - t0
    r1 = rss_now()
    table = RegistrationTable()
    t0 = time.perf_counter()
    for k, v in replica.items():
        table.set(k, v)
    fill = time.perf_counter() - t0
    r2 = rss_now()
    rnd = random.Random(1)
    hosts, kinds = [], []
    for k in range(lookups):
        if k % 6 == 0 and n6:
            hosts.append(parse_eidspec(v6_host(rnd.randrange(n6))))
        elif k % 6 == 1:
            hosts.append(parse_eidspec(f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}"))
        else:
            hosts.append(parse_eidspec(v4_host(rnd.randrange(n4))))
    t0 = time.perf_counter()
    hit = 0
    for h in hosts:
        hit += table.lookup(h) is not None
    dt = time.perf_counter() - t0
    # the string-keyed pytricia call the table makes, for the same hosts (the floor)
    tree4 = table._trees.get((0, 4))
    tree6 = table._trees.get((0, 6))
    strs = [(tree6 if h.address.version == 6 else tree4, f"{h.address}/{h.length}") for h in hosts]
    t0 = time.perf_counter()
    for tr, s in strs:
        tr.get_key(s)
    dt_raw = time.perf_counter() - t0
    return {"entries": len(table), "rss_kib": r2, "rss_replica_dict_kib": r1 - r0,
            "rss_table_kib": r2 - r1, "bytes_per_entry_total": round((r2 - r0) * 1024 / max(1, len(table))),
            "decode_s": round(decode_s, 2), "fill_s": round(fill, 2),
            "us_per_set": round(fill / max(1, len(table)) * 1e6, 2),
            "lookups_per_s": round(lookups / dt), "hit_share": round(hit / lookups, 3),
            "pytricia_get_key_same_hosts_per_s": round(lookups / dt_raw)}


def child_compact(n4: int, n6: int, lookups: int) -> dict:
    """A map_resolver worker's replica now (issue 11): a CompactTable filled item by
    item from msgpack chunks of 1000, as a snapshot arrives (no dict beside it)."""
    import msgpack

    from common.machines.compact import CompactTable
    from common.wire.eidtext import parse_eidspec
    r0 = rss_now()
    table = CompactTable()
    t0 = time.perf_counter()
    chunk = []
    for e in eids(n4, n6):
        chunk.append([e + "|", value(e)])
        if len(chunk) == 1000:
            for k, v in msgpack.unpackb(msgpack.packb(chunk)):
                table.set(k, v)
            chunk = []
    for k, v in msgpack.unpackb(msgpack.packb(chunk)) if chunk else ():
        table.set(k, v)
    table.finalize()
    fill = time.perf_counter() - t0
    r1 = rss_now()
    rnd = random.Random(1)
    hosts = []
    for k in range(lookups):
        if k % 6 == 0 and n6:
            hosts.append(parse_eidspec(v6_host(rnd.randrange(n6))))
        elif k % 6 == 1:
            hosts.append(parse_eidspec(f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}"))
        else:
            hosts.append(parse_eidspec(v4_host(rnd.randrange(n4))))
    t0 = time.perf_counter()
    hit = sum(table.lookup(h) is not None for h in hosts)
    dt = time.perf_counter() - t0
    t0 = time.perf_counter()
    for h in hosts:
        table.best_key(h)
    dt_best = time.perf_counter() - t0
    tree4, tree6 = table._trees.get((0, 4)), table._trees.get((0, 6))
    strs = [(tree6 if h.address.version == 6 else tree4, f"{h.address}/{h.length}") for h in hosts]
    t0 = time.perf_counter()
    for tr, s_ in strs:
        tr.get_key(s_)
    dt_raw = time.perf_counter() - t0
    return {"entries": len(table), "rss_kib": r1, "rss_delta_kib": r1 - r0,
            "bytes_per_entry": round((r1 - r0) * 1024 / max(1, len(table))),
            "distinct_items": len(table._intern), "fill_s": round(fill, 2),
            "us_per_set": round(fill / max(1, len(table)) * 1e6, 2),
            "lookups_per_s": round(lookups / dt), "best_key_per_s": round(lookups / dt_best),
            "hit_share": round(hit / lookups, 3), "pytricia_get_key_same_hosts_per_s": round(lookups / dt_raw)}


def child_order(sizes, kind: str = "table") -> dict:
    """us per set (then one negative lookup, which merges the index) by arrival order."""
    from common.machines.compact import CompactTable
    from common.machines.regtable import RegistrationTable, negative_prefix
    from common.wire.eidtext import parse_eidspec
    out = {}
    probe = parse_eidspec("11.0.0.1")
    for n in sizes:
        for order in ("registration order", "random order"):
            idx = list(range(n))
            if order == "random order":
                random.Random(2).shuffle(idx)
            vals = [(v4(i) + "|", value(v4(i))) for i in idx]
            t = CompactTable() if kind == "compact" else RegistrationTable()
            t0 = time.perf_counter()
            for k, v in vals:
                t.set(k, v)
            negative_prefix(probe, [t])
            out.setdefault(order, {})[n] = round((time.perf_counter() - t0) / n * 1e6, 2)
    return out


def child_shard(path: str, kind: str) -> dict:
    """The map_server shard's reload in process, as roles/map_server.py does it, from
    the SQLite store at ``path``: ``before``: values decoded, a ``RegistrationTable`` of
    ``Entry`` objects, a heap entry per key and the Clone writer's items packed from
    each entry's value (tests/unit/msreference.py, the data model before); ``after``:
    values left encoded, the compact ``ShardTable``, the writer's items from the
    stored bytes (common/machines/mapserver.py now).  Resident memory after the
    reload (the writer's held items included), us per row, and the grace expiry
    armed (next_timer)."""
    import gc

    import msgpack

    from common.machines.mapserver import MapServer
    from roles import memtrim
    from roles.ms_store import RegistrationStore
    from tests.unit.msfixtures import site
    from tests.unit.msreference import ReferenceMapServer
    pack = lambda o: msgpack.packb(o, use_bin_type=True)  # noqa: E731 - bus.clone._pack
    big = site("big", b"big-secret", prefixes=(("[0]10.0.0.0/8", True), ("[0]2001:db8::/32", True)))
    r0 = rss_now()
    ms = (ReferenceMapServer if kind == "before" else MapServer)([big], lifetime=7200, grace=7200)
    store = RegistrationStore(path)
    held: dict = {}       # CloneWriter(packed=True)._data
    raws: dict = {}
    gc.disable()
    t0 = time.perf_counter()
    n = 0
    for rows in store.load_chunks(2000, decode=(kind == "before")):
        rows = [(k, v, raws.setdefault(raw, raw) if raw else raw) for k, v, raw in rows]
        skipped = ms.restore(rows, {}, time.monotonic())
        n += len(rows) - len(skipped)
        if kind == "before":
            held.update((e.key, pack([e.key, e.value])) for e in (ms.table.get(k) for k, _v, _r in rows)
                        if e is not None)
        else:
            skip = set(skipped)
            held.update((k, b"\x92" + pack(k) + v) for k, v, _r in rows if k not in skip)
    raws = rows = None
    dt = time.perf_counter() - t0
    memtrim.trim()
    gc.freeze()
    gc.enable()
    r1 = rss_now()
    store.close()
    return {"kind": kind, "entries": len(ms.table), "rows_loaded": n, "reload_s": round(dt, 2),
            "us_per_row": round(dt / max(1, n) * 1e6, 2), "rss_kib": r1, "rss_delta_kib": r1 - r0,
            "bytes_per_entry": round((r1 - r0) * 1024 / max(1, n)), "next_timer_armed": ms.next_timer() is not None}


def run_child(kind: str, *args) -> dict:
    r = subprocess.run([PY, __file__, "--child", kind] + [str(a) for a in args], capture_output=True,
                       text=True, cwd=REPO, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"child {kind} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- node

def fill_store(path: Path, n4: int, n6: int, raw: bytes) -> float:
    """The shard's SQLite file with every registration, as RegistrationStore writes it."""
    import msgpack

    from roles.ms_store import RegistrationStore
    t0 = time.perf_counter()
    st = RegistrationStore(str(path))
    cur = st.db.cursor()
    cur.execute("BEGIN")
    batch = []
    for e in eids(n4, n6):
        batch.append((e + "|", msgpack.packb(value(e)), raw))
        if len(batch) == 10000:
            cur.executemany("INSERT OR REPLACE INTO registration VALUES (?, ?, ?)", batch)
            batch = []
    if batch:
        cur.executemany("INSERT OR REPLACE INTO registration VALUES (?, ?, ?)", batch)
    cur.execute("INSERT OR REPLACE INTO nonce VALUES (?, ?)", ("big|" + "00" * 16 + "|0", "1"))
    cur.execute("COMMIT")
    st.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    st.close()
    return time.perf_counter() - t0


def log_times(node: Node, instance: str, since: float) -> dict:
    """Seconds after ``since`` (wall clock) of the interesting log lines of one instance."""
    out = {}
    text = node.decent("logs", instance, "-n", "400").stdout
    for line in text.splitlines():
        try:
            ts = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            continue
        rel = round(ts - since, 2)
        if rel < 0:
            continue
        for key, pat in (("started", " starting (pid"), ("restored", "registrations restored"),
                         ("in_sync", "in sync at seq"), ("serving", "INFO serving UDP"),
                         ("swapped", "replica swapped in"), ("goodbye", "the writer stops at seq"),
                         ("resumed", "the writer resumed at seq"),
                         ("stopped", " stopped (")):
            if pat in line:
                out.setdefault(key, []).append(rel)
    return out


class Prober:
    """Asks the node for one EID every ``interval`` s from a thread; remembers when it
    was answered with the registered prefix."""

    def __init__(self, host: str, want_len: int, interval: float = 0.1) -> None:
        self.host, self.want_len, self.interval = host, want_len, interval
        self.answers: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from common.wire.messages import MapReply, decode_message
        deadline = time.monotonic() + 1800
        while not self._stop.is_set() and time.monotonic() < deadline:
            t = time.monotonic()
            r = udp_exchange((RLOC, 4342), lambda p: ecm_templates([self.host], CLIENT, sport=p)[0][0],
                             src=CLIENT, timeout=self.interval)
            ok = False
            if r:
                try:
                    m = decode_message(r)
                    ok = isinstance(m, MapReply) and bool(m.records[0].locators) and \
                        m.records[0].mask_len == self.want_len
                except Exception:
                    ok = False
            self.answers.append((t, ok))
            rest = self.interval - (time.monotonic() - t)
            if rest > 0:
                time.sleep(rest)

    def start(self):
        self._t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._t.join(10)

    def first_ok_after(self, t0: float) -> float | None:
        return next((t - t0 for t, ok in self.answers if ok and t >= t0), None)

    def longest_gap_after(self, t0: float) -> tuple[float, float] | None:
        """(start, length) of the longest run of unanswered probes after t0."""
        best, start = None, None
        for t, ok in self.answers:
            if t < t0:
                continue
            if not ok and start is None:
                start = t
            elif ok and start is not None:
                if best is None or t - start > best[1]:
                    best = (start - t0, t - start)
                start = None
        if start is not None:
            last = self.answers[-1][0]
            if best is None or last - start > best[1]:
                best = (start - t0, last - start)
        return best


def node_part(n4: int, n6: int, args) -> dict:
    from tests.unit.msfixtures import register
    res: dict = {"entries": n4 + n6}
    body = ("[roles]\nmap_resolver = { workers = 2 }\nmap_server = { shards = 1 }\n" + RATE_UNLIMITED
            # every request names one ITR-RLOC: lift the per-destination reply limit too
            + "reply_rate_limit = 10000000\nreply_rate_burst = 10000000\n"
            + site_block("big", "big-secret", ["10.0.0.0/8", "2001:db8::/32"]))
    lifetime = 7200
    timers = (f"\n[timers]\nregistration_lifetime = {lifetime}\nheartbeat_interval = 1\n"
              f"watchdog_timeout = {args.watchdog_timeout}\nsnapshot_timeout = {args.snapshot_timeout}\n")
    node = Node("benchscale", RLOC, body, timers=timers)
    node.conf.write_text(node.conf.read_text().replace('log_level = "warning"', 'log_level = "info"'))
    try:
        raw = register([v4(0)], nonce=1, key=b"big-secret", proxy=True)
        node.state.mkdir(parents=True, exist_ok=True)
        res["store_fill_s"] = round(fill_store(node.state / "map_server_0.sqlite", n4, n6, raw), 1)
        res["store_bytes"] = sum(p.stat().st_size for p in node.state.glob("map_server_0.sqlite*"))
        log(f"  SQLite store: {n4 + n6:,} rows, {res['store_bytes'] / 2**20:.0f} MiB, filled in "
            f"{res['store_fill_s']} s")
        last4 = v4_host(n4 - 1)
        probe = Prober(last4, 28).start()
        try:
            wall0, t0 = time.time(), time.monotonic()
            node.up(timeout=120)
            res["decent_up_s"] = round(time.monotonic() - t0, 2)
            ok = poll(lambda: probe.first_ok_after(t0), args.node_timeout, 0.2)
            res["cold_start_first_answer_s"] = round(ok, 2) if ok else None
            synced = node.wait_in_sync(2, n4 + n6, timeout=args.node_timeout)
            res["cold_start_all_workers_in_sync_s"] = round(time.monotonic() - t0, 2) if synced else None
            res["cold_start_logs"] = {k: log_times(node, k, wall0) for k in
                                      ("map_server:0", "map_resolver:0", "map_resolver:1")}
            log(f"  cold start: `decent up` returned after {res['decent_up_s']} s; first answer for "
                f"{last4} after {res['cold_start_first_answer_s']} s; both workers in sync after "
                f"{res['cold_start_all_workers_in_sync_s']} s")
            log(f"    log times (s after up): {res['cold_start_logs']}")
            st = node.status()
            res["rss_mib"] = {k: round((rss_kib(v["pid"]) or 0) / 1024, 1) for k, v in st.items() if v.get("pid")}
            res["peak_rss_mib"] = {k: round((hwm_kib(v["pid"]) or 0) / 1024, 1) for k, v in st.items()
                                   if v.get("pid")}
            log(f"  resident memory, MiB: {res['rss_mib']}")
            log(f"  peak resident (VmHWM), MiB: {res['peak_rss_mib']}")
            # lookups on the live node with the big table
            hosts = [v4_host(random.Random(3).randrange(n4)) for _ in range(1024)]
            msgs, noff, uoff = ecm_templates(hosts, CLIENT)
            tf = write_templates(BUILD / "scale-lookups.bin", msgs)
            build_c("lispload")
            node.decent("stop", "map_resolver:1")
            r = lispload(RLOC, tf, src=CLIENT, window=64, seconds=3, nonce_off=noff, udp_off=uoff,
                         watch={"w0": st["map_resolver:0"]["pid"]})
            res["one_worker_replies_per_s_big_table"] = r["reply_rate"]
            res["one_worker_saturation_raw"] = r
            log(f"  1 worker at saturation with {n4 + n6:,} registrations: {r['reply_rate']:,.0f} replies/s "
                f"(cpu {r['cpu_pct']})")
            node.decent("start", "map_resolver:1")
            node.wait_in_sync(2, n4 + n6, timeout=args.node_timeout)
            # restart the map_server: reload from SQLite, every worker re-syncs
            ms_pid = st["map_server:0"]["pid"]

            def synced_counts() -> list[int]:
                c = node.counters()
                # a worker re-synced by a snapshot, or continued the resumed stream without one
                return [sum(c.get(f"map_resolver:{w}", {}).get(f"clone.ms.0.{k}", 0) for k in ("synced", "resumed"))
                        for w in range(2)]
            before = synced_counts()
            # Map-Requests at 1k/s, open loop, from just before the restart (16 flows over
            # both workers; a reply later than 2 s counts as unanswered)
            load: dict = {}

            def run_load() -> None:
                try:
                    load.update(lispload(RLOC, tf, src=CLIENT, rate=1000, seconds=args.restart_load_s,
                                         warmup=0, drain=2.0, timeout_ms=2000, nonce_off=noff, udp_off=uoff))
                except Exception as exc:   # reported, the run goes on
                    load["error"] = repr(exc)
            loader = threading.Thread(target=run_load, daemon=True)
            loader.start()
            time.sleep(2.0)
            wall1, t1 = time.time(), time.monotonic()
            rr = node.decent("restart", "map_server:0", timeout=args.node_timeout)
            res["restart_cmd_s"] = round(time.monotonic() - t1, 2)
            res["restart_cmd_rc"] = rr.returncode
            # the workers keep answering from their replica until the new map_server
            # (a new session) has reloaded and publishes: then each re-fetches a snapshot

            def resynced() -> bool:
                now = synced_counts()
                return all(a > b for a, b in zip(now, before)) and node.in_sync(2, n4 + n6)
            synced = poll(resynced, args.node_timeout, 0.5)
            res["restart_all_workers_in_sync_s"] = round(time.monotonic() - t1, 2) if synced else None
            time.sleep(1.0)
            gap = probe.longest_gap_after(t1)
            res["restart_outage"] = gap and {"from_s": round(gap[0], 2), "length_s": round(gap[1], 2)}
            res["restart_logs"] = {k: log_times(node, k, wall1) for k in
                                   ("map_server:0", "map_resolver:0", "map_resolver:1")}
            ins = [max(res["restart_logs"][w].get("in_sync", []) + res["restart_logs"][w].get("resumed", []) or [0])
                   for w in
                   ("map_resolver:0", "map_resolver:1")]
            res["restart_to_serving_s"] = max(ins) if all(ins) else None
            sw = [min(res["restart_logs"][w].get("swapped") or [None], key=lambda x: x or 0)
                  for w in ("map_resolver:0", "map_resolver:1")]
            res["restart_to_swapped_s"] = max(sw) if all(sw) else None
            res["restart_shard_restored_s"] = (res["restart_logs"]["map_server:0"].get("restored") or [None])[-1]
            loader.join(args.restart_load_s + 60)
            if res["restart_shard_restored_s"] is None:
                # a resumed stream: the workers did not wait for the shard's reload; its
                # log says when it ended (read again once the load has run)
                late = log_times(node, "map_server:0", wall1)
                res["restart_shard_restored_s"] = (late.get("restored") or [None])[-1]
            res["restart_load"] = {k: load.get(k) for k in ("sent", "received", "timeouts", "unmatched",
                                                            "send_errors", "error", "rate_offered", "wall_s")}
            res["restart_load_raw"] = load
            log(f"  1k/s Map-Requests across the restart ({args.restart_load_s:.0f} s from 2 s before it): "
                f"{res['restart_load']}; shard restored after {res['restart_shard_restored_s']} s, both workers "
                f"swapped in its snapshot after {res['restart_to_swapped_s']} s")
            new_pid = node.pid("map_server:0")
            res["restart_new_pid"] = new_pid != ms_pid
            log(f"  `decent restart map_server:0`: command took {res['restart_cmd_s']} s; no answers "
                f"for {res['restart_outage']} (s after the restart); every worker re-synced with the "
                f"new map_server after {res['restart_all_workers_in_sync_s']} s")
            log(f"    log times (s after restart): {res['restart_logs']}")
            st = node.status()
            res["rss_after_restart_mib"] = {k: round((rss_kib(v["pid"]) or 0) / 1024, 1)
                                            for k, v in st.items() if v.get("pid")}
            c = node.counters()
            res["watchdog_restarts"] = c.get("watchdog:0", {}).get("watchdog.restarts", 0)
            res["resyncs"] = {k: {n: v for n, v in x.items() if "resync" in n or "synced" in n}
                              for k, x in c.items() if k.startswith("map_resolver")}
        finally:
            probe.stop()
    finally:
        node.down()
    return res


def default_timers_part(n4: int, n6: int, args) -> dict:
    """The same cold start with the node's default snapshot_timeout (5 s) and
    watchdog_timeout (10 s): does it come up at all within --default-timers-wait?"""
    from tests.unit.msfixtures import register
    res: dict = {"entries": n4 + n6, "bound_s": args.default_timers_wait}
    body = ("[roles]\nmap_resolver = { workers = 2 }\nmap_server = { shards = 1 }\n" + RATE_UNLIMITED
            + site_block("big", "big-secret", ["10.0.0.0/8", "2001:db8::/32"]))
    timers = "\n[timers]\nregistration_lifetime = 7200\n"   # everything else: defaults
    node = Node("benchscaled", RLOC, body, timers=timers)
    node.conf.write_text(node.conf.read_text().replace('log_level = "warning"', 'log_level = "info"'))
    try:
        raw = register([v4(0)], nonce=1, key=b"big-secret", proxy=True)
        node.state.mkdir(parents=True, exist_ok=True)
        fill_store(node.state / "map_server_0.sqlite", n4, n6, raw)
        probe = Prober(v4_host(n4 - 1), 28, interval=0.25).start()
        try:
            t0 = time.monotonic()
            node.up(timeout=120)
            ok = poll(lambda: probe.first_ok_after(t0), args.default_timers_wait, 0.5)
            res["first_answer_s"] = round(ok, 1) if ok else None
            c = node.counters()
            res["watchdog_restarts"] = c.get("watchdog:0", {}).get("watchdog.restarts", 0)
            res["worker_resyncs"] = {k: {n: v for n, v in x.items() if "resync" in n or "synced" in n}
                                     for k, x in c.items() if k.startswith("map_resolver")}
            res["watchdog_log"] = [ln for ln in node.decent("logs", "watchdog:0", "-n", "50").stdout
                                   .splitlines() if "restarted" in ln][-6:]
        finally:
            probe.stop()
    finally:
        node.down()
    log(f"  with the default timers: first answer after {res.get('first_answer_s')} s (bound "
        f"{args.default_timers_wait:.0f} s); watchdog restarts {res.get('watchdog_restarts')}; "
        f"worker resyncs {res.get('worker_resyncs')}")
    for ln in res.get("watchdog_log", []):
        log(f"    {ln[:200]}")
    return res


def plot(doc: dict) -> None:
    plt = pyplot()
    if plt is None:
        return
    from benchlib import RESULTS
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
    a = axes[0]
    labels, vals = [], []
    t = doc["in_process"].get("table") or doc["in_process"]["compact"]
    p = doc["in_process"]["pytricia"]
    labels += ["bare\npytricia", "replica\nin process"]
    vals += [p["rss_kib"] / 1024, t["rss_kib"] / 1024]
    if doc.get("node"):
        for k in ("map_server:0", "map_resolver:0", "map_resolver:1"):
            if k in doc["node"].get("rss_mib", {}):
                labels.append("node\n" + k.replace("map_resolver", "worker").replace("map_server", "ms"))
                vals.append(doc["node"]["rss_mib"][k])
    a.bar(range(len(vals)), vals, color=["C2", "C0"] + ["C1"] * (len(vals) - 2))
    a.axhline(1024, color="red", ls="--", lw=0.8, label="goal 1 GiB")
    a.set_xticks(range(len(vals)))
    a.set_xticklabels(labels, fontsize=7)
    a.set_ylabel("resident MiB")
    a.set_title(f"memory holding {t['entries']:,} registrations", fontsize=9)
    a.legend(fontsize=7)
    a = axes[1]
    a.bar([0, 1], [p["lookups_per_s"], t["lookups_per_s"]], color=["C2", "C0"])
    a.set_xticks([0, 1])
    a.set_xticklabels(["pytricia get_key", "RegistrationTable.lookup"], fontsize=8)
    a.set_ylabel("longest-prefix lookups/s (one core)")
    a.set_title("lookups/s", fontsize=9)
    a = axes[2]
    o = doc["in_process"].get("order") or doc["in_process"]["order_compact"]
    for order, pts in o.items():
        xs = sorted(int(x) for x in pts)
        a.plot(xs, [pts[x] if x in pts else pts[str(x)] for x in xs], "o-", label=order)
    a.set_xlabel("registrations")
    a.ticklabel_format(axis="x", style="plain")
    a.set_xticks(xs)
    a.set_xticklabels([f"{x // 1000}k" for x in xs], fontsize=7)
    a.set_ylabel("us per RegistrationTable.set")
    a.set_title("fill cost vs insertion order", fontsize=9)
    a.legend(fontsize=7)
    a.grid(True, alpha=0.3)
    if doc.get("node"):
        n = doc["node"]
        txt = (f"cold start: first answer {n.get('cold_start_first_answer_s')} s, all workers in sync "
               f"{n.get('cold_start_all_workers_in_sync_s')} s;  map_server restart: outage "
               f"{(n.get('restart_outage') or {}).get('length_s')} s, serving from the reloaded store after "
               f"{n.get('restart_to_serving_s')} s (goal <= 10 s)")
        fig.text(0.5, 0.01, txt, ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(RESULTS / "scale.png", dpi=110)
    plt.close(fig)
    log("  wrote bench/results/scale.png")


def in_process(doc: dict, args, n: int):
    """The in-process children; returns (pytricia, compact, table before or None)."""
    log(f"in process, {args.v4:,} IPv4 + {args.v6:,} IPv6 registrations:")
    doc["in_process"] = {}
    doc["in_process"]["pytricia"] = p = run_child("pytricia", args.v4, args.v6, args.lookups)
    log(f"    bare pytricia: {p['rss_kib'] / 1024:.0f} MiB resident ({p['bytes_per_entry']} B/entry), "
        f"{p['lookups_per_s']:,} get_key/s, filled in {p['fill_s']} s")
    doc["in_process"]["compact"] = c = run_child("compact", args.v4, args.v6, args.lookups)
    log(f"    worker replica now (CompactTable, issue 11): {c['rss_kib'] / 1024:.0f} MiB resident "
        f"({c['bytes_per_entry']} B/entry, {c['distinct_items']} distinct items); fill {c['fill_s']} s "
        f"({c['us_per_set']} us/set); {c['lookups_per_s']:,} lookups/s, {c['best_key_per_s']:,} best_key/s "
        f"(pytricia get_key on the same hosts {c['pytricia_get_key_same_hosts_per_s']:,}/s)")
    if args.skip_old:
        t = None
    else:
        doc["in_process"]["table"] = t = run_child("table", args.v4, args.v6, args.lookups)
        log(f"    worker replica before (dict + RegistrationTable): {t['rss_kib'] / 1024:.0f} MiB resident "
            f"({t['bytes_per_entry_total']} B/entry: dict {t['rss_replica_dict_kib'] / 1024:.0f} MiB, "
            f"table {t['rss_table_kib'] / 1024:.0f} MiB); fill {t['fill_s']} s ({t['us_per_set']} us/set); "
            f"{t['lookups_per_s']:,} lookups/s (pytricia get_key on the same hosts "
            f"{t['pytricia_get_key_same_hosts_per_s']:,}/s)")
    sizes = [int(x) for x in args.order_sizes.split(",") if x]
    doc["in_process"]["order_compact"] = oc = run_child("order-compact", *sizes)
    log(f"    CompactTable: us per set by arrival order: {oc}")
    if not args.skip_old:
        doc["in_process"]["order"] = o = run_child("order", *sizes)
        log(f"    RegistrationTable: us per set by arrival order: {o}")
    return p, c, t


def shard_part(doc: dict, args) -> None:
    """The shard's reload in process, before and after the compact shard, same run,
    from one SQLite store (bench/build/scale-shard/)."""
    import shutil

    from tests.unit.msfixtures import register
    d = BUILD / "scale-shard"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    path = d / "map_server_0.sqlite"
    raw = register([v4(0)], nonce=1, key=b"big-secret", proxy=True)
    fill = fill_store(path, args.v4, args.v6, raw)
    log(f"    shard reload in process ({args.v4 + args.v6:,} rows, store filled in {fill:.1f} s):")
    out = doc.setdefault("in_process", {})["shard"] = {}
    for kind in ("after", "before", "after"):      # after twice: the best of two, around before
        r = run_child("shard", path, kind)
        log(f"      {kind}: {r['rss_kib'] / 1024:.0f} MiB resident ({r['bytes_per_entry']} B/entry with the "
            f"writer's items), reload {r['reload_s']} s = {r['us_per_row']} us/row")
        if kind not in out or r["reload_s"] < out[kind]["reload_s"]:
            out[kind] = r
    shutil.rmtree(d, ignore_errors=True)
    b, a = out["before"], out["after"]
    out["reload_speedup"] = ratio(b["reload_s"], a["reload_s"])
    out["rss_ratio_after_before"] = ratio(a["rss_kib"], b["rss_kib"])
    log(f"      after / before: reload {out['reload_speedup']}x faster, resident {out['rss_ratio_after_before']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--v4", type=int, default=1_000_000, help="IPv4 registrations (<= 1048576)")
    ap.add_argument("--v6", type=int, default=200_000, help="IPv6 registrations")
    ap.add_argument("--lookups", type=int, default=200_000, help="lookups timed in process")
    ap.add_argument("--order-sizes", default="25000,50000,100000,200000",
                    help="sizes for the insertion-order comparison")
    ap.add_argument("--skip-node", action="store_true", help="only the in-process part")
    ap.add_argument("--node-only", action="store_true",
                    help="keep the in-process figures of the last scale.json, run the node part again")
    ap.add_argument("--shard-only", action="store_true",
                    help="keep the other in-process figures of the last scale.json, run the shard's "
                         "reload in process (before/after) and the node part (unless --skip-node)")
    ap.add_argument("--skip-old", action="store_true",
                    help="skip the replica as it was before issue 11 (dict + RegistrationTable)")
    ap.add_argument("--restart-load-s", type=float, default=90,
                    help="seconds of 1k/s Map-Requests (lispload, open loop) from just before the restart")
    ap.add_argument("--node-timeout", type=float, default=300, help="bound on each node wait, s")
    ap.add_argument("--watchdog-timeout", type=float, default=600,
                    help="the node's watchdog_timeout (the default 10 s would restart a role "
                         "that is still loading)")
    ap.add_argument("--snapshot-timeout", type=float, default=300,
                    help="the node's snapshot_timeout (the default 5 s is shorter than the transfer)")
    ap.add_argument("--default-timers-wait", type=float, default=0,
                    help="also start the node with the default snapshot/watchdog timeouts and "
                         "wait this long (bounded) for its first answer; 0: skip")
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot from scale.json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child == "pytricia":
            out = child_pytricia(*map(int, args.rest))
        elif args.child == "table":
            out = child_table(*map(int, args.rest))
        elif args.child == "compact":
            out = child_compact(*map(int, args.rest))
        elif args.child == "shard":
            out = child_shard(*args.rest)
        elif args.child == "order-compact":
            out = child_order([int(x) for x in args.rest], "compact")
        else:
            out = child_order([int(x) for x in args.rest])
        print(json.dumps(out))
        return 0
    if args.plot_only:
        from benchlib import RESULTS
        plot(json.loads((RESULTS / "scale.json").read_text()))
        return 0
    if args.v4 > 1 << 20 or args.v4 < 1:
        ap.error("--v4 must be 1..1048576 (/28s in 10.0.0.0/8)")
    t_begin = time.monotonic()
    doc: dict = {"params": {k: v for k, v in vars(args).items() if k not in ("child", "rest")},
                 "quiet": wait_quiet()}
    n = args.v4 + args.v6
    if args.node_only or args.shard_only:
        from benchlib import RESULTS
        last = json.loads((RESULTS / "scale.json").read_text())
        doc["in_process"] = last["in_process"]
        doc["in_process_from"] = {"params": last.get("params"), "note": "kept from the previous run (--node-only)"}
        log("in process: kept from the previous bench/results/scale.json (--node-only)")
        p, c, t = (doc["in_process"]["pytricia"], doc["in_process"]["compact"], doc["in_process"].get("table"))
    else:
        p, c, t = in_process(doc, args, n)
    if not args.node_only:
        shard_part(doc, args)
    if not args.skip_node:
        log(f"node {RLOC} with {n:,} registrations in its map_server's SQLite store:")
        doc["quiet_node"] = wait_quiet()
        doc["node"] = node_part(args.v4, args.v6, args)
        if args.default_timers_wait > 0:
            log(f"node {RLOC} again, with the default snapshot_timeout and watchdog_timeout:")
            doc["node_default_timers"] = default_timers_part(args.v4, args.v6, args)
    node = doc.get("node") or {}
    rss = node.get("rss_mib", {})
    doc["goals"] = {
        "worker replica in process, resident MiB (goal <= 400)": round(c["rss_kib"] / 1024, 1),
        "resident MiB of each node worker (goal <= 400)": [v for k, v in rss.items() if "resolver" in k],
        "resident MiB of the shard, map_server:0 (goal <= 1024)": rss.get("map_server:0"),
        "unanswered of the requests at 1k/s during `decent restart map_server:0` (goal 0)":
            (node.get("restart_load") or {}).get("timeouts"),
        "restart until every worker serves from the reloaded store (swapped), s (goal <= 10)":
            node.get("restart_to_swapped_s"),
        "CompactTable.lookup / pytricia get_key (same hosts)": ratio(c["lookups_per_s"],
                                                                   c["pytricia_get_key_same_hosts_per_s"]),
        "CompactTable RSS / bare pytricia RSS": ratio(c["rss_kib"], p["rss_kib"]),
    }
    if t is not None:
        doc["goals"]["CompactTable RSS / the replica before (dict + RegistrationTable)"] = ratio(c["rss_kib"],
                                                                                                 t["rss_kib"])
        doc["goals"]["CompactTable.lookup / RegistrationTable.lookup"] = ratio(c["lookups_per_s"],
                                                                                t["lookups_per_s"])
    sh = doc["in_process"].get("shard") or {}
    if sh.get("after"):
        doc["goals"].update({
            "shard reload in process, resident MiB with the writer's items (before -> after)":
                [round(sh["before"]["rss_kib"] / 1024, 1), round(sh["after"]["rss_kib"] / 1024, 1)],
            "shard reload in process, us per row (before -> after)":
                [sh["before"]["us_per_row"], sh["after"]["us_per_row"]],
        })
    doc["goals"].update({
        "resident MiB of the shard after the restart (goal <= 1024)":
            (node.get("rss_after_restart_mib") or {}).get("map_server:0"),
        "shard store reloaded after the restart (log), s": node.get("restart_shard_restored_s"),
        "restart until every worker is in sync with the new shard (log times), s":
            node.get("restart_to_serving_s"),
        "longest run of unanswered 10/s probes during that restart, s": (node.get("restart_outage") or {}).get(
            "length_s"),
        "cold start to first answer, s (goal <= 30)": (doc.get("node") or {}).get("cold_start_first_answer_s"),
    })
    log("goals:")
    for k, v in doc["goals"].items():
        log(f"    {k}: {v}")
    doc["elapsed_s"] = round(time.monotonic() - t_begin, 1)
    save_json("scale", doc)
    plot(doc)
    log(f"scale.py done in {doc['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
