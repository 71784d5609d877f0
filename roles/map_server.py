"""The ``map_server`` role: one shard of the registrations (sites split by name hash).

Thin shell over :class:`common.machines.mapserver.MapServer`: Map-Registers arrive on
``rx.map-register.<shard>`` (punted by the map_resolver workers), every content
change is committed to SQLite before the Map-Notify goes out (through the send
queue, from port 4342) and is then published on the shard's Clone stream
``ms.<shard>``, which the workers replicate.  Lapsed registrations are deleted the
same way, so every replica forgets at once.  On start the shard reloads its store
and gives each registration one grace period.
"""

from __future__ import annotations

import asyncio
import sys
import time

from bus import topics
from bus.clone import CloneWriter
from common.wire.eidtext import format_eid
from common.machines.mapserver import MapServer
from roles.ms_store import RegistrationStore
from roles.pullstate import pull_state
from roles.runtime import RoleContext, run_role
from roles.sites import policies

QUERY_TOPIC = "ms.query"


async def main(ctx: RoleContext) -> None:
    cfg, shard = ctx.cfg, ctx.instance
    t = cfg.timers
    ms = MapServer(policies(cfg, shard), lifetime=t.registration_lifetime, grace=t.restart_grace)
    pull = pull_state(ctx)
    if pull is not None:
        # a node serves the indexes whose DNS set holds one of its RLOCs (DESIGN.md 6)
        ms.accept_index = lambda eid: pull.view.serves(eid) if pull.in_sync else None
        pull.start()
    store = RegistrationStore(cfg.state_path(f"map_server_{shard}.sqlite"), cfg.map_server.sync)
    rows, nonces = store.load()
    ms.restore(rows, nonces, time.monotonic())
    ctx.log.info("shard %d: %d sites, %d registrations restored (grace %.0fs)", shard,
                 len(ms.sites), len(rows), ms.grace)
    writer = CloneWriter(ctx, topics.ms_stream(shard))
    writer.load(ms.snapshot(), 0)
    writer.start()
    ctx.counters.set("registrations", len(ms.table))

    def publish(changes) -> None:
        for ch in changes:
            if ch[0] == "set":
                writer.set(ch[1], ch[2])
            else:
                writer.delete(ch[1])
        ctx.counters.set("registrations", len(ms.table))

    def on_register(_topic, _header, body) -> None:
        ctx.counters.inc("received")
        try:
            data, (addr, port) = bytes(body["data"]), body["src"]
        except (KeyError, TypeError, ValueError):
            ctx.counters.drop("bad-punt", "rx.map-register body")
            return
        now = time.monotonic()
        res = ms.handle_register(data, (addr, int(port)), now)
        if not res.accepted:
            detail = f"from {addr} (site {res.site or '-'})"
            for eid, why in res.refused:
                detail += f"; {format_eid(eid)}: {why}"
                if why == "index-not-served":
                    detail += (f" (index {pull.view.index(eid)}; this node serves "
                               f"{sorted(pull.view.served_indexes())}: likely a modulus or hash-mode "
                               f"mismatch at the registrant)")
            ctx.counters.drop(f"register.{res.reason}", detail)
            return
        for eid, why in res.refused:
            detail = f"{format_eid(eid)} from {addr} (site {res.site})"
            if why == "index-not-served":
                detail += (f": hashes to index {pull.view.index(eid)}, which this node does not serve "
                           f"(serves {sorted(pull.view.served_indexes())}) - likely a modulus or "
                           f"hash-mode mismatch at the registrant")
            ctx.counters.drop(f"register.record.{why}", detail)
        for w in res.warnings:
            ctx.counters.inc(f"register.{w}")
        # durable first, then the acknowledgement, then the replicas (DESIGN.md 5)
        store.apply(res.changes, {res.nonce_key: ms.nonces[res.nonce_key]})
        if res.notify is not None:
            ctx.sendq.send(res.notify_to[0], res.notify_to[1], res.notify)
            ctx.counters.inc("map-notify.sent")
        publish(res.changes)
        ctx.counters.inc("answered")
        ctx.counters.inc("register.accepted")

    def on_query(_topic, _header, body) -> None:
        reply = body.get("reply") if isinstance(body, dict) else None
        if not isinstance(reply, str):
            return
        now = time.monotonic()
        regs = []
        for e in ms.table.entries():
            v = e.value
            regs.append({"eid": format_eid(e.eid), "site": v["site"], "rlocs": v["rlocs"],
                         "rle": v.get("rle"), "ttl": v["ttl"], "proxy_reply": v["proxy"],
                         "merge": v["merge"], "xtr_id": v["xtr"], "registrant": v["registrant"],
                         "expires_in": round(ms.expires_in(e.key, now) or 0.0, 1)})
        sites = [{"name": s.name, "nonce_policy": s.nonce_policy, "shard": shard,
                  "prefixes": [[format_eid(p), more] for p, more in s.prefixes]}
                 for s in ms.sites.values()]
        ctx.bus.publish(reply, "ms.answered", {"shard": shard, "registrations": regs, "sites": sites})

    async def expiry() -> None:
        while True:
            nxt = ms.next_timer()
            now = time.monotonic()
            await asyncio.sleep(1.0 if nxt is None else min(1.0, max(0.0, nxt - now)))
            changes = ms.expire(time.monotonic())
            if changes:
                store.apply(changes)
                publish(changes)
                ctx.counters.inc("expired", len(changes))

    ctx.bus.subscribe(topics.rx(topics.MAP_REGISTER, shard), on_register)
    ctx.bus.subscribe(QUERY_TOPIC, on_query)
    ctx.spawn(expiry(), name="expiry")
    try:
        await asyncio.Event().wait()
    finally:
        writer.close()
        store.close()


if __name__ == "__main__":
    sys.exit(run_role("map_server", main))
