"""`decent hash`: the LISP-Decent index and DNS name of an EID.

    decent hash EIDSPEC --modulus M [--mode draft|lispers|prefix]
                [--hash-mask N] [--suffix NAME] [--json]

``--hash-mask`` is bytes of the string in ``draft`` mode, a prefix length in bits
in ``prefix`` mode, and an error in ``lispers`` mode.  ``--json`` prints exactly
``{"string": ..., "index": n, "name": "<n>.<suffix>"}`` (``name`` only with
``--suffix``).  Bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import re

from cli.common import UserError
from common.decent.hash import MODES, dns_name, hash_string, index_of_string
from common.wire.eidtext import EidSpecError, parse_eidspec

# bounded so a pathological number cannot make int() slow; far beyond any real value
_NUMBER = re.compile(r"-?[0-9]{1,9}\Z")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "hash", help="LISP-Decent index and DNS name of an EID",
        description="Compute the LISP-Decent pull-mode index (and DNS name) of an EID.")
    p.add_argument("eidspec", metavar="EIDSPEC",
                   help="[<iid>]<prefix>[/<len>] or [<iid>]<group>/<gml>-<source>/<sml>")
    # numbers and the mode are checked by us, not argparse, so every mistake is one line
    p.add_argument("--modulus", required=True, metavar="M",
                   help="number of map-server sets (at least 1)")
    p.add_argument("--mode", default="draft", metavar="|".join(MODES),
                   help="hash mode (default: draft)")
    p.add_argument("--hash-mask", metavar="N",
                   help="draft: bytes of the string; prefix: prefix length in bits; "
                        "not allowed with lispers")
    p.add_argument("--suffix", metavar="NAME", help="DNS suffix of the map-server sets")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _int(text: str, what: str) -> int:
    if not _NUMBER.match(text.strip()):
        raise UserError(f"{what} must be an integer, not {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    mode = args.mode
    if mode not in MODES:
        raise UserError(f"unknown --mode {mode!r} (one of {', '.join(MODES)})")
    modulus = _int(args.modulus, "--modulus")
    if modulus < 1:
        raise UserError(f"--modulus must be at least 1, not {modulus}")
    mask = None
    if args.hash_mask is not None:
        if mode == "lispers":
            raise UserError("--hash-mask does not apply to --mode lispers "
                            "(lispers.net hashes the whole string)")
        mask = _int(args.hash_mask, "--hash-mask")
        if mode == "draft" and mask < 1:
            raise UserError(f"--hash-mask counts bytes of the string in draft mode "
                            f"and must be at least 1, not {mask}")
        if mask < 0:
            raise UserError(f"--hash-mask must not be negative, not {mask}")
    suffix = None
    if args.suffix is not None:
        suffix = args.suffix.strip().rstrip(".")
        if not suffix:
            raise UserError("--suffix is empty")
    try:
        eid = parse_eidspec(args.eidspec)
    except EidSpecError as exc:
        raise UserError(f"bad EIDSPEC: {exc}") from None
    try:
        string = hash_string(eid, mode, mask)
        index = index_of_string(string, modulus, mode)
    except ValueError as exc:  # already checked above; kept so no traceback escapes
        raise UserError(str(exc)) from None
    name = dns_name(index, suffix) if suffix is not None else None

    if args.json:
        out = {"string": string, "index": index}
        if name is not None:
            out["name"] = name
        print(json.dumps(out))
    else:
        print(f"string  {string}")
        print(f"index   {index}  (mode {mode}, modulus {modulus}"
              f"{'' if mask is None else f', hash mask {mask}'})")
        if name is not None:
            print(f"name    {name}")
    return 0
