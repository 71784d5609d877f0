"""The ``[bus]`` section: a node that spans hosts (the bus over TCP with CURVE).

Absent, or without ``listen``/``connect``, the node is on one host and every bus
endpoint is an ``ipc://`` socket in ``node.state_dir`` (nothing changes).

On the host that runs the ``bus`` role::

    [bus]
    listen = "tcp://192.0.2.10:7400"     # ports 7400..7404 (docs/bus-protocol.md)
    secret_key_file = "keys/bus.secret"  # this host's CURVE key pair (`decent keygen`)
    allowed_keys = ["keys/sat1.public"]  # client public keys: Z85 text or key files
    allowed_keys_dir = "keys/clients"    # and/or every *.public file in a directory
    host = "bushost"                     # the name heartbeats carry (default: hostname)

On a satellite host (it runs no bus; map_resolver workers, and maybe an ETR/ITR)::

    [bus]
    connect = "tcp://192.0.2.10:7400"
    server_key = "keys/bus.public"       # the bus host's public key (Z85 or a file)
    secret_key_file = "keys/sat1.secret"
    host = "sat1"
    run = ["map_resolver:2", "map_resolver:3"]   # the instances this host runs

A satellite that runs an ``etr`` or ``itr`` needs a ``map_resolver`` instance too (it
owns the host's UDP 4342 and punts what arrives there for them) and an explicit
``host`` that is a bus topic segment: the datagrams for its ETR/ITR are punted on
``rx.<type>.<host>`` (:attr:`BusSection.xtr_host`, docs/bus-protocol.md section 7).

Every TCP link is CURVE: a config naming ``tcp://`` without the keys fails here
with the key path.  The key files are read by :mod:`bus.curve` (I/O); this module
only checks the shape.  Parsed by :func:`parse_bus` with the helpers of
:mod:`common.config`.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

from common.config_read import ConfigError, _list, _str, _Table

PORTS = 5                      # listen port P .. P+4
# An ETR or ITR on a satellite gets its host's datagrams on host-qualified topics
# (rx.map-notify.<host>, ...), so it never takes another ETR's messages.
SATELLITE_ROLES = ("map_resolver", "etr", "itr")
XTR_ROLES = ("etr", "itr")
_SEGMENT = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")   # bus/topics.py's topic segment
_TCP = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|[0-9.]+|[A-Za-z0-9.-]+):(\d{1,5})\Z")
_Z85 = re.compile(r"[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}\Z")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")


@dataclass(frozen=True)
class TcpAddr:
    host: str                  # as written (brackets kept off for IPv6)
    port: int                  # the first of PORTS consecutive ports

    def url(self, offset: int) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{h}:{self.port + offset}"


@dataclass(frozen=True)
class BusSection:
    listen: TcpAddr | None = None
    connect: TcpAddr | None = None
    secret_key_file: str | None = None      # absolute
    server_key: str | None = None           # Z85 or an absolute file name
    allowed_keys: tuple[str, ...] = ()      # Z85 or absolute file names
    allowed_keys_dir: str | None = None     # absolute
    host: str | None = None                 # None: the host's name
    run: tuple[tuple[str, int], ...] = ()   # satellite: (role, instance) run here

    @property
    def satellite(self) -> bool:
        return self.connect is not None

    @property
    def tcp(self) -> bool:
        return self.listen is not None or self.connect is not None

    @property
    def xtr_host(self) -> str | None:
        """The topic qualifier of this host's ETR/ITR datagrams: ``host`` on a satellite
        that runs an ``etr`` or ``itr``, else None (they go on the node-wide topics)."""
        if self.satellite and any(r in XTR_ROLES for r, _ in self.run):
            return self.host
        return None


EMPTY = BusSection()


def is_z85_key(text: str) -> bool:
    return bool(_Z85.match(text))


def _tcp(v: Any, path: str) -> TcpAddr:
    s = _str(v, path).strip()
    if s.startswith("ipc://"):
        raise ConfigError(path, "ipc:// is the default on one host; give a tcp:// endpoint here "
                                "or leave the key out")
    m = _TCP.match(s)
    if not m:
        raise ConfigError(path, f"{s!r}: expected tcp://HOST:PORT")
    port = int(m.group(2))
    if not 1 <= port <= 65536 - PORTS:
        raise ConfigError(path, f"port {port}: the bus uses {PORTS} ports from it; "
                                f"give 1..{65536 - PORTS}")
    return TcpAddr(m.group(1).strip("[]"), port)


def _file(base_dir: str) -> Any:
    def conv(v: Any, path: str) -> str:
        s = _str(v, path)
        if not s:
            raise ConfigError(path, "empty file name")
        return posixpath.normpath(posixpath.join(base_dir, s))
    return conv


def _key_or_file(base_dir: str) -> Any:
    def conv(v: Any, path: str) -> str:
        s = _str(v, path).strip()
        return s if is_z85_key(s) else _file(base_dir)(s, path)
    return conv


def _instance(v: Any, path: str) -> tuple[str, int]:
    s = _str(v, path)
    role, sep, num = s.partition(":")
    if role not in SATELLITE_ROLES or not sep or not num.isdigit() or int(num) > 255:
        raise ConfigError(path, f"{s!r}: expected ROLE:N with ROLE one of "
                                f"{', '.join(SATELLITE_ROLES)} (a satellite runs no bus, "
                                f"map_server, discovery or data path) and N in 0..255")
    return role, int(num)


def parse_bus(data: Any, base_dir: str) -> BusSection:
    t = _Table(data, "bus", ("listen", "connect", "secret_key_file", "server_key",
                             "allowed_keys", "allowed_keys_dir", "host", "run"))
    listen = t.get("listen", _tcp, None)
    connect = t.get("connect", _tcp, None)
    if listen is not None and connect is not None:
        raise ConfigError(t.at("connect"), "give bus.listen (this host runs the bus) or "
                                           "bus.connect (a satellite), not both")
    host = t.get("host", _str, None)
    if host is not None and not _HOST.match(host):
        raise ConfigError(t.at("host"), f"{host!r}: use letters, digits, '_', '.', '-'")
    secret = t.get("secret_key_file", _file(base_dir), None)
    server_key = t.get("server_key", _key_or_file(base_dir), None)
    allowed = t.get("allowed_keys", _list(_key_or_file(base_dir), unique=True), ())
    allowed_dir = t.get("allowed_keys_dir", _file(base_dir), None)
    run = t.get("run", _list(_instance, unique=True), ())
    if listen is None and connect is None:
        for k in ("secret_key_file", "server_key", "allowed_keys", "allowed_keys_dir", "run"):
            if t.has(k):
                raise ConfigError(t.at(k), "only with bus.listen or bus.connect (tcp://)")
        return BusSection(host=host)
    which = "listen" if listen is not None else "connect"
    if secret is None:
        raise ConfigError("bus.secret_key_file", f"required with bus.{which}: every TCP link "
                                                 f"of the bus is CURVE (plain TCP is refused); "
                                                 f"make a key pair with `decent keygen DIR`")
    if listen is not None:
        if not allowed and allowed_dir is None:
            raise ConfigError("bus.allowed_keys", "required with bus.listen (or "
                                                  "bus.allowed_keys_dir): the public keys of "
                                                  "the satellites allowed to connect")
        for k in ("server_key", "run"):
            if t.has(k):
                raise ConfigError(t.at(k), "only on a satellite (bus.connect)")
    else:
        if server_key is None:
            raise ConfigError("bus.server_key", "required with bus.connect: the bus host's "
                                                "public key (Z85 or its .public file)")
        if not run:
            raise ConfigError("bus.run", "required with bus.connect: the instances this host "
                                         "runs, e.g. [\"map_resolver:2\"]")
        for k in ("allowed_keys", "allowed_keys_dir"):
            if t.has(k):
                raise ConfigError(t.at(k), "only on the bus host (bus.listen)")
        xtrs = [f"{r}:{n}" for r, n in run if r in XTR_ROLES]
        if xtrs:
            if not any(r == "map_resolver" for r, _ in run):
                raise ConfigError(t.at("run"), f"{', '.join(xtrs)} needs a map_resolver "
                                               f"instance on this host too: it owns the host's "
                                               f"UDP 4342 and punts what arrives there for them")
            if host is None or not _SEGMENT.match(host):
                raise ConfigError(t.at("host"), f"{host!r}: required with {', '.join(xtrs)} in "
                                                f"bus.run, as a bus topic segment (lowercase "
                                                f"letters, digits, '-', '_'): this host's ETR/ITR "
                                                f"datagrams go on rx.<type>.<host>")
    return BusSection(listen, connect, secret, server_key, allowed, allowed_dir, host, run)
