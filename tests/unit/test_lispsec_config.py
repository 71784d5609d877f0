"""LISP-SEC configuration: per site and per ITR ``lisp_sec``, the key-wrap keys
(also from ``secret_file``), and bad values refused at start with the key path."""

from __future__ import annotations

import os

import pytest

from common.config import ConfigError
from roles import nodeconf

BASE = """
[node]
name = "n1"
rlocs = ["127.0.0.1"]
state_dir = "st"

[[site]]
name = "s"
{site}
[[site.key]]
id = 0
secret = "s3cret"
[[site.prefix]]
eid = "10.1.0.0/16"

[itr]
{itr}

[map_resolver]
{mr}
"""


def load(tmp_path, site="", itr="", mr=""):
    p = tmp_path / "node.toml"
    p.write_text(BASE.format(site=site, itr=itr, mr=mr))
    os.chmod(p, 0o600)
    return nodeconf.load(str(p))


def test_defaults_site_on_itr_off_no_keys(tmp_path):
    cfg = load(tmp_path)
    assert cfg.sites[0].lisp_sec == "on" and cfg.itr.lisp_sec == "off"
    assert cfg.itr.lisp_sec_key is None and cfg.map_resolver.lisp_sec_keys == ()


def test_values_and_keys(tmp_path):
    (tmp_path / "itr.key").write_text("from-a-file\n")
    os.chmod(tmp_path / "itr.key", 0o600)
    cfg = load(tmp_path, site='lisp_sec = "required"',
               itr='lisp_sec = "on"\nlisp_sec_key = { secret_file = "itr.key" }',
               mr='lisp_sec_keys = [{ secret = "a" }, { secret = "b" }]')
    assert cfg.sites[0].lisp_sec == "required" and cfg.itr.lisp_sec == "on"
    assert cfg.itr.lisp_sec_key.secret_bytes == b"from-a-file"
    assert [k.secret for k in cfg.map_resolver.lisp_sec_keys] == ["a", "b"]
    assert "from-a-file" not in repr(cfg.itr) and "'a'" not in repr(cfg.map_resolver)


@pytest.mark.parametrize("kw,path", [
    ({"site": 'lisp_sec = "maybe"'}, "site[0].lisp_sec"),
    ({"itr": 'lisp_sec = true'}, "itr.lisp_sec"),
    ({"itr": 'lisp_sec_key = "plain"'}, "itr.lisp_sec_key"),
    ({"itr": 'lisp_sec_key = { alg = "none" }'}, "itr.lisp_sec_key.alg"),
    ({"itr": 'lisp_sec_key = { secret = "" }'}, "itr.lisp_sec_key.secret"),
    ({"mr": 'lisp_sec_keys = [{ secret = "a", colour = 1 }]'}, "map_resolver.lisp_sec_keys[0].colour"),
])
def test_bad_values_fail_with_the_key_path(tmp_path, kw, path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, **kw)
    assert e.value.key_path == path, str(e.value)


def test_readable_secret_file_refused(tmp_path):
    (tmp_path / "itr.key").write_text("x")
    os.chmod(tmp_path / "itr.key", 0o644)
    with pytest.raises(ConfigError) as e:
        load(tmp_path, itr='lisp_sec_key = { secret_file = "itr.key" }')
    assert e.value.key_path == "itr.lisp_sec_key.secret_file"
