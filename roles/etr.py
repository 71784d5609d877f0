"""The ``etr`` role: registers the node's database mappings and answers for them.

Thin shell over :class:`common.etr.EtrMachine`.  Map-Registers leave from the ETR's
own socket and the acknowledging Map-Notify comes back there.  Map-Requests for
its EIDs reach it over the bus: ECMs with E=1 (``rx.ecm-etr``) and RLOC-probes
(``rx.map-request``), both punted by the map_resolver workers; its authoritative
Map-Replies leave from port 4342 through the send queue.  The first nonce is
time-based, so nonces keep increasing across restarts and a ``strict`` Map-Server
accepts a restarted ETR at once.
"""

from __future__ import annotations

import asyncio
import sys
import time

from bus import topics
from common.ecm import Ecm
from common.errors import DecodeError
from common.etr import EtrMachine
from common.messages import MapRequest, decode_message
from roles.runtime import RoleContext, run_role
from roles.udp import open_sockets, send


async def main(ctx: RoleContext) -> None:
    cfg = ctx.cfg
    etr = EtrMachine(cfg.database_mappings, cfg.etr.map_servers, own_rlocs=cfg.node.rlocs,
                     xtr_id=cfg.node.xtr_id, site_id=cfg.node.site_id,
                     nonce_start=time.time_ns(), timers=cfg.timers)
    wake = asyncio.Event()

    def on_datagram(data: bytes, src) -> None:
        if data[:1] and data[0] >> 4 == 4:
            if etr.handle_map_notify(data, src[0], src[1], time.monotonic()):
                ctx.counters.inc("map-notify.accepted")
            else:
                ctx.counters.drop("map-notify-rejected", f"from {src[0]}:{src[1]}")
            wake.set()
        else:
            ctx.counters.drop("unexpected-datagram", f"type {data[0] >> 4 if data else '-'} from {src[0]}")

    socks = await open_sockets(cfg.node.rlocs, on_datagram, ctx.counters)

    def flush() -> None:
        for dst, port, data in etr.datagrams_to_send():
            send(socks, dst, port, data, ctx.counters)

    def answer(req: MapRequest, reply_to, local=None) -> None:
        out = etr.handle_map_request(req, reply_to, time.monotonic(), local_addr=local)
        if out is None:
            ctx.counters.drop("map-request-not-ours", str(req.records[0].prefix) if req.records else "")
            return
        dst, port, data = out
        ctx.sendq.send(str(dst), port, data, src_addr=local)
        ctx.counters.inc("answered")

    def on_punt(topic, _h, body) -> None:
        ctx.counters.inc("received")
        try:
            data, src, local = bytes(body["data"]), tuple(body["src"]), body.get("local")
            msg = decode_message(data)
        except (KeyError, TypeError, ValueError, DecodeError) as exc:
            ctx.counters.drop("bad-punt", f"{topic}: {exc}")
            return
        if isinstance(msg, Ecm) and isinstance(msg.inner, MapRequest):
            answer(msg.inner, (str(msg.ip.src), msg.ip.sport), local)
        elif isinstance(msg, MapRequest) and msg.probe:
            answer(msg, src, local)
        elif isinstance(msg, MapRequest):
            pass  # SMRs are the ITR's
        elif topic.startswith(topics.rx(topics.MAP_NOTIFY)):
            etr.handle_map_notify(data, src[0], src[1], time.monotonic())
            wake.set()

    def on_query(_t, _h, body) -> None:
        if isinstance(body, dict) and isinstance(body.get("reply"), str):
            ctx.bus.publish(body["reply"], "etr.answered", {"servers": etr.status()})

    for t in (topics.rx(topics.ECM_ETR), topics.rx(topics.MAP_REQUEST), topics.rx(topics.MAP_NOTIFY)):
        ctx.bus.subscribe(t, on_punt)
    ctx.bus.subscribe("etr.query", on_query)
    await ctx.bus.ready(timeout=5.0)
    etr.start(time.monotonic())
    flush()
    while True:
        nxt = etr.next_timer()
        delay = 1.0 if nxt is None else max(0.0, nxt - time.monotonic())
        wake.clear()
        try:
            await asyncio.wait_for(wake.wait(), min(delay, 1.0))
        except asyncio.TimeoutError:
            pass
        etr.handle_timer(time.monotonic())
        flush()
        for k, v in etr.counters.items():
            ctx.counters.set(k, v)


if __name__ == "__main__":
    sys.exit(run_role("etr", main))
