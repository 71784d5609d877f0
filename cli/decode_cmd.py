"""``decent decode``: show what a LISP control message, or a capture of them, says.

    decent decode HEX [--json]          one message (the UDP payload) given in hex
    decent decode - [--json]            the same, hex read from standard input
    decent decode --pcap FILE [--json]  every LISP control packet (UDP port 4342) in a capture

Exit status: 0 when the message decoded / the capture was read (even if some of
its packets did not decode: they are reported in place and counted in one
stderr line); 2 for input that is not hex, a message that does not decode, or a
file that cannot be read or is not a capture.  A message that does not decode
produces exactly one stderr line, ``decode error at offset N: field: reason``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from cli.common import UserError
from common.wire.errors import DecodeError
from common.wire.pcap import PcapError, UdpDatagram, iter_lisp_control

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def register(subparsers: Any) -> None:
    """Add the ``decode`` verb to the ``decent`` parser."""
    p = subparsers.add_parser(
        "decode",
        help="decode a LISP control message (hex) or the LISP packets of a capture",
        description="Decode a LISP control message given in hex (the UDP payload), "
        "or every LISP control packet (either UDP port 4342) of a pcap/pcapng file.",
    )
    p.add_argument(
        "hex",
        nargs="*",
        metavar="HEX",
        help="message bytes in hex; spaces, colons and a 0x prefix are allowed; '-' reads stdin",
    )
    p.add_argument("--pcap", metavar="FILE", help="decode the LISP control packets of this pcap/pcapng file ('-': stdin)")
    p.add_argument("--json", action="store_true", help="JSON output (one object per line)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.pcap is not None:
        if args.hex:
            raise UserError("give either HEX or --pcap FILE, not both")
        return _run_pcap(args.pcap, args.json)
    if not args.hex:
        raise UserError("nothing to decode: give HEX, '-' (hex on stdin) or --pcap FILE")
    text = sys.stdin.read() if args.hex == ["-"] else " ".join(args.hex)
    return _run_hex(parse_hex(text), args.json)


_HEX_PREFIX = re.compile(r"(?:(?<=\s)|^)0[xX]")
_SEPARATORS = re.compile(r"[\s:]+")


def parse_hex(text: str) -> bytes:
    """Bytes from operator hex: whitespace and colons ignored, ``0x`` allowed per word.

    Raises :class:`UserError` (status 2) with a one-line reason if it is not hex.
    """
    digits = _SEPARATORS.sub("", _HEX_PREFIX.sub("", text.strip()))
    if not digits:
        raise UserError("not hex: no hex digits given")
    bad = re.search(r"[^0-9a-fA-F]", digits)
    if bad:
        raise UserError(f"not hex: unexpected character {bad.group()!r}")
    if len(digits) % 2:
        raise UserError(f"not hex: odd number of hex digits ({len(digits)})")
    return bytes.fromhex(digits)


def error_line(exc: Exception) -> str:
    """One line describing why a payload did not decode (no newlines, ever)."""
    if isinstance(exc, DecodeError):
        line = f"decode error at offset {exc.offset}: {exc.field}: {exc.reason}"
    else:
        # the codec promises DecodeError only; anything else is our bug, but the
        # operator still gets one line rather than a traceback
        line = f"internal error while decoding: {type(exc).__name__}: {exc}"
    return " ".join(line.split())


def _decode(payload: bytes, as_json: bool) -> Any:
    """Decode and render one payload; exceptions propagate to the caller."""
    # imported late: the codec is the heaviest import and `decent --help` needs none of it
    from common.wire.jsonview import message_json, message_text
    from common.wire.messages import decode_message

    msg = decode_message(payload)
    return message_json(msg) if as_json else message_text(msg)


def _run_hex(payload: bytes, as_json: bool) -> int:
    try:
        out = _decode(payload, as_json)
    except Exception as exc:  # noqa: BLE001 - see error_line
        print(error_line(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(out) if as_json else out.rstrip("\n"))
    return EXIT_OK


def _read_capture(path: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def _header(d: UdpDatagram) -> str:
    def ep(addr: str, port: int) -> str:
        return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"

    return f"frame {d.index}  {ep(d.src, d.sport)} -> {ep(d.dst, d.dport)}  {len(d.payload)} bytes"


def _run_pcap(path: str, as_json: bool) -> int:
    data = _read_capture(path)
    try:
        packets = iter_lisp_control(data)
    except PcapError as exc:
        raise UserError(f"{path}: {exc}") from None
    total = bad = 0
    try:
        for d in packets:
            total += 1
            where = {"frame": d.index, "src": d.src, "dst": d.dst, "sport": d.sport, "dport": d.dport}
            try:
                out = _decode(d.payload, as_json)
                err = None
            except Exception as exc:  # noqa: BLE001 - one bad packet must not stop the rest
                bad += 1
                out, err = None, error_line(exc)
            if as_json:
                # capture keys first for readability; they win over any same-named message key
                obj = dict(where, error=err) if err else {**where, **out, **where}
                print(json.dumps(obj, separators=(",", ":")))
            else:
                if total > 1:
                    print()
                print(_header(d))
                print(f"  {err}" if err else _indent(out))
    except PcapError as exc:
        # structure broken part-way: what was printed stands, but the file was not read
        sys.stdout.flush()
        raise UserError(f"{path}: {exc} (after {total} LISP control packets)") from None
    if total == 0:
        print(f"decent: {path}: no LISP control packets (UDP port 4342) found", file=sys.stderr)
    elif bad:
        print(f"decent: {path}: {bad} of {total} LISP control packets could not be decoded", file=sys.stderr)
    return EXIT_OK


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.rstrip("\n").splitlines())
