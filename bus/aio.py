"""A ZeroMQ socket awaited on the running event loop (uvloop or asyncio).

``zmq.asyncio`` works too, but every receive goes through a Future; this wrapper
receives with ``NOBLOCK`` first and only waits when the socket is empty, which is
what keeps a bus subscriber near the proxy's rate.

ZeroMQ's file descriptor is edge-like: it signals that the socket's state may have
changed, and reading ``EVENTS`` re-arms it.  The reader callback reads ``EVENTS``
(so a readable descriptor does not spin the loop while a handler runs) and wakes
the waiter, which re-checks ``EVENTS`` itself before sleeping again.  One task at a
time may wait on a given socket.
"""

from __future__ import annotations

import asyncio
from typing import Sequence

import zmq


class AsyncSocket:
    def __init__(self, sock: zmq.Socket) -> None:
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._fd = sock.getsockopt(zmq.FD)
        self._loop.add_reader(self._fd, self._on_fd)
        self._closed = False

    def _on_fd(self) -> None:
        try:
            self.sock.getsockopt(zmq.EVENTS)
        except zmq.ZMQError:
            pass
        self._wake.set()

    async def _wait(self, flag: int) -> None:
        while True:
            self._wake.clear()
            if self.sock.getsockopt(zmq.EVENTS) & flag:
                return
            await self._wake.wait()

    async def recv_multipart(self) -> list[bytes]:
        while True:
            try:
                return self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                await self._wait(zmq.POLLIN)

    def recv_nowait(self) -> list[bytes] | None:
        """One message if one is queued, else None."""
        try:
            return self.sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None

    async def send_multipart(self, frames: Sequence[bytes]) -> None:
        """Send, waiting while the socket is at its high-water mark."""
        while True:
            try:
                self.sock.send_multipart(frames, zmq.NOBLOCK)
                return
            except zmq.Again:
                await self._wait(zmq.POLLOUT)

    def poke(self) -> None:
        """Another task sent on this socket: ZeroMQ may have taken the descriptor's
        edge while doing so, so let the waiter re-check ``EVENTS``."""
        self._wake.set()

    def detach(self) -> None:
        """Stop watching the socket (it stays open)."""
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._fd)

    def close(self, linger: int | None = 0) -> None:
        self.detach()
        self.sock.close(linger)
