"""Node operation verbs: ``decent up | down | status | restart | logs``.

Every verb takes ``-c FILE``, the node's config; the default is
``configs/appliance.toml`` in the current directory, or the repository's own.
Other verbs that speak to a node reuse :func:`add_config_option` and
:func:`load_config`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from cli import remote, supervise
from cli.common import UserError
from common.config import ROLE_ORDER, ConfigError, NodeConfig
from roles import nodeconf

DEFAULT_CONFIG = os.path.join("configs", "appliance.toml")


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE", default=None,
                        help=f"the node's config (default: {DEFAULT_CONFIG})")


def config_path(args: argparse.Namespace) -> str:
    if args.config:
        return args.config
    if os.path.exists(DEFAULT_CONFIG):
        return DEFAULT_CONFIG
    return str(supervise.REPO_ROOT / DEFAULT_CONFIG)


def load_config(args: argparse.Namespace) -> tuple[NodeConfig, str]:
    """(config, its path); a config error becomes the one-line, exit-2 UserError."""
    path = config_path(args)
    try:
        return nodeconf.load(path), path
    except ConfigError as exc:
        raise UserError(str(exc), 2) from None


def parse_target(cfg: NodeConfig, target: str) -> list[tuple[str, int]]:
    """``ROLE`` (all its instances) or ``ROLE:N`` -> [(role, n), ...]."""
    role, sep, num = target.partition(":")
    if role not in ROLE_ORDER:
        raise UserError(f"unknown role {role!r} (roles: {', '.join(ROLE_ORDER)})", 2)
    here = [n for r, n in cfg.instances() if r == role]   # on this host
    if not here:
        raise UserError(f"node {cfg.node.name!r} does not run {role} on this host (see "
                        f"[roles] or bus.run in {cfg.source})", 2)
    if not sep:
        return [(role, n) for n in here]
    if not num.isdigit() or int(num) not in here:
        raise UserError(f"{target}: no such instance (node {cfg.node.name!r} runs "
                        f"{', '.join(f'{role}:{n}' for n in here)} here)", 2)
    return [(role, int(num))]


def _uptime(info: dict) -> int | None:
    if info.get("statename") != "RUNNING":
        return None
    return max(0, int(info["now"]) - int(info["start"]))


def _fmt_uptime(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{d}d " if d else "") + f"{h}:{m:02}:{s:02}"


def _table(infos: dict) -> str:
    rows = [("INSTANCE", "STATE", "PID", "UPTIME")]
    for key, info in infos.items():
        pid = info["pid"] if info["statename"] == "RUNNING" else "-"
        rows.append((key, info["statename"], str(pid), _fmt_uptime(_uptime(info))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


# ---------------------------------------------------------------------------
# verbs

def cmd_up(args: argparse.Namespace) -> int:
    cfg, path = load_config(args)
    conf, changed = supervise.write_conf(cfg, path)
    running = supervise.supervisord_pid(cfg)
    if running is not None:
        print(f"node {cfg.node.name}: already running (supervisord pid {running})")
    if args.foreground:
        if running is not None:
            return 0
        sys.stdout.flush()
        supervise.exec_supervisord(conf)          # does not return
    if running is None:
        pid = supervise.start_supervisord(cfg, conf)
        print(f"node {cfg.node.name}: supervisord started (pid {pid}, {conf})")
    elif changed:
        supervise.apply_conf_change(cfg)
        print(f"node {cfg.node.name}: configuration reloaded")
    supervise.start_missing(cfg)
    keys = [f"{r}:{n}" for r, n in cfg.instances()]
    infos = supervise.wait_running(cfg, keys, args.timeout)
    print(_table(infos))
    bad = [f"{k} ({infos[k]['statename'] if k in infos else 'NOT LOADED'})"
           for k in keys if infos.get(k, {}).get("statename") != "RUNNING"]
    if bad:
        raise UserError(f"not running after {args.timeout:g} s: {', '.join(bad)}; "
                        f"see `decent logs ROLE -c {path}`", 1)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    cfg, _ = load_config(args)
    pid = supervise.shutdown(cfg, args.timeout)
    if pid is None:
        print(f"node {cfg.node.name}: not running")
    else:
        print(f"node {cfg.node.name}: stopped (supervisord pid {pid} exited)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cfg, _ = load_config(args)
    proxy = supervise.require_running(cfg)
    infos = supervise.group_infos(cfg, proxy)
    others = None
    if getattr(cfg, "bus", None) is not None and cfg.bus.listen is not None:   # a node across hosts
        others = remote.remote_view(cfg, _LISTEN)
    if args.json:
        roles = {k: {"state": i["statename"],
                     "pid": int(i["pid"]) if i["statename"] == "RUNNING" else None,
                     "uptime": _uptime(i)} for k, i in infos.items()}
        doc = {"node": cfg.node.name, "supervisord_pid": int(proxy.supervisor.getPID()),
               "roles": roles}
        if others is not None:
            doc["host"] = remote.own_host(cfg)
            doc["other_hosts"] = [dict(r, instance=k, host=h) for (h, k), r in others.items()]
        print(json.dumps(doc, indent=2))
    else:
        print(f"node {cfg.node.name} (supervisord pid {proxy.supervisor.getPID()}, "
              f"{cfg.node.state_dir})")
        print(_table(infos))
        if others is not None:
            print(f"\nother hosts (heard on the bus within {_LISTEN:g} s):")
            print(remote_table(others))
    return 0


_LISTEN = 2.5   # seconds `decent status` listens for the other hosts' heartbeats


def remote_table(rows: dict) -> str:
    out = [("INSTANCE", "HOST", "STATE", "PID", "UPTIME", "LAST HEARTBEAT")]
    for (host, key), r in rows.items():
        hb = r.get("last_heartbeat")
        out.append((key, host, str(r.get("state") or "-"), str(r.get("pid") or "-"),
                    _fmt_uptime(r.get("uptime")), "-" if hb is None else f"{hb:g} s ago"))
    widths = [max(len(x[i]) for x in out) for i in range(6)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip() for x in out)


def cmd_restart(args: argparse.Namespace) -> int:
    cfg, _ = load_config(args)
    role, _sep, num = args.target.partition(":")
    if getattr(cfg, "bus", None) is not None and cfg.bus.listen is not None and num.isdigit() \
            and (role, int(num)) not in cfg.instances():
        return restart_remote(cfg, role, int(num), args.timeout)
    targets = parse_target(cfg, args.target)
    supervise.require_running(cfg)
    for role, n in targets:
        old, new = supervise.restart_instance(cfg, role, n, args.timeout)
        print(f"{role}:{n}: restarted (pid {old or '-'} -> {new})")
    return 0


def restart_remote(cfg: NodeConfig, role: str, n: int, timeout: float) -> int:
    """`decent restart ROLE:N` on the bus host for an instance of another host: through
    that host's watchdog and supervisord (cli.remote)."""
    supervise.require_running(cfg)
    host = remote.find_host(cfg, role, n, _LISTEN)
    if host is None:
        raise UserError(f"{role}:{n}: not on this host, and no other host reported it on "
                        f"the bus within {_LISTEN:g} s", 2)
    r = remote.restart(cfg, host, role, n, timeout)
    if not r.get("ok"):
        raise UserError(f"restart {role}:{n} on {host}: {r.get('detail')}", 1)
    print(f"{role}:{n}: restarted on {host} (pid {r.get('old_pid') or '-'} -> {r.get('pid')})")
    return 0


def cmd_stop_start(args: argparse.Namespace) -> int:
    """`decent stop ROLE[:N]` / `decent start ROLE[:N]`: for maintenance.  A stopped
    instance stays stopped (supervisord and the watchdog leave it alone) until
    `decent start` or `decent up`."""
    cfg, _ = load_config(args)
    targets = parse_target(cfg, args.target)
    proxy = supervise.require_running(cfg)
    for role, n in targets:
        full = f"{cfg.node.name}:{supervise.program_name(role, n)}"
        try:
            if args.verb == "stop":
                proxy.supervisor.stopProcess(full, True)
            else:
                proxy.supervisor.startProcess(full, True)
        except Exception as exc:  # xmlrpc Fault: NOT_RUNNING, ALREADY_STARTED, ...
            text = getattr(exc, "faultString", repr(exc))
            if "NOT_RUNNING" not in text and "ALREADY_STARTED" not in text:
                raise UserError(f"{args.verb} {role}:{n}: {text}", 1) from None
        print(f"{role}:{n}: {'stopped' if args.verb == 'stop' else 'started'}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    cfg, _ = load_config(args)
    if args.target == "supervisord":
        files = [("supervisord", supervise.supervisord_log(cfg))]
    else:
        files = [(f"{r}:{n}", supervise.instance_log(cfg, r, n))
                 for r, n in parse_target(cfg, args.target)]
    many = len(files) > 1
    for i, (key, path) in enumerate(files):
        if many:
            print(("\n" if i else "") + f"==> {key} <==")
        for line in _tail(path, args.lines):
            sys.stdout.write(line)
    sys.stdout.flush()
    if args.follow:
        _follow(files, many)
    return 0


def _tail(path: str, lines: int) -> list[str]:
    """The last ``lines`` lines of ``path`` (read from the end, not the whole file)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            pos, data = end, b""
            while pos > 0 and data.count(b"\n") <= lines:
                step = min(65536, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    out = data.decode("utf-8", "replace").splitlines(keepends=True)
    return out[-lines:] if lines > 0 else []


def _follow(files: list[tuple[str, str]], prefix: bool) -> None:
    """Print what is appended to ``files`` until interrupted; reopen a rotated file."""
    pos = {path: (os.path.getsize(path) if os.path.exists(path) else 0) for _, path in files}
    while True:
        for key, path in files:
            try:
                size = os.path.getsize(path)
            except FileNotFoundError:
                continue
            if size < pos[path]:
                pos[path] = 0  # rotated or truncated
            if size == pos[path]:
                continue
            with open(path, "rb") as f:
                f.seek(pos[path])
                chunk = f.read(size - pos[path])
            cut = chunk.rfind(b"\n") + 1  # whole lines only
            pos[path] += cut
            for line in chunk[:cut].decode("utf-8", "replace").splitlines(keepends=True):
                sys.stdout.write(f"{key}: {line}" if prefix else line)
        sys.stdout.flush()
        time.sleep(0.25)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start the node (supervisord and every role)")
    add_config_option(p)
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for every role to be RUNNING (default 30)")
    p.add_argument("--foreground", action="store_true",
                   help="become supervisord, in the foreground (for systemd); it exits "
                        "on SIGTERM or `decent down`")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop every role and supervisord")
    add_config_option(p)
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for supervisord to exit (default 60)")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="every process instance: state, pid, uptime")
    add_config_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("restart", help="restart ROLE (one instance at a time) or ROLE:N")
    add_config_option(p)
    p.add_argument("target", metavar="ROLE[:N]")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for each instance to be RUNNING again (default 30)")
    p.set_defaults(func=cmd_restart)

    for verb, text in (("stop", "stop ROLE or ROLE:N (it stays stopped until `decent start`)"),
                       ("start", "start ROLE or ROLE:N again")):
        p = sub.add_parser(verb, help=text)
        add_config_option(p)
        p.add_argument("target", metavar="ROLE[:N]")
        p.set_defaults(func=cmd_stop_start)

    p = sub.add_parser("logs", help="tail the log of ROLE[:N] (or 'supervisord')")
    add_config_option(p)
    p.add_argument("target", metavar="ROLE[:N]")
    p.add_argument("-n", "--lines", type=int, default=50, help="lines to show (default 50)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.set_defaults(func=cmd_logs)
