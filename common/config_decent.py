"""The node configuration's ``[decent]`` section: the mode and the keys of pull mode
(DNS names, hash mode and mask, lookup ranges, DNSSEC trust anchor) and of push mode
(group, seeds, CURVE secret), and the warnings about prefixes the hash mask treats
unevenly.  Called by :func:`common.config.parse_config`.  Pure."""

from __future__ import annotations

import posixpath
import re
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from common.config_model import (
    DECENT_MODES,
    HASH_MODES,
    DatabaseMapping,
    DecentSection,
    PullSection,
    PushSection,
    Site,
)
from common.config_read import (
    ConfigError,
    _bool,
    _choice,
    _eid,
    _endpoint,
    _int,
    _list,
    _multicast,
    _seconds,
    _str,
    _Table,
    _type_name,
    _unicast,
)
from common.decent.hash import LookupRange, canonical_mode, mask_warnings
from common.wire.eidtext import format_eid

_PULL_KEYS = ("modulus", "suffix", "hash_mode", "hash_mask", "name_servers", "resolve_min",
              "resolve_max", "query_timeout", "lookup_ranges", "type_failure_rounds",
              "max_records_per_name", "dnssec", "trust_anchor", "trust_anchor_file")
_PUSH_KEYS = ("group", "iid", "seed_rlocs", "seed_group", "core_seed", "snapshot_on_join",
              "membership_interval", "curve_secret", "snapshot_port")
_Z85 = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}\Z")
_DNS_NAME = re.compile(r"(?=.{1,253}\.?\Z)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                       r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?\Z")


def _decent(data: Any) -> DecentSection:
    t = _Table(data, "decent", ("mode",) + _PULL_KEYS + _PUSH_KEYS)
    mode = t.get("mode", _choice(DECENT_MODES), "none")
    unused = {"none": _PULL_KEYS + _PUSH_KEYS, "pull": _PUSH_KEYS, "push": _PULL_KEYS}[mode]
    for k in unused:
        if t.has(k):
            raise ConfigError(t.at(k), f'not used with decent.mode = "{mode}"')
    if mode == "pull":
        return DecentSection(mode, _pull(t), None)
    if mode == "push":
        return DecentSection(mode, None, _push(t))
    return DecentSection(mode, None, None)


def _pull(t: _Table) -> PullSection:
    modulus = t.get("modulus", _int(1, 1 << 24))
    suffix = t.get("suffix", _str)
    if not _DNS_NAME.match(suffix) or suffix == ".":
        raise ConfigError(t.at("suffix"), f"not a DNS name: {suffix!r}")
    named = t.get("hash_mode", _choice(HASH_MODES))
    hash_mode = canonical_mode(named)
    if hash_mode == "lispers":
        if t.has("hash_mask") and t.data["hash_mask"] != "none":
            raise ConfigError(t.at("hash_mask"), 'not allowed with hash_mode "lispers" '
                                                 '(lispers.net hashes the whole string)')
        mask = None
    else:
        if not t.has("hash_mask"):
            unit = "bytes of the EID string" if hash_mode == "rfc9962" else "prefix bits"
            raise ConfigError(t.at("hash_mask"), f'missing: hash_mode "{named}" needs an '
                                                 f'explicit mask ({unit}) or "none"')
        raw = t.data["hash_mask"]
        if raw == "none":
            mask = None
        elif hash_mode == "rfc9962":
            mask = _mask_int(raw, t.at("hash_mask"), 1, 255)
        else:
            mask = _mask_int(raw, t.at("hash_mask"), 1, 128)
    ns = t.get("name_servers", _list(_endpoint(53), unique=True), ())
    rmin = t.get("resolve_min", _seconds, 10.0)
    rmax = t.get("resolve_max", _seconds, 300.0)
    if rmin > rmax:
        raise ConfigError(t.at("resolve_min"), f"{rmin:g} is longer than decent.resolve_max "
                                               f"({rmax:g})")
    return PullSection(modulus, suffix.rstrip("."), hash_mode, mask, ns, rmin, rmax,
                       t.get("query_timeout", _seconds, 2.0), _lookup_ranges(t, hash_mode),
                       t.get("type_failure_rounds", _int(1, 100), 3),
                       t.get("max_records_per_name", _int(1, 1024), 32), *_dnssec(t, suffix))


_ANCHOR = re.compile(r"\S+\s+(?:\d+\s+)?(?:IN\s+)?(DS|DNSKEY)\s+\S", re.I)


def _dnssec(t: _Table, suffix: str) -> tuple:
    """(dnssec, trust_anchor, trust_anchor_file): under "validate" exactly one anchor,
    whose records name the suffix's zone or an ancestor (the role parses them fully)."""
    mode = t.get("dnssec", _choice(("off", "validate")), "off")
    anchor = t.get("trust_anchor", _str, None)
    path = t.get("trust_anchor_file", _str, None)
    if mode == "off":
        for k in ("trust_anchor", "trust_anchor_file"):
            if t.has(k):
                raise ConfigError(t.at(k), 'not used with decent.dnssec = "off"')
        return mode, None, None
    if (anchor is None) == (path is None):
        raise ConfigError(t.at("trust_anchor"), 'decent.dnssec = "validate" needs exactly one of '
                                                'trust_anchor and trust_anchor_file')
    if path is not None and not posixpath.isabs(path):
        raise ConfigError(t.at("trust_anchor_file"), f"must be an absolute path, not {path!r}")
    if anchor is not None:
        zone = suffix.rstrip(".").lower() + "."
        lines = [ln.split(";", 1)[0].strip() for ln in anchor.splitlines()]
        for n, line in enumerate((ln for ln in lines if ln), 1):
            if not _ANCHOR.match(line):
                raise ConfigError(t.at("trust_anchor"), f"record {n}: expected "
                                                        f"'<zone> [ttl] [IN] DS|DNSKEY <data>'")
            owner = line.split()[0].rstrip(".").lower() + "."
            if not (zone == owner or zone.endswith("." + owner) or owner == "."):
                raise ConfigError(t.at("trust_anchor"), f"record {n}: {owner} is not the zone of "
                                                        f"decent.suffix ({suffix.rstrip('.')}) nor above it")
        if not any(lines):
            raise ConfigError(t.at("trust_anchor"), "empty")
    return mode, anchor, path


def _lookup_ranges(t: _Table, hash_mode: str) -> tuple[LookupRange, ...]:
    """``lookup_ranges = [{ range = "[<iid>]<prefix>", length = N }, ...]`` (section 5.2)."""
    if not t.has("lookup_ranges"):
        return ()
    if hash_mode != "rfc9962":
        raise ConfigError(t.at("lookup_ranges"), f'only used with hash_mode "rfc9962", not '
                                                 f'"{hash_mode}"')
    if not isinstance(t.data["lookup_ranges"], list):
        raise ConfigError(t.at("lookup_ranges"), "expected an array of { range, length } tables")
    out: list[LookupRange] = []
    for rdata, rpath in t.tables("lookup_ranges"):
        r = _Table(rdata, rpath, ("range", "length"))
        prefix = r.get("range", _eid)
        if prefix.is_multicast or not isinstance(prefix.address, (IPv4Address, IPv6Address)):
            raise ConfigError(r.at("range"), f"{format_eid(prefix)}: a lookup range is a unicast "
                                             f"IPv4 or IPv6 prefix")
        bits = 32 if isinstance(prefix.address, IPv4Address) else 128
        length = r.get("length", _int(prefix.length, bits))
        if any(o.prefix == prefix for o in out):
            raise ConfigError(r.at("range"), f"{format_eid(prefix)} is listed twice")
        out.append(LookupRange(prefix, length))
    return tuple(out)


def _mask_int(v: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(path, f'expected an integer or "none", got {_type_name(v)}')
    return _int(lo, hi)(v, path)


def _push(t: _Table) -> PushSection:
    return PushSection(
        group=t.get("group", _multicast),
        iid=t.get("iid", _int(0, 0xFFFFFE), 0),  # 0xFFFFFF marks replicated Map-Registers
        seed_rlocs=t.get("seed_rlocs", _list(_unicast, unique=True), ()),
        seed_group=t.get("seed_group", _multicast, None),
        core_seed=t.get("core_seed", _bool, False),
        snapshot_on_join=t.get("snapshot_on_join", _bool, True),
        membership_interval=t.get("membership_interval", _seconds, 60.0),
        curve_secret=_curve(t),
        snapshot_port=t.get("snapshot_port", _int(1, 65535), 4344),
    )


def _curve(t: _Table) -> str | None:
    if not t.has("curve_secret"):
        return None
    v = t.get("curve_secret", _str)
    if not _Z85.match(v):
        raise ConfigError(t.at("curve_secret"), "expected a 40-character Z85 CURVE secret key "
                                                "(python -c 'import zmq; print(zmq.curve_keypair()[1])')")
    return v


def _pull_warnings(decent: DecentSection, sites: tuple[Site, ...],
                   maps: tuple[DatabaseMapping, ...]) -> tuple[str, ...]:
    if decent.pull is None:
        return ()
    pull = decent.pull
    out: list[str] = []
    items = [(f"site[{i}].prefix[{j}].eid", p.eid) for i, s in enumerate(sites)
             for j, p in enumerate(s.prefixes)]
    items += [(f"database_mapping[{i}].eid", m.eid) for i, m in enumerate(maps)]
    for path, eid in items:
        out.extend(f"{path}: {w}" for w in mask_warnings(eid, pull.hash_mode, pull.hash_mask,
                                                         pull.lookup_ranges))
    return tuple(out)
