"""The ``discovery`` role: DNS seed discovery for LISP-Decent pull mode.

Thin shell over :class:`common.decent.seeds.SeedTable`: resolves ``<i>.<suffix>`` for every
index ``i`` in ``0 .. decent.modulus-1``, A and AAAA concurrently, with dnspython's
asyncio resolver against ``decent.name_servers`` (the system resolver when none
are configured), each query bounded by ``decent.query_timeout``; the machine says
when each name is asked again (TTL within ``resolve_min``/``resolve_max``, backoff
on failure), when a record type that keeps failing while the other answers is
given up on (``decent.type_failure_rounds``), and caps each answer at
``decent.max_records_per_name`` addresses.  With ``decent.dnssec = "validate"``
every answer must be proven by the trust anchor (:mod:`roles.dnssec_check`); one
that is not counts as a failure (``dnssec.refused``): the last good set is kept.

Publishes:

- the Clone stream ``seeds`` (:data:`common.decent.seeds.STREAM`): key = index (int),
  value = ``{"addrs": [text, ...], "ttl": int, "state": "ok"|"nxdomain"|"failing",
  "updated": wall-clock ts of the last answer}``; an index not resolved yet has no
  key.  A role that starts later gets the whole table from the snapshot at once.
- every change of a set on ``discovery.sets``, type ``seeds.changed``, body
  ``{"index", "name", "old": [...], "new": [...], "state"}``.
- an answer to ``discovery.query`` (body ``{"reply": topic}``) on the reply topic,
  type ``discovery.answered``: the table with ages (``decent show seeds``).

    python -m roles.discovery -c CONFIG --instance 0
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver

from bus import topics
from bus.clone import CloneWriter
from common.decent import seeds
from common.decent.seeds import Counted, Lookup, LogLine, SeedTable, SetChanged
from roles import dnssec_check
from roles.runtime import RoleContext, run_role

MAX_CONCURRENT = 64  # names resolved at once (each is an A and an AAAA query)


def make_resolver(pull: Any) -> dns.asyncresolver.Resolver:
    """A resolver for ``pull`` (a :class:`common.config.PullSection`): its name servers
    and ports, or the system's; no cache (TTLs are honoured by the machine), no
    search list, every query bounded by ``query_timeout``."""
    if pull.name_servers:
        res = dns.asyncresolver.Resolver(configure=False)
        res.nameservers = [dns.nameserver.Do53Nameserver(str(ep.address), ep.port)
                           for ep in pull.name_servers]
    else:
        res = dns.asyncresolver.Resolver()
    res.cache = None
    res.timeout = pull.query_timeout
    res.lifetime = pull.query_timeout
    res.retry_servfail = False
    return res


def _reason(exc: BaseException) -> str:
    """A short, stable reason for a failed query (for logs and counters)."""
    if isinstance(exc, (dns.resolver.LifetimeTimeout, dns.exception.Timeout,
                        asyncio.TimeoutError)):
        return "timeout"
    if isinstance(exc, dns.resolver.NoNameservers):
        reasons = []
        for err in (exc.kwargs or {}).get("errors", []):
            e, response = err[3], err[4] if len(err) > 4 else None
            if response is not None:
                reasons.append(dns.rcode.to_text(response.rcode()))
            elif isinstance(e, ConnectionRefusedError):
                reasons.append("connection refused")
            elif e is not None:
                reasons.append(type(e).__name__)
        return "/".join(sorted(set(reasons))) or "no name server answered"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


async def lookup(res: dns.asyncresolver.Resolver, name: str, rdtype: str,
                 timeout: float) -> Lookup:
    """One query, never raising: an answer (possibly empty), NXDOMAIN or a failure."""
    qname = dns.name.from_text(name)  # absolute: no search list applies
    try:
        ans = await asyncio.wait_for(
            res.resolve(qname, rdtype, raise_on_no_answer=False, lifetime=timeout),
            timeout + 0.5)  # belt and braces around dnspython's own lifetime
    except dns.resolver.NXDOMAIN:
        return Lookup("nxdomain")
    except Exception as exc:  # every other outcome is "keep the last good set"
        return Lookup("failure", reason=f"{rdtype}: {_reason(exc)}")
    if ans.rrset is None:
        return Lookup("answer", (), None)
    addrs = tuple(r.address for r in ans.rrset
                  if r.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA))
    return Lookup("answer", addrs, ans.chaining_result.minimum_ttl)


def _validator(ctx: RoleContext, pull: Any):
    """The DNSSEC validator and the name servers to ask, or exit 2 naming the key."""
    key = "decent.trust_anchor" if pull.trust_anchor is not None else "decent.trust_anchor_file"
    try:
        if pull.trust_anchor is not None:
            text = pull.trust_anchor
        else:
            with open(pull.trust_anchor_file, encoding="ascii") as f:
                text = f.read(1 << 20)
        zone, anchor = dnssec_check.load_anchor(text)
    except (OSError, UnicodeDecodeError, dnssec_check.AnchorError) as exc:
        ctx.log.error("refusing to start: %s: %s", key, exc)
        raise SystemExit(2)
    servers = ([(str(ep.address), ep.port) for ep in pull.name_servers]
               or dnssec_check.system_servers())
    ctx.log.info("DNSSEC: validating every answer against the trust anchor of %s (%s)", zone,
                 dns.rdatatype.to_text(anchor.rdtype))
    return dnssec_check.Validator(zone, anchor, keys_max_age=pull.resolve_max), servers


async def main(ctx: RoleContext) -> None:
    cfg = ctx.cfg
    pull = cfg.decent.pull
    if pull is None:
        ctx.log.error('decent.mode is "%s", not "pull": nothing to discover', cfg.decent.mode)
        await asyncio.Event().wait()  # stay up quietly: supervisord would only restart us
        return
    res = make_resolver(pull)
    where = (", ".join(f"{ep.address}#{ep.port}" for ep in pull.name_servers)
             or "the system resolver")
    validator = servers = None
    if pull.dnssec == "validate":
        validator, servers = _validator(ctx, pull)
    table = SeedTable(pull.modulus, pull.suffix, resolve_min=pull.resolve_min,
                      resolve_max=pull.resolve_max, now=time.monotonic(),
                      type_failure_rounds=pull.type_failure_rounds,
                      max_records=pull.max_records_per_name)
    ctx.log.info("resolving 0..%d.%s (A and AAAA) via %s; re-resolve within [%g, %g] s, "
                 "query timeout %g s", pull.modulus - 1, pull.suffix, where, pull.resolve_min,
                 pull.resolve_max, pull.query_timeout)
    writer = CloneWriter(ctx, seeds.STREAM)
    writer.start()
    wake = asyncio.Event()
    in_flight: set[asyncio.Task] = set()

    def count_states() -> None:
        states = [e["state"] for e in table.table().values()]
        for s in seeds.STATES:
            ctx.counters.set(f"indexes.{s}", states.count(s))

    def handle(index: int, events: list) -> None:
        for ev in events:
            if isinstance(ev, LogLine):
                (ctx.log.warning if ev.level == "warning" else ctx.log.info)("%s", ev.message)
            elif isinstance(ev, Counted):
                ctx.counters.inc(ev.counter)
            elif isinstance(ev, SetChanged):
                ctx.counters.inc("sets.changed")
                ctx.bus.publish(topics.DISCOVERY_SETS, seeds.CHANGED,
                                {"index": ev.index, "name": ev.name, "old": list(ev.old),
                                 "new": list(ev.new), "state": ev.state})
        value = table.value(index, time.monotonic(), time.time())
        if value is not None:
            writer.set(index, value)
        count_states()

    async def resolve(index: int) -> None:
        name = table.name(index)
        ctx.counters.inc("resolve.sent")
        if validator is None:
            a, aaaa = await asyncio.gather(lookup(res, name, "A", pull.query_timeout),
                                           lookup(res, name, "AAAA", pull.query_timeout))
        else:
            a, aaaa = await asyncio.gather(
                *(dnssec_check.validated_lookup(servers, validator, name, t, pull.query_timeout)
                  for t in ("A", "AAAA")))
            for x in (a, aaaa):  # refused: the seeds machine keeps the last good set
                ctx.counters.inc("dnssec.refused" if x.kind == "failure" and "DNSSEC" in x.reason
                                 else "dnssec.validated" if x.kind != "failure" else "dnssec.no-answer")
        result = seeds.combine((a, aaaa))
        ctx.counters.inc(f"resolve.{result.kind}")
        if result.kind == "failure":
            ctx.log.debug("%s: %s", name, result.reason)
        # per record type: a type failing for good while the other answers is
        # accepted after decent.type_failure_rounds rounds (common.decent.seeds)
        handle(index, table.on_lookups(index, {"A": a, "AAAA": aaaa}, time.monotonic()))
        wake.set()

    def on_query(_topic: str, _header: Any, body: Any) -> None:
        reply = body.get("reply") if isinstance(body, dict) else None
        if not isinstance(reply, str):
            return
        ctx.counters.inc("received")
        now = time.monotonic()
        entries = []
        for i, e in sorted(table.table().items()):
            entries.append({
                "index": i, "name": e["name"], "addrs": e["addrs"], "ttl": e["ttl"],
                "state": e["state"], "reason": e["reason"], "failures": e["failures"],
                "age": None if e["updated_at"] is None else round(now - e["updated_at"], 1),
                "changed_age": (None if e["changed_at"] is None
                                else round(now - e["changed_at"], 1)),
                "next_in": round(max(0.0, e["next_at"] - now), 1)})
        ctx.bus.publish(reply, seeds.ANSWERED,
                        {"node": cfg.node.name, "modulus": pull.modulus, "suffix": pull.suffix,
                         "name_servers": where, "entries": entries})
        ctx.counters.inc("answered")

    ctx.bus.subscribe(seeds.QUERY_TOPIC, on_query)
    count_states()

    try:
        while True:
            wake.clear()
            for index in table.due(time.monotonic(), limit=MAX_CONCURRENT - len(in_flight)):
                task = ctx.spawn(resolve(index), name=f"resolve {index}")  # raising: exit 1
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            nxt = table.next_timer()
            delay = 1.0 if nxt is None else min(1.0, max(0.0, nxt - time.monotonic()))
            try:
                await asyncio.wait_for(wake.wait(), delay)
            except asyncio.TimeoutError:
                pass
    finally:
        for t in list(in_flight):
            t.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        writer.close()


if __name__ == "__main__":
    sys.exit(run_role("discovery", main))
