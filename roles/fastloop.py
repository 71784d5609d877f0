"""A map_resolver worker's socket read by the C loop (roles/_fastloop.c, issue 11).

With ``[map_resolver] fast_path_c = true`` (the default) and the extension built,
a worker does not read its socket through a uvloop datagram transport: the loop
watches the socket (``loop.add_reader``) and :meth:`CLoop.readable` lets the C
``Core.drain`` read batches with ``recvmmsg``, answer from the fast path's answer
cache what :meth:`common.machines.fastpath.FastPath.handle` would answer (same
checks, same shared rate tables, same cache), and send those replies with one
``sendmmsg``.  Every other datagram goes, in its turn, to the worker's
``datagram_received`` (the Python path, unchanged); a rate-limit drop goes to the
worker's drop handling.  The counters are the Python path's (``received``,
``answered``, ``proxy-reply``/``negative-reply``, ``fastpath.answered``, the fast
path's hit statistics), plus ``fastpath.c`` (answers sent by the C loop).

:class:`SockTransport` stands in for the transport where the worker and the send
queue write: ``sendto`` on the non-blocking socket, queued (bounded) and flushed
when the socket is writable again, errors to the protocol's ``error_received``.

If the extension is not built, :func:`available` says why and the worker keeps
the uvloop transport and the Python fast path (the role logs it once).
"""

from __future__ import annotations

import collections
import errno
import os
import socket

try:
    from roles import _fastloop
    WHY_NOT = ""
except ImportError as exc:          # not built: the Python path serves
    _fastloop = None
    WHY_NOT = str(exc)

SEND_QUEUE = 4096       # datagrams a SockTransport holds while the socket is full


def available() -> bool:
    return _fastloop is not None


def required() -> bool:
    """Under CI the extension must have been built (scripts/setup.sh installs gcc)."""
    return os.environ.get("CI", "").lower() == "true"


class SockTransport:
    """The part of a datagram transport the worker uses, on a socket it owns."""

    def __init__(self, loop, sock: socket.socket, protocol) -> None:
        self.loop, self.sock, self.protocol = loop, sock, protocol
        self._queue: collections.deque = collections.deque()
        self._writing = False

    def get_extra_info(self, name: str, default=None):
        return self.sock if name == "socket" else default

    def sendto(self, data: bytes, addr) -> None:
        if self._queue:
            self._enqueue(data, addr)
            return
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._enqueue(data, addr)
        except OSError as exc:
            self.protocol.error_received(exc)

    def _enqueue(self, data: bytes, addr) -> None:
        if len(self._queue) >= SEND_QUEUE:
            self.protocol.error_received(OSError(errno.ENOBUFS, "send queue full: datagram dropped"))
            return
        self._queue.append((data, addr))
        if not self._writing:
            self._writing = True
            self.loop.add_writer(self.sock.fileno(), self._flush)

    def _flush(self) -> None:
        q = self._queue
        while q:
            data, addr = q[0]
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.protocol.error_received(exc)
            q.popleft()
        self.loop.remove_writer(self.sock.fileno())
        self._writing = False

    def close(self) -> None:
        if self._writing:
            self.loop.remove_writer(self.sock.fileno())
            self._writing = False
        self.loop.remove_reader(self.sock.fileno())    # the C loop's reader (serve)
        self.sock.close()


class CLoop:
    """One worker socket served by ``_fastloop.Core``."""

    def __init__(self, fast, six: bool, shun, worker=None, sock: socket.socket | None = None) -> None:
        """``shun``: the worker's :class:`common.machines.shun.Shun` (read only).  Without
        a worker and a socket only :meth:`handle` serves (the differential test)."""
        self.worker, self.fast, self.sock = worker, fast, sock
        self.core = _fastloop.Core(fast, six, shun._b,
                                   worker.datagram_received if worker is not None else None,
                                   self._drop, self._send, -1 if sock is None else sock.fileno())

    def handle(self, data: bytes, host: str, now: float):
        """The C decision for one datagram: None (the Python path's), ``("drop",
        reason, detail)`` or ``(destination, port, reply, what)`` as FastPath.handle."""
        self.prepare()
        try:
            return self.core.handle(data, host, now)
        finally:
            self.account()

    # the Python side of each step, kept here so that the C only reads state
    def prepare(self) -> None:
        """FastPath.handle's first step (follow a swapped or changed table) and the
        resolver's state the C reads for the next datagrams."""
        fast, res = self.fast, self.fast.res
        if res.table is not fast._table or res.table.version != fast._seen:
            fast._attach()
        self.core.flags(res.in_sync, res.local_db is not None, res.serves is not None)

    def account(self) -> dict:
        """Fold the C's counts into the worker's counters and the fast path's stats."""
        n = self.core.take_counts()
        answered = n["proxy-reply"] + n["negative-reply"]
        if n["hit"]:
            self.fast.stats["hit"] += n["hit"]
        ctx = getattr(self.worker, "ctx", None)
        c = ctx.counters if ctx is not None else None
        if c is not None and n["received"]:
            c.inc("received", n["received"])
            if answered:
                c.inc("answered", answered)
                c.inc("fastpath.answered", answered)
                c.inc("fastpath.c", answered)
                for what in ("proxy-reply", "negative-reply"):
                    if n[what]:
                        c.inc(what, n[what])
        return n

    def readable(self) -> None:
        w = self.worker
        try:
            self.prepare()
            self.core.drain()
        except OSError as exc:
            w.error_received(exc)
        except Exception as exc:                     # a bug: counted and logged, the loop goes on
            from roles.udp import handler_error
            handler_error(w.ctx.counters, exc, "C receive loop")
        finally:
            self.account()

    def _drop(self, reason: str, detail: str, host: str, port: int, now: float) -> None:
        from common.machines.resolver import Drop
        self.worker._actions((Drop(reason, detail),), (host, port), now)

    def _send(self, data: bytes, addr) -> None:
        self.worker.transport.sendto(data, addr)


def serve(loop, sock: socket.socket, worker, fast) -> tuple[SockTransport, CLoop]:
    """Serve ``sock`` for ``worker`` through the C loop: its transport, and the loop."""
    sock.setblocking(False)
    tr = SockTransport(loop, sock, worker)
    worker.connection_made(tr)
    c = CLoop(fast, sock.family == socket.AF_INET6, worker.shun, worker, sock)
    loop.add_reader(sock.fileno(), c.readable)
    return tr, c
