"""A small UDP endpoint for roles that originate control messages from their own
socket (ETR, ITR): bound to one of the node's RLOCs on an ephemeral port."""

from __future__ import annotations

import asyncio
import socket


def handler_error(counters, exc: BaseException, where: str) -> None:
    """What a role does when a handler raises on one datagram or event: count it by
    exception type, log it rate-limited (the counters' drop log), keep serving."""
    counters.drop(f"handler-error.{type(exc).__name__}", f"{where}: {exc!r}")


def guarded(fn, counters, where: str = "datagram"):
    """``fn`` wrapped so that an exception on one datagram is counted, not fatal."""
    def call(*args):
        try:
            return fn(*args)
        except Exception as exc:
            handler_error(counters, exc, where)
            return None
    return call


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, on_datagram, counters) -> None:
        self.on_datagram, self.counters = guarded(on_datagram, counters), counters

    def datagram_received(self, data: bytes, addr) -> None:
        self.counters.inc("received")
        self.on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc) -> None:
        self.counters.drop("socket-error", repr(exc))


async def open_sockets(rlocs, on_datagram, counters) -> dict:
    """One socket per address family of ``rlocs`` -> {4: transport, 6: transport}."""
    loop = asyncio.get_running_loop()
    out = {}
    for rloc in rlocs:
        if rloc.version in out:
            continue
        fam = socket.AF_INET6 if rloc.version == 6 else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        sock.bind((str(rloc), 0))
        tr, _ = await loop.create_datagram_endpoint(lambda: _Proto(on_datagram, counters), sock=sock)
        out[rloc.version] = tr
    return out


def send(transports: dict, dst: str, port: int, data: bytes, counters) -> None:
    tr = transports.get(6 if ":" in str(dst) else 4)
    if tr is None:
        counters.drop("no-socket-for-family", str(dst))
        return
    tr.sendto(data, (str(dst), port))
    counters.inc("sent")
