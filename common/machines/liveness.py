"""The watchdog's decision: which role instance has gone silent and may be restarted.

Sans-IO, like FRR's watchfrr with the ZeroMQ guide's Paranoid Pirate backoff.
Every role instance publishes a heartbeat on the bus each second; the watchdog
feeds them to :meth:`Liveness.heartbeat` and asks :meth:`Liveness.due` which
instances deserve a restart now.  The shell then checks supervisord's view of the
program and reports back what it did:

- :meth:`restarted` after it restarted (or started) the program: one attempt; the
  next one for that instance waits ``backoff`` seconds, doubling per consecutive
  attempt up to ``backoff_max``, so a role that hangs at every start is not
  restarted in a loop.  An instance that then heartbeats for ``stable`` seconds
  has its attempt count reset.
- :meth:`started` when supervisord itself is (re)starting it: the silence clock
  restarts, no attempt is counted.
- :meth:`forget` when the program was stopped on purpose: it is tracked again only
  when it heartbeats again.

Only instances that have heartbeated are tracked: what never spoke is
supervisord's business (startsecs, startretries), not the watchdog's.

Heartbeats travel through the ``bus`` role, so when the bus itself has been silent
for ``path_gap`` seconds (a few heartbeats) the others' silence proves nothing:
then only the bus may be restarted, and once the bus is heard again every other
instance gets a fresh ``timeout`` to be heard too.
"""

from __future__ import annotations

from dataclasses import dataclass

Key = tuple[str, int]  # (role, instance)


@dataclass(frozen=True, slots=True)
class RestartDue:
    role: str
    instance: int
    pid: int | None       # the pid its last heartbeat carried
    silent_for: float     # seconds since it was last heard (or since the path/start grace)
    attempt: int          # 1 for the first consecutive attempt


@dataclass
class _Tracked:
    session: str
    pid: int | None
    last_seen: float
    clock_from: float      # silence is counted from max(last_seen, clock_from)
    healthy_since: float
    attempts: int = 0
    next_allowed: float = 0.0


class Liveness:
    def __init__(self, now: float, *, timeout: float = 10.0, backoff: float = 10.0,
                 backoff_max: float = 300.0, stable: float = 60.0, path_role: str = "bus",
                 path_gap: float = 3.0, ignore: tuple[Key, ...] = ()) -> None:
        self.timeout = timeout
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.stable = stable
        self.path_role = path_role
        self.path_gap = min(path_gap, timeout)
        self.ignore = set(ignore)
        self._tracked: dict[Key, _Tracked] = {}
        self._grace_from = now   # the watchdog's start, or the bus coming back

    def tracked(self) -> dict[Key, float]:
        """Every tracked instance and when it was last heard."""
        return {k: t.last_seen for k, t in self._tracked.items()}

    def heartbeat(self, role: str, instance: int, session: str, pid: int | None,
                  now: float) -> bool:
        """Record a heartbeat; True if the instance was not tracked before."""
        key = (role, instance)
        if key in self.ignore:
            return False
        t = self._tracked.get(key)
        if t is None:
            self._tracked[key] = _Tracked(session, pid, now, now, now)
            return True
        if role == self.path_role and self._path_down(t, now):
            # the bus is back: give everyone else time to be heard through it
            self._grace_from = now
        if session != t.session or now - t.last_seen >= self.timeout:
            t.healthy_since = now
        t.session, t.pid, t.last_seen = session, pid, now
        if t.attempts and now - t.healthy_since >= self.stable:
            t.attempts = 0
            t.next_allowed = 0.0
        return False

    def due(self, now: float) -> list[RestartDue]:
        """Instances silent for ``timeout`` whose backoff allows a restart now."""
        path = next((t for (r, _), t in self._tracked.items() if r == self.path_role), None)
        path_down = path is not None and self._path_down(path, now)
        out = []
        for (role, n), t in self._tracked.items():
            if path_down and role != self.path_role:
                continue
            since = max(t.last_seen, t.clock_from, self._grace_from)
            silent = now - since
            if silent >= self.timeout and now >= t.next_allowed:
                out.append(RestartDue(role, n, t.pid, now - t.last_seen, t.attempts + 1))
        return out

    def restarted(self, role: str, instance: int, now: float) -> float:
        """The shell restarted it; returns the earliest time of the next attempt."""
        t = self._tracked.get((role, instance))
        if t is None:
            return now
        t.attempts += 1
        t.clock_from = now
        t.next_allowed = now + min(self.backoff * 2 ** (t.attempts - 1), self.backoff_max)
        return t.next_allowed

    def started(self, role: str, instance: int, now: float) -> None:
        """Supervisord is (re)starting it: count silence from ``now``."""
        t = self._tracked.get((role, instance))
        if t is not None:
            t.clock_from = now

    def forget(self, role: str, instance: int) -> None:
        self._tracked.pop((role, instance), None)

    def _path_down(self, path: _Tracked, now: float) -> bool:
        # a few missed beats are enough to stop trusting the others' silence
        return now - path.last_seen >= self.path_gap
