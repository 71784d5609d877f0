"""`decent show sites` text: the per-site fields of ms.answered, read tolerantly."""

from __future__ import annotations

from cli.show_cmd import site_text


def test_full_site():
    s = {"name": "oor", "shard": 0, "nonce_policy": "strict", "prefixes": [["[0]10.6.0.0/16", False],
                                                                           ["[0]10.7.0.0/16", True]],
         "registrations": 2,
         "last_accepted": {"ago": 75.4, "from": "192.0.2.7", "xtr_id": "00112233445566778899aabbccddeeff"},
         "refused": {"nonce-not-increasing": 14, "bad-mac": 1}}
    assert site_text(s) == [
        "site oor (shard 0, nonce policy strict)",
        "  registrations 2; last accepted 75s ago from 192.0.2.7 "
        "(xTR-ID 00112233445566778899aabbccddeeff); refused nonce-not-increasing 14, bad-mac 1",
        "  [0]10.6.0.0/16",
        "  [0]10.7.0.0/16  accept-more-specifics"]


def test_fields_absent_or_null_show_a_dash():
    s = {"name": "lab", "shard": 1, "nonce_policy": "warn", "prefixes": [["[0]10.1.0.0/16", True]]}
    assert site_text(s)[1] == "  registrations -; last accepted -; refused -"
    s.update(registrations=0, last_accepted=None, refused={})
    assert site_text(s)[1] == "  registrations 0; last accepted -; refused -"
    s.update(last_accepted={"ago": 7300, "from": "2001:db8::1", "xtr_id": None})
    assert site_text(s)[1] == "  registrations 0; last accepted 2h ago from 2001:db8::1; refused -"
    s.update(last_accepted={"ago": 600, "from": "192.0.2.1"})
    assert "last accepted 10m ago from 192.0.2.1;" in site_text(s)[1]


def test_malformed_fields_do_not_raise():
    s = {"name": "x", "registrations": "many", "last_accepted": "yesterday", "refused": ["replay"]}
    assert site_text(s) == ["site x (shard ?, nonce policy ?)",
                            "  registrations -; last accepted -; refused -"]
