"""Every ZeroMQ endpoint of a node, derived from its state directory.

All of them are ``ipc://`` sockets inside ``state_dir``, so a node's config needs
nothing but ``node.state_dir`` and two nodes on one host never collide:

=====================  =========================================================
``bus-in.sock``        XSUB side of the proxy; publishers connect PUB here
``bus-out.sock``       XPUB side; subscribers connect SUB here
``sendq-in.sock``      send queue, producers connect PUSH here (bus binds PULL)
``sendq-out.sock``     send queue, map_resolver workers connect PULL here (bus
                       binds PUSH): each datagram goes to exactly one worker
``snap-<stream>.sock`` a Clone stream's snapshot ROUTER, bound by its writer
=====================  =========================================================

A Unix socket path must fit ``sockaddr_un.sun_path`` (108 bytes with the NUL);
longer paths fail here with a message naming the path instead of an ``ENAMETOOLONG``
from deep inside ZeroMQ.
"""

from __future__ import annotations

import os
import posixpath

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

    def path(self, name: str) -> str:
        return posixpath.join(self.state_dir, name)

    def snapshot(self, stream: str) -> str:
        """The snapshot endpoint of Clone stream ``stream``."""
        return ipc(self.path(f"snap-{topics.stream_name(stream)}.sock"))

    def __repr__(self) -> str:
        return f"Endpoints({self.state_dir!r})"
