"""`decent config check FILE...`: do these nodes' config files fit one pull deployment?

Loads every file (:func:`roles.nodeconf.load`) and reports, one line each, what
:func:`common.decent.cluster_check.check` finds: disagreements in the decent mode,
modulus, suffix, hash mode or hash mask (naming which file has which value),
registered prefixes inconsistent with the hash mask (DESIGN.md section 6) and
RLOCs claimed twice; with ``--sites``, also Map-Server sites that would refuse
another node's database mappings.

Exit status: 0 consistent, 1 something found, 2 a file is unreadable or invalid
(one line naming the file and the key).  A file holding secrets that group or
others can read draws a warning on stderr (not a problem for the exit status).
"""

from __future__ import annotations

import argparse
import sys

from cli.common import UserError
from common.decent import cluster_check
from common.config import ConfigError
from roles import nodeconf


def run_check(args: argparse.Namespace) -> int:
    cfgs = []
    for path in args.files:
        try:
            cfgs.append(nodeconf.load(path))
        except ConfigError as exc:
            raise UserError(str(exc), 2) from None
    for path in args.files:
        for w in nodeconf.secret_warnings(path):
            print(f"warning: {w}", file=sys.stderr)
    findings = cluster_check.check(cfgs, sites=args.sites)
    for f in findings:
        print(f)
    if findings:
        print(f"{len(findings)} problem(s) in {len(cfgs)} file(s)")
        return 1
    if not args.quiet:
        print(cluster_check.summary(cfgs) + (
            "; every Map-Server accepts every mapping" if args.sites else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="check node config files")
    csub = p.add_subparsers(dest="config_verb", metavar="SUBVERB")
    csub.required = True
    c = csub.add_parser("check", help="check that config files agree on the pull-mode "
                                      "parameters and that prefixes fit the hash mask")
    c.add_argument("files", nargs="+", metavar="FILE", help="node config files (TOML)")
    c.add_argument("--sites", action="store_true",
                   help="also check that every Map-Server node accepts every node's "
                        "database mappings (site prefixes and keys)")
    c.add_argument("-q", "--quiet", action="store_true", help="print nothing when consistent")
    c.set_defaults(func=run_check)
