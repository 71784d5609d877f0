"""Ask a running node's roles over its bus, from a short-lived CLI process.

Two patterns: :func:`query` publishes a request carrying a private reply topic and
collects one answer per responder (re-publishing until they arrive, since a new
publisher's first messages are lost while ZeroMQ subscriptions propagate);
:func:`collect` listens to a topic prefix for a while (heartbeats, for counters).
"""

from __future__ import annotations

import os
import secrets
import time

import zmq

from bus import envelope
from bus.endpoints import for_config as endpoints_for
from cli.common import UserError
from common.config import ConfigError


class _Bus:
    def __init__(self, cfg) -> None:
        try:   # a satellite asks through the bus host (TCP, CURVE)
            ep = endpoints_for(cfg)
        except ConfigError as exc:
            raise UserError(str(exc), 2) from None
        if ep.bus_out.startswith("ipc://") and not os.path.exists(ep.path("bus-out.sock")):
            raise UserError(f"node {cfg.node.name} is not running (no bus at {ep.state_dir}); "
                            "start it with `decent up`", 1)
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        ep.connect(self.sub, ep.bus_out)
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 200)
        ep.connect(self.pub, ep.bus_in)
        self.session = secrets.token_hex(8)
        self.stamper = envelope.Stamper("cli", 0, self.session)

    def recv(self, until: float):
        while True:
            left = until - time.monotonic()
            if left <= 0 or not self.sub.poll(max(1, int(min(left, 0.1) * 1000))):
                if left <= 0:
                    return None
                continue
            try:
                return envelope.decode(self.sub.recv_multipart())
            except envelope.EnvelopeError:
                continue

    def close(self) -> None:
        self.sub.close(0)
        self.pub.close()
        self.ctx.term()


def query(cfg, topic: str, body: dict, *, expect: int = 1, timeout: float = 3.0,
          key=lambda h, b: (h.src.role, h.src.instance)) -> list:
    """Publish ``body`` (plus ``reply``) on ``topic``; return up to ``expect`` answers."""
    bus = _Bus(cfg)
    reply = f"cli.reply.{bus.session}"
    bus.sub.setsockopt(zmq.SUBSCRIBE, reply.encode())
    got: dict = {}
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expect and time.monotonic() < deadline:
            bus.pub.send_multipart(envelope.encode(topic, bus.stamper.header("cli.queried"),
                                                   dict(body, reply=reply)))
            step = min(deadline, time.monotonic() + 0.25)
            while len(got) < expect:
                m = bus.recv(step)
                if m is None:
                    break
                _t, h, b = m
                got[key(h, b)] = b
    finally:
        bus.close()
    return list(got.values())


def collect(cfg, prefix: str, *, want: set | None = None, timeout: float = 3.0,
            by_host: bool = False) -> dict:
    """Latest message per (role, instance) under ``prefix``, until ``want`` are all in;
    ``by_host``: per (role, instance, host) (the body's ``host``, heartbeats carry
    it), as each host of a node across hosts runs its own ``watchdog:0``."""
    bus = _Bus(cfg)
    bus.sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
    got: dict = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not (want and want <= set(got)):
            m = bus.recv(deadline)
            if m is None:
                break
            _t, h, b = m
            if by_host:
                host = b.get("host") if isinstance(b, dict) else None
                got[(h.src.role, h.src.instance, host if isinstance(host, str) else "")] = b
            else:
                got[(h.src.role, h.src.instance)] = b
    finally:
        bus.close()
    return got
