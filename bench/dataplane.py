"""LISP data plane throughput and ping RTT, against a bare Python relay in the same run.

Two full nodes in network namespaces (tests/integration/netns.py: node k behind a
routed core, host h<k> behind node k).  Measured, for 64- and 1400-byte packets:

* **encap**: UDP packets blasted from h1 to 10.2.0.2 go through node 1's TUN
  ``lisp0`` into its ``dataplane`` process, which encapsulates them to node 2's RLOC
  (where a socket that never reads takes them: node 2's dataplane is stopped).
  Rate = node 1's ``encap.packets`` counter over the window.
* **decap**: LISP data packets (IID 0, inner 10.2.0.2 -> 10.1.0.2 UDP) blasted from
  the core to node 1's 4341 are decapsulated into ``lisp0`` and delivered to h1
  (a socket that never reads).  Rate = ``decap.packets`` over the window.
* **baseline**: the same packets through a bare Python relay in node 1's namespace:
  TUN ``relay0`` (route 10.3.0.0/16) -> 8-byte header -> UDP socket, and UDP socket
  -> strip 8 bytes -> TUN; no lookup, no decisions.  Rate = packets it relayed.
* **RTT**: ping h1 -> 10.2.0.2 (overlay, both dataplanes running) vs node 1 ->
  172.16.2.2 (underlay).

Run as root: ``.venv/bin/python bench/dataplane.py [--seconds 5]``.  Writes
bench/results/dataplane.json.  No assertion: figures only.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import select
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.benchlib import log, machine, ratio, save_json, wait_quiet  # noqa: E402

PY = sys.executable
HDR = bytes([0x88, 0, 0, 1, 0, 0, 0, 0x01])  # N=1, I=1, IID 0


# ----------------------------------------------------------------------- helpers run in namespaces

def blast(dst: str, port: int, payload: bytes, seconds: float, src: str | None = None) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    if src:
        s.bind((src, 0))
    s.connect((dst, port))
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(256):
            try:
                s.send(payload)
                n += 1
            except OSError:
                pass
    print(json.dumps({"sent": n}), flush=True)


def sink(addr: str, port: int, seconds: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind((addr, port))
    time.sleep(seconds)   # never reads: the kernel drops silently once the buffer is full


def relay(mode: str, seconds: float, peer: str, listen: str) -> None:
    """The baseline: a bare TUN <-> UDP relay (blocking reads, one packet at a time)."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"relay0", 0x0001 | 0x1000))
    subprocess.run(["ip", "link", "set", "relay0", "up", "mtu", "1500"], check=True)
    subprocess.run(["ip", "route", "replace", "10.3.0.0/16", "dev", "relay0"], check=True)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((listen, 14341 if mode == "decap" else 0))
    n, first, last = 0, None, None
    end = time.monotonic() + seconds
    print("ready", flush=True)
    src = s if mode == "decap" else fd
    while time.monotonic() < end:
        r, _, _ = select.select([src], [], [], 0.2)
        if not r:
            continue
        if mode == "encap":
            pkt = os.read(fd, 65535)
            s.sendto(HDR + pkt, (peer, 4341))
        else:
            data = s.recv(65535)
            os.write(fd, data[8:])
        n += 1
        last = time.monotonic()
        if first is None:
            first = last
    print(json.dumps({"packets": n, "first": first, "last": last}), flush=True)


def inner_udp(src: str, dst: str, size: int) -> bytes:
    from ipaddress import ip_address

    from common.wire.ipudp import IpUdp, build_ip_udp
    return build_ip_udp(IpUdp(ip_address(src), ip_address(dst), 5000, 9), bytes(size - 28))


# ----------------------------------------------------------------------- the run

def node_body(k: int) -> str:
    from tests.integration.test_dataplane import body
    return body(k)


def counters(node) -> dict:
    return node.counters().get("dataplane:0", {})


def sample_rate(node, key: str, seconds: float) -> float:
    """The growth of a dataplane counter per second over about ``seconds``."""
    a, ta = counters(node).get(key, 0), time.monotonic()
    time.sleep(seconds)
    b, tb = counters(node).get(key, 0), time.monotonic()
    return (b - a) / (tb - ta)


def in_ns(topo, ns: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", topo.ns(ns), PY, __file__, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)


def ping_rtt(topo, ns: str, dst: str, count: int) -> dict:
    """min and avg RTT in ms of ``count`` pings 20 ms apart."""
    r = topo.sh(topo.ns(ns), "ping", "-n", "-q", "-c", str(count), "-i", "0.02", dst, timeout=120)
    m = re.search(r"= ([\d.]+)/([\d.]+)/", r.stdout)
    return {"min": float(m.group(1)), "avg": float(m.group(2))} if m else {}


def measure(topo, n1, size: int, seconds: float) -> dict:
    """One round: dataplane and relay, encapsulating and decapsulating."""
    res = {}
    # encapsulation through the dataplane
    b = in_ns(topo, "h1", "--blast", "10.2.0.2", "9", str(size - 28), str(seconds + 2))
    time.sleep(1.0)
    res["encap_dataplane_pps"] = sample_rate(n1, "encap.packets", seconds)
    b.communicate(timeout=seconds + 30)
    # the bare relay, encapsulating
    r = in_ns(topo, "n1", "--relay", "encap", str(seconds + 3), "172.16.2.2", "172.16.1.2")
    r.stdout.readline()
    b = in_ns(topo, "h1", "--blast", "10.3.0.2", "9", str(size - 28), str(seconds))
    b.communicate(timeout=seconds + 30)
    out = json.loads(r.communicate(timeout=seconds + 30)[0].strip().splitlines()[-1])
    res["encap_relay_pps"] = out["packets"] / max(1e-9, (out["last"] or 0) - (out["first"] or 0))
    # decapsulation through the dataplane
    pkt = (HDR + inner_udp("10.2.0.2", "10.1.0.2", size)).hex()
    b = in_ns(topo, "core", "--blast-hex", "172.16.1.2", "4341", pkt, str(seconds + 2))
    time.sleep(1.0)
    res["decap_dataplane_pps"] = sample_rate(n1, "decap.packets", seconds)
    b.communicate(timeout=seconds + 30)
    # the bare relay, decapsulating
    r = in_ns(topo, "n1", "--relay", "decap", str(seconds + 3), "-", "172.16.1.2")
    r.stdout.readline()
    b = in_ns(topo, "core", "--blast-hex", "172.16.1.2", "14341", pkt, str(seconds))
    b.communicate(timeout=seconds + 30)
    out = json.loads(r.communicate(timeout=seconds + 30)[0].strip().splitlines()[-1])
    res["decap_relay_pps"] = out["packets"] / max(1e-9, (out["last"] or 0) - (out["first"] or 0))
    return res


def run(seconds: float, rounds: int) -> dict:
    from tests.integration.netns import NsNode, Topology
    topo = Topology(f"bd{os.getpid() % 100000}", 2)
    nodes = []
    doc: dict = {"machine": machine(), "command": " ".join(sys.argv), "seconds": seconds, "results": {}}
    procs: list[subprocess.Popen] = []
    try:
        topo.create()
        for k in (1, 2):
            nodes.append(NsNode(topo.ns(f"n{k}"), f"bd{k}", f"172.16.{k}.2", node_body(k)))
        for n in nodes:
            n.decent("up", check=True)
        n1, n2 = nodes
        # both registrations in place before any packet: a miss answered negative
        # would be forwarded natively (the core routes EID space too)
        n1.wait_lig("10.2.0.2", "[0]10.2.0.0/24", timeout=60)
        n1.wait_lig("10.1.0.2", "[0]10.1.0.0/24", timeout=60)
        topo.ping(1, "10.2.0.2", count=3)
        time.sleep(2.0)  # the counters reach the heartbeats within a second or two
        if not counters(n1).get("encap.packets") or not counters(n2).get("encap.packets"):
            raise RuntimeError(f"the ping did not take the overlay: {counters(n1)}")
        over = ping_rtt(topo, "h1", "10.2.0.2", 200)
        under = ping_rtt(topo, "n1", "172.16.2.2", 200)
        doc["results"]["rtt_ms"] = {"overlay": over, "underlay": under}
        log(f"ping RTT (min/avg ms): overlay {over.get('min')}/{over.get('avg')}, underlay "
            f"{under.get('min')}/{under.get('avg')}")
        n2.decent("stop", "dataplane", check=True)
        procs.append(in_ns(topo, "n2", "--sink", "172.16.2.2", "4341", str(20 * seconds + 60)))
        procs.append(in_ns(topo, "h1", "--sink", "10.1.0.2", "9", str(20 * seconds + 60)))
        time.sleep(1.0)
        doc["quiet"] = wait_quiet(30.0)
        for size in (64, 1400):
            res = doc["results"].setdefault(str(size), {})
            for _ in range(rounds):  # alternating, so a disturbance hits both sides alike
                one = measure(topo, n1, size, seconds)
                for k, v in one.items():
                    res.setdefault(k, []).append(v)
            med = {k: statistics.median(v) for k, v in res.items()}
            res["median"] = med
            for d in ("encap", "decap"):   # the median of the per-round ratios
                res[f"{d}_ratio"] = statistics.median(
                    ratio(a, b) or 0.0 for a, b in zip(res[f"{d}_dataplane_pps"], res[f"{d}_relay_pps"]))
            log(f"{size:>5} B  encap {med['encap_dataplane_pps']:>8.0f} pkt/s vs relay "
                f"{med['encap_relay_pps']:>8.0f} ({res['encap_ratio']})   decap "
                f"{med['decap_dataplane_pps']:>8.0f} pkt/s vs relay {med['decap_relay_pps']:>8.0f} "
                f"({res['decap_ratio']})   (medians of {rounds})")
        doc["results"]["dataplane_counters"] = counters(n1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for n in nodes:
            n.down()
        topo.destroy()
    return doc


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--blast":
        blast(sys.argv[2], int(sys.argv[3]), bytes(int(sys.argv[4])), float(sys.argv[5]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--blast-hex":
        blast(sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4]), float(sys.argv[5]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--sink":
        sink(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--relay":
        relay(sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="measurement window per figure")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per size (medians reported)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/dataplane.py needs root (network namespaces, TUN)", file=sys.stderr)
        return 1
    doc = run(args.seconds, args.rounds)
    path = save_json("dataplane", doc)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
