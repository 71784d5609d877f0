"""Consistency of a push deployment across its members' config files (``decent config check``).

RFC 9962 section 4.3: in push mode every member stores every registration, so the
site configuration and keys MUST be the same on every member.  Pure: takes loaded
:class:`common.config.NodeConfig` objects (those with ``decent.mode = "push"``) and
returns :class:`common.decent.cluster_check.Finding` s of kind ``push``, one per
disagreement, naming which files have which value:

* ``decent.group``, ``decent.iid``, ``decent.seed_group`` or the CURVE key
  (``decent.curve_secret``) differ;
* a seed (``decent.seed_rlocs``) is no RLOC of any of the files: seeds are per
  member (a member cannot seed itself, so the lists legitimately differ), but
  every seed must be a member of the group;
* a site is missing from some files, or its prefixes (with
  ``accept_more_specifics``), its nonce policy or its keys (id, algorithm,
  secret) differ.

Secrets are compared, never printed: files with the same secret are grouped and
the groups are called "secret A", "secret B", ... in order of first appearance.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from common.wire.eidtext import format_eid


def _finding(message: str):
    from common.decent.cluster_check import Finding
    return Finding("push", message)


def _groups(cfgs: Sequence[Any], value: Callable[[Any], Any]) -> dict:
    out: dict = {}
    for c in cfgs:
        out.setdefault(value(c), []).append(c.source)
    return out


def _describe(groups: dict, show: Callable[[Any], str]) -> str:
    items = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))
    return "; ".join(f"{show(v)} in {', '.join(srcs)}" for v, srcs in items)


def _secret_labels(values) -> dict:
    labels: dict = {}
    for v in values:
        if v not in labels:
            labels[v] = "none" if v is None else f"secret {chr(ord('A') + len(labels) % 26)}"
    return labels


def _compare(out: list, what: str, cfgs, value, show=str) -> None:
    groups = _groups(cfgs, value)
    if len(groups) > 1:
        verb = "differ" if what.endswith("prefixes") else "differs"
        out.append(_finding(f"{what} {verb}: {_describe(groups, show)}"))


def _site_prefixes(site) -> frozenset:
    return frozenset((format_eid(p.eid), p.accept_more_specifics) for p in site.prefixes)


def _prefixes_text(v) -> str:
    return "[" + ", ".join(f"{e}{' (more-specifics)' if more else ''}" for e, more in sorted(v)) + "]"


def push_findings(cfgs: Sequence[Any]) -> list:
    """Every disagreement between the push-mode files among ``cfgs``."""
    push = [c for c in cfgs if c.decent.push is not None]
    out: list = []
    if len(push) < 2:
        return out
    _compare(out, "decent.group", push, lambda c: c.decent.push.group)
    _compare(out, "decent.iid", push, lambda c: c.decent.push.iid)
    members = {r for c in push for r in c.node.rlocs}
    for c in push:
        strangers = [str(r) for r in c.decent.push.seed_rlocs if r not in members]
        if strangers:
            out.append(_finding(f"{c.source}: decent.seed_rlocs {', '.join(strangers)} "
                                f"is no RLOC of any member file"))
    _compare(out, "decent.seed_group", push, lambda c: c.decent.push.seed_group,
             lambda v: "none" if v is None else str(v))
    curve = _secret_labels(c.decent.push.curve_secret for c in push)
    _compare(out, "decent.curve_secret", push, lambda c: c.decent.push.curve_secret,
             lambda v: curve[v])
    names = sorted({s.name for c in push for s in c.sites})
    for name in names:
        having = [c for c in push if c.site(name) is not None]
        if len(having) < len(push):
            missing = [c.source for c in push if c.site(name) is None]
            out.append(_finding(f"site {name!r} is in {', '.join(c.source for c in having)} "
                                f"but not in {', '.join(missing)}"))
        _compare(out, f"site {name!r} prefixes", having, lambda c: _site_prefixes(c.site(name)),
                 _prefixes_text)
        _compare(out, f"site {name!r} nonce_policy", having, lambda c: c.site(name).nonce_policy)
        key_ids = sorted({k.key_id for c in having for k in c.site(name).keys})
        for kid in key_ids:
            holders = [c for c in having if c.site(name).key(kid) is not None]
            if len(holders) < len(having):
                missing = [c.source for c in having if c.site(name).key(kid) is None]
                out.append(_finding(f"site {name!r} key id {kid} is missing in {', '.join(missing)}"))
            _compare(out, f"site {name!r} key id {kid} algorithm", holders,
                     lambda c: c.site(name).key(kid).alg)
            labels = _secret_labels(c.site(name).key(kid).secret for c in holders)
            _compare(out, f"site {name!r} key id {kid} secret", holders,
                     lambda c: c.site(name).key(kid).secret, lambda v: labels[v])
    return out


def push_summary(cfgs: Sequence[Any]) -> str | None:
    """One line for consistent push files, or None when fewer than one is in push mode."""
    push = [c for c in cfgs if c.decent.push is not None]
    if not push:
        return None
    p = push[0].decent.push
    return (f"{len(cfgs)} file(s) agree: push group [{p.iid}]{p.group}, "
            f"{len(p.seed_rlocs)} seed RLOC(s), {len(push[0].sites)} site(s) with the same "
            f"prefixes and keys")


__all__ = ["push_findings", "push_summary"]
