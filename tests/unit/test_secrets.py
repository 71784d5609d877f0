"""Secrets kept out of the main config: ``secret_file``, ``secret_env``, and the
``decent config check`` warning for a readable file that holds secrets."""

from __future__ import annotations

import os

import pytest

from cli.main import main as decent
from common.config import ConfigError
from roles import nodeconf

BASE = """
[node]
name = "n1"
rlocs = ["127.0.0.1"]
state_dir = "st"

[[site]]
name = "s"
[[site.key]]
id = 0
{site_key}
[[site.prefix]]
eid = "10.1.0.0/16"

[[database_mapping]]
eid = "10.1.1.0/24"

[etr]
map_servers = [{{ address = "127.0.0.9", {ms_key} }}]   # not this node
"""


def write(tmp_path, site_key='secret = "s3cret"', ms_key='secret = "s3cret"', mode=0o600):
    p = tmp_path / "node.toml"
    p.write_text(BASE.format(site_key=site_key, ms_key=ms_key))
    os.chmod(p, mode)
    return p


def secret_file(tmp_path, name, text, mode=0o600):
    p = tmp_path / name
    p.write_text(text)
    os.chmod(p, mode)
    return p


def test_secret_file_and_env_replace_the_inline_secret(tmp_path, monkeypatch):
    secret_file(tmp_path, "site.key", "from-a-file\n")
    monkeypatch.setenv("DECENT_TEST_MS_KEY", "from-the-env")
    cfg = nodeconf.load(write(tmp_path, site_key='secret_file = "site.key"',
                              ms_key='secret_env = "DECENT_TEST_MS_KEY"'))
    assert cfg.sites[0].keys[0].secret == "from-a-file"
    assert cfg.etr.map_servers[0].key.secret == "from-the-env"


@pytest.mark.parametrize("fmode", [0o640, 0o604, 0o644])
def test_secret_file_readable_by_others_is_refused(tmp_path, fmode):
    secret_file(tmp_path, "site.key", "x", fmode)
    with pytest.raises(ConfigError) as e:
        nodeconf.load(write(tmp_path, site_key='secret_file = "site.key"'))
    assert e.value.key_path == "site[0].key[0].secret_file"
    assert "readable by group or others" in e.value.reason


def test_secret_sources_conflict_missing_and_empty(tmp_path, monkeypatch):
    secret_file(tmp_path, "k", "x")
    with pytest.raises(ConfigError, match=r"site\[0\]\.key\[0\]\.secret_file: give only one"):
        nodeconf.load(write(tmp_path, site_key='secret = "a"\nsecret_file = "k"'))
    with pytest.raises(ConfigError, match=r"etr\.map_servers\[0\]\.secret_file: cannot read"):
        nodeconf.load(write(tmp_path, ms_key='secret_file = "nope"'))
    monkeypatch.delenv("DECENT_TEST_NOPE", raising=False)
    with pytest.raises(ConfigError, match=r"secret_env: environment variable DECENT_TEST_NOPE "
                                          r"is not set"):
        nodeconf.load(write(tmp_path, ms_key='secret_env = "DECENT_TEST_NOPE"'))
    secret_file(tmp_path, "empty", "\n")
    with pytest.raises(ConfigError, match="is empty"):
        nodeconf.load(write(tmp_path, site_key='secret_file = "empty"'))


def test_config_check_warns_about_a_readable_file_holding_secrets(tmp_path, capsys):
    p = write(tmp_path, mode=0o644)
    decent(["config", "check", str(p)])
    err = capsys.readouterr().err
    assert "warning:" in err and "holds secrets (site[0].key[0].secret and 1 more)" in err
    assert "mode 0644" in err
    os.chmod(p, 0o600)
    decent(["config", "check", str(p)])
    assert "warning" not in capsys.readouterr().err


def test_config_check_is_quiet_when_secrets_live_elsewhere(tmp_path, capsys, monkeypatch):
    secret_file(tmp_path, "site.key", "a")
    monkeypatch.setenv("DECENT_TEST_MS_KEY", "b")
    p = write(tmp_path, site_key='secret_file = "site.key"',
              ms_key='secret_env = "DECENT_TEST_MS_KEY"', mode=0o644)
    decent(["config", "check", str(p)])
    assert "warning" not in capsys.readouterr().err
