"""Config that parses but cannot work: refused at start with the key path and reason.

Called by :func:`common.config.parse_config` (pure, like it):

- :func:`host_bits`: a prefix written with host bits set (``10.1.1.1/24``) is not
  silently normalised: the operator meant something else, and we say what.
- :func:`own_map_server`: when the ETR registers with this node's own Map-Server
  (an ``etr.map_servers`` entry on one of ``node.rlocs`` and ``node.control_port``,
  with ``roles.map_server`` on), every ``[[database_mapping]]`` must lie inside one
  of this node's site prefixes, and the site of the most specific one must hold
  the ETR's key (same id, algorithm and secret); otherwise every Map-Register would
  be refused by ourselves.

The sane ranges of numeric options are in :mod:`common.config` itself (``_seconds``,
``_positive``): :data:`MAX_SECONDS` and :data:`MAX_RATE`.
"""

from __future__ import annotations

import re
from ipaddress import ip_address
from typing import Any

from common.wire.eidtext import format_eid

MAX_SECONDS = 7 * 86400.0   # no protocol timer of this node waits a week
MAX_RATE = 10_000_000.0     # per second: beyond any datagram rate one host reaches

_PLAIN = re.compile(r"(?:\[\d+\])?([0-9A-Fa-f:.]+)/(\d+)\Z")


def host_bits(text: str, eid: Any) -> str | None:
    """The reason to refuse ``text`` (parsed as ``eid``), or None."""
    m = _PLAIN.match(text.strip())
    if m is None or not eid.is_ip or eid.is_multicast:
        return None
    try:
        written = ip_address(m.group(1))
    except ValueError:
        return None
    if written != eid.address:
        return (f"{text.strip()} has host bits set beyond /{eid.length} "
                f"(the prefix is {format_eid(eid)}; write that, or a longer length)")
    return None


def _covering_site(sites: tuple, eid: Any) -> tuple[Any, Any] | None:
    """(site, prefix) of the most specific site prefix containing ``eid``."""
    best = None
    for s in sites:
        for p in s.prefixes:
            if p.eid.contains(eid):
                if best is None or p.eid.specificity() > best[1].eid.specificity():
                    best = (s, p)
    return best


def own_map_server(node: Any, roles: Any, sites: tuple, maps: tuple, etr: Any,
                   error: type) -> None:
    """Raise ``error(key_path, reason)`` (ConfigError) for an ETR that its own node's
    Map-Server would refuse."""
    if not roles.etr or not roles.map_server:
        return
    for i, ref in enumerate(etr.map_servers):
        if ref.address not in node.rlocs or ref.port != node.control_port:
            continue
        for j, m in enumerate(maps):
            found = _covering_site(sites, m.eid)
            if found is None:
                raise error(f"database_mapping[{j}].eid",
                            f"{format_eid(m.eid)} is outside every site of this node's own "
                            f"Map-Server (etr.map_servers[{i}] is {ref.address}), so its "
                            f"registration would be refused")
            site = found[0]
            key = site.key(ref.key.key_id)
            if key is None:
                raise error(f"etr.map_servers[{i}].key_id",
                            f"{ref.key.key_id}: site {site.name!r} (which holds "
                            f"database_mapping[{j}]) has no key with this id")
            if key.alg != ref.key.alg or key.secret != ref.key.secret:
                what = "alg" if key.alg != ref.key.alg else "secret"
                raise error(f"etr.map_servers[{i}].{what}",
                            f"differs from key {key.key_id} of site {site.name!r} on this "
                            f"node's own Map-Server, so database_mapping[{j}] would fail "
                            f"authentication")
