"""LISP-SEC messages (RFC 9303) as Wireshark (tshark) sees them.

The installed dissector (4.0, WIRE-FORMAT 12.2) knows the S bits
(``lisp.ecm.flags.sec``, ``lisp.mrep.flags.sec``) but not the authentication data:
an ECM with S=1 is shown as its header and then "data" (it does not look for the
inner IP header behind the authentication data); a Map-Reply with S=1 has its
records dissected and exactly the authentication data left as "data".  Asserted
as such, with no expert item and nothing malformed, for the ITR's request, the
Map-Server's forward to the ETR, the ETR's reply and a proxy reply, all made by
the real machines (tests/unit/test_lispsec_flow.py)."""

from __future__ import annotations

from common.wire.messages import decode_message
from tests.conformance.oracle import decode_batch
from tests.unit.test_lispsec_flow import ask, etr_answer, world


def _messages():
    itr, res, etr = world()
    req, [fwd] = ask(itr, res)
    reply = etr_answer(etr, fwd.data)
    itr2, res2, _ = world(proxy=True)
    _, [proxy] = ask(itr2, res2)
    return req, fwd.data, reply, proxy.data


def test_wireshark_sees_lisp_sec_ecms_and_map_replies():
    req, fwd, reply, proxy = _messages()
    got = decode_batch([req, fwd, reply, proxy])
    for data, res in zip((req, fwd), got[:2]):
        m = decode_message(data)
        assert res["_expert"] == [] and res["_protocols"].endswith("udp:lisp:data"), res
        assert res["lisp.type"] == 8 and res["lisp.ecm.flags.sec"] is True
        assert res["lisp.ecm.flags.ddt"] is False
        assert res["lisp.ecm.res"] == (m.to_etr << 25) | (m.to_ms << 24)
        assert res["data.data"] == data[4:].hex()          # authentication data + inner datagram
    assert decode_message(fwd).to_etr
    for data, res in zip((reply, proxy), got[2:]):
        m = decode_message(data)
        assert res["_expert"] == [] and res["_protocols"].endswith("udp:lisp:data"), res
        assert res["lisp.type"] == 2 and res["lisp.mrep.flags.sec"] is True
        assert res["lisp.nonce"] == m.nonce and res["lisp.records"] == len(m.records)
        assert res["lisp.mapping.eid.ipv4"] == str(m.records[0].prefix.address)
        assert res["lisp.mapping.eid.masklen"] == m.records[0].prefix.length
        assert res["lisp.loc.locator"] == str(m.records[0].locators[0].address)
        assert res["data.data"] == m.sec_data.hex()         # exactly the authentication data
    assert got[2]["lisp.mapping.auth"] is True and got[3]["lisp.mapping.auth"] is False
