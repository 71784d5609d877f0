"""Reading the node's TOML file: the I/O half of :mod:`common.config`.

:func:`load` is what every role and CLI verb calls; :func:`role_main_args` is the
command line every role process is started with by supervisord
(``python -m roles.<role> -c <config> --instance <n>``).
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
import tomllib

from common.config import ROLE_ORDER, ConfigError, NodeConfig, parse_config

_TOML_POS = re.compile(r"\s*\(at (line \d+, column \d+|end of document)\)\s*$")


def load(path: str | os.PathLike) -> NodeConfig:
    """Read and validate the node config at ``path``.

    Relative paths inside the file resolve against the file's directory.  Every
    problem, including a missing file and TOML syntax errors (with line and
    column), raises :class:`~common.config.ConfigError`.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError("", "no such file", source) from None
    except OSError as exc:
        raise ConfigError("", f"cannot read: {exc.strerror or exc}", source) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not UTF-8 (byte {exc.start})", source) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_POS.search(msg)
        if m:
            where = m.group(1).replace("end of document", "end of file")
            raise ConfigError(where, f"TOML syntax: {msg[:m.start()]}", source) from None
        raise ConfigError("", f"TOML syntax: {msg}", source) from None
    base_dir = os.path.dirname(os.path.abspath(source))
    try:
        resolve_secrets(data, base_dir)
    except ConfigError as exc:
        raise ConfigError(exc.key_path, exc.reason, source) from None
    cfg = parse_config(data, source, base_dir)
    if getattr(cfg, "bus", None) is not None and cfg.bus.tcp:   # CURVE key files, read now: fail at start
        from bus import curve
        try:
            curve.load(cfg.bus)
        except ConfigError as exc:
            raise ConfigError(exc.key_path, exc.reason, source) from None
    return cfg


# ---------------------------------------------------------------------------
# secrets kept out of the main file

SECRET_KEYS = ("secret", "secret_file", "secret_env")


def _key_tables(data: dict) -> list[tuple[dict, str]]:
    """Every key table of the document, with its key path."""
    out: list[tuple[dict, str]] = []
    sites = data.get("site")
    for i, site in enumerate(sites if isinstance(sites, list) else ()):
        keys = site.get("key") if isinstance(site, dict) else None
        for j, k in enumerate(keys if isinstance(keys, list) else ()):
            if isinstance(k, dict):
                out.append((k, f"site[{i}].key[{j}]"))
    etr = data.get("etr")
    if isinstance(etr, dict):
        servers = etr.get("map_servers")
        for i, m in enumerate(servers if isinstance(servers, list) else ()):
            if isinstance(m, dict):
                out.append((m, f"etr.map_servers[{i}]"))
        if isinstance(etr.get("decent_key"), dict):
            out.append((etr["decent_key"], "etr.decent_key"))
    itr = data.get("itr")   # LISP-SEC key-wrap keys (issue 13)
    if isinstance(itr, dict) and isinstance(itr.get("lisp_sec_key"), dict):
        out.append((itr["lisp_sec_key"], "itr.lisp_sec_key"))
    mr = data.get("map_resolver")
    keys = mr.get("lisp_sec_keys") if isinstance(mr, dict) else None
    for i, k in enumerate(keys if isinstance(keys, list) else ()):
        if isinstance(k, dict):
            out.append((k, f"map_resolver.lisp_sec_keys[{i}]"))
    return out


def _read_secret_file(value: object, path: str, base_dir: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(path, "expected a file name")
    fname = os.path.join(base_dir, value)
    try:
        fd = os.open(fname, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(path, f"cannot read {fname}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o044:
            raise ConfigError(path, f"{fname} is readable by group or others (mode "
                                    f"{mode:04o}); chmod 600 it")
        raw = f.read(65537)
    try:
        secret = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError(path, f"{fname} is not UTF-8") from None
    if not secret or len(raw) > 65536:
        raise ConfigError(path, f"{fname} is {'empty' if not secret else 'longer than 64 KiB'}")
    return secret


def resolve_secrets(data: dict, base_dir: str) -> None:
    """Replace each key table's ``secret_file = "..."`` (a file holding the secret,
    refused if readable by group or others) or ``secret_env = "NAME"`` (an
    environment variable of the process) by the ``secret`` it names, in place.
    Relative file names resolve against ``base_dir``.  Raises ConfigError."""
    for table, path in _key_tables(data):
        given = [k for k in SECRET_KEYS if k in table]
        if len(given) > 1:
            raise ConfigError(f"{path}.{given[1]}", f"give only one of "
                                                    f"{', '.join(SECRET_KEYS)}")
        if "secret_file" in table:
            table["secret"] = _read_secret_file(table.pop("secret_file"),
                                                f"{path}.secret_file", base_dir)
        elif "secret_env" in table:
            name = table.pop("secret_env")
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{path}.secret_env", "expected an environment variable name")
            value = os.environ.get(name)
            if not value:
                raise ConfigError(f"{path}.secret_env", f"environment variable {name} is "
                                                        f"{'empty' if value == '' else 'not set'}")
            table["secret"] = value


def inline_secrets(data: dict) -> list[str]:
    """Key paths of the secrets written in the document itself."""
    out = [f"{path}.secret" for table, path in _key_tables(data) if "secret" in table]
    decent = data.get("decent")
    if isinstance(decent, dict) and "curve_secret" in decent:
        out.append("decent.curve_secret")
    return out


def secret_warnings(path: str) -> list[str]:
    """``decent config check``: a config file holding secrets that group or others
    can read.  Call after :func:`load` succeeded."""
    with open(path, "rb") as f:
        data = tomllib.loads(f.read().decode("utf-8"))
    held = inline_secrets(data)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if not held or not mode & 0o044:
        return []
    more = f" and {len(held) - 1} more" if len(held) > 1 else ""
    return [f"{path}: holds secrets ({held[0]}{more}) and is readable by group or others "
            f"(mode {mode:04o}): chmod 600 it, or move them to secret_file / secret_env"]


def role_main_args(role: str, argv: list[str] | None = None) -> tuple[NodeConfig, int]:
    """Parse a role process's command line: ``-c CONFIG --instance N``.

    Returns the config and the instance number.  A bad config or an instance
    number this node does not run exits with status 2 and one line on stderr
    (supervisord's log for the program keeps it).
    """
    if role not in ROLE_ORDER:
        raise ValueError(f"unknown role {role!r}")
    parser = argparse.ArgumentParser(prog=f"roles.{role}")
    parser.add_argument("-c", "--config", required=True, help="the node's TOML file")
    parser.add_argument("--instance", type=int, default=0, help="instance number (0-based)")
    args = parser.parse_args(argv)
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(f"{role}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    n = cfg.count(role)
    if not 0 <= args.instance < n:
        print(f"{role}: {args.config}: instance {args.instance} not configured "
              f"(this node runs {n} {role} instance(s))", file=sys.stderr)
        raise SystemExit(2)
    return cfg, args.instance
