"""The seeds machine (common.decent.seeds) driven by hand with a fake clock."""

from __future__ import annotations

import pytest

from common.decent import seeds
from common.decent.seeds import (FAILING, NXDOMAIN, OK, PENDING, LogLine, Lookup, SeedError, SeedTable,
                          SetChanged, combine, normalize_addrs, served_indexes, sets_from_clone)


def table(modulus: int = 4, **kw) -> SeedTable:
    kw.setdefault("resolve_min", 10.0)
    kw.setdefault("resolve_max", 300.0)
    return SeedTable(modulus, "ms.example.", now=0.0, **kw)


def logs(events) -> list[LogLine]:
    return [e for e in events if isinstance(e, LogLine)]


def changes(events) -> list[SetChanged]:
    return [e for e in events if isinstance(e, SetChanged)]


def test_everything_due_at_start_and_marked_in_flight():
    t = table()
    assert t.name(3) == "3.ms.example"
    assert t.next_timer() == 0.0
    assert t.due(0.0) == [0, 1, 2, 3]
    assert t.due(0.0) == []          # in flight: never handed out twice
    assert t.next_timer() is None
    assert all(e["state"] == PENDING and e["addrs"] == [] for e in t.table().values())
    assert t.value(0, 0.0, 1000.0) is None  # pending is not published


def test_due_limit_bounds_concurrency():
    t = table(modulus=10)
    assert t.due(0.0, limit=3) == [0, 1, 2]
    assert t.due(0.0, limit=3) == [3, 4, 5]
    assert t.next_timer() == 0.0


def test_answer_sets_and_schedules_at_ttl():
    t = table()
    t.due(0.0)
    ev = t.on_answer(0, ["127.0.1.2", "fd00::1", "127.0.1.1"], 60, now=1.0)
    assert changes(ev) == [SetChanged(0, "0.ms.example", (), ("127.0.1.1", "127.0.1.2",
                                                               "fd00::1"), OK)]
    assert changes(ev)[0].added == ("127.0.1.1", "127.0.1.2", "fd00::1")
    assert [ln.level for ln in logs(ev)] == ["info"]
    assert "127.0.1.1, 127.0.1.2, fd00::1" in logs(ev)[0].message
    row = t.table()[0]
    assert row["state"] == OK and row["ttl"] == 60 and row["updated_at"] == 1.0
    assert row["next_at"] == 61.0
    assert t.value(0, now=11.0, wall=1011.0) == {
        "addrs": ["127.0.1.1", "127.0.1.2", "fd00::1"], "ttl": 60, "state": OK,
        "updated": 1001.0}


@pytest.mark.parametrize("ttl, delay", [(0, 10.0), (3, 10.0), (10, 10.0), (120, 120.0),
                                        (300, 300.0), (86400, 300.0), (None, 10.0)])
def test_ttl_clamped_to_bounds(ttl, delay):
    t = table()
    t.due(0.0)
    t.on_answer(1, ["10.0.0.1"], ttl, now=5.0)
    assert t.table()[1]["next_at"] == 5.0 + delay


def test_reanswer_unchanged_is_silent_changed_is_logged():
    t = table()
    t.due(0.0)
    t.on_answer(0, ["10.0.0.1", "10.0.0.2"], 10, now=0.0)
    assert t.due(10.0) == [0]
    assert t.on_answer(0, ["10.0.0.2", "10.0.0.1"], 10, now=10.0) == []  # no change, no line
    assert t.table()[0]["updated_at"] == 10.0 and t.table()[0]["changed_at"] == 0.0
    t.due(20.0)
    ev = t.on_answer(0, ["10.0.0.2", "10.0.0.3"], 10, now=20.0)
    ch = changes(ev)[0]
    assert (ch.old, ch.new) == (("10.0.0.1", "10.0.0.2"), ("10.0.0.2", "10.0.0.3"))
    assert ch.added == ("10.0.0.3",) and ch.removed == ("10.0.0.1",)
    assert len(logs(ev)) == 1 and "+10.0.0.3 -10.0.0.1" in logs(ev)[0].message


def test_nxdomain_empties_the_set_and_logs_once():
    t = table()
    t.due(0.0)
    t.on_answer(2, ["10.0.0.1"], 60, now=0.0)
    ev = t.on_nxdomain(2, now=60.0)
    assert changes(ev) == [SetChanged(2, "2.ms.example", ("10.0.0.1",), (), NXDOMAIN)]
    assert [ln.level for ln in logs(ev)] == ["warning"]
    assert "NXDOMAIN" in logs(ev)[0].message and "dropping 10.0.0.1" in logs(ev)[0].message
    assert t.state(2) == NXDOMAIN and t.addrs(2) == ()
    assert t.table()[2]["next_at"] == 70.0          # resolve_min
    for k in range(5):                               # still NXDOMAIN: silent
        assert t.on_nxdomain(2, now=70.0 + 10 * k) == []
    assert t.value(2, 110.0, 1110.0)["state"] == NXDOMAIN


def test_empty_answer_means_no_servers():
    t = table()
    t.due(0.0)
    ev = t.on_answer(1, [], 30, now=0.0)
    assert changes(ev) == []                         # it had none before either
    assert len(logs(ev)) == 1 and "no A/AAAA records" in logs(ev)[0].message
    assert t.state(1) == NXDOMAIN
    assert t.table()[1]["next_at"] == 30.0           # the negative TTL, clamped


def test_negative_ttl_clamped():
    t = table()
    t.due(0.0)
    t.on_nxdomain(0, now=0.0, ttl=3600)
    assert t.table()[0]["next_at"] == 300.0


def test_failure_keeps_last_good_set():
    t = table()
    t.due(0.0)
    t.on_answer(0, ["10.0.0.1", "10.0.0.2"], 60, now=0.0)
    t.due(60.0)
    ev = t.on_failure(0, "A: timeout", now=62.0)
    assert changes(ev) == []
    assert len(logs(ev)) == 1 and logs(ev)[0].level == "warning"
    assert "keeping the last good set (10.0.0.1, 10.0.0.2)" in logs(ev)[0].message
    assert t.addrs(0) == ("10.0.0.1", "10.0.0.2")
    assert t.state(0) == FAILING and t.table()[0]["reason"] == "A: timeout"
    v = t.value(0, 62.0, 1062.0)
    assert v["addrs"] == ["10.0.0.1", "10.0.0.2"] and v["state"] == FAILING
    assert v["updated"] == 1000.0                    # the data is as old as the last answer


def test_servfail_also_keeps_the_set():
    t = table()
    t.due(0.0)
    t.on_lookup(3, Lookup("answer", ("10.9.9.9",), 60), now=0.0)
    t.on_lookup(3, Lookup("failure", reason="A: SERVFAIL"), now=60.0)
    assert t.addrs(3) == ("10.9.9.9",) and t.state(3) == FAILING


def test_failure_logged_once_per_state_change_and_backoff_bounded():
    t = table(resolve_min=2.0, resolve_max=30.0)
    t.due(0.0)
    t.on_answer(0, ["10.0.0.1"], 2, now=0.0)
    now, delays, lines = 2.0, [], []
    for _ in range(8):
        assert t.due(now) == [0]
        lines += logs(t.on_failure(0, "timeout", now))
        nxt = t.table()[0]["next_at"]
        delays.append(nxt - now)
        now = nxt
    assert delays == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert len(lines) == 1                            # once, not per attempt
    assert t.table()[0]["failures"] == 8
    assert t.due(now) == [0]
    ev = t.on_answer(0, ["10.0.0.1"], 2, now)         # recovered, same set
    assert changes(ev) == []
    assert len(logs(ev)) == 1 and logs(ev)[0].level == "info"
    assert "after 8 failed attempt(s)" in logs(ev)[0].message
    assert t.state(0) == OK and t.table()[0]["failures"] == 0
    # failing again starts the backoff from the beginning, and logs again, once
    t.due(now + 2)
    assert len(logs(t.on_failure(0, "timeout", now + 2))) == 1
    assert t.table()[0]["next_at"] == now + 4.0


def test_retry_initial_separate_from_resolve_min():
    t = table(resolve_min=60.0, resolve_max=600.0, retry_initial=5.0)
    t.due(0.0)
    t.on_failure(0, "timeout", 0.0)
    assert t.table()[0]["next_at"] == 5.0
    with pytest.raises(SeedError):
        table(retry_initial=1000.0)


def test_failure_before_any_answer():
    t = table()
    t.due(0.0)
    ev = t.on_failure(1, "A: connection refused", 0.0)
    assert "no servers known" in logs(ev)[0].message
    assert t.state(1) == FAILING and t.addrs(1) == ()
    assert t.value(1, 0.0, 1000.0) == {"addrs": [], "ttl": 0, "state": FAILING,
                                       "updated": None}


def test_failing_to_nxdomain_to_ok_each_logged():
    t = table()
    t.due(0.0)
    t.on_answer(0, ["10.0.0.1"], 60, 0.0)
    assert len(logs(t.on_failure(0, "timeout", 60.0))) == 1
    ev = t.on_nxdomain(0, 70.0)
    assert len(logs(ev)) == 1 and len(changes(ev)) == 1
    ev = t.on_answer(0, ["10.0.0.5"], 60, 80.0)
    assert len(logs(ev)) == 1
    assert changes(ev) == [SetChanged(0, "0.ms.example", (), ("10.0.0.5",), OK)]


def test_timer_follows_the_earliest_entry():
    t = table(modulus=3)
    t.due(0.0)
    t.on_answer(0, ["10.0.0.1"], 100, 0.0)
    assert t.next_timer() == 100.0
    t.on_answer(1, ["10.0.0.2"], 50, 0.0)
    t.on_failure(2, "timeout", 0.0)
    assert t.next_timer() == 10.0
    assert t.due(9.9) == []
    assert t.due(10.0) == [2]
    assert t.next_timer() == 50.0
    assert t.due(1000.0) == [1, 0]                   # earliest first


def test_misuse():
    t = table()
    with pytest.raises(SeedError):
        t.on_answer(4, ["10.0.0.1"], 1, 0.0)
    with pytest.raises(SeedError):
        t.on_answer(0, ["not-an-address"], 1, 0.0)
    with pytest.raises(SeedError):
        SeedTable(0, "x", resolve_min=1, resolve_max=2)
    with pytest.raises(SeedError):
        SeedTable(4, "x", resolve_min=5, resolve_max=2)
    with pytest.raises(SeedError):
        Lookup("bogus")


def test_normalize_addrs():
    assert normalize_addrs(["FD00:0:0::1", "10.0.0.10", "10.0.0.9", "10.0.0.9", "::1"]) == \
        ("10.0.0.9", "10.0.0.10", "::1", "fd00::1")


def test_combine():
    a = Lookup("answer", ("10.0.0.2", "10.0.0.1"), 30)
    aaaa = Lookup("answer", ("fd00::2",), 20)
    nodata = Lookup("answer", (), None)
    assert combine([a, aaaa]) == Lookup("answer", ("10.0.0.1", "10.0.0.2", "fd00::2"), 20)
    assert combine([a, nodata]) == Lookup("answer", ("10.0.0.1", "10.0.0.2"), 30)
    assert combine([nodata, nodata]) == Lookup("answer", (), None)
    assert combine([Lookup("nxdomain"), Lookup("nxdomain")]).kind == "nxdomain"
    # half an answer is not an answer: the set must not shrink on a lost AAAA
    f = combine([a, Lookup("failure", reason="AAAA: timeout")])
    assert f.kind == "failure" and f.reason == "AAAA: timeout"
    assert combine([Lookup("failure", reason="A: SERVFAIL"),
                    Lookup("nxdomain")]).kind == "failure"


def test_readers_helpers():
    t = table()
    t.due(0.0)
    t.on_answer(0, ["127.0.1.1", "127.0.1.2"], 60, 0.0)
    t.on_answer(1, ["127.0.1.3", "fd00::4"], 60, 0.0)
    t.on_nxdomain(2, 0.0)
    clone = {i: t.value(i, 0.0, 0.0) for i in range(4) if t.value(i, 0.0, 0.0)}
    clone["junk"] = {"addrs": ["1.2.3.4"]}
    clone[9] = {"addrs": ["bad"]}
    sets = sets_from_clone(clone)
    assert sets == {0: ("127.0.1.1", "127.0.1.2"), 1: ("127.0.1.3", "fd00::4"), 2: ()}
    assert served_indexes(sets, ["127.0.1.2"]) == {0}
    assert served_indexes(sets, ["FD00::4", "127.0.1.1"]) == {0, 1}
    assert served_indexes(sets, ["127.0.0.1"]) == set()


def test_bus_names():
    from bus import topics
    assert topics.stream_name(seeds.STREAM) == "seeds"
    assert topics.join(seeds.QUERY_TOPIC) == seeds.QUERY_TOPIC


# -- the shell's translation of dnspython outcomes (roles.discovery.lookup) ----------

class FakeResolver:
    def __init__(self, outcome) -> None:
        self.outcome = outcome

    async def resolve(self, qname, rdtype, **kw):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def run_lookup(outcome, rdtype="A") -> Lookup:
    import asyncio

    from roles.discovery import lookup
    return asyncio.run(lookup(FakeResolver(outcome), "0.ms.example", rdtype, 0.5))


def test_lookup_translates_dnspython_outcomes():
    import dns.message
    import dns.name
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset
    import dns.rcode
    import dns.resolver

    q = dns.message.make_query("0.ms.example.", "A")
    servfail = dns.message.make_response(q)
    servfail.set_rcode(dns.rcode.SERVFAIL)
    nons = dns.resolver.NoNameservers(request=q, errors=[("127.0.53.1", False, 53, None,
                                                          servfail)])
    assert run_lookup(nons) == Lookup("failure", reason="A: SERVFAIL")
    refused = dns.resolver.NoNameservers(request=q, errors=[
        ("127.0.53.1", False, 53, ConnectionRefusedError(), None)])
    assert run_lookup(refused, "AAAA") == Lookup("failure", reason="AAAA: connection refused")
    assert run_lookup(dns.resolver.LifetimeTimeout(timeout=0.5, errors=[])) == \
        Lookup("failure", reason="A: timeout")
    assert run_lookup(dns.resolver.NXDOMAIN()) == Lookup("nxdomain")

    ok = dns.message.make_response(q)
    rrset = ok.find_rrset(ok.answer, dns.name.from_text("0.ms.example."), dns.rdataclass.IN,
                          dns.rdatatype.A, create=True)
    rrset.update(dns.rrset.from_text("0.ms.example.", 42, "IN", "A", "10.0.0.2", "10.0.0.1"))
    ans = dns.resolver.Answer(dns.name.from_text("0.ms.example."), dns.rdatatype.A,
                              dns.rdataclass.IN, ok)
    assert run_lookup(ans) == Lookup("answer", ("10.0.0.2", "10.0.0.1"), 42)
    nodata = dns.resolver.Answer(dns.name.from_text("0.ms.example."), dns.rdatatype.A,
                                 dns.rdataclass.IN, dns.message.make_response(q))
    assert run_lookup(nodata) == Lookup("answer", (), None)


# -- decent show seeds (cli.seeds_cmd), with the bus query faked -----------------------

def test_show_seeds_output(monkeypatch, capsys):
    import json
    from types import SimpleNamespace as NS

    from cli import seeds_cmd
    from cli.common import UserError

    answer = {"node": "n1", "modulus": 2, "suffix": "ms.example", "name_servers": "x#53",
              "entries": [
                  {"index": 0, "name": "0.ms.example", "addrs": ["10.0.0.1", "fd00::1"],
                   "ttl": 60, "state": "ok", "reason": "", "failures": 0, "age": 3.2,
                   "changed_age": 3.2, "next_in": 56.8},
                  {"index": 1, "name": "1.ms.example", "addrs": ["10.0.0.3"], "ttl": 60,
                   "state": "failing", "reason": "A: timeout", "failures": 4, "age": 99.0,
                   "changed_age": 20.0, "next_in": 8.0}]}
    asked = []
    monkeypatch.setattr(seeds_cmd, "query", lambda cfg, topic, body, expect: asked.append(
        topic) or [answer])
    cfg = NS(decent=NS(mode="pull"), roles=NS(discovery=True), node=NS(name="n1"))
    assert seeds_cmd.show_seeds(cfg, True) == 0
    assert asked == [seeds.QUERY_TOPIC]
    rows = json.loads(capsys.readouterr().out)
    assert rows[1] == {"index": 1, "name": "1.ms.example", "addrs": ["10.0.0.3"], "age": 99.0,
                       "ttl": 60, "state": "failing", "reason": "A: timeout", "failures": 4}
    assert seeds_cmd.show_seeds(cfg, False) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["INDEX", "NAME", "STATE", "AGE", "TTL", "ADDRESSES"]
    assert out[2].split() == ["0", "0.ms.example", "ok", "3s", "60", "10.0.0.1,", "fd00::1"]
    assert "10.0.0.3  (A: timeout; 4 attempt(s))" in out[3]
    with pytest.raises(UserError):
        seeds_cmd.show_seeds(NS(decent=NS(mode="none"), roles=NS(discovery=False),
                                node=NS(name="n1")), False)


# ---------------------------------------------------------------------------
# per record type: a type that keeps failing while the other answers (issue 12)

def counted(events) -> list[str]:
    return [e.counter for e in events if isinstance(e, seeds.Counted)]


def round_(t, index, a, aaaa, now):
    t.due(now)
    return t.on_lookups(index, {"A": a, "AAAA": aaaa}, now)


A_OK = Lookup("answer", ("10.0.0.1", "10.0.0.2"), 60)
AAAA_OK = Lookup("answer", ("fd00::1",), 60)
TIMEOUT = Lookup("failure", reason="AAAA: timeout")


def test_half_answer_is_a_failure_until_the_bound_then_the_answering_type_is_used():
    t = table(type_failure_rounds=3)
    ev = round_(t, 0, A_OK, AAAA_OK, 0.0)
    assert t.addrs(0) == ("10.0.0.1", "10.0.0.2", "fd00::1")
    # A changes, AAAA times out: rounds 1 and 2 keep the last good set (transient)
    newer_a = Lookup("answer", ("10.0.0.1", "10.0.0.3"), 60)
    for k, now in enumerate((60.0, 80.0), start=1):
        ev = round_(t, 0, newer_a, TIMEOUT, now)
        assert changes(ev) == [] and counted(ev) == []
        assert t.addrs(0) == ("10.0.0.1", "10.0.0.2", "fd00::1") and t.state(0) == FAILING
    # round 3: the A records are accepted; the AAAA ones (last good) are kept
    ev = round_(t, 0, newer_a, TIMEOUT, 120.0)
    assert t.addrs(0) == ("10.0.0.1", "10.0.0.3", "fd00::1") and t.state(0) == OK
    assert counted(ev) == ["resolve.type-accepted"]
    warn = [ln for ln in logs(ev) if ln.level == "warning"]
    assert len(warn) == 1 and "AAAA failed 3 rounds in a row" in warn[0].message
    assert "keeping fd00::1" in warn[0].message
    assert changes(ev)[0].new == ("10.0.0.1", "10.0.0.3", "fd00::1")
    # from then on each round is accepted at once, counted, logged no more
    ev = round_(t, 0, Lookup("answer", ("10.0.0.4",), 60), TIMEOUT, 200.0)
    assert t.addrs(0) == ("10.0.0.4", "fd00::1") and counted(ev) == ["resolve.type-accepted"]
    assert [ln for ln in logs(ev) if ln.level == "warning"] == []
    # AAAA answers again: back to the plain rule, logged once
    ev = round_(t, 0, Lookup("answer", ("10.0.0.4",), 60), Lookup("answer", (), 60), 300.0)
    assert t.addrs(0) == ("10.0.0.4",) and counted(ev) == []
    assert any("all answer again" in ln.message for ln in logs(ev))
    ev = round_(t, 0, A_OK, TIMEOUT, 400.0)          # and the count starts over
    assert t.state(0) == FAILING and t.addrs(0) == ("10.0.0.4",)


def test_a_new_index_gets_servers_although_aaaa_never_answers():
    t = table(type_failure_rounds=2)
    round_(t, 1, A_OK, TIMEOUT, 0.0)
    assert t.addrs(1) == () and t.state(1) == FAILING
    ev = round_(t, 1, A_OK, TIMEOUT, 10.0)
    assert t.addrs(1) == ("10.0.0.1", "10.0.0.2") and t.state(1) == OK
    assert changes(ev)[0].new == ("10.0.0.1", "10.0.0.2")


def test_both_failing_or_nxdomain_is_not_a_half_answer():
    t = table(type_failure_rounds=1)
    round_(t, 0, A_OK, AAAA_OK, 0.0)
    ev = round_(t, 0, Lookup("failure", reason="A: timeout"), TIMEOUT, 60.0)
    assert t.state(0) == FAILING and counted(ev) == []
    ev = round_(t, 0, Lookup("nxdomain"), TIMEOUT, 120.0)
    assert t.state(0) == FAILING and t.addrs(0) == ("10.0.0.1", "10.0.0.2", "fd00::1")
    ev = round_(t, 0, Lookup("nxdomain"), Lookup("nxdomain"), 200.0)
    assert t.state(0) == NXDOMAIN and t.addrs(0) == ()


def test_records_per_name_capped_in_normalized_order():
    t = table(max_records=3)
    many = [f"10.0.0.{i}" for i in range(200, 0, -1)] + ["fd00::9"]
    ev = round_(t, 2, Lookup("answer", tuple(many), 60), Lookup("answer", ("fd00::9",), 60), 0.0)
    assert t.addrs(2) == ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    assert counted(ev) == ["resolve.truncated"]
    assert sum("more than max_records_per_name (3)" in ln.message for ln in logs(ev)) == 1
    ev = round_(t, 2, Lookup("answer", tuple(many), 60), Lookup("answer", (), 60), 60.0)
    assert counted(ev) == ["resolve.truncated"] and not any("max_records" in ln.message for ln in logs(ev))
    ev = round_(t, 2, Lookup("answer", ("10.0.0.7",), 60), Lookup("answer", (), 60), 120.0)
    assert counted(ev) == [] and t.addrs(2) == ("10.0.0.7",)


def test_type_rounds_and_cap_validated():
    for kw in ({"type_failure_rounds": 0}, {"max_records": 0}, {"max_records": True}):
        with pytest.raises(SeedError):
            table(**kw)
