"""Issue 11 item 1: a real node answers the common ECM Map-Request through the fast
path (its ``fastpath.answered`` counter says so, one per answer) and keeps answering
correctly through registration changes: new locators, a more-specific under the
cached prefix, a withdrawal (negative again)."""

from __future__ import annotations

import time

import pytest

from common.wire.messages import decode_message
from tests.integration.harness import SECRET, Node, poll, udp_exchange
from tests.unit.msfixtures import ecm_request, register

pytestmark = pytest.mark.integration

RLOC = "127.0.24.1"
MR = (RLOC, 4342)
CLIENT = "127.0.24.50"
XTR = b"\x24" * 16

BODY = f"""
[roles]
map_resolver = {{ workers = 1 }}
map_server = {{ shards = 1 }}

[[site]]
name = "lab"
[[site.key]]
id = 0
alg = "hmac-sha-256-128"
secret = "{SECRET}"
[[site.prefix]]
eid = "10.1.0.0/16"
accept_more_specifics = true
"""


@pytest.fixture(scope="module")
def node():
    n = Node("fastpath", RLOC, BODY)
    try:
        n.up()
        poll(lambda: n.lig("10.1.2.3", mr=RLOC), 30, 0.3, "first answer")
        yield n
    finally:
        n.down()


def fast_answers(n) -> int:
    return n.counters().get("map_resolver:0", {}).get("fastpath.answered", 0)


def ask(eid: str):
    """(records as (prefix text, locator addresses)) of the Map-Reply for ``eid``."""
    raw = udp_exchange(MR, lambda port: ecm_request(eid, itr=CLIENT, sport=port, nonce=time.time_ns()),
                       src=CLIENT, timeout=2.0)
    assert raw is not None, f"no answer for {eid}"
    reply = decode_message(raw)
    return [(f"{r.eid}/{r.mask_len}", sorted(str(l.address) for l in r.locators)) for r in reply.records]


def reg(specs, rloc: str, nonce: int, ttl: int = 1440) -> None:
    data = register(specs, nonce=nonce, key=SECRET.encode(), xtr=XTR, proxy=True, rlocs=(rloc,), ttl=ttl)
    assert udp_exchange(MR, data, src=RLOC, timeout=2.0) is not None     # Map-Notify: accepted


def until(eid: str, want, what: str):
    return poll(lambda: (lambda r: r if r == want else None)(ask(eid)), 10, 0.1, what)


def test_answers_come_from_the_fast_path_and_follow_registration_changes(node):
    base = time.time_ns()
    assert ask("10.1.2.3")[0][1] == []                                   # negative, nothing registered
    reg(["[0]10.1.2.0/24"], "192.0.2.1", base)
    until("10.1.2.3", [("10.1.2.0/24", ["192.0.2.1"])], "registration answered")
    before = fast_answers(node)
    for _ in range(5):
        assert ask("10.1.2.3") == [("10.1.2.0/24", ["192.0.2.1"])]
    assert fast_answers(node) - before == 5                              # every one on the fast path

    reg(["[0]10.1.2.0/24"], "192.0.2.7", base + 1)                       # new locators
    until("10.1.2.3", [("10.1.2.0/24", ["192.0.2.7"])], "changed locators answered")
    reg(["[0]10.1.2.0/24", "[0]10.1.2.128/25"], "192.0.2.7", base + 2)   # a more-specific inside
    until("10.1.2.3", [("10.1.2.0/24", ["192.0.2.7"]), ("10.1.2.128/25", ["192.0.2.7"])],
          "more-specific listed")
    reg(["[0]10.1.2.0/24", "[0]10.1.2.128/25"], "192.0.2.7", base + 3, ttl=0)   # withdrawn
    poll(lambda: ask("10.1.2.3")[0][1] == [] or None, 10, 0.1, "negative again")
    before = fast_answers(node)
    answers = [ask("10.1.2.3") for _ in range(3)]
    assert all(a[0][1] == [] for a in answers)
    assert fast_answers(node) - before == 3
