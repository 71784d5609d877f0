"""The bus envelope, topics and endpoints (no sockets)."""

from __future__ import annotations

import pathlib
import re

import msgpack
import pytest

from bus import envelope, topics
from bus.endpoints import IPC_PATH_MAX, EndpointError, Endpoints
from bus.envelope import BUS_PROTOCOL_VERSION, EnvelopeError, Header, Source, Stamper
from bus.sendq import Datagram, SendqError
from bus import sendq

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "bus-protocol.md"


def test_doc_version_equals_code_version():
    m = re.search(r"^Bus protocol version: (\d+)\s*$", DOC.read_text(), re.M)
    assert m, "docs/bus-protocol.md must have a line 'Bus protocol version: N'"
    assert int(m.group(1)) == BUS_PROTOCOL_VERSION


# ------------------------------------------------------------------ envelope

def stamper() -> Stamper:
    return Stamper("map_server", 2, "0123456789abcdef")


def test_roundtrip_minimal():
    h = stamper().header("registration.added", ts=1234.5)
    frames = envelope.encode("ms.2.delta", h, {"eid": "10.0.0.0/8", "rlocs": [b"\x01"]})
    assert len(frames) == 3 and frames[0] == b"ms.2.delta"
    topic, h2, body = envelope.decode(frames)
    assert topic == "ms.2.delta"
    assert h2 == h
    assert body == {"eid": "10.0.0.0/8", "rlocs": [b"\x01"]}
    assert h2.src == Source("map_server", 2, "0123456789abcdef")
    assert h2.v == BUS_PROTOCOL_VERSION and h2.schema == 1
    assert h2.stream is None and h2.seq is None and h2.parent is None


def test_roundtrip_all_fields_and_ids_are_unique():
    s = stamper()
    a = s.header("kv.updated", schema=3, stream="ms.2", seq=17, parent="x:1")
    b = s.header("kv.updated")
    assert a.id != b.id and a.id.startswith("0123456789abcdef:")
    _, h, _ = envelope.decode(envelope.encode("t", a, None))
    assert (h.schema, h.stream, h.seq, h.parent) == (3, "ms.2", 17, "x:1")


def test_header_decodes_without_body():
    frames = envelope.encode("a.b", stamper().header("a.b"), {"x": 1})
    frames[2] = b"\xc1"  # never valid msgpack: decode_header must not look at it
    topic, h = envelope.decode_header(frames)
    assert topic == "a.b" and h.type == "a.b"
    with pytest.raises(EnvelopeError, match="body"):
        envelope.decode(frames)


def test_unknown_header_fields_are_ignored_and_newer_version_accepted():
    h = stamper().header("a.b").to_wire()
    h["future"] = {"anything": [1, 2]}
    h["v"] = BUS_PROTOCOL_VERSION + 1
    frames = [b"a", msgpack.packb(h), msgpack.packb(None)]
    _, hdr, _ = envelope.decode(frames)
    assert hdr.type == "a.b" and hdr.v == BUS_PROTOCOL_VERSION + 1


def _wire(**changes):
    h = stamper().header("a.b").to_wire()
    for k, v in changes.items():
        if v is KeyError:
            del h[k]
        else:
            h[k] = v
    return [b"a", msgpack.packb(h), msgpack.packb(1)]


@pytest.mark.parametrize("frames", [
    [b"a", b"b"],
    [b"a", b"b", b"c", b"d"],
    [b"\xff\xfe", msgpack.packb({}), msgpack.packb(1)],
    [b"a", b"\xc1", msgpack.packb(1)],
    [b"a", msgpack.packb([1, 2]), msgpack.packb(1)],
    [b"a", msgpack.packb({"v": 1}) + b"x", msgpack.packb(1)],
    _wire(type=KeyError),
    _wire(type=5),
    _wire(v="1"),
    _wire(v=0),
    _wire(v=True),
    _wire(id=None),
    _wire(src="me"),
    _wire(src={"role": "x", "instance": "0", "session": "s"}),
    _wire(ts="now"),
    _wire(seq=1.5),
    _wire(stream=7),
])
def test_malformed_raises_envelope_error_only(frames):
    with pytest.raises(EnvelopeError):
        envelope.decode(frames)


def test_random_bytes_raise_only_envelope_error():
    import random
    rng = random.Random(7)
    good = envelope.encode("a.b", stamper().header("a.b"), {"k": [1, 2, 3]})
    for _ in range(2000):
        frames = [bytearray(f) for f in good]
        f = rng.randrange(3)
        if frames[f]:
            frames[f][rng.randrange(len(frames[f]))] = rng.randrange(256)
        try:
            envelope.decode([bytes(x) for x in frames])
        except EnvelopeError:
            pass


def test_type_names_are_checked_on_publish():
    assert envelope.check_type("registration.added") == "registration.added"
    assert envelope.check_type("kv.heartbeat") == "kv.heartbeat"
    for bad in ("registration", "Registration.added", "a..b", ".a", "a.b.", 7):
        with pytest.raises(ValueError):
            envelope.check_type(bad)


def test_header_is_immutable():
    h = Header("a.b", "s:1", Source("r", 0, "s"), 1.0)
    with pytest.raises(AttributeError):
        h.type = "c.d"  # type: ignore[misc]


# -------------------------------------------------------------------- topics

def test_topic_helpers():
    assert topics.rx(topics.MAP_REGISTER, 3) == "rx.map-register.3"
    assert topics.rx(topics.MAP_NOTIFY) == "rx.map-notify"
    assert topics.rx(topics.MAP_REPLY) == "rx.map-reply"
    assert topics.rx(topics.ECM_ETR) == "rx.ecm-etr"
    assert topics.ms_delta(4) == "ms.4.delta"
    assert topics.ms_stream(4) == "ms.4"
    assert topics.stream_heartbeat("ms.4") == "ms.4.hb"
    assert topics.heartbeat("map_resolver", 1) == "hb.map_resolver.1"
    assert topics.parse_heartbeat("hb.map_resolver.1") == ("map_resolver", 1)
    assert topics.parse_heartbeat("hb.map_resolver") is None
    assert topics.parse_heartbeat("ms.1.hb") is None
    with pytest.raises(ValueError):
        topics.join("rx", "Map-Register")
    with pytest.raises(ValueError):
        topics.join("rx", "")
    with pytest.raises(ValueError):
        topics.stream_name("ms/1")


def test_segment_matching():
    m = topics.matches
    assert m("rx.map-register.1", "rx.map-register.1")
    assert not m("rx.map-register.1", "rx.map-register.10")
    assert m("rx.map-register", "rx.map-register.10")
    assert m("rx", "rx.map-notify")
    assert not m("rx.map", "rx.map-notify")
    assert m("hb.", "hb.etr.0") and m("", "anything")
    assert m("ms.1", "ms.1.delta") and m("ms.1", "ms.1.hb") and not m("ms.1", "ms.11.hb")


def test_shard_of_is_stable_and_spreads():
    # fixed values: SHA-256 based, so the same on every host and Python version
    assert topics.shard_of("site-a", 1) == 0
    assert [topics.shard_of(f"site-{i}", 4) for i in range(8)] == \
        [topics.shard_of(f"site-{i}", 4) for i in range(8)]
    import hashlib
    expect = int.from_bytes(hashlib.sha256(b"acme").digest()[:8], "big") % 7
    assert topics.shard_of("acme", 7) == expect
    counts = [0] * 4
    for i in range(4000):
        counts[topics.shard_of(f"site-{i}", 4)] += 1
    assert min(counts) > 800
    with pytest.raises(ValueError):
        topics.shard_of("x", 0)


# ----------------------------------------------------------------- endpoints

def test_endpoints_derive_from_state_dir():
    ep = Endpoints("/var/lib/decent/n1/")
    assert ep.bus_in == "ipc:///var/lib/decent/n1/bus-in.sock"
    assert ep.bus_out == "ipc:///var/lib/decent/n1/bus-out.sock"
    assert ep.sendq_in == "ipc:///var/lib/decent/n1/sendq-in.sock"
    assert ep.sendq_out == "ipc:///var/lib/decent/n1/sendq-out.sock"
    assert ep.snapshot("ms.3") == "ipc:///var/lib/decent/n1/snap-ms.3.sock"


def test_endpoint_path_limit():
    long_dir = "/" + "d" * (IPC_PATH_MAX - len("/bus-out.sock"))
    with pytest.raises(EndpointError, match="too long"):
        Endpoints(long_dir + "x")
    ok = "/" + "d" * (IPC_PATH_MAX - len("/sendq-out.sock") - 1)
    Endpoints(ok)
    with pytest.raises(EndpointError, match="too long"):
        Endpoints(ok).snapshot("ms." + "9" * 40)
    with pytest.raises(EndpointError, match="absolute"):
        Endpoints("relative/dir")


# ---------------------------------------------------------------- send queue

def test_sendq_roundtrip_and_errors():
    d = Datagram("192.0.2.1", 4342, b"\x30\x00", "192.0.2.9")
    assert sendq.decode(sendq.encode(d)) == d
    d2 = Datagram("2001:db8::1", 1234, b"")
    assert sendq.decode(sendq.encode(d2)) == d2
    for bad in ([b"x"], [b"\xc1", b""], [msgpack.packb([1, "a", 0, None]), b""],
                [msgpack.packb([1, "a", True, None]), b""], [msgpack.packb({}), b""]):
        with pytest.raises(SendqError):
            sendq.decode(bad)


def test_sendq_meta_frames_remembered_are_the_bytes_packed_each_time(monkeypatch):
    """encode remembers a destination's meta frame (issue 10: a registrant's
    Map-Notifies repeat it): the same bytes as packing it every time, whatever the
    order, beyond the bound of what it remembers too."""
    monkeypatch.setattr(sendq, "_METAS", {})
    dsts = [("192.0.2.1", 4342, None), ("192.0.2.1", 4343, None), ("192.0.2.1", 4342, "192.0.2.9"),
            ("2001:db8::1", 4342, None), ("192.0.2.1", 4342.0, None)]
    for i in range(3 * 4096 + 7):
        a, p, src = dsts[i % len(dsts)] if i % 3 else (f"10.0.{i >> 8 & 255}.{i & 255}", 4342, None)
        got = sendq.encode(Datagram(a, p, b"x", src))
        assert got == [msgpack.packb([sendq.SENDQ_VERSION, a, p, src]), b"x"]
    assert len(sendq._METAS) <= 4096
