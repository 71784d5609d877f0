"""`decent decode --json` gives LCAF addresses as structured JSON; the text keeps
its one-line forms (issue 12)."""

from __future__ import annotations

import json
from ipaddress import IPv4Address as V4, IPv6Address as V6

from cli.main import main
from common.machines.natinfo import info_reply
from common.wire.addr import AfiList, DistinguishedName, InstanceIdAddr, MulticastInfo, OpaqueLcaf, Rle, RleEntry
from common.wire.messages import InfoMessage, MapReply, encode_message
from common.wire.records import EidRecord, Locator


def decode(capsys, data: bytes, *extra) -> str:
    assert main(["decode", data.hex(), *extra]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def reply() -> MapReply:
    locs = (Locator(V4("192.0.2.1")),
            Locator(Rle((RleEntry(V4("10.0.0.1"), 1), RleEntry(V6("fd00::2"), 200, "relay")))),
            Locator(AfiList((V4("192.0.2.9"), DistinguishedName("site-a")))),
            Locator(InstanceIdAddr(7, V4("192.0.2.7"))),
            Locator(MulticastInfo(3, V4("10.1.1.1"), 32, V4("239.1.2.3"), 32)),
            Locator(OpaqueLcaf(15, b"\x01\x02")))
    return MapReply(99, (EidRecord(V4("10.1.0.0"), 16, 60, locs),))


def test_lcaf_rlocs_as_structured_json(capsys):
    d = json.loads(decode(capsys, encode_message(reply()), "--json"))
    addrs = [loc["address"] for loc in d["records"][0]["rlocs"]]
    assert addrs == [
        "192.0.2.1",
        {"rle": [{"address": "10.0.0.1", "level": 1},
                 {"address": "fd00::2", "level": 200, "name": "relay"}]},
        {"afi_list": ["192.0.2.9", "'site-a'"]},
        {"iid": 7, "address": "192.0.2.7"},
        {"multicast": {"iid": 3, "group": "239.1.2.3", "group_len": 32, "source": "10.1.1.1",
                       "source_len": 32}},
        {"lcaf_type": 15, "body": "0102"},
    ]


def test_text_output_keeps_the_one_line_forms(capsys):
    out = decode(capsys, encode_message(reply()))
    assert "rle(10.0.0.1:1, fd00::2:200 'relay')" in out
    assert "afi-list(192.0.2.9, 'site-a')" in out
    assert "{" not in out


def test_info_reply_nat_traversal_as_json(capsys):
    req = InfoMessage(5, V4("10.1.2.3"), 32)
    data = info_reply(req, ("198.51.100.7", 40001), "127.0.0.1")
    d = json.loads(decode(capsys, data, "--json"))
    assert d["type"] == "info" and d["reply"] is True
    assert d["payload"] == {"nat_traversal": {"ms_port": 4342, "etr_port": 40001,
                                              "global_etr": "198.51.100.7", "ms": "127.0.0.1",
                                              "private_etr": "no-address", "rtrs": []}}
    # a NAT-Traversal LCAF that does not parse stays opaque
    bad = encode_message(InfoMessage(5, V4("10.1.2.3"), 32, reply=True, payload=OpaqueLcaf(7, b"\x00")))
    assert json.loads(decode(capsys, bad, "--json"))["payload"] == {"lcaf_type": 7, "body": "00"}
