"""Read UDP datagrams out of capture files (pcap and pcapng), without libpcap.

Pure code: bytes in, records out; no sockets, clocks or files.  Used by
``decent decode --pcap`` and by tests that check what went on the wire.

Supported containers: classic pcap (either byte order; microsecond, nanosecond
and the "modified" Kuznetzov magic) and pcapng (any number of sections in either
byte order; per-interface link type, ``if_tsresol`` and ``if_tsoffset``;
Enhanced, Simple and obsolete Packet Blocks; every other block is skipped).

Supported link types: Ethernet (1, with up to two 802.1Q/802.1ad tags), raw IP
(101, 12, 14, and 228/229), Linux cooked capture SLL (113) and SLL2 (276), and
BSD null/loopback (0 host-order and 108 network-order 4-byte AF header).
Packets of other link types are counted (they keep frame numbers right) but
yield nothing.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Iterator

LISP_CONTROL_PORT = 4342

__all__ = ["PcapError", "UdpDatagram", "iter_udp", "iter_lisp_control", "LISP_CONTROL_PORT"]


class PcapError(ValueError):
    """The bytes are not a capture file we can read (wrong magic, cut-off header, corrupt block)."""


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """One UDP datagram seen in a capture.

    ``index`` is the 1-based packet number in the file (Wireshark's frame number;
    packets that are not UDP still use up a number).  ``ts`` is seconds since the
    epoch (0.0 when the container records no time, as for pcapng Simple Packet
    Blocks).  ``payload`` is the UDP payload as delimited by the UDP length field,
    clamped to what was captured.
    """

    index: int
    ts: float
    src: str
    dst: str
    sport: int
    dport: int
    payload: bytes


# --- link layer -------------------------------------------------------------

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
_MAX_VLAN_TAGS = 2  # 802.1Q, or 802.1ad outer + 802.1Q inner ("QinQ")

# BSD address-family values seen in null/loopback headers for IPv4 and IPv6
# (AF_INET6 differs per OS: Linux 10, NetBSD/OpenBSD 24, FreeBSD 28, Darwin 30).
_AF_INET = {2}
_AF_INET6 = {10, 24, 28, 30}

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
_RAW_LINKTYPES = {LINKTYPE_RAW, 12, 14}  # 12/14: DLT_RAW as written by some BSDs
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229


def _l3_from_ethertype(ethertype: int, frame: memoryview, off: int) -> tuple[int, memoryview] | None:
    """Follow VLAN tags from ``ethertype`` (already read) to an IP packet; (version, bytes)."""
    tags = 0
    while ethertype in _ETH_VLAN_TAGS:
        if tags == _MAX_VLAN_TAGS or off + 4 > len(frame):
            return None
        ethertype = struct.unpack_from("!H", frame, off + 2)[0]
        off += 4
        tags += 1
    if ethertype == _ETH_IPV4:
        return 4, frame[off:]
    if ethertype == _ETH_IPV6:
        return 6, frame[off:]
    return None


def _l3(linktype: int, frame: memoryview) -> tuple[int, memoryview] | None:
    """Strip the link-layer header; return (IP version, IP packet) or None if not IP."""
    n = len(frame)
    if linktype == LINKTYPE_ETHERNET:
        if n < 14:
            return None
        return _l3_from_ethertype(struct.unpack_from("!H", frame, 12)[0], frame, 14)
    if linktype in _RAW_LINKTYPES:
        if n < 1:
            return None
        version = frame[0] >> 4
        return (version, frame) if version in (4, 6) else None
    if linktype == LINKTYPE_IPV4:
        return 4, frame
    if linktype == LINKTYPE_IPV6:
        return 6, frame
    if linktype == LINKTYPE_LINUX_SLL:
        if n < 16:
            return None
        return _l3_from_ethertype(struct.unpack_from("!H", frame, 14)[0], frame, 16)
    if linktype == LINKTYPE_LINUX_SLL2:
        if n < 20:
            return None
        return _l3_from_ethertype(struct.unpack_from("!H", frame, 0)[0], frame, 20)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if n < 4:
            return None
        # DLT_NULL is in the capturing host's byte order, which the file does not
        # record; AF values are small, so whichever order gives one is the right one.
        fam = struct.unpack_from("!I", frame, 0)[0]
        if linktype == LINKTYPE_NULL and fam > 0xFFFF:
            fam = struct.unpack_from("<I", frame, 0)[0]
        if fam in _AF_INET:
            return 4, frame[4:]
        if fam in _AF_INET6:
            return 6, frame[4:]
        return None
    return None


# --- network and transport layers ------------------------------------------

_IP_PROTO_UDP = 17
_V6_EXT_SKIP = {0, 43, 60}  # hop-by-hop, routing, destination options: (len+1)*8 bytes
_V6_FRAGMENT = 44
_V6_AH = 51  # authentication header: (len+2)*4 bytes
_MAX_V6_EXT = 16  # bound the header walk; real packets carry a handful at most


def _udp_from_ip(version: int, pkt: memoryview) -> tuple[str, str, memoryview] | None:
    """Return (src, dst, UDP segment) for the first fragment of a UDP packet, else None."""
    n = len(pkt)
    if version == 4:
        if n < 20 or pkt[0] >> 4 != 4:
            return None
        ihl = (pkt[0] & 0x0F) * 4
        total = struct.unpack_from("!H", pkt, 2)[0]
        if ihl < 20 or total < ihl or ihl > n:
            return None
        # a non-first fragment carries no UDP header; its bytes are not a datagram
        if struct.unpack_from("!H", pkt, 6)[0] & 0x1FFF:
            return None
        if pkt[9] != _IP_PROTO_UDP:
            return None
        src = str(ipaddress.IPv4Address(bytes(pkt[12:16])))
        dst = str(ipaddress.IPv4Address(bytes(pkt[16:20])))
        # total length drops Ethernet padding (and any FCS) after the IP packet
        return src, dst, pkt[ihl:min(total, n)]
    if version == 6:
        if n < 40 or pkt[0] >> 4 != 6:
            return None
        plen = struct.unpack_from("!H", pkt, 4)[0]
        nxt = pkt[6]
        src = str(ipaddress.IPv6Address(bytes(pkt[8:24])))
        dst = str(ipaddress.IPv6Address(bytes(pkt[24:40])))
        # payload length 0 means a jumbogram (length in hop-by-hop): use what was captured
        end = n if plen == 0 else min(40 + plen, n)
        off = 40
        for _ in range(_MAX_V6_EXT):
            if nxt == _IP_PROTO_UDP:
                return src, dst, pkt[off:end]
            if off + 8 > end:
                return None
            if nxt in _V6_EXT_SKIP:
                hlen = (pkt[off + 1] + 1) * 8
            elif nxt == _V6_FRAGMENT:
                if struct.unpack_from("!H", pkt, off + 2)[0] >> 3:
                    return None  # not the first fragment
                hlen = 8
            elif nxt == _V6_AH:
                hlen = (pkt[off + 1] + 2) * 4
            else:
                return None  # no next header (59), ESP, TCP, ICMPv6, ...
            nxt = pkt[off]
            off += hlen
        return None
    return None


def _datagram(index: int, ts: float, linktype: int, frame: memoryview) -> UdpDatagram | None:
    l3 = _l3(linktype, frame)
    if l3 is None:
        return None
    found = _udp_from_ip(*l3)
    if found is None:
        return None
    src, dst, seg = found
    if len(seg) < 8:
        return None
    sport, dport, ulen = struct.unpack_from("!HHH", seg, 0)
    if ulen < 8:
        return None  # malformed (or an IPv6 jumbogram, which LISP never sends)
    return UdpDatagram(index, ts, src, dst, sport, dport, bytes(seg[8:min(ulen, len(seg))]))


# --- classic pcap -----------------------------------------------------------

# magic as read in little-endian order -> (byte order, ticks per second, record header size)
_PCAP_MAGICS = {
    0xA1B2C3D4: ("<", 1_000_000, 16),
    0xD4C3B2A1: (">", 1_000_000, 16),
    0xA1B23C4D: ("<", 1_000_000_000, 16),
    0x4D3CB2A1: (">", 1_000_000_000, 16),
    0xA1B2CD34: ("<", 1_000_000, 24),  # Kuznetzov "modified pcap": 8 more bytes per record
    0x34CDB2A1: (">", 1_000_000, 24),
}
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BOM = 0x1A2B3C4D


def _iter_pcap(mv: memoryview) -> Iterator[UdpDatagram]:
    order, tps, rec_len = _PCAP_MAGICS[struct.unpack_from("<I", mv, 0)[0]]
    # the upper bits of the link-type field carry FCS information; the type is the low 16
    linktype = struct.unpack_from(order + "I", mv, 20)[0] & 0xFFFF
    off, index, n = 24, 0, len(mv)
    while off + rec_len <= n:
        sec, frac, incl, _orig = struct.unpack_from(order + "IIII", mv, off)
        off += rec_len
        if incl > n - off:
            return  # truncated last packet (capture cut short): skip it
        index += 1
        frame = mv[off:off + incl]
        off += incl
        d = _datagram(index, sec + frac / tps, linktype, frame)
        if d is not None:
            yield d


# --- pcapng -----------------------------------------------------------------

_BT_IDB, _BT_PB, _BT_SPB, _BT_EPB = 1, 2, 3, 6
_OPT_IF_TSRESOL, _OPT_IF_TSOFFSET = 9, 14


@dataclass(slots=True)
class _Iface:
    linktype: int
    snaplen: int
    tps: int = 1_000_000  # ticks per second (if_tsresol default: microseconds)
    tsoffset: int = 0


def _parse_idb(body: memoryview, order: str) -> _Iface:
    if len(body) < 8:
        raise PcapError("pcapng: interface description block too short")
    linktype, _rsv, snaplen = struct.unpack_from(order + "HHI", body, 0)
    iface = _Iface(linktype, snaplen)
    off = 8
    while off + 4 <= len(body):
        code, olen = struct.unpack_from(order + "HH", body, off)
        off += 4
        if code == 0 or off + olen > len(body):
            break  # opt_endofopt, or an option running past the block: stop reading options
        val = body[off:off + olen]
        if code == _OPT_IF_TSRESOL and olen >= 1:
            r = val[0]
            # MSB clear: 10^-r seconds per tick; set: 2^-(r & 0x7f).  Cap the exponent
            # so a hostile value cannot build an enormous integer.
            iface.tps = 2 ** min(r & 0x7F, 64) if r & 0x80 else 10 ** min(r, 30)
        elif code == _OPT_IF_TSOFFSET and olen >= 8:
            iface.tsoffset = struct.unpack_from(order + "q", val, 0)[0]
        off += (olen + 3) & ~3
    return iface


def _iter_pcapng(mv: memoryview) -> Iterator[UdpDatagram]:
    n, off, index = len(mv), 0, 0
    order = "<"
    ifaces: list[_Iface] = []
    while off + 12 <= n:
        btype_raw = struct.unpack_from("<I", mv, off)[0]
        if btype_raw == _PCAPNG_SHB:
            # a new section may switch byte order; its BOM tells us which
            bom = struct.unpack_from("<I", mv, off + 8)[0]
            if bom == _PCAPNG_BOM:
                order = "<"
            elif bom == 0x4D3C2B1A:
                order = ">"
            else:
                raise PcapError(f"pcapng: bad byte-order magic in section header at offset {off}")
            ifaces = []
        btype, blen = struct.unpack_from(order + "II", mv, off)
        if blen > n - off:
            return  # truncated final block: skip it
        if blen < 12 or blen % 4:
            raise PcapError(f"pcapng: corrupt block length {blen} at offset {off}")
        if struct.unpack_from(order + "I", mv, off + blen - 4)[0] != blen:
            raise PcapError(f"pcapng: block at offset {off} has mismatched trailing length")
        body = mv[off + 8:off + blen - 4]
        off += blen
        if btype == _BT_IDB:
            ifaces.append(_parse_idb(body, order))
            continue
        if btype == _BT_EPB and len(body) >= 20:
            if_id, ts_hi, ts_lo, caplen, _orig = struct.unpack_from(order + "IIIII", body, 0)
            data_off = 20
        elif btype == _BT_PB and len(body) >= 20:
            if_id, _drops, ts_hi, ts_lo, caplen, _orig = struct.unpack_from(order + "HHIIII", body, 0)
            data_off = 20
        elif btype == _BT_SPB and len(body) >= 4:
            orig = struct.unpack_from(order + "I", body, 0)[0]
            if_id, ts_hi, ts_lo, data_off = 0, 0, 0, 4
            caplen = orig
            if ifaces and ifaces[0].snaplen:
                caplen = min(caplen, ifaces[0].snaplen)
        else:
            continue  # name resolution, statistics, custom, ... blocks
        index += 1
        if if_id >= len(ifaces):
            continue  # packet on an undeclared interface: link type unknown
        iface = ifaces[if_id]
        frame = body[data_off:data_off + min(caplen, len(body) - data_off)]
        ts = 0.0
        if btype != _BT_SPB:
            ts = ((ts_hi << 32) | ts_lo) / iface.tps + iface.tsoffset
        d = _datagram(index, ts, iface.linktype, frame)
        if d is not None:
            yield d


# --- public API -------------------------------------------------------------


def iter_udp(data: bytes) -> Iterator[UdpDatagram]:
    """Yield every UDP datagram in a pcap or pcapng capture held in ``data``.

    The file header is checked before this returns: bytes that are not a capture,
    or a capture cut off inside its file header, raise :class:`PcapError` at once.
    A final packet cut short is skipped silently (captures killed mid-write end
    like that); a pcapng block with an impossible length raises :class:`PcapError`
    from the iterator.  Non-first IP fragments and non-UDP packets are skipped.
    """
    mv = memoryview(data)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    if len(mv) < 4:
        raise PcapError("not a capture file: too short to hold a pcap or pcapng header")
    magic = struct.unpack_from("<I", mv, 0)[0]
    if magic in _PCAP_MAGICS:
        if len(mv) < 24:
            raise PcapError("truncated pcap file: file header is cut short")
        return _iter_pcap(mv)
    if magic == _PCAPNG_SHB:
        if len(mv) < 28:
            raise PcapError("truncated pcapng file: section header block is cut short")
        if struct.unpack_from("<I", mv, 8)[0] not in (_PCAPNG_BOM, 0x4D3C2B1A):
            raise PcapError("not a pcapng file: bad byte-order magic in section header")
        return _iter_pcapng(mv)
    raise PcapError(f"not a pcap or pcapng file (magic 0x{bytes(mv[:4]).hex()})")


def iter_lisp_control(data: bytes) -> Iterator[UdpDatagram]:
    """The datagrams of :func:`iter_udp` with either UDP port 4342 (lisp-control).

    Either port, because NATs rewrite the other one [RFC 9301 §5].
    Raises :class:`PcapError` as :func:`iter_udp` does, also eagerly.
    """
    udp = iter_udp(data)
    return (d for d in udp if LISP_CONTROL_PORT in (d.sport, d.dport))
