"""The ``itr`` role: the node's map-cache, filled by ECM Map-Requests.

Thin shell over :class:`common.machines.itr.ItrMachine`.  Other processes ask it to
resolve an EID over the bus (``itr.resolve`` with a ``reply`` topic; the answer is
the cache entry, or a failure); ``itr.query`` returns the whole map-cache.  Its
Map-Requests leave from its own socket and the Map-Replies come back there; SMRs
reach it as punted ``rx.map-request`` datagrams.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time

from bus import topics
from common.wire.eidtext import EidSpecError, format_eid, parse_eidspec
from common.wire.errors import DecodeError
from common.machines.itr import ItrMachine, Resolved, ResolveFailed
from common.wire.messages import MapRequest, decode_message
from roles.pullstate import pull_state
from roles.runtime import RoleContext, run_role
from roles.udp import open_sockets, send


async def main(ctx: RoleContext) -> None:
    cfg = ctx.cfg
    itr = ItrMachine(own_rlocs=cfg.node.rlocs, map_resolvers=cfg.itr.map_resolvers,
                     nonce_source=lambda: secrets.randbits(64), timers=cfg.timers)
    pull = pull_state(ctx)
    if pull is not None:
        # pull mode: a Map-Request goes to its EID's index set, round robin, failing over
        port = cfg.node.control_port
        itr.resolvers_for = lambda eid: [(a, port) for a in pull.view.servers(eid)]
        pull.start()
    waiters: dict = {}   # eid -> [reply topics]
    wake = asyncio.Event()

    def deliver(eid, body) -> None:
        for reply in waiters.pop(eid, []):
            ctx.bus.publish(reply, "itr.resolved", body)

    def handle_events(events) -> None:
        now = time.monotonic()
        for ev in events:
            if isinstance(ev, Resolved):
                deliver(ev.eid, {"eid": format_eid(ev.eid), "ok": True,
                                 "entry": ev.entry.view(now) if ev.entry else None})
                ctx.counters.inc("answered")
            elif isinstance(ev, ResolveFailed):
                deliver(ev.eid, {"eid": format_eid(ev.eid), "ok": False, "attempts": ev.attempts})
                ctx.counters.drop("resolve-failed", format_eid(ev.eid))

    def on_datagram(data: bytes, src) -> None:
        handle_events(itr.handle_map_reply(data, time.monotonic()))
        wake.set()

    socks = await open_sockets(cfg.node.rlocs, on_datagram, ctx.counters)
    itr.itr_port = next(iter(socks.values())).get_extra_info("sockname")[1]

    def flush() -> None:
        for dst, port, data in itr.datagrams_to_send():
            send(socks, dst, port, data, ctx.counters)

    def on_resolve(_t, _h, body) -> None:
        try:
            eid = parse_eidspec(body["eid"])
            reply = body["reply"]
        except (KeyError, TypeError, EidSpecError) as exc:
            ctx.counters.drop("bad-resolve-request", repr(exc))
            return
        now = time.monotonic()
        entry = itr.resolve(eid, now)
        if entry is not None:
            ctx.bus.publish(reply, "itr.resolved", {"eid": format_eid(eid), "ok": True, "entry": entry.view(now)})
            return
        waiters.setdefault(eid, []).append(reply)
        flush()
        wake.set()

    def on_query(_t, _h, body) -> None:
        if isinstance(body, dict) and isinstance(body.get("reply"), str):
            ctx.bus.publish(body["reply"], "itr.answered", {"entries": itr.cache_entries(time.monotonic())})

    def on_punt(topic, _h, body) -> None:
        try:
            msg = decode_message(bytes(body["data"]))
        except (KeyError, TypeError, ValueError, DecodeError):
            ctx.counters.drop("bad-punt", topic)
            return
        if isinstance(msg, MapRequest) and msg.smr:
            itr.handle_map_request(msg, time.monotonic())
            flush()
        elif topic.startswith(topics.rx(topics.MAP_REPLY)):
            on_datagram(bytes(body["data"]), tuple(body["src"]))

    ctx.bus.subscribe(topics.ITR_RESOLVE, on_resolve)
    ctx.bus.subscribe("itr.query", on_query)
    ctx.bus.subscribe(topics.rx(topics.MAP_REQUEST), on_punt)
    ctx.bus.subscribe(topics.rx(topics.MAP_REPLY), on_punt)
    while True:
        nxt = itr.next_timer()
        delay = 1.0 if nxt is None else max(0.0, nxt - time.monotonic())
        wake.clear()
        try:
            await asyncio.wait_for(wake.wait(), min(delay, 1.0))
        except asyncio.TimeoutError:
            pass
        handle_events(itr.handle_timer(time.monotonic()))
        flush()
        for k, v in itr.counters.items():
            ctx.counters.set(k, v)


if __name__ == "__main__":
    sys.exit(run_role("itr", main))
