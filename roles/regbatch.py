"""The map_resolver worker's Map-Register edge: gate, then batch to the shards.

Every Map-Register reaching UDP 4342 goes through :class:`RegisterGate` in the
worker (header, per-source budget, site, key, HMAC).  What fails is counted by
reason and dropped here, so a flood of forged or unwanted Map-Registers costs the
shards nothing.  What passes is queued per shard and published as one ``registers.received`` message
(``docs/bus-protocol.md``) at the next loop turn, or up to a millisecond later while
Map-Registers keep coming (:mod:`roles.coalesce`), so the shard commits it as one
group.  A shard that cannot keep up is protected by a bound on
what a worker queues per loop turn: beyond it Map-Registers are shed and counted
(the ETRs retransmit).
"""

from __future__ import annotations

import time

from bus import topics
from common.machines.regedge import RegisterGate
from common.machines.sites import SiteTable
from roles.coalesce import Coalescer
from roles.sites import policies, shard_for

MAX_BATCH = 256          # Map-Registers per bus message
MAX_PENDING = 4096       # per shard per loop turn; beyond: shed


class RegisterBatcher:
    def __init__(self, ctx, cfg) -> None:
        self.ctx = ctx
        self.gate = RegisterGate(SiteTable(policies(cfg)), shard_for(cfg),
                                 rate=cfg.map_server.register_rate, burst=cfg.map_server.register_burst)
        self.pending: dict[int, list] = {}
        self.coalesce = Coalescer(self.flush, time.monotonic)

    def offer(self, data: bytes, src: tuple, local: str | None = None) -> bool:
        """Gate and queue one Map-Register that reached ``local`` (the address its
        Map-Notify must leave from); False when it was dropped."""
        c = self.ctx.counters
        verdict = self.gate.check(data, src, time.monotonic())
        if verdict[0] == "drop":
            c.drop(f"register.{verdict[1]}", f"from {src[0]}:{src[1]}: {verdict[2]}")
            return False
        _, shard, coverage = verdict
        q = self.pending.setdefault(shard, [])
        if len(q) >= MAX_PENDING:
            c.drop("register.shed", f"{len(q)} Map-Registers already queued for shard {shard}")
            return True
        q.append([data, src[0], src[1], coverage, local])
        c.inc("punted.map-register")
        if len(q) >= MAX_BATCH:
            self._flush_shard(shard)
        else:
            self.coalesce.schedule()
        return True

    def flush(self) -> None:
        self.coalesce.flushed()
        for shard in list(self.pending):
            self._flush_shard(shard)

    def _flush_shard(self, shard: int) -> None:
        q = self.pending.pop(shard, None)
        while q:
            chunk, q = q[:MAX_BATCH], q[MAX_BATCH:]
            self.ctx.bus.publish(topics.rx(topics.MAP_REGISTER, shard), "registers.received",
                                 {"batch": chunk})
            self.ctx.counters.inc("register.batches")
