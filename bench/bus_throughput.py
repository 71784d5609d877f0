"""Messages/s through the node bus and the latency the proxy adds.

Starts a real ``python -m roles.bus`` on a temporary state directory, then runs
publisher and subscriber in separate processes:

- throughput, raw frames: PUB -> SUB directly, and PUB -> proxy -> SUB;
- throughput with the envelope: ``BusClient.publish`` -> proxy -> ``BusClient.run``
  dispatching to a handler (uvloop), i.e. what a role sees;
- latency: ping-pong round trips, direct and through the proxy; the proxy's added
  one-way latency is half the difference of the medians.

    .venv/bin/python bench/bus_throughput.py [-n 200000] [--size 100]

A program that reports figures, not a test.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HWM = 2_000_000


# ----------------------------------------------------------- raw frames

def raw_pub(ep: str, bind: bool, n: int, size: int, go, out) -> None:
    z = zmq.Context()
    s = z.socket(zmq.PUB)
    s.setsockopt(zmq.SNDHWM, HWM)
    s.bind(ep) if bind else s.connect(ep)
    go.wait()
    frames = [b"bench.x", b"h" * 40, b"b" * size]
    while not out.is_set():            # until the subscriber hears us (slow joiner)
        s.send_multipart([b"bench.warm", b"", b""])
        time.sleep(0.01)
    t0 = time.perf_counter()
    for _ in range(n):
        s.send_multipart(frames)
    dt = time.perf_counter() - t0
    for _ in range(100):
        s.send_multipart([b"bench.end", b"", b""])
    print(f"    publisher sent {n / dt:,.0f} msg/s", flush=True)
    time.sleep(0.5)
    s.close(0)
    z.term()


def raw_sub(ep: str, bind: bool, n: int, go, heard, result) -> None:
    z = zmq.Context()
    s = z.socket(zmq.SUB)
    s.setsockopt(zmq.RCVHWM, HWM)
    s.bind(ep) if bind else s.connect(ep)
    s.subscribe(b"bench.")
    go.set()
    got, t0 = 0, None
    while True:
        f = s.recv_multipart()
        if f[0] == b"bench.warm":
            heard.set()
        elif f[0] == b"bench.x":
            if t0 is None:
                t0 = time.perf_counter()
            got += 1
        elif f[0] == b"bench.end":
            break
    dt = time.perf_counter() - (t0 or time.perf_counter())
    result.put((got, dt))
    s.close(0)
    z.term()


def throughput_raw(label: str, pub_ep: str, sub_ep: str, bind_pub: bool, n: int,
                   size: int) -> None:
    go, heard, result = mp.Event(), mp.Event(), mp.Queue()
    sub = mp.Process(target=raw_sub, args=(sub_ep, False, n, go, heard, result))
    pub = mp.Process(target=raw_pub, args=(pub_ep, bind_pub, n, size, go, heard))
    sub.start()
    pub.start()
    got, dt = result.get(timeout=120)
    pub.join()
    sub.join()
    print(f"  {label}: {got / dt:,.0f} msg/s received ({got}/{n}, "
          f"{100 * (n - got) / n:.1f}% dropped)")


# ------------------------------------------------------ with the envelope

def _ctx_bits(state_dir: str, role: str):
    import logging
    from bus.client import BusClient
    from bus.counters import RoleCounters
    from bus.endpoints import Endpoints
    from bus.envelope import Stamper
    log = logging.getLogger(role)
    counters = RoleCounters(log)
    return BusClient, Endpoints(state_dir), Stamper(role, 0, os.urandom(8).hex()), counters, log


def env_pub(state_dir: str, n: int, size: int, out) -> None:
    import asyncio
    import uvloop
    BusClient, ep, stamper, counters, log = _ctx_bits(state_dir, "benchpub")

    async def main():
        z = zmq.Context()
        bus = BusClient(z, ep, stamper, counters, log, hwm=HWM)
        task = asyncio.create_task(bus.run())
        await bus.ready()
        while not out.is_set():
            bus.publish("bench.warm", "bench.warmed", None)
            await asyncio.sleep(0.01)
        body = {"eid": "10.0.0.0/24", "blob": b"b" * size}
        t0 = time.perf_counter()
        for i in range(n):
            bus.publish("bench.x", "bench.measured", body, seq=i)
        dt = time.perf_counter() - t0
        for _ in range(100):
            bus.publish("bench.end", "bench.ended", None)
        print(f"    BusClient.publish: {n / dt:,.0f} msg/s", flush=True)
        await asyncio.sleep(0.5)
        task.cancel()
        bus.close()
        z.destroy(0)
    uvloop.run(main())


def env_sub(state_dir: str, go, heard, result) -> None:
    import asyncio
    import uvloop
    BusClient, ep, stamper, counters, log = _ctx_bits(state_dir, "benchsub")

    async def main():
        z = zmq.Context()
        bus = BusClient(z, ep, stamper, counters, log, hwm=HWM)
        done = asyncio.Event()
        state = {"got": 0, "t0": None}

        def on(topic, header, body):
            if topic == "bench.x":
                if state["t0"] is None:
                    state["t0"] = time.perf_counter()
                state["got"] += 1
            elif topic == "bench.warm":
                heard.set()
            elif topic == "bench.end":
                done.set()
        bus.subscribe("bench", on)
        task = asyncio.create_task(bus.run())
        await bus.ready()
        go.set()
        await done.wait()
        result.put((state["got"], time.perf_counter() - state["t0"]))
        task.cancel()
        bus.close()
        z.destroy(0)
    uvloop.run(main())


def throughput_envelope(state_dir: str, n: int, size: int) -> None:
    go, heard, result = mp.Event(), mp.Event(), mp.Queue()
    sub = mp.Process(target=env_sub, args=(state_dir, go, heard, result))
    sub.start()
    go.wait(30)
    pub = mp.Process(target=env_pub, args=(state_dir, n, size, heard))
    pub.start()
    got, dt = result.get(timeout=300)
    pub.join()
    sub.join()
    print(f"  envelope, BusClient -> proxy -> BusClient handler: {got / dt:,.0f} msg/s "
          f"received ({got}/{n}, {100 * (n - got) / n:.1f}% dropped)")


# --------------------------------------------------------------- latency

def echo(sub_ep: str, pub_ep: str, bind: bool, go) -> None:
    z = zmq.Context()
    s = z.socket(zmq.SUB)
    p = z.socket(zmq.PUB)
    if bind:
        s.bind(sub_ep)
        p.bind(pub_ep)
    else:
        s.connect(sub_ep)
        p.connect(pub_ep)
    s.subscribe(b"ping")
    go.set()
    while True:
        f = s.recv_multipart()
        if f[1] == b"stop":
            break
        p.send_multipart([b"pong", f[1], f[2]])
    s.close(0)
    p.close(0)
    z.term()


def pingpong(label: str, my_pub: str, my_sub: str, echo_sub: str, echo_pub: str,
             bind: bool, rounds: int) -> float:
    go = mp.Event()
    e = mp.Process(target=echo, args=(echo_sub, echo_pub, bind, go))
    e.start()
    go.wait(30)
    z = zmq.Context()
    p = z.socket(zmq.PUB)
    s = z.socket(zmq.SUB)
    p.connect(my_pub)
    s.connect(my_sub)
    s.subscribe(b"pong")
    while True:  # until the path works both ways
        p.send_multipart([b"ping", b"warm", b""])
        if s.poll(20):
            s.recv_multipart()
            break
    while s.poll(50):
        s.recv_multipart()
    rtts = []
    for i in range(rounds):
        t0 = time.perf_counter()
        p.send_multipart([b"ping", str(i).encode(), b"x" * 100])
        while s.recv_multipart()[1] != str(i).encode():
            pass
        rtts.append(time.perf_counter() - t0)
    p.send_multipart([b"ping", b"stop", b""])
    e.join(10)
    p.close(0)
    s.close(0)
    z.term()
    med = statistics.median(rtts) * 1e6
    p99 = sorted(rtts)[int(0.99 * len(rtts))] * 1e6
    print(f"  {label}: round trip median {med:.0f} us, p99 {p99:.0f} us")
    return med


# ------------------------------------------------------------------ main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=200_000, help="messages per throughput run")
    ap.add_argument("--size", type=int, default=100, help="body bytes")
    ap.add_argument("--rounds", type=int, default=5000, help="ping-pong round trips")
    args = ap.parse_args()
    mp.set_start_method("fork")
    tmp = Path(tempfile.mkdtemp(prefix="bb", dir="/tmp"))
    state = tmp / "s"
    conf = tmp / "n.toml"
    conf.write_text(f'[node]\nname = "bench"\nrlocs = ["127.0.0.1"]\nstate_dir = "{state}"\n')
    bus = subprocess.Popen([sys.executable, "-m", "roles.bus", "-c", str(conf)], cwd=REPO,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 20
        while not (state / "bus-out.sock").exists():
            if time.monotonic() > deadline or bus.poll() is not None:
                print("bus did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        bus_in, bus_out = f"ipc://{state}/bus-in.sock", f"ipc://{state}/bus-out.sock"
        direct = f"ipc://{tmp}/direct.sock"
        print(f"throughput ({args.n} messages, {args.size}-byte body, 3 frames):")
        throughput_raw("raw frames, PUB -> SUB direct", direct, direct, True, args.n, args.size)
        throughput_raw("raw frames, PUB -> proxy -> SUB", bus_in, bus_out, False, args.n,
                       args.size)
        throughput_envelope(str(state), args.n, args.size)
        print(f"latency ({args.rounds} ping-pongs, 100-byte body):")
        d = pingpong("direct PUB/SUB", f"ipc://{tmp}/l-in.sock", f"ipc://{tmp}/l-out.sock",
                     f"ipc://{tmp}/l-in.sock", f"ipc://{tmp}/l-out.sock", True, args.rounds)
        p = pingpong("through the proxy", bus_in, bus_out, bus_out, bus_in, False, args.rounds)
        print(f"  proxy adds ~{(p - d) / 2:.0f} us one way (median)")
    finally:
        bus.send_signal(signal.SIGTERM)
        bus.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
