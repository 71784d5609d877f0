"""The ``dataplane`` role: LISP-Decent push-mode replication (owner of UDP 4341).

* A Map-Register the ETR addresses to the group G (``dp.replicate``) is sent once per
  member RLOC, LISP-data-encapsulated (IID 0xFFFFFF, inner destination G, UDP 4341).
* A replicated Map-Register received on 4341 is decapsulated and handed to the local
  ``map_server`` shard as if it had arrived on 4342; it is never replicated again.
  Only from a current member or a seed (a non-member may only announce its own
  membership); the registrant is an RLOC of the Map-Register's own records, not the
  inner source (:func:`common.decent.push.replica_verdict`).
* The member list is the merged RLE of the group EID in the node's own registration
  table (replicated from the map_server shards), plus what a lookup of the group at
  the seeds or members last returned.  The group is looked up every
  ``decent.membership_interval`` (every second until the first answer).
* Late joiners: a member serves its stored Map-Registers over ZeroMQ CURVE on
  ``decent.snapshot_port``; a node that joins asks a member once and feeds each
  Map-Register to its own Map-Server, which verifies it like a fresh registration.

With ``[[dataplane.interface]]`` configured the role is also the node's LISP data
path (RFC 9300, :mod:`roles.tun`): packets from the TUN devices are encapsulated to
the RLOCs of the map-cache replicated from the ``itr``, LISP data packets on 4341
are decapsulated to the TUNs; only IID 0xFFFFFF traffic reaches push replication.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys
import time
from ipaddress import ip_address

import msgpack
import zmq

from bus import topics
from bus.aio import AsyncSocket
from bus.clone import CloneReader
from common.wire.datahdr import decapsulate_replica, encapsulate_replica
from common.wire.errors import DecodeError
from common.machines.itr import build_map_request_ecm
from common.wire.messages import MapReply, decode_message
from common.decent.push import HeldReplicas, group_eid, members_from_reply, members_of, replica_verdict
from common.machines.regtable import RegistrationTable
from roles.runtime import RoleContext, run_role
from roles.sites import shard_for, site_lookup
from roles.tun import DataPathShell
from roles.udp import guarded, open_sockets

REPLICATE_TOPIC = topics.DP_REPLICATE
QUERY_TOPIC = topics.DP_QUERY
SNAPSHOT_VERSION = b"decent-snapshot-2"   # [[Map-Register, seconds left], ...]


def curve_keys(secret_z85: str) -> tuple[bytes, bytes]:
    secret = secret_z85.encode()
    return zmq.curve_public(secret), secret


class _Data(asyncio.DatagramProtocol):
    def __init__(self, on_datagram) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data, addr) -> None:
        self.on_datagram(data, addr)


async def main(ctx: RoleContext) -> None:
    cfg = ctx.cfg
    push = cfg.decent.push
    dpc = cfg.dataplane
    if push is None:
        if dpc is not None and dpc.interfaces:
            return await data_path_only(ctx)
        ctx.log.error('decent.mode is "%s", not "push", and no [[dataplane.interface]]: '
                      'nothing to do', cfg.decent.mode)
        await asyncio.Event().wait()
    shell = DataPathShell(ctx, dpc) if dpc is not None and dpc.interfaces else None
    group = ip_address(str(push.group))
    geid = group_eid(push.iid, group)
    mine = [r for r in cfg.node.rlocs if r.version == group.version] or list(cfg.node.rlocs)
    my_rloc = str(mine[0])
    own = {str(r) for r in cfg.node.rlocs}
    table = RegistrationTable()
    looked_up: set[str] = set()
    state = {"members": [], "lookups": 0, "last_lookup": None, "snapshot": None}
    held = HeldReplicas(max_age=cfg.timers.register_interval)
    site_of, shard_of_site = site_lookup(cfg), shard_for(cfg)

    def recompute(*_a) -> None:
        members = set(members_of(table.exact(geid))) | looked_up | {my_rloc}
        new = sorted(members, key=lambda a: (ip_address(a).version, int(ip_address(a))))
        if new != state["members"]:
            added = sorted(set(new) - set(state["members"]))
            ctx.log.info("members of %s: %s", group, ", ".join(new))
            state["members"] = new
            if added:  # the ETR re-registers at once, so new members learn our mappings
                ctx.bus.publish(topics.DP_MEMBERS, "members.changed", {"members": new, "added": added})
                # and what they replicated before we knew them is taken now
                for sender, reg in held.release(added, time.monotonic()):
                    count_released(take_replica(reg, sender))
        ctx.counters.set("members", len(new))

    def on_set(k, v) -> None:
        table.set(k, v)
        recompute()

    def on_delete(k) -> None:
        table.delete(k)
        recompute()

    readers = [CloneReader(ctx, topics.ms_stream(i), on_set=on_set, on_delete=on_delete)
               for i in range(cfg.count("map_server"))]

    # -- UDP 4341 --------------------------------------------------------------------
    def punt_register(reg: bytes, src: tuple, how: str, remaining: float | None = None) -> bool:
        """Hand a Map-Register to the local map_server shard of its site (with the
        lifetime it has left, for a snapshot entry)."""
        try:
            msg = decode_message(reg)
            site = next((s for s in (site_of(r.prefix) for r in msg.records) if s), None)
        except (DecodeError, ValueError, AttributeError):
            ctx.counters.drop(f"{how}-malformed", f"from {src[0]}")
            return False
        shard = shard_of_site(site) if site else 0
        body = {"data": reg, "src": [src[0], src[1]], "local": my_rloc, "via": how}
        if remaining is not None:
            body["remaining"] = remaining
        ctx.bus.publish(topics.rx(topics.MAP_REGISTER, shard), "datagram.received", body)
        return True

    def on_data(data: bytes, addr) -> None:
        ctx.counters.inc("received")
        if shell is not None and shell.on_datagram(data, addr):
            return
        try:
            _h, ip, reg = decapsulate_replica(data)
        except DecodeError as exc:
            ctx.counters.drop(f"decap.{exc.field}", f"from {addr[0]}: {exc}")
            return
        # any group: a core seed-group member also stores its layers' memberships;
        # the Map-Server accepts only what its sites allow
        if not ip.dst.is_multicast:
            ctx.counters.drop("not-a-group", f"{ip.dst} from {addr[0]}")
            return
        # only from members and seeds; the registrant (and Map-Notify destination) from
        # the Map-Register's records, not from the inner source the sender chose
        sender = str(ip_address(addr[0]))
        if sender not in state["members"] and held.holds(sender) and _announces_membership(reg):
            # a joiner's own announcement while we hold its earlier replicas: they go
            # first, in nonce order (its registrations share one nonce sequence, and
            # the Map-Server refuses an older nonce after a newer one, strict)
            return take_joiner(sender, reg)
        why = take_replica(reg, sender)
        if why == "replica-not-member":
            # perhaps a member we do not know yet: held until it is (HeldReplicas)
            held.hold(sender, reg, time.monotonic())
            ctx.counters.inc("replicas.held")
        if why:
            ctx.counters.drop(why, f"from {sender} (inner source {ip.src})")

    def take_joiner(sender: str, announcement: bytes) -> None:
        """A joiner's membership announcement and what it replicated before we knew it,
        in nonce order; the held ones judged as a member's only if the announcement
        itself is taken (a joiner's is accepted naming exactly its sender)."""
        if take_replica(announcement, sender, probe=True):
            ctx.counters.drop("replica-not-member", f"from {sender}")
            return
        regs = [reg for _s, reg in held.release([sender], time.monotonic())] + [announcement]
        regs.sort(key=lambda r: int.from_bytes(r[4:12], "big"))
        for reg in regs:
            why = take_replica(reg, sender, members=[*state["members"], sender])
            if reg is not announcement:
                count_released(why)

    def count_released(why: str) -> None:
        """A held replica handed on: taken, or refused (and why)."""
        ctx.counters.inc("replicas.released" if not why else f"replicas.released-refused.{why}")

    def take_replica(reg: bytes, sender: str, members=None, probe: bool = False) -> str:
        """Hand a replicated Map-Register from ``sender`` to the Map-Server if
        :func:`replica_verdict` accepts it (``members``: the member list to judge by,
        default the current one; ``probe``: judge only); the reason it is refused, else ""."""
        try:
            registrant, why = replica_verdict(decode_message(reg), sender,
                                              state["members"] if members is None else members,
                                              [str(x) for x in push.seed_rlocs])
        except (DecodeError, ValueError, AttributeError):
            return "replica-malformed"
        if registrant is None or probe:
            return why
        if punt_register(reg, (registrant, 4342), "replica"):
            ctx.counters.inc("replicas.received")
        return ""

    loop = asyncio.get_running_loop()
    data_tr = {}
    for r in cfg.node.rlocs:
        fam = socket.AF_INET6 if r.version == 6 else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        sock.bind((str(r), cfg.node.data_port))
        tr, _ = await loop.create_datagram_endpoint(lambda: _Data(guarded(on_data, ctx.counters)), sock=sock)
        data_tr[r.version] = tr
    if shell is not None:
        shell.start({v: tr.get_extra_info("socket") for v, tr in data_tr.items()})

    def on_replicate(_t, _h, body) -> None:
        state["replicate_seen"] = True
        try:
            reg, sport = bytes(body["data"]), int(body.get("sport", 4342))
        except (KeyError, TypeError, ValueError):
            ctx.counters.drop("bad-replicate-request", "")
            return
        # membership announcements go to the seeds too: a joiner's must reach someone
        # who knows the group, and a core seed-group stores its layers' members.
        # Every register of this node takes this one path, so each destination sees
        # this xTR's nonces in order.
        targets = list(state["members"])
        if _announces_membership(reg):
            targets += [str(x) for x in push.seed_rlocs]
        for m in dict.fromkeys(targets):
            a = ip_address(m)
            src = next((r for r in cfg.node.rlocs if r.version == a.version), None)
            tr = data_tr.get(a.version)
            if src is None or tr is None or a.version != group.version:  # inner and outer: one family
                ctx.counters.drop("member-unreachable", m)
                continue
            tr.sendto(encapsulate_replica(reg, src, group, sport), (m, cfg.node.data_port))
            ctx.counters.inc("replicas.sent")
        ctx.counters.inc("replicated")

    # -- looking the group up ------------------------------------------------------------
    pending: dict[int, float] = {}

    def on_ctl(data: bytes, src) -> None:
        try:
            msg = decode_message(data)
        except DecodeError:
            ctx.counters.drop("lookup-reply-malformed", src[0])
            return
        if not isinstance(msg, MapReply) or msg.nonce not in pending:
            ctx.counters.drop("lookup-reply-unexpected", src[0])
            return
        pending.pop(msg.nonce, None)
        found = set(members_from_reply(msg.records))
        state["lookups"] += 1
        state["last_lookup"] = time.time()
        if found:
            looked_up.clear()
            looked_up.update(found)
            recompute()
            joined.set()

    ctl = await open_sockets([ip_address(my_rloc)], on_ctl, ctx.counters)
    ctl_tr = next(iter(ctl.values()))
    ctl_port = ctl_tr.get_extra_info("sockname")[1]

    def ask() -> None:
        targets = [str(s) for s in push.seed_rlocs] + [m for m in state["members"] if m not in own]
        targets = list(dict.fromkeys(t for t in targets if t not in own))
        for t in targets[:3]:
            nonce = secrets.randbits(64)
            pending[nonce] = time.monotonic()
            ctl_tr.sendto(build_map_request_ecm(geid, nonce, (ip_address(my_rloc),), ctl_port),
                          (t, cfg.node.control_port))
        if len(pending) > 1000:
            pending.clear()

    joined = asyncio.Event()

    async def lookups() -> None:
        delay = 1.0
        while True:
            ask()
            try:
                await asyncio.wait_for(joined.wait(), delay)
                break
            except asyncio.TimeoutError:
                delay = min(delay * 2, push.membership_interval)
        while True:
            await asyncio.sleep(push.membership_interval)
            ask()

    # -- snapshots over CURVE ------------------------------------------------------------
    async def stored_registers() -> list:
        """[Map-Register, seconds left] for every stored registration, from the shards
        themselves (the store does not know how long a refreshed entry has left)."""
        n = cfg.count("map_server")
        reply = f"dp.snap.{ctx.session}.{time.monotonic_ns()}"
        got: dict[int, list] = {}
        done = asyncio.Event()

        def on_raw(_t, _h, body) -> None:
            if isinstance(body, dict) and isinstance(body.get("registers"), list):
                got[int(body.get("shard", 0))] = body["registers"]
                if len(got) >= n:
                    done.set()
        sub = ctx.bus.subscribe(reply, on_raw)
        try:
            ctx.bus.publish("ms.query", "ms.query", {"reply": reply, "raw": True})
            try:
                await asyncio.wait_for(done.wait(), 5.0)
            except asyncio.TimeoutError:
                ctx.counters.drop("snapshot-shard-silent", f"{n - len(got)} shard(s) did not answer")
        finally:
            sub.cancel()
        return [r for regs in got.values() for r in regs]

    async def serve_snapshots(public: bytes, secret: bytes) -> None:
        sock = ctx.zmq.socket(zmq.ROUTER)
        sock.curve_server = True
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ZAP_DOMAIN, b"decent")
        sock.setsockopt(zmq.IPV6, 1)
        sock.bind(f"tcp://{_tcp_host(my_rloc)}:{push.snapshot_port}")
        asock = AsyncSocket(sock)
        try:
            while True:
                frames = await asock.recv_multipart()
                if len(frames) != 2 or frames[1] != SNAPSHOT_VERSION:
                    ctx.counters.drop("bad-snapshot-request", f"{len(frames)} frames")
                    continue
                regs = await stored_registers()
                await asock.send_multipart([frames[0], SNAPSHOT_VERSION, msgpack.packb(regs)])
                ctx.counters.inc("snapshots.served")
        finally:
            asock.close(0)

    async def fetch_snapshot(public: bytes, secret: bytes) -> None:
        await joined.wait()
        sources = [m for m in state["members"] if m not in own] + [str(s) for s in push.seed_rlocs]
        for member in [m for m in dict.fromkeys(sources) if m not in own]:
            sock = ctx.zmq.socket(zmq.DEALER)
            sock.curve_serverkey = public
            sock.curve_publickey, sock.curve_secretkey = public, secret
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.IPV6, 1)
            sock.connect(f"tcp://{_tcp_host(member)}:{push.snapshot_port}")
            asock = AsyncSocket(sock)
            try:
                await asock.send_multipart([SNAPSHOT_VERSION])
                frames = await asyncio.wait_for(asock.recv_multipart(), 5.0)
                regs = msgpack.unpackb(frames[1]) if len(frames) == 2 and frames[0] == SNAPSHOT_VERSION else None
                if not isinstance(regs, list):
                    ctx.counters.drop("bad-snapshot", member)
                    continue
                regs = {bytes(r[0]): float(r[1]) for r in regs
                        if isinstance(r, (list, tuple)) and len(r) == 2 and isinstance(r[0], (bytes, bytearray))
                        and len(r[0]) >= 12 and isinstance(r[1], (int, float))}
                # oldest nonce first, so each registrant's entries pass its Map-Server's
                # nonce check in order; each keeps the lifetime it had at the member
                fed = sum(punt_register(r, (member, 4342), "snapshot", remaining=regs[r])
                          for r in sorted(regs, key=lambda r: int.from_bytes(r[4:12], "big")))
                state["snapshot"] = {"from": member, "registers": len(regs), "at": time.time()}
                ctx.counters.inc("snapshot.registers", fed)
                ctx.log.info("joined with a snapshot of %d Map-Registers from %s", len(regs), member)
                return
            except (asyncio.TimeoutError, zmq.ZMQError, ValueError, msgpack.ExtraData) as exc:
                ctx.counters.drop("snapshot-failed", f"{member}: {exc!r}")
            finally:
                asock.close(0)

    def on_query(_t, _h, body) -> None:
        if isinstance(body, dict) and isinstance(body.get("reply"), str):
            ctx.bus.publish(body["reply"], "dp.answered",
                            {"group": str(group), "iid": push.iid, "members": state["members"],
                             "registered": members_of(table.exact(geid)), "looked_up": sorted(looked_up),
                             "lookups": state["lookups"], "last_lookup": state["last_lookup"],
                             "snapshot": state["snapshot"]})

    ctx.bus.subscribe(REPLICATE_TOPIC, on_replicate)
    ctx.bus.subscribe(QUERY_TOPIC, on_query)
    await ctx.bus.ready(timeout=5.0)
    for r in readers:
        r.start()
    recompute()
    if push.curve_secret:
        pub, sec = curve_keys(push.curve_secret)
        auth = _start_authenticator(ctx, pub)  # noqa: F841 - keep it alive with the role
        ctx.spawn(serve_snapshots(pub, sec), name="snapshot-server")
        if push.snapshot_on_join:
            ctx.spawn(fetch_snapshot(pub, sec), name="snapshot-fetch")
    ctx.spawn(lookups(), name="lookups")

    async def hello() -> None:
        """The ETR may have published its first Map-Registers before this process
        subscribed (ZeroMQ's slow joiner): until one arrives, say every second that the
        group's members are new to us, which makes the ETR register again at once
        (three times at least: the first thing to arrive may be only its membership)."""
        for i in range(30):
            await asyncio.sleep(1.0)
            if state.get("replicate_seen") and i >= 3:
                return
            ctx.bus.publish(topics.DP_MEMBERS, "members.changed",
                            {"members": state["members"], "added": state["members"]})
    ctx.spawn(hello(), name="hello")
    try:
        await asyncio.Event().wait()
    finally:
        for tr in data_tr.values():
            tr.close()
        ctl_tr.close()
        if shell is not None:
            shell.close()


async def data_path_only(ctx: RoleContext) -> None:
    """The data path without push replication (decent.mode "none" or "pull")."""
    cfg = ctx.cfg
    shell = DataPathShell(ctx, cfg.dataplane)
    loop = asyncio.get_running_loop()

    def on_data(data: bytes, addr) -> None:
        ctx.counters.inc("received")
        if not shell.on_datagram(data, addr):
            ctx.counters.drop("mapping-system-not-push", f"IID 0xFFFFFF from {addr[0]}")

    transports = {}
    for r in cfg.node.rlocs:
        fam = socket.AF_INET6 if r.version == 6 else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        sock.bind((str(r), cfg.node.data_port))
        tr, _ = await loop.create_datagram_endpoint(lambda: _Data(guarded(on_data, ctx.counters)), sock=sock)
        transports[r.version] = tr
    await ctx.bus.ready(timeout=5.0)
    shell.start({v: tr.get_extra_info("socket") for v, tr in transports.items()})
    try:
        await asyncio.Event().wait()
    finally:
        for tr in transports.values():
            tr.close()
        shell.close()


def _announces_membership(reg: bytes) -> bool:
    try:
        msg = decode_message(reg)
        return any(r.prefix.is_multicast for r in msg.records)
    except (DecodeError, ValueError, AttributeError):
        return False


def _tcp_host(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr


def _start_authenticator(ctx, public: bytes):
    """Only peers holding the members' CURVE key may fetch a snapshot (ZAP, in a
    thread: the role's ZeroMQ context is a plain one)."""
    from zmq.auth.thread import ThreadAuthenticator
    auth = ThreadAuthenticator(ctx.zmq)
    auth.start()

    def allowed(domain, key) -> bool:
        return key == public
    auth.configure_curve_callback(domain="decent", credentials_provider=_Provider(allowed))
    return auth


class _Provider:
    def __init__(self, check) -> None:
        self.check = check

    def callback(self, domain, key) -> bool:
        return self.check(domain, key)


if __name__ == "__main__":
    sys.exit(run_role("dataplane", main))
