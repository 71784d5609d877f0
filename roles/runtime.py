"""The thin shell every role process runs in.

A role is ``async def main(ctx: RoleContext)`` plus one line::

    if __name__ == "__main__":
        sys.exit(run_role("etr", main))

:func:`run_role` parses ``-c/--config FILE --instance N [--log-level L]``, loads the
node config (a bad one prints one line on stderr and exits 2), logs to stderr as
``<role>:<instance>`` in ``node.log_format`` (text or JSON lines, :mod:`roles.logfmt`), runs ``main`` on uvloop with the bus receive loop, a
heartbeat on ``hb.<role>.<instance>`` every ``timers.heartbeat_interval`` seconds
(pid, session, uptime, counters) and the drop-log flush around it.  SIGTERM and
SIGINT cancel ``main`` and the process exits 0; ``main`` raising, or a task started
with :meth:`RoleContext.spawn`/:meth:`RoleContext.every` failing, exits 1 so
supervisord restarts the role.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine

import uvloop
import zmq

from bus import topics
from bus.client import BusClient
from bus.counters import RoleCounters
from bus.endpoints import EndpointError, Endpoints
from bus.endpoints import for_config as endpoints_for
from bus.envelope import Stamper
from bus.sendq import SendQueue
from roles.logfmt import make_logger
from roles.hostfiles import PRIVATE_UMASK, UnsafePath, private_dir

HEARTBEAT_TYPE = "role.heartbeat"


class RefuseToStart(Exception):
    """Raised by a role's ``main`` for a condition it must not run under (a lock
    held by another node, an unsafe file): logged as one line, exit status 2."""


@dataclass
class RoleContext:
    """What a role's ``main`` gets.  See the module docstring of :mod:`roles.runtime`."""

    cfg: Any                 # roles.nodeconf NodeConfig
    role: str
    instance: int
    session: str             # random per process start
    log: logging.Logger
    endpoints: Endpoints
    zmq: zmq.Context
    bus: BusClient
    sendq: SendQueue
    counters: RoleCounters
    started: float           # time.monotonic() at start
    _tasks: set[asyncio.Task] = field(default_factory=set, repr=False)
    _on_fatal: Callable[[str], None] = field(default=lambda why: None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.role}:{self.instance}"

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def timer(self, name: str, default: float) -> float:
        """``cfg.timers.<name>`` in seconds, or ``default`` when the config has none."""
        timers = getattr(self.cfg, "timers", None)
        if isinstance(timers, dict):
            return float(timers.get(name, default))
        return float(getattr(timers, name, default))

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task:
        """Run ``coro`` for the life of the role; if it raises, the role exits 1.
        Cancelling the returned task is a normal way to stop it."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def every(self, interval: float, fn: Callable[[], Awaitable[None] | None], *,
              name: str | None = None, first: float | None = None) -> asyncio.Task:
        """Call ``fn`` (sync or async) every ``interval`` seconds, first after ``first``
        (default: ``interval``).  A raising ``fn`` makes the role exit 1."""
        async def loop() -> None:
            await asyncio.sleep(interval if first is None else first)
            while True:
                r = fn()
                if inspect.isawaitable(r):
                    await r
                await asyncio.sleep(interval)
        return self.spawn(loop(), name=name or getattr(fn, "__name__", "periodic"))

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.log.error("task %s failed: %r", task.get_name(), exc, exc_info=exc)
            self._on_fatal(f"task {task.get_name()} failed")

    def heartbeat_body(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "session": self.session, "uptime": round(self.uptime(), 3),
                "node": getattr(getattr(self.cfg, "node", None), "name", None),
                "host": host_name(self.cfg),
                "interval": self.timer("heartbeat_interval", 1.0),
                "counters": self.counters.snapshot()}

    def publish_heartbeat(self) -> None:
        self.bus.publish(topics.heartbeat(self.role, self.instance), HEARTBEAT_TYPE,
                         self.heartbeat_body())


def host_name(cfg: Any) -> str:
    """The host this process runs on, as heartbeats name it: ``bus.host`` or the
    host's name."""
    bus = getattr(cfg, "bus", None)
    return getattr(bus, "host", None) or socket.gethostname()


def load_config(path: str) -> Any:
    """The node config via :func:`roles.nodeconf.load` (raises ConfigError)."""
    from roles import nodeconf
    return nodeconf.load(path)


def _parse_args(role: str, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"roles.{role}")
    parser.add_argument("-c", "--config", required=True, help="the node's TOML file")
    parser.add_argument("--instance", type=int, default=0, help="instance number (0-based)")
    parser.add_argument("--log-level", default=None,
                        help="debug, info, warning, error (default: node.log_level)")
    return parser.parse_args(argv)


def run_role(role: str, main: Callable[[RoleContext], Awaitable[None]],
             argv: list[str] | None = None) -> int:
    """Run one role process; returns the exit status (0 clean, 1 crashed, 2 bad config)."""
    args = _parse_args(role, argv)
    from common.config import ROLE_ORDER, ConfigError
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"{role}: {exc}", file=sys.stderr)
        return 2
    if role in ROLE_ORDER and (role, args.instance) not in cfg.instances():
        print(f"{role}: {args.config}: instance {args.instance} not configured "
              f"(this host runs {', '.join(f'{r}:{n}' for r, n in cfg.instances() if r == role) or 'none'})",
              file=sys.stderr)
        return 2
    level = args.log_level or getattr(cfg.node, "log_level", "info")
    log = make_logger(role, args.instance, level, getattr(cfg.node, "log_format", "text"),
                      cfg.node.name)
    os.umask(PRIVATE_UMASK)   # what the role creates is the node's alone (roles.hostfiles)
    try:
        endpoints = endpoints_for(cfg)     # a satellite's bus is the bus host's (TCP, CURVE)
        private_dir(endpoints.state_dir)
    except ConfigError as exc:
        print(f"{role}: {exc}", file=sys.stderr)
        return 2
    except UnsafePath as exc:
        print(f"{role}: {args.config}: node.state_dir: {exc}", file=sys.stderr)
        return 2
    except EndpointError as exc:
        print(f"{role}: {args.config}: node.state_dir: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{role}: {args.config}: node.state_dir: cannot create {cfg.node.state_dir}: "
              f"{exc.strerror}", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_amain(role, args.instance, cfg, log, endpoints, main))


async def _amain(role: str, instance: int, cfg: Any, log: logging.Logger,
                 endpoints: Endpoints, main: Callable[[RoleContext], Awaitable[None]]) -> int:
    loop = asyncio.get_running_loop()
    session = secrets.token_hex(8)
    zctx = zmq.Context()
    counters = RoleCounters(log)
    bus = BusClient(zctx, endpoints, Stamper(role, instance, session), counters, log)
    sendq = SendQueue(zctx, endpoints, counters)
    ctx = RoleContext(cfg, role, instance, session, log, endpoints, zctx, bus, sendq, counters,
                      time.monotonic())
    why: list[str] = []
    main_task: asyncio.Task | None = None

    def stop(reason: str) -> None:
        if not why:
            why.append(reason)
        if main_task is not None:
            main_task.cancel()

    ctx._on_fatal = stop
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, signal.Signals(sig).name)
    log.info("starting (pid %d, session %s, state_dir %s)", os.getpid(), session,
             endpoints.state_dir)
    ctx.spawn(bus.run(), name="bus-recv")
    ctx.every(ctx.timer("heartbeat_interval", 1.0), ctx.publish_heartbeat, name="heartbeat",
              first=0.0)
    ctx.every(1.0, counters.flush, name="drop-log")
    main_task = loop.create_task(main(ctx), name="main")
    status = 0
    try:
        await asyncio.wait([main_task])
        if main_task.cancelled():
            status = 0 if why and why[0].startswith("SIG") else 1
        elif isinstance(main_task.exception(), RefuseToStart):
            log.error("refusing to start: %s", main_task.exception())
            why.append("refused to start")
            status = 2
        elif main_task.exception() is not None:
            exc = main_task.exception()
            log.error("main failed: %r", exc, exc_info=exc)
            status = 1
        elif why and not why[0].startswith("SIG"):
            status = 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        tasks = list(ctx._tasks)
        ctx._on_fatal = lambda _why: None
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sendq.close()
        bus.close()
        zctx.destroy(linger=0)
    log.info("stopped (%s, exit %d)", why[0] if why else "main returned", status)
    return status
