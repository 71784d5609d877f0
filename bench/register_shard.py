"""The map_server shard's batched Map-Register path in process, as the node runs it.

What one shard does per group of Map-Registers, without the sockets' other ends: the
workers' bus messages decoded (``registers.received``, 256 Map-Registers each, gated
and MAC-checked by :class:`RegisterGate` beforehand, not measured), groups of up to
1,024 (``roles.map_server.GROUP_MAX``) through ``MapServer.handle_batch`` with
``RegistrationStore.apply`` (SQLite WAL, the stream position persisted as the role
does), the Clone publish of the changes (a real :class:`CloneWriter`, envelopes
encoded and sent on a ZeroMQ PUB socket) and the Map-Notifies (send-queue frames on a
PUB socket).  New registrations, then (``--refresh``) refreshes of them.

    .venv/bin/python bench/register_shard.py [--count 20000] [--profile]
    .venv/bin/python bench/register_shard.py --against /tmp/before --rounds 5

``--groups 256:1024,8:8,1:1``: rounds with smaller worker messages and shard groups
(what paced arrivals make) in this tree, the cost per registration of each.
``--against DIR``: another checkout (e.g. ``git worktree``/``git archive`` of an
earlier commit): rounds alternate between it and this tree, each in a fresh
process, the best of each kept (CPU us per registration): before/after in the same
run on a shared machine.  ``--profile``: cProfile of one round (top functions).
Writes bench/results/register_shard.json.  Figures, not a test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GROUP = 1024          # roles.map_server.GROUP_MAX
PER_MESSAGE = 256     # roles.regbatch.MAX_BATCH


class _Counters:
    def inc(self, *_a) -> None:
        pass

    drop = set = inc


def _round(root: str, n: int, refresh: bool, profile: bool) -> dict:
    """One round in this process, with the code of ``root``."""
    sys.path[:0] = [root, str(Path(root) / "bench")]
    import zmq

    from bus import envelope, topics
    from bus.clone import CloneWriter
    from bus.envelope import Stamper
    from bus.sendq import Datagram, encode_packed as sq_encode_packed
    from common.machines.mapserver import MapServer, SiteKey, SitePolicy
    from common.machines.regedge import RegisterGate
    from common.machines.sites import SiteTable
    from common.wire.eidtext import parse_eidspec
    from register import CLIENT, NAMES, registers, secret, site_prefix
    from roles import stream_resume
    from roles.ms_store import RegistrationStore

    sites = [SitePolicy(name, (SiteKey(0, 2, secret(name).encode()),), ((parse_eidspec(site_prefix(k)), True),))
             for k, name in enumerate(NAMES)]
    z = zmq.Context.instance()

    class Bus:
        def __init__(self) -> None:
            self.stamper = Stamper("map_server", 0, "bench")
            self.pub = z.socket(zmq.PUB)
            self.pub.bind(f"inproc://bus{id(self)}")

        def publish(self, topic, type_, body=None, *, stream=None, seq=None, parent=None, schema=1):
            h = self.stamper.header(envelope.check_type(type_), schema=schema, stream=stream, seq=seq,
                                    parent=parent)
            self.pub.send_multipart(envelope.encode(topic, h, body), zmq.NOBLOCK)

    class Ctx:
        session = "bench"
        cfg = None

        def __init__(self) -> None:
            self.bus, self.counters = Bus(), _Counters()

        def timer(self, _name, default):
            return default

    def frames_of(nonce_base: int) -> list:
        """The workers' bus messages for n Map-Registers (cached between rounds)."""
        path = Path(tempfile.gettempdir()) / f"register_shard-{n}-{nonce_base}-{PER_MESSAGE}.pkl"
        if path.exists():
            return pickle.loads(path.read_bytes())
        gate = RegisterGate(SiteTable(sites), rate=1e9, burst=1e9)
        stamper, out, msgs = Stamper("map_resolver", 0, "w"), [], registers(n, nonce_base)
        for k in range(0, n, PER_MESSAGE):
            batch = [[m, CLIENT, 5000, gate.check(m, (CLIENT, 5000), 1.0)[2], "127.0.63.1"]
                     for m in msgs[k:k + PER_MESSAGE]]
            out.append(envelope.encode(topics.rx(topics.MAP_REGISTER, 0), stamper.header("registers.received"),
                                       {"batch": batch}))
        path.write_bytes(pickle.dumps(out))
        return out

    d = tempfile.mkdtemp(prefix="regshard", dir="/tmp")
    ms = MapServer(sites, lifetime=3600)
    store = RegistrationStore(os.path.join(d, "s.sqlite"))
    ctx = Ctx()
    writer = CloneWriter(ctx, topics.ms_stream(0), packed=True)
    stream_resume.resume(writer, store)
    sendq = z.socket(zmq.PUB)
    sendq.bind(f"inproc://sendq{id(store)}")
    if hasattr(writer, "apply"):
        publish = writer.apply
    else:                        # before kv.batch: one message per change (as the role did)
        def publish(changes) -> None:
            for ch in changes:
                if ch[0] == "set":
                    writer.set(ch[1], ch[2])
                else:
                    writer.delete(ch[1])
    sec = {"decode": 0.0, "handle_batch": 0.0, "sendq": 0.0}

    def commit(items: list) -> None:
        out: list = []
        t0 = time.perf_counter()
        ms.handle_batch(items, 1.0, commit=store.apply, publish=publish,
                        send=lambda a, p, x: out.append(Datagram(a, p, x, "127.0.63.1")))
        t1 = time.perf_counter()
        if out:   # one packed frame per group, as SendQueue.send_many sends it
            sendq.send(sq_encode_packed(out)[0], zmq.NOBLOCK)
        sec["handle_batch"] += t1 - t0
        sec["sendq"] += time.perf_counter() - t1

    def feed(frames: list) -> None:
        queued: list = []
        for f in frames:
            t0 = time.perf_counter()
            _t, _h, body = envelope.decode(f)
            for it in body["batch"]:       # as the role's items_of
                data, addr, port, cov = it[:4]
                queued.append((bytes(data), (str(addr), int(port)), cov if cov in ("all", "records") else None,
                               None))
            sec["decode"] += time.perf_counter() - t0
            if len(queued) >= GROUP:
                commit(queued[:])
                queued.clear()
        if queued:
            commit(queued)

    new = frames_of(1_000_000)
    measured = new
    if refresh:
        feed(new)
        measured = frames_of(5_000_000)
        sec = dict.fromkeys(sec, 0.0)
    gc.collect()
    gc.set_threshold(100_000, 50, 100)     # as the shard runs (roles.map_server.GC_YOUNG)
    prof = None
    if profile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    feed(measured)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if prof is not None:
        prof.disable()
    rows = store.db.execute("SELECT count(*) FROM registration").fetchone()[0]
    store.close()
    subprocess.run(["rm", "-rf", d], check=False)
    out = {"us_each": round(wall / n * 1e6, 1), "cpu_us_each": round(cpu / n * 1e6, 1),
           "per_s": round(n / wall), "rows": rows, "seq": writer.seq,
           "sections_us_each": {k: round(v / n * 1e6, 1) for k, v in sec.items()}}
    if prof is not None:
        import io
        import pstats
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(30)
        out["profile"] = buf.getvalue()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=20000, help="registrations per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (per tree with --against)")
    ap.add_argument("--refresh", action="store_true", help="measure refreshes (after an unmeasured new round)")
    ap.add_argument("--against", metavar="DIR", help="another checkout: alternate rounds, before vs this tree")
    ap.add_argument("--profile", action="store_true", help="cProfile of one round, printed")
    ap.add_argument("--groups", metavar="P:G,...",
                    help="Map-Registers per worker message : per shard group, pairs measured in this tree "
                         "(what paced arrivals make: small messages and groups), e.g. 256:1024,8:8,1:1")
    ap.add_argument("--per-message", type=int, default=256, help=argparse.SUPPRESS)   # PER_MESSAGE
    ap.add_argument("--group", type=int, default=1024, help=argparse.SUPPRESS)        # GROUP
    ap.add_argument("--one", metavar="ROOT", help=argparse.SUPPRESS)    # a child round
    args = ap.parse_args()
    if args.one:
        global PER_MESSAGE, GROUP
        PER_MESSAGE, GROUP = args.per_message, args.group
        print(json.dumps(_round(args.one, args.count, args.refresh, args.profile)))
        return 0
    this = str(HERE.parent)
    trees = [("before", args.against), ("after", this)] if args.against else [("this tree", this)]
    if args.groups:
        pairs = [tuple(int(x) for x in p.split(":")) for p in args.groups.split(",")]
        trees = [(f"{p}:{g}", this, p, g) for p, g in pairs]
    if args.profile:
        got = _child(this, args, profile=True)
        print(got.pop("profile"))
        print(json.dumps(got))
        return 0
    rounds: dict = {t[0]: [] for t in trees}
    for r in range(args.rounds):
        for label, root, *pg in trees:
            got = _child(root, args, pg=pg)
            rounds[label].append(got)
            print(f"round {r + 1} {label}: {got['cpu_us_each']} us CPU per registration "
                  f"({got['us_each']} wall; {got['sections_us_each']})", flush=True)
    doc: dict = {"count": args.count, "kind": "refresh" if args.refresh else "new",
                 "trees": {t[0]: t[1] for t in trees},
                 "rounds": rounds, "best_cpu_us_each": {k: min(x["cpu_us_each"] for x in v) for k, v in rounds.items()}}
    if args.against:
        b, a = doc["best_cpu_us_each"]["before"], doc["best_cpu_us_each"]["after"]
        doc["before / after (CPU per registration, best of each)"] = round(b / a, 3)
    print(json.dumps({k: v for k, v in doc.items() if k != "rounds"}, indent=1))
    sys.path.insert(0, str(HERE))
    from benchlib import save_json
    save_json("register_shard" + ("-refresh" if args.refresh else "") + ("-groups" if args.groups else ""), doc)
    return 0


def _child(root: str, args, profile: bool = False, pg=()) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", root, "--count", str(args.count)]
    if pg:
        cmd += ["--per-message", str(pg[0]), "--group", str(pg[1])]
    cmd += ["--refresh"] if args.refresh else []
    cmd += ["--profile"] if profile else []
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=root)
    if res.returncode != 0:
        raise SystemExit(f"round in {root} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
