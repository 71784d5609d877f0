"""A node across hosts, seen from the bus host: `decent status` rows of the other
hosts' instances, `decent restart ROLE:N` of one of them, and `decent keygen`.

What the bus host knows of a satellite comes over the bus: every process's
heartbeat (``hb.<role>.<n>``, body ``host``, ``pid``, ``uptime``) and each
satellite watchdog's view of its own supervisord (``hoststatus.<host>``,
``host.status``).  A restart is asked of that host's watchdog on
``ctl.restart.<host>``; it restarts the program through its supervisord and
answers ``restart.done`` on the reply topic.
"""

from __future__ import annotations

import argparse
import socket
import time

import zmq

from bus import envelope
from cli.busquery import _Bus
from cli.common import UserError


def own_host(cfg) -> str:
    return getattr(getattr(cfg, "bus", None), "host", None) or socket.gethostname()


def remote_view(cfg, seconds: float) -> dict:
    """``{(host, "role:n"): row}`` for every instance of another host heard within
    ``seconds``: state (its supervisord's, else ``HEARD``), pid, uptime, last heartbeat
    (seconds ago, None if none was heard)."""
    me = own_host(cfg)
    bus = _Bus(cfg)
    for prefix in ("hb.", "hoststatus."):
        bus.sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
    rows: dict = {}
    deadline = time.monotonic() + seconds
    try:
        while True:
            m = bus.recv(deadline)
            if m is None:
                break
            topic, h, b = m
            if not isinstance(b, dict) or b.get("host") in (None, me):
                continue
            host = str(b["host"])
            if h.type == "host.status" and isinstance(b.get("programs"), dict):
                for key, p in b["programs"].items():
                    r = rows.setdefault((host, key), {"last_heartbeat": None})
                    r.update(state=p.get("state"), pid=p.get("pid"), uptime=p.get("uptime"))
            elif h.type == "role.heartbeat":
                key = f"{h.src.role}:{h.src.instance}"
                r = rows.setdefault((host, key), {"state": "HEARD"})
                r.update(pid=b.get("pid"), uptime=int(b.get("uptime") or 0),
                         last_heartbeat=round(max(0.0, time.time() - h.ts), 1))
    finally:
        bus.close()
    return dict(sorted(rows.items()))


def find_host(cfg, role: str, n: int, seconds: float) -> str | None:
    """The other host running ``role:n`` (from its heartbeats or its watchdog)."""
    for (host, key), _row in remote_view(cfg, seconds).items():
        if key == f"{role}:{n}":
            return host
    return None


def restart(cfg, host: str, role: str, n: int, timeout: float) -> dict:
    """Ask ``host``'s watchdog to restart ``role:n``; its answer (raises UserError).

    The request is re-published every half second until answered (a new publisher's
    first messages are lost while subscriptions propagate); it carries an id, and the
    watchdog acts once per id."""
    bus = _Bus(cfg)
    reply = f"cli.reply.{bus.session}"
    bus.sub.setsockopt(zmq.SUBSCRIBE, reply.encode())
    body = {"role": role, "instance": n, "reply": reply, "req": bus.session}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            bus.pub.send_multipart(envelope.encode(f"ctl.restart.{host}",
                                                   bus.stamper.header("cli.queried"), body))
            step = min(deadline, time.monotonic() + 0.5)
            while True:
                m = bus.recv(step)
                if m is None:
                    break
                _t, h, b = m
                if h.type == "restart.done" and isinstance(b, dict):
                    return b
    finally:
        bus.close()
    raise UserError(f"{role}:{n} on {host}: no answer from its watchdog within {timeout:g} s", 1)


# ---------------------------------------------------------------------------
# decent keygen

def cmd_keygen(args: argparse.Namespace) -> int:
    from bus import curve
    try:
        public, secret = curve.keygen(args.dir, args.name)
    except (OSError, ValueError) as exc:
        raise UserError(f"keygen: {exc}", 1) from None
    print(f"{public}\n{secret} (mode 0600: keep it on this host)")
    with open(public, encoding="ascii") as f:
        print(f"public key: {f.read().strip()}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="write a CURVE key pair for a node across hosts "
                                      "(DIR/NAME.public, DIR/NAME.secret)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--name", default=socket.gethostname().split(".")[0] or "host",
                   help="file name of the pair (default: this host's name)")
    p.set_defaults(func=cmd_keygen)


__all__ = ["find_host", "own_host", "remote_view", "restart", "register"]
