"""The ``map_resolver`` role: N workers sharing UDP 4342 on the node's RLOCs.

Each worker binds every RLOC with SO_REUSEPORT (the kernel spreads flows across
the workers), keeps a full replica of every map_server shard's Clone stream, and
answers ECM Map-Requests in-process with :class:`common.machines.resolver.Resolver`.  All
other message types are punted onto the bus by type (``rx.<type>``; Map-Registers
by shard).  Workers also send what other roles queue for port 4342, each datagram
once.  A worker answers nothing until every shard's replica is in sync.

One node per address: the node takes an exclusive lock per RLOC:port (a file lock
naming the node, in the node's private ``<state_dir>/locks``); a worker started for
another node with the same state directory finds it held and refuses to start.  The
locks are not in a shared directory: there another local user could plant them
(issue 13), and nodes of different users cannot share a port anyway.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import socket
import sys
import time

from bus import topics
from bus.clone import CloneReader
from common.machines.compact import CompactTable
from common.machines.regtable import PrefixSet
from common.machines.etr import eid_contains
from common.machines.fastpath import FastPath
from common.machines.lispsec import MsLispSec
from common.machines.resolver import Drop, Punt, Resolver, Send
from common.machines.uniontable import UnionTable
from roles import fastloop, memtrim
from roles.pullstate import pull_state
from roles.ratetable import RateFileError, open_rate_tables
from roles.runtime import RefuseToStart, RoleContext, host_name, run_role
from roles.hostfiles import UnsafePath, open_private, private_dir
from roles.sites import shard_for, site_lookup
from common.machines.shun import Shun
from roles.kernelshun import KernelShun
from roles.regbatch import RegisterBatcher
from roles.snapgate import SnapshotGate
from roles.udp import handler_error


# drops that say nothing against the sender (our replica is resyncing, the reply's
# destination is over its budget, the serving set is unknown): they never shun it
NOT_THE_SENDERS_FAULT = frozenset({"not-in-sync", "rate-limited-destination", "no-serving-set",
                                   "reply-full", "no-usable-etr-rloc"})


# after a map_server's goodbye (it stops cleanly), its replica answers through this many
# heartbeat periods of silence (the process restarting) instead of stale_heartbeats:
# nothing can change the shard's committed state meanwhile (docs/replica.md)
RESTART_HEARTBEATS = 30


class AddressInUse(Exception):
    pass


def lock_rloc(lock_dir: str, addr: str, port: int, owner: str) -> int:
    """Hold this node's claim on addr:port for the life of the process.

    The lock files live in ``lock_dir`` (the node's private ``<state_dir>/locks``,
    see :func:`roles.hostfiles.private_dir`) and are opened without following a
    symlink (:class:`roles.hostfiles.UnsafePath` otherwise).
    The first worker of a node takes the lock exclusively and writes the node's
    identity, then downgrades to shared; its siblings join with a shared lock after
    checking the identity.  Another node's worker finds a different identity."""
    path = os.path.join(lock_dir, f"{addr.replace(':', '_')}-{port}.lock")
    fd = open_private(path)
    deadline = time.monotonic() + 2.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.pwrite(fd, owner.encode(), 0)
            fcntl.flock(fd, fcntl.LOCK_SH)
            return fd
        except BlockingIOError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            holder = os.pread(fd, 4096, 0).decode(errors="replace")
            if holder == owner:
                return fd
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise AddressInUse(f"{addr}:{port} is held by another node ({holder or 'unknown'})")
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise AddressInUse(f"{addr}:{port} is locked by another node") from None
            time.sleep(0.05)


class Worker(asyncio.DatagramProtocol):
    def __init__(self, ctx: RoleContext, resolver: Resolver, local: str, registers=None) -> None:
        self.ctx, self.resolver, self.local = ctx, resolver, local
        self.registers = registers      # roles.regbatch.RegisterBatcher
        self.shun = Shun()              # common.machines.shun: early drop of flooding sources
        self.kernel = None              # roles.kernelshun.KernelShun on an IPv4 socket
        self.fast = None                # common.machines.fastpath.FastPath (one per process)
        self.transport = None
        # a satellite running an etr/itr punts their datagrams on rx.<type>.<host>
        self.xtr_host = getattr(getattr(ctx.cfg, "bus", None), "xtr_host", None)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            self._datagram(data, addr)
        except Exception as exc:
            handler_error(self.ctx.counters, exc, f"datagram from {addr[0]}")

    def _datagram(self, data: bytes, addr) -> None:
        c = self.ctx.counters
        c.inc("received")
        now = time.monotonic()
        if self.shun.blocked(addr[0], now):   # a source flooding us with what we drop
            c.inc("dropped.shunned")
            if self.kernel is not None and self.kernel.shun(addr[0], now):
                c.inc("shun.kernel")          # from now on dropped before it is queued
            return
        src = (addr[0], addr[1])
        if data and data[0] >> 4 == 3 and self.registers is not None:
            # the edge gate, then batched to the shard
            if not self.registers.offer(data, src, self.local):
                self.shun.bad(addr[0], now)
            return
        if self.fast is not None:       # the common request, from cached reply bytes
            r = self.fast.handle(data, src, self.local, now)
            if r is not None:
                if type(r) is tuple:
                    self.transport.sendto(r[2], (r[0], r[1]))
                    c.inc("answered")
                    c.inc(r[3])
                    c.inc("fastpath.answered")
                else:
                    self._actions((r,), src, now)
                return
        self._actions(self.resolver.handle(data, src, self.local, now), src, now)

    def _actions(self, actions, src: tuple, now: float) -> None:
        c = self.ctx.counters
        for a in actions:
            if isinstance(a, Send):
                self.transport.sendto(a.data, (a.dst, a.port))
                c.inc("answered" if a.what.endswith("reply") else "forwarded")
                c.inc(a.what)
            elif isinstance(a, Punt):
                kind, _, shard = a.kind.partition(".")
                if shard:
                    topic = topics.rx(kind, int(shard))
                elif kind in topics.XTR_KINDS:
                    topic = topics.rx_xtr(kind, self.xtr_host)
                else:
                    topic = topics.rx(kind)
                self.ctx.bus.publish(topic, "datagram.received",
                                     {"data": a.data, "src": list(a.src), "local": self.local})
                c.inc(f"punted.{kind}")
            elif isinstance(a, Drop):
                c.drop(a.reason, f"from {src[0]}:{src[1]}: {a.detail}")
                if a.reason not in NOT_THE_SENDERS_FAULT:
                    self.shun.bad(src[0], now)

    def error_received(self, exc) -> None:
        self.ctx.counters.drop("socket-error", repr(exc))


def lisp_sec_hook(cfg) -> MsLispSec:
    """LISP-SEC (RFC 9303) for the Map-Server treatment: the ITR keys, each site's mode and key."""
    site_of = site_lookup(cfg)

    def site_for(eid):
        site = cfg.site(site_of(eid) or "")
        if site is None:
            return None
        key = next((k for k in site.keys if k.secret is not None), None)
        return site.lisp_sec, (key.secret_bytes if key is not None else None)

    return MsLispSec([k.secret_bytes for k in getattr(cfg.map_resolver, "lisp_sec_keys", ())], site_for)


async def main(ctx: RoleContext) -> None:
    cfg = ctx.cfg
    owner = f"{cfg.node.name} {cfg.node.state_dir}"
    port = cfg.node.control_port
    locks = []
    try:
        lock_dir = private_dir(cfg.state_path("locks"))
        for rloc in cfg.node.rlocs:
            locks.append(lock_rloc(lock_dir, str(rloc), port, owner))
    except (AddressInUse, UnsafePath) as exc:
        raise RefuseToStart(str(exc)) from None
    # one compact replica per map_server shard (common.machines.compact), each swapped
    # in place when a new snapshot is complete (docs/replica.md); lookups see their union
    replicas = [CompactTable() for _ in range(cfg.count("map_server"))]
    table = replicas[0] if len(replicas) == 1 else UnionTable(replicas)
    configured = PrefixSet([p.eid for s in cfg.sites for p in s.prefixes])
    t = cfg.timers
    resolver = Resolver(table, configured, site_of=site_lookup(cfg), shard_for=shard_for(cfg),
                        neg_ttl_non_eid=max(1, round(t.negative_ttl_non_eid / 60)),
                        neg_ttl_unregistered=max(1, round(t.negative_ttl_unregistered / 60)),
                        proxy_ttl=cfg.map_server.proxy_reply_ttl,
                        rate=cfg.map_resolver.rate_limit, burst=cfg.map_resolver.rate_burst,
                        mtu=cfg.map_resolver.path_mtu)
    mr = cfg.map_resolver
    try:   # per-source and per-destination limits shared by every worker (roles/ratetable.py)
        resolver.limiter, resolver.dest_limiter, _rate_map = open_rate_tables(
            cfg.state_path("ratelimit"), mr.rate_slots, mr.rate_limit, mr.rate_burst,
            mr.reply_rate_limit, mr.reply_rate_burst)
    except (OSError, RateFileError) as exc:
        ctx.log.error("refusing to start: rate table %s: %s", cfg.state_path("ratelimit"), exc)
        raise SystemExit(2)
    shards = cfg.count("map_server")
    readers: list[CloneReader] = []
    synced = asyncio.Event()
    pull = pull_state(ctx)
    if pull is not None:
        v = pull.view
        resolver.serves, resolver.forward_to, resolver.neg_floor = v.serves, v.forward_target, v.negative_floor
    resolver.count, resolver.control_port = ctx.counters.inc, port
    resolver.lisp_sec = lisp_sec_hook(cfg)
    fast = (FastPath(resolver, getattr(mr, "answer_cache", 65536))   # [map_resolver] fast_path
            if getattr(mr, "fast_path", True) else None)
    if any(s.lisp_sec == "required" for s in cfg.sites):
        fast = None   # issue 13: S=0 requests for such a site are refused on the full path only
    if cfg.roles.etr and cfg.database_mappings:
        # this node's ETR answers for its own EIDs when the replica holds nothing for them
        own = tuple(m.eid for m in cfg.database_mappings)
        resolver.local_db = lambda eid: any(eid_contains(m, eid) for m in own)

    site_of, shard_of_site = site_lookup(cfg), functools.lru_cache(maxsize=4096)(shard_for(cfg))

    def ready(eid) -> bool:
        """An EID's answer depends on its site's shard (registrations only exist inside
        configured site prefixes, so a non-EID's negative depends on none), and in
        pull mode on the seeds."""
        if pull is not None and not pull.in_sync:
            return False
        site = site_of(eid)
        return site is None or readers[shard_of_site(site)].in_sync

    resolver.ready = ready

    def sync_changed(_arg=None) -> None:
        was = resolver.in_sync
        resolver.in_sync = all(r.in_sync for r in readers) and (pull is None or pull.in_sync)
        if resolver.in_sync != was:
            ctx.log.info("replica %s (%d registrations)", "in sync" if resolver.in_sync else "NOT in sync",
                         len(table))
        ctx.counters.set("in_sync", int(resolver.in_sync))
        ctx.counters.set("registrations", len(table))
        if resolver.in_sync:
            synced.set()

    def on_change(*_args) -> None:    # the reader has changed its replica (store mode)
        ctx.counters.set("registrations", len(table))

    def on_replace(count: int) -> None:
        ctx.log.info("replica swapped in: %d registrations (%d in all)", count, len(table))
        memtrim.trim()     # the old replica's memory back to the system
        on_change()

    def store_of(shard: int):
        """The reader's table factory: the shard's long-lived table first (the one the
        resolver reads), then fresh ones that snapshots fill and it adopts."""
        first = [replicas[shard]]
        return lambda: first.pop() if first else CompactTable()

    # the host's workers fetch a shard's snapshot in turns (roles/snapgate.py: cold start)
    gate = SnapshotGate(lock_dir, getattr(mr, "snapshot_turns", 0) or None)   # [map_resolver] snapshot_turns
    for shard in range(shards):
        r = CloneReader(ctx, topics.ms_stream(shard), on_set=on_change, on_delete=on_change,
                        store=store_of(shard), keep_serving=True, on_replace=on_replace, snapshot_gate=gate,
                        restart_heartbeats=RESTART_HEARTBEATS,
                        on_sync=sync_changed, on_unsync=sync_changed,
                        silent_heartbeats=cfg.map_resolver.stale_heartbeats)
        readers.append(r)
    await ctx.bus.ready(timeout=5.0)
    for r in readers:
        r.start()
    if pull is not None:
        pull.on_sync_changed = sync_changed
        pull.start()
    sync_changed()
    # Bind only once the replica is in sync: until then the kernel keeps sending
    # this address's requests to the sibling workers that can answer them.
    while not synced.is_set():
        try:
            await asyncio.wait_for(synced.wait(), 10.0)
        except asyncio.TimeoutError:
            ctx.log.warning("replica not in sync yet; not serving UDP %d", port)
    loop = asyncio.get_running_loop()
    registers = RegisterBatcher(ctx, cfg)
    use_c = fast is not None and getattr(mr, "fast_path_c", True)   # [map_resolver] fast_path_c
    if use_c and not fastloop.available():
        ctx.log.warning("the C receive loop is not built (%s): the Python fast path serves", fastloop.WHY_NOT)
        use_c = False
    transports, workers = {}, []
    for rloc in cfg.node.rlocs:
        fam = socket.AF_INET6 if rloc.version == 6 else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((str(rloc), port))
        if use_c:   # the C loop reads the socket (roles/fastloop.py); Python gets the rest
            proto = Worker(ctx, resolver, str(rloc), registers)
            proto.fast = fast
            tr, _cloop = fastloop.serve(loop, sock, proto, fast)
        else:
            tr, proto = await loop.create_datagram_endpoint(
                lambda r=str(rloc): Worker(ctx, resolver, r, registers), sock=sock)
        transports[str(rloc)] = tr
        if rloc.version == 4:
            proto.kernel = KernelShun(tr.get_extra_info("socket").fileno())
        proto.fast = fast
        workers.append(proto)
    ctx.log.info("serving UDP %d on %s", port, ", ".join(transports))

    # across hosts, the bus host routes to this worker the datagrams to leave from
    # these addresses (bus.sendq); on one host this changes nothing
    ctx.sendq.serve_from(host_name(cfg), list(transports))
    ctx.every(1.0, ctx.sendq.hello, name="sendq-hello")

    async def send_queued() -> None:
        # a message's datagrams at once (a shard's group commit queues its Map-Notifies
        # as one message), not one loop turn each
        recv_many, inc = ctx.sendq.recv_many, ctx.counters.inc
        while True:
            sent = 0
            for d in await recv_many():
                tr = transports.get(d.src_addr) if d.src_addr else None
                if tr is None:
                    v6 = ":" in d.dst_addr
                    tr = next((x for a, x in transports.items() if (":" in a) == v6), None)
                if tr is None:
                    ctx.counters.drop("sendq-no-socket", f"no RLOC of the family of {d.dst_addr}")
                    continue
                tr.sendto(d.payload, (d.dst_addr, d.dst_port))
                sent += 1
            if sent:
                inc("sendq.sent", sent)

    ctx.spawn(send_queued(), name="sendq")

    def release_shuns() -> None:
        now = time.monotonic()
        for w in workers:
            if w.kernel is not None:
                w.kernel.tick(now)
    ctx.every(0.5, release_shuns, name="shun-release")
    try:
        await asyncio.Event().wait()
    finally:
        for tr in transports.values():
            tr.close()
        for r in readers:
            r.close()
        for fd in locks:
            os.close(fd)


if __name__ == "__main__":
    sys.exit(run_role("map_resolver", main))
