"""`decent hash`: the LISP-Decent index and DNS name of an EID.

    decent hash EIDSPEC --modulus M [--mode rfc9962|lispers|prefix]
                [--hash-mask N] [--lookup-range [<iid>]<prefix>=<len>]...
                [--suffix NAME] [--json]

``--hash-mask`` is bytes of the string in ``rfc9962`` mode (``draft`` is its old
name), a prefix length in bits in ``prefix`` mode, and an error in ``lispers``
mode, which writes the EID as lispers.net does (host bits as typed, IPv4-mapped
IPv6 with a dotted-quad tail).  With one or more ``--lookup-range`` (rfc9962 only, RFC 9962 section 5.2),
EIDSPEC is a looked-up EID: it is masked to the lookup length of the most
specific range holding it, then the hash mask applies.  ``--json`` prints exactly
``{"string": ..., "index": n, "name": "<n>.<suffix>"}`` (``name`` only with
``--suffix``).  Bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import re
from ipaddress import ip_address

from cli.common import UserError
from common.decent.hash import (ALIASES, MODES, LookupRange, canonical_mode, dns_name, hash_string,
                                index_of_string, lispers_string)
from common.wire.eidtext import EidSpecError, parse_eidspec

# bounded so a pathological number cannot make int() slow; far beyond any real value
_NUMBER = re.compile(r"-?[0-9]{1,9}\Z")
# a unicast IP spec, to keep the address as typed (host bits) for --mode lispers
_UNICAST_IP = re.compile(r"(?:\[[0-9]+\])?([0-9A-Fa-f.:]+)(?:/[0-9]{1,3})?\Z")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "hash", help="LISP-Decent index and DNS name of an EID",
        description="Compute the LISP-Decent pull-mode index (and DNS name) of an EID.")
    p.add_argument("eidspec", metavar="EIDSPEC",
                   help="[<iid>]<prefix>[/<len>] or [<iid>]<group>/<gml>-<source>/<sml>")
    # numbers and the mode are checked by us, not argparse, so every mistake is one line
    p.add_argument("--modulus", required=True, metavar="M",
                   help="number of map-server sets (at least 1)")
    p.add_argument("--mode", default="rfc9962", metavar="|".join(MODES),
                   help="hash mode (default: rfc9962; draft is its old name)")
    p.add_argument("--hash-mask", metavar="N",
                   help="rfc9962: bytes of the string; prefix: prefix length in bits; "
                        "not allowed with lispers")
    p.add_argument("--lookup-range", action="append", default=[], metavar="[<iid>]<prefix>=<len>",
                   help="rfc9962 lookup range (repeatable): EIDs inside <prefix> hash on "
                        "<len> bits; EIDSPEC is then a looked-up EID")
    p.add_argument("--suffix", metavar="NAME", help="DNS suffix of the map-server sets")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _int(text: str, what: str) -> int:
    if not _NUMBER.match(text.strip()):
        raise UserError(f"{what} must be an integer, not {text!r}")
    return int(text)


def _range(text: str) -> LookupRange:
    spec, sep, length = text.rpartition("=")
    if not sep:
        raise UserError(f"bad --lookup-range {text!r}: expected [<iid>]<prefix>=<length>")
    try:
        prefix = parse_eidspec(spec.strip())
    except EidSpecError as exc:
        raise UserError(f"bad --lookup-range {text!r}: {exc}") from None
    n = _int(length, "--lookup-range length")
    try:
        return LookupRange(prefix, n)
    except ValueError as exc:
        raise UserError(f"bad --lookup-range {text!r}: {exc}") from None


def _typed_address(text: str):
    """The unicast IP address of an EID spec as typed (host bits kept), or None."""
    m = _UNICAST_IP.match(text.strip())
    if not m:
        return None
    try:
        return ip_address(m.group(1))
    except ValueError:
        return None


def run(args: argparse.Namespace) -> int:
    if args.mode not in MODES + tuple(ALIASES):
        raise UserError(f"unknown --mode {args.mode!r} (one of {', '.join(MODES + tuple(ALIASES))})")
    mode = canonical_mode(args.mode)
    modulus = _int(args.modulus, "--modulus")
    if modulus < 1:
        raise UserError(f"--modulus must be at least 1, not {modulus}")
    mask = None
    if args.hash_mask is not None:
        if mode == "lispers":
            raise UserError("--hash-mask does not apply to --mode lispers "
                            "(lispers.net hashes the whole string)")
        mask = _int(args.hash_mask, "--hash-mask")
        if mode == "rfc9962" and mask < 1:
            raise UserError(f"--hash-mask counts bytes of the string in rfc9962 mode "
                            f"and must be at least 1, not {mask}")
        if mask < 0:
            raise UserError(f"--hash-mask must not be negative, not {mask}")
    suffix = None
    if args.suffix is not None:
        suffix = args.suffix.strip().rstrip(".")
        if not suffix:
            raise UserError("--suffix is empty")
    ranges = tuple(_range(t) for t in args.lookup_range)
    if ranges and mode != "rfc9962":
        raise UserError(f"--lookup-range applies to --mode rfc9962 only, not {mode}")
    if len({r.prefix for r in ranges}) != len(ranges):
        raise UserError("a --lookup-range prefix is given twice")
    try:
        eid = parse_eidspec(args.eidspec)
    except EidSpecError as exc:
        raise UserError(f"bad EIDSPEC: {exc}") from None
    try:
        if mode == "lispers":
            # lispers.net hashes the address as configured, host bits included
            string = lispers_string(eid, _typed_address(args.eidspec))
        else:
            string = hash_string(eid, mode, mask, ranges)
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
              f"{'' if mask is None else f', hash mask {mask}'}"
              f"{'' if not ranges else ', lookup ranges ' + ', '.join(map(str, ranges))})")
        if name is not None:
            print(f"name    {name}")
    return 0
