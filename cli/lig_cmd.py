"""`decent lig`: ask the mapping system for an EID, like lig(8).

    decent lig EIDSPEC [-c CONFIG] [--mr ADDR[:PORT]] [--count N] [--timeout S] [--json]
               [--strict] [--sec]

Sends an ECM Map-Request from its own UDP socket, bound to the node's first RLOC
(of the Map-Resolver's family) on an ephemeral port, to ``--mr`` (default: the
config's first ``itr.map_resolvers`` entry, which itself defaults to the node's
first RLOC and control port).  Up to ``--count`` attempts (default 3), each with a
fresh nonce and waiting ``--timeout`` seconds (default 2); the first Map-Reply
whose nonce matches any attempt's ends it.

``--json`` prints exactly one object::

    {"eid", "ttl" (minutes), "authoritative", "negative", "action",
     "rlocs": [{"address", "priority", "weight"}], "records": [same shape per record],
     "rtt_ms", "outside": [record prefixes that do not hold the EID]}

the top-level fields from the record that best matches the EID (the longest
record prefix containing it).  A record whose prefix neither holds the requested
EID nor lies inside a record that does (a more-specific) is a broken answer (OOR
has sent 11.8.0.0/13 for 10.9.9.9): it is listed in ``outside`` and flagged with a
warning line on stderr.  Exit 0 on a reply, 1 when none came (one line on
stderr), 2 on bad usage, 3 with ``--strict`` when a record is outside.

``--sec`` asks with LISP-SEC (RFC 9303): a fresh one-time key per attempt, wrapped
with the config's ``itr.lisp_sec_key`` (null-wrapped without one), and checks the
reply (EID HMAC, PKT HMAC, every record inside the EID-AD).  The text says
``LISP-SEC: verified`` (with the EID-AD) or ``LISP-SEC: NOT verified (<reason>)``;
``--json`` adds ``"lisp_sec": {"verified", "reason", "eid_ad"}``.  Exit 4 when the
reply did not verify.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import socket
import sys
import time
from ipaddress import IPv4Address, ip_address

from cli.common import UserError
from cli.ops_cmd import add_config_option, load_config
from common.wire.addr import Eid
from common.wire.eidtext import EidSpecError, format_address, format_eid, parse_eidspec
from common.wire.errors import DecodeError
from common.machines.etr import eid_contains
from common.machines.itr import build_map_request_ecm
from common.machines.lispsec import LispSecError, itr_auth, verify_reply
from common.wire.jsonview import eid_text
from common.wire.messages import MapReply, decode_message
from common.wire.records import ACTION_NAMES

DEFAULT_MR_PORT = 4342
_NUMBER = re.compile(r"[0-9]{1,6}\Z")
_SECONDS = re.compile(r"([0-9]{1,6}(\.[0-9]{0,6})?|\.[0-9]{1,6})\Z")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "lig", help="send a Map-Request for an EID and print the Map-Reply",
        description="Send an ECM Map-Request for EIDSPEC to a Map-Resolver and print the reply.")
    p.add_argument("eidspec", metavar="EIDSPEC",
                   help="[<iid>]<address>[/<len>] or [<iid>]<group>/<gml>-<source>/<sml>")
    add_config_option(p)
    p.add_argument("--decent", action="store_true",
                   help="pull mode: ask the EID's index set (round robin), as this node's ITR would")
    p.add_argument("--mr", metavar="ADDR[:PORT]",
                   help="Map-Resolver to ask (default: the config's first itr.map_resolvers)")
    p.add_argument("--count", metavar="N", default="3", help="attempts (default 3)")
    p.add_argument("--timeout", metavar="S", default="2", help="seconds per attempt (default 2)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--strict", action="store_true",
                   help="exit 3 when a record's prefix does not hold the EID")
    p.add_argument("--sec", action="store_true",
                   help="ask with LISP-SEC (RFC 9303) and say whether the reply verified")
    p.set_defaults(func=run)


def parse_mr(text: str) -> tuple:
    """``addr``, ``addr:port``, ``[v6]`` or ``[v6]:port`` -> (address, port)."""
    s = text.strip()
    host, port = s, str(DEFAULT_MR_PORT)
    m = re.fullmatch(r"\[([^\]]+)\](?::([^:]*))?", s)
    if m:
        host, port = m.group(1), m.group(2) if m.group(2) is not None else port
    elif s.count(":") == 1:
        host, _, port = s.partition(":")
    if not _NUMBER.match(port) or not 1 <= int(port) <= 65535:
        raise UserError(f"bad --mr {text!r}: port must be 1..65535")
    try:
        addr = ip_address(host)
    except ValueError:
        raise UserError(f"bad --mr {text!r}: not an IPv4 or IPv6 address") from None
    if addr.is_multicast or addr.is_unspecified:
        raise UserError(f"bad --mr {text!r}: not a unicast address")
    return addr, int(port)


def _positive_int(text: str, what: str) -> int:
    if not _NUMBER.match(text.strip()) or int(text) < 1:
        raise UserError(f"{what} must be a whole number of at least 1, not {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    t = text.strip()
    if not _SECONDS.match(t) or float(t) <= 0:
        raise UserError(f"--timeout must be a positive number of seconds, not {text!r}")
    return float(t)


def record_view(rec) -> dict:
    """One record in the lig JSON shape."""
    return {"eid": eid_text(rec.eid, rec.mask_len), "ttl": rec.ttl,
            "authoritative": rec.authoritative, "negative": not rec.locators,
            "action": ACTION_NAMES.get(rec.action, str(rec.action)),
            "rlocs": [{"address": format_address(l.address), "priority": l.priority,
                       "weight": l.weight} for l in rec.locators]}


def best_record(records, eid: Eid):
    """The record with the longest prefix containing ``eid`` (else the first), or None."""
    best, best_len = None, -1
    for rec in records:
        try:
            pfx = rec.prefix
        except Exception:
            continue
        if eid_contains(pfx, eid) and (pfx.length, pfx.group_len) > (best_len, -1):
            best, best_len = rec, pfx.length
    if best is None and records:
        best = records[0]
    return best


def outside_records(records, eid: Eid) -> list:
    """Records whose prefix neither holds ``eid`` nor lies inside a record that does
    (a Map-Server may add the more-specifics of its match); unreadable prefixes count."""
    holding, out = [], []
    for rec in records:
        try:
            if eid_contains(rec.prefix, eid):
                holding.append(rec.prefix)
        except Exception:
            pass
    for rec in records:
        try:
            pfx = rec.prefix
        except Exception:
            out.append(rec)
            continue
        if not any(eid_contains(h, pfx) for h in holding):
            out.append(rec)
    return out


def result_json(reply: MapReply, eid: Eid, rtt_ms: float) -> dict:
    """The ``--json`` object for a reply to a request for ``eid``."""
    best = best_record(reply.records, eid)
    top = record_view(best) if best is not None else {
        "eid": format_eid(eid), "ttl": 0, "authoritative": False, "negative": True,
        "action": ACTION_NAMES[0], "rlocs": []}
    return {**top, "records": [record_view(r) for r in reply.records], "rtt_ms": round(rtt_ms, 3),
            "outside": [eid_text(r.eid, r.mask_len) for r in outside_records(reply.records, eid)]}


def text_view(out: dict, reply: MapReply, src: tuple, eid: Eid) -> str:
    """The lig-like text of a reply (``out`` is its :func:`result_json`)."""
    lines = [f"Received map-reply from {_hostport(src)} with rtt {out['rtt_ms']:.3f} ms",
             f"Mapping for EID {format_eid(eid)}:"]
    for rec, r in zip(reply.records, out["records"]):
        head = f"  {r['eid']}, record-ttl {r['ttl']}, {'auth' if r['authoritative'] else 'not-auth'}"
        if r["negative"]:
            head += f", negative, action {r['action']}"
        if r["eid"] in out.get("outside", ()):
            head += "  ! does not hold the requested EID"
        lines.append(head)
        for loc in rec.locators:
            fl = "".join(c for c, on in (("L", loc.local), ("p", loc.probed), ("R", loc.reachable)) if on)
            lines.append(f"    {format_address(loc.address):<39} priority/weight "
                         f"{loc.priority}/{loc.weight}  flags {fl or '-'}")
    if not reply.records:
        lines.append("  (no records)")
    return "\n".join(lines)


def _hostport(ep: tuple) -> str:
    a = ip_address(ep[0]) if isinstance(ep[0], str) else ep[0]
    return f"[{format_address(a)}]:{ep[1]}" if a.version == 6 else f"{a}:{ep[1]}"


def run(args: argparse.Namespace) -> int:
    try:
        eid = parse_eidspec(args.eidspec)
    except EidSpecError as exc:
        raise UserError(f"bad EIDSPEC: {exc}") from None
    count = _positive_int(args.count, "--count")
    timeout = _seconds(args.timeout)
    mr = parse_mr(args.mr) if args.mr is not None else None
    cfg, _path = load_config(args)
    mrs = None
    if getattr(args, "decent", False):
        mrs = decent_resolvers(cfg, eid)
        mr = mrs[0]
    if mr is None:
        ep = cfg.itr.map_resolvers[0] if cfg.itr.map_resolvers else None
        mr = (ep.address, ep.port) if ep else (cfg.node.rlocs[0], cfg.node.control_port)
    mrs = [m for m in (mrs or [mr]) if m[0].version == mr[0].version]
    rloc = next((a for a in cfg.node.rlocs if a.version == mr[0].version), None)
    if rloc is None:
        raise UserError(f"node {cfg.node.name!r} has no IPv{mr[0].version} RLOC to ask "
                        f"{_hostport(mr)} from")
    family = socket.AF_INET if isinstance(rloc, IPv4Address) else socket.AF_INET6
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:
        raise UserError(f"cannot open a UDP socket: {exc.strerror or exc}", 1) from None
    with sock:
        try:
            sock.bind((str(rloc), 0))
        except OSError as exc:
            raise UserError(f"cannot bind to {rloc}: {exc.strerror or exc}", 1) from None
        port = sock.getsockname()[1]
        sent: dict[int, float] = {}
        otks: dict[int, bytes] = {}
        sec = getattr(args, "sec", False)
        key = cfg.itr.lisp_sec_key.secret_bytes if sec and cfg.itr.lisp_sec_key else None
        if not args.json:
            print(f"Send map-request to {_hostport(mr)} for {format_eid(eid)} ...", flush=True)
        for attempt in range(count):
            mr = mrs[attempt % len(mrs)]   # --decent: round robin over the index's set
            nonce = secrets.randbits(64)
            auth = None
            if sec:
                otks[nonce] = secrets.token_bytes(16)
                auth = itr_auth(otks[nonce], key)
            data = build_map_request_ecm(eid, nonce, (rloc,) + tuple(
                a for a in cfg.node.rlocs if a != rloc), port, fallback_dst=mr[0], auth=auth)
            sent[nonce] = time.monotonic()
            try:
                sock.sendto(data, (str(mr[0]), mr[1]))
            except OSError as exc:
                raise UserError(f"cannot send to {_hostport(mr)}: {exc.strerror or exc}", 1) from None
            if args.decent and not args.json and attempt:
                print(f"Send map-request to {_hostport(mr)} for {format_eid(eid)} ...", flush=True)
            got = _wait(sock, sent, time.monotonic() + timeout)
            if got is not None:
                reply, src, rtt_ms, raw = got
                out = result_json(reply, eid, rtt_ms)
                text = None if args.json else text_view(out, reply, src, eid)
                if sec:
                    out["lisp_sec"] = sec_view(raw, reply, otks[reply.nonce])
                    if text is not None:
                        v = out["lisp_sec"]
                        text += ("\nLISP-SEC: verified (EID-AD " + ", ".join(v["eid_ad"]) + ")"
                                 if v["verified"] else f"\nLISP-SEC: NOT verified ({v['reason']})")
                print(json.dumps(out) if args.json else text, flush=True)
                if sec and not out["lisp_sec"]["verified"]:
                    return 4
                for prefix in out["outside"]:
                    print(f"decent: warning: {_hostport(src)} answered {format_eid(eid)} with a "
                          f"record for {prefix}, which does not hold it", file=sys.stderr)
                return 3 if out["outside"] and args.strict else 0
    raise UserError(f"no map-reply from {_hostport(mr)} for {format_eid(eid)} "
                    f"after {count} attempt(s) of {timeout:g} s", 1)


def sec_view(raw: bytes, reply: MapReply, otk: bytes) -> dict:
    """``{"verified", "reason", "eid_ad"}`` of a reply to a LISP-SEC request."""
    try:
        v = verify_reply(raw, reply, otk, reply.nonce)
    except LispSecError as exc:
        return {"verified": False, "reason": str(exc), "eid_ad": []}
    return {"verified": True, "reason": "", "eid_ad": [format_eid(p) for p in v.prefixes]}


def decent_resolvers(cfg, eid: Eid) -> list:
    """The Map-Resolvers an ITR of this node would use for ``eid`` in pull mode: the
    addresses of its index's DNS set, as this node's discovery role last saw them."""
    from cli.busquery import query
    from common.decent import seeds
    from common.decent.pull import PullView
    if cfg.decent.mode != "pull":
        raise UserError(f"--decent needs a pull-mode node (decent.mode is {cfg.decent.mode!r})")
    answers = query(cfg, seeds.QUERY_TOPIC, {})
    if not answers:
        raise UserError("the discovery role did not answer; is the node up?", 1)
    p = cfg.decent.pull
    view = PullView(p.modulus, p.hash_mode, p.hash_mask, cfg.node.rlocs, p.lookup_ranges)
    view.update(seeds.sets_from_clone({int(k): v for k, v in _table(answers[0]).items()}))
    index = view.index(eid)
    addrs = view.sets.get(index, ())
    if not addrs:
        raise UserError(f"index {index} ({index}.{p.suffix}) has no servers", 1)
    start = secrets.randbelow(len(addrs))
    addrs = addrs[start:] + addrs[:start]
    return [(ip_address(a), cfg.node.control_port) for a in addrs]


def _table(answer) -> dict:
    """discovery.answered body -> index -> entry (entries carry ``addrs``)."""
    return {e["index"]: e for e in answer.get("entries", ()) if isinstance(e, dict)}


def _wait(sock: socket.socket, sent: dict, deadline: float):
    """The first Map-Reply with one of ``sent``'s nonces before ``deadline``, or None."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            data, src = sock.recvfrom(65535)
        except (socket.timeout, BlockingIOError, InterruptedError):
            continue
        except OSError:  # e.g. ICMP port unreachable surfacing as ECONNREFUSED
            continue
        now = time.monotonic()
        try:
            msg = decode_message(data)
        except DecodeError:
            continue
        if isinstance(msg, MapReply) and msg.nonce in sent:
            return msg, src, (now - sent[msg.nonce]) * 1000.0, data
