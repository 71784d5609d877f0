"""Issue 11 item 1: a real node answers the common ECM Map-Request through the fast
path (its ``fastpath.answered`` counter says so, one per answer) and keeps answering
correctly through registration changes: new locators, a more-specific under the
cached prefix, a withdrawal (negative again).  Twice: with the C receive loop
(``[map_resolver] fast_path_c``, the default: ``fastpath.c`` counts its answers;
under CI=true the extension must be built) and with the Python fast path alone."""

from __future__ import annotations

import time

import pytest

from common.wire.messages import decode_message
from roles import fastloop
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


@pytest.fixture(scope="module", params=["c", "python"])
def node(request):
    global RLOC, MR
    if request.param == "c" and not fastloop.available():
        assert not fastloop.required(), f"roles._fastloop was not built: {fastloop.WHY_NOT}"
        pytest.skip(f"roles._fastloop not built here: {fastloop.WHY_NOT}")
    RLOC = "127.0.24.1" if request.param == "c" else "127.0.24.2"
    MR = (RLOC, 4342)
    n = Node(f"fastpath{request.param}", RLOC,
             BODY + ("" if request.param == "c" else "\n[map_resolver]\nfast_path_c = false\n"))
    n.c_loop = request.param == "c"
    try:
        n.up()
        poll(lambda: n.lig("10.1.2.3", mr=RLOC), 30, 0.3, "first answer")
        yield n
    finally:
        n.down()


def fast_answers(n) -> tuple[int, int]:
    """(fast-path answers, of which the C loop's)."""
    c = n.counters().get("map_resolver:0", {})
    return c.get("fastpath.answered", 0), c.get("fastpath.c", 0)


def answered_since(n, before: tuple[int, int]) -> int:
    """Fast-path answers since ``before``: with the C loop, each one by the C (the
    cache was warm), without it none."""
    now = fast_answers(n)
    assert now[1] - before[1] == (now[0] - before[0] if n.c_loop else 0)
    return now[0] - before[0]


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
    assert answered_since(node, before) == 5                              # every one on the fast path

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
    assert answered_since(node, before) == 3
