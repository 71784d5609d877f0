"""The ``etr`` role: registers the node's database mappings and answers for them.

Thin shell over :class:`common.machines.etr.EtrMachine`.  Map-Registers leave from the ETR's
own socket and the acknowledging Map-Notify comes back there.  Map-Requests for
its EIDs reach it over the bus: ECMs with E=1 (``rx.ecm-etr``) and RLOC-probes
(``rx.map-request``), both punted by the map_resolver workers; its authoritative
Map-Replies leave from port 4342 through the send queue.  On a satellite host
(``bus.run`` has ``etr:N``) it takes those topics qualified by its host
(``rx.ecm-etr.<host>``, ...): the datagrams that reached that host's UDP 4342, never
another ETR's of the node (docs/bus-protocol.md section 7).  The first nonce is
time-based, so nonces keep increasing across restarts and a ``strict`` Map-Server
accepts a restarted ETR at once.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import replace
from ipaddress import ip_address
from types import SimpleNamespace

from bus import topics
from common.wire.ecm import Ecm
from common.machines.lispsec import LispSecError, etr_open
from common.wire.errors import DecodeError
from common.machines.etr import EtrMachine
from common.wire.messages import MapRequest, decode_message
from common.decent.push import membership_register
from roles.pullstate import pull_state
from roles.runtime import RoleContext, run_role
from roles.udp import open_sockets, send


class Machines:
    """The node's EtrMachine, or in pull mode one per index (each registering that
    index's mappings to that index's DNS set), sharing one nonce counter."""

    def __init__(self, cfg, pull) -> None:
        self.cfg, self.pull = cfg, pull
        start = time.time_ns()
        self._nonce = start

        def next_nonce() -> int:
            self._nonce += 1
            return self._nonce

        common = dict(own_rlocs=cfg.node.rlocs, xtr_id=cfg.node.xtr_id, site_id=cfg.node.site_id,
                      timers=cfg.timers, nonce_source=next_nonce)
        self.next_nonce = next_nonce
        if cfg.decent.mode == "push":
            # Map-Registers go to the group: the dataplane replicates them to every
            # member; no Map-Notify (one per member would come back)
            maps = [replace(m, want_map_notify=False) for m in cfg.database_mappings]
            group = SimpleNamespace(address=ip_address(str(cfg.decent.push.group)),
                                    port=cfg.node.control_port, key=cfg.etr.decent_key)
            self.by_index = {None: EtrMachine(maps, (group,), **common)}
        elif pull is None:
            self.by_index = {None: EtrMachine(cfg.database_mappings, cfg.etr.map_servers, **common)}
        else:
            groups: dict = {}
            for m in cfg.database_mappings:
                groups.setdefault(pull.view.index(m.eid), []).append(m)
            self.by_index = {i: EtrMachine(ms, (), **common) for i, ms in groups.items()}

    def all(self):
        return self.by_index.values()

    def refs(self, index: int) -> list:
        key = self.cfg.etr.decent_key
        port = self.cfg.node.control_port
        return [SimpleNamespace(address=ip_address(a), port=port, key=key)
                for a in self.pull.view.sets.get(index, ())]

    def sets_changed(self, now: float) -> None:
        for i, m in self.by_index.items():
            m.set_map_servers(self.refs(i), now, withdraw=True)

    def handle_map_notify(self, data, src, now) -> bool:
        return any(m.handle_map_notify(data, src[0], src[1], now) for m in self.all())

    def handle_map_request(self, req, reply_to, now, local, lisp_sec=None):
        for m in self.all():
            out = m.handle_map_request(req, reply_to, now, local_addr=local, lisp_sec=lisp_sec)
            if out is not None:
                return out
        return None


async def main(ctx: RoleContext) -> None:
    cfg = ctx.cfg
    wake = asyncio.Event()
    pull = pull_state(ctx, on_change=lambda old, new: (etrs.sets_changed(time.monotonic()), wake.set()))
    etrs = Machines(cfg, pull)

    def on_datagram(data: bytes, src) -> None:
        if data[:1] and data[0] >> 4 == 4:
            if etrs.handle_map_notify(data, src, time.monotonic()):
                ctx.counters.inc("map-notify.accepted")
            else:
                ctx.counters.drop("map-notify-rejected", f"from {src[0]}:{src[1]}")
            wake.set()
        else:
            ctx.counters.drop("unexpected-datagram", f"type {data[0] >> 4 if data else '-'} from {src[0]}")

    socks = await open_sockets(cfg.node.rlocs, on_datagram, ctx.counters)

    etr_port = next(iter(socks.values())).get_extra_info("sockname")[1]

    def flush() -> None:
        for etr in etrs.all():
            for dst, port, data in etr.datagrams_to_send():
                if ip_address(str(dst)).is_multicast:  # push mode: to the group
                    ctx.bus.publish(topics.DP_REPLICATE, "register.sent", {"data": data, "sport": etr_port})
                    ctx.counters.inc("replicate.requested")
                else:
                    send(socks, str(dst), port, data, ctx.counters)

    push = cfg.decent.push if cfg.decent.mode == "push" else None
    announce = asyncio.Event()

    def on_members(_t, _h, body) -> None:
        now = time.monotonic()
        for etr in etrs.all():
            etr.register_now(now)
        announce.set()
        flush()
        ctx.counters.inc("members-changed")

    async def membership() -> None:
        """Push mode: announce this node as a member of the group, to the group (the
        dataplane replicates it), to the seeds, and to itself (bootstrap)."""
        t = cfg.timers
        rloc = next((r for r in cfg.node.rlocs if r.version == push.group.version), cfg.node.rlocs[0])
        await asyncio.sleep(0.2)  # let the dataplane's subscription settle
        key = cfg.etr.decent_key
        started = time.monotonic()
        while True:
            reg = membership_register(push.iid, push.group, rloc, nonce=etrs.next_nonce(),
                                      key_id=key.key_id, alg_id=key.alg_id, secret=key.secret_bytes,
                                      xtr_id=cfg.node.xtr_id, site_id=cfg.node.site_id, lifetime=False)
            # to the group, the seeds and ourselves: the dataplane sends it on the same
            # path as our other Map-Registers, so nonces arrive in order
            ctx.bus.publish(topics.DP_REPLICATE, "register.sent", {"data": reg, "sport": etr_port})
            ctx.counters.inc("membership.sent")
            fast = time.monotonic() - started < t.fast_period
            announce.clear()
            try:  # next period, or at once when the group gained members
                await asyncio.wait_for(announce.wait(),
                                       t.register_interval_fast if fast else t.register_interval)
            except asyncio.TimeoutError:
                pass

    # LISP-SEC (RFC 9303): the MS-OTK comes wrapped with our Map-Server key
    sec_keys = [k.secret_bytes for k in [s.key for s in cfg.etr.map_servers] + [cfg.etr.decent_key]
                if k is not None and k.secret is not None]

    def answer(req: MapRequest, reply_to, local=None, lisp_sec=None) -> None:
        out = etrs.handle_map_request(req, reply_to, time.monotonic(), local, lisp_sec)
        if out is None:
            ctx.counters.drop("map-request-not-ours", str(req.records[0].prefix) if req.records else "")
            return
        dst, port, data = out
        ctx.sendq.send(str(dst), port, data, src_addr=local)
        ctx.counters.inc("answered")

    host = getattr(getattr(cfg, "bus", None), "xtr_host", None)
    mine = {topics.rx_xtr(k, host) for k in (topics.ECM_ETR, topics.MAP_REQUEST, topics.MAP_NOTIFY)}

    def on_punt(topic, _h, body) -> None:
        if topic not in mine:
            return   # rx.<type>.<host>: for the ETR of a satellite host
        ctx.counters.inc("received")
        try:
            data, src, local = bytes(body["data"]), tuple(body["src"]), body.get("local")
            msg = decode_message(data)
        except (KeyError, TypeError, ValueError, DecodeError) as exc:
            ctx.counters.drop("bad-punt", f"{topic}: {exc}")
            return
        if isinstance(msg, Ecm) and isinstance(msg.inner, MapRequest):
            sec = None
            if msg.auth is not None:
                try:
                    sec = etr_open(data, msg.auth, sec_keys)
                except LispSecError as exc:
                    if exc.reason != "ecm-eid-ad-empty":   # that one: not via a Map-Server; plain reply
                        ctx.counters.drop(f"lisp-sec.{exc.reason}", str(exc))
                        return
            answer(msg.inner, (str(msg.ip.src), msg.ip.sport), local, sec)
        elif isinstance(msg, MapRequest) and msg.probe:
            answer(msg, src, local)
        elif isinstance(msg, MapRequest):
            pass  # SMRs are the ITR's
        elif topic.startswith(topics.rx(topics.MAP_NOTIFY)):
            etrs.handle_map_notify(data, src, time.monotonic())
            wake.set()

    def on_query(_t, _h, body) -> None:
        if isinstance(body, dict) and isinstance(body.get("reply"), str):
            servers = {}
            for m in etrs.all():
                servers.update(m.status())
            ctx.bus.publish(body["reply"], "etr.answered", {"servers": servers})

    for t in sorted(mine):
        ctx.bus.subscribe(t, on_punt)
    ctx.bus.subscribe("etr.query", on_query)
    await ctx.bus.ready(timeout=5.0)
    now = time.monotonic()
    for etr in etrs.all():
        etr.start(now)
    if pull is not None:
        pull.start()
    if push is not None:
        ctx.bus.subscribe(topics.DP_MEMBERS, on_members)
        ctx.spawn(membership(), name="membership")
    flush()
    while True:
        timers = [t for t in (m.next_timer() for m in etrs.all()) if t is not None]
        nxt = min(timers) if timers else None
        delay = 1.0 if nxt is None else max(0.0, nxt - time.monotonic())
        wake.clear()
        try:
            await asyncio.wait_for(wake.wait(), min(delay, 1.0))
        except asyncio.TimeoutError:
            pass
        now = time.monotonic()
        totals: dict = {}
        for etr in etrs.all():
            etr.handle_timer(now)
            for k, v in etr.counters.items():
                totals[k] = totals.get(k, 0) + v
        flush()
        for k, v in totals.items():
            ctx.counters.set(k, v)


if __name__ == "__main__":
    sys.exit(run_role("etr", main))
