"""The ``bus`` role: the node's pub/sub proxy and its send-queue broker.

Two steerable ZeroMQ proxies, each in its own thread (the forwarding is libzmq's C
loop; Python only starts, watches and stops it):

- **pub/sub**: XSUB bound on ``bus-in.sock`` (every role's PUB connects there) and
  XPUB bound on ``bus-out.sock`` (every role's SUB connects there).  Subscriptions
  flow back from XPUB to XSUB, so publishers filter at the source.
- **send queue**: PULL bound on ``sendq-in.sock`` (roles that need a datagram sent
  from port 4342 connect PUSH) and PUSH bound on ``sendq-out.sock`` (the
  map_resolver workers connect PULL).  PUSH deals each message to exactly one
  connected worker, so each datagram is sent once (see :mod:`bus.sendq`).

The bus heartbeats like every role; its counters carry the proxies' message
counts (``proxy.pubsub.in/out``, ``proxy.sendq.in/out``).  One bus per state
directory: an exclusive lock on ``bus.lock`` stops a second one from silently
unbinding the first one's sockets.  SIGTERM stops both proxies and exits 0.

    python -m roles.bus -c CONFIG --instance 0
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import sys
import threading

import zmq

from bus.aio import AsyncSocket
from roles.hostfiles import UnsafePath, open_private
from roles.runtime import RefuseToStart, RoleContext, run_role

PROXY_HWM = 10_000  # per connected peer; pub/sub drops beyond it, the send queue blocks


class BusLockedError(RuntimeError):
    """Another bus process holds this state directory."""


class Proxy:
    """One steerable proxy (frontend <-> backend) running in a thread."""

    def __init__(self, ctx: RoleContext, name: str, front_type: int, front_ep: str,
                 back_type: int, back_ep: str) -> None:
        z = ctx.zmq
        self.name = name
        self.front = z.socket(front_type)
        self.back = z.socket(back_type)
        for s in (self.front, self.back):
            s.setsockopt(zmq.SNDHWM, PROXY_HWM)
            s.setsockopt(zmq.RCVHWM, PROXY_HWM)
            s.setsockopt(zmq.LINGER, 0)
        self.front.bind(front_ep)
        self.back.bind(back_ep)
        addr = f"inproc://proxy-control-{name}"
        self._control = z.socket(zmq.PAIR)
        self._control.bind(addr)
        self._steer = z.socket(zmq.PAIR)
        self._steer.connect(addr)
        self._acontrol = AsyncSocket(self._control)
        self._lock = asyncio.Lock()
        self._thread = threading.Thread(target=self._run, name=f"proxy-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            zmq.proxy_steerable(self.front, self.back, None, self._steer)
        except zmq.ContextTerminated:
            pass

    async def statistics(self) -> tuple[int, int]:
        """(messages in at the frontend, messages out at the backend)."""
        async with self._lock:
            await self._acontrol.send_multipart([b"STATISTICS"])
            frames = await self._acontrol.recv_multipart()
        values = [struct.unpack("=Q", f)[0] for f in frames]
        return values[0], values[6]

    async def stop(self) -> None:
        async with self._lock:
            self._control.send(b"TERMINATE")
        await asyncio.to_thread(self._thread.join, 5.0)
        self._acontrol.close(0)
        for s in (self.front, self.back, self._steer):
            s.close(0)


def take_lock(path: str) -> int:
    """An exclusive, non-blocking lock held for the life of the process."""
    fd = open_private(path)   # never through a symlink, ours, 0600
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BusLockedError(f"{path} is held by another bus process") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


async def main(ctx: RoleContext) -> None:
    ep = ctx.endpoints
    try:
        lock_fd = take_lock(ep.path("bus.lock"))
    except UnsafePath as exc:
        raise RefuseToStart(str(exc)) from None
    bus_cfg = getattr(ctx.cfg, "bus", None)
    tcp = bus_cfg is not None and bus_cfg.listen is not None
    # with satellites the send queue is routed by source address (bus.tcpbridge)
    proxies = [Proxy(ctx, "pubsub", zmq.XSUB, ep.bus_in, zmq.XPUB, ep.bus_out),
               Proxy(ctx, "sendq", zmq.PULL, ep.sendq_in, zmq.PUSH,
                     ep.sendq_route if tcp else ep.sendq_out)]
    for p in proxies:
        p.start()
    ctx.log.info("proxying %s -> %s and %s -> %s", ep.bus_in, ep.bus_out,
                 ep.sendq_in, ep.sendq_out)
    bridge = None
    if tcp:   # satellites over TCP (CURVE)
        from bus import curve
        from bus.tcpbridge import TcpBridge
        from common.config import ConfigError
        try:
            bridge = TcpBridge(ctx, bus_cfg.listen, curve.load(bus_cfg))
            bridge.start()
        except (ConfigError, zmq.ZMQError) as exc:
            for p in proxies:
                await p.stop()
            raise RefuseToStart(f"bus.listen {bus_cfg.listen.url(0)}: {exc}") from None

    async def update_counters() -> None:
        for p in proxies:
            n_in, n_out = await p.statistics()
            ctx.counters.set(f"proxy.{p.name}.in", n_in)
            ctx.counters.set(f"proxy.{p.name}.out", n_out)

    stats = ctx.every(ctx.timer("heartbeat_interval", 1.0), update_counters,
                      name="proxy-stats", first=0.0)
    try:
        await asyncio.Event().wait()
    finally:
        stats.cancel()
        await asyncio.gather(stats, return_exceptions=True)
        if bridge is not None:
            await bridge.stop()
        for p in proxies:
            await p.stop()
        os.close(lock_fd)


if __name__ == "__main__":
    sys.exit(run_role("bus", main))
