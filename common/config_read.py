"""Reading a node configuration's TOML values: the error type, the typed readers.

Pure.  :class:`_Table` reads one TOML table, refusing unknown keys up front (with a
"did you mean" when one is close); the ``_str``/``_int``/``_seconds``/... converters
each take ``(value, key path)`` and raise :class:`ConfigError` naming that path and
the reason.  :mod:`common.config` builds the node's sections from them, as do the
sections kept in modules of their own (:mod:`common.bus_config`,
:mod:`common.dataplane_config`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Callable, Union

from common.config_checks import MAX_RATE, MAX_SECONDS, host_bits
from common.wire.addr import Eid
from common.wire.eidtext import EidSpecError, parse_eidspec

IPAddress = Union[IPv4Address, IPv6Address]

# Key algorithm names -> RFC 9301 Algorithm ID (the low byte of the Key ID field).
ALGORITHMS = {"none": 0, "hmac-sha-1-96": 1, "hmac-sha-256-128": 2}

class ConfigError(ValueError):
    """An invalid node configuration: ``<source>: <key.path>: <reason>``."""

    def __init__(self, key_path: str, reason: str, source: str = "<config>") -> None:
        self.key_path = key_path
        self.reason = reason
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.key_path:
            return f"{self.source}: {self.key_path}: {self.reason}"
        return f"{self.source}: {self.reason}"


@dataclass(frozen=True)
class Endpoint:
    """An address and UDP port (a Map-Resolver, a name server)."""

    address: IPAddress
    port: int


@dataclass(frozen=True)
class Key:
    """An authentication key: ``key_id`` (0-255), algorithm name and ID, secret."""

    key_id: int
    alg: str
    alg_id: int
    secret: str | None = field(repr=False)  # None only with alg "none"; kept out of logs

    @property
    def secret_bytes(self) -> bytes:
        return (self.secret or "").encode("utf-8")


# ---------------------------------------------------------------------------
# reading helpers

_REQUIRED = object()


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    return f"a {type(v).__name__}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Table:
    """One TOML table being read: typed getters, and unknown keys refused up front."""

    def __init__(self, data: Any, path: str, keys: tuple[str, ...],
                 hints: dict[str, str] | None = None) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a table, got {_type_name(data)}")
        for k in data:
            if k not in keys:
                if hints and k in hints:
                    reason = hints[k]
                else:
                    close = difflib.get_close_matches(k, keys, n=1)
                    reason = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
                raise ConfigError(_join(path, k), reason)
        self.data = data
        self.path = path

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, conv: Callable[[Any, str], Any], default: Any = _REQUIRED) -> Any:
        if key not in self.data:
            if default is _REQUIRED:
                raise ConfigError(self.at(key), "missing")
            return default
        return conv(self.data[key], self.at(key))

    def tables(self, key: str) -> list[tuple[Any, str]]:
        """An array of tables as (table data, path) pairs; absent = empty."""
        v = self.data.get(key, [])
        if not isinstance(v, list):
            raise ConfigError(self.at(key), f"expected an array of tables ([[{self.at(key)}]]), "
                                            f"got {_type_name(v)}")
        return [(item, f"{self.at(key)}[{i}]") for i, item in enumerate(v)]


def _str(v: Any, path: str) -> str:
    if not isinstance(v, str):
        raise ConfigError(path, f"expected a string, got {_type_name(v)}")
    return v


def _bool(v: Any, path: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(path, f"expected true or false, got {_type_name(v)}")
    return v


def _int(lo: int, hi: int) -> Callable[[Any, str], int]:
    def conv(v: Any, path: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(path, f"expected an integer, got {_type_name(v)}")
        if not lo <= v <= hi:
            raise ConfigError(path, f"{v} out of range {lo}..{hi}")
        return v
    return conv


def _seconds(v: Any, path: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(path, f"expected a number of seconds, got {_type_name(v)}")
    if not v > 0 or v != v or v == float("inf"):
        raise ConfigError(path, f"must be a positive number of seconds, not {v}")
    if v > MAX_SECONDS:
        raise ConfigError(path, f"{v:g} seconds is out of range (at most {MAX_SECONDS:g}, "
                                f"a week)")
    return float(v)


def _positive(v: Any, path: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(path, f"expected a number, got {_type_name(v)}")
    if not v > 0 or v == float("inf"):
        raise ConfigError(path, f"must be a positive number, not {v}")
    if v > MAX_RATE:
        raise ConfigError(path, f"{v:g} is out of range (at most {MAX_RATE:g} per second)")
    return float(v)


def _choice(options: tuple[str, ...]) -> Callable[[Any, str], str]:
    def conv(v: Any, path: str) -> str:
        s = _str(v, path)
        if s not in options:
            raise ConfigError(path, f"{s!r} is not one of " + ", ".join(repr(o) for o in options))
        return s
    return conv


def _address(v: Any, path: str) -> IPAddress:
    s = _str(v, path)
    try:
        return ip_address(s)
    except ValueError:
        raise ConfigError(path, f"not an IPv4 or IPv6 address: {s!r}") from None


def _unicast(v: Any, path: str) -> IPAddress:
    a = _address(v, path)
    if a.is_multicast or a.is_unspecified:
        raise ConfigError(path, f"{v} is not a unicast address")
    return a


def _multicast(v: Any, path: str) -> IPAddress:
    a = _address(v, path)
    if not a.is_multicast:
        raise ConfigError(path, f"{v} is not a multicast group address")
    return a


def _list(item: Callable[[Any, str], Any], unique: bool = False) -> Callable[[Any, str], tuple]:
    def conv(v: Any, path: str) -> tuple:
        if not isinstance(v, list):
            raise ConfigError(path, f"expected an array, got {_type_name(v)}")
        out = []
        for i, x in enumerate(v):
            parsed = item(x, f"{path}[{i}]")
            if unique and parsed in out:
                raise ConfigError(f"{path}[{i}]", f"{x} is listed twice")
            out.append(parsed)
        return tuple(out)
    return conv


def _endpoint(default_port: int) -> Callable[[Any, str], Endpoint]:
    """``addr``, ``addr:port``, ``[v6]:port`` or a bare IPv6 address."""
    def conv(v: Any, path: str) -> Endpoint:
        s = _str(v, path).strip()
        host, port = s, default_port
        m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", s)
        if m:
            host, port = m.group(1), int(m.group(2)) if m.group(2) else default_port
        elif s.count(":") == 1:
            host, _, p = s.partition(":")
            if not p.isdigit():
                raise ConfigError(path, f"bad port in {s!r}")
            port = int(p)
        if not 1 <= port <= 65535:
            raise ConfigError(path, f"port {port} out of range 1..65535")
        return Endpoint(_unicast(host, path), port)
    return conv


def _hex(ndigits: int) -> Callable[[Any, str], bytes]:
    def conv(v: Any, path: str) -> bytes:
        s = _str(v, path)
        if not re.fullmatch(f"[0-9a-fA-F]{{{ndigits}}}", s):
            raise ConfigError(path, f"expected {ndigits} hex digits, got {s!r}")
        return bytes.fromhex(s)
    return conv


def _eid(v: Any, path: str) -> Eid:
    s = _str(v, path)
    try:
        eid = parse_eidspec(s)
    except EidSpecError as exc:
        raise ConfigError(path, str(exc)) from None
    why = host_bits(s, eid)
    if why:
        raise ConfigError(path, why)
    return eid


def _key(data: Any, path: str, id_key: str) -> Key:
    """A key table; ``id_key`` is ``id`` in a site, ``key_id`` for a Map-Server."""
    t = _Table(data, path, (id_key, "alg", "secret"))
    key_id = t.get(id_key, _int(0, 255), 0)
    alg = t.get("alg", _choice(tuple(ALGORITHMS)), "hmac-sha-256-128")
    if alg == "none":
        if t.has("secret"):
            raise ConfigError(t.at("secret"), 'not used with alg "none"')
        return Key(key_id, alg, ALGORITHMS[alg], None)
    secret = t.get("secret", _str)
    if not secret:
        raise ConfigError(t.at("secret"), "empty")
    return Key(key_id, alg, ALGORITHMS[alg], secret)
