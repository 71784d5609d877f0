"""[decent] dnssec / trust_anchor / trust_anchor_file: checked at parse time."""

from __future__ import annotations

import pytest

from common.config import ConfigError, parse_config
from tests.unit.test_config import pull

DS = "map.example. IN DS 9756 13 2 " + "ab" * 32


def parse(**decent):
    return parse_config(pull(hash_mode="rfc9962", hash_mask="none", **decent), "x.toml", "/etc/decent")


def test_defaults_and_valid_forms():
    p = parse().decent.pull
    assert (p.dnssec, p.trust_anchor, p.trust_anchor_file) == ("off", None, None)
    p = parse(dnssec="validate", trust_anchor=DS).decent.pull
    assert (p.dnssec, p.trust_anchor) == ("validate", DS)
    # the parent zone, a TTL, a comment, several lines, a DNSKEY
    anchor = "example. 3600 IN DS 1 13 2 " + "00" * 32 + " ; ksk\nexample. DNSKEY 257 3 13 abc="
    assert parse(dnssec="validate", trust_anchor=anchor).decent.pull.trust_anchor == anchor
    p = parse(dnssec="validate", trust_anchor_file="/etc/decent/anchor.ds").decent.pull
    assert p.trust_anchor_file == "/etc/decent/anchor.ds" and p.trust_anchor is None


@pytest.mark.parametrize("decent, path, reason", [
    ({"dnssec": "validate"}, "decent.trust_anchor", "needs exactly one of trust_anchor"),
    ({"dnssec": "validate", "trust_anchor": DS, "trust_anchor_file": "/a"}, "decent.trust_anchor",
     "needs exactly one of"),
    ({"dnssec": "validate", "trust_anchor_file": "anchor.ds"}, "decent.trust_anchor_file",
     "must be an absolute path"),
    ({"trust_anchor": DS}, "decent.trust_anchor", 'not used with decent.dnssec = "off"'),
    ({"dnssec": "yes"}, "decent.dnssec", "'yes' is not one of 'off', 'validate'"),
    ({"dnssec": "validate", "trust_anchor": "map.example. IN A 192.0.2.1"}, "decent.trust_anchor",
     "record 1: expected"),
    ({"dnssec": "validate", "trust_anchor": "other.example. IN DS 1 13 2 00"}, "decent.trust_anchor",
     "other.example. is not the zone of decent.suffix (map.example) nor above it"),
    ({"dnssec": "validate", "trust_anchor": " ; nothing\n"}, "decent.trust_anchor", "empty"),
])
def test_errors_name_the_key(decent, path, reason):
    with pytest.raises(ConfigError) as exc:
        parse(**decent)
    assert exc.value.key_path == path and reason in exc.value.reason
