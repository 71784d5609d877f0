"""Every ZeroMQ endpoint of a node, derived from its state directory.

All of them are ``ipc://`` sockets inside ``state_dir``, so a node's config needs
nothing but ``node.state_dir`` and two nodes on one host never collide:

=====================  =========================================================
``bus-in.sock``        XSUB side of the proxy; publishers connect PUB here
``bus-out.sock``       XPUB side; subscribers connect SUB here
``sendq-in.sock``      send queue, producers connect PUSH here (bus binds PULL)
``sendq-out.sock``     send queue, map_resolver workers connect PULL here (bus
                       binds PUSH): each datagram goes to exactly one worker
``sendq-rt.sock``   with satellites (``bus.listen``): the proxy's PUSH side,
                       the TCP bridge routes by source address from there
``snap-<stream>.sock`` a Clone stream's snapshot ROUTER, bound by its writer
=====================  =========================================================

A Unix socket path must fit ``sockaddr_un.sun_path`` (108 bytes with the NUL);
longer paths fail here with a message naming the path instead of an ``ENAMETOOLONG``
from deep inside ZeroMQ.
"""

from __future__ import annotations

import os
import posixpath

import zmq

from bus import topics

IPC_PATH_MAX = 107  # sizeof(sun_path) - 1 on Linux


class EndpointError(ValueError):
    """An endpoint that cannot be used (relative state_dir, path too long)."""


def ipc(path: str) -> str:
    n = len(os.fsencode(path))
    if n > IPC_PATH_MAX:
        raise EndpointError(f"ipc socket path too long ({n} bytes, the limit is "
                            f"{IPC_PATH_MAX}): {path}; choose a shorter node.state_dir")
    return "ipc://" + path


class Endpoints:
    """The endpoints of the node whose state directory is ``state_dir``."""

    def __init__(self, state_dir: str) -> None:
        if not posixpath.isabs(state_dir):
            raise EndpointError(f"state_dir must be absolute: {state_dir!r}")
        self.state_dir = posixpath.normpath(state_dir)
        self.bus_in = ipc(self.path("bus-in.sock"))
        self.bus_out = ipc(self.path("bus-out.sock"))
        self.sendq_in = ipc(self.path("sendq-in.sock"))
        self.sendq_out = ipc(self.path("sendq-out.sock"))
        # a bus host with satellites: its proxy pushes here, the bridge routes
        self.sendq_route = ipc(self.path("sendq-rt.sock"))

    def path(self, name: str) -> str:
        return posixpath.join(self.state_dir, name)

    def snapshot(self, stream: str) -> str:
        """The snapshot endpoint of Clone stream ``stream`` (bound by its writer)."""
        return ipc(self.path(f"snap-{topics.stream_name(stream)}.sock"))

    def connect(self, sock: zmq.Socket, endpoint: str) -> None:
        """Connect ``sock`` to one of this node's bus endpoints (over TCP: CURVE)."""
        sock.connect(endpoint)

    def connect_snapshot(self, sock: zmq.Socket, stream: str) -> list[bytes]:
        """Connect a reader's DEALER to ``stream``'s snapshot service; returns the
        frames to put before each request (none here; a satellite names the stream)."""
        sock.connect(self.snapshot(stream))
        return []

    def __repr__(self) -> str:
        return f"Endpoints({self.state_dir!r})"


# TCP: the bus host binds these offsets from bus.listen's port (docs/bus-protocol.md)
TCP_BUS_IN, TCP_BUS_OUT, TCP_SENDQ_IN, TCP_SENDQ_OUT, TCP_SNAPSHOT = range(5)


def tcp_options(sock: zmq.Socket) -> None:
    """What every TCP link of the bus sets: ZMTP heartbeats (a dead peer is noticed
    within seconds, not at the next TCP timeout), quick reconnection."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
    sock.setsockopt(zmq.HEARTBEAT_TTL, 6000)
    sock.setsockopt(zmq.RECONNECT_IVL, 200)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)


class SatelliteEndpoints(Endpoints):
    """A satellite host's endpoints: its own state directory for what is local, the
    bus host's TCP endpoints (CURVE client) for the bus, the send queue and the
    Clone snapshots (relayed by the bus host, the request prefixed by the stream).
    Its workers pull the send queue with a DEALER that names their source addresses
    (``routed_sendq``, :meth:`bus.sendq.SendQueue.serve_from`)."""

    routed_sendq = True

    def __init__(self, state_dir: str, addr, keys) -> None:
        super().__init__(state_dir)
        self.addr, self.keys = addr, keys     # common.bus_config.TcpAddr, bus.curve.Keys
        self.bus_in = addr.url(TCP_BUS_IN)
        self.bus_out = addr.url(TCP_BUS_OUT)
        self.sendq_in = addr.url(TCP_SENDQ_IN)
        self.sendq_out = addr.url(TCP_SENDQ_OUT)
        self.snapshot_relay = addr.url(TCP_SNAPSHOT)

    def connect(self, sock: zmq.Socket, endpoint: str) -> None:
        if endpoint.startswith("tcp://"):
            sock.setsockopt(zmq.CURVE_SERVERKEY, self.keys.server)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self.keys.public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret)
            tcp_options(sock)
        sock.connect(endpoint)

    def connect_snapshot(self, sock: zmq.Socket, stream: str) -> list[bytes]:
        self.connect(sock, self.snapshot_relay)
        return [topics.stream_name(stream).encode()]

    def __repr__(self) -> str:
        return f"SatelliteEndpoints({self.state_dir!r}, {self.bus_in})"


def for_config(cfg) -> Endpoints:
    """The endpoints of this host of the node ``cfg`` (raises EndpointError, and
    common.config.ConfigError for the keys of a satellite)."""
    bus = getattr(cfg, "bus", None)
    if bus is not None and bus.satellite:
        from bus import curve
        return SatelliteEndpoints(cfg.node.state_dir, bus.connect, curve.load(bus))
    return Endpoints(cfg.node.state_dir)
