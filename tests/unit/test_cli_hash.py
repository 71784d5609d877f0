"""`decent hash`: output contract and one-line errors."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main

DECENT = Path(sys.executable).parent / "decent"


def sha_index(s: str, m: int) -> int:
    return int.from_bytes(hashlib.sha256(s.encode()).digest(), "big") % m


def lispers_index(s: str, m: int) -> int:
    return int.from_bytes(hmac.new(b"lisp-decent", s.encode(), hashlib.sha256).digest()[:6], "big") % m


def run_json(capsys, *argv):
    assert main(["hash", *argv, "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.endswith("\n") and out.count("\n") == 1
    return json.loads(out)


def test_wire_format_table_via_cli(capsys):
    assert run_json(capsys, "[0]240.0.1.0/24", "--modulus", "4") == \
        {"string": "[0]240.0.1.0/24", "index": 2}
    assert run_json(capsys, "[0]240.0.1.1/32", "--modulus", "4", "--hash-mask", "8",
                    "--suffix", "map-server.lispers.net") == \
        {"string": "[0]240.0", "index": 0, "name": "0.map-server.lispers.net"}
    assert run_json(capsys, "[1000]fd::2222/128", "--modulus", "4", "--hash-mask", "8") == \
        {"string": "[1000]fd", "index": 3}
    assert run_json(capsys, "[0]240.0.1.0/24", "--modulus", "4", "--mode", "lispers") == \
        {"string": "[0]240.0.1.0/24", "index": 3}
    assert run_json(capsys, "[1000]fd::2222", "--modulus", "4", "--mode", "lispers") == \
        {"string": "[1000]fd::2222/128", "index": 0}


def test_json_exact_text(capsys):
    assert main(["hash", "10.1.2.3/16", "--modulus", "7", "--json", "--suffix", "ms.example."]) == 0
    out = capsys.readouterr().out
    n = sha_index("[0]10.1.0.0/16", 7)
    assert out == f'{{"string": "[0]10.1.0.0/16", "index": {n}, "name": "{n}.ms.example"}}\n'


@pytest.mark.parametrize("argv, string, oracle", [
    # RFC 9962 section 5.1: multicast hashes exactly [<iid>]<group>, never the source
    (["[0]224.1.1.1-2.2.2.2", "--modulus", "255"], "[0]224.1.1.1", sha_index),
    (["[0]224.1.1.1-2.2.2.2", "--modulus", "255", "--mode", "draft"], "[0]224.1.1.1", sha_index),
    (["224.1.1.1/32-0.0.0.0/0", "--modulus", "255", "--hash-mask", "12"], "[0]224.1.1.1", sha_index),
    (["[7]ff0e::1-::/0", "--modulus", "255", "--mode", "lispers"], "[7]ff0e::1/128", lispers_index),
    (["[7]ff0e::1:2/128-::/0", "--modulus", "255", "--mode", "prefix", "--hash-mask", "112"],
     "[7]ff0e::1:0/112", sha_index),
    (["2001:db8:1:2::5", "--modulus", "255", "--mode", "prefix", "--hash-mask", "48"],
     "[0]2001:db8:1::/48", sha_index),
    (["10.0.0.0/8", "--modulus", "255", "--mode", "prefix", "--hash-mask", "16"],
     "[0]10.0.0.0/8", sha_index),
    (["::ffff:1.2.3.4", "--modulus", "255", "--mode", "prefix"], "[0]::ffff:102:304/128", sha_index),
])
def test_modes_via_cli(capsys, argv, string, oracle):
    got = run_json(capsys, *argv)
    assert got == {"string": string, "index": oracle(string, 255)}


def test_human_output(capsys):
    assert main(["hash", "[0]240.0.1.0/24", "--modulus", "4", "--suffix", "ms.example"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["string", "[0]240.0.1.0/24"]
    assert lines[1].split()[:2] == ["index", "2"]
    assert lines[2].split() == ["name", "2.ms.example"]


@pytest.mark.parametrize("argv, fragment", [
    (["1.2.3.4/33", "--modulus", "4"], "mask length 33 beyond IPv4's 32 bits"),
    (["[x]1.2.3.4", "--modulus", "4"], "bad instance ID"),
    (["nonsense", "--modulus", "4"], "not an address"),
    (["1.2.3.4", "--modulus", "0"], "--modulus must be at least 1"),
    (["1.2.3.4", "--modulus", "-3"], "--modulus must be at least 1"),
    (["1.2.3.4", "--modulus", "four"], "--modulus must be an integer"),
    (["1.2.3.4", "--modulus", "99999999999999999999999"], "--modulus must be an integer"),
    (["1.2.3.4", "--modulus", "4", "--mode", "lispers", "--hash-mask", "8"], "lispers"),
    (["1.2.3.4", "--modulus", "4", "--mode", "md5"], "unknown --mode"),
    (["1.2.3.4", "--modulus", "4", "--hash-mask", "0"], "at least 1"),
    (["1.2.3.4", "--modulus", "4", "--mode", "prefix", "--hash-mask", "-1"], "negative"),
    (["1.2.3.4", "--modulus", "4", "--hash-mask", "x"], "--hash-mask must be an integer"),
    (["1.2.3.4", "--modulus", "4", "--suffix", "."], "--suffix is empty"),
    (["1.2.3.4", "--modulus", "4", "--lookup-range", "1.0.0.0/8"], "expected [<iid>]<prefix>=<length>"),
    (["1.2.3.4", "--modulus", "4", "--lookup-range", "1.0.0.0/8=4"], "must be an integer from 8 to 32"),
    (["1.2.3.4", "--modulus", "4", "--lookup-range", "1.0.0.0/8=33"], "must be an integer from 8 to 32"),
    (["1.2.3.4", "--modulus", "4", "--lookup-range", "1.0.0.0/8=x"], "must be an integer"),
    (["1.2.3.4", "--modulus", "4", "--lookup-range", "224.0.0.0/4-0.0.0.0/0=8"], "unicast"),
    (["1.2.3.4", "--modulus", "4", "--lookup-range", "1.0.0.0/8=16", "--lookup-range",
      "1.0.0.0/8=24"], "given twice"),
    (["1.2.3.4", "--modulus", "4", "--mode", "prefix", "--hash-mask", "8", "--lookup-range",
      "1.0.0.0/8=16"], "rfc9962 only"),
])
def test_user_errors_are_one_line(capsys, argv, fragment):
    assert main(["hash", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("decent: ") and err.endswith("\n") and err.count("\n") == 1
    assert fragment in err
    assert "Traceback" not in err


def test_subprocess_console_script():
    proc = subprocess.run([str(DECENT), "hash", "[0]240.0.1.0/24", "--modulus", "4",
                           "--hash-mask", "8", "--suffix", "map-server.lispers.net", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"string": "[0]240.0", "index": 0,
                                       "name": "0.map-server.lispers.net"}


def test_subprocess_bad_eidspec():
    proc = subprocess.run([str(DECENT), "hash", "10.0.0.0/40", "--modulus", "4"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == "decent: bad EIDSPEC: mask length 40 beyond IPv4's 32 bits\n"


# RFC 9962 section 5.2's example: ranges [0]240.11.0.0/16 -> 24, [0]240.12.0.0/16 -> 30,
# [0]240.13.0.0/16 -> 25; the strings are the RFC's, the indexes computed here
RFC_RANGES = ["--lookup-range", "[0]240.11.0.0/16=24", "--lookup-range", "[0]240.12.0.0/16=30",
              "--lookup-range", "[0]240.13.0.0/16=25"]


@pytest.mark.parametrize("eid, string", [
    ("[0]240.11.1.1", "[0]240.11.1.0/24"),
    ("[0]240.12.2.5", "[0]240.12.2.4/30"),
    ("[0]240.13.3.7", "[0]240.13.3.0/25"),
    ("[0]240.14.1.1", "[0]240.14.1.1/32"),
])
def test_lookup_ranges_rfc_example_via_cli(capsys, eid, string):
    for modulus in (4, 255):
        got = run_json(capsys, eid, "--modulus", str(modulus), *RFC_RANGES, "--suffix", "ms.example")
        n = sha_index(string, modulus)
        assert got == {"string": string, "index": n, "name": f"{n}.ms.example"}


def test_lookup_range_then_hash_mask_and_iid(capsys):
    # the range applies first, then the byte mask; another IID is another range
    got = run_json(capsys, "[0]240.11.1.1", "--modulus", "7", *RFC_RANGES, "--hash-mask", "11")
    assert got == {"string": "[0]240.11.1", "index": sha_index("[0]240.11.1", 7)}
    got = run_json(capsys, "[5]240.11.1.1", "--modulus", "7", *RFC_RANGES)
    assert got["string"] == "[5]240.11.1.1/32"
    got = run_json(capsys, "[5]2001:db8:1:2::9", "--modulus", "7",
                   "--lookup-range", "[5]2001:db8::/32=48", "--lookup-range", "[5]2001:db8:1::/48=64")
    assert got == {"string": "[5]2001:db8:1:2::/64", "index": sha_index("[5]2001:db8:1:2::/64", 7)}


def test_lookup_ranges_human_output(capsys):
    assert main(["hash", "[0]240.12.2.5", "--modulus", "4", *RFC_RANGES]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["string", "[0]240.12.2.4/30"]
    assert "lookup ranges [0]240.11.0.0/16=24" in out


def test_lispers_mode_keeps_typed_host_bits_and_mapped_tails(capsys):
    for spec, string in (("10.1.1.5/24", "[0]10.1.1.5/24"), ("[7]10.1.1.5/24", "[7]10.1.1.5/24"),
                         ("::ffff:10.0.0.1", "[0]::ffff:10.0.0.1/128"),
                         ("::ffff:a00:1", "[0]::ffff:10.0.0.1/128"),
                         ("224.1.1.1-2.2.2.2", "[0]224.1.1.1/32")):
        got = run_json(capsys, spec, "--modulus", "255", "--mode", "lispers")
        assert got == {"string": string, "index": lispers_index(string, 255)}
    # the other modes clear host bits, as before
    got = run_json(capsys, "10.1.1.5/24", "--modulus", "255")
    assert got["string"] == "[0]10.1.1.0/24"
