"""The ``[dataplane]`` section: the LISP data path's TUN interfaces and options.

::

    [dataplane]
    underlay_mtu = 1500          # no outer packet is larger
    nonce = true                 # N bit (24-bit nonce)
    locator_status = true        # L bit (the node's RLOCs as locator-status bits)
    instance_id = true           # I bit (the interface's IID in the header)
    native_interface = "eth0"    # natively forwarded packets leave here; absent: dropped
    miss_queue = 4               # packets held per destination while it is resolved

    [[dataplane.interface]]
    tun = "lisp0"                # created at start (persistent), deleted by `decent down`
    iid = 0
    routes = ["10.2.0.0/16", "fd00:2::/32"]   # remote EID space pointed at the TUN
    table = 0                    # routing table for those routes (0: main)

Parsed by :func:`parse_dataplane` with the helpers of :mod:`common.config`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any

from common.config_read import ConfigError, _bool, _int, _list, _str, _Table

_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}\Z")


@dataclass(frozen=True)
class TunInterface:
    tun: str
    iid: int
    routes: tuple            # ip_network objects
    table: int               # 0: the main table


@dataclass(frozen=True)
class DataplaneSection:
    underlay_mtu: int
    nonce: bool
    locator_status: bool
    instance_id: bool
    native_interface: str | None
    miss_queue: int
    interfaces: tuple[TunInterface, ...]

    def tun_names(self) -> list[str]:
        return [i.tun for i in self.interfaces]


EMPTY = DataplaneSection(1500, True, True, True, None, 4, ())


def parse_dataplane(data: Any) -> DataplaneSection:
    t = _Table(data, "dataplane", ("underlay_mtu", "nonce", "locator_status", "instance_id",
                                   "native_interface", "miss_queue", "interface"))

    def ifname(v: Any, path: str) -> str:
        s = _str(v, path)
        if not _IFNAME.match(s):
            raise ConfigError(path, f"{s!r} is not an interface name (1-15 letters, digits, '_.-')")
        return s

    def prefix(v: Any, path: str):
        s = _str(v, path)
        try:
            return ip_network(s, strict=True)
        except ValueError as exc:
            raise ConfigError(path, f"not an IP prefix: {exc}") from None

    interfaces: list[TunInterface] = []
    for idata, ipath in t.tables("interface"):
        it = _Table(idata, ipath, ("tun", "iid", "routes", "table"))
        iface = TunInterface(it.get("tun", ifname), it.get("iid", _int(0, 0xFFFFFE), 0),
                             it.get("routes", _list(prefix, unique=True), ()),
                             it.get("table", _int(0, 0xFFFFFFFF), 0))
        for o in interfaces:
            if o.tun == iface.tun:
                raise ConfigError(it.at("tun"), f"{iface.tun!r} is used twice")
            if o.iid == iface.iid:
                raise ConfigError(it.at("iid"), f"instance ID {iface.iid} already has TUN {o.tun!r}")
        interfaces.append(iface)
    return DataplaneSection(
        underlay_mtu=t.get("underlay_mtu", _int(576, 65535), 1500),
        nonce=t.get("nonce", _bool, True),
        locator_status=t.get("locator_status", _bool, True),
        instance_id=t.get("instance_id", _bool, True),
        native_interface=t.get("native_interface", ifname, None),
        miss_queue=t.get("miss_queue", _int(0, 64), 4),
        interfaces=tuple(interfaces),
    )


__all__ = ["DataplaneSection", "TunInterface", "EMPTY", "parse_dataplane"]
