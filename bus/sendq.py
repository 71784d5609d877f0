"""The send queue: datagrams other roles need sent from UDP port 4342.

Only the map_resolver workers own port 4342, and there are several of them, so
the queue is PUSH/PULL through a broker in the ``bus`` process: producers connect
PUSH to ``sendq-in`` (the bus's PULL), workers connect PULL to ``sendq-out`` (the
bus's PUSH).  ZeroMQ's PUSH hands each message to exactly one connected PULL peer
(round robin), so every datagram is sent once, by one worker.  Delivery is at most
once: a datagram queued to a worker that dies is lost, and the LISP exchange it
belongs to retransmits.

Message: pairs of frames, ``[meta, payload, meta, payload, ...]`` (one pair per
datagram; a producer may batch many datagrams into one message); ``meta`` is msgpack
``[version, dst_addr, dst_port, src_addr or nil]`` (addresses as text), ``payload``
the UDP payload as is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import AsyncIterator, Sequence

import msgpack
import zmq

from bus.aio import AsyncSocket
from bus.counters import RoleCounters
from bus.endpoints import Endpoints

SENDQ_VERSION = 1


class SendqError(ValueError):
    """A send-queue message that cannot be read."""


@dataclass(frozen=True, slots=True)
class Datagram:
    dst_addr: str
    dst_port: int
    payload: bytes
    src_addr: str | None = None   # which local RLOC to send from; None = any


def encode(d: Datagram) -> list[bytes]:
    return [msgpack.packb([SENDQ_VERSION, d.dst_addr, d.dst_port, d.src_addr]), d.payload]


def decode(frames: Sequence[bytes]) -> Datagram:
    if len(frames) != 2:
        raise SendqError(f"expected 2 frames, got {len(frames)}")
    return _decode_pair(frames[0], frames[1])


def decode_many(frames: Sequence[bytes]) -> list[Datagram]:
    """Every datagram of a (batched) message."""
    if not frames or len(frames) % 2:
        raise SendqError(f"expected pairs of frames, got {len(frames)}")
    return [_decode_pair(frames[i], frames[i + 1]) for i in range(0, len(frames), 2)]


def _decode_pair(meta_frame: bytes, payload: bytes) -> Datagram:
    try:
        meta = msgpack.unpackb(meta_frame, raw=False)
    except Exception as exc:
        raise SendqError(f"meta: bad msgpack ({type(exc).__name__})") from None
    if not isinstance(meta, list) or len(meta) < 4 or not isinstance(meta[0], int):
        raise SendqError("meta: expected [version, dst_addr, dst_port, src_addr]")
    _v, dst, port, src = meta[:4]
    if not isinstance(dst, str) or isinstance(port, bool) or not isinstance(port, int) \
            or not 0 < port < 65536 or not (src is None or isinstance(src, str)):
        raise SendqError("meta: bad address or port")
    return Datagram(dst, port, bytes(payload), src)


class SendQueue:
    """``send(...)`` enqueues (any role); ``recv()`` / ``async for`` pull (workers).

    Sockets are made on first use, so a role that never sends holds none.
    """

    def __init__(self, zctx: zmq.Context, endpoints: Endpoints, counters: RoleCounters, *,
                 hwm: int = 10_000) -> None:
        self._zctx = zctx
        self._endpoints = endpoints
        self._counters = counters
        self._hwm = hwm
        self._push: zmq.Socket | None = None
        self._pull: AsyncSocket | None = None
        self._ready: deque[Datagram] = deque()

    def send(self, dst_addr: str, dst_port: int, payload: bytes,
             src_addr: str | None = None) -> bool:
        """Queue one datagram to be sent once from port 4342.  Never blocks: when the
        queue is full (no worker pulling) it counts ``dropped.sendq-full``, returns False."""
        return self.send_many([Datagram(dst_addr, dst_port, bytes(payload), src_addr)])

    def send_many(self, datagrams: Sequence[Datagram]) -> bool:
        """Queue datagrams as one message (one worker sends them all)."""
        if not datagrams:
            return True
        if self._push is None:
            s = self._zctx.socket(zmq.PUSH)
            s.setsockopt(zmq.SNDHWM, self._hwm)
            s.setsockopt(zmq.LINGER, 500)
            self._endpoints.connect(s, self._endpoints.sendq_in)
            self._push = s
        frames: list[bytes] = []
        for d in datagrams:
            frames += encode(d)
        try:
            self._push.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            self._counters.drop("sendq-full", f"{len(datagrams)} datagram(s), e.g. to {datagrams[0].dst_addr}")
            return False
        self._counters.inc("sendq.queued", len(datagrams))
        return True

    async def recv(self) -> Datagram:
        """The next datagram for this worker to send (malformed ones are dropped)."""
        if self._pull is None:
            s = self._zctx.socket(zmq.PULL)
            s.setsockopt(zmq.RCVHWM, self._hwm)
            s.setsockopt(zmq.LINGER, 0)
            self._endpoints.connect(s, self._endpoints.sendq_out)
            self._pull = AsyncSocket(s)
        while not self._ready:
            frames = await self._pull.recv_multipart()
            try:
                self._ready.extend(decode_many(frames))
            except SendqError as exc:
                self._counters.drop("bad-sendq", str(exc))
        return self._ready.popleft()

    def __aiter__(self) -> AsyncIterator[Datagram]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Datagram]:
        while True:
            yield await self.recv()

    def close(self) -> None:
        if self._push is not None:
            self._push.close()
            self._push = None
        if self._pull is not None:
            self._pull.close(0)
            self._pull = None
