"""Reading the node's TOML file: the I/O half of :mod:`common.config`.

:func:`load` is what every role and CLI verb calls; :func:`role_main_args` is the
command line every role process is started with by supervisord
(``python -m roles.<role> -c <config> --instance <n>``).
"""

from __future__ import annotations

import argparse
import os
import re
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
    return parse_config(data, source, base_dir)


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
