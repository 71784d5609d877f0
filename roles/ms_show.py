"""The map_server shard's answer to ``decent show registrations|sites`` (``ms.query``).

The work per query is bounded by what it shows, not by what the shard holds: at a
million registrations the shard answers within a loop turn and its Map-Registers and
heartbeat keep going.  ``registrations`` lists at most ``limit`` (default
:data:`LIMIT_DEFAULT`, at most :data:`LIMIT_MAX`), optionally only those inside an
EID-prefix (``eid``) or of one site (``site``), read lazily from the table
(:meth:`common.machines.compact.CompactTable.iter_within`).  ``more`` says whether
others match; ``total`` is how many match when that is known without a scan (no
``eid`` given), else None.  A bad filter is answered with ``error``.
"""

from __future__ import annotations

from itertools import islice

from common.wire.eidtext import EidSpecError, format_eid, parse_eidspec

LIMIT_DEFAULT = 1000
LIMIT_MAX = 100_000


def filters(body: dict) -> tuple:
    """(prefix or None, site or None, limit) of a query body; ValueError: the reason."""
    eid, site, limit = body.get("eid"), body.get("site"), body.get("limit", LIMIT_DEFAULT)
    if eid is not None:
        if not isinstance(eid, str):
            raise ValueError("eid: not a string")
        try:
            eid = parse_eidspec(eid)
        except EidSpecError as exc:
            raise ValueError(f"eid: {exc}") from None
    if site is not None and not isinstance(site, str):
        raise ValueError("site: not a string")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= LIMIT_MAX:
        raise ValueError(f"limit: not an integer in 1..{LIMIT_MAX}")
    return eid, site, limit


def registrations(ms, prefix, site, limit: int, now: float) -> tuple[list, bool]:
    """Up to ``limit`` registrations of ``ms`` as ``ms.answered`` carries them, and
    whether more match."""
    found = list(islice(ms.table.iter_within(prefix, site), limit + 1))
    out = []
    for e in found[:limit]:
        v = e.value
        out.append({"eid": format_eid(e.eid), "site": e.site, "rlocs": v["rlocs"],
                    "rle": v.get("rle"), "ttl": e.ttl, "proxy_reply": e.proxy,
                    "merge": e.merge, "xtr_id": v["xtr"], "registrant": e.registrant,
                    "expires_in": round(ms.expires_in(e.key, now) or 0.0, 1)})
    return out, len(found) > limit


def sites(ms, shard: int, per_site: dict, now: float) -> list:
    out = []
    for s in ms.sites.values():
        st = ms.stats.get(s.name, {})
        last = st.get("last_accepted")
        out.append({"name": s.name, "nonce_policy": s.nonce_policy, "shard": shard,
                    "prefixes": [[format_eid(p), more] for p, more in s.prefixes],
                    "registrations": per_site.get(s.name, 0),
                    "last_accepted": None if last is None else
                    {"ago": round(now - last["at"], 1), "from": last["from"]},
                    "refused": dict(st.get("refused", {}))})
    return out


def answer(ms, body: dict, shard: int, now: float) -> dict:
    """The ``ms.answered`` body for ``body`` (``what``: ``sites`` or ``registrations``).
    Only a ``sites`` answer lists the sites (and counts registrations per site); a
    ``registrations`` answer counts them only for its ``total`` with ``--site``."""
    if body.get("what") == "sites":
        return {"shard": shard, "registrations": [],
                "sites": sites(ms, shard, ms.table.count_by_site(), now)}
    try:
        prefix, site, limit = filters(body)
    except ValueError as exc:
        return {"shard": shard, "error": str(exc)}
    out = {"shard": shard, "sites": []}
    out["registrations"], out["more"] = registrations(ms, prefix, site, limit, now)
    out["total"] = None if prefix is not None else (
        ms.table.count_by_site().get(site, 0) if site is not None else len(ms.table))
    return out
