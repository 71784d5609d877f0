"""The ``map_server`` role: one shard of the registrations (sites split by name hash).

Thin shell over :class:`common.machines.mapserver.MapServer`: Map-Registers arrive on
``rx.map-register.<shard>`` (punted by the map_resolver workers); the machine
computes the result, the shell commits it to SQLite, then memory follows, the
change is published on the shard's Clone stream ``ms.<shard>`` (which the workers
replicate) and only then does the Map-Notify go out (through the send queue,
from port 4342).  Unsolicited Map-Notifies are retransmitted until their
Map-Notify-Ack (``rx.map-notify-ack.<shard>``).  Lapsed registrations are deleted the
same way, so every replica forgets at once.  On start the shard reloads its store
and gives each registration one grace period.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time

from bus import topics
from bus.clone import CloneWriter
from bus.sendq import Datagram
from common.wire.eidtext import format_eid
from common.machines.mapserver import MapServer
from roles import memtrim
from roles import ms_show
from roles import stream_resume
from roles.coalesce import Coalescer
from roles.ms_reload import Reload
from roles.ms_store import RegistrationStore
from roles.pullstate import pull_state
from roles.hostfiles import UnsafePath
from roles.runtime import RefuseToStart, RoleContext, run_role
from roles.sites import policies

QUERY_TOPIC = "ms.query"
CHECKPOINT_EVERY = 1.0   # seconds between WAL checkpoints
GROUP_MAX = 1024         # Map-Registers committed as one group at most
GC_YOUNG = 100_000      # allocations between young-generation collections (default 700)
# generation-0 collections between generation-1 ones: a generation-1 collection walks
# every object promoted since the last one, so at 50 the first came after ~500,000
# registrations made live and stalled the shard 1.3 s; at 5 the longest was 0.18 s for
# the same total GC time (bench/gc_pause.py, bench/README.md 2g)
GC_MIDDLE = 5


async def main(ctx: RoleContext) -> None:
    cfg, shard = ctx.cfg, ctx.instance
    t = cfg.timers
    own = {s.name for s in policies(cfg, shard)}
    # every site judges (no hijack across shards); this shard serves its own
    ms = MapServer(policies(cfg), own=own, lifetime=t.registration_lifetime, grace=t.restart_grace,
                   notify_nonce=int.from_bytes(os.urandom(8), "big"))
    pull = pull_state(ctx)
    if pull is not None:
        # a node serves the indexes whose DNS set holds one of its RLOCs (DESIGN.md 6)
        ms.accept_index = lambda eid: pull.view.serves(eid) if pull.in_sync else None
        pull.start()
    try:
        store = RegistrationStore(cfg.state_path(f"map_server_{shard}.sqlite"), cfg.map_server.sync)
    except UnsafePath as exc:   # a symlink or a file of another user where the store goes
        raise RefuseToStart(str(exc)) from None
    # The stream heartbeats from the start but serves its snapshot only once the store
    # is loaded: the workers keep answering from their replica (the same committed
    # state) meanwhile, and the reload yields to the loop between chunks so heartbeats
    # keep flowing (issue 11, docs/replica.md).
    writer = CloneWriter(ctx, topics.ms_stream(shard), packed=True)   # values held encoded
    # continue the stream where the store says it was: workers at that position need no
    # snapshot; every commit persists the position (roles/stream_resume.py)
    if stream_resume.resume(writer, store):
        ctx.log.info("shard %d: stream resumes session %s at seq %d", shard, *writer.resumes)
    writer.hold()
    writer.start()
    # replays are judged from the first Map-Register on, the reload's included
    ms.nonces.update(store.load_nonces())

    loading: dict = {}      # "of": the Reload while the store loads

    async def reload(serve) -> None:
        """Load the store into the table and the writer, in chunks yielding to the loop
        (roles/ms_reload.py).  A resumed stream (the workers hold the store's state
        already): ``serve()`` is called once the writer has heartbeated long enough for
        the workers to continue its stream, and Map-Registers are taken while the rest
        loads (issue 11, docs/replica.md).  Otherwise the workers need the whole
        snapshot: nothing is taken before it is loaded (a change would abandon the
        snapshots streaming meanwhile)."""
        early = writer.resumes is not None
        serve_at = time.monotonic() + 1.5 * writer.heartbeat_interval   # two heartbeats out
        # no cyclic GC while a million objects are made (a full pass over them takes
        # seconds, longer than the stale bound of the workers); what is loaded is frozen
        # out of later passes
        gc_on = gc.isenabled()
        gc.disable()
        # values stay as stored (msgpack bytes): the shard's compact table takes them
        # without decoding, the writer holds them as they were published
        load = Reload(ms, store, writer, early=early)
        loading["of"] = load
        while load.step():
            if early and serve_at is not None and time.monotonic() >= serve_at:
                serve_at = None
                serve()
            await asyncio.sleep(0)
        load.finish()
        loading.clear()
        memtrim.trim()     # the reload's temporary rows back to the system
        gc.freeze()
        if gc_on:
            gc.enable()
        # Every registration leaves long-lived objects behind and nothing here makes much
        # cyclic garbage: collecting the young generation every 700 allocations (the
        # default) cost 15-20 % of a new registration's CPU (issue 10, bench/README.md 2c)
        gc.set_threshold(GC_YOUNG, GC_MIDDLE, 100)
        if load.bad:
            stream_resume.unresumable(writer, store)   # the table is not the position's state
            ctx.counters.drop("store-unreadable-row", f"{len(load.bad)} rows skipped, e.g. {load.bad[0]}")
        ctx.log.info("shard %d: %d sites, %d registrations restored (grace %.0fs)%s", shard,
                     len(ms.sites), load.loaded, ms.grace,
                     f"; Map-Registers taken meanwhile: {len(load.faulted)} prefixes loaded first "
                     f"({load.faulted_rows} registrations)" if serve_at is None else "")
        ctx.counters.inc("reload.faulted-in", load.faulted_rows)
        writer.release()
        ctx.counters.set("registrations", len(ms.table))

    warned: set[str] = set()     # registrants whose nonces stopped increasing (warn policy)

    def publish(changes) -> None:
        # a group's changes in one kv.batch message, not one bus message each (issue 10)
        writer.apply(changes)
        ctx.counters.set("registrations", len(ms.table))

    def send(dst: str, port: int, data: bytes) -> None:
        ctx.sendq.send(dst, port, data)
        ctx.counters.inc("map-notify.sent" if data[0] >> 4 == 4 else "sent")

    def items_of(body) -> list:
        """(data, src, coverage, remaining) per Map-Register of a punted message: a
        worker's batch (MAC checked at its edge gate) or one datagram (dataplane)."""
        if isinstance(body.get("batch"), list):
            out = []
            for it in body["batch"]:
                data, addr, port, cov = it[:4]
                out.append((bytes(data), (str(addr), int(port)), cov if cov in ("all", "records") else None,
                            None))
                if len(it) > 4 and isinstance(it[4], str):   # where it arrived (bus.sendq)
                    arrived[(str(addr), int(port))] = it[4]
            return out
        remaining = body.get("remaining")
        addr, port = body["src"]
        return [(bytes(body["data"]), (str(addr), int(port)), None,
                 None if remaining is None else max(0.0, float(remaining)))]

    queued: list = []     # Map-Registers of bus messages not yet committed
    # registrant (addr, port) -> the local address its Map-Register reached: its
    # Map-Notify leaves from there (across hosts the send queue routes by it)
    arrived: dict = {}

    def on_register(_topic, _header, body) -> None:
        """Queue a worker's batch; the queue is committed as one group once the bus
        loop yields (it dispatches up to DISPATCH_BURST queued messages first) - or up
        to a millisecond later while groups follow each other closely, so a steady
        stream makes groups, not transactions of one (roles/coalesce.py) - or at once
        when GROUP_MAX are waiting."""
        try:
            items = items_of(body)
        except (KeyError, TypeError, ValueError, AttributeError):
            ctx.counters.drop("bad-punt", "rx.map-register body")
            return
        ctx.counters.inc("received", len(items))
        queued.extend(items)
        if len(queued) >= GROUP_MAX:
            commit_queued()
        else:
            coalesce.schedule()

    def commit_queued() -> None:
        coalesce.flushed()
        if not queued:
            return
        items = queued[:]
        queued.clear()
        try:
            commit_group(items)
        except Exception as exc:  # as the bus counts a failing handler; nothing was acknowledged
            ctx.counters.drop(f"handler-error.{type(exc).__name__}", f"group of {len(items)}: {exc!r}")
        finally:
            arrived.clear()

    coalesce = Coalescer(commit_queued, time.monotonic)

    def commit_group(items: list) -> None:
        ctx.counters.inc("register.groups")
        out = []
        # memory and store together (one transaction), then the replicas, then the
        # acknowledgements: a group commit
        results = ms.handle_batch(items, time.monotonic(), commit=store.apply, publish=publish,
                                  send=lambda d, p, x: out.append(Datagram(d, p, x, arrived.get((d, p)))))
        if out:
            ctx.sendq.send_many(out)
            ctx.counters.inc("map-notify.sent", sum(1 for d in out if d.payload[0] >> 4 == 4))
        for (_data, (addr, _port), _c, _r), res in zip(items, results):
            account(res, addr)

    def account(res, addr: str) -> None:
        if not res.accepted:
            detail = f"from {addr} (site {res.site or '-'})"
            if res.error:
                detail += f": {res.error}"
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
        for k in res.nonces:
            if "nonce-not-increasing" in res.warnings:
                if k not in warned:
                    warned.add(k)
                    ctx.log.warning("site %s: registrant %s sends nonces that do not increase (nonce "
                                    "policy warn: accepted and counted); logged once until it changes",
                                    res.site, k.split("|", 2)[2])
            elif k in warned:
                warned.discard(k)
                ctx.log.info("site %s: registrant %s sends increasing nonces again", res.site,
                             k.split("|", 2)[2])
        if res.unsolicited:
            ctx.counters.inc("map-notify.unsolicited", len(res.unsolicited))
        ctx.counters.inc("answered")
        ctx.counters.inc("register.accepted")

    def on_notify_ack(_topic, _header, body) -> None:
        try:
            data = bytes(body["data"])
        except (KeyError, TypeError, ValueError):
            ctx.counters.drop("bad-punt", "rx.map-notify-ack body")
            return
        outcome = ms.handle_notify_ack(data)
        if outcome == "acked":
            ctx.counters.inc("map-notify-ack.accepted")
        else:
            ctx.counters.drop(f"map-notify-ack.{outcome}", f"from {body.get('src')}")

    def on_query(_topic, _header, body) -> None:
        reply = body.get("reply") if isinstance(body, dict) else None
        if not isinstance(reply, str):
            return
        if loading:     # a partial table is no answer: say how far the reload is
            ctx.bus.publish(reply, "ms.answered", {"shard": shard, "loading": loading["of"].loaded})
            return
        now = time.monotonic()
        if body.get("raw"):
            # push-mode snapshots: each stored Map-Register once, with the lifetime
            # its registrations have left here (the longest of them)
            raws: dict[bytes, float] = {}
            for e in ms.table.entries():
                raw = ms.raw.get(e.key)
                if raw:
                    left = ms.expires_in(e.key, now) or 0.0
                    raws[raw] = max(left, raws.get(raw, 0.0))
            ctx.bus.publish(reply, "ms.raw", {"shard": shard, "registers": [[r, round(left, 1)]
                                                                            for r, left in raws.items()]})
            return
        ctx.bus.publish(reply, "ms.answered", ms_show.answer(ms, body, shard, now))

    async def timers() -> None:
        while True:
            nxt = ms.next_timer()
            now = time.monotonic()
            await asyncio.sleep(1.0 if nxt is None else min(1.0, max(0.0, nxt - now)))
            now = time.monotonic()
            try:
                changes = ms.expire(now, commit=store.apply)
            except Exception as exc:  # the store failed: retried on the next turn
                ctx.counters.drop("expire.commit-failed", repr(exc))
                changes = []
            if changes:
                publish(changes)
                ctx.counters.inc("expired", len(changes))
            again, gave_up = ms.retransmit(now)
            for dst, port, data in again:
                send(dst, port, data)
                ctx.counters.inc("map-notify.retransmitted")
            if gave_up:
                ctx.counters.drop("map-notify.unacknowledged", f"{gave_up} unsolicited Map-Notify(s) given up")

    async def checkpoints() -> None:
        # the store's WAL is checkpointed here, beside the loop, never inside a
        # group commit (roles/ms_store.py): a commit does not wait for an fsync
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY)
            try:
                await asyncio.to_thread(store.checkpoint)
            except Exception as exc:  # retried on the next turn
                ctx.counters.drop("store.checkpoint-failed", repr(exc))

    serving = False

    def serve() -> None:
        nonlocal serving
        serving = True
        ctx.bus.subscribe(topics.rx(topics.MAP_REGISTER, shard), on_register)
        ctx.bus.subscribe(topics.rx(topics.MAP_NOTIFY_ACK, shard), on_notify_ack)
        ctx.spawn(timers(), name="timers")
        ctx.spawn(checkpoints(), name="checkpoints")
        ctx.log.info("shard %d: taking Map-Registers (%d registrations loaded)", shard, len(ms.table))

    try:
        ctx.bus.subscribe(QUERY_TOPIC, on_query)
        await reload(serve)
        if not serving:
            serve()
        await asyncio.Event().wait()
    finally:
        writer.close()
        store.close()


if __name__ == "__main__":
    sys.exit(run_role("map_server", main))
