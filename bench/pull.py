"""LISP-Decent pull mode: lookup latency at a node that serves the EID vs one that forwards.

Starts dnsmasq on 127.0.53.66 (``<index>.pullbench.test``) and four nodes
127.0.66.1-4 (every role, modulus 2, prefix hash mode with mask 24, two nodes per
index), like tests/integration/test_pull_cluster.py.  Node k's ETR registers
10.66.k.0/24 with proxy_reply = true and 10.67.k.0/24 with proxy_reply = false.
Then, open loop at --rate requests/s with bench/c/lispload (unconnected sockets:
the answer may come from another node than the one asked), it measures the
Map-Request -> Map-Reply latency of:

- a proxy-reply EID asked at a node of its index (answered from its replica) and at
  a node of the other index (forwarded once with M=1 to the serving set, which
  answers the ITR directly);
- a proxy_reply = false EID, likewise (the serving node forwards to the ETR with E=1,
  which answers);
- an unregistered EID (negative reply), likewise.

    .venv/bin/python bench/pull.py [--rate 1000] [--seconds 3]

Writes bench/results/pull.json and pull.png.  Reports figures, not a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (BUILD, Node, build_c, ecm_templates, lispload, log, ms, poll, pyplot,  # noqa: E402
                      ratio, save_json, udp_exchange, wait_quiet, write_templates)

N = 4
MODULUS = 2
SUFFIX = "pullbench.test"
DNS_ADDR = "127.0.53.66"
CLIENT = "127.0.66.100"
TIMERS = """
[timers]
register_interval = 5
register_interval_fast = 1
fast_period = 4
registration_lifetime = 30
map_notify_retry_initial = 0.5
map_notify_retry_max = 2
heartbeat_interval = 1
watchdog_timeout = 30
snapshot_timeout = 5
"""


def rloc(k: int) -> str:
    return f"127.0.66.{k}"


def prefixes(k: int) -> dict:
    return {"proxy": f"[0]10.66.{k}.0/24", "etr": f"[0]10.67.{k}.0/24"}


def host(prefix: str, last: int = 7) -> str:
    return prefix[3:].replace(".0/24", f".{last}")


def node_body(k: int, dns_endpoint: str) -> str:
    sites = "".join(f"""
[[site]]
name = "n{j}"
key = [{{ id = 0, alg = "hmac-sha-256-128", secret = "secret-{j}" }}]
prefix = [{{ eid = "10.66.{j}.0/24" }}, {{ eid = "10.67.{j}.0/24" }}]
""" for j in range(1, N + 1))
    p = prefixes(k)
    return f"""
[roles]
map_resolver = {{ workers = 1 }}
map_server = {{ shards = 1 }}
etr = true
itr = true
discovery = true

[map_resolver]
rate_limit = 10000000
rate_burst = 10000000

[decent]
mode = "pull"
modulus = {MODULUS}
suffix = "{SUFFIX}"
hash_mode = "prefix"
hash_mask = 24
name_servers = ["{dns_endpoint}"]
resolve_min = 1
resolve_max = 3
query_timeout = 1

[etr]
decent_key = {{ key_id = 0, alg = "hmac-sha-256-128", secret = "secret-{k}" }}

[[database_mapping]]
eid = "{p['proxy']}"
proxy_reply = true

[[database_mapping]]
eid = "{p['etr']}"
proxy_reply = false
{sites}
"""


def index_sets() -> dict:
    return {i: [rloc(2 * i + 1), rloc(2 * i + 2)] for i in range(MODULUS)}


def index_of(prefix: str) -> int:
    from common.decent.hash import decent_index
    from common.wire.eidtext import parse_eidspec
    return decent_index(parse_eidspec(prefix), MODULUS, "prefix", 24)


def answered(node_addr: str, h: str, want: str | None) -> bool:
    from common.wire.eidtext import format_eid
    from common.wire.messages import MapReply, decode_message
    r = udp_exchange((node_addr, 4342), lambda port: ecm_templates([h], CLIENT, sport=port)[0][0],
                     src=CLIENT, timeout=1.0)
    if r is None:
        return False
    m = decode_message(r)
    if not isinstance(m, MapReply) or not m.records:
        return False
    if want is None:
        return not m.records[0].locators
    return bool(m.records[0].locators) and format_eid(m.records[0].prefix) == want


def plot(doc: dict) -> None:
    plt = pyplot()
    if plt is None:
        return
    from benchlib import RESULTS
    cases = doc["cases"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = list(cases)
    x = range(len(names))
    for off, key in ((-0.25, "p50_ms"), (0.0, "p99_ms"), (0.25, "p99.9_ms")):
        ax.bar([i + off for i in x], [cases[n][key] or 0 for n in names], width=0.25,
               label=key[:-3])
    ax.set_xticks(list(x))
    def short(n: str) -> str:
        kind = ("proxy reply" if n.startswith("proxy reply") else
                "ETR answers" if n.startswith("proxy_reply = false") else "negative")
        return f"{kind}\n{'forwarded (M=1)' if 'forwarding' in n else 'direct'}"
    ax.set_xticklabels([short(n) for n in names], fontsize=8)
    ax.set_ylabel("Map-Request -> Map-Reply, ms")
    ax.set_yscale("log")
    ax.set_title(f"pull mode, 4 nodes, modulus 2: latency at {doc['params']['rate']:.0f} requests/s "
                 f"(open loop)", fontsize=9)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "pull.png", dpi=110)
    plt.close(fig)
    log("  wrote bench/results/pull.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=1000.0, help="offered requests/s per case")
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per case")
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot from pull.json")
    args = ap.parse_args()
    if args.plot_only:
        import json
        from benchlib import RESULTS
        plot(json.loads((RESULTS / "pull.json").read_text()))
        return 0
    from tests.integration.dnsserver import DnsServer, dnsmasq_path
    if dnsmasq_path() is None:
        log("dnsmasq is not installed: pull.py skipped (scripts/setup.sh installs it)")
        return 0
    t_begin = time.monotonic()
    build_c("lispload")
    doc: dict = {"params": vars(args), "index_sets": index_sets(), "cases": {}, "quiet": wait_quiet()}
    dns = DnsServer(SUFFIX, address=DNS_ADDR, ttl=1).start()
    nodes = {}
    try:
        dns.set_records(index_sets())
        nodes = {k: Node(f"pb{k}", rloc(k), node_body(k, dns.endpoint), timers=TIMERS)
                 for k in range(1, N + 1)}
        for n in nodes.values():
            n.up()
        # every registered EID answered from every node (placement and forwarding work)
        want = {host(p): p for k in nodes for p in prefixes(k).values()}

        def all_resolve() -> bool:
            return all(answered(rloc(k), h, p) for k in nodes for h, p in want.items())
        t0 = time.monotonic()
        ok = poll(all_resolve, 90, 0.5)
        doc["cluster_ready_s"] = round(time.monotonic() - t0, 1)
        log(f"4-node pull cluster (modulus 2) answering every EID from every node: {bool(ok)} "
            f"after {doc['cluster_ready_s']} s")
        if not ok:
            raise RuntimeError("the pull cluster did not converge")
        sets = index_sets()
        owner = 1
        cases = []
        for kind in ("proxy", "etr"):
            p = prefixes(owner)[kind]
            i = index_of(p)
            serving = sets[i][0]
            forwarding = sets[1 - i][0]
            what = "proxy reply" if kind == "proxy" else "proxy_reply = false (to the ETR)"
            cases.append((f"{what}, asked at a serving node", serving, host(p)))
            cases.append((f"{what}, asked at a forwarding node (M=1)", forwarding, host(p)))
        neg = "10.66.200.9"
        i = index_of("[0]10.66.200.0/24")  # prefix mode: a host hashes as its /24
        cases.append(("negative, asked at a serving node", sets[i][0], neg))
        cases.append(("negative, asked at a forwarding node (M=1)", sets[1 - i][0], neg))
        for name, at, h in cases:
            msgs, noff, uoff = ecm_templates([h], CLIENT)
            tf = write_templates(BUILD / "pull.bin", msgs)
            r = lispload(at, tf, src=CLIENT, rate=args.rate, seconds=args.seconds, nonce_off=noff,
                         udp_off=uoff, sockets=4, connect=False)
            lat = r["latency_ns"]
            doc["cases"][name] = {"asked": at, "eid": h, "achieved": r["reply_rate"], "loss": r["loss"],
                                  "p50_ms": ms(lat.get("p50")), "p99_ms": ms(lat.get("p99")),
                                  "p99.9_ms": ms(lat.get("p99.9")), "cpu_pct": r["cpu_pct"], "raw": r}
            log(f"    {name:<58} at {at}: p50 {ms(lat.get('p50'))}  p99 {ms(lat.get('p99'))}  "
                f"p99.9 {ms(lat.get('p99.9'))} ms  loss {100 * r['loss']:.2f}%")
        c = doc["cases"]
        doc["ratios"] = {
            "forwarded / direct, p50, proxy reply": ratio(
                c["proxy reply, asked at a forwarding node (M=1)"]["p50_ms"],
                c["proxy reply, asked at a serving node"]["p50_ms"]),
            "forwarded / direct, p50, ETR answers": ratio(
                c["proxy_reply = false (to the ETR), asked at a forwarding node (M=1)"]["p50_ms"],
                c["proxy_reply = false (to the ETR), asked at a serving node"]["p50_ms"]),
        }
        log(f"ratios: {doc['ratios']}")
    finally:
        for n in nodes.values():
            n.down()
        dns.close()
    doc["elapsed_s"] = round(time.monotonic() - t_begin, 1)
    save_json("pull", doc)
    plot(doc)
    log(f"pull.py done in {doc['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
