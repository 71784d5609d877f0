"""The Wireshark harness itself: it must notice what the conformance tests rely on it
to notice (malformed packets, bytes left over, bad checksums, a wrong MAC), and be
unavailable in the right way (skip locally, fail under CI)."""

from __future__ import annotations

import os
import struct
import tempfile
from ipaddress import IPv4Address

import pytest

from common.wire.auth import seal
from common.wire.messages import MapRequest, RequestRecord, encode_message
from common.wire.register import MapRegister
from tests.conformance import capture, oracle, tshark

pytestmark = pytest.mark.conformance

PSK = b"harness-psk"


def _request() -> bytes:
    return encode_message(MapRequest(nonce=0x1122334455667788, source_eid=IPv4Address("10.0.0.1"),
                                     itr_rlocs=(IPv4Address("192.0.2.5"),),
                                     records=(RequestRecord(IPv4Address("10.1.2.0"), 24, 0),)))


def _register() -> bytes:
    reg = MapRegister(nonce=7, key_id=0, alg_id=2, records=(), want_map_notify=True)
    return seal(reg, PSK)


def test_ports_follow_the_message_direction():
    assert capture.ports(bytes([0x10]), "control") == (capture.CLIENT_PORT, 4342)   # Map-Request
    assert capture.ports(bytes([0x20]), "control") == (4342, capture.CLIENT_PORT)   # Map-Reply
    assert capture.ports(bytes([0x40]), "control") == (4342, 4342)                  # Map-Notify
    assert capture.ports(bytes([0x78]), "control") == (4342, capture.CLIENT_PORT)   # Info-Reply
    assert capture.ports(bytes([0x80]), "data") == (capture.DATA_SOURCE_PORT, 4341)
    with pytest.raises(ValueError):
        capture.ports(b"\x10", "ctl")


def test_clean_packets_decode_with_fields_info_and_stack():
    wire = _request()
    v4, v6 = oracle.decode_batch([wire, wire], "control", [False, True])
    for res, outer in ((v4, "ip"), (v6, "ipv6")):
        assert res["lisp.type"] == 1 and res["lisp.nonce"] == 0x1122334455667788
        assert res["lisp.records"] == 1
        assert res["_protocols"].split(":") == ["raw", outer, "udp", "lisp"]
        assert res["_info"].startswith("Map-Request")
        assert not res["malformed"] and res["_trailing_bytes"] == 0
        assert not [e for e in res["_expert"] if e["severity"] in ("warning", "error")]
        assert not any(k.startswith(("ip.", "ipv6.", "udp.")) for k in res)   # outer layers


def test_truncated_and_padded_messages_are_noticed():
    wire = _request()
    short, padded = oracle.decode_batch([wire[:-3], wire + b"\xde\xad\xbe\xef\x01"])
    assert short["malformed"]
    assert padded["_trailing_bytes"] == 5


def test_bad_udp_checksum_is_an_expert_error():
    pkt = bytearray(capture.udp_packet(_request(), 50000, 4342))
    pkt[26] ^= 0xFF                                   # IPv4 (20) + UDP checksum at 6
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bad.pcap")
        capture.write_pcap(path, [bytes(pkt)])
        [res] = tshark.dissect(oracle.require(), path)
    assert res["malformed"]
    assert any(e["severity"] == "error" for e in res["_expert"])


def test_mac_check_uses_wiresharks_auth_position():
    good = _register()
    bad = bytearray(good)
    bad[-1] ^= 1                                      # last MAC byte (no records, no trailer)
    ok, wrong = oracle.decode_batch([good, bytes(bad)], psk=PSK)
    assert ok["_auth"] == "ok"
    assert wrong["_auth"] == "mismatch"
    [other] = oracle.decode_batch([good], psk=b"another key")
    assert other["_auth"] == "mismatch"
    [req] = oracle.decode_batch([_request()], psk=PSK)
    assert req["_auth"] == "n/a"


def test_checksum16_matches_rfc1071_example():
    # RFC 1071 section 3 example bytes: sum 0xddf2, checksum its complement
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert capture.checksum16(data) == (~0xddf2) & 0xFFFF
    assert capture.checksum16(data + struct.pack("!H", capture.checksum16(data))) == 0


@pytest.mark.parametrize("ci,outcome", [("", pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_missing_tshark_skips_locally_and_fails_under_ci(monkeypatch, ci, outcome):
    monkeypatch.setenv("TSHARK", "/nonexistent/tshark")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="tshark"):
        oracle.require()
