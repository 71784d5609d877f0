"""The send queue: datagrams other roles need sent from UDP port 4342.

Only the map_resolver workers own port 4342, and there are several of them, so
the queue is PUSH/PULL through a broker in the ``bus`` process: producers connect
PUSH to ``sendq-in`` (the bus's PULL), workers connect PULL to ``sendq-out`` (the
bus's PUSH).  ZeroMQ's PUSH hands each message to exactly one connected PULL peer
(round robin), so every datagram is sent once, by one worker.  Delivery is at most
once: a datagram queued to a worker that dies is lost, and the LISP exchange it
belongs to retransmits.

Message, one of two forms:

- packed (what :meth:`SendQueue.send_many` sends): ONE frame, msgpack ``[2, [dst_addr,
  dst_port, src_addr or nil, payload, dst_addr, ...]]``, four items per datagram.  A
  shard's group commit queues up to 1,024 Map-Notifies at once: as pairs of frames
  that was 2,048 ZeroMQ frames, each costing ~3 us to send and again to receive in
  Python (issue 10, bench/README.md 2f); one frame costs almost nothing per datagram;
- pairs of frames, ``[meta, payload, meta, payload, ...]`` (one pair per datagram);
  ``meta`` is msgpack ``[1, dst_addr, dst_port, src_addr or nil]`` (addresses as
  text), ``payload`` the UDP payload as is (:func:`encode`; still read).

A node across hosts (docs/bus-protocol.md section 7) routes by ``src_addr``: a
datagram must leave from the host that owns its source address (a Map-Notify from
the address the Map-Register reached, an ETR's Map-Reply from the ETR's RLOC), or
the peer refuses it.  There a satellite's workers pull with a DEALER that says
``[b"ready", msgpack [host, [addr, ...]]]`` when it connects and every second, and
the bus host's bridge (:mod:`bus.tcpbridge`) splits each message by source address
with :func:`split_by_source`: its own addresses (and ``nil``) to its own workers,
a satellite's to that satellite's workers, each datagram still sent once.
"""

from __future__ import annotations

from collections import deque
from typing import AsyncIterator, NamedTuple, Sequence

import msgpack
import zmq

from bus.aio import AsyncSocket
from bus.counters import RoleCounters
from bus.endpoints import Endpoints

SENDQ_VERSION = 1
PACKED_VERSION = 2      # the one-frame form


class SendqError(ValueError):
    """A send-queue message that cannot be read."""


class Datagram(NamedTuple):
    """One datagram to send (a named tuple: built for every Map-Notify, cheaply)."""
    dst_addr: str
    dst_port: int
    payload: bytes
    src_addr: str | None = None   # which local RLOC to send from; None = any


_packb = msgpack.Packer(use_bin_type=True).pack    # one Packer, not one per call
_METAS: dict = {}      # (dst, port, src) -> its meta frame: a registrant's Map-Notifies repeat it


def encode(d: Datagram) -> list[bytes]:
    if type(d.dst_port) is not int:      # (1.0 == 1 as a key, not as bytes)
        return [_packb([SENDQ_VERSION, d.dst_addr, d.dst_port, d.src_addr]), d.payload]
    k = (d.dst_addr, d.dst_port, d.src_addr)
    meta = _METAS.get(k)
    if meta is None:
        meta = _packb([SENDQ_VERSION, d.dst_addr, d.dst_port, d.src_addr])
        if len(_METAS) >= 4096:
            _METAS.clear()
        _METAS[k] = meta
    return [meta, d.payload]


def encode_packed(datagrams: Sequence[Datagram]) -> list[bytes]:
    """Datagrams as one message of the packed form: one frame."""
    flat: list = []
    for d in datagrams:
        flat += (d.dst_addr, d.dst_port, d.src_addr, d.payload)
    return [_packb([PACKED_VERSION, flat])]


def decode(frames: Sequence[bytes]) -> Datagram:
    if len(frames) == 1:
        got = decode_many(frames)
        if len(got) == 1:
            return got[0]
        raise SendqError(f"expected 1 datagram, got {len(got)}")
    if len(frames) != 2:
        raise SendqError(f"expected 2 frames, got {len(frames)}")
    return _decode_pair(frames[0], frames[1])


def decode_many(frames: Sequence[bytes]) -> list[Datagram]:
    """Every datagram of a (batched) message, of either form."""
    if len(frames) == 1:
        flat = _packed_items(frames[0])
        return [_datagram(flat[i], flat[i + 1], flat[i + 3], flat[i + 2]) for i in range(0, len(flat), 4)]
    if not frames or len(frames) % 2:
        raise SendqError(f"expected pairs of frames, got {len(frames)}")
    return [_decode_pair(frames[i], frames[i + 1]) for i in range(0, len(frames), 2)]


def count(frames: Sequence[bytes]) -> int:
    """How many datagrams a message of either form holds (for counters)."""
    if len(frames) == 1:
        try:
            return len(_packed_items(frames[0])) // 4
        except SendqError:
            return 0
    return len(frames) // 2


def _packed_items(frame: bytes) -> list:
    """The flat item list of a packed frame (four per datagram, not yet checked)."""
    try:
        msg = msgpack.unpackb(frame, raw=False)
    except Exception as exc:
        raise SendqError(f"packed: bad msgpack ({type(exc).__name__})") from None
    if not isinstance(msg, list) or len(msg) != 2 or msg[0] != PACKED_VERSION or type(msg[0]) is not int \
            or not isinstance(msg[1], list) or len(msg[1]) % 4:
        raise SendqError("packed: expected [2, [dst_addr, dst_port, src_addr, payload, ...]]")
    return msg[1]


def _datagram(dst, port, payload, src) -> Datagram:
    if not isinstance(dst, str) or isinstance(port, bool) or not isinstance(port, int) \
            or not 0 < port < 65536 or not (src is None or isinstance(src, str)) \
            or not isinstance(payload, bytes):
        raise SendqError("bad address, port or payload")
    return Datagram(dst, port, payload, src)


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


def split_by_source(frames: Sequence[bytes], remote: "dict[str, str]") -> "dict[str | None, list[bytes]]":
    """A message's pairs grouped by the host that must send them: ``remote`` maps a
    satellite's source address to its host; every other datagram (no source address,
    or one of this host's) goes under ``None``.  Order is kept within each group; each
    group is a message of the form the message had."""
    if len(frames) == 1:
        flat = _packed_items(frames[0])
        quads: dict[str | None, list] = {}
        for i in range(0, len(flat), 4):
            src = flat[i + 2]
            host = remote.get(src) if isinstance(src, str) else None
            quads.setdefault(host, []).extend(flat[i:i + 4])
        if len(quads) == 1:
            return {next(iter(quads)): list(frames)}
        return {host: [_packb([PACKED_VERSION, q])] for host, q in quads.items()}
    if not frames or len(frames) % 2:
        raise SendqError(f"expected pairs of frames, got {len(frames)}")
    out: dict[str | None, list[bytes]] = {}
    unpack = msgpack.unpackb
    for i in range(0, len(frames), 2):
        try:
            meta = unpack(frames[i], raw=False)
            src = meta[3] if isinstance(meta, list) and len(meta) >= 4 else None
        except Exception:
            raise SendqError("meta: bad msgpack") from None
        host = remote.get(src) if isinstance(src, str) else None
        out.setdefault(host, []).extend((frames[i], frames[i + 1]))
    return out


READY = b"ready"


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
        self._hello: bytes | None = None      # a satellite worker's [host, addrs]

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
        try:
            self._push.send(encode_packed(datagrams)[0], zmq.NOBLOCK)
        except zmq.Again:
            self._counters.drop("sendq-full", f"{len(datagrams)} datagram(s), e.g. to {datagrams[0].dst_addr}")
            return False
        self._counters.inc("sendq.queued", len(datagrams))
        return True

    def serve_from(self, host: str, addrs: Sequence[str]) -> None:
        """Say which source addresses this worker sends from (call before ``recv``).
        On one host nothing needs it; a satellite's worker then pulls with a DEALER
        and tells the bus host, which routes to it only the datagrams of ``addrs``."""
        if getattr(self._endpoints, "routed_sendq", False):
            self._hello = msgpack.packb([host, list(addrs)])

    def hello(self) -> None:
        """Repeat the satellite worker's ``ready`` (every second: a restarted bus host
        learns its workers again within one period)."""
        if self._hello is not None and self._pull is not None:
            try:
                self._pull.sock.send_multipart([READY, self._hello], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass      # not connected yet: the next period tries again
            self._pull.poke()     # the send may have taken the descriptor's edge from recv

    async def recv(self) -> Datagram:
        """The next datagram for this worker to send (malformed ones are dropped)."""
        if not self._ready:
            await self._fill()
        return self._ready.popleft()

    async def recv_many(self) -> list[Datagram]:
        """Every datagram ready for this worker, in order: at least one (those of
        the next message when none is left over)."""
        if not self._ready:
            await self._fill()
        out = list(self._ready)
        self._ready.clear()
        return out

    async def _fill(self) -> None:
        if self._pull is None:
            s = self._zctx.socket(zmq.DEALER if self._hello is not None else zmq.PULL)
            s.setsockopt(zmq.RCVHWM, self._hwm)
            s.setsockopt(zmq.LINGER, 0)
            self._endpoints.connect(s, self._endpoints.sendq_out)
            self._pull = AsyncSocket(s)
            self.hello()
        while not self._ready:
            frames = await self._pull.recv_multipart()
            try:
                self._ready.extend(decode_many(frames))
            except SendqError as exc:
                self._counters.drop("bad-sendq", str(exc))

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
