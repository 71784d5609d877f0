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
P+3     ROUTER (satellites'         the send queue, routed by source address: the
        workers' DEALERs)           bus's proxy pushes to ``sendq-rt.sock``,
                                    this host's datagrams go on to
                                    ``sendq-out.sock`` (bound here), a satellite's
                                    to one of its workers
P+4     ROUTER (snapshot requests)  a DEALER per request to ``snap-<stream>.sock``
======  ==========================  =============================================

Subscriptions flow back through the pub/sub bridges, so publishers still filter
at the source.  A datagram must leave from the host that owns its source address
(the peer checks it: an ETR refuses a Map-Notify from an address it did not
register with), so the send queue is routed (:class:`SendRoutes`): satellite
workers say ``ready`` with their host and addresses every second; a datagram whose
source is a satellite's goes to one of that satellite's workers (round robin, the
next one when a worker is full), to none if it has none connected
(``sendq-host-down``); every other datagram to this host's workers.  A snapshot
request on P+4 is ``[stream, b"snap", body]``; the reply frames are exactly those
of the writer (``items``..., ``end``), so a satellite's reader is unchanged.

Counters (in the bus's heartbeat): ``tcp.curve.allowed``, ``tcp.curve.denied``,
``tcp.sendq.peers``, ``tcp.sendq.relayed``, ``tcp.snapshots``; drops
``curve-denied``, ``sendq-host-down``, ``sendq-full``, ``bad-sendq``,
``bad-sendq-ready``, ``bad-snapshot-relay``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import TYPE_CHECKING

import msgpack
import zmq
from zmq.auth.thread import ThreadAuthenticator

from bus import sendq, topics
from bus.aio import AsyncSocket
from bus.endpoints import (TCP_BUS_IN, TCP_BUS_OUT, TCP_SENDQ_IN, TCP_SENDQ_OUT, TCP_SNAPSHOT,
                           tcp_options)

if TYPE_CHECKING:
    from roles.runtime import RoleContext

ZAP_DOMAIN = b"lisp-decent"
HWM = 10_000
MAX_RELAYS = 32            # snapshot requests relayed at once


PEER_SILENT = 3.5          # s without a satellite worker's "ready": forgotten


class SendRoutes:
    """Which satellite worker sends from which address (told by their ``ready``)."""

    def __init__(self) -> None:
        self._peers: dict[bytes, tuple[str, tuple[str, ...], float]] = {}
        self._remote: dict[str, str] | None = {}
        self._by_host: dict[str, list[bytes]] = {}
        self._turn = itertools.count()

    def ready(self, ident: bytes, host: str, addrs, now: float) -> None:
        old = self._peers.get(ident)
        self._peers[ident] = (host, tuple(addrs), now)
        if old is None or old[:2] != (host, tuple(addrs)):
            self._remote = None

    def gone(self, ident: bytes) -> None:
        if self._peers.pop(ident, None) is not None:
            self._remote = None

    def _expire(self, now: float) -> None:
        stale = [i for i, (_h, _a, t) in self._peers.items() if now - t > PEER_SILENT]
        for i in stale:
            self.gone(i)

    def remote(self, now: float) -> dict[str, str]:
        """source address -> satellite host, for :func:`bus.sendq.split_by_source`."""
        self._expire(now)
        if self._remote is None:
            self._remote, self._by_host = {}, {}
            for ident, (host, addrs, _t) in self._peers.items():
                self._by_host.setdefault(host, []).append(ident)
                for a in addrs:
                    self._remote[a] = host
        return self._remote

    def peers(self, host: str) -> list[bytes]:
        """That host's workers, starting with the next in turn (round robin)."""
        ids = self._by_host.get(host, [])
        if len(ids) < 2:
            return list(ids)
        k = next(self._turn) % len(ids)
        return ids[k:] + ids[:k]

    def count(self) -> int:
        return len(self._peers)


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
        self.routes = SendRoutes()
        self._asocks: list[AsyncSocket] = []
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
        out = self._server(zmq.ROUTER, TCP_SENDQ_OUT)
        out.setsockopt(zmq.ROUTER_MANDATORY, 1)
        local = self.z.socket(zmq.PUSH)       # this host's workers pull here
        local.setsockopt(zmq.SNDHWM, HWM)
        local.setsockopt(zmq.LINGER, 0)
        local.bind(ep.sendq_out)
        pull = self._local(zmq.PULL, ep.sendq_route)
        router = self._server(zmq.ROUTER, TCP_SNAPSHOT)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.SNDHWM, 0)       # a snapshot is queued whole
        self._socks += [local, router]
        aout, apull = AsyncSocket(out), AsyncSocket(pull)
        self._asocks = [aout, apull]
        self._tasks = [self.ctx.spawn(self._sendq_ready(aout), name="tcp-sendq-ready"),
                       self.ctx.spawn(self._sendq_route(apull, local, aout), name="tcp-sendq-route"),
                       self.ctx.spawn(self._snapshots(router), name="tcp-snapshots")]
        self.ctx.log.info("bus on TCP %s..%d (CURVE, %d allowed key(s))",
                          self.listen.url(0), self.listen.port + 4, len(self.keys.allowed))

    # ---------------------------------------------------------- send queue out

    async def _sendq_ready(self, arouter: AsyncSocket) -> None:
        """Learn the satellite workers: ``[ident, b"ready", msgpack [host, [addr...]]]``."""
        while True:
            frames = await arouter.recv_multipart()
            try:
                if len(frames) != 3 or frames[1] != sendq.READY:
                    raise ValueError(f"{len(frames)} frames")
                host, addrs = msgpack.unpackb(frames[2], raw=False)
                if not isinstance(host, str) or not isinstance(addrs, list) \
                        or not all(isinstance(a, str) for a in addrs) or len(addrs) > 64:
                    raise ValueError("expected [host, [addr, ...]]")
            except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
                    msgpack.StackError) as exc:
                self.ctx.counters.drop("bad-sendq-ready", str(exc))
                continue
            self.routes.ready(bytes(frames[0]), host, addrs, time.monotonic())

    async def _sendq_route(self, pull: AsyncSocket, local: zmq.Socket, arouter: AsyncSocket) -> None:
        """Deal the node's send queue by source address: this host's datagrams to its
        own workers (``sendq-out.sock``), a satellite's to one of its workers."""
        c = self.ctx.counters
        while True:
            frames = await pull.recv_multipart()
            try:
                groups = sendq.split_by_source(frames, self.routes.remote(time.monotonic()))
            except sendq.SendqError as exc:
                c.drop("bad-sendq", str(exc))
                continue
            for host, part in groups.items():
                if host is None:
                    try:
                        local.send_multipart(part, zmq.NOBLOCK)
                    except zmq.Again:
                        c.drop("sendq-full", f"{sendq.count(part)} datagram(s): no local worker pulling")
                    continue
                for ident in self.routes.peers(host):
                    try:
                        arouter.sock.send_multipart([ident] + part, zmq.NOBLOCK)
                    except zmq.Again:
                        continue                       # that worker is full: the next one
                    except zmq.ZMQError as exc:
                        if exc.errno != zmq.EHOSTUNREACH:
                            raise
                        self.routes.gone(ident)        # disconnected: forget it
                        continue
                    c.inc("tcp.sendq.relayed", sendq.count(part))
                    break
                else:
                    c.drop("sendq-host-down", f"{sendq.count(part)} datagram(s) to leave from {host}: "
                                              f"no worker of that host connected, or all full")
            arouter.poke()
            c.set("tcp.sendq.peers", self.routes.count())

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
        for a in self._asocks:
            a.close(0)
        for th in self._threads:
            th.stop()
        for s in self._socks:
            s.close(0)
        self.auth.stop()
        self.z.destroy(linger=0)
