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
import sys
import time
import xmlrpc.client
from typing import Any

from bus import topics
from bus.envelope import Header
from common.machines.liveness import Liveness, RestartDue
from roles.runtime import HEARTBEAT_TYPE, RoleContext, run_role


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


async def main(ctx: RoleContext) -> None:
    timeout = ctx.timer("watchdog_timeout", 10.0)
    interval = ctx.timer("heartbeat_interval", 1.0)
    node = ctx.cfg.node.name
    sock = ctx.endpoints.path("supervisord.sock")
    live: Liveness | None = None

    def on_heartbeat(topic: str, header: Header, body: Any) -> None:
        if header.type != HEARTBEAT_TYPE or live is None:
            return
        key = topics.parse_heartbeat(topic)
        if key is None:
            return
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
    await asyncio.Event().wait()


if __name__ == "__main__":
    sys.exit(run_role("watchdog", main))
