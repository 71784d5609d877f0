"""`decent show registrations|sites|map-cache` and `decent counters`.

``show sites`` prints per site its registrations, the last accepted Map-Register
(how long ago, from where, which xTR-ID) and the Map-Registers refused, by reason,
so a peer refused as a replay (lispers.net, OOR) is visible at once.

Answers come from the running roles over the node's bus (cli.busquery): the
map_server shards for registrations and sites, the ITR for its map-cache, every
process's heartbeat for counters.
"""

from __future__ import annotations

import json
import sys

from bus import topics
from cli.busquery import collect, query
from cli.common import UserError
from cli.remote import own_host
from common.wire.eidtext import EidSpecError, parse_eidspec
from roles.ms_show import LIMIT_DEFAULT, LIMIT_MAX
from cli.ops_cmd import add_config_option, load_config

WHAT = ("registrations", "sites", "map-cache", "seeds", "members")


def register(sub) -> None:
    p = sub.add_parser("show", help="show registrations, sites, the map-cache, DNS seeds or push-group members")
    p.add_argument("what", choices=WHAT)
    p.add_argument("eid", nargs="?", metavar="EID-PREFIX",
                   help="registrations: only those inside this prefix, e.g. 10.0.0.0/8 or [7]2001:db8::/32")
    p.add_argument("--site", help="registrations: only this site's")
    p.add_argument("--limit", type=int, default=LIMIT_DEFAULT,
                   help=f"registrations: at most this many (default {LIMIT_DEFAULT}, at most {LIMIT_MAX:,})")
    p.add_argument("--json", action="store_true")
    add_config_option(p)
    p.set_defaults(func=run_show)
    c = sub.add_parser("counters", help="per-process received/answered/dropped counters")
    c.add_argument("--json", action="store_true")
    c.add_argument("--all", action="store_true", help="every counter, not just the main ones")
    add_config_option(c)
    c.set_defaults(func=run_counters)


def _ms_answers(cfg, what: str, body: dict | None = None) -> list:
    n = cfg.count("map_server")
    if n == 0:
        raise UserError(f"node {cfg.node.name} runs no map_server", 1)
    answers = query(cfg, "ms.query", dict(body or {}, what=what), expect=n)
    if len(answers) < n:
        raise UserError(f"only {len(answers)} of {n} map_server shards answered", 1)
    for a in answers:
        if "loading" in a:
            raise UserError(f"map_server shard {a.get('shard', '?')} is still reloading its store "
                            f"({a['loading']} registrations loaded so far); ask again shortly", 1)
        if "error" in a:
            raise UserError(f"map_server shard {a.get('shard', '?')} refused the query: {a['error']}", 2)
    return sorted(answers, key=lambda a: a["shard"])


def _ago(seconds) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "?"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h"


def site_text(s: dict) -> list[str]:
    """The lines of one site of ``ms.answered``.  ``registrations``, ``last_accepted``
    ({ago, from, xtr_id} or null) and ``refused`` ({reason: count}) are read
    tolerantly: a field the Map-Server does not send shows as ``-``."""
    lines = [f"site {s.get('name', '?')} (shard {s.get('shard', '?')}, "
             f"nonce policy {s.get('nonce_policy', '?')})"]
    regs = s.get("registrations")
    regs = str(regs) if isinstance(regs, int) and not isinstance(regs, bool) else "-"
    last = s.get("last_accepted")
    if isinstance(last, dict):
        xtr = last.get("xtr_id")
        last = (f"{_ago(last.get('ago'))} ago from {last.get('from', '?')}"
                + (f" (xTR-ID {xtr})" if xtr else ""))
    else:
        last = "-"
    refused = s.get("refused")
    if isinstance(refused, dict) and refused:
        refused = ", ".join(f"{k} {v}" for k, v in sorted(refused.items(), key=lambda kv: (-kv[1]
                            if isinstance(kv[1], int) else 0, str(kv[0]))))
    else:
        refused = "-"
    lines.append(f"  registrations {regs}; last accepted {last}; refused {refused}")
    for p, more in s.get("prefixes", ()):
        lines.append(f"  {p}{'  accept-more-specifics' if more else ''}")
    return lines


def run_show(args) -> int:
    cfg, _ = load_config(args)
    if args.what == "seeds":
        from cli.seeds_cmd import show_seeds
        return show_seeds(cfg, args.json)
    if args.what == "members":
        if cfg.decent.mode != "push":
            raise UserError(f"node {cfg.node.name} is not in push mode", 1)
        answers = query(cfg, topics.DP_QUERY, {})
        if not answers:
            raise UserError("the dataplane did not answer", 1)
        a = answers[0]
        if args.json:
            print(json.dumps(a))
        else:
            print(f"group [{a['iid']}]{a['group']}: {len(a['members'])} members")
            for m in a["members"]:
                how = [w for w, lst in (("registered", a["registered"]), ("looked-up", a["looked_up"]))
                       if m in lst]
                print(f"  {m:<40} {', '.join(how) or 'self'}")
        return 0
    if args.what == "map-cache":
        data_path = cfg.roles.dataplane and cfg.dataplane is not None and bool(cfg.dataplane.interfaces)
        if not cfg.roles.itr and not data_path:
            raise UserError(f"node {cfg.node.name} runs no itr", 1)
        # with a data path: the entries it forwards with (its replica of the itr's cache)
        answers = query(cfg, topics.DP_CACHE_QUERY if data_path else "itr.query", {})
        if not answers:
            raise UserError(f"the {'dataplane' if data_path else 'itr'} did not answer", 1)
        entries = answers[0]["entries"]
        if args.json:
            print(json.dumps(entries))
        else:
            for e in entries:
                kind = f"negative ({e.get('action')})" if e.get("negative") else \
                    ", ".join(f"{r['address']} {r['priority']}/{r['weight']}" for r in e["rlocs"])
                print(f"{e['eid']:<32} expires in {e['expires_in']:>8.0f}s  {kind}")
        return 0
    if args.what != "registrations" and (args.eid is not None or args.site is not None):
        raise UserError(f"an EID-prefix or --site filters registrations, not {args.what}", 2)
    if args.what == "sites":
        sites = [s for a in _ms_answers(cfg, "sites") for s in a["sites"]]
        if args.json:
            print(json.dumps(sites))
        else:
            for s in sites:
                print("\n".join(site_text(s)))
        return 0
    return show_registrations(cfg, args)


def _registrations_query(cfg, args) -> dict:
    """The ``ms.query`` filters of ``args``, checked here so a typo is not a bus round trip."""
    if not 1 <= args.limit <= LIMIT_MAX:
        raise UserError(f"--limit: {args.limit} is not in 1..{LIMIT_MAX}", 2)
    body = {"limit": args.limit}
    if args.eid is not None:
        try:
            parse_eidspec(args.eid)
        except EidSpecError as exc:
            raise UserError(f"EID-prefix: {exc}", 2) from None
        body["eid"] = args.eid
    if args.site is not None:
        if args.site not in {s.name for s in cfg.sites}:
            raise UserError(f"--site: no site {args.site!r} in the configuration", 2)
        body["site"] = args.site
    return body


def _order(r: dict) -> tuple:
    try:
        e = parse_eidspec(r["eid"])
    except EidSpecError:
        return (2, r["eid"])
    return (int(e.is_multicast), e.iid, e.address.version, int(e.address), e.length,
            0 if e.group is None else int(e.group), r["site"])


def show_registrations(cfg, args) -> int:
    answers = _ms_answers(cfg, "registrations", _registrations_query(cfg, args))
    regs = []
    for a in answers:
        for r in a["registrations"]:
            rlocs = [{"address": x[0], "priority": x[1], "weight": x[2], "mpriority": x[3],
                      "mweight": x[4]} for x in r["rlocs"]]
            regs.append(dict(r, rlocs=rlocs))
    regs.sort(key=_order)
    more = len(regs) > args.limit or any(a.get("more") for a in answers)
    regs = regs[:args.limit]
    totals = [a.get("total") for a in answers]
    total = sum(totals) if all(isinstance(t, int) for t in totals) else None
    if more:
        left = f"{total - len(regs):,} more" if total is not None else "more"
        note = (f"{left} registrations not shown (at most {args.limit:,}): "
                "narrow with an EID-prefix or --site, or raise --limit")
    if args.json:
        print(json.dumps(regs))
        if more:
            print(note, file=sys.stderr)
        return 0
    if not regs:
        print("no registrations")
    for r in regs:
        locs = ", ".join(f"{x['address']} {x['priority']}/{x['weight']}" for x in r["rlocs"])
        if r.get("rle"):
            locs += " rle[" + ", ".join(a for a, _ in r["rle"]) + "]"
        print(f"{r['eid']:<32} site {r['site']:<10} expires in {r['expires_in']:>6.0f}s  "
              f"{'proxy ' if r['proxy_reply'] else ''}{locs}")
    if more:
        print(note)
    return 0


MAIN = ("received", "answered", "forwarded", "register.accepted", "registrations",
        "encap.packets", "encap.bytes", "decap.packets", "decap.bytes", "native.packets", "icmp.sent")


def run_counters(args) -> int:
    cfg, _ = load_config(args)
    want = {(r, n) for r, n in cfg.instances()}
    across = getattr(cfg, "bus", None) is not None and cfg.bus.listen is not None
    # a node across hosts: listen the whole time, the other hosts' instances too
    got = collect(cfg, topics.HEARTBEAT + ".", want=None if across else want, timeout=3.0,
                  by_host=across)
    if not got:
        raise UserError(f"no heartbeat from node {cfg.node.name}; is it running?", 1)
    out = {}
    own = own_host(cfg)
    seen = [k[:2] for k in got]
    for key, body in sorted(got.items()):
        role, n = key[0], key[1]
        c = body.get("counters", {}) if isinstance(body, dict) else {}
        if not args.all:
            c = {k: v for k, v in c.items() if k in MAIN or k.startswith("dropped")}
        # instance numbers are unique in a node but for each host's own watchdog:0:
        # another host's instance of a name heard twice is "role:N@host"
        plain = len(key) == 2 or key[2] in ("", own) or seen.count(key[:2]) == 1
        out[f"{role}:{n}" if plain else f"{role}:{n}@{key[2]}"] = c
    if args.json:
        print(json.dumps(out))
        return 0
    for inst, c in out.items():
        print(inst)
        for k in sorted(c):
            print(f"  {k:<40} {c[k]}")
    mine = {k[:2] for k in got if len(k) == 2 or k[2] in ("", own)}
    missing = sorted(f"{r}:{n}" for r, n in want - mine)
    if missing:
        print(f"(no heartbeat from {', '.join(missing)})")
    return 0
