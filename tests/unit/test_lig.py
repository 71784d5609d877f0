"""`decent lig` against a tiny Map-Resolver on 127.0.0.1 that answers with a MapReply."""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import threading
import time
from ipaddress import ip_address

import pytest

from cli.main import main
from common.wire.addr import eid_to_wire
from common.wire.ecm import Ecm
from common.wire.eidtext import parse_eidspec
from common.wire.messages import MapReply, MapRequest, decode_message, encode_message
from common.wire.records import ACT_DROP_POLICY_DENIED, ACT_NATIVELY_FORWARD, EidRecord, Locator

REPO = pathlib.Path(__file__).resolve().parents[2]
DECENT = REPO / ".venv" / "bin" / "decent"


def rec(eid, ttl=1440, rlocs=(("192.0.2.1", 1, 100),), action=0, auth=True):
    addr, mask = eid_to_wire(parse_eidspec(eid))
    locs = tuple(Locator(ip_address(a), p, w, local=True) for a, p, w in rlocs)
    return EidRecord(addr, mask, ttl, locs, action, auth)


class Responder:
    """A Map-Resolver stand-in: decodes each ECM and answers the ITR-RLOC/inner port.

    ``records``: what to answer with; ``skip``: requests to ignore first;
    ``junk``: send a reply with a wrong nonce (and a malformed datagram) first."""

    def __init__(self, records=(), skip=0, junk=False, silent=False):
        self.records, self.skip, self.junk, self.silent = tuple(records), skip, junk, silent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.requests: list[Ecm] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(2)
        self.sock.close()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, _src = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            ecm = decode_message(data)
            assert isinstance(ecm, Ecm) and isinstance(ecm.inner, MapRequest)
            self.requests.append(ecm)
            if self.silent or len(self.requests) <= self.skip:
                continue
            dst = (str(ecm.inner.itr_rlocs[0]), ecm.ip.sport)
            if self.junk:
                self.sock.sendto(b"\x20garbage", dst)
                self.sock.sendto(encode_message(MapReply(ecm.inner.nonce ^ 1, self.records)), dst)
            self.sock.sendto(encode_message(MapReply(ecm.inner.nonce, self.records)), dst)


@pytest.fixture
def config(tmp_path):
    p = tmp_path / "node.toml"
    p.write_text('[node]\nname = "t"\nrlocs = ["127.0.0.1"]\nstate_dir = "run"\n')
    return str(p)


def lig(capsys, *args):
    rc = main(["lig", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_positive_reply_json(capsys, config):
    recs = [rec("10.1.0.0/16", ttl=60, rlocs=(("192.0.2.9", 2, 50),), auth=False),
            rec("10.1.1.0/24", rlocs=(("192.0.2.1", 1, 100), ("2001:db8::1", 1, 0)))]
    with Responder(recs) as r:
        rc, out, err = lig(capsys, "10.1.1.1", "-c", config, "--mr", f"127.0.0.1:{r.port}",
                           "--json", "--timeout", "1")
    assert rc == 0 and err == ""
    d = json.loads(out)
    assert set(d) == {"eid", "ttl", "authoritative", "negative", "action", "rlocs", "records",
                      "rtt_ms", "outside"}
    assert d["outside"] == []
    assert d["eid"] == "[0]10.1.1.0/24" and d["ttl"] == 1440 and d["authoritative"] is True
    assert d["negative"] is False and d["action"] == "no-action"
    assert d["rlocs"] == [{"address": "192.0.2.1", "priority": 1, "weight": 100},
                          {"address": "2001:db8::1", "priority": 1, "weight": 0}]
    assert [x["eid"] for x in d["records"]] == ["[0]10.1.0.0/16", "[0]10.1.1.0/24"]
    assert d["records"][0] == {"eid": "[0]10.1.0.0/16", "ttl": 60, "authoritative": False,
                               "negative": False, "action": "no-action",
                               "rlocs": [{"address": "192.0.2.9", "priority": 2, "weight": 50}]}
    assert isinstance(d["rtt_ms"], float) and 0 <= d["rtt_ms"] < 1000
    (ecm,) = r.requests
    req = ecm.inner
    assert req.itr_rlocs == (ip_address("127.0.0.1"),) and req.records[0].prefix == parse_eidspec("10.1.1.1")
    assert ecm.ip.dst == ip_address("10.1.1.1") and ecm.ip.dport == 4342
    assert ecm.ip.src == ip_address("127.0.0.1") and not (ecm.to_etr or ecm.to_ms)


@pytest.mark.parametrize("action,name", [(ACT_NATIVELY_FORWARD, "natively-forward"),
                                         (ACT_DROP_POLICY_DENIED, "drop-policy-denied")])
def test_negative_reply_json(capsys, config, action, name):
    with Responder([rec("10.0.0.0/8", ttl=15, rlocs=(), action=action, auth=False)]) as r:
        rc, out, _ = lig(capsys, "[0]10.200.1.1", "-c", config, "--mr", f"127.0.0.1:{r.port}", "--json")
    d = json.loads(out)
    assert rc == 0
    assert (d["eid"], d["ttl"], d["negative"], d["action"], d["rlocs"]) == \
        ("[0]10.0.0.0/8", 15, True, name, [])
    assert d["authoritative"] is False and len(d["records"]) == 1


def test_record_outside_the_eid_is_flagged(capsys, config):
    # OOR once answered 10.9.9.9 with a negative record for 11.8.0.0/13
    with Responder([rec("11.8.0.0/13", ttl=15, rlocs=(), auth=False)]) as r:
        rc, out, err = lig(capsys, "10.9.9.9", "-c", config, "--mr", f"127.0.0.1:{r.port}", "--json")
        assert rc == 0
        assert json.loads(out)["outside"] == ["[0]11.8.0.0/13"]
        assert err.count("\n") == 1 and "warning" in err and "[0]11.8.0.0/13" in err
        assert "does not hold it" in err
        rc, out, err = lig(capsys, "10.9.9.9", "-c", config, "--mr", f"127.0.0.1:{r.port}", "--strict")
        assert rc == 3 and "! does not hold the requested EID" in out and "[0]11.8.0.0/13" in err
    # a more-specific inside the record that holds the EID is a normal answer
    with Responder([rec("10.1.0.0/16"), rec("10.1.5.0/24")]) as r:
        rc, out, err = lig(capsys, "10.1.2.3", "-c", config, "--mr", f"127.0.0.1:{r.port}",
                           "--json", "--strict")
    assert rc == 0 and err == "" and json.loads(out)["outside"] == []
    # a sibling that is not inside it is not
    with Responder([rec("10.1.2.0/24"), rec("10.1.5.0/24")]) as r:
        rc, out, err = lig(capsys, "10.1.2.3", "-c", config, "--mr", f"127.0.0.1:{r.port}",
                           "--json", "--strict")
    assert rc == 3 and json.loads(out)["outside"] == ["[0]10.1.5.0/24"]


def test_text_output(capsys, config):
    with Responder([rec("[1000]10.2.1.0/24")]) as r:
        rc, out, _ = lig(capsys, "[1000]10.2.1.5", "-c", config, "--mr", f"127.0.0.1:{r.port}")
    assert rc == 0
    assert "Send map-request to 127.0.0.1:" in out and "[1000]10.2.1.5/32" in out
    assert "Received map-reply from 127.0.0.1:" in out and " ms" in out
    assert "[1000]10.2.1.0/24, record-ttl 1440, auth" in out
    assert "192.0.2.1" in out and "priority/weight 1/100" in out and "flags LR" in out


def test_retries_until_a_matching_nonce(capsys, config):
    with Responder([rec("10.1.1.0/24")], skip=1, junk=True) as r:
        rc, out, _ = lig(capsys, "10.1.1.1", "-c", config, "--mr", f"127.0.0.1:{r.port}",
                         "--timeout", "0.3", "--json")
    assert rc == 0 and json.loads(out)["eid"] == "[0]10.1.1.0/24"
    assert len(r.requests) == 2
    assert r.requests[0].inner.nonce != r.requests[1].inner.nonce


def test_no_reply_exits_1_within_the_bound(capsys, config):
    with Responder(silent=True) as r:
        t0 = time.monotonic()
        rc, out, err = lig(capsys, "10.1.1.1", "-c", config, "--mr", f"127.0.0.1:{r.port}",
                           "--count", "2", "--timeout", "0.2", "--json")
        took = time.monotonic() - t0
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and "no map-reply" in err
    assert 0.35 <= took < 2.0
    assert len(r.requests) == 2


def test_default_mr_from_config(capsys, tmp_path):
    with Responder([rec("10.1.1.0/24")]) as r:
        p = tmp_path / "node.toml"
        p.write_text('[node]\nname = "t"\nrlocs = ["127.0.0.1"]\nstate_dir = "run"\n'
                     f'[itr]\nmap_resolvers = ["127.0.0.1:{r.port}"]\n')
        rc, out, _ = lig(capsys, "10.1.1.1", "-c", str(p), "--json")
    assert rc == 0 and json.loads(out)["eid"] == "[0]10.1.1.0/24"


@pytest.mark.parametrize("args,what", [
    (["not-an-eid"], "bad EIDSPEC"),
    (["10.1.1.1/33"], "bad EIDSPEC"),
    (["10.1.1.1", "--mr", "nohost"], "bad --mr"),
    (["10.1.1.1", "--mr", "127.0.0.1:0"], "bad --mr"),
    (["10.1.1.1", "--mr", "[::1]:x"], "bad --mr"),
    (["10.1.1.1", "--count", "0"], "--count"),
    (["10.1.1.1", "--timeout", "-1"], "--timeout"),
    (["10.1.1.1", "--timeout", "nan"], "--timeout"),
])
def test_bad_usage_exits_2(capsys, config, args, what):
    rc, out, err = lig(capsys, *args, "-c", config)
    assert rc == 2 and out == "" and err.count("\n") == 1 and what in err


def test_missing_config_exits_2(capsys, tmp_path):
    rc, _, err = lig(capsys, "10.1.1.1", "-c", str(tmp_path / "none.toml"))
    assert rc == 2 and "no such file" in err


def test_through_the_decent_script(config):
    with Responder([rec("2001:db8:1:1::/64", ttl=30)]) as r:
        cp = subprocess.run([str(DECENT), "lig", "2001:db8:1:1::5", "-c", config, "--mr",
                             f"127.0.0.1:{r.port}", "--json", "--timeout", "2"],
                            capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    d = json.loads(cp.stdout)
    assert d["eid"] == "[0]2001:db8:1:1::/64" and d["ttl"] == 30 and d["authoritative"] is True
    (ecm,) = r.requests
    assert ecm.ip.dst == ip_address("2001:db8:1:1::5")   # inner header in the EID's family
    assert ecm.inner.itr_rlocs == (ip_address("127.0.0.1"),)


def test_no_reply_through_the_decent_script(config):
    with Responder(silent=True) as r:
        cp = subprocess.run([str(DECENT), "lig", "10.1.1.1", "-c", config, "--mr",
                             f"127.0.0.1:{r.port}", "--count", "1", "--timeout", "0.2"],
                            capture_output=True, text=True, timeout=30)
    assert cp.returncode == 1
    assert cp.stderr.count("\n") == 1 and "Traceback" not in cp.stderr
