"""A role's connection to its node's bus: publish, subscribe, dispatch.

One PUB socket connected to the proxy's XSUB side and one SUB socket connected to
its XPUB side.  :meth:`BusClient.publish` never blocks (pub/sub drops at the
high-water mark instead; state travels on Clone streams, which detect that).
:meth:`BusClient.run` is the receive loop; the runtime runs it for every role.

Subscriptions match whole topic segments (:func:`bus.topics.matches`); handlers
are called in arrival order as ``handler(topic, header, body)`` and may be
coroutines, which are awaited before the next message is dispatched.  A handler
that raises is counted (``dropped.handler-error``) and logged, and the loop goes on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Awaitable, Callable

import zmq

from bus import envelope, topics
from bus.aio import AsyncSocket
from bus.counters import RoleCounters
from bus.endpoints import Endpoints
from bus.envelope import EnvelopeError, Header, Stamper

Handler = Callable[[str, Header, Any], "Awaitable[None] | None"]

PROBE = "bus-probe"


DISPATCH_BURST = 32   # messages dispatched per loop turn at most


class Subscription:
    """A registered handler; :meth:`cancel` removes it (and its ZeroMQ filter)."""

    def __init__(self, client: BusClient, prefix: str, handler: Handler) -> None:
        self.client = client
        self.prefix = prefix
        self.handler = handler

    def cancel(self) -> None:
        self.client._unsubscribe(self)


class BusClient:
    def __init__(self, zctx: zmq.Context, endpoints: Endpoints, stamper: Stamper,
                 counters: RoleCounters, log: logging.Logger | None = None, *,
                 hwm: int = 100_000) -> None:
        self.endpoints = endpoints
        self.stamper = stamper
        self.counters = counters
        self.log = log or logging.getLogger("bus")
        self._pub = zctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.SNDHWM, hwm)
        self._pub.setsockopt(zmq.LINGER, 500)
        endpoints.connect(self._pub, endpoints.bus_in)
        self._sub = zctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.RCVHWM, hwm)
        self._sub.setsockopt(zmq.LINGER, 0)
        endpoints.connect(self._sub, endpoints.bus_out)
        self._subs: list[Subscription] = []

    @property
    def session(self) -> str:
        return self.stamper.src.session

    # ------------------------------------------------------------- publishing

    def publish(self, topic: str, type: str, body: Any = None, *, stream: str | None = None,
                seq: int | None = None, parent: str | None = None, schema: int = 1) -> str:
        """Publish ``body`` (msgpack-able) as a ``type`` message; returns its id."""
        header = self.stamper.header(envelope.check_type(type), schema=schema, stream=stream,
                                     seq=seq, parent=parent)
        self._pub.send_multipart(envelope.encode(topic, header, body), zmq.NOBLOCK)
        self.counters.inc("bus.published")
        return header.id

    # ------------------------------------------------------------ subscribing

    def subscribe(self, prefix: str, handler: Handler) -> Subscription:
        """Call ``handler(topic, header, body)`` for every message under ``prefix``."""
        s = Subscription(self, prefix, handler)
        self._sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        self._subs.append(s)
        return s

    def _unsubscribe(self, s: Subscription) -> None:
        if s in self._subs:
            self._subs.remove(s)
            self._sub.setsockopt(zmq.UNSUBSCRIBE, s.prefix.encode())

    async def run(self) -> None:
        """Receive and dispatch until cancelled."""
        asub = AsyncSocket(self._sub)
        try:
            n = 0
            while True:
                await self._dispatch(await asub.recv_multipart())
                n += 1
                if n % DISPATCH_BURST == 0:
                    # a flood of queued messages must not starve the role's other
                    # tasks (its heartbeat first): yield to the loop every burst
                    await asyncio.sleep(0)
        finally:
            asub.detach()

    async def _dispatch(self, frames: list[bytes]) -> None:
        try:
            topic, header, body = envelope.decode(frames)
        except EnvelopeError as exc:
            self.counters.drop("bad-envelope", str(exc))
            return
        self.counters.inc("bus.received")
        for s in list(self._subs):
            if not topics.matches(s.prefix, topic):
                continue
            try:
                r = s.handler(topic, header, body)
                if inspect.isawaitable(r):
                    await r
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.counters.drop(f"handler-error.{type(exc).__name__}", f"{topic} {header.type}: {exc!r}")
                self.log.debug("handler for %s failed", topic, exc_info=True)

    async def ready(self, timeout: float | None = None) -> bool:
        """Wait until a message we publish comes back through the proxy.

        Proves the proxy is up and that our PUB socket has received the
        subscriptions (ZeroMQ's "slow joiner": what is published before that is
        lost).  Needs :meth:`run` running.  False if ``timeout`` passed first.
        """
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        topic = topics.join(PROBE, self.session)

        def on_probe(_t: str, _h: Header, _b: Any) -> None:
            if not got.done():
                got.set_result(True)

        sub = self.subscribe(topic, on_probe)
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while True:
                self.publish(topic, "bus.probed")
                try:
                    await asyncio.wait_for(asyncio.shield(got), 0.05)
                    return True
                except asyncio.TimeoutError:
                    if deadline is not None and loop.time() >= deadline:
                        return False
        finally:
            sub.cancel()

    def close(self) -> None:
        self._sub.close(0)
        self._pub.close()
