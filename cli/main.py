"""The `decent` command: one entry point, one module per verb.

Each verb module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed args, returning the exit status).  Errors meant for
the operator are raised as :class:`cli.common.UserError` and printed as one line;
no traceback is ever the user interface.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cli.common import UserError

# verb modules, in the order `decent --help` lists them
VERB_MODULES = [
    "cli.ops_cmd",
    "cli.decode_cmd",
    "cli.hash_cmd",
    "cli.lig_cmd",
    "cli.show_cmd",
    "cli.configcheck_cmd",
    "cli.remote",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="decent", description="LISP-Decent node and tools")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name in VERB_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # verb not built yet
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"decent: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
