"""What live interop with lispers.net and OOR needed, against a real node (issue 12).

One node (127.0.62.1: map_resolver, map_server, etr) whose ETR registers with a
Map-Server that is not there (127.0.62.99), so its own Map-Server holds nothing
for its EIDs, as when another implementation's Map-Server holds them:

* an ECM Map-Request with an inner UDP checksum of 0 (as lispers.net sends every
  one) is answered, for a non-EID (negative) and for its own EID;
* an ECM Map-Request for its own EID without the E bit (as OOR's Map-Server
  forwards it) is answered authoritatively by its ETR;
* an Info-Request (lispers.net's ``lig`` from a private address) gets an
  Info-Reply naming the requester's address and port as seen.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address as V4

import pytest

from common.wire.addr import decode_address, eid_to_wire
from common.wire.ecm import Ecm
from common.wire.eidtext import format_eid, parse_eidspec
from common.wire.ipudp import IpUdp
from common.wire.messages import InfoMessage, MapReply, MapRequest, RequestRecord, decode_message, encode_message
from tests.integration.harness import Node, poll, udp_exchange

pytestmark = pytest.mark.integration

RLOC = "127.0.62.1"
CLIENT = "127.0.62.100"
BODY = f"""
[roles]
map_resolver = {{ workers = 1 }}
map_server = {{ shards = 1 }}
etr = true
itr = false

[[site]]
name = "lab"
key = [{{ id = 0, alg = "hmac-sha-256-128", secret = "s3" }}]
prefix = [{{ eid = "10.62.0.0/16", accept_more_specifics = true }}]

[[database_mapping]]
eid = "10.62.1.0/24"

[etr]
map_servers = [{{ address = "127.0.62.99", key_id = 0, alg = "hmac-sha-256-128", secret = "s3" }}]
"""


def ecm(spec: str, port: int, *, zero: bool, nonce: int) -> bytes:
    addr, ml = eid_to_wire(parse_eidspec(spec))
    req = MapRequest(nonce, (V4(CLIENT),), (RequestRecord(addr, ml),))
    return encode_message(Ecm(req, IpUdp(V4(CLIENT), addr, port, 4342), zero_checksum=zero))


def ask(spec: str, *, zero: bool, nonce: int) -> MapReply | None:
    data = udp_exchange((RLOC, 4342), lambda port: ecm(spec, port, zero=zero, nonce=nonce),
                        src=CLIENT, timeout=1.0)
    m = decode_message(data) if data else None
    return m if isinstance(m, MapReply) and m.nonce == nonce else None


@pytest.fixture(scope="module")
def node():
    n = Node("io1", RLOC, BODY)
    try:
        n.up()
        poll(n.all_running, 30, 0.2, what="roles running")
        yield n
    finally:
        n.down()


def test_zero_checksum_ecm_is_answered(node):
    r = poll(lambda: ask("10.99.0.1", zero=True, nonce=11), 20, 0.3, what="negative reply")
    assert not r.records[0].locators            # not an EID: negative, from the Map-Resolver
    r = poll(lambda: ask("10.62.1.5", zero=True, nonce=12), 20, 0.3, what="reply for our own EID")
    assert format_eid(r.records[0].prefix) == "[0]10.62.1.0/24" and r.records[0].locators
    mr = node.counters()["map_resolver:0"]
    assert not any("checksum" in k for k in mr if k.startswith("drop"))


def test_e0_request_for_our_own_eid_is_answered_by_the_etr(node):
    assert node.registrations() == []           # our Map-Server holds nothing for it
    r = poll(lambda: ask("10.62.1.77", zero=False, nonce=13), 20, 0.3, what="ETR answer")
    rec = r.records[0]
    assert rec.authoritative and format_eid(rec.prefix) == "[0]10.62.1.0/24"
    assert [str(l.address) for l in rec.locators] == [RLOC]
    assert node.counters()["etr:0"].get("answered", 0) >= 1
    # an EID inside the site but not ours is still the Map-Server's: a negative reply
    r = poll(lambda: ask("10.62.2.1", zero=False, nonce=14), 20, 0.3, what="negative reply")
    assert not r.records[0].locators and not r.records[0].authoritative


def test_info_request_gets_an_info_reply(node):
    req = encode_message(InfoMessage(0xABCDEF0123, V4("10.62.1.1"), 32))
    got = {}

    def exchange():
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((CLIENT, 0))
            s.settimeout(1.0)
            got["port"] = s.getsockname()[1]
            s.sendto(req, (RLOC, 4342))
            try:
                return s.recvfrom(2048)
            except socket.timeout:
                return None
        finally:
            s.close()

    data, src = poll(exchange, 20, 0.3, what="Info-Reply")
    assert src == (RLOC, 4342)
    rep = decode_message(data)
    assert isinstance(rep, InfoMessage) and rep.reply and rep.nonce == 0xABCDEF0123
    body = rep.payload.body
    ms_port, etr_port = struct.unpack_from("!HH", body, 0)
    global_etr, q = decode_address(body, 4, len(body), "nat")
    ms_rloc, q = decode_address(body, q, len(body), "nat")
    assert (ms_port, etr_port, str(global_etr), str(ms_rloc)) == (4342, got["port"], CLIENT, RLOC)


def test_show_sites_names_registrations_last_accepted_and_refusals(node):
    r = node.decent("show", "sites")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("site lab (shard 0, nonce policy strict)")
    # nothing registers here (the ETR registers with 127.0.62.99)
    assert lines[1] == "  registrations 0; last accepted -; refused -"
    assert "[0]10.62.0.0/16  accept-more-specifics" in r.stdout
    sites = __import__("json").loads(node.decent("show", "sites", "--json").stdout)
    assert sites[0]["registrations"] == 0 and sites[0]["last_accepted"] is None
