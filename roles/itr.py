"""The ``itr`` role: the node's map-cache, filled by ECM Map-Requests.

Thin shell over :class:`common.machines.itr.ItrMachine`.  Other processes ask it to
resolve an EID over the bus (``itr.resolve`` with a ``reply`` topic; the answer is
the cache entry, or a failure); ``itr.query`` returns the whole map-cache.  Its
Map-Requests leave from its own socket and the Map-Replies come back there; SMRs
reach it as punted ``rx.map-request`` datagrams (on a satellite host that runs it,
``rx.map-request.<host>``: the ones that reached that host, docs/bus-protocol.md
section 7).

The map-cache is published as the Clone stream ``mapcache`` (key: the EID text,
value: RLOCs, action, TTL and the wall-clock expiry) for the ``dataplane`` role, and
saved to ``<state_dir>/itr_mapcache.msgpack`` on every change, so a restarted
``itr`` starts from the entries it had (the data path keeps forwarding to them).
On a satellite the stream is ``mapcache.<host>`` (no data path reads it there; the
bus host's stays ``mapcache``).
The data path's misses arrive as ``dp.miss`` events and are resolved like any
other request (one Map-Request per prefix per second at most).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from ipaddress import ip_address

import msgpack

from bus import topics
from bus.clone import CloneWriter
from common.wire.eidtext import EidSpecError, format_address, format_eid, parse_eidspec
from common.wire.errors import DecodeError
from common.machines.itr import Expired, ItrMachine, Resolved, ResolveFailed
from common.machines.mapcache import CacheEntry
from common.wire.records import Locator
from common.wire.messages import MapRequest, decode_message
from roles.pullstate import pull_state
from roles.runtime import RoleContext, run_role
from roles.udp import open_sockets, send


async def main(ctx: RoleContext) -> None:
    cfg = ctx.cfg
    itr = ItrMachine(own_rlocs=cfg.node.rlocs, map_resolvers=cfg.itr.map_resolvers,
                     nonce_source=lambda: secrets.randbits(64), timers=cfg.timers,
                     lisp_sec=cfg.itr.lisp_sec, otk_source=lambda: secrets.token_bytes(16),
                     lisp_sec_key=cfg.itr.lisp_sec_key.secret_bytes if cfg.itr.lisp_sec_key else None)
    pull = pull_state(ctx)
    if pull is not None:
        # pull mode: a Map-Request goes to its EID's index set, round robin, failing over
        port = cfg.node.control_port
        itr.resolvers_for = lambda eid: [(a, port) for a in pull.view.servers(eid)]
        pull.start()
    waiters: dict = {}   # eid -> [reply topics]
    wake = asyncio.Event()
    offset = time.time() - time.monotonic()   # monotonic -> wall clock, fixed for the process
    save_path = cfg.state_path("itr_mapcache.msgpack")
    host = getattr(getattr(cfg, "bus", None), "xtr_host", None)
    writer = CloneWriter(ctx, topics.MAPCACHE_STREAM if host is None
                         else topics.join(topics.MAPCACHE_STREAM, host))
    restored = _restore(itr, save_path, offset, ctx)
    writer.load(restored.items(), 0)
    writer.start()
    ctx.counters.set("mapcache.restored", len(restored))

    def sync() -> None:
        """Publish the cache's changes on the Clone stream and save it."""
        now = time.monotonic()
        current = {format_eid(e.eid): _value(e, offset) for e in itr.cache.entries() if e.expires > now}
        changed = False
        for k in [k for k in writer.data if k not in current]:
            writer.delete(k)
            changed = True
        for k, v in current.items():
            if writer.data.get(k) != v:
                writer.set(k, v)
                changed = True
        if changed:
            _save(save_path, writer.data, ctx)
        ctx.counters.set("mapcache.entries", len(current))

    def deliver(eid, body) -> None:
        for reply in waiters.pop(eid, []):
            ctx.bus.publish(reply, "itr.resolved", body)

    def handle_events(events) -> None:
        now = time.monotonic()
        if any(isinstance(ev, (Resolved, Expired)) for ev in events):
            sync()
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
        for eid, reason, detail in itr.refusals:   # LISP-SEC: refused, the cache untouched
            ctx.counters.drop(f"lisp-sec-refused.{reason}", f"{format_eid(eid)} from {src[0]}: {detail}")
        itr.refusals.clear()
        sync()  # a reply may also have refreshed entries no request waited for
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

    def on_miss(_t, _h, body) -> None:
        try:
            eid = parse_eidspec(body["eid"])
        except (KeyError, TypeError, EidSpecError) as exc:
            ctx.counters.drop("bad-miss", repr(exc))
            return
        ctx.counters.inc("dataplane.misses")
        if itr.resolve(eid, time.monotonic()) is not None:
            sync()  # cached here already: make sure the data path has it
            return
        flush()
        wake.set()

    def on_query(_t, _h, body) -> None:
        if isinstance(body, dict) and isinstance(body.get("reply"), str):
            ctx.bus.publish(body["reply"], "itr.answered", {"entries": itr.cache_entries(time.monotonic())})

    mine = {topics.rx_xtr(k, host) for k in (topics.MAP_REQUEST, topics.MAP_REPLY)}

    def on_punt(topic, _h, body) -> None:
        if topic not in mine:
            return   # rx.<type>.<host>: for the ITR of a satellite host
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
    ctx.bus.subscribe(topics.DP_MISS, on_miss)
    for t in sorted(mine):
        ctx.bus.subscribe(t, on_punt)
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


def _value(e: CacheEntry, offset: float) -> dict:
    return {"rlocs": [[format_address(l.address), l.priority, l.weight, bool(l.reachable)]
                      for l in e.locators],
            "action": e.action, "ttl": e.ttl, "expires_at": round(e.expires + offset, 3)}


def _restore(itr: ItrMachine, path: str, offset: float, ctx) -> dict:
    """Load the saved cache into the machine; return the unexpired items."""
    try:
        with open(path, "rb") as f:
            items = msgpack.unpackb(f.read(), raw=False)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, msgpack.ExtraData) as exc:
        ctx.counters.drop("mapcache-unreadable", f"{path}: {exc!r}")
        return {}
    out, entries = {}, []
    mono_now = time.monotonic()
    for k, v in items.items() if isinstance(items, dict) else ():
        try:
            eid = parse_eidspec(k)
            expires = float(v["expires_at"]) - offset
            locs = tuple(Locator(ip_address(a), int(p), int(w), reachable=bool(r)) for a, p, w, r in v["rlocs"])
            entry = CacheEntry(eid, locs, int(v["ttl"]), mono_now, expires, int(v["action"]))
        except (KeyError, TypeError, ValueError, EidSpecError) as exc:
            ctx.counters.drop("mapcache-bad-entry", f"{k!r}: {exc!r}")
            continue
        if expires > mono_now:
            entries.append(entry)
            out[k] = v
    for entry in sorted(entries, key=lambda e: e.eid.length):  # covers first, then what they cap
        itr.cache.put(entry)
    if out:
        ctx.log.info("map-cache: %d entries restored from %s", len(out), path)
    return out


def _save(path: str, data: dict, ctx) -> None:
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(msgpack.packb(dict(data), use_bin_type=True))
        os.replace(tmp, path)
    except OSError as exc:
        ctx.counters.drop("mapcache-save-failed", f"{path}: {exc!r}")


if __name__ == "__main__":
    sys.exit(run_role("itr", main))
