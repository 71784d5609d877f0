"""LISP-SEC (RFC 9303) on a real node (127.0.23.1): every role, supervisord, ZeroMQ.

``decent lig --sec`` and the ITR role (``lisp_sec = "required"``) ask the node's
Map-Resolver with S=1; the Map-Server treatment forwards to the ETR (10.1.1.0/24,
P=0: the ETR's reply carries the Map-Server's EID-AD and the ETR's PKT HMAC) or
builds a proxy reply itself (10.1.2.0/24, P=1).  Both verify.  A requester whose
key is not among ``map_resolver.lisp_sec_keys`` gets nothing (dropped, counted).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.harness import REPO, SECRET, Node, poll

pytestmark = pytest.mark.integration

RLOC = "127.0.23.1"
ITR_KEY = "itr-ms-key"

BODY = f"""
[roles]
map_resolver = {{ workers = 1 }}
map_server = {{ shards = 1 }}
etr = true
itr = true

[map_resolver]
lisp_sec_keys = [{{ secret = "{ITR_KEY}" }}]

[itr]
lisp_sec = "required"
lisp_sec_key = {{ secret = "{ITR_KEY}" }}

[[site]]
name = "lab"
lisp_sec = "on"
[[site.key]]
id = 0
alg = "hmac-sha-256-128"
secret = "{SECRET}"
[[site.prefix]]
eid = "10.1.0.0/16"
accept_more_specifics = true

[[database_mapping]]
eid = "10.1.1.0/24"
[[database_mapping]]
eid = "10.1.2.0/24"
proxy_reply = true

[etr]
map_servers = [{{ address = "{RLOC}", key_id = 0, alg = "hmac-sha-256-128", secret = "{SECRET}" }}]
"""


@pytest.fixture(scope="module")
def node():
    n = Node("itsec", RLOC, BODY)
    try:
        n.up()
        poll(n.all_running, 20, what="every role RUNNING")
        n.wait_lig("10.1.1.7", "[0]10.1.1.0/24")
        n.wait_lig("10.1.2.7", "[0]10.1.2.0/24")
        yield n
    finally:
        n.down()


def lig_sec(n: Node, eid: str, conf=None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "cli.main", "lig", eid, "--sec", "--json", "--count", "2",
            "--timeout", "1", "--mr", f"{RLOC}:4342", "-c", str(conf or n.conf)]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_lig_sec_verifies_an_etr_reply(node):
    r = lig_sec(node, "10.1.1.7")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["eid"] == "[0]10.1.1.0/24" and out["authoritative"]      # the ETR answered
    assert out["lisp_sec"] == {"verified": True, "reason": "", "eid_ad": ["[0]10.1.1.0/24"]}


def test_lig_sec_verifies_a_proxy_reply(node):
    r = lig_sec(node, "10.1.2.7")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["eid"] == "[0]10.1.2.0/24" and not out["authoritative"]  # the Map-Server answered
    assert out["lisp_sec"]["verified"] and out["lisp_sec"]["eid_ad"] == ["[0]10.1.2.0/24"]


def test_lig_sec_text_says_verified(node):
    r = subprocess.run([sys.executable, "-m", "cli.main", "lig", "10.1.1.7", "--sec", "--mr",
                        f"{RLOC}:4342", "-c", str(node.conf)], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "LISP-SEC: verified (EID-AD [0]10.1.1.0/24)" in r.stdout, r.stdout


def test_itr_role_with_lisp_sec_required_resolves_both(node):
    code = ("import json, sys\n"
            "from roles.nodeconf import load\n"
            "from cli.busquery import query\n"
            "cfg = load(sys.argv[1])\n"
            "print(json.dumps([query(cfg, 'itr.resolve', {'eid': e}, timeout=10.0)"
            " for e in ('10.1.1.9', '10.1.2.9')]))\n")
    r = subprocess.run([sys.executable, "-c", code, str(node.conf)], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    answers = json.loads(r.stdout)
    assert [a[0]["ok"] for a in answers] == [True, True], answers
    assert [a[0]["entry"]["eid"] for a in answers] == ["[0]10.1.1.0/24", "[0]10.1.2.0/24"]
    c = poll(lambda: (lambda x: x if x.get("lisp_sec_verified", 0) >= 2 else None)(
        node.counters().get("itr:0", {})), 10, what="ITR lisp_sec_verified counter")
    assert not any(k.startswith("lisp_sec_refused") for k in c), c


def test_unknown_itr_key_gets_no_reply(node, tmp_path):
    conf = tmp_path / "other.toml"
    conf.write_text(node.conf.read_text().replace(f'lisp_sec_key = {{ secret = "{ITR_KEY}" }}',
                                                  'lisp_sec_key = { secret = "not-the-key" }')
                    .replace('state_dir = "st"', f'state_dir = "{node.state}"'))
    r = lig_sec(node, "10.1.1.7", conf)
    assert r.returncode == 1 and "no map-reply" in r.stderr, (r.returncode, r.stdout, r.stderr)
    poll(lambda: node.counters().get("map_resolver:0", {}).get("dropped.lisp-sec.otk-unwrap", 0) >= 1,
         10, what="otk-unwrap drop counted")
