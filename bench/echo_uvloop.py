"""A bare uvloop UDP "echo" of LISP-sized messages: the practical Python limit.

Binds ADDR:PORT (SO_REUSEPORT, like the map_resolver workers) and answers every
datagram with a reply of --reply-size bytes carrying the request's 8 bytes at
--nonce-off as its nonce (bytes 4..11, as in a Map-Reply), so bench/c/lispload
matches it like a Map-Reply.  Prints ``ready`` once bound; exits after --seconds
or on SIGTERM.  One process; start several for several "workers".

    .venv/bin/python bench/echo_uvloop.py --addr 127.0.62.2 --nonce-off 36 --reply-size 40
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket

import uvloop


class Echo(asyncio.DatagramProtocol):
    def __init__(self, off: int, size: int) -> None:
        self.off = off
        self.head = b"\x20\x00\x00\x01"
        self.tail = bytes(size - 12)
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        o = self.off
        self.transport.sendto(self.head + data[o:o + 8] + self.tail, addr)


async def main(args) -> None:
    loop = asyncio.get_running_loop()
    fam = socket.AF_INET6 if ":" in args.addr else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((args.addr, args.port))
    tr, _ = await loop.create_datagram_endpoint(lambda: Echo(args.nonce_off, args.reply_size),
                                                sock=sock)
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.call_later(args.seconds, done.set)
    print("ready", flush=True)
    await done.wait()
    tr.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--addr", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4342)
    ap.add_argument("--nonce-off", type=int, default=36)
    ap.add_argument("--reply-size", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=120, help="exit after this long")
    uvloop.run(main(ap.parse_args()))
