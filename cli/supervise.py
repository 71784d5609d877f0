"""supervisord for one node: rendering its configuration and talking to it.

Everything of a node lives under its ``node.state_dir``, so several nodes on one
host never collide::

    <state_dir>/supervisord.conf    rendered by render()/write_conf()
    <state_dir>/supervisord.sock    XML-RPC (unix socket, mode 0700)
    <state_dir>/supervisord.pid
    <state_dir>/supervisord.log
    <state_dir>/logs/<role>_<n>.log one per process instance, stdout and stderr

Each role instance is the program ``<role>_<n>`` in the group named after the
node, started as ``<python> -m roles.<role> -c <config> --instance <n>`` from the
repository root.  The control functions raise :class:`cli.common.UserError`
(status 1) when supervisord cannot be reached or does not do what was asked.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from cli.common import UserError
from common.config import ROLE_ORDER, NodeConfig
from roles.hostfiles import (PRIVATE_UMASK, UnsafePath, check_private_file, private_dir,
                             write_private)

REPO_ROOT = Path(__file__).resolve().parents[1]

STARTSECS = 1          # running this long counts as started
STARTRETRIES = 1000    # supervisord gives up after this many quick failures in a row
RPC_TIMEOUT = 60.0     # socket timeout; longer than any wait=True call we make
UNIX_PATH_MAX = 107    # sun_path, minus the NUL


# ---------------------------------------------------------------------------
# names and paths

def program_name(role: str, n: int) -> str:
    return f"{role}_{n}"


def instance_key(program: str) -> str:
    """``map_resolver_1`` -> ``map_resolver:1`` (the name operators and JSON use)."""
    role, _, n = program.rpartition("_")
    return f"{role}:{n}"


def conf_path(cfg: NodeConfig) -> str:
    return cfg.state_path("supervisord.conf")


def socket_path(cfg: NodeConfig) -> str:
    return cfg.state_path("supervisord.sock")


def pid_path(cfg: NodeConfig) -> str:
    return cfg.state_path("supervisord.pid")


def log_dir(cfg: NodeConfig) -> str:
    return cfg.state_path("logs")


def instance_log(cfg: NodeConfig, role: str, n: int) -> str:
    return cfg.state_path("logs", f"{program_name(role, n)}.log")


def supervisord_log(cfg: NodeConfig) -> str:
    return cfg.state_path("supervisord.log")


# ---------------------------------------------------------------------------
# rendering

def _esc(value: str) -> str:
    """supervisord expands %(name)s in most values: keep a literal '%'."""
    return value.replace("%", "%%")


def render(cfg: NodeConfig, config_path: str, python: str | None = None) -> str:
    """The supervisord.conf text for ``cfg`` (read from ``config_path``)."""
    config_path = os.path.abspath(config_path)
    python = python or sys.executable
    sock = socket_path(cfg)
    if len(sock) > UNIX_PATH_MAX:
        raise UserError(f"{cfg.source}: node.state_dir: too long for a unix socket path "
                        f"({len(sock)} > {UNIX_PATH_MAX} characters with /supervisord.sock)")
    name = cfg.node.name
    out = [
        f"; Rendered by `decent up` from {config_path}; edits here are overwritten.",
        f"; Node {name!r}: {len(cfg.instances())} process instances.",
        "",
        "[unix_http_server]",
        f"file={_esc(sock)}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"identifier=decent-{name}",
        f"pidfile={_esc(pid_path(cfg))}",
        f"logfile={_esc(supervisord_log(cfg))}",
        "logfile_maxbytes=10MB",
        "logfile_backups=3",
        "loglevel=info",
        "umask=077",
        f"childlogdir={_esc(log_dir(cfg))}",
        f"directory={_esc(cfg.node.state_dir)}",
        "nodaemon=false",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_esc(sock)}",
        "",
    ]
    programs = []
    for role, n in cfg.instances():
        prog = program_name(role, n)
        programs.append(prog)
        command = " ".join(shlex.quote(a) for a in (
            python, "-m", f"roles.{role}", "-c", config_path, "--instance", str(n)))
        logfile = _esc(instance_log(cfg, role, n))
        out += [
            f"[program:{prog}]",
            f"command={_esc(command)}",
            f"directory={_esc(str(REPO_ROOT))}",
            f"priority={100 * (ROLE_ORDER.index(role) + 1)}",
            "autostart=true",
            "autorestart=true",
            "umask=077",
            f"startsecs={STARTSECS}",
            f"startretries={STARTRETRIES}",
            "stopsignal=TERM",
            f"stopwaitsecs={cfg.timers.stop_wait}",   # SIGTERM, then SIGKILL to the group
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={logfile}",
            "stdout_logfile_maxbytes=10MB",
            "stdout_logfile_backups=3",
            f'environment=PYTHONUNBUFFERED="1",DECENT_NODE="{_esc(name)}",'
            f'DECENT_INSTANCE="{role}:{n}"',
            "",
        ]
    out += [f"[group:{name}]", f"programs={','.join(programs)}", ""]
    return "\n".join(out)


def write_conf(cfg: NodeConfig, config_path: str) -> tuple[str, bool]:
    """Render into ``<state_dir>/supervisord.conf``; return (path, whether it changed)."""
    text = render(cfg, config_path)
    path = conf_path(cfg)
    try:   # 0700, ours, no symlinks, whatever the umask (roles.hostfiles)
        private_dir(cfg.node.state_dir)
        private_dir(log_dir(cfg))
        check_private_file(path)
    except UnsafePath as exc:
        raise UserError(f"{cfg.source}: node.state_dir: {exc}", 1) from None
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return path, False
    except FileNotFoundError:
        pass
    write_private(path, text.encode("utf-8"))
    return path, True


# ---------------------------------------------------------------------------
# XML-RPC

class _Transport(SupervisorTransport):
    """SupervisorTransport over the unix socket, with a socket timeout."""

    def __init__(self, sock: str, timeout: float) -> None:
        super().__init__(None, None, f"unix://{sock}")
        base = self._get_connection

        def get_connection():
            conn = base()
            connect = conn.connect

            def connect_with_timeout():
                connect()
                conn.sock.settimeout(timeout)
            conn.connect = connect_with_timeout
            return conn
        self._get_connection = get_connection


def rpc(cfg: NodeConfig, timeout: float = RPC_TIMEOUT) -> xmlrpc.client.ServerProxy:
    """An XML-RPC proxy to this node's supervisord (not checked until first use)."""
    return xmlrpc.client.ServerProxy("http://127.0.0.1",
                                     transport=_Transport(socket_path(cfg), timeout))


def supervisord_pid(cfg: NodeConfig) -> int | None:
    """The pid of this node's supervisord if it answers on its socket, else None."""
    if not os.path.exists(socket_path(cfg)):
        return None
    try:
        proxy = rpc(cfg, timeout=5.0)
        if proxy.supervisor.getState()["statename"] not in ("RUNNING", "RESTARTING"):
            return None
        ident = proxy.supervisor.getIdentification()
        if ident != f"decent-{cfg.node.name}":
            raise UserError(f"{socket_path(cfg)} belongs to {ident!r}, not node "
                            f"{cfg.node.name!r}: two nodes share a state_dir", 1)
        return int(proxy.supervisor.getPID())
    except (OSError, xmlrpc.client.Error):
        return None


def require_running(cfg: NodeConfig) -> xmlrpc.client.ServerProxy:
    if supervisord_pid(cfg) is None:
        raise UserError(f"node {cfg.node.name!r} is not running (no supervisord on "
                        f"{socket_path(cfg)}); start it with `decent up -c {cfg.source}`", 1)
    return rpc(cfg)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a daemon's parent may not reap)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:][:1] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


def start_supervisord(cfg: NodeConfig, conf: str, timeout: float = 15.0) -> int:
    """Start supervisord as a daemon and wait until it answers; return its pid."""
    exe = Path(sys.executable).with_name("supervisord")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "supervisor.supervisord"]
    proc = subprocess.run(argv + ["-c", conf], cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, umask=PRIVATE_UMASK)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise UserError(f"supervisord failed to start (status {proc.returncode})"
                        + (f": {detail[-1]}" if detail else ""), 1)
    if not wait_until(lambda: supervisord_pid(cfg) is not None, timeout):
        raise UserError(f"supervisord did not answer on {socket_path(cfg)} within {timeout:g} s; "
                        f"see {supervisord_log(cfg)}", 1)
    return supervisord_pid(cfg) or 0


def _supervisord_argv() -> list[str]:
    exe = Path(sys.executable).with_name("supervisord")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "supervisor.supervisord"]


def exec_supervisord(conf: str) -> None:
    """Replace this process by supervisord in the foreground (``-n``), so that a
    service manager supervises supervisord itself: SIGTERM stops every role and
    supervisord, and so does `decent down` (over XML-RPC).  Does not return."""
    argv = _supervisord_argv() + ["-n", "-c", conf]
    os.chdir(REPO_ROOT)
    os.umask(PRIVATE_UMASK)   # supervisord applies umask=077 only when it daemonizes
    os.execv(argv[0], argv)


def apply_conf_change(cfg: NodeConfig) -> None:
    """Like `supervisorctl update`: reload the rendered file, replace changed groups."""
    proxy = rpc(cfg)
    added, changed, removed = proxy.supervisor.reloadConfig()[0]
    for group in removed + changed:
        proxy.supervisor.stopProcessGroup(group, True)
        proxy.supervisor.removeProcessGroup(group)
    for group in changed + added:
        proxy.supervisor.addProcessGroup(group)


def group_infos(cfg: NodeConfig, proxy: xmlrpc.client.ServerProxy | None = None) -> dict:
    """``{"role:n": supervisord process info}`` for this node's group, in start order."""
    proxy = proxy or rpc(cfg)
    infos = {instance_key(i["name"]): i for i in proxy.supervisor.getAllProcessInfo()
             if i["group"] == cfg.node.name}
    order = {f"{r}:{n}": k for k, (r, n) in enumerate(cfg.instances())}
    return dict(sorted(infos.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def start_missing(cfg: NodeConfig) -> None:
    """Start every program of the group that is neither running nor on its way."""
    proxy = rpc(cfg)
    for key, info in group_infos(cfg, proxy).items():
        if info["statename"] in ("STOPPED", "EXITED", "FATAL"):
            try:
                proxy.supervisor.startProcess(f"{cfg.node.name}:{info['name']}", False)
            except xmlrpc.client.Fault as exc:
                if "ALREADY_STARTED" not in exc.faultString:
                    raise UserError(f"cannot start {key}: {exc.faultString}", 1) from None


def wait_running(cfg: NodeConfig, keys: list[str], timeout: float) -> dict:
    """Wait until every instance in ``keys`` is RUNNING; return the last infos seen."""
    last: dict = {}

    def all_running() -> bool:
        nonlocal last
        last = group_infos(cfg)
        return all(last.get(k, {}).get("statename") == "RUNNING" for k in keys)
    wait_until(all_running, timeout, 0.2)
    return last


def shutdown(cfg: NodeConfig, timeout: float) -> int | None:
    """Stop every program (the watchdog first) and supervisord; wait for its pid to exit.

    Returns the pid that exited, or None if supervisord was not running.
    """
    pid = supervisord_pid(cfg)
    if pid is None:
        remove_tun_devices(cfg)
        return None
    proxy = rpc(cfg)
    # The watchdog first, so it does not restart what is being stopped.
    for key, info in group_infos(cfg, proxy).items():
        if key.startswith("watchdog:") and info["statename"] in ("RUNNING", "STARTING",
                                                                  "BACKOFF"):
            try:
                proxy.supervisor.stopProcess(f"{cfg.node.name}:{info['name']}", True)
            except xmlrpc.client.Fault:
                pass  # already stopped meanwhile
    try:
        proxy.supervisor.shutdown()
    except (OSError, xmlrpc.client.Error):
        pass  # it may close the connection while shutting down
    if not wait_until(lambda: not pid_alive(pid), timeout, 0.1):
        raise UserError(f"supervisord (pid {pid}) still running after {timeout:g} s; "
                        f"see {supervisord_log(cfg)}", 1)
    remove_tun_devices(cfg)
    return pid


def remove_tun_devices(cfg: NodeConfig) -> list[str]:
    """Delete the data path's persistent TUN devices (and so their routes)."""
    names = cfg.dataplane.tun_names() if cfg.dataplane is not None and cfg.roles.dataplane else []
    gone = []
    for name in names:
        r = subprocess.run(["ip", "link", "del", "dev", name], capture_output=True, timeout=10)
        if r.returncode == 0:
            gone.append(name)
    return gone


def restart_instance(cfg: NodeConfig, role: str, n: int, timeout: float) -> tuple[int, int]:
    """Stop then start ``role:n``, waiting until RUNNING; return (old pid, new pid)."""
    proxy = rpc(cfg)
    full = f"{cfg.node.name}:{program_name(role, n)}"
    key = f"{role}:{n}"
    try:
        info = proxy.supervisor.getProcessInfo(full)
    except xmlrpc.client.Fault as exc:
        raise UserError(f"{key}: not known to supervisord ({exc.faultString}); "
                        f"run `decent up` to load the current config", 1) from None
    old = int(info["pid"])
    try:
        if info["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
            proxy.supervisor.stopProcess(full, True)
        proxy.supervisor.startProcess(full, False)
    except xmlrpc.client.Fault as exc:
        raise UserError(f"restart {key}: {exc.faultString}", 1) from None
    infos = wait_running(cfg, [key], timeout)
    now = infos.get(key, {})
    if now.get("statename") != "RUNNING":
        raise UserError(f"restart {key}: {now.get('statename', 'UNKNOWN')} after {timeout:g} s; "
                        f"see `decent logs {key} -c {cfg.source}`", 1)
    return old, int(now["pid"])
