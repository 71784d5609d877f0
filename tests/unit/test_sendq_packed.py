"""The send queue's packed form (issue 10): a producer's datagrams travel as ONE
ZeroMQ frame, not a pair of frames each (a shard's group commit queued 2,048 frames
per 1,024 Map-Notifies, ~3 us each to send and again to receive).  The same
datagrams, in the same order, reach the worker; the routing across hosts splits
it as it splits pairs; what cannot be read is refused as SendqError only."""

from __future__ import annotations

import asyncio
import logging
import tempfile

import msgpack
import pytest
import zmq
from hypothesis import given, settings, strategies as st

from bus import sendq
from bus.counters import RoleCounters
from bus.endpoints import Endpoints
from bus.sendq import Datagram, SendQueue, SendqError

addrs = st.sampled_from(["192.0.2.1", "198.51.100.7", "2001:db8::1", "10.0.0.1", "172.16.2.2"])
datagrams = st.builds(Datagram, addrs, st.integers(1, 65535), st.binary(max_size=64),
                      st.one_of(st.none(), addrs))


@settings(max_examples=200, deadline=None)
@given(st.lists(datagrams, min_size=1, max_size=40))
def test_packed_is_one_frame_and_decodes_to_the_datagrams_in_order(ds):
    frames = sendq.encode_packed(ds)
    assert len(frames) == 1
    assert sendq.decode_many(frames) == ds
    assert sendq.count(frames) == len(ds)
    pairs: list = []
    for d in ds:
        pairs += sendq.encode(d)
    assert sendq.decode_many(pairs) == ds      # the pairs form is still read


@settings(max_examples=200, deadline=None)
@given(st.lists(datagrams, min_size=1, max_size=40))
def test_split_by_source_of_packed_is_that_of_pairs(ds):
    remote = {"172.16.2.2": "sat2", "10.0.0.1": "sat1"}
    pairs: list = []
    for d in ds:
        pairs += sendq.encode(d)
    want = {h: sendq.decode_many(p) for h, p in sendq.split_by_source(pairs, remote).items()}
    got = sendq.split_by_source(sendq.encode_packed(ds), remote)
    assert all(len(p) == 1 for p in got.values())     # each group still one frame
    assert {h: sendq.decode_many(p) for h, p in got.items()} == want


STRUCTURE = [
    b"\xc1",                                                    # never valid msgpack
    msgpack.packb([3, ["192.0.2.1", 4342, None, b"x"]]),        # unknown version
    msgpack.packb([2, ["192.0.2.1", 4342, None]]),              # not four items each
    msgpack.packb({"2": []}),
]
ITEMS = [
    msgpack.packb([2, ["192.0.2.1", 0, None, b"x"]]),           # port 0
    msgpack.packb([2, ["192.0.2.1", True, None, b"x"]]),        # a bool is no port
    msgpack.packb([2, ["192.0.2.1", 4342, 7, b"x"]]),           # source not text
    msgpack.packb([2, ["192.0.2.1", 4342, None, "text"]]),      # payload not bytes
]


@pytest.mark.parametrize("frame", STRUCTURE + ITEMS)
def test_unreadable_packed_messages_are_refused(frame):
    with pytest.raises(SendqError):
        sendq.decode_many([frame])


@pytest.mark.parametrize("frame", STRUCTURE)
def test_the_router_refuses_packed_messages_it_cannot_split(frame):
    """(As for pairs, the router reads the structure and the source addresses; the
    worker's decode checks each datagram.)"""
    with pytest.raises(SendqError):
        sendq.split_by_source([frame], {})
    assert sendq.count([frame]) == 0


def test_a_producers_batch_crosses_zeromq_as_one_frame_and_the_worker_gets_it_whole():
    """SendQueue.send_many -> the bus's PULL (one message of one frame) -> the
    worker's SendQueue.recv_many: every datagram, in order, in one call."""
    async def run() -> None:
        with tempfile.TemporaryDirectory() as d:
            ep = Endpoints(d)
            z = zmq.Context()
            pull_in = z.socket(zmq.PULL)
            pull_in.bind(ep.sendq_in)
            push_out = z.socket(zmq.PUSH)
            push_out.bind(ep.sendq_out)
            counters = RoleCounters(logging.getLogger("t"))
            producer, worker = SendQueue(z, ep, counters), SendQueue(z, ep, counters)
            ds = [Datagram("192.0.2.1", 40000 + i, bytes([i % 256]) * 20, "10.0.0.1") for i in range(1024)]
            assert producer.send_many(ds)
            assert pull_in.poll(5000)
            frames = pull_in.recv_multipart()
            assert len(frames) == 1
            first = asyncio.ensure_future(worker.recv_many())
            await asyncio.sleep(0.05)          # the worker's PULL connects
            push_out.send_multipart(frames)
            got = await asyncio.wait_for(first, 5)
            assert got == ds
            producer.close()
            worker.close()
            for s in (pull_in, push_out):
                s.close(0)
            z.term()
    asyncio.run(run())
