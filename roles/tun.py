"""The LISP data path's I/O for the ``dataplane`` role: TUN devices, raw sockets, bus.

Thin shell over :class:`common.machines.datapath.DataPath`:

* one TUN per ``[[dataplane.interface]]`` (``IFF_TUN | IFF_NO_PI``, made persistent
  so a restarted ``dataplane`` finds its interface and routes in place; ``decent
  down`` deletes it), brought up with MTU ``underlay_mtu`` and the routes to
  remote EID space pointed at it (``ip route replace``, in ``table`` if set);
* packets read from a TUN are encapsulated and sent from the node's RLOC through
  a raw UDP socket (so each flow gets its own source port, and the outer TTL is the
  inner one's, set on the socket when it changes; a BPF filter keeps the raw socket from receiving
  anything); natively forwarded packets leave through
  ``native_interface`` on a raw IP socket; ICMP errors are written back to the TUN;
* LISP data packets received on UDP 4341 (:meth:`DataPathShell.on_datagram`, called
  by the role for every datagram) are decapsulated and written to the TUN of their
  instance ID; mapping-system traffic (IID 0xFFFFFF) is left to push replication;
* the map-cache is a replica of the ``itr`` role's Clone stream ``mapcache``; a miss
  is published as ``dp.miss`` for the ``itr`` to resolve.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import os
import secrets
import socket
import struct
import subprocess
import time
from ipaddress import ip_address

from bus import topics
from bus.clone import CloneReader
from common.machines.datapath import MAPPING_SYSTEM, DataPath, Encap, Icmp, Mapping, Miss, Native, Rloc
from common.wire.eidtext import EidSpecError, format_eid, parse_eidspec
from common.wire.records import ACTION_NAMES

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
SO_ATTACH_FILTER = 26
UDP_NO_CHECK6_RX = 102
READ_BATCH = 64


def open_tun(name: str) -> int:
    """Open (creating if needed) the persistent TUN ``name``; a non-blocking fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    except OSError:
        os.close(fd)
        raise
    return fd


def ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def configure_tun(iface, mtu: int) -> None:
    ip("link", "set", "dev", iface.tun, "up", "mtu", str(mtu))
    for net in iface.routes:
        args = ["-6" if net.version == 6 else "-4", "route", "replace", str(net), "dev", iface.tun]
        if iface.table:
            args += ["table", str(iface.table)]
        ip(*args)


def delete_tun(name: str) -> bool:
    """Remove a TUN device (``decent down``); False if it was not there."""
    r = subprocess.run(["ip", "link", "del", "dev", name], capture_output=True, timeout=10)
    return r.returncode == 0


def _drop_all_filter(sock: socket.socket) -> None:
    """A classic BPF program "return 0": the raw send socket receives nothing."""
    insn = struct.pack("HBBI", 0x06, 0, 0, 0)  # BPF_RET | BPF_K, 0
    buf = ctypes.create_string_buffer(insn)
    prog = struct.pack("HL", 1, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


def mapping_from(key, value) -> Mapping | None:
    """A Clone-stream entry of the ``itr`` as a data-path mapping (None: not IP)."""
    try:
        eid = parse_eidspec(key)
        if eid.group is not None or not eid.is_ip:
            return None
        rlocs = tuple(Rloc(ip_address(a), int(p), int(w), bool(r)) for a, p, w, r in value["rlocs"])
        return Mapping(eid, rlocs, int(value["action"]), float(value["expires_at"]))
    except (KeyError, TypeError, ValueError, EidSpecError):
        return None


class DataPathShell:
    def __init__(self, ctx, dpc) -> None:
        self.ctx, self.dpc = ctx, dpc
        cfg = ctx.cfg
        self.dp = DataPath(own_rlocs=cfg.node.rlocs, database=[m.eid for m in cfg.database_mappings],
                           underlay_mtu=dpc.underlay_mtu, nonce_bit=dpc.nonce, lsb_bit=dpc.locator_status,
                           iid_bit=dpc.instance_id, nonce_seed=secrets.randbits(24),
                           queue_per_eid=dpc.miss_queue,
                           native_forward=dpc.native_interface is not None)
        self.fds: dict[int, int] = {}        # iid -> TUN fd
        self.raw: dict[int, socket.socket] = {}
        self.native: dict[int, socket.socket] = {}
        self.reader: CloneReader | None = None
        self._queue_seen = 0
        self._ttl: dict = {}   # raw socket -> the outer TTL / hop limit it is set to

    # -- set-up --------------------------------------------------------------------
    def start(self, data_sockets: dict) -> None:
        loop = asyncio.get_running_loop()
        for iface in self.dpc.interfaces:
            fd = open_tun(iface.tun)
            configure_tun(iface, self.dpc.underlay_mtu)
            self.fds[iface.iid] = fd
            loop.add_reader(fd, self._on_tun, fd, iface.iid)
            self.ctx.log.info("TUN %s: instance ID %d, routes %s", iface.tun, iface.iid,
                              ", ".join(map(str, iface.routes)) or "none")
        for r in self.ctx.cfg.node.rlocs:
            fam = socket.AF_INET6 if r.version == 6 else socket.AF_INET
            if r.version in self.raw:
                continue
            s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_UDP)
            s.setblocking(False)
            s.bind((str(r), 0))
            _drop_all_filter(s)
            self.raw[r.version] = s
        for version, sock in data_sockets.items():
            if version == 6:  # accept zero UDP checksums over IPv6 (RFC 6935), as we send them
                sock.setsockopt(socket.IPPROTO_UDP, UDP_NO_CHECK6_RX, 1)
        if self.dpc.native_interface:
            for fam, v in ((socket.AF_INET, 4), (socket.AF_INET6, 6)):
                s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_RAW)
                s.setblocking(False)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.dpc.native_interface.encode())
                _drop_all_filter(s)
                self.native[v] = s
        self.reader = CloneReader(self.ctx, topics.MAPCACHE_STREAM, on_set=self._on_set,
                                  on_delete=self._on_delete)
        self.reader.start()
        self.ctx.bus.subscribe(topics.DP_CACHE_QUERY, self._on_query)
        self.ctx.every(1.0, self._tick, name="datapath-tick")

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in self.fds.values():
            loop.remove_reader(fd)
            os.close(fd)
        for s in list(self.raw.values()) + list(self.native.values()):
            s.close()
        if self.reader is not None:
            self.reader.close()

    # -- the map-cache replica -------------------------------------------------------
    def _on_set(self, key, value) -> None:
        m = mapping_from(key, value)
        if m is None:
            self.ctx.counters.drop("mapcache-entry-unusable", str(key))
            return
        self.dp.set_mapping(m)
        self._act(self.dp.release(time.time()))

    def _on_delete(self, key) -> None:
        try:
            self.dp.delete_mapping(parse_eidspec(key))
        except (EidSpecError, TypeError, ValueError, AttributeError):
            pass

    def _on_query(self, _t, _h, body) -> None:
        if not (isinstance(body, dict) and isinstance(body.get("reply"), str)):
            return
        now = time.time()
        rows = []
        for m in sorted(self.dp.table.entries(), key=lambda m: format_eid(m.eid)):
            if m.expires <= now:
                continue
            v = self.reader.data.get(format_eid(m.eid), {}) if self.reader else {}
            rows.append({"eid": format_eid(m.eid),
                         "rlocs": [{"address": str(r.address), "priority": r.priority,
                                    "weight": r.weight, "reachable": r.reachable} for r in m.rlocs],
                         "ttl": v.get("ttl"), "expires_in": round(m.expires - now, 3),
                         "negative": m.negative, "action": ACTION_NAMES.get(m.action, str(m.action)),
                         "source": "dataplane"})
        self.ctx.bus.publish(body["reply"], "dp.cache-answered",
                             {"entries": rows, "in_sync": bool(self.reader and self.reader.in_sync)})

    def _tick(self) -> None:
        # packets queued for a miss at two ticks in a row are given up
        if self._queue_seen and self.dp._queued:
            self.dp.expire_queue()
        self._queue_seen = self.dp._queued
        self._publish_counters()

    def _publish_counters(self) -> None:
        c = self.ctx.counters
        for k, v in self.dp.counters.items():
            c.set("dropped." + k[5:] if k.startswith("drop.") else k, v)
        c.set("mapcache.entries", len(self.dp.table))

    # -- packets ---------------------------------------------------------------------
    def _on_tun(self, fd: int, iid: int) -> None:
        now = time.time()
        for _ in range(READ_BATCH):
            try:
                pkt = os.read(fd, 65535)
            except BlockingIOError:
                return
            except OSError as exc:
                self.ctx.counters.drop("tun-read", repr(exc))
                return
            self._act(self.dp.encapsulate(pkt, iid, now))

    def _act(self, actions) -> None:
        for a in actions:
            if type(a) is Encap:
                sock = self.raw.get(4 if "." in a.dest else 6)
                try:
                    if self._ttl.get(sock) != a.ttl:   # set only when it changes (one flow: once)
                        self._set_ttl(sock, a.ttl)
                    sock.sendto(a.segment, (a.dest, 0))
                except (BlockingIOError, AttributeError):
                    self.dp._count("drop.send-blocked")
                except OSError as exc:
                    self.ctx.counters.drop("send-failed", f"{a.rloc}: {exc}")
            elif type(a) is Miss:
                self.ctx.bus.publish(topics.DP_MISS, "dp.miss", {"eid": format_eid(a.eid)})
            elif type(a) is Icmp:
                self._write(self.fds.get(a.iid), a.packet)
            elif type(a) is Native:
                v = a.packet[0] >> 4
                dst = a.packet[16:20] if v == 4 else a.packet[24:40]
                try:
                    self.native[v].sendto(a.packet, (str(ip_address(dst)), 0))
                except OSError as exc:
                    self.ctx.counters.drop("native-send-failed", repr(exc))

    def _set_ttl(self, sock: socket.socket, ttl: int) -> None:
        """The outer TTL / hop limit (RFC 9300 5.3: copied from the inner header)."""
        if sock.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl or 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl or 1)
        self._ttl[sock] = ttl

    def _write(self, fd, packet: bytes) -> None:
        if fd is None:
            self.dp._count("drop.no-interface")
            return
        try:
            os.write(fd, packet)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.ENOBUFS):
                self.dp._count("drop.tun-busy")
            else:
                self.ctx.counters.drop("tun-write", repr(exc))

    def on_datagram(self, data: bytes, addr) -> bool:
        """Handle a datagram received on 4341; False: mapping-system traffic for push mode."""
        r = self.dp.decapsulate(data)
        if r is MAPPING_SYSTEM:
            return False
        if r is not None:
            iid, inner = r
            fd = self.fds.get(iid)
            if fd is None:
                self.dp._count("drop.decap-no-interface-for-iid")
            else:
                self._write(fd, inner)
        return True
