"""The LISP data path (RFC 9300) as pure decisions: encapsulate, decapsulate, ICMP.

Theory of operation
-------------------
:class:`DataPath` holds the map-cache the data path uses (a :class:`Mapping` per
EID-prefix, longest match per instance ID and family, fed by the shell from the
``itr`` role's Clone stream) and the node's database mappings.

``encapsulate(packet, iid, now)`` takes one IP packet read from the EID side (a TUN
of instance ``iid``) and returns a list of actions for the shell:

* :class:`Encap` - send ``segment`` (UDP header + LISP header + inner packet) to
  ``rloc`` port 4341 from the node's RLOC.  The LISP header has N (a 24-bit nonce),
  L (locator-status bits of the node's own RLOCs) and I (the instance ID) as
  configured; the outer TTL (``ttl``) is the inner one's; the UDP source port is a
  hash of the inner 5-tuple in 49152-65535
  (RFC 9300 5.3), the UDP checksum is zero (RFC 9300 5.3, RFC 6935).  The RLOC is
  the reachable one of the best (lowest) priority below 255, chosen by weight with
  the flow hash among equal priorities (the same flow always takes the same RLOC).
* :class:`Native` - forward the packet unencapsulated (a negative entry with the
  natively-forward or no-action action, RFC 9301 8.1).
* :class:`Icmp` - write ``packet`` (an ICMP error for the host) back to the EID
  side: unreachable for a negative entry whose action drops, fragmentation-needed
  (IPv4, DF set) or packet-too-big (IPv6) when the encapsulated packet would exceed
  ``underlay_mtu``.  Non-DF IPv4 packets that do not fit are fragmented (inner
  fragmentation) so no outer packet exceeds the MTU.
* :class:`Miss` - no entry covers the destination: ask for ``eid`` (at most once
  per ``miss_interval`` per destination); the packet is queued (``queue_per_eid``
  packets per destination, ``queue_total`` overall; beyond that it is dropped) and
  :meth:`release` hands the queued packets back once a mapping covers them.

``decapsulate(payload)`` takes the UDP payload of a packet received on 4341 and
returns ``(iid, inner packet)`` when the inner destination is inside one of the
node's database mappings of that instance ID, else None with the reason counted
in ``counters`` (``drop.<reason>``).  Instance ID 0xFFFFFF (LISP-Decent
mapping-system traffic) is not this machine's: :data:`MAPPING_SYSTEM` is returned
so the shell hands it to push-mode replication.

Counters: ``encap.packets``/``encap.bytes`` (inner bytes), ``decap.packets``/
``decap.bytes``, ``native.packets``, ``icmp.sent``, ``miss``, ``fragmented``,
``drop.<reason>``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import pytricia

from common.wire.addr import Eid
from common.wire.datahdr import DECENT_IID
from common.wire.ipudp import inet_checksum
from common.wire.records import (ACT_DROP_AUTH_FAILURE, ACT_DROP_NO_REASON, ACT_DROP_POLICY_DENIED,
                                 ACT_NATIVELY_FORWARD, ACT_NO_ACTION, ACT_SEND_MAP_REQUEST)

DATA_PORT = 4341
LISP_HDR = 8
UDP_HDR = 8
OUTER_IP = {4: 20, 6: 40}
MAPPING_SYSTEM = "mapping-system"
_V6_MIN_MTU = 1280
_UDP = struct.Struct("!HHHH")
_HDR = struct.Struct("!II")


@dataclass(frozen=True, slots=True)
class Rloc:
    address: object              # IPv4Address | IPv6Address
    priority: int = 1
    weight: int = 100
    reachable: bool = True


@dataclass(frozen=True, slots=True)
class Mapping:
    """A map-cache entry as the data path uses it; ``expires`` on the caller's clock."""

    eid: Eid
    rlocs: tuple
    action: int = ACT_NO_ACTION
    expires: float = float("inf")

    @property
    def negative(self) -> bool:
        return not self.rlocs


@dataclass(frozen=True, slots=True)
class Encap:
    rloc: object
    sport: int
    segment: bytes               # UDP header + LISP header + inner packet
    dest: str = ""               # ``rloc`` as text, for the socket call
    ttl: int = 64                # the outer TTL / hop limit: the inner one's (RFC 9300 5.3)


@dataclass(frozen=True, slots=True)
class Native:
    packet: bytes
    iid: int = 0


@dataclass(frozen=True, slots=True)
class Icmp:
    packet: bytes                # to be written back to the EID side (the TUN of ``iid``)
    reason: str
    iid: int = 0


@dataclass(frozen=True, slots=True)
class Miss:
    eid: Eid                     # the host EID to ask a Map-Request for


_DROP_ACTIONS = {ACT_DROP_NO_REASON: "drop-no-reason", ACT_DROP_POLICY_DENIED: "drop-policy-denied",
                 ACT_DROP_AUTH_FAILURE: "drop-auth-failure"}


# -- packet helpers ------------------------------------------------------------------

def inner_fields(packet: bytes):
    """(version, src bytes, dst bytes, proto, sport, dport, header length, df) or None."""
    if len(packet) < 20:
        return None
    v = packet[0] >> 4
    if v == 4:
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or len(packet) < ihl:
            return None
        proto = packet[9]
        frag = (packet[6] << 8) | packet[7]
        ports = (0, 0)
        if proto in (6, 17, 132) and not frag & 0x3FFF and len(packet) >= ihl + 4:
            ports = struct.unpack_from("!HH", packet, ihl)
        return 4, packet[12:16], packet[16:20], proto, ports[0], ports[1], ihl, bool(frag & 0x4000)
    if v == 6:
        if len(packet) < 40:
            return None
        proto = packet[6]
        ports = (0, 0)
        if proto in (6, 17, 132) and len(packet) >= 44:
            ports = struct.unpack_from("!HH", packet, 40)
        return 6, packet[8:24], packet[24:40], proto, ports[0], ports[1], 40, True
    return None


def flow_hash(src: bytes, dst: bytes, proto: int, sport: int, dport: int) -> int:
    """A 32-bit hash of the inner 5-tuple (stable across processes and hosts)."""
    return zlib.crc32(b"%b%b%c%c%c%c%c" % (src, dst, proto, sport >> 8, sport & 255, dport >> 8, dport & 255))


def source_port(h: int) -> int:
    """The outer UDP source port for flow hash ``h``: 49152-65535."""
    return 0xC000 | ((h ^ (h >> 16)) & 0x3FFF)


def choose_rloc(rlocs, h: int, families=(4, 6)):
    """The RLOC for a flow: the best (lowest) priority below 255 among reachable
    RLOCs of a usable family; by weight among equal priorities (all weights 0: equal
    shares), picked with the flow hash ``h``.  None if no RLOC is usable."""
    usable = [r for r in rlocs if r.reachable and r.priority < 255 and r.address.version in families]
    if not usable:
        return None
    best = min(r.priority for r in usable)
    tier = [r for r in usable if r.priority == best]
    total = sum(r.weight for r in tier)
    if total == 0:
        return tier[h % len(tier)]
    point = h % total
    for r in tier:
        if point < r.weight:
            return r
        point -= r.weight
    return tier[-1]  # unreachable: the weights sum to total


def _fix_ipv4_checksum(hdr: bytearray) -> bytes:
    hdr[10:12] = b"\x00\x00"
    hdr[10:12] = struct.pack("!H", inet_checksum(bytes(hdr)))
    return bytes(hdr)


def fragment_ipv4(packet: bytes, max_len: int) -> list[bytes]:
    """Fragments of an IPv4 packet (DF clear) no longer than ``max_len`` bytes each."""
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    payload = packet[ihl:total]
    frag = struct.unpack_from("!H", packet, 6)[0]
    base_off, more = frag & 0x1FFF, bool(frag & 0x2000)
    step = ((max_len - ihl) // 8) * 8
    if step <= 0:
        return []
    out = []
    for off in range(0, len(payload), step):
        chunk = payload[off:off + step]
        last = off + step >= len(payload)
        hdr = bytearray(packet[:ihl])
        struct.pack_into("!H", hdr, 2, ihl + len(chunk))
        flags = (base_off + off // 8) | (0 if last and not more else 0x2000)
        struct.pack_into("!H", hdr, 6, flags)
        out.append(_fix_ipv4_checksum(hdr) + chunk)
    return out


def icmp_error(packet: bytes, kind: str, mtu: int = 0) -> bytes | None:
    """An ICMP error about ``packet`` for its sender, from the packet's destination
    (so it passes reverse-path checks on the EID-side interface it arrives from).

    ``kind``: ``unreachable`` (host unreachable), ``prohibited`` (administratively
    prohibited), ``too-big`` (IPv4 fragmentation needed / IPv6 packet too big,
    carrying ``mtu``).  None for a packet that must not be answered (an ICMP error
    itself, a non-first fragment, a multicast source)."""
    f = inner_fields(packet)
    if f is None:
        return None
    v, src, dst, proto = f[0], f[1], f[2], f[3]
    if v == 4:
        frag = struct.unpack_from("!H", packet, 6)[0]
        if frag & 0x1FFF or src[0] >= 224 or src == b"\x00\x00\x00\x00":
            return None
        if proto == 1 and len(packet) > f[6] and packet[f[6]] not in (0, 8, 13, 15, 17):
            return None  # no error about an ICMP error
        code = {"unreachable": 1, "prohibited": 13, "too-big": 4}[kind]
        quote = packet[:min(len(packet), 548 - 28)]
        body = struct.pack("!BBHHH", 3, code, 0, 0, mtu if kind == "too-big" else 0) + quote
        body = body[:2] + struct.pack("!H", inet_checksum(body)) + body[4:]
        hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(body), 0, 0, 64, 1, 0,
                                    dst, src))
        return _fix_ipv4_checksum(hdr) + body
    if src[0] == 0xFF or src == bytes(16):
        return None
    if proto == 58 and len(packet) > 40 and packet[40] < 128:
        return None
    if kind == "too-big":
        head = struct.pack("!BBHI", 2, 0, 0, mtu)
    else:
        head = struct.pack("!BBHI", 1, 0 if kind == "unreachable" else 1, 0, 0)
    quote = packet[:_V6_MIN_MTU - 48]
    body = head + quote
    pseudo = dst + src + struct.pack("!I3xB", len(body), 58)
    body = body[:2] + struct.pack("!H", inet_checksum(pseudo + body)) + body[4:]
    return struct.pack("!IHBB", 6 << 28, len(body), 58, 64) + dst + src + body


# -- the map-cache the data path reads ------------------------------------------------

class DataTable:
    """Longest match per (instance ID, family) over :class:`Mapping` entries."""

    def __init__(self) -> None:
        self._trees: dict[tuple, pytricia.PyTricia] = {}
        self._all: dict[Eid, Mapping] = {}

    def __len__(self) -> int:
        return len(self._all)

    def entries(self) -> list[Mapping]:
        return list(self._all.values())

    def _tree(self, iid: int, version: int, create: bool = False):
        t = self._trees.get((iid, version))
        if t is None and create:
            t = self._trees[(iid, version)] = pytricia.PyTricia(32 if version == 4 else 128)
        return t

    def set(self, m: Mapping) -> None:
        if m.eid.group is not None or not isinstance(m.eid.address, (IPv4Address, IPv6Address)):
            raise ValueError("the data path caches IPv4 and IPv6 prefixes only")
        self.delete(m.eid)
        self._tree(m.eid.iid, m.eid.address.version, True)[f"{m.eid.address}/{m.eid.length}"] = m
        self._all[m.eid] = m

    def delete(self, eid: Eid) -> bool:
        if self._all.pop(eid, None) is None:
            return False
        t = self._tree(eid.iid, eid.address.version)
        t.delete(f"{eid.address}/{eid.length}")
        return True

    def lookup(self, iid: int, dst: bytes, now: float) -> Mapping | None:
        """The longest unexpired mapping covering ``dst`` (packed address) in ``iid``."""
        t = self._tree(iid, 4 if len(dst) == 4 else 6)
        if t is None:
            return None
        key = t.get_key(dst)
        while key is not None:
            m = t[key]
            if m.expires > now:
                return m
            key = t.parent(key)
        return None


# -- the machine ---------------------------------------------------------------------

class DataPath:
    """Encapsulation and decapsulation decisions for one node.

    ``own_rlocs``: the node's RLOCs (the outer families it can send).
    ``database``: the node's database-mapping EIDs (what it decapsulates for).
    ``underlay_mtu``: the largest outer packet.  ``nonce_bit``/``lsb_bit``/
    ``iid_bit``: the N, L and I bits.  ``nonce_seed``: where the 24-bit nonce
    counter starts.
    """

    def __init__(self, *, own_rlocs, database=(), underlay_mtu: int = 1500, nonce_bit: bool = True,
                 lsb_bit: bool = True, iid_bit: bool = True, nonce_seed: int = 0,
                 miss_interval: float = 0.5, queue_per_eid: int = 4, queue_total: int = 256,
                 native_forward: bool = True) -> None:
        self.families = tuple(sorted({a.version for a in own_rlocs}))
        if not self.families:
            raise ValueError("the data path needs at least one RLOC")
        self.underlay_mtu = underlay_mtu
        self.nonce_bit, self.lsb_bit, self.iid_bit = nonce_bit, lsb_bit, iid_bit
        self.lsb = (1 << min(8, len(tuple(own_rlocs)))) - 1
        self._nonce = nonce_seed & 0xFFFFFF
        self.miss_interval = miss_interval
        self.queue_per_eid, self.queue_total = queue_per_eid, queue_total
        self.native_forward = native_forward
        self.table = DataTable()
        self._db = DataTable()
        for eid in database:
            self._db.set(Mapping(eid, (), ACT_NO_ACTION))
        self._fast: dict[tuple, tuple] = {}   # (iid, dst) -> (mapping, tier, total weight)
        self._last_miss: dict[tuple, float] = {}
        self._queue: dict[tuple, list[bytes]] = {}
        self._queued = 0
        self.counters: dict[str, int] = {}

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def drop(self, reason: str) -> list:
        self._count(f"drop.{reason}")
        return []

    # -- map-cache ---------------------------------------------------------------
    def set_mapping(self, m: Mapping) -> None:
        self.table.set(m)
        self._fast.clear()

    def delete_mapping(self, eid: Eid) -> None:
        self.table.delete(eid)
        self._fast.clear()

    def _tier(self, m: Mapping) -> tuple:
        """The usable RLOCs of the best priority as (Rloc, text) pairs, and their total weight."""
        usable = [r for r in m.rlocs if r.reachable and r.priority < 255 and r.address.version in self.families]
        if not usable:
            return (), 0
        best = min(r.priority for r in usable)
        tier = tuple((r, str(r.address)) for r in usable if r.priority == best)
        return tier, sum(r.weight for r, _ in tier)

    # -- ITR side ----------------------------------------------------------------
    def _header(self, iid: int) -> bytes:
        flags = 0
        mid = 0
        if self.nonce_bit:
            self._nonce = (self._nonce + 1) & 0xFFFFFF
            flags |= 0x80
            mid = self._nonce
        if self.lsb_bit:
            flags |= 0x40
        if self.iid_bit:
            flags |= 0x08
            w1 = ((iid & 0xFFFFFF) << 8) | (self.lsb if self.lsb_bit else 0)
        else:
            w1 = self.lsb if self.lsb_bit else 0
        return _HDR.pack((flags << 24) | mid, w1)

    def encapsulate(self, packet: bytes, iid: int, now: float) -> list:
        """The actions for one packet from the EID side of instance ``iid``."""
        f = inner_fields(packet)
        if f is None:
            return self.drop("inner-malformed")
        v, src, dst, proto, sport, dport, _ihl, df = f
        if v == 4 and dst[0] >= 224 or v == 6 and dst[0] == 0xFF:
            return self.drop("multicast")
        fast = self._fast.get((iid, dst))
        if fast is None or fast[0].expires <= now:
            m = self.table.lookup(iid, dst, now)
            if m is None:
                return self._miss(packet, iid, v, dst, now)
            if len(self._fast) > 65536:
                self._fast.clear()
            fast = self._fast[(iid, dst)] = (m,) + self._tier(m)
        m, tier, total = fast
        if m.negative:
            return self._negative(packet, m, iid)
        if not tier:
            self._count("drop.no-usable-rloc")
            return self._icmp(packet, "unreachable", iid=iid)
        h = flow_hash(src, dst, proto, sport, dport)
        if len(tier) == 1:
            rloc, dest = tier[0]
        elif total == 0:
            rloc, dest = tier[h % len(tier)]
        else:  # by weight, the flow hash picking the point (as choose_rloc does)
            point = h % total
            for rloc, dest in tier:
                if point < rloc.weight:
                    break
                point -= rloc.weight
        outer = OUTER_IP[rloc.address.version] + UDP_HDR + LISP_HDR
        if outer + len(packet) > self.underlay_mtu:
            if v == 6 or df:
                self._count("drop.too-big")
                mtu = self.underlay_mtu - outer
                return self._icmp(packet, "too-big", max(mtu, _V6_MIN_MTU) if v == 6 else mtu, iid)
            frags = fragment_ipv4(packet, self.underlay_mtu - outer)
            if not frags:
                return self.drop("cannot-fragment")
            self._count("fragmented")
            return [self._encap(p, iid, rloc, dest, h) for p in frags]
        return [self._encap(packet, iid, rloc, dest, h)]

    def _encap(self, packet: bytes, iid: int, rloc: Rloc, dest: str, h: int) -> Encap:
        sport = 0xC000 | ((h ^ (h >> 16)) & 0x3FFF)   # source_port(h)
        seg = _UDP.pack(sport, DATA_PORT, UDP_HDR + LISP_HDR + len(packet), 0) + self._header(iid) + packet
        c = self.counters
        c["encap.packets"] = c.get("encap.packets", 0) + 1
        c["encap.bytes"] = c.get("encap.bytes", 0) + len(packet)
        return Encap(rloc.address, sport, seg, dest, packet[8] if packet[0] >> 4 == 4 else packet[7])

    def _negative(self, packet: bytes, m: Mapping, iid: int) -> list:
        if m.action in (ACT_NATIVELY_FORWARD, ACT_NO_ACTION, ACT_SEND_MAP_REQUEST):
            if not self.native_forward:  # nowhere to forward natively: unreachable
                self._count("drop.native-no-interface")
                return self._icmp(packet, "unreachable", iid=iid)
            self._count("native.packets")
            return [Native(packet, iid)]
        self._count(f"drop.negative-{_DROP_ACTIONS.get(m.action, 'action-%d' % m.action)}")
        return self._icmp(packet, "prohibited" if m.action == ACT_DROP_POLICY_DENIED else "unreachable",
                          iid=iid)

    def _icmp(self, packet: bytes, kind: str, mtu: int = 0, iid: int = 0) -> list:
        err = icmp_error(packet, kind, mtu)
        if err is None:
            return []
        self._count("icmp.sent")
        return [Icmp(err, kind, iid)]

    def _miss(self, packet: bytes, iid: int, v: int, dst: bytes, now: float) -> list:
        key = (iid, dst)
        self._count("miss")
        q = self._queue.get(key)
        if q is None:
            q = self._queue[key] = []
        if len(q) < self.queue_per_eid and self._queued < self.queue_total:
            q.append(packet)
            self._queued += 1
        else:
            self._count("drop.miss-queue-full")
        last = self._last_miss.get(key)
        if last is not None and now - last < self.miss_interval:
            return []
        self._last_miss[key] = now
        if len(self._last_miss) > 4096:
            self._last_miss = {k: t for k, t in self._last_miss.items()
                               if now - t < self.miss_interval}
        addr = IPv4Address(dst) if v == 4 else IPv6Address(dst)
        return [Miss(Eid(iid, addr, 32 if v == 4 else 128))]

    def release(self, now: float) -> list:
        """Actions for the queued packets a mapping now covers (call after
        :meth:`set_mapping`); packets queued longer than the table stays empty
        for them are dropped by :meth:`expire_queue`."""
        out: list = []
        for key in list(self._queue):
            iid, dst = key
            if self.table.lookup(iid, dst, now) is None:
                continue
            packets = self._queue.pop(key)
            self._queued -= len(packets)
            self._last_miss.pop(key, None)
            for p in packets:
                out.extend(self.encapsulate(p, iid, now))
        return out

    def expire_queue(self) -> int:
        """Drop every queued packet (the shell calls it when resolution is given up
        or periodically); returns how many were dropped."""
        n = self._queued
        if n:
            self._count("drop.miss-unresolved", n)
        self._queue.clear()
        self._queued = 0
        return n

    # -- ETR side ----------------------------------------------------------------
    def decapsulate(self, payload: bytes):
        """``(iid, inner packet)``, :data:`MAPPING_SYSTEM`, or None (dropped, counted)."""
        if len(payload) < LISP_HDR + 20:
            return self._nodecap("truncated")
        flags = payload[0]
        iid = 0
        if flags & 0x08:
            iid = (payload[4] << 16) | (payload[5] << 8) | payload[6]
            if iid == DECENT_IID:
                return MAPPING_SYSTEM
        inner = payload[LISP_HDR:]
        v = inner[0] >> 4
        if v == 4:
            total = (inner[2] << 8) | inner[3]
            if total < 20 or total > len(inner) or (inner[0] & 0x0F) < 5:
                return self._nodecap("inner-malformed")
            dst = inner[16:20]
            inner = inner[:total]
        elif v == 6:
            if len(inner) < 40:
                return self._nodecap("inner-malformed")
            plen = (inner[4] << 8) | inner[5]
            if 40 + plen > len(inner):
                return self._nodecap("inner-malformed")
            dst = inner[24:40]
            inner = inner[:40 + plen]
        else:
            return self._nodecap("inner-version")
        if self._db.lookup(iid, dst, 0.0) is None:
            return self._nodecap("not-our-eid")
        self._count("decap.packets")
        self._count("decap.bytes", len(inner))
        return iid, bytes(inner)

    def _nodecap(self, reason: str):
        self._count(f"drop.decap-{reason}")
        return None


__all__ = ["DataPath", "DataTable", "Mapping", "Rloc", "Encap", "Native", "Icmp", "Miss",
           "MAPPING_SYSTEM", "choose_rloc", "flow_hash", "source_port", "fragment_ipv4",
           "icmp_error", "inner_fields"]
