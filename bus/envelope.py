"""The bus envelope: ``[topic, header, body]``, header and body msgpack-encoded apart.

The topic frame is UTF-8 and routes (ZeroMQ prefix filters); the header says what
the message is, who sent it and where it sits in a stream, so a router or a logger
reads it without decoding the body.  The full protocol is written down in
``docs/bus-protocol.md``; its version is :data:`BUS_PROTOCOL_VERSION` and a test
keeps the two equal.

Receivers ignore header fields they do not know, and message types they do not
know.  Anything that cannot be read as an envelope raises :class:`EnvelopeError`
and nothing else; the caller counts it and drops the message.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any, NamedTuple, Sequence

import msgpack

BUS_PROTOCOL_VERSION = 1

# "family.event", lowercase; families and events may contain '-' and '_'
_TYPE = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+\Z")

# One Packer reused: cheaper than msgpack.packb per call.  Not thread-safe; the bus
# client is used from one event loop thread per process.
_pack = msgpack.Packer(use_bin_type=True).pack


class EnvelopeError(ValueError):
    """A bus message that is not a valid envelope (wrong frames, bad msgpack, bad header)."""


class Source(NamedTuple):
    """Who published: role name, instance number and the process's session id."""
    role: str
    instance: int
    session: str

    def __str__(self) -> str:
        return f"{self.role}:{self.instance}"


class Header(NamedTuple):
    """An envelope header.  ``id`` is unique per message (``<session>:<n>``).

    A named tuple: immutable, and cheap to build on every received message."""
    type: str
    id: str
    src: Source
    ts: float                  # wall clock, seconds since the epoch
    schema: int = 1            # version of the body's schema, per type
    stream: str | None = None  # set on sequenced streams (the Clone streams)
    seq: int | None = None
    parent: str | None = None  # the id of the message that caused this one
    v: int = BUS_PROTOCOL_VERSION

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "v": self.v, "type": self.type, "schema": self.schema, "id": self.id,
            "src": {"role": self.src.role, "instance": self.src.instance,
                    "session": self.src.session},
            "ts": self.ts,
        }
        if self.stream is not None:
            d["stream"] = self.stream
        if self.seq is not None:
            d["seq"] = self.seq
        if self.parent is not None:
            d["parent"] = self.parent
        return d


def check_type(type_: str) -> str:
    """Validate a message type name (``family.event``); returns it."""
    if not isinstance(type_, str) or not _TYPE.match(type_):
        raise ValueError(f"bad message type {type_!r}: want 'family.event', lowercase")
    return type_


class Stamper:
    """Makes headers for one publisher: fills in source, id, timestamp."""

    def __init__(self, role: str, instance: int, session: str) -> None:
        self.src = Source(role, instance, session)
        self._n = itertools.count(1)

    def header(self, type_: str, *, schema: int = 1, stream: str | None = None,
               seq: int | None = None, parent: str | None = None,
               ts: float | None = None) -> Header:
        return Header(type_, f"{self.src.session}:{next(self._n)}", self.src,
                      time.time() if ts is None else ts, schema, stream, seq, parent)


def encode(topic: str, header: Header, body: Any) -> list[bytes]:
    """The three frames of a message.  ``body`` must be msgpack-able."""
    return [topic.encode(), _pack(header.to_wire()), _pack(body)]


def decode_header(frames: Sequence[bytes]) -> tuple[str, Header]:
    """Topic and header, without touching the body."""
    if len(frames) != 3:
        raise EnvelopeError(f"expected 3 frames, got {len(frames)}")
    try:
        topic = bytes(frames[0]).decode()
    except UnicodeDecodeError:
        raise EnvelopeError("topic is not UTF-8") from None
    raw = _unpack(frames[1], "header")
    if not isinstance(raw, dict):
        raise EnvelopeError("header is not a map")
    return topic, _header(raw)


def decode(frames: Sequence[bytes]) -> tuple[str, Header, Any]:
    """Topic, header and body of a received message; raises only EnvelopeError."""
    topic, header = decode_header(frames)
    return topic, header, _unpack(frames[2], "body")


def _unpack(frame: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise EnvelopeError(f"{what}: bad msgpack ({type(exc).__name__}: {exc})") from None


def _field(raw: dict, name: str, kind: type | tuple[type, ...], required: bool = True) -> Any:
    v = raw.get(name)
    if v is None:
        if required:
            raise EnvelopeError(f"header.{name} missing")
        return None
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise EnvelopeError(f"header.{name}: unexpected {type(v).__name__}")
    return v


def _header(raw: dict) -> Header:
    # fast path for the common, well-formed header; anything odd takes the careful path
    get = raw.get
    v, type_, id_, src, ts = get("v"), get("type"), get("id"), get("src"), get("ts")
    schema, stream, seq, parent = get("schema"), get("stream"), get("seq"), get("parent")
    if (type(v) is int and v >= 1 and type(type_) is str and type(id_) is str
            and type(src) is dict and type(ts) in (float, int)
            and (schema is None or type(schema) is int)
            and (stream is None or type(stream) is str)
            and (seq is None or type(seq) is int)
            and (parent is None or type(parent) is str)):
        role, inst, session = src.get("role"), src.get("instance"), src.get("session")
        if type(role) is str and type(inst) is int and type(session) is str:
            return Header(type_, id_, Source(role, inst, session), float(ts),
                          1 if schema is None else schema, stream, seq, parent, v)
    return _header_checked(raw)


def _header_checked(raw: dict) -> Header:
    v = _field(raw, "v", int)
    if v < 1:
        raise EnvelopeError(f"header.v: {v} is not a protocol version")
    src = _field(raw, "src", dict)
    try:
        source = Source(_field(src, "role", str), _field(src, "instance", int),
                        _field(src, "session", str))
    except EnvelopeError as exc:
        raise EnvelopeError(str(exc).replace("header.", "header.src.", 1)) from None
    schema = _field(raw, "schema", int, required=False)
    return Header(
        type=_field(raw, "type", str),
        id=_field(raw, "id", str),
        src=source,
        ts=float(_field(raw, "ts", (int, float))),
        schema=1 if schema is None else schema,
        stream=_field(raw, "stream", str, required=False),
        seq=_field(raw, "seq", int, required=False),
        parent=_field(raw, "parent", str, required=False),
        v=v,
    )
