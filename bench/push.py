"""Push mode: replication convergence time for groups of 3, 5 and 9 members.

For each size N, N real nodes (every role but the ITR) form group 224.70.0.1 on
127.0.70.1..N.  A fresh authenticated Map-Register (proxy reply) is handed to one
node's dataplane over its bus, as that node's ETR would, and every member's
Map-Resolver is asked (ECM Map-Requests from this process) until all of them answer
for it: the convergence time.  Origins rotate over the members.

Baseline, same run: a group of one (the node replicating to itself), the same
measurement: registration -> answered locally.  Printed: p50/p90/max per size and
the ratio to the baseline's p50.

    .venv/bin/python bench/push.py [--sizes 1,3,5,9] [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import Node, log, pcts, poll, save_json, udp_exchange  # noqa: E402
from bus import envelope  # noqa: E402
from bus.endpoints import Endpoints  # noqa: E402
from common.wire.auth import seal  # noqa: E402
from common.wire.messages import MapReply, decode_message  # noqa: E402
from common.wire.register import MapRegister  # noqa: E402
from roles import nodeconf  # noqa: E402
from tests.unit.msfixtures import ecm_request, record  # noqa: E402

GROUP = "224.70.0.1"
KEY = "bench-push"
CURVE = zmq.curve_keypair()[1].decode()
CLIENT = "127.0.70.200"
TIMERS = """
[timers]
register_interval = 60
register_interval_fast = 60
fast_period = 1
registration_lifetime = 180
heartbeat_interval = 1
"""


def rloc(k: int) -> str:
    return f"127.0.70.{k}"


def body(k: int) -> str:
    return f"""
[roles]
map_resolver = {{ workers = 1 }}
map_server = {{ shards = 1 }}
etr = true
itr = false
dataplane = true

[decent]
mode = "push"
group = "{GROUP}"
seed_rlocs = ["{rloc(1) if k != 1 else rloc(2)}"]
curve_secret = "{CURVE}"
snapshot_port = 14470

[etr]
decent_key = {{ key_id = 0, alg = "hmac-sha-256-128", secret = "{KEY}" }}

[[database_mapping]]
eid = "10.70.{k}.0/24"

[[site]]
name = "bench"
key = [{{ id = 0, alg = "hmac-sha-256-128", secret = "{KEY}" }}]
prefix = [{{ eid = "10.0.0.0/8", accept_more_specifics = true }}, {{ eid = "[0]{GROUP}/32-0.0.0.0/0" }}]
"""


def answers(addr: str, host: str) -> bool:
    data = udp_exchange((addr, 4342), lambda p: ecm_request(host, itr=CLIENT, sport=p), src=CLIENT,
                        timeout=0.5)
    m = decode_message(data) if data else None
    return isinstance(m, MapReply) and bool(m.records) and bool(m.records[0].locators)


class BusPublisher:
    def __init__(self, node: Node) -> None:
        cfg = nodeconf.load(str(node.conf))
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.connect(Endpoints(cfg.node.state_dir).bus_in)
        self.stamper = envelope.Stamper("bench", 0, os.urandom(8).hex())
        time.sleep(0.5)  # the proxy must have this publisher before the first message

    def replicate(self, reg: bytes) -> None:
        self.pub.send_multipart(envelope.encode("dp.replicate", self.stamper.header("register.sent"),
                                                {"data": reg, "sport": 4342}))

    def close(self) -> None:
        self.pub.close(0)
        self.ctx.term()


def measure(n: int, rounds: int, serial: list) -> dict:
    nodes = [Node(f"bp{k}", rloc(k), body(k), timers=TIMERS) for k in range(1, n + 1)]
    pubs = []
    try:
        for nd in nodes:
            nd.up()
        poll(lambda: all(answers(rloc(k), f"10.70.{j}.1") for k in range(1, n + 1)
                         for j in range(1, n + 1)), 90, 0.5)
        pubs = [BusPublisher(nd) for nd in nodes]
        samples = []
        for r in range(rounds):
            serial[0] += 1
            third, fourth = divmod(serial[0], 250)
            eid = f"10.{71 + third}.{fourth}.0/24"
            origin = r % n
            reg = seal(MapRegister(time.time_ns(), (record(f"[0]{eid}", rlocs=(rloc(origin + 1),)),), 0, 2,
                                   proxy_reply=True, xtr_id=os.urandom(16), site_id=bytes(8)), KEY.encode())
            host = eid.replace(".0/24", ".1")
            pending = set(range(1, n + 1))
            t0 = time.perf_counter()
            pubs[origin].replicate(reg)
            deadline = t0 + 10
            while pending and time.perf_counter() < deadline:
                for k in list(pending):
                    if answers(rloc(k), host):
                        pending.discard(k)
            if pending:
                log(f"  N={n} round {r}: {len(pending)} members never answered")
                continue
            samples.append((time.perf_counter() - t0) * 1e9)
        return {"members": n, "rounds": rounds, "converged": len(samples),
                "ms": {k: v / 1e6 for k, v in pcts(samples, (50, 90)).items() if k != "n"}}
    finally:
        for p in pubs:
            p.close()
        for nd in nodes:
            nd.down()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,3,5,9")
    ap.add_argument("--rounds", type=int, default=20)
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    serial = [0]
    results = []
    for n in sizes:
        log(f"group of {n} ...")
        res = measure(n, a.rounds, serial)
        results.append(res)
        log(f"  N={n}: p50 {res['ms']['p50']:.1f} ms, p90 {res['ms']['p90']:.1f} ms, max {res['ms']['max']:.1f} ms "
            f"({res['converged']}/{res['rounds']} converged)")
    base = next((r for r in results if r["members"] == 1), None)
    print("\npush replication: registration at one member -> answered by every member's Map-Resolver")
    print(f"{'members':>8} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8} {'x baseline p50':>15}")
    for r in results:
        ratio = r["ms"]["p50"] / base["ms"]["p50"] if base and base["ms"].get("p50") else float("nan")
        print(f"{r['members']:>8} {r['ms']['p50']:>8.1f} {r['ms']['p90']:>8.1f} {r['ms']['max']:>8.1f} {ratio:>15.2f}")
    print("(baseline: a group of one, the node answering its own registration; the convergence"
          " time includes polling every member one after the other from this process)")
    save_json("push", {"results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
