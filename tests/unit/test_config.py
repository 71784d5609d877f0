"""The node config: the appliance parses, every mistake names its key path and reason,
and the supervisord configuration rendered from it."""

from __future__ import annotations

import ast
import configparser
import copy
import hashlib
import sys
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from cli import supervise
from common.wire.addr import Eid
from common.config import ConfigError, NodeConfig, parse_config
from roles import nodeconf

REPO = Path(__file__).resolve().parents[2]
APPLIANCE = REPO / "configs" / "appliance.toml"
BASE = "/etc/decent"


def minimal() -> dict:
    return {
        "node": {"name": "n1", "rlocs": ["127.0.0.1"], "state_dir": "state"},
        "site": [{"name": "a", "key": [{"id": 0, "alg": "hmac-sha-256-128", "secret": "s3"}],
                  "prefix": [{"eid": "10.1.0.0/16"}]}],
        "database_mapping": [{"eid": "10.1.1.0/24"}],
        "etr": {"map_servers": [{"address": "127.0.0.1", "secret": "s3"}]},
    }


def parse(data: dict) -> NodeConfig:
    return parse_config(data, "x.toml", BASE)


def pull(**decent) -> dict:
    d = minimal()
    d["decent"] = {"mode": "pull", "modulus": 4, "suffix": "map.example.", **decent}
    d["etr"]["decent_key"] = {"key_id": 0, "secret": "s3"}
    return d


# ---------------------------------------------------------------------------
# valid configs

def test_appliance_parses():
    cfg = nodeconf.load(APPLIANCE)
    assert cfg.node.name == "appliance"
    assert cfg.node.rlocs == (IPv4Address("127.0.0.1"),)
    assert cfg.node.state_dir == str(REPO / "run" / "appliance")
    assert cfg.roles.map_resolver == 2 and cfg.roles.map_server == 1
    assert cfg.roles.etr and cfg.roles.itr
    assert cfg.instances() == [("bus", 0), ("map_server", 0), ("map_resolver", 0),
                               ("map_resolver", 1), ("etr", 0), ("itr", 0), ("metrics", 0),
                               ("watchdog", 0)]
    assert str(cfg.metrics.listen.address) == "127.0.0.1" and cfg.metrics.listen.port == 9464
    (site,) = cfg.sites
    assert site.keys[0].alg == "hmac-sha-256-128" and site.keys[0].alg_id == 2
    allowed = [p.eid for p in site.prefixes]
    assert any(isinstance(e.address, IPv4Address) and e.iid == 0 for e in allowed)
    assert any(isinstance(e.address, IPv6Address) for e in allowed)
    assert any(e.iid != 0 for e in allowed)
    mapped = [m.eid for m in cfg.database_mappings]
    assert len(mapped) == 3
    assert {type(e.address) for e in mapped} == {IPv4Address, IPv6Address}
    assert any(e.iid != 0 for e in mapped)
    ms = cfg.etr.map_servers[0]
    assert ms.address == IPv4Address("127.0.0.1") and ms.port == 4342
    assert ms.key.secret == site.keys[0].secret  # the ETR's key is the site's key
    assert cfg.itr.map_resolvers[0].address == IPv4Address("127.0.0.1")
    assert cfg.decent.mode == "none"
    assert cfg.warnings == ()


def test_defaults():
    cfg = parse(minimal())
    assert cfg.source == "x.toml"
    assert (cfg.node.control_port, cfg.node.data_port) == (4342, 4341)
    assert cfg.node.state_dir == "/etc/decent/state"
    assert cfg.node.xtr_id == hashlib.sha256(b"lisp-decent xtr-id n1").digest()[:16]
    assert cfg.node.site_id == bytes(8)
    assert cfg.node.log_level == "info"
    t = cfg.timers
    assert (t.register_interval, t.register_interval_fast, t.fast_period) == (60, 20, 300)
    assert t.registration_lifetime == 180 and t.restart_grace == 180
    assert (t.heartbeat_interval, t.watchdog_timeout) == (1, 10)
    assert (t.negative_ttl_non_eid, t.negative_ttl_unregistered) == (900, 60)
    assert t.map_request_max_retries == 10
    assert (cfg.map_resolver.rate_limit, cfg.map_resolver.rate_burst) == (1000, 2000)
    assert (cfg.map_server.proxy_reply_ttl, cfg.map_server.sync) == (1440, "normal")
    assert cfg.sites[0].nonce_policy == "strict"
    assert cfg.sites[0].prefixes[0].accept_more_specifics is False
    (m,) = cfg.database_mappings
    assert m.eid == Eid(0, IPv4Address("10.1.1.0"), 24)
    assert (m.ttl, m.proxy_reply, m.want_map_notify) == (1440, False, True)
    assert [(r.address, r.priority, r.weight, r.mpriority, r.mweight) for r in m.rlocs] == \
        [(IPv4Address("127.0.0.1"), 1, 100, 255, 0)]
    ms = cfg.etr.map_servers[0]
    assert (ms.port, ms.key.key_id, ms.key.alg) == (4342, 0, "hmac-sha-256-128")
    # no [itr] map_resolvers: this node's own Map-Resolver
    assert [(e.address, e.port) for e in cfg.itr.map_resolvers] == [(IPv4Address("127.0.0.1"),
                                                                     4342)]
    # roles: MR and MS on; the ETR because there are mappings; the ITR off
    assert cfg.instances() == [("bus", 0), ("map_server", 0), ("map_resolver", 0), ("etr", 0),
                               ("watchdog", 0)]


def test_xtr_id_differs_per_node_and_can_be_set():
    a = parse(minimal())
    d = minimal()
    d["node"]["name"] = "n2"
    assert parse(d).node.xtr_id != a.node.xtr_id
    d["node"]["xtr_id"] = "00112233445566778899aabbccddeeff"
    d["node"]["site_id"] = "0102030405060708"
    cfg = parse(d)
    assert cfg.node.xtr_id == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert cfg.node.site_id == bytes.fromhex("0102030405060708")


def test_timers_are_all_configurable_in_seconds():
    d = minimal()
    d["timers"] = {"register_interval": 0.5, "register_interval_fast": 0.2,
                   "registration_lifetime": 2, "heartbeat_interval": 0.1,
                   "watchdog_timeout": 1.5, "map_request_max_retries": 3}
    t = parse(d).timers
    assert t.register_interval == 0.5 and t.registration_lifetime == 2.0
    assert t.restart_grace == 2.0  # follows the lifetime
    assert t.map_request_max_retries == 3
    assert t.stop_wait == 10


def test_stop_wait_is_supervisords_stopwaitsecs():
    """timers.stop_wait: how long supervisord waits after SIGTERM before SIGKILL (a
    hung role the watchdog stops, `decent down`); whole seconds, default 10."""
    d = minimal()
    d["timers"] = {"stop_wait": 2}
    cfg = parse(d)
    assert cfg.timers.stop_wait == 2
    ini = _ini(supervise.render(cfg, "/etc/decent/x.toml"))
    programs = [s for s in ini.sections() if s.startswith("program:")]
    assert programs and all(ini[p]["stopwaitsecs"] == "2" for p in programs)


def test_roles_tables_and_switches():
    d = minimal()
    d["roles"] = {"map_resolver": {"workers": 3}, "map_server": {"shards": 2}, "etr": False,
                  "itr": {"enabled": True}}
    cfg = parse(d)
    assert cfg.instances() == [("bus", 0), ("map_server", 0), ("map_server", 1),
                               ("map_resolver", 0), ("map_resolver", 1), ("map_resolver", 2),
                               ("itr", 0), ("watchdog", 0)]
    d["roles"] = {"map_resolver": False, "map_server": {"enabled": False}, "etr": False}
    assert parse(d).instances() == [("bus", 0), ("watchdog", 0)]


def test_pull_and_push_modes():
    cfg = parse(pull(hash_mode="prefix", hash_mask=16, name_servers=["127.0.0.53:5353", "::1"]))
    p = cfg.decent.pull
    assert (p.modulus, p.suffix, p.hash_mode, p.hash_mask) == (4, "map.example", "prefix", 16)
    assert [(e.address, e.port) for e in p.name_servers] == [(ip_address("127.0.0.53"), 5353),
                                                             (ip_address("::1"), 53)]
    assert cfg.roles.discovery and ("discovery", 0) in cfg.instances()
    assert parse(pull(hash_mode="draft", hash_mask="none")).decent.pull.hash_mask is None
    assert parse(pull(hash_mode="lispers")).decent.pull.hash_mask is None
    # a registered prefix shorter than the mask is a warning, not an error
    cfg = parse(pull(hash_mode="prefix", hash_mask=24))
    assert cfg.warnings and cfg.warnings[0].startswith("site[0].prefix[0].eid: ")

    d = minimal()
    d["decent"] = {"mode": "push", "group": "239.1.1.1", "seed_rlocs": ["127.0.0.2"]}
    d["etr"]["decent_key"] = {"secret": "s3"}
    cfg = parse(d)
    assert cfg.decent.push.group == ip_address("239.1.1.1")
    assert cfg.decent.push.snapshot_on_join is True
    assert ("dataplane", 0) in cfg.instances()


def test_secret_not_in_repr():
    cfg = parse(minimal())
    assert "s3" not in repr(cfg)
    assert cfg.sites[0].keys[0].secret_bytes == b"s3"


# ---------------------------------------------------------------------------
# invalid configs: exact key path and reason

def _set(d, path, value):
    """Set (or, with value DEL, delete) ``a.b[0].c`` in nested data."""
    parts = []
    for p in path.split("."):
        name, _, idx = p.partition("[")
        parts.append(name)
        if idx:
            parts.append(int(idx.rstrip("]")))
    for p in parts[:-1]:
        d = d.setdefault(p, {}) if isinstance(p, str) else d[p]
    if value is DEL:
        del d[parts[-1]]
    else:
        d[parts[-1]] = value


DEL = object()

CASES = [
    # (path to change, new value, expected key path, expected reason)
    ("site[0].key[0].secret", DEL, "site[0].key[0].secret", "missing"),
    ("site[0].key[0].secret", "", "site[0].key[0].secret", "empty"),
    ("site[0].key[0].alg", "hmac-md5", "site[0].key[0].alg",
     "'hmac-md5' is not one of 'none', 'hmac-sha-1-96', 'hmac-sha-256-128'"),
    ("site[0].key[0].id", 256, "site[0].key[0].id", "256 out of range 0..255"),
    ("site[0].key[0].secrt", "x", "site[0].key[0].secrt", "unknown key (did you mean 'secret'?)"),
    ("site[0].key", [], "site[0].key", "missing: a site needs at least one [[site.key]]"),
    ("site[0].prefix[0].eid", "10.1.0.0/33", "site[0].prefix[0].eid",
     "mask length 33 beyond IPv4's 32 bits"),
    ("site[0].prefix[0].eid", "10.1.0.x/16", "site[0].prefix[0].eid",
     "not an address: '10.1.0.x'"),
    ("site[0].prefix[0].eid", "2001:db8::/129", "site[0].prefix[0].eid",
     "mask length 129 beyond IPv6's 128 bits"),
    ("site[0].prefix[0].accept_more_specifics", "yes", "site[0].prefix[0].accept_more_specifics",
     "expected true or false, got a string"),
    ("site[0].nonce_policy", "lax", "site[0].nonce_policy",
     "'lax' is not one of 'strict', 'warn', 'off'"),
    ("node.name", DEL, "node.name", "missing"),
    ("node.rlocs", [], "node.rlocs", "at least one RLOC is required"),
    ("node.rlocs", ["127.0.0.1", "127.0.0.1"], "node.rlocs[1]", "127.0.0.1 is listed twice"),
    ("node.rlocs", ["10.0.0.256"], "node.rlocs[0]", "not an IPv4 or IPv6 address: '10.0.0.256'"),
    ("node.rlocs", ["224.0.0.1"], "node.rlocs[0]", "224.0.0.1 is not a unicast address"),
    ("node.control_port", 70000, "node.control_port", "70000 out of range 1..65535"),
    ("node.control_port", "4342", "node.control_port", "expected an integer, got a string"),
    ("node.data_port", 4342, "node.data_port", "same as node.control_port (4342)"),
    ("node.state_dir", DEL, "node.state_dir", "missing"),
    ("node.xtr_id", "abc", "node.xtr_id", "expected 32 hex digits, got 'abc'"),
    ("node.log_level", "loud", "node.log_level",
     "'loud' is not one of 'debug', 'info', 'warning', 'error', 'critical'"),
    ("node.name", "my node", "node.name",
     "'my node': use letters, digits, '_', '.', '-' (it names the supervisord group and the logs)"),
    ("nodes", {}, "nodes", "unknown key (did you mean 'node'?)"),
    ("timers.registration_lifetme", 3, "timers.registration_lifetme",
     "unknown key (did you mean 'registration_lifetime'?)"),
    ("timers.register_interval", 0, "timers.register_interval",
     "must be a positive number of seconds, not 0"),
    ("timers.register_interval", True, "timers.register_interval",
     "expected a number of seconds, got a boolean"),
    ("timers.register_interval", 200, "timers.register_interval",
     "must be shorter than timers.registration_lifetime (180), not 200"),
    ("timers.heartbeat_interval", 10, "timers.heartbeat_interval",
     "must be shorter than timers.watchdog_timeout (10), not 10"),
    ("timers.stop_wait", 0, "timers.stop_wait", "0 out of range 1..3600"),
    ("timers.stop_wait", 2.5, "timers.stop_wait", "expected an integer, got a float"),
    ("roles.bus", True, "roles.bus", "bus always runs; remove this key"),
    ("roles.map_resolver", {"workers": 0}, "roles.map_resolver.workers", "0 out of range 1..256"),
    ("roles.map_resolver", 2, "roles.map_resolver",
     "expected true, false or a table, got an integer"),
    ("roles.map_server", {"workers": 2}, "roles.map_server.workers",
     "unknown key"),
    ("map_resolver.rate_limit", -1, "map_resolver.rate_limit", "must be a positive number, not -1"),
    ("map_server.sync", "off", "map_server.sync", "'off' is not one of 'normal', 'full'"),
    ("database_mapping[0].eid", "10.1.1.0/24/1", "database_mapping[0].eid",
     "bad mask length '24/1' in '10.1.1.0/24/1'"),
    ("database_mapping[0].rlocs", [{"address": "127.0.0.1", "priority": 300}],
     "database_mapping[0].rlocs[0].priority", "300 out of range 0..255"),
    ("database_mapping[0].rlocs", [{"priority": 1}], "database_mapping[0].rlocs[0].address",
     "missing"),
    ("etr.map_servers", [], "etr.map_servers",
     'missing: roles.etr is enabled and decent.mode is "none", so the ETR needs Map-Servers'),
    ("etr.map_servers[0].secret", DEL, "etr.map_servers[0].secret", "missing"),
    ("etr.map_servers[0].alg", "sha1", "etr.map_servers[0].alg",
     "'sha1' is not one of 'none', 'hmac-sha-1-96', 'hmac-sha-256-128'"),
    ("itr", {"map_resolvers": ["127.0.0.1:0"]}, "itr.map_resolvers[0]",
     "port 0 out of range 1..65535"),
    ("itr", {"map_resolvers": ["mr.example"]}, "itr.map_resolvers[0]",
     "not an IPv4 or IPv6 address: 'mr.example'"),
    ("decent", {"mode": "gossip"}, "decent.mode", "'gossip' is not one of 'none', 'pull', 'push'"),
    ("decent", {"mode": "none", "modulus": 4}, "decent.modulus",
     'not used with decent.mode = "none"'),
    ("site", {"name": "a"}, "site", "expected an array of tables ([[site]]), got a table"),
]


@pytest.mark.parametrize("path,value,key_path,reason", CASES,
                         ids=[f"{c[0]}={c[1]!r}"[:60] for c in CASES])
def test_invalid(path, value, key_path, reason):
    d = copy.deepcopy(minimal())
    _set(d, path, value)
    with pytest.raises(ConfigError) as ei:
        parse(d)
    assert (ei.value.key_path, ei.value.reason) == (key_path, reason)
    assert str(ei.value) == f"x.toml: {key_path}: {reason}"


def test_duplicate_site_and_eid_in_two_sites():
    d = minimal()
    d["site"].append(copy.deepcopy(d["site"][0]))
    with pytest.raises(ConfigError) as ei:
        parse(d)
    assert ei.value.key_path == "site[1].name"
    assert ei.value.reason == "duplicate site 'a' (also site[0])"

    d["site"][1]["name"] = "b"
    d["site"][1]["prefix"] = [{"eid": "[0]10.1.0.0/16"}]  # same prefix, other spelling
    with pytest.raises(ConfigError) as ei:
        parse(d)
    assert ei.value.key_path == "site[1].prefix[0].eid"
    assert ei.value.reason == ("[0]10.1.0.0/16 is already allowed for site 'a' "
                               "(site[0].prefix[0].eid)")
    d["site"][1]["prefix"] = [{"eid": "[5]10.1.0.0/16"}]  # another instance-ID: fine
    assert len(parse(d).sites) == 2


def test_duplicate_key_id_and_mapping():
    d = minimal()
    d["site"][0]["key"].append({"id": 0, "alg": "hmac-sha-1-96", "secret": "x"})
    with pytest.raises(ConfigError) as ei:
        parse(d)
    assert (ei.value.key_path, ei.value.reason) == ("site[0].key[1].id", "key id 0 is defined twice")
    d = minimal()
    d["database_mapping"].append({"eid": "10.1.1.0/24"})
    with pytest.raises(ConfigError) as ei:
        parse(d)
    assert ei.value.key_path == "database_mapping[1].eid"


def test_alg_none_takes_no_secret():
    d = minimal()
    d["site"][0]["key"] = [{"alg": "none"}]
    d["etr"]["map_servers"][0] = {"address": "127.0.0.1", "alg": "none"}  # its own Map-Server
    assert parse(d).sites[0].keys[0].secret is None
    d["site"][0]["key"] = [{"alg": "none", "secret": "x"}]
    with pytest.raises(ConfigError) as ei:
        parse(d)
    assert (ei.value.key_path, ei.value.reason) == ("site[0].key[0].secret",
                                                    'not used with alg "none"')


@pytest.mark.parametrize("decent,key_path,reason", [
    ({"hash_mode": "lispers", "hash_mask": 8}, "decent.hash_mask",
     'not allowed with hash_mode "lispers" (lispers.net hashes the whole string)'),
    ({"hash_mode": "draft"}, "decent.hash_mask",
     'missing: hash_mode "draft" needs an explicit mask (bytes of the EID string) or "none"'),
    ({"hash_mode": "prefix"}, "decent.hash_mask",
     'missing: hash_mode "prefix" needs an explicit mask (prefix bits) or "none"'),
    ({"hash_mask": 8}, "decent.hash_mode", "missing"),
    ({"hash_mode": "prefix", "hash_mask": 129}, "decent.hash_mask", "129 out of range 1..128"),
    ({"hash_mode": "draft", "hash_mask": 0}, "decent.hash_mask", "0 out of range 1..255"),
    ({"hash_mode": "draft", "hash_mask": "all"}, "decent.hash_mask",
     'expected an integer or "none", got a string'),
    ({"hash_mode": "sha1", "hash_mask": 8}, "decent.hash_mode",
     "'sha1' is not one of 'rfc9962', 'lispers', 'prefix', 'draft'"),
    ({"hash_mode": "draft", "hash_mask": 8, "group": "239.1.1.1"}, "decent.group",
     'not used with decent.mode = "pull"'),
    ({"hash_mode": "draft", "hash_mask": 8, "suffix": "bad..name"}, "decent.suffix",
     "not a DNS name: 'bad..name'"),
    ({"hash_mode": "draft", "hash_mask": 8, "resolve_min": 60, "resolve_max": 30},
     "decent.resolve_min", "60 is longer than decent.resolve_max (30)"),
])
def test_invalid_pull(decent, key_path, reason):
    with pytest.raises(ConfigError) as ei:
        parse(pull(**decent))
    assert (ei.value.key_path, ei.value.reason) == (key_path, reason)


def test_invalid_mode_requirements():
    d = pull(hash_mode="draft", hash_mask=8)
    d["roles"] = {"discovery": False}
    with pytest.raises(ConfigError) as ei:
        parse(d)
    assert (ei.value.key_path, ei.value.reason) == ("roles.discovery",
                                                    'required when decent.mode is "pull"')
    d = pull(hash_mode="draft", hash_mask=8)
    del d["etr"]["decent_key"]
    with pytest.raises(ConfigError) as ei:
        parse(d)
    assert ei.value.key_path == "etr.decent_key"
    d = minimal()
    d["decent"] = {"mode": "push", "group": "10.0.0.1"}
    with pytest.raises(ConfigError) as ei:
        parse(d)
    assert (ei.value.key_path, ei.value.reason) == ("decent.group",
                                                    "10.0.0.1 is not a multicast group address")


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError) as ei:
        nodeconf.load(tmp_path / "nope.toml")
    assert str(ei.value) == f"{tmp_path / 'nope.toml'}: no such file"
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nname = "n1"\nrlocs = [\n')
    with pytest.raises(ConfigError) as ei:
        nodeconf.load(bad)
    assert ei.value.key_path == "end of file"
    bad.write_text('[node]\nname = "n1"\nrlocs = \n[roles]\n')
    with pytest.raises(ConfigError) as ei:
        nodeconf.load(bad)
    assert str(ei.value) == f"{bad}: line 3, column 9: TOML syntax: Invalid value"
    bad.write_text('[node]\nname = "n1"\nrlocs = ["127.0.0.1"]\nstate_dir = "s"\n'
                   '[[site]]\nname = "a"\n[[site.key]]\nalg = "hmac-sha-1-96"\n'
                   '[[site.prefix]]\neid = "10.0.0.0/8"\n')
    with pytest.raises(ConfigError) as ei:
        nodeconf.load(bad)
    assert str(ei.value) == f"{bad}: site[0].key[0].secret: missing"


def test_role_main_args(tmp_path, capsys):
    f = tmp_path / "n.toml"
    f.write_text('[node]\nname = "n1"\nrlocs = ["127.0.0.1"]\nstate_dir = "s"\n'
                 '[roles]\nmap_resolver = { workers = 2 }\n')
    cfg, n = nodeconf.role_main_args("map_resolver", ["-c", str(f), "--instance", "1"])
    assert n == 1 and cfg.node.state_dir == str(tmp_path / "s")
    with pytest.raises(SystemExit) as ei:
        nodeconf.role_main_args("map_resolver", ["-c", str(f), "--instance", "2"])
    assert ei.value.code == 2
    assert "instance 2 not configured" in capsys.readouterr().err


def test_config_module_is_pure():
    tree = ast.parse((REPO / "common" / "config.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert not imported & {"socket", "asyncio", "zmq", "time", "random", "os", "subprocess"}


# ---------------------------------------------------------------------------
# the rendered supervisord configuration

def _ini(text: str) -> configparser.RawConfigParser:
    ini = configparser.RawConfigParser()
    ini.read_string(text)
    return ini


def test_render_appliance():
    cfg = nodeconf.load(APPLIANCE)
    ini = _ini(supervise.render(cfg, str(APPLIANCE)))
    state = cfg.node.state_dir
    assert ini["unix_http_server"]["file"] == f"{state}/supervisord.sock"
    assert ini["supervisord"]["pidfile"] == f"{state}/supervisord.pid"
    assert ini["supervisord"]["logfile"] == f"{state}/supervisord.log"
    assert ini.has_section("rpcinterface:supervisor")
    programs = [s.split(":", 1)[1] for s in ini.sections() if s.startswith("program:")]
    assert programs == ["bus_0", "map_server_0", "map_resolver_0", "map_resolver_1", "etr_0",
                        "itr_0", "metrics_0", "watchdog_0"]
    assert ini["group:appliance"]["programs"] == ",".join(programs)
    mr1 = ini["program:map_resolver_1"]
    assert mr1["command"] == (f"{sys.executable} -m roles.map_resolver -c {APPLIANCE} "
                              f"--instance 1")
    assert mr1["directory"] == str(REPO)
    assert mr1["stdout_logfile"] == f"{state}/logs/map_resolver_1.log"
    for key, want in (("autorestart", "true"), ("startsecs", "1"), ("stopasgroup", "true"),
                      ("killasgroup", "true"), ("stopsignal", "TERM"),
                      ("redirect_stderr", "true"), ("stopwaitsecs", "10")):
        assert mr1[key] == want
    assert int(mr1["startretries"]) >= 100
    prio = [int(ini[f"program:{p}"]["priority"]) for p in programs]
    assert prio == sorted(prio) and prio[0] < prio[1]  # bus strictly first


def test_render_two_nodes_do_not_collide(tmp_path):
    paths = []
    for name in ("a", "b"):
        d = minimal()
        d["node"].update(name=name, state_dir=f"run/{name}")
        cfg = parse_config(d, f"{name}.toml", str(tmp_path))
        ini = _ini(supervise.render(cfg, str(tmp_path / f"{name}.toml")))
        files = {ini["unix_http_server"]["file"], ini["supervisord"]["pidfile"],
                 ini["supervisord"]["logfile"]}
        files |= {ini[s]["stdout_logfile"] for s in ini.sections() if s.startswith("program:")}
        assert all(f.startswith(str(tmp_path / "run" / name) + "/") for f in files)
        assert ini.has_section(f"group:{name}")
        assert ini["supervisord"]["identifier"] == f"decent-{name}"
        paths.append(files)
    assert not paths[0] & paths[1]


def test_render_escapes_percent(tmp_path):
    d = minimal()
    d["node"]["state_dir"] = "100%"
    cfg = parse_config(d, "x.toml", str(tmp_path))
    text = supervise.render(cfg, str(tmp_path / "x.toml"))
    assert f"file={tmp_path}/100%%/supervisord.sock" in text


# ---------------------------------------------------------------------------
# config that parses but cannot work (issue 13): refused with the key path

@pytest.mark.parametrize("where,text", [
    (("site", 0, "prefix", 0, "eid"), "10.1.1.1/16"),
    (("database_mapping", 0, "eid"), "[0]10.1.1.7/24"),
    (("database_mapping", 0, "eid"), "2001:db8::1/32"),
])
def test_prefix_with_host_bits_is_refused(where, text):
    d = minimal()
    if where[-1] == "eid" and "2001" in text:
        d["site"][0]["prefix"].append({"eid": "2001:db8::/32"})
    node = d
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = text
    with pytest.raises(ConfigError) as ei:
        parse(d)
    path = ".".join(str(k) for k in where).replace(".0.", "[0].").replace(".0", "[0]")
    assert ei.value.key_path == path
    assert "host bits set" in ei.value.reason and text in ei.value.reason


def test_etr_key_must_match_its_own_map_servers_site_key():
    d = minimal()
    d["etr"]["map_servers"][0]["secret"] = "other"
    with pytest.raises(ConfigError) as ei:
        parse(d)
    assert ei.value.key_path == "etr.map_servers[0].secret"
    assert "differs from key 0 of site 'a'" in ei.value.reason
    d["etr"]["map_servers"][0].update(secret="s3", key_id=7)
    with pytest.raises(ConfigError) as ei:
        parse(d)
    assert ei.value.key_path == "etr.map_servers[0].key_id"
    d["etr"]["map_servers"][0] = {"address": "127.0.0.9", "secret": "other"}  # not our own
    assert parse(d).etr.map_servers[0].key.secret == "other"


def test_mapping_outside_every_site_of_its_own_map_server_is_refused():
    d = minimal()
    d["database_mapping"].append({"eid": "10.2.0.0/24"})
    with pytest.raises(ConfigError) as ei:
        parse(d)
    assert ei.value.key_path == "database_mapping[1].eid"
    assert "outside every site of this node's own Map-Server" in ei.value.reason
    d["roles"] = {"map_server": False, "map_resolver": False}  # registers elsewhere: fine
    assert len(parse(d).database_mappings) == 2


@pytest.mark.parametrize("section,key,value", [
    ("map_resolver", "rate_limit", 1e308),
    ("map_resolver", "rate_burst", 1e9),
    ("timers", "registration_lifetime", 1e308),
    ("timers", "watchdog_timeout", 8 * 86400),
])
def test_numbers_outside_a_sane_range_are_refused(section, key, value):
    d = minimal()
    d[section] = {key: value}
    with pytest.raises(ConfigError) as ei:
        parse(d)
    assert ei.value.key_path == f"{section}.{key}"
    assert "out of range" in ei.value.reason


def test_every_example_config_still_loads():
    for path in sorted(REPO.glob("configs/**/*.toml")):
        if path.parent.name == "multihost":
            continue   # they name CURVE key files: test_bus_config loads them with fresh keys
        nodeconf.load(path)
