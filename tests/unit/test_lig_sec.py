"""`decent lig --sec`: the verdict it prints for a reply (cli.lig_cmd.sec_view)."""

from __future__ import annotations

from cli.lig_cmd import sec_view
from common.wire.messages import decode_message
from tests.unit.test_lispsec_flow import _over_claim, ask, etr_answer, world


def _otk(itr, data):
    return itr._otk[decode_message(data).nonce]


def test_verified_reply_names_the_eid_ad():
    itr, res, etr = world()
    _, [fwd] = ask(itr, res)
    reply = etr_answer(etr, fwd.data)
    assert sec_view(reply, decode_message(reply), _otk(itr, reply)) == {
        "verified": True, "reason": "", "eid_ad": ["[0]10.1.1.0/24"]}


def test_over_claim_and_unprotected_are_not_verified():
    itr, res, _ = world()
    _, [fwd] = ask(itr, res)
    bad = _over_claim(fwd.data, "10.0.0.0/8")
    v = sec_view(bad, decode_message(bad), _otk(itr, bad))
    assert not v["verified"] and v["reason"].startswith("over-claim") and v["eid_ad"] == []
    itr2, res2, etr2 = world(site_mode="off")
    _, [fwd2] = ask(itr2, res2)
    plain = etr_answer(etr2, fwd2.data)
    assert sec_view(plain, decode_message(plain), _otk(itr2, plain))["reason"] == "unprotected"
