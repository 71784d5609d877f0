"""The ``watchdog`` role: restarts a role instance that stopped heartbeating.

Like FRR's watchfrr.  Supervisord restarts a process that *exits*; this catches the
one that hangs.  It listens to ``hb.`` on the bus, feeds :class:`common.machines.liveness.Liveness`
(the decision, pure), and when an instance that was heartbeating has been silent
for ``timers.watchdog_timeout`` seconds asks supervisord what it knows, over its
XML-RPC interface on ``<state_dir>/supervisord.sock``
(program ``<node name>:<role>_<instance>``):

- RUNNING: hung; stop it (supervisord escalates to SIGKILL after stopwaitsecs) and
  start it again.  Backoff doubles per consecutive attempt (10 s .. 5 min).
- STARTING, BACKOFF, STOPPING: supervisord is already on it; count silence anew.
- STOPPED, EXITED: stopped on purpose; forget it until it heartbeats again.
- FATAL: supervisord gave up after startretries; start it (with backoff).
- not a supervisord program, or supervisord unreachable: logged, backoff applies.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import sys
import time
import xmlrpc.client
from typing import Any

from bus import topics
from bus.envelope import Header
from common.machines.liveness import Liveness, RestartDue
from roles.runtime import HEARTBEAT_TYPE, RoleContext, host_name, run_role

RESTART_TOPIC = "ctl.restart"   # ctl.restart.<host>: `decent restart` of another host's role
HOST_STATUS_TOPIC = "hoststatus"  # hoststatus.<host>: a satellite's supervisord view


def supervisor_proxy(socket_path: str) -> Any:
    """An XML-RPC proxy to the supervisord listening on the unix socket ``socket_path``."""
    from supervisor.xmlrpc import SupervisorTransport
    transport = SupervisorTransport(None, None, serverurl="unix://" + socket_path)
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def program_name(node: str, role: str, instance: int) -> str:
    return f"{node}:{role}_{instance}"


def act(rpc: Any, name: str, due: RestartDue) -> tuple[str, str]:
    """Do what supervisord's state calls for; returns (outcome, detail).

    outcome is ``restarted``, ``started`` (supervisord is starting it), ``forget``
    or ``failed``.  Blocking: run it in a thread.
    """
    try:
        info = rpc.supervisor.getProcessInfo(name)
    except xmlrpc.client.Fault as exc:
        return "failed", f"supervisord: {exc.faultString}"
    except Exception as exc:  # socket errors, HTTP errors: all mean "cannot ask"
        return "failed", f"supervisord unreachable: {exc!r}"
    state = info.get("statename", "UNKNOWN")
    try:
        if state == "RUNNING":
            rpc.supervisor.stopProcess(name, True)
            rpc.supervisor.startProcess(name, False)
            return "restarted", f"was RUNNING as pid {info.get('pid')}"
        if state == "FATAL":
            rpc.supervisor.startProcess(name, False)
            return "restarted", "was FATAL (supervisord had given up)"
        if state in ("STARTING", "BACKOFF", "STOPPING"):
            return "started", f"supervisord reports {state}"
        return "forget", f"supervisord reports {state}"
    except xmlrpc.client.Fault as exc:
        return "failed", f"supervisord: {exc.faultString} (state was {state})"
    except Exception as exc:
        return "failed", f"supervisord unreachable: {exc!r}"


def host_programs(rpc: Any, node: str) -> dict:
    """``{"role:n": {"state", "pid", "uptime"}}`` of this host's supervisord (blocking);
    empty when it cannot be asked."""
    try:
        infos = rpc.supervisor.getAllProcessInfo()
    except Exception:
        return {}
    out = {}
    for i in infos:
        if i.get("group") != node:
            continue
        role, _, n = i["name"].rpartition("_")
        running = i.get("statename") == "RUNNING"
        out[f"{role}:{n}"] = {"state": i.get("statename"), "pid": i.get("pid") if running else None,
                              "uptime": max(0, int(i["now"]) - int(i["start"])) if running else None}
    return out


def restart_program(rpc: Any, name: str) -> dict:
    """Stop (if running) and start supervisord program ``name``; blocking."""
    try:
        info = rpc.supervisor.getProcessInfo(name)
        if info.get("statename") in ("RUNNING", "STARTING", "BACKOFF"):
            rpc.supervisor.stopProcess(name, True)
        rpc.supervisor.startProcess(name, True)
        new = rpc.supervisor.getProcessInfo(name)
        return {"ok": True, "old_pid": info.get("pid") or None, "pid": new.get("pid"),
                "state": new.get("statename")}
    except xmlrpc.client.Fault as exc:
        return {"ok": False, "detail": f"supervisord: {exc.faultString}"}
    except Exception as exc:
        return {"ok": False, "detail": f"supervisord unreachable: {exc!r}"}


async def on_restart(ctx: RoleContext, sock: str, _topic: str, header: Header, body: Any) -> None:
    """A restart asked over the bus (``decent restart`` on the bus host) of one of this
    host's instances: done through this host's supervisord, answered on ``reply``."""
    try:
        role, n, reply = str(body["role"]), int(body["instance"]), topics.join(body["reply"])
    except (KeyError, TypeError, ValueError):
        ctx.counters.drop("bad-restart-request", repr(body)[:80])
        return
    req = str(body.get("req", ""))
    if req and req in _DONE:
        return   # a re-sent request, already being acted on
    if req:
        _DONE.append(req)
    if (role, n) not in ctx.cfg.instances() or role == "watchdog":
        ctx.bus.publish(reply, "restart.done", {"ok": False, "role": role, "instance": n,
                                                "detail": f"{role}:{n} does not run on this host"})
        return
    name = program_name(ctx.cfg.node.name, role, n)
    ctx.log.warning("restarting %s: asked over the bus by %s:%d", name, header.src.role,
                    header.src.instance)
    result = await asyncio.to_thread(restart_program, supervisor_proxy(sock), name)
    ctx.counters.inc("watchdog.remote_restarts")
    ctx.bus.publish(reply, "restart.done", dict(result, role=role, instance=n,
                                                host=host_name(ctx.cfg)))


_DONE: collections.deque = collections.deque(maxlen=64)   # request ids acted on


async def main(ctx: RoleContext) -> None:
    timeout = ctx.timer("watchdog_timeout", 10.0)
    interval = ctx.timer("heartbeat_interval", 1.0)
    node = ctx.cfg.node.name
    sock = ctx.endpoints.path("supervisord.sock")
    live: Liveness | None = None
    host = host_name(ctx.cfg)
    bus_cfg = getattr(ctx.cfg, "bus", None)
    satellite = bus_cfg is not None and bus_cfg.satellite
    if bus_cfg is not None and bus_cfg.tcp:
        ctx.bus.subscribe(topics.join(RESTART_TOPIC, host), functools.partial(on_restart, ctx, sock))

    def on_heartbeat(topic: str, header: Header, body: Any) -> None:
        if header.type != HEARTBEAT_TYPE or live is None:
            return
        key = topics.parse_heartbeat(topic)
        if key is None:
            return
        hb_host = body.get("host") if isinstance(body, dict) else None
        if hb_host not in (None, host) and key[0] != "bus":
            return   # another host's role: its own host's watchdog restarts it
        pid = body.get("pid") if isinstance(body, dict) else None
        if live.heartbeat(key[0], key[1], header.src.session, pid, time.monotonic()):
            ctx.log.info("now watching %s:%d (pid %s)", key[0], key[1], pid)

    ctx.bus.subscribe(topics.HEARTBEAT + ".", on_heartbeat)
    if not await ctx.bus.ready(timeout=5.0):
        ctx.log.warning("the bus is not answering yet; watching anyway")
    # silence counts from here: the start-up of the others is not silence
    live = Liveness(time.monotonic(), timeout=timeout, backoff=timeout,
                    backoff_max=max(300.0, timeout), stable=max(60.0, 6 * timeout),
                    path_gap=min(3 * interval, timeout),
                    ignore=((ctx.role, ctx.instance),))
    ctx.log.info("watching heartbeats: restart after %.1f s of silence via %s", timeout, sock)

    async def check() -> None:
        assert live is not None
        for due in live.due(time.monotonic()):
            if satellite and due.role == "bus":
                # the bus runs on the bus host; its silence here is a cut link: ZeroMQ
                # reconnects by itself, the workers keep their bounded-stale replicas
                live.started(due.role, due.instance, time.monotonic())
                ctx.counters.inc("watchdog.bus_unreachable")
                ctx.log.warning("no heartbeat from the bus host for %.1f s; waiting for the "
                                "link (not restarting anything)", due.silent_for)
                continue
            name = program_name(node, due.role, due.instance)
            outcome, detail = await asyncio.to_thread(act, supervisor_proxy(sock), name, due)
            now = time.monotonic()
            if outcome == "restarted":
                nxt = live.restarted(due.role, due.instance, now)
                ctx.counters.inc("watchdog.restarts")
                ctx.log.warning("restarted %s: no heartbeat for %.1f s (%s); attempt %d, "
                                "no new attempt for %.0f s", name, due.silent_for, detail,
                                due.attempt, nxt - now)
            elif outcome == "started":
                live.started(due.role, due.instance, now)
                ctx.log.info("%s silent for %.1f s, but %s: waiting", name, due.silent_for,
                             detail)
            elif outcome == "forget":
                live.forget(due.role, due.instance)
                ctx.log.info("%s silent for %.1f s and %s: no longer watched until it "
                             "heartbeats again", name, due.silent_for, detail)
            else:
                nxt = live.restarted(due.role, due.instance, now)
                ctx.counters.inc("watchdog.restart_failures")
                ctx.log.error("cannot restart %s (silent %.1f s): %s; retrying in %.0f s",
                              name, due.silent_for, detail, nxt - now)

    ctx.every(min(1.0, timeout / 4), check, name="watchdog-check")
    if satellite:
        status_topic = topics.join(HOST_STATUS_TOPIC, host)

        async def host_status() -> None:
            programs = await asyncio.to_thread(host_programs, supervisor_proxy(sock), node)
            ctx.bus.publish(status_topic, "host.status", {"host": host, "programs": programs})
        ctx.every(interval, host_status, name="host-status", first=0.0)
    await asyncio.Event().wait()


if __name__ == "__main__":
    sys.exit(run_role("watchdog", main))
