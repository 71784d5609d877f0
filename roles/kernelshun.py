"""Drop a flooding source in the kernel: a classic BPF socket filter (SO_ATTACH_FILTER).

When :class:`common.machines.shun.Shun` has shunned a source, dropping its datagrams
in Python still costs a read and a callback each; at a few hundred thousand per
second from one sender that is a whole core, and the socket's queue overflows,
losing legitimate datagrams that the kernel's flow hash put on the same worker.
So a worker also installs, on its own socket, a filter program that compares the
IPv4 source address with the shunned ones and drops them before they are queued.
A shun lasts ``hold`` seconds; then the filter is lifted, and a flood that goes on
empties the source's bucket again within a burst and is filtered again.

Program: ``ld [net + 12]`` (the IPv4 source, through the SKF_NET_OFF ancillary
offset), one ``jeq`` per address, ``ret #0`` (drop) or ``ret #-1`` (accept).  IPv6
sockets are left to the Python shun.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from ipaddress import IPv4Address

SO_ATTACH_FILTER, SO_DETACH_FILTER = 26, 27
SKF_NET_OFF = -0x100000
MAX_ADDRESSES = 64


def program(addresses) -> list[tuple[int, int, int, int]]:
    """The filter: (code, jt, jf, k) per instruction."""
    n = len(addresses)
    prog = [(0x20, 0, 0, (SKF_NET_OFF + 12) & 0xFFFFFFFF)]            # ld [net+12]
    for i, a in enumerate(addresses):
        prog.append((0x15, n - i, 0, int(a)))                          # jeq a -> drop
    prog.append((0x06, 0, 0, 0xFFFFFFFF))                              # ret accept
    prog.append((0x06, 0, 0, 0))                                       # ret drop
    return prog


def attach(fd: int, addresses) -> None:
    prog = program(addresses)
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in prog))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    s = socket.socket(fileno=fd)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    finally:
        s.detach()


def detach(fd: int) -> None:
    s = socket.socket(fileno=fd)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
    except OSError:
        pass                      # no filter attached
    finally:
        s.detach()


class KernelShun:
    """The shunned IPv4 sources of one socket, with their release times."""

    def __init__(self, fd: int, hold: float = 2.0) -> None:
        self.fd, self.hold = fd, hold
        self.until: dict[IPv4Address, float] = {}
        self.installs = 0
        self.error: str | None = None     # the kernel refused a filter: Python shun only

    def shun(self, addr: str, now: float) -> bool:
        """Filter ``addr`` in the kernel (False: not IPv4, or the list is full)."""
        if self.error is not None:
            return False
        try:
            a = IPv4Address(addr)
        except ValueError:
            return False
        if a in self.until:
            return True
        if len(self.until) >= MAX_ADDRESSES:
            return False
        self.until[a] = now + self.hold
        self._install()
        return True

    def tick(self, now: float) -> int:
        """Release the shuns whose time is up; how many were released."""
        done = [a for a, t in self.until.items() if t <= now]
        for a in done:
            del self.until[a]
        if done:
            self._install()
        return len(done)

    def _install(self) -> None:
        try:
            if self.until:
                attach(self.fd, sorted(self.until))
                self.installs += 1
            else:
                detach(self.fd)
        except OSError as exc:
            self.error = repr(exc)
            self.until.clear()
