"""Issue 16: the [bus] section of a node across hosts (every mistake names its key
path), CURVE key files (`decent keygen`: 0600 secret, no symlink followed, nothing
overwritten; a loose or foreign key file refused at load), the configs/multihost
examples, and what a satellite runs under supervisord."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import zmq

from bus import curve
from bus.endpoints import Endpoints, SatelliteEndpoints, for_config
from cli import supervise
from common.config import ConfigError, parse_config
from roles import nodeconf

REPO = Path(__file__).resolve().parents[2]
BASE = "/etc/decent"
Z85 = zmq.curve_keypair()[0].decode()


def doc(**bus) -> dict:
    return {"node": {"name": "n1", "rlocs": ["127.0.0.1"], "state_dir": "state"},
            "roles": {"map_server": {"shards": 2}},
            "site": [{"name": "a", "key": [{"id": 0, "alg": "hmac-sha-256-128", "secret": "s"}],
                      "prefix": [{"eid": "10.1.0.0/16"}]}],
            "bus": bus}


def parse(**bus):
    return parse_config(doc(**bus), "x.toml", BASE)


def err(**bus) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        parse(**bus)
    return e.value


# ---------------------------------------------------------------------------
# the section

def test_no_bus_section_is_one_host_on_ipc():
    cfg = parse_config({k: v for k, v in doc().items() if k != "bus"}, "x.toml", BASE)
    assert not cfg.bus.tcp and not cfg.bus.satellite
    ep = for_config(cfg)
    assert type(ep) is Endpoints and ep.bus_in.startswith("ipc://")
    assert ("bus", 0) in cfg.instances()


def test_bus_host_section():
    cfg = parse(listen="tcp://192.0.2.10:7400", secret_key_file="k/bus.secret",
                allowed_keys=[Z85, "k/sat1.public"], host="h1")
    b = cfg.bus
    assert b.listen.host == "192.0.2.10" and b.listen.port == 7400 and not b.satellite
    assert b.listen.url(4) == "tcp://192.0.2.10:7404"
    assert b.secret_key_file == "/etc/decent/k/bus.secret"
    assert b.allowed_keys == (Z85, "/etc/decent/k/sat1.public")
    assert cfg.instances()[0] == ("bus", 0)


def test_satellite_runs_its_instances_and_a_watchdog_and_no_bus():
    cfg = parse(connect="tcp://[2001:db8::1]:7400", server_key=Z85, secret_key_file="s.secret",
                run=["map_resolver:3", "map_resolver:2"])
    assert cfg.bus.satellite and cfg.bus.connect.url(1) == "tcp://[2001:db8::1]:7401"
    assert cfg.instances() == [("map_resolver", 2), ("map_resolver", 3), ("watchdog", 0)]
    assert cfg.count("map_server") == 2          # the node's shards, for routing
    text = supervise.render(cfg, "/etc/decent/x.toml")
    assert "[program:map_resolver_2]" in text and "[program:map_resolver_3]" in text
    assert "[program:bus_0]" not in text and "[program:map_server_0]" not in text


def test_satellite_with_an_etr_itr_pair_qualifies_their_topics_by_its_host():
    cfg = parse(connect="tcp://10.0.0.1:7400", server_key=Z85, secret_key_file="s.secret",
                host="sat-1", run=["itr:0", "etr:1", "map_resolver:1"])
    assert cfg.instances() == [("map_resolver", 1), ("etr", 1), ("itr", 0), ("watchdog", 0)]
    assert cfg.bus.xtr_host == "sat-1"
    text = supervise.render(cfg, "/etc/decent/x.toml")
    assert "[program:etr_1]" in text and "[program:itr_0]" in text
    # workers only, on a satellite or one host: the node-wide topics as before
    only = parse(connect="tcp://10.0.0.1:7400", server_key=Z85, secret_key_file="s.secret",
                 host="sat-2", run=["map_resolver:2"])
    assert only.bus.xtr_host is None
    assert parse(host="h1").bus.xtr_host is None


@pytest.mark.parametrize("bus, path, words", [
    ({"listen": "tcp://10.0.0.1:7400"}, "bus.secret_key_file", "plain TCP is refused"),
    ({"connect": "tcp://10.0.0.1:7400"}, "bus.secret_key_file", "CURVE"),
    ({"listen": "tcp://10.0.0.1:7400", "secret_key_file": "b.secret"}, "bus.allowed_keys",
     "satellites"),
    ({"connect": "tcp://10.0.0.1:7400", "secret_key_file": "s", "run": ["map_resolver:1"]},
     "bus.server_key", "public key"),
    ({"connect": "tcp://10.0.0.1:7400", "secret_key_file": "s", "server_key": Z85},
     "bus.run", "instances"),
    ({"connect": "tcp://10.0.0.1:7400", "secret_key_file": "s", "server_key": Z85,
      "run": ["map_server:0"]}, "bus.run[0]", "satellite runs no bus"),
    ({"connect": "tcp://10.0.0.1:7400", "secret_key_file": "s", "server_key": Z85,
      "run": ["map_resolver:x"]}, "bus.run[0]", "ROLE:N"),
    ({"connect": "tcp://10.0.0.1:7400", "secret_key_file": "s", "server_key": Z85,
      "run": ["map_resolver:1", "dataplane:0"]}, "bus.run[1]", "no bus, map_server, discovery"),
    ({"connect": "tcp://10.0.0.1:7400", "secret_key_file": "s", "server_key": Z85, "host": "s1",
      "run": ["etr:1", "itr:0"]}, "bus.run", "needs a map_resolver instance"),
    ({"connect": "tcp://10.0.0.1:7400", "secret_key_file": "s", "server_key": Z85,
      "run": ["map_resolver:1", "etr:1"]}, "bus.host", "required with etr:1"),
    ({"connect": "tcp://10.0.0.1:7400", "secret_key_file": "s", "server_key": Z85, "host": "Sat.1",
      "run": ["map_resolver:1", "itr:0"]}, "bus.host", "topic segment"),
    ({"listen": "ipc:///tmp/x"}, "bus.listen", "default on one host"),
    ({"listen": "10.0.0.1:7400"}, "bus.listen", "tcp://HOST:PORT"),
    ({"listen": "tcp://10.0.0.1:65534"}, "bus.listen", "5 ports"),
    ({"listen": "tcp://10.0.0.1:7400", "connect": "tcp://10.0.0.2:7400"}, "bus.connect",
     "not both"),
    ({"secret_key_file": "x"}, "bus.secret_key_file", "only with"),
    ({"listen": "tcp://10.0.0.1:7400", "secret_key_file": "s", "allowed_keys": [Z85],
      "run": ["map_resolver:1"]}, "bus.run", "only on a satellite"),
    ({"host": "a b"}, "bus.host", "letters"),
    ({"bogus": 1}, "bus.bogus", "unknown key"),
])
def test_mistakes_name_their_key_path(bus, path, words):
    e = err(**bus)
    assert e.key_path == path, e
    assert words in e.reason, e


# ---------------------------------------------------------------------------
# keys

def test_keygen_writes_a_private_secret_and_a_public_key(tmp_path):
    pub, sec = curve.keygen(str(tmp_path / "keys"), "h1")
    assert stat.S_IMODE(os.stat(sec).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(pub).st_mode) == 0o644
    public, secret = Path(pub).read_text().strip(), Path(sec).read_text().strip()
    assert zmq.curve_public(secret.encode()) == public.encode()
    with pytest.raises(FileExistsError):          # never overwrites a key
        curve.keygen(str(tmp_path / "keys"), "h1")
    assert Path(sec).read_text().strip() == secret


def test_keygen_does_not_follow_a_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    d = tmp_path / "keys"
    d.mkdir()
    (d / "h1.secret").symlink_to(target)
    with pytest.raises(OSError):
        curve.keygen(str(d), "h1")
    assert target.read_text() == "keep"
    assert not (d / "h1.public").exists()


def satellite_files(tmp_path, secret_mode=0o600) -> Path:
    keys = tmp_path / "keys"
    curve.keygen(str(keys), "bus")
    curve.keygen(str(keys), "sat1")
    os.chmod(keys / "sat1.secret", secret_mode)
    conf = tmp_path / "sat.toml"
    conf.write_text('[node]\nname = "n1"\nrlocs = ["127.0.0.1"]\nstate_dir = "st"\n'
                    '[bus]\nconnect = "tcp://127.0.0.1:7400"\nserver_key = "keys/bus.public"\n'
                    'secret_key_file = "keys/sat1.secret"\nrun = ["map_resolver:1"]\n')
    return conf


def test_satellite_loads_its_keys_and_connects_over_curve(tmp_path):
    cfg = nodeconf.load(satellite_files(tmp_path))
    ep = for_config(cfg)
    assert isinstance(ep, SatelliteEndpoints)
    assert ep.bus_in == "tcp://127.0.0.1:7400" and ep.sendq_out == "tcp://127.0.0.1:7403"
    assert ep.keys.server == (tmp_path / "keys" / "bus.public").read_text().strip().encode()
    z = zmq.Context()
    try:
        s = z.socket(zmq.SUB)
        ep.connect(s, ep.bus_out)
        assert s.getsockopt(zmq.MECHANISM) == zmq.CURVE
        s.close(0)
    finally:
        z.term()


def test_a_secret_key_readable_by_others_is_refused_at_load(tmp_path):
    conf = satellite_files(tmp_path, 0o644)
    with pytest.raises(ConfigError) as e:
        nodeconf.load(conf)
    assert e.value.key_path == "bus.secret_key_file" and "chmod 600" in e.value.reason


def test_a_missing_or_bad_key_file_is_refused_at_load(tmp_path):
    conf = satellite_files(tmp_path)
    (tmp_path / "keys" / "bus.public").write_text("not a key\n")
    with pytest.raises(ConfigError) as e:
        nodeconf.load(conf)
    assert e.value.key_path == "bus.server_key" and "Z85" in e.value.reason
    (tmp_path / "keys" / "bus.public").unlink()
    with pytest.raises(ConfigError) as e:
        nodeconf.load(conf)
    assert e.value.key_path == "bus.server_key" and "cannot read" in e.value.reason


def test_a_symlinked_secret_key_is_refused(tmp_path):
    conf = satellite_files(tmp_path)
    keys = tmp_path / "keys"
    os.rename(keys / "sat1.secret", keys / "real.secret")
    (keys / "sat1.secret").symlink_to(keys / "real.secret")
    with pytest.raises(ConfigError) as e:
        nodeconf.load(conf)
    assert e.value.key_path == "bus.secret_key_file" and "symbolic link" in e.value.reason


def test_allowed_keys_dir_is_read(tmp_path):
    keys = tmp_path / "keys"
    curve.keygen(str(keys), "bus")
    curve.keygen(str(keys / "clients"), "a")
    curve.keygen(str(keys / "clients"), "b")
    conf = tmp_path / "bus.toml"
    conf.write_text('[node]\nname = "n1"\nrlocs = ["127.0.0.1"]\nstate_dir = "st"\n'
                    '[bus]\nlisten = "tcp://127.0.0.1:7400"\nsecret_key_file = "keys/bus.secret"\n'
                    'allowed_keys_dir = "keys/clients"\n')
    k = curve.load(nodeconf.load(conf).bus)
    want = {(keys / "clients" / f"{n}.public").read_text().strip().encode() for n in "ab"}
    assert k.allowed == want
    for n in "ab":
        (keys / "clients" / f"{n}.public").unlink()
    with pytest.raises(ConfigError) as e:
        nodeconf.load(conf)
    assert e.value.key_path == "bus.allowed_keys_dir" and "no *.public" in e.value.reason


def test_multihost_example_configs_load(tmp_path):
    for f in ("bus-host.toml", "satellite.toml"):
        shutil.copy(REPO / "configs" / "multihost" / f, tmp_path / f)
    keys = tmp_path / "keys"
    curve.keygen(str(keys), "bus")
    curve.keygen(str(keys / "clients"), "sat1")
    os.rename(keys / "clients" / "sat1.secret", keys / "sat1.secret")
    (keys / "lab.secret").write_text("lab-secret\n")
    os.chmod(keys / "lab.secret", 0o600)
    bus = nodeconf.load(tmp_path / "bus-host.toml")
    sat = nodeconf.load(tmp_path / "satellite.toml")
    assert bus.bus.listen is not None and sat.bus.satellite
    assert sat.count("map_server") == bus.count("map_server")
    assert [s.name for s in sat.sites] == [s.name for s in bus.sites]
    here = {n for r, n in bus.instances() if r == "map_resolver"}
    there = {n for r, n in sat.instances() if r == "map_resolver"}
    assert here and there and not here & there       # instance numbers unique in the node


def test_the_satellite_xtr_example_config_loads(tmp_path):
    for f in ("bus-host.toml", "satellite.toml", "satellite-xtr.toml"):
        shutil.copy(REPO / "configs" / "multihost" / f, tmp_path / f)
    keys = tmp_path / "keys"
    curve.keygen(str(keys), "bus")
    for name in ("sat1", "sat2"):
        curve.keygen(str(keys / "clients"), name)
        os.rename(keys / "clients" / f"{name}.secret", keys / f"{name}.secret")
    (keys / "lab.secret").write_text("lab-secret\n")
    os.chmod(keys / "lab.secret", 0o600)
    bus, sat1, sat = (nodeconf.load(tmp_path / f) for f in
                      ("bus-host.toml", "satellite.toml", "satellite-xtr.toml"))
    assert sat.bus.xtr_host == "sat2" and sat1.bus.xtr_host is None and bus.bus.xtr_host is None
    assert ("etr", 1) in sat.instances() and ("itr", 0) in sat.instances()
    assert sat.count("map_server") == bus.count("map_server")
    seen: set = set()
    for c in (bus, sat1, sat):                      # instance numbers unique in the node
        mine = {(r, n) for r, n in c.instances() if r != "watchdog"}
        assert not mine & seen
        seen |= mine


# ---------------------------------------------------------------------------
# a satellite's xTR is its own xTR: its default xTR-ID is not the bus host's

def test_a_satellite_gets_its_own_default_xtr_id_and_an_explicit_one_is_kept():
    sat = dict(connect="tcp://192.0.2.10:7400", server_key=Z85, secret_key_file="k/s.secret",
               run=["map_resolver:1"])
    bus_host = parse(listen="tcp://192.0.2.10:7400", secret_key_file="k/bus.secret",
                     allowed_keys=[Z85], host="h1").node.xtr_id
    one_host = parse_config({k: v for k, v in doc().items() if k != "bus"}, "x.toml", BASE).node.xtr_id
    s1 = parse(host="sat1", **sat).node.xtr_id
    s2 = parse(host="sat2", **sat).node.xtr_id
    assert bus_host == one_host                       # unchanged where there is no satellite
    assert len({one_host, s1, s2}) == 3 and len(s1) == 16
    d = doc(host="sat1", **sat)
    d["node"]["xtr_id"] = "00112233445566778899aabbccddeeff"
    assert parse_config(d, "x.toml", BASE).node.xtr_id == bytes.fromhex("00112233445566778899aabbccddeeff")
