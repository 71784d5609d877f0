"""Consistency of a pull deployment across its nodes' config files (``decent config check``).

Pure: takes already loaded :class:`common.config.NodeConfig` objects and returns
findings; reading the files is the CLI's job.  DESIGN.md section 6: every node of
a pull deployment must agree on the modulus, the DNS suffix, the hash mode and the
hash mask, or lookups go to the wrong Map-Server set; and every registered prefix
(database mappings and site prefixes) must be consistent with the mask, or a
lookup inside it hashes to another index than its registration.

Checks, each a :class:`Finding`:

``disagreement``
    ``decent.mode``, ``decent.modulus``, ``decent.suffix`` (compared without case
    and trailing dot), ``decent.hash_mode`` (``draft`` and ``rfc9962`` are one
    mode), ``decent.hash_mask``, ``decent.lookup_ranges`` (as a set) differ
    between files; the message names which file has which value.
``mask``
    :func:`common.decent.hash.mask_warnings` for every database mapping and site
    prefix of every pull-mode file, under that file's own mode, mask and lookup
    ranges (a prefix inside a range must be at least the range's length long).
``rloc``
    one RLOC claimed by two files (DNS would send one index's traffic to whichever
    node bound it).
``push``
    the push-mode files disagree on the group, instance-ID, seed set, CURVE key,
    sites, prefixes or keys (:mod:`common.decent.push_check`, RFC 9962 4.3).
``sites`` (with ``sites=True``)
    which node serves which index is decided by DNS, so every node running a
    Map-Server must accept every node's database mappings: a site prefix covering
    the EID (exactly, or with ``accept_more_specifics``) and a key matching the
    registering node's ``etr.decent_key`` (id, algorithm and secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from common.wire.addr import Eid, clear_host_bits
from common.decent.hash import mask_warnings
from common.decent.push_check import push_findings, push_summary
from common.wire.eidtext import format_eid

PARAMS = ("modulus", "suffix", "hash_mode", "hash_mask", "lookup_ranges")


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str        # "disagreement" | "mask" | "rloc" | "push" | "sites"
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def _show(v: Any) -> str:
    return "none" if v is None else str(v)


def _group(cfgs: Sequence[Any], value: Callable[[Any], Any],
           show: Callable[[Any], Any] = lambda c, v: v) -> dict[Any, list[tuple[str, Any]]]:
    out: dict[Any, list[tuple[str, Any]]] = {}
    for c in cfgs:
        v = value(c)
        out.setdefault(v, []).append((c.source, show(c, v)))
    return out


def _disagreement(key: str, groups: dict[Any, list[tuple[str, Any]]]) -> Finding | None:
    if len(groups) < 2:
        return None
    parts = []
    for members in sorted(groups.values(), key=lambda m: (-len(m), m[0][0])):
        parts.append(f"{_show(members[0][1])} in {', '.join(src for src, _ in members)}")
    return Finding("disagreement", f"decent.{key} differs: " + "; ".join(parts))


def compare_params(cfgs: Sequence[Any]) -> list[Finding]:
    """Disagreements in decent.mode and the pull parameters across ``cfgs``."""
    out: list[Finding] = []
    f = _disagreement("mode", _group(cfgs, lambda c: c.decent.mode))
    if f:
        out.append(f)
    pulls = [c for c in cfgs if c.decent.pull is not None]
    for key in PARAMS:
        if key == "suffix":
            groups = _group(pulls, lambda c: c.decent.pull.suffix.rstrip(".").lower(),
                            lambda c, v: c.decent.pull.suffix)
        elif key == "lookup_ranges":
            groups = _group(pulls, lambda c: frozenset(c.decent.pull.lookup_ranges),
                            lambda c, v: _ranges_text(c.decent.pull.lookup_ranges))
        else:
            groups = _group(pulls, lambda c, k=key: getattr(c.decent.pull, k))
        f = _disagreement(key, groups)
        if f:
            out.append(f)
    return out


def _ranges_text(ranges) -> str:
    return "[" + ", ".join(sorted(str(r) for r in ranges)) + "]"


def registered_prefixes(cfg: Any) -> list[tuple[str, Eid]]:
    """(key path, EID) of every site prefix and database mapping of ``cfg``."""
    items = [(f"site[{i}].prefix[{j}].eid", p.eid) for i, s in enumerate(cfg.sites)
             for j, p in enumerate(s.prefixes)]
    items += [(f"database_mapping[{i}].eid", m.eid) for i, m in enumerate(cfg.database_mappings)]
    return items


def mask_findings(cfg: Any) -> list[Finding]:
    """Registered prefixes of ``cfg`` inconsistent with its own hash mode and mask."""
    pull = cfg.decent.pull
    if pull is None:
        return []
    return [Finding("mask", f"{cfg.source}: {path}: {w}")
            for path, eid in registered_prefixes(cfg)
            for w in mask_warnings(eid, pull.hash_mode, pull.hash_mask, pull.lookup_ranges)]


def rloc_findings(cfgs: Sequence[Any]) -> list[Finding]:
    owners: dict[Any, list[str]] = {}
    for c in cfgs:
        for r in c.node.rlocs:
            owners.setdefault(r, []).append(c.source)
    return [Finding("rloc", f"{r} is an RLOC of {', '.join(srcs)}")
            for r, srcs in owners.items() if len(srcs) > 1]


def covers(outer: Eid, inner: Eid) -> bool:
    """``outer`` (a unicast or multicast prefix) contains ``inner``."""
    if outer.iid != inner.iid or type(outer.address) is not type(inner.address):
        return False
    if outer.is_multicast != inner.is_multicast:
        return False
    if outer.length > inner.length or clear_host_bits(inner.address, outer.length) != outer.address:
        return False
    if inner.is_multicast:
        return (type(outer.group) is type(inner.group) and outer.group_len <= inner.group_len
                and clear_host_bits(inner.group, outer.group_len) == outer.group)
    return True


def _site_for(cfg: Any, eid: Eid):
    """(site, prefix) with the most specific site prefix of ``cfg`` covering ``eid``."""
    best = None
    for s in cfg.sites:
        for p in s.prefixes:
            if covers(p.eid, eid):
                spec = (p.eid.group_len, p.eid.length)
                if best is None or spec > best[0]:
                    best = (spec, s, p)
    return None if best is None else best[1:]


def site_findings(cfgs: Sequence[Any]) -> list[Finding]:
    """Every Map-Server node must accept every node's database mappings.  One finding
    per (registering file, Map-Server file, problem), listing the EIDs concerned."""
    problems: dict[tuple[str, str, str], list[str]] = {}
    servers = [c for c in cfgs if c.decent.pull is not None and c.roles.map_server]
    for reg in cfgs:
        if reg.decent.pull is None or not reg.roles.etr:
            continue
        key = reg.etr.decent_key
        for m in reg.database_mappings:
            for ms in servers:
                found = _site_for(ms, m.eid)
                if found is None:
                    why = "no site covers"
                else:
                    site, prefix = found
                    why = ""
                    if prefix.eid != m.eid and not prefix.accept_more_specifics:
                        why = (f"site {site.name!r} has {format_eid(prefix.eid)} without "
                               f"accept_more_specifics for")
                    elif key is not None:
                        k = site.key(key.key_id)
                        if k is None:
                            why = f"site {site.name!r} has no key id {key.key_id} for"
                        elif k.alg != key.alg:
                            why = (f"site {site.name!r} key id {key.key_id} has another "
                                   f"algorithm than etr.decent_key, for")
                        elif k.secret != key.secret:
                            why = (f"site {site.name!r} key id {key.key_id} has another "
                                   f"secret than etr.decent_key, for")
                if why:
                    problems.setdefault((ms.source, why, reg.source), []).append(
                        format_eid(m.eid))
    return [Finding("sites", f"{ms_src}: {why} {', '.join(eids)} (database mappings of "
                             f"{reg_src})")
            for (ms_src, why, reg_src), eids in problems.items()]


def check(cfgs: Sequence[Any], *, sites: bool = False) -> list[Finding]:
    """Every finding for the node configs ``cfgs`` (empty: consistent)."""
    out = compare_params(cfgs)
    for c in cfgs:
        out.extend(mask_findings(c))
    out.extend(rloc_findings(cfgs))
    out.extend(push_findings(cfgs))
    if sites:
        out.extend(site_findings(cfgs))
    return out


def summary(cfgs: Sequence[Any]) -> str:
    """One line describing what the (consistent) files agree on."""
    pulls = [c for c in cfgs if c.decent.pull is not None]
    n = len(cfgs)
    if not pulls:
        return push_summary(cfgs) or f"{n} file(s), none in pull or push mode: nothing to compare"
    p = pulls[0].decent.pull
    prefixes = sum(len(registered_prefixes(c)) for c in pulls)
    ranges = f", lookup ranges {_ranges_text(p.lookup_ranges)}" if p.lookup_ranges else ""
    return (f"{n} file(s) agree: modulus {p.modulus}, suffix {p.suffix}, hash mode "
            f"{p.hash_mode}, mask {_show(p.hash_mask)}{ranges}; {prefixes} registered prefix(es) "
            f"consistent with the mask")


__all__ = ["Finding", "PARAMS", "check", "compare_params", "covers", "mask_findings",
           "registered_prefixes", "rloc_findings", "site_findings", "summary"]
