"""``decent decode``: hex and capture input, text and JSON output, error contract.

The Map-Register is the worked example of WIRE-FORMAT.md 6.3 (100 bytes, fixed
here so the test does not depend on our encoder); the Map-Request is hand-made
and checked against ``common.wire.messages.encode_message``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from cli.main import main
from common.wire.messages import MapRequest, RequestRecord, encode_message
from tests.unit.test_pcap import (ether, ipv4_udp, ipv6_udp, need_tool, pcap_file, pcapng_file)

MAP_REGISTER_HEX = """
32 00 01 01 00 00 00 00 00 00 00 01 00 02 00 20
e1 71 23 ea 2d 1c b0 c5 5d 56 30 ae b6 d8 f4 c3
ec 5f b1 48 30 e1 d4 c6 6b 85 87 9a e1 45 c7 46
00 00 05 a0 01 10 10 00 00 00 00 01 0a 01 00 00
01 64 ff 00 00 05 00 01 c0 00 02 01 01 02 03 04
05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 22 33 44
55 66 77 88
"""
MAP_REGISTER = bytes.fromhex(MAP_REGISTER_HEX)

# Map-Request: no flags, IRC 0, 1 record, nonce 0x0102030405060708, source EID AFI 0,
# ITR-RLOC 192.0.2.1, record N=0 mask 32 AFI 1 10.1.2.3
MAP_REQUEST = bytes.fromhex("10000001 0102030405060708 0000 0001c0000201 00200001 0a010203")

# the Map-Register with its EID-record AFI (offset 58) changed to 99
BAD_AFI = MAP_REGISTER[:58] + b"\x00\x63" + MAP_REGISTER[60:]
TRUNCATED = MAP_REGISTER[:20]


def decent_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("decent")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cli.main"]


def run_decent(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*decent_cmd(), *args], input=stdin, capture_output=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_fixtures_match_the_codec():
    assert len(MAP_REGISTER) == 100
    req = MapRequest(nonce=0x0102030405060708, itr_rlocs=(IPv4Address("192.0.2.1"),),
                     records=(RequestRecord(IPv4Address("10.1.2.3"), 32),))
    assert encode_message(req) == MAP_REQUEST


# ---------------------------------------------------------------------------
# hex input


@pytest.mark.parametrize("form", [
    MAP_REGISTER.hex(),
    "0x" + MAP_REGISTER.hex(),
    ":".join(f"{b:02x}" for b in MAP_REGISTER),
    MAP_REGISTER_HEX,                      # spaces and newlines
    MAP_REGISTER.hex().upper(),
])
def test_hex_forms_json(capsys, form):
    rc, out, err = run(capsys, "decode", form, "--json")
    assert (rc, err) == (0, "")
    obj = json.loads(out)
    assert out.count("\n") == 1
    assert obj["type"] == "map-register" and obj["nonce"] == 1
    assert obj["records"][0]["rlocs"][0]["address"] == "192.0.2.1"


def test_hex_split_over_arguments_and_text_output(capsys):
    words = MAP_REGISTER_HEX.split()
    rc, out, err = run(capsys, "decode", *words)
    assert (rc, err) == (0, "")
    assert "map-register" in out and "10.1.0.0/16" in out and "192.0.2.1" in out


def test_map_request_text_and_json(capsys):
    rc, out, _ = run(capsys, "decode", MAP_REQUEST.hex())
    assert rc == 0 and "map-request" in out and "10.1.2.3" in out and "192.0.2.1" in out
    rc, out, _ = run(capsys, "decode", "--json", MAP_REQUEST.hex())
    obj = json.loads(out)
    assert rc == 0 and obj["type"] == "map-request" and obj["nonce"] == 0x0102030405060708


@pytest.mark.parametrize("data,offset,text", [
    (BAD_AFI, 58, "record[0].eid.afi: unknown AFI 99"),
    (TRUNCATED, None, ""),
    (b"\x00", 0, "type"),
])
def test_undecodable_hex_one_line_exit_2(capsys, data, offset, text):
    rc, out, err = run(capsys, "decode", data.hex())
    assert rc == 2 and out == ""
    assert err.endswith("\n") and err.count("\n") == 1
    assert err.startswith("decode error at offset ")
    if offset is not None:
        assert err.startswith(f"decode error at offset {offset}: ")
    assert text in err


@pytest.mark.parametrize("arg", ["xyz", "123", "0x", "12:3g", "   "])
def test_not_hex_one_line_exit_2(capsys, arg):
    rc, out, err = run(capsys, "decode", arg)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "hex" in err and "Traceback" not in err


def test_hex_from_stdin(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(MAP_REGISTER_HEX))
    rc, out, err = run(capsys, "decode", "-", "--json")
    assert rc == 0 and json.loads(out)["type"] == "map-register"


def test_usage_errors(capsys, tmp_path):
    rc, _, err = run(capsys, "decode")
    assert rc == 2 and err.count("\n") == 1
    rc, _, err = run(capsys, "decode", "00", "--pcap", str(tmp_path / "x"))
    assert rc == 2 and err.count("\n") == 1


# ---------------------------------------------------------------------------
# capture input


def lisp_capture() -> bytes:
    """Frames: 1 Map-Register, 2 DNS (not LISP), 3 Map-Request over IPv6 from port 4342,
    4 Map-Register with a bad AFI, 5 a truncated message."""
    frames = [
        ipv4_udp("10.0.0.1", "10.0.0.2", 61000, 4342, MAP_REGISTER),
        ipv4_udp("10.0.0.1", "10.0.0.53", 5353, 53, b"\x12\x34" + b"\0" * 10),
        ipv6_udp("2001:db8::1", "2001:db8::2", 4342, 55555, MAP_REQUEST),
        ipv4_udp("10.0.0.3", "10.0.0.2", 61001, 4342, BAD_AFI),
        ipv4_udp("10.0.0.4", "10.0.0.2", 61002, 4342, TRUNCATED),
    ]
    return pcap_file(1, [ether(f) for f in frames])


def check_json_lines(out: str) -> None:
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["frame"] for r in rows] == [1, 3, 4, 5]
    reg, req, bad, short = rows
    assert reg["type"] == "map-register" and reg["nonce"] == 1
    assert (reg["src"], reg["dst"], reg["sport"], reg["dport"]) == ("10.0.0.1", "10.0.0.2", 61000, 4342)
    assert reg["records"][0]["eid"].endswith("10.1.0.0/16")
    assert req["type"] == "map-request" and req["nonce"] == 0x0102030405060708
    assert (req["src"], req["dst"], req["sport"], req["dport"]) == ("2001:db8::1", "2001:db8::2", 4342, 55555)
    assert bad == {"frame": 4, "src": "10.0.0.3", "dst": "10.0.0.2", "sport": 61001, "dport": 4342,
                   "error": "decode error at offset 58: record[0].eid.afi: unknown AFI 99"}
    assert short["error"].startswith("decode error at offset ") and "type" not in short
    # compact: exactly what json.dumps with the tightest separators gives
    assert all(json.dumps(json.loads(line), separators=(",", ":")) == line for line in out.splitlines())


def test_pcap_json(capsys, tmp_path):
    path = tmp_path / "lisp.pcap"
    path.write_bytes(lisp_capture())
    rc, out, err = run(capsys, "decode", "--pcap", str(path), "--json")
    assert rc == 0
    check_json_lines(out)
    assert err.count("\n") == 1 and "2 of 4" in err


def test_pcap_text(capsys, tmp_path):
    path = tmp_path / "lisp.pcapng"
    frames = [ether(ipv4_udp("10.0.0.1", "10.0.0.2", 61000, 4342, MAP_REGISTER)),
              ether(ipv6_udp("2001:db8::1", "2001:db8::2", 4342, 55555, MAP_REQUEST))]
    path.write_bytes(pcapng_file(1, frames))
    rc, out, err = run(capsys, "decode", "--pcap", str(path))
    assert (rc, err) == (0, "")
    assert "frame 1  10.0.0.1:61000 -> 10.0.0.2:4342" in out
    assert "frame 2  [2001:db8::1]:4342 -> [2001:db8::2]:55555" in out
    assert "map-register" in out and "map-request" in out and "Traceback" not in out


def test_pcap_without_lisp_packets(capsys, tmp_path):
    path = tmp_path / "dns.pcap"
    path.write_bytes(pcap_file(101, [ipv4_udp("10.0.0.1", "10.0.0.53", 5353, 53, b"q")]))
    rc, out, err = run(capsys, "decode", "--pcap", str(path), "--json")
    assert rc == 0 and out == "" and err.count("\n") == 1


@pytest.mark.parametrize("content", [None, b"", b"this is not a capture file\n", lisp_capture()[:10]])
def test_unreadable_or_not_a_capture_exit_2(capsys, tmp_path, content):
    path = tmp_path / "f.pcap"
    if content is not None:
        path.write_bytes(content)
    rc, out, err = run(capsys, "decode", "--pcap", str(path))
    assert rc == 2 and out == ""
    assert err.startswith("decent: ") and err.count("\n") == 1


# ---------------------------------------------------------------------------
# the installed console script, end to end


def test_subprocess_pcap_json(tmp_path):
    path = tmp_path / "lisp.pcap"
    path.write_bytes(lisp_capture())
    p = run_decent("decode", "--pcap", str(path), "--json")
    assert p.returncode == 0, p.stderr
    check_json_lines(p.stdout.decode())
    assert b"Traceback" not in p.stderr and p.stderr.count(b"\n") == 1


@pytest.mark.parametrize("arg", [BAD_AFI.hex(), TRUNCATED.hex(), "not-hex!"])
def test_subprocess_bad_input_one_line(arg):
    p = run_decent("decode", arg)
    assert p.returncode == 2 and p.stdout == b""
    assert p.stderr.count(b"\n") == 1 and b"Traceback" not in p.stderr
    if arg != "not-hex!":
        assert p.stderr.startswith(b"decode error at offset ")


def test_subprocess_stdin_hex():
    p = run_decent("decode", "-", "--json", stdin=MAP_REQUEST.hex().encode() + b"\n")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["type"] == "map-request"


def test_subprocess_text2pcap_capture(tmp_path):
    text2pcap = need_tool("text2pcap")
    dump = tmp_path / "in.txt"
    dump.write_text("".join(
        "".join(f"{i:06x}  {msg[i:i + 16].hex(' ')}\n" for i in range(0, len(msg), 16)) + "\n"
        for msg in (MAP_REGISTER, MAP_REQUEST)))
    cap = tmp_path / "t2p.pcapng"
    subprocess.run([text2pcap, "-q", "-4", "192.0.2.1,192.0.2.2", "-u", "61000,4342", str(dump), str(cap)],
                   check=True, capture_output=True, timeout=60)
    p = run_decent("decode", "--json", "--pcap", str(cap))
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [(r["frame"], r["type"], r["dport"]) for r in rows] == [
        (1, "map-register", 4342), (2, "map-request", 4342)]
    if os.environ.get("CI") or shutil.which("tshark"):
        # Wireshark agrees these are LISP control messages of those types
        out = subprocess.run([need_tool("tshark"), "-r", str(cap), "-T", "fields", "-e", "lisp.type"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.split()
        assert out == ["3", "1"]
