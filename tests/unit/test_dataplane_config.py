"""The [dataplane] section: defaults, interfaces, and errors naming the key path."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from common.config import ConfigError, parse_config

NODE = {"node": {"name": "n", "rlocs": ["192.0.2.1"], "state_dir": "st"}}


def cfg(dp):
    return parse_config(dict(NODE, dataplane=dp), "t.toml", "/tmp")


def test_defaults_and_absent_section():
    assert parse_config(dict(NODE), "t.toml", "/tmp").dataplane.interfaces == ()
    d = cfg({"interface": [{"tun": "lisp0", "routes": ["10.0.0.0/8", "fd00::/16"]}]}).dataplane
    assert (d.underlay_mtu, d.nonce, d.locator_status, d.instance_id, d.native_interface) == \
        (1500, True, True, True, None)
    [i] = d.interfaces
    assert (i.tun, i.iid, i.table) == ("lisp0", 0, 0)
    assert i.routes == (ip_network("10.0.0.0/8"), ip_network("fd00::/16"))
    assert d.tun_names() == ["lisp0"]


@pytest.mark.parametrize("dp, path, reason", [
    ({"interface": [{"tun": "a-name-longer-than-15"}]}, "dataplane.interface[0].tun", "interface name"),
    ({"interface": [{"tun": "l0", "routes": ["10.1.0.1/8"]}]}, "dataplane.interface[0].routes[0]",
     "not an IP prefix"),
    ({"interface": [{"tun": "l0", "iid": 1}, {"tun": "l1", "iid": 1}]}, "dataplane.interface[1].iid",
     "already has TUN"),
    ({"interface": [{"tun": "l0"}, {"tun": "l0", "iid": 2}]}, "dataplane.interface[1].tun", "used twice"),
    ({"interface": [{"tun": "l0", "iid": 0xFFFFFF}]}, "dataplane.interface[0].iid", "out of range"),
    ({"underlay_mtu": 100}, "dataplane.underlay_mtu", "out of range"),
    ({"mtu": 1500}, "dataplane.mtu", "unknown key"),
])
def test_errors_name_the_key(dp, path, reason):
    with pytest.raises(ConfigError) as e:
        cfg(dp)
    assert e.value.key_path == path and reason in e.value.reason
