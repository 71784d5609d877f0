"""The send queue across hosts is routed by source address (bus.sendq.split_by_source,
bus.tcpbridge.SendRoutes): a datagram leaves from the host that owns its source."""

from __future__ import annotations

import msgpack
import pytest

from bus import sendq
from bus.sendq import Datagram, SendqError
from bus.tcpbridge import PEER_SILENT, SendRoutes


def frames(*ds: Datagram) -> list[bytes]:
    out: list[bytes] = []
    for d in ds:
        out += sendq.encode(d)
    return out


def test_split_keeps_local_and_unknown_sources_here_and_sends_a_satellites_to_it():
    a = Datagram("192.0.2.1", 4342, b"a", "10.0.0.1")          # this host's address
    b = Datagram("192.0.2.2", 4342, b"b", "172.16.2.2")        # sat2's
    c = Datagram("192.0.2.3", 4342, b"c", None)                # any
    d = Datagram("192.0.2.4", 4342, b"d", "172.16.3.3")        # sat3's
    e = Datagram("192.0.2.5", 4342, b"e", "172.16.2.2")
    groups = sendq.split_by_source(frames(a, b, c, d, e), {"172.16.2.2": "sat2", "172.16.3.3": "sat3"})
    assert set(groups) == {None, "sat2", "sat3"}
    assert sendq.decode_many(groups[None]) == [a, c]
    assert sendq.decode_many(groups["sat2"]) == [b, e]           # order kept
    assert sendq.decode_many(groups["sat3"]) == [d]


def test_split_refuses_what_is_not_pairs_of_frames():
    with pytest.raises(SendqError):
        sendq.split_by_source([b"x"], {})
    with pytest.raises(SendqError):
        sendq.split_by_source([b"\xc1", b"payload"], {})        # 0xc1: never valid msgpack


def test_routes_learn_round_robin_and_forget_silent_or_gone_workers():
    r = SendRoutes()
    assert r.remote(0.0) == {} and r.peers("sat2") == []
    r.ready(b"w1", "sat2", ["172.16.2.2"], 0.0)
    r.ready(b"w2", "sat2", ["172.16.2.2"], 0.0)
    r.ready(b"w3", "sat3", ["172.16.3.3", "fd00::3"], 0.0)
    assert r.remote(1.0) == {"172.16.2.2": "sat2", "172.16.3.3": "sat3", "fd00::3": "sat3"}
    firsts = {r.peers("sat2")[0] for _ in range(4)}
    assert firsts == {b"w1", b"w2"}                            # both take turns
    assert sorted(r.peers("sat2")) == [b"w1", b"w2"]           # the other is the fallback
    r.gone(b"w1")
    r.remote(1.0)
    assert r.peers("sat2") == [b"w2"]
    r.ready(b"w2", "sat2", ["172.16.2.2"], PEER_SILENT)         # w2 keeps saying ready
    assert r.remote(PEER_SILENT + 1.0) == {"172.16.2.2": "sat2"}   # w3 fell silent
    assert r.peers("sat3") == [] and r.count() == 1


def test_a_worker_that_moves_address_is_routed_by_its_new_one():
    r = SendRoutes()
    r.ready(b"w1", "sat2", ["172.16.2.2"], 0.0)
    assert r.remote(0.0) == {"172.16.2.2": "sat2"}
    r.ready(b"w1", "sat2", ["172.16.2.9"], 0.5)
    assert r.remote(0.5) == {"172.16.2.9": "sat2"}


def test_the_ready_message_a_satellite_worker_sends():
    class Ep:
        routed_sendq = True
    q = sendq.SendQueue(None, Ep(), None)
    q.serve_from("sat2", ["172.16.2.2"])
    assert msgpack.unpackb(q._hello) == ["sat2", ["172.16.2.2"]]

    class Local:
        pass
    q2 = sendq.SendQueue(None, Local(), None)
    q2.serve_from("h1", ["10.0.0.1"])
    assert q2._hello is None                                   # one host: a plain PULL
