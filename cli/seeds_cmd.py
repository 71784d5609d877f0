"""`decent show seeds [--json]`: the pull-mode index -> Map-Server set table.

Asked of the node's running ``discovery`` role over the bus (``discovery.query``).
:func:`show_seeds` is what the ``show`` verb (:mod:`cli.show_cmd`) calls; this
module can also be run on its own: ``python -m cli.seeds_cmd -c FILE [--json]``.

Columns: index, DNS name, state (``ok``, ``nxdomain``, ``failing``, ``pending``),
age (seconds since the name last answered or returned NXDOMAIN; ``-`` if never),
TTL, addresses.  A failing index shows its last good set and why it fails.
JSON: a list of ``{index, name, addrs, age, ttl, state}`` objects (plus ``reason``
and ``failures``).
"""

from __future__ import annotations

import argparse
import json
import sys

from cli.busquery import query
from cli.common import UserError
from common.decent import seeds


def _fetch(cfg) -> dict:
    if cfg.decent.mode != "pull" or not cfg.roles.discovery:
        raise UserError(f'node {cfg.node.name} does not run discovery (decent.mode is '
                        f'"{cfg.decent.mode}"; seeds exist in "pull" mode)', 1)
    answers = query(cfg, seeds.QUERY_TOPIC, {}, expect=1)
    if not answers:
        raise UserError("the discovery role did not answer; see `decent logs discovery`", 1)
    return answers[0]


def _age(v) -> str:
    return "-" if v is None else f"{v:.0f}s"


def format_table(answer: dict) -> str:
    """The human-readable table of a ``discovery.answered`` body."""
    rows = [("INDEX", "NAME", "STATE", "AGE", "TTL", "ADDRESSES")]
    for e in answer["entries"]:
        addrs = ", ".join(e["addrs"]) or "-"
        if e["state"] == seeds.FAILING:
            addrs += f"  ({e.get('reason') or 'failing'}; {e.get('failures', 0)} attempt(s))"
        rows.append((str(e["index"]), e["name"], e["state"], _age(e.get("age")),
                     str(e["ttl"]) if e["state"] != seeds.PENDING else "-", addrs))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows]
    head = (f"node {answer.get('node')}: modulus {answer.get('modulus')}, suffix "
            f"{answer.get('suffix')}, via {answer.get('name_servers')}")
    return "\n".join([head] + [ln.rstrip() for ln in lines])


def show_seeds(cfg, as_json: bool) -> int:
    """Print the seeds table of the running node ``cfg``; returns the exit status.

    Raises :class:`cli.common.UserError` (status 1) when the node is not in pull
    mode or its discovery role does not answer."""
    answer = _fetch(cfg)
    if as_json:
        keep = ("index", "name", "addrs", "age", "ttl", "state", "reason", "failures")
        print(json.dumps([{k: e.get(k) for k in keep} for e in answer["entries"]]))
    else:
        print(format_table(answer))
    return 0


def main(argv: list[str] | None = None) -> int:
    from cli.ops_cmd import add_config_option, load_config
    p = argparse.ArgumentParser(prog="python -m cli.seeds_cmd",
                                description="the pull-mode seeds table of a running node")
    p.add_argument("--json", action="store_true")
    add_config_option(p)
    args = p.parse_args(argv)
    try:
        cfg, _ = load_config(args)
        return show_seeds(cfg, args.json)
    except UserError as exc:
        print(f"decent: {exc}", file=sys.stderr)
        return exc.status


if __name__ == "__main__":
    sys.exit(main())
