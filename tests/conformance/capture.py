"""Synthetic captures for the Wireshark conformance tests.

Each LISP payload is put in an outer IPv4 or IPv6 + UDP header of its own (built
here, independently of the codec under test, with correct checksums) and written
to a classic libpcap file with link type "raw IP", the simplest framing tshark
reads.  The ports are the ones a real sender would use, because Wireshark picks
the dissector by UDP port: control messages to/from 4342, data packets to 4341.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

CONTROL_PORT = 4342
DATA_PORT = 4341
CLIENT_PORT = 50123           # an ephemeral port standing for the requester's
DATA_SOURCE_PORT = 50124      # RFC 9300: the ITR chooses it (flow hash)

# RFC 5737 / RFC 3849 documentation addresses
V4 = (IPv4Address("198.51.100.7"), IPv4Address("203.0.113.9"))
V6 = (IPv6Address("2001:db8:a::7"), IPv6Address("2001:db8:b::9"))

PCAP_MAGIC = 0xA1B2C3D4       # microsecond timestamps, native fields written little-endian
DLT_RAW = 101


def checksum16(data: bytes) -> int:
    """Internet checksum (RFC 1071) of ``data``."""
    if len(data) & 1:
        data = data + b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def ports(payload: bytes, kind: str) -> tuple[int, int]:
    """(source, destination) UDP ports for a payload of ``kind`` ("control" or "data")."""
    if kind == "data":
        return DATA_SOURCE_PORT, DATA_PORT
    if kind != "control":
        raise ValueError(f"kind must be 'control' or 'data', not {kind!r}")
    mtype = payload[0] >> 4 if payload else 0
    if mtype in (4, 5):                                   # Map-Notify(-Ack): 4342 both ways
        return CONTROL_PORT, CONTROL_PORT
    if mtype in (2, 6) or (mtype == 7 and payload[0] & 0x08):   # replies, Info-Reply (R bit)
        return CONTROL_PORT, CLIENT_PORT
    return CLIENT_PORT, CONTROL_PORT                      # requests, registers, ECM


def udp_packet(payload: bytes, sport: int, dport: int, ipv6: bool = False) -> bytes:
    """An IPv4 or IPv6 packet carrying ``payload`` in UDP, checksums filled in."""
    src, dst = V6 if ipv6 else V4
    length = 8 + len(payload)
    if ipv6:
        pseudo = src.packed + dst.packed + struct.pack("!IxxxB", length, 17)
    else:
        pseudo = src.packed + dst.packed + struct.pack("!xBH", 17, length)
    csum = checksum16(pseudo + struct.pack("!HHHH", sport, dport, length, 0) + payload)
    udp = struct.pack("!HHHH", sport, dport, length, csum or 0xFFFF)
    if ipv6:
        ip = struct.pack("!IHBB", 6 << 28, length, 17, 64) + src.packed + dst.packed
    else:
        head = struct.pack("!BBHHHBB", 0x45, 0, 20 + length, 1, 0x4000, 64, 17)
        ip = head + struct.pack("!H", 0) + src.packed + dst.packed
        ip = head + struct.pack("!H", checksum16(ip)) + src.packed + dst.packed
    return ip + udp + payload


def write_pcap(path: str, packets: list[bytes]) -> None:
    """A libpcap file holding ``packets`` (raw IP), one second apart."""
    out = [struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, DLT_RAW)]
    for n, pkt in enumerate(packets):
        out.append(struct.pack("<IIII", 1_600_000_000 + n, 0, len(pkt), len(pkt)))
        out.append(pkt)
    with open(path, "wb") as f:
        f.write(b"".join(out))
