"""The bus host's TCP side: what satellites connect to, CURVE only.

Run by the ``bus`` role when ``[bus] listen = "tcp://HOST:P"``.  The ipc proxies of
:mod:`roles.bus` stay as they are (local roles never pay for CURVE); this module
bridges them to five TCP sockets, each a CURVE server in a ZeroMQ context of its
own, whose ZAP handler (pyzmq's authenticator thread) lets in only the public keys
of ``bus.allowed_keys`` / ``bus.allowed_keys_dir``:

======  ==========================  =============================================
port    bound here                  bridged to
======  ==========================  =============================================
P       XSUB (satellites' PUB)      XPUB connected to ``bus-in.sock``
P+1     XPUB (satellites' SUB)      XSUB connected to ``bus-out.sock``
P+2     PULL (satellites' PUSH)     PUSH connected to ``sendq-in.sock``
P+3     PUSH (satellites' workers)  PULL connected to ``sendq-out.sock`` while at
                                    least one satellite worker is connected
P+4     ROUTER (snapshot requests)  a DEALER per request to ``snap-<stream>.sock``
======  ==========================  =============================================

Subscriptions flow back through the pub/sub bridges, so publishers still filter
at the source.  The P+3 bridge holds no ipc connection while no satellite worker
is connected, so the local send queue never deals datagrams to nobody.  A snapshot
request on P+4 is ``[stream, b"snap", body]``; the reply frames are exactly those
of the writer (``items``..., ``end``), so a satellite's reader is unchanged.

Counters (in the bus's heartbeat): ``tcp.curve.allowed``, ``tcp.curve.denied``,
``tcp.sendq.peers``, ``tcp.sendq.relayed``, ``tcp.snapshots``; drops
``curve-denied``, ``sendq-remote-full``, ``bad-snapshot-relay``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import zmq
import zmq.utils.monitor
from zmq.auth.thread import ThreadAuthenticator

from bus import topics
from bus.aio import AsyncSocket
from bus.endpoints import (TCP_BUS_IN, TCP_BUS_OUT, TCP_SENDQ_IN, TCP_SENDQ_OUT, TCP_SNAPSHOT,
                           tcp_options)

if TYPE_CHECKING:
    from roles.runtime import RoleContext

ZAP_DOMAIN = b"lisp-decent"
HWM = 10_000
MAX_RELAYS = 32            # snapshot requests relayed at once


class _Allow:
    """The ZAP decision: a client public key (Z85) in the allowed set."""

    def __init__(self, ctx: RoleContext, allowed: frozenset[bytes]) -> None:
        self.ctx, self.allowed = ctx, allowed

    def callback(self, _domain: str, key: bytes) -> bool:
        ok = bytes(key) in self.allowed
        if ok:
            self.ctx.counters.inc("tcp.curve.allowed")
        else:
            self.ctx.counters.inc("tcp.curve.denied")
            self.ctx.counters.drop("curve-denied", f"client key {bytes(key).decode(errors='replace')} "
                                                   f"is not in bus.allowed_keys")
        return ok


class _Thread:
    """zmq.proxy(front, back) in a thread, stopped through a steering PAIR."""

    def __init__(self, z: zmq.Context, name: str, front: zmq.Socket, back: zmq.Socket) -> None:
        self.front, self.back = front, back
        addr = f"inproc://tcp-bridge-{name}"
        self._steer = z.socket(zmq.PAIR)
        self._steer.bind(addr)
        self._control = z.socket(zmq.PAIR)
        self._control.connect(addr)
        self._thread = threading.Thread(target=self._run, name=f"tcp-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            zmq.proxy_steerable(self.front, self.back, None, self._steer)
        except zmq.ContextTerminated:
            pass

    def stop(self) -> None:
        self._control.send(b"TERMINATE")
        self._thread.join(5.0)
        for s in (self.front, self.back, self._steer, self._control):
            s.close(0)


class TcpBridge:
    def __init__(self, ctx: RoleContext, listen, keys) -> None:
        self.ctx, self.listen, self.keys = ctx, listen, keys
        self.z = zmq.Context()
        self.auth = ThreadAuthenticator(self.z, log=ctx.log.getChild("zap"))
        self._threads: list[_Thread] = []
        self._tasks: list[asyncio.Task] = []
        self._socks: list[zmq.Socket] = []
        self._peers: set[int] = set()
        self._relays = 0

    def _server(self, kind: int, offset: int) -> zmq.Socket:
        s = self.z.socket(kind)
        s.setsockopt(zmq.CURVE_SERVER, 1)
        s.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret)
        s.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        s.setsockopt(zmq.SNDHWM, HWM)
        s.setsockopt(zmq.RCVHWM, HWM)
        s.setsockopt(zmq.LINGER, 0)
        tcp_options(s)
        s.bind(self.listen.url(offset))
        return s

    def _local(self, kind: int, endpoint: str) -> zmq.Socket:
        s = self.z.socket(kind)
        s.setsockopt(zmq.SNDHWM, HWM)
        s.setsockopt(zmq.RCVHWM, HWM)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        return s

    def start(self) -> None:
        ep = self.ctx.endpoints
        self.auth.start()
        self.auth.configure_curve_callback(domain=ZAP_DOMAIN.decode(),
                                           credentials_provider=_Allow(self.ctx, self.keys.allowed))
        self._threads = [
            _Thread(self.z, "pub-in", self._server(zmq.XSUB, TCP_BUS_IN),
                    self._local(zmq.XPUB, ep.bus_in)),
            _Thread(self.z, "pub-out", self._local(zmq.XSUB, ep.bus_out),
                    self._server(zmq.XPUB, TCP_BUS_OUT)),
            _Thread(self.z, "sendq-in", self._server(zmq.PULL, TCP_SENDQ_IN),
                    self._local(zmq.PUSH, ep.sendq_in)),
        ]
        push = self._server(zmq.PUSH, TCP_SENDQ_OUT)
        router = self._server(zmq.ROUTER, TCP_SNAPSHOT)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.SNDHWM, 0)       # a snapshot is queued whole
        self._socks += [push, router]
        self._tasks = [self.ctx.spawn(self._sendq_out(push), name="tcp-sendq-out"),
                       self.ctx.spawn(self._snapshots(router), name="tcp-snapshots")]
        self.ctx.log.info("bus on TCP %s..%d (CURVE, %d allowed key(s))",
                          self.listen.url(0), self.listen.port + 4, len(self.keys.allowed))

    # ---------------------------------------------------------- send queue out

    async def _sendq_out(self, push: zmq.Socket) -> None:
        """Relay the local send queue to satellite workers while any is connected."""
        mon = AsyncSocket(push.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED
                                                  | zmq.EVENT_DISCONNECTED))
        pull: AsyncSocket | None = None
        loop = asyncio.get_running_loop()
        recv: asyncio.Future | None = None
        mon_recv: asyncio.Future = loop.create_task(mon.recv_multipart())
        try:
            while True:
                waits = [mon_recv] + ([recv] if recv is not None else [])
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if mon_recv in done:
                    ev = zmq.utils.monitor.parse_monitor_message(mon_recv.result())
                    if ev["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                        self._peers.add(ev["value"])
                    elif ev["event"] == zmq.EVENT_DISCONNECTED:
                        self._peers.discard(ev["value"])
                    self.ctx.counters.set("tcp.sendq.peers", len(self._peers))
                    mon_recv = loop.create_task(mon.recv_multipart())
                    if self._peers and pull is None:
                        pull = AsyncSocket(self._local(zmq.PULL, self.ctx.endpoints.sendq_out))
                        pull.sock.setsockopt(zmq.RCVHWM, 100)
                    elif not self._peers and pull is not None:
                        if recv is not None:
                            recv.cancel()
                            recv = None
                        pull.close(0)      # what it held is lost: at most once
                        pull = None
                if recv is not None and recv in done:
                    frames = recv.result()
                    recv = None
                    try:
                        push.send_multipart(frames, zmq.NOBLOCK)
                        self.ctx.counters.inc("tcp.sendq.relayed")
                    except zmq.Again:
                        self.ctx.counters.drop("sendq-remote-full", "no satellite worker pulling")
                if pull is not None and recv is None:
                    recv = loop.create_task(pull.recv_multipart())
        finally:
            for f in (recv, mon_recv):
                if f is not None:
                    f.cancel()
            if pull is not None:
                pull.close(0)
            mon.close(0)

    # ---------------------------------------------------------- snapshots

    async def _snapshots(self, router: zmq.Socket) -> None:
        arouter = AsyncSocket(router)
        try:
            while True:
                frames = await arouter.recv_multipart()
                if len(frames) != 4 or frames[2] != b"snap":
                    self.ctx.counters.drop("bad-snapshot-relay", f"{len(frames)} frames")
                    continue
                try:
                    stream = topics.stream_name(frames[1].decode("ascii"))
                except (UnicodeDecodeError, ValueError) as exc:
                    self.ctx.counters.drop("bad-snapshot-relay", f"stream: {exc}")
                    continue
                if self._relays >= MAX_RELAYS:
                    self.ctx.counters.drop("bad-snapshot-relay", "too many at once")
                    continue
                self._relays += 1
                self.ctx.spawn(self._relay(router, frames[0], stream, frames[3]),
                               name=f"tcp-snapshot {stream}")
        finally:
            arouter.detach()

    async def _relay(self, router: zmq.Socket, ident: bytes, stream: str, body: bytes) -> None:
        dealer = self.ctx.zmq.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.RCVHWM, 0)
        dealer.connect(self.ctx.endpoints.snapshot(stream))
        adealer = AsyncSocket(dealer)
        timeout = 2 * self.ctx.timer("snapshot_timeout", 5.0)
        try:
            await adealer.send_multipart([b"snap", body])
            while True:
                frames = await asyncio.wait_for(adealer.recv_multipart(), timeout)
                router.send_multipart([ident] + frames, zmq.NOBLOCK)
                if frames and frames[0] == b"end":
                    self.ctx.counters.inc("tcp.snapshots")
                    return
        except (asyncio.TimeoutError, zmq.ZMQError) as exc:
            self.ctx.counters.drop("bad-snapshot-relay", f"{stream}: {exc!r}")
        finally:
            adealer.close(0)
            self._relays -= 1

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for th in self._threads:
            th.stop()
        for s in self._socks:
            s.close(0)
        self.auth.stop()
        self.z.destroy(linger=0)
