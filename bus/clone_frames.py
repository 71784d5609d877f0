"""The Clone streams' message types and framing (bus/clone.py describes the protocol).

Shared by :mod:`bus.clone_writer` and :mod:`bus.clone_reader`: the ``kv.*`` message
type names, msgpack packing, a decoded key made hashable again, and the snapshot
chunk laid out from entries already packed (the writer's) or split without decoding
its values (the reader's).
"""

from __future__ import annotations

from typing import Any, Hashable

import msgpack

SNAPSHOT_VERSION = 1
UPDATED = "kv.updated"
DELETED = "kv.deleted"
BATCH = "kv.batch"         # several changes in one message (CloneWriter.apply)
HEARTBEAT = "kv.heartbeat"
GOODBYE = "kv.goodbye"     # the writer is stopping (header seq = its last): see replica


def freeze(key: Any) -> Hashable:
    """A decoded key made hashable again (msgpack arrays come back as lists)."""
    if isinstance(key, list):
        return tuple(freeze(k) for k in key)
    return key


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(frame: bytes) -> Any:
    return msgpack.unpackb(frame, raw=False, strict_map_key=False)


def _packed_chunk(req: Any, entries: list[bytes]) -> bytes:
    """``_pack({"req": req, "items": [[k, v], ...]})`` from entries already packed as
    ``[k, v]`` (the same bytes; msgpack arrays are a header then their elements)."""
    n = len(entries)
    head = bytes([0x90 | n]) if n < 16 else (b"\xdc" + n.to_bytes(2, "big") if n < 1 << 16
                                             else b"\xdd" + n.to_bytes(4, "big"))
    return b"".join([b"\x82", _pack("req"), _pack(req), _pack("items"), head, *entries])


_SPLIT_ERRORS = (ValueError, TypeError, msgpack.UnpackException)   # (OutOfData, ExtraData, FormatError: ValueError)


def _split_chunk(frame: bytes) -> tuple[Any, list] | None:
    """A snapshot chunk ``{"req": r, "items": [[k, v], ...]}`` read as ``(r, [(k,
    v's msgpack bytes), ...])``: the values are not decoded (a store-mode replica
    inserts them encoded, common.machines.compactload).  None when the chunk is laid
    out otherwise or does not decode (the caller then decodes it whole)."""
    up = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(frame), 1))
    try:
        up.feed(frame)
        if up.read_map_header() != 2 or up.unpack() != "req":
            return None
        req = up.unpack()
        if up.unpack() != "items":
            return None
        rah, unpack, tell, skip = up.read_array_header, up.unpack, up.tell, up.skip
        out = []
        for _ in range(rah()):
            if rah() != 2:
                return None
            k = unpack()
            if type(k) is not str:
                k = freeze(k)
                hash(k)
            at = tell()
            skip()
            out.append((k, frame[at:tell()]))
        if tell() != len(frame):
            return None
    except _SPLIT_ERRORS:
        return None
    return req, out
