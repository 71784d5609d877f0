"""The watchdog's decision, with a fake clock."""

from __future__ import annotations

from common.machines.liveness import Liveness, RestartDue


def beat(lv: Liveness, t0: float, t1: float, *keys, session="s", step=1.0):
    t = t0
    while t <= t1:
        for role, n in keys:
            lv.heartbeat(role, n, session, 100 + n, t)
        t += step


def test_silent_instance_is_due_after_timeout_only():
    lv = Liveness(0.0, timeout=10.0)
    beat(lv, 0, 5, ("bus", 0), ("etr", 0))
    beat(lv, 6, 30, ("bus", 0))              # etr hangs after t=5
    assert lv.due(14.9) == []
    assert lv.due(15.0) == [RestartDue("etr", 0, 100, 10.0, 1)]


def test_never_heard_is_not_tracked_and_ignored_self():
    lv = Liveness(0.0, timeout=10.0, ignore=(("watchdog", 0),))
    beat(lv, 0, 2, ("watchdog", 0))
    assert lv.tracked() == {}
    assert lv.due(100.0) == []


def test_backoff_doubles_and_resets_after_stable_period():
    lv = Liveness(0.0, timeout=10.0, backoff=10.0, backoff_max=40.0, stable=60.0)
    lv.heartbeat("bus", 0, "b", 1, 0.0)
    lv.heartbeat("etr", 0, "s1", 2, 0.0)
    restarts = []
    t = 0.0
    while t < 200.0:
        lv.heartbeat("bus", 0, "b", 1, t)
        for d in lv.due(t):
            restarts.append((t, d.attempt))
            lv.restarted(d.role, d.instance, t)
        t += 0.5
    times = [r[0] for r in restarts]
    # first at 10, then gaps 10, 20, 40, 40 (capped)
    assert times[:5] == [10.0, 20.0, 40.0, 80.0, 120.0]
    assert [a for _, a in restarts[:5]] == [1, 2, 3, 4, 5]
    # now it comes back and stays healthy for the stable period: attempts reset
    for t in range(200, 300):
        lv.heartbeat("bus", 0, "b", 1, float(t))
        if t < 270:
            lv.heartbeat("etr", 0, "s2", 3, float(t))
    assert lv.due(278.9) == []
    assert lv.due(279.0)[0].attempt == 1   # last heard at 269


def test_silent_bus_suppresses_others_and_grants_grace_when_back():
    lv = Liveness(0.0, timeout=10.0, path_gap=3.0)
    beat(lv, 0, 5, ("bus", 0), ("etr", 0), ("map_server", 0))
    # the bus hangs at t=5: nobody is heard
    assert [d.role for d in lv.due(15.0)] == ["bus"]
    lv.restarted("bus", 0, 15.0)
    # bus back at 17 with a new session; the others are heard again only at 17.5
    lv.heartbeat("bus", 0, "new", 1, 17.0)
    assert lv.due(17.2) == []               # etr silent for 12 s, but grace since 17
    lv.heartbeat("etr", 0, "s", 1, 17.5)
    beat(lv, 18, 27, ("bus", 0))
    assert [d.role for d in lv.due(27.0)] == ["map_server"]


def test_started_and_forget():
    lv = Liveness(0.0, timeout=10.0)
    beat(lv, 0, 1, ("etr", 0))
    assert lv.due(11.0) and lv.due(11.0)[0].role == "etr"
    lv.started("etr", 0, 11.0)               # supervisord is starting it
    assert lv.due(20.9) == []
    assert lv.due(21.0)[0].attempt == 1      # not counted as an attempt
    lv.forget("etr", 0)
    assert lv.due(100.0) == []
    lv.heartbeat("etr", 0, "again", 1, 101.0)
    assert lv.tracked() == {("etr", 0): 101.0}
