"""LISP-Decent pull mode: the index -> Map-Server set table (DESIGN.md section 6).

Sans-IO, aioquic-style: the ``discovery`` role (:mod:`roles.discovery`) resolves
the names this machine says are due and feeds the outcomes back; the machine
keeps the table, decides when each name is asked again and says what changed.

Theory of operation
-------------------
Index ``i`` (0 .. modulus-1) has the DNS name ``<i>.<suffix>``; its A and AAAA
records together are the set of Map-Servers/Map-Resolvers serving ``i``.  Each
index is in one of four states:

==========  ===============================================  ======================
state       meaning                                          asked again after
==========  ===============================================  ======================
pending     never resolved yet (the set is empty)             (due at once)
ok          the last lookup answered; the set is its records  TTL in [min, max]
nxdomain    NXDOMAIN or no A/AAAA record: no servers; the     resolve_min (or the
            set is empty                                      negative TTL, clamped)
failing     timeout, SERVFAIL, refused...: the last good set  backoff: retry_initial
            is kept unchanged                                 doubling, <= resolve_max
==========  ===============================================  ======================

:meth:`SeedTable.due` hands out the names to resolve now (and marks them in
flight, so a slow lookup is never started twice); the shell reports each outcome
with :meth:`~SeedTable.on_answer`, :meth:`~SeedTable.on_nxdomain` or
:meth:`~SeedTable.on_failure` (or :meth:`~SeedTable.on_lookup` with the A and
AAAA outcomes merged by :func:`combine`), each returning events:
:class:`SetChanged` when an index's address set changed and :class:`LogLine` when
its state changed (ok -> failing, failing -> ok, -> nxdomain, ...), never once per
attempt: a name that keeps timing out logs one line when it starts failing and one
when it recovers.  :meth:`~SeedTable.next_timer` is when to look again.

Per record type (:meth:`~SeedTable.on_lookups`, the A and AAAA outcomes apart): a
name whose one type answers while the other fails is a transient failure at
first (the set is kept: a half answer must not shrink it), but some resolvers drop
AAAA queries for good, and then the index would never get servers or would freeze
on its old set.  After ``type_failure_rounds`` such rounds in a row the answering
type is accepted: the set becomes its fresh records plus the failing type's last
good ones (logged once, and a :class:`Counted` event each round).  Every answer is
capped at ``max_records`` addresses (the first in the normalized order, so every
node keeps the same ones), so a huge answer cannot make an ETR register with
thousands of addresses.

The table is published as the Clone stream :data:`STREAM` (key: the index, value:
:meth:`SeedTable.value`); pending indexes are not published, so a missing key
means "not resolved yet".  Readers turn a replica into sets with
:func:`sets_from_clone` and find the indexes a node serves with
:func:`served_indexes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Iterable, Mapping

from common.wire.eidtext import format_address

# bus names (the shell publishes them; readers import them from here)
STREAM = "seeds"                     # Clone stream: index -> value (see SeedTable.value)
CHANGED = "seeds.changed"            # event type on topic discovery.sets
QUERY_TOPIC = "discovery.query"      # body {"reply": topic}
ANSWERED = "discovery.answered"      # the reply's type

PENDING, OK, NXDOMAIN, FAILING = "pending", "ok", "nxdomain", "failing"
STATES = (PENDING, OK, NXDOMAIN, FAILING)


class SeedError(ValueError):
    """Misuse of the machine (an index out of range, a bad address)."""


# ---------------------------------------------------------------------------
# events


@dataclass(frozen=True, slots=True)
class SetChanged:
    """Index ``index``'s address set went from ``old`` to ``new`` (sorted text)."""

    index: int
    name: str
    old: tuple[str, ...]
    new: tuple[str, ...]
    state: str

    @property
    def added(self) -> tuple[str, ...]:
        return tuple(a for a in self.new if a not in self.old)

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(a for a in self.old if a not in self.new)


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line for the operator: ``level`` is ``"info"`` or ``"warning"``."""

    level: str
    index: int
    message: str


@dataclass(frozen=True, slots=True)
class Counted:
    """Something the shell counts under ``counter`` (not a state change)."""

    index: int
    counter: str


Event = SetChanged | LogLine | Counted


# ---------------------------------------------------------------------------
# addresses and lookups


def _addr_key(text: str) -> tuple[int, int]:
    a = ip_address(text)
    return (a.version, int(a))


def normalize_addrs(addrs: Iterable[Any]) -> tuple[str, ...]:
    """Canonical text (IPv4 dotted quad, IPv6 RFC 5952), deduplicated, IPv4 first,
    numerically sorted.  Raises :class:`SeedError` for anything not an IP address."""
    out: set[str] = set()
    for a in addrs:
        try:
            addr = a if isinstance(a, (IPv4Address, IPv6Address)) else ip_address(str(a))
        except ValueError:
            raise SeedError(f"not an IP address: {a!r}") from None
        out.add(format_address(addr))
    return tuple(sorted(out, key=_addr_key))


@dataclass(frozen=True, slots=True)
class Lookup:
    """The outcome of one DNS query (one record type) or of several merged.

    ``kind``: ``"answer"`` (``addrs`` may be empty: NOERROR without records of the
    type), ``"nxdomain"`` or ``"failure"`` (``reason``: timeout, SERVFAIL, ...).
    ``ttl``: the records' TTL (answer) or the negative TTL, when known.
    """

    kind: str
    addrs: tuple[str, ...] = ()
    ttl: int | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("answer", "nxdomain", "failure"):
            raise SeedError(f"unknown lookup kind {self.kind!r}")


def combine(lookups: Iterable[Lookup]) -> Lookup:
    """Merge the A and AAAA outcomes of one name.

    Any failure makes the whole a failure (a half-answered name must not shrink the
    set: the ETR would withdraw from the members it did not hear about); otherwise
    NXDOMAIN wins (it is about the name, not a type); otherwise the union of the
    addresses with the smallest TTL among the types that had records.
    """
    items = list(lookups)
    if not items:
        raise SeedError("nothing to combine")
    failures = [x for x in items if x.kind == "failure"]
    if failures:
        return Lookup("failure", reason="; ".join(x.reason or "failure" for x in failures))
    nx = [x for x in items if x.kind == "nxdomain"]
    if nx:
        ttls = [x.ttl for x in nx if x.ttl is not None]
        return Lookup("nxdomain", ttl=min(ttls) if ttls else None)
    addrs = normalize_addrs(a for x in items for a in x.addrs)
    ttls = [x.ttl for x in items if x.addrs and x.ttl is not None]
    if not ttls:  # NODATA everywhere: its negative TTL, when given
        ttls = [x.ttl for x in items if x.ttl is not None]
    return Lookup("answer", addrs, min(ttls) if ttls else None)


# ---------------------------------------------------------------------------
# the machine


@dataclass(slots=True)
class _Entry:
    addrs: tuple[str, ...] = ()
    ttl: int = 0                      # of the last good answer (0: none yet)
    state: str = PENDING
    updated_at: float | None = None   # last answer or NXDOMAIN (data confirmed)
    changed_at: float | None = None   # last change of the set or the state
    next_at: float = 0.0
    in_flight: bool = False
    failures: int = 0                 # consecutive failed lookups
    failing_since: float | None = None
    reason: str = ""                  # last failure, or why the set is empty
    half_rounds: int = 0              # consecutive rounds with one type failing, one answering
    half_accepted: bool = False       # the answering type alone is in use (logged once)
    truncated: bool = False           # the last answer had more than max_records (logged once)


_TYPE_VERSION = {"A": 4, "AAAA": 6}


def _clamp(v: float, lo: float, hi: float) -> float:
    return min(max(v, lo), hi)


def _fmt_set(addrs: tuple[str, ...]) -> str:
    return ", ".join(addrs) if addrs else "none"


class SeedTable:
    """The index -> address-set table for ``modulus`` names ``<i>.<suffix>``.

    ``resolve_min``/``resolve_max`` bound the re-resolve interval (seconds);
    ``retry_initial`` is the first retry after a failure (default ``resolve_min``),
    doubling up to ``resolve_max``.  Every index is due at ``now``.
    """

    def __init__(self, modulus: int, suffix: str, *, resolve_min: float, resolve_max: float,
                 retry_initial: float | None = None, now: float = 0.0,
                 type_failure_rounds: int = 3, max_records: int = 32) -> None:
        if not isinstance(modulus, int) or isinstance(modulus, bool) or modulus < 1:
            raise SeedError(f"modulus must be an integer of at least 1, not {modulus!r}")
        if not 0 < resolve_min <= resolve_max:
            raise SeedError(f"need 0 < resolve_min ({resolve_min}) <= resolve_max "
                            f"({resolve_max})")
        self.modulus = modulus
        self.suffix = suffix.rstrip(".")
        self.resolve_min = float(resolve_min)
        self.resolve_max = float(resolve_max)
        self.retry_initial = float(resolve_min if retry_initial is None else retry_initial)
        if not 0 < self.retry_initial <= self.resolve_max:
            raise SeedError(f"retry_initial must be in (0, resolve_max], not {retry_initial}")
        for what, v in (("type_failure_rounds", type_failure_rounds), ("max_records", max_records)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SeedError(f"{what} must be an integer of at least 1, not {v!r}")
        self.type_failure_rounds = type_failure_rounds
        self.max_records = max_records
        self._e = [_Entry(next_at=now) for _ in range(modulus)]

    # -- names and timers ------------------------------------------------------

    def name(self, index: int) -> str:
        """``<index>.<suffix>`` (no trailing dot)."""
        return f"{index}.{self.suffix}"

    def _entry(self, index: int) -> _Entry:
        if not isinstance(index, int) or not 0 <= index < self.modulus:
            raise SeedError(f"index {index!r} out of range 0..{self.modulus - 1}")
        return self._e[index]

    def due(self, now: float, limit: int | None = None) -> list[int]:
        """Indexes to resolve now, earliest first, at most ``limit``; each is marked in
        flight until its outcome is reported."""
        ready = sorted((e.next_at, i) for i, e in enumerate(self._e)
                       if not e.in_flight and e.next_at <= now)
        if limit is not None:
            ready = ready[:max(0, limit)]
        for _, i in ready:
            self._e[i].in_flight = True
        return [i for _, i in ready]

    def next_timer(self) -> float | None:
        """When the next index falls due (None while every index is in flight)."""
        times = [e.next_at for e in self._e if not e.in_flight]
        return min(times) if times else None

    # -- outcomes --------------------------------------------------------------

    def on_lookups(self, index: int, outcomes: Mapping[str, Lookup], now: float) -> list[Event]:
        """One round's outcomes per record type (``{"A": ..., "AAAA": ...}``).

        Exactly the half case (some types answered, the others failed) counts
        towards ``type_failure_rounds``; below it the round is a failure (the set
        is kept), from it on the answering types are accepted together with the
        failing types' last good addresses.  Every other round is
        :meth:`on_lookup` of the :func:`combine` d outcome.
        """
        e = self._entry(index)
        failed = {t: x for t, x in outcomes.items() if x.kind == "failure"}
        answered = {t: x for t, x in outcomes.items() if x.kind == "answer"}
        name = self.name(index)
        if not failed or not answered or len(failed) + len(answered) != len(outcomes):
            events: list[Event] = []
            if e.half_accepted and not failed:
                events.append(LogLine("info", index, f"{name}: {'/'.join(sorted(outcomes))} "
                                                     f"all answer again"))
            e.half_rounds, e.half_accepted = 0, False
            return events + self.on_lookup(index, combine(outcomes.values()), now)
        reason = "; ".join(x.reason or f"{t}: failure" for t, x in sorted(failed.items()))
        e.half_rounds += 1
        if e.half_rounds < self.type_failure_rounds:
            return self.on_failure(index, reason, now)
        versions = {_TYPE_VERSION.get(t) for t in failed}
        kept = tuple(a for a in e.addrs if ip_address(a).version in versions)
        fresh = tuple(a for x in answered.values() for a in x.addrs)
        ttls = [x.ttl for x in answered.values() if x.ttl is not None]
        events = [Counted(index, "resolve.type-accepted")]
        if not e.half_accepted:
            e.half_accepted = True
            ok_types = "/".join(sorted(answered))
            events.append(LogLine("warning", index, (
                f"{name}: {'/'.join(sorted(failed))} failed {e.half_rounds} rounds in a row "
                f"({reason}) while {ok_types} answered; using the {ok_types} records"
                f"{' and keeping ' + _fmt_set(kept) if kept else ''}")))
        return events + self.on_answer(index, fresh + kept, min(ttls) if ttls else None, now)

    def on_lookup(self, index: int, lookup: Lookup, now: float) -> list[Event]:
        """Dispatch a (combined) :class:`Lookup` to the handler of its kind."""
        if lookup.kind == "failure":
            return self.on_failure(index, lookup.reason or "failure", now)
        if lookup.kind == "nxdomain":
            return self.on_nxdomain(index, now, ttl=lookup.ttl)
        return self.on_answer(index, lookup.addrs, lookup.ttl, now)

    def on_answer(self, index: int, addrs: Iterable[Any], ttl: int | None,
                  now: float) -> list[Event]:
        """The name answered with ``addrs`` (A and AAAA together) and ``ttl``.

        No address at all means the index has no servers (like NXDOMAIN).
        """
        e = self._entry(index)
        new = normalize_addrs(addrs)
        if not new:
            return self._no_servers(index, e, "no A/AAAA records", ttl, now)
        ttl_i = max(0, int(ttl)) if ttl is not None else int(self.resolve_min)
        old_state, old = e.state, e.addrs
        events: list[Event] = []
        name = self.name(index)
        if len(new) > self.max_records:
            events.append(Counted(index, "resolve.truncated"))
            if not e.truncated:
                events.append(LogLine("warning", index, (
                    f"{name}: {len(new)} addresses, more than max_records_per_name "
                    f"({self.max_records}); using the first {self.max_records}")))
            e.truncated = True
            new = new[:self.max_records]
        else:
            e.truncated = False
        if old_state == FAILING:
            events.append(LogLine("info", index, (
                f"{name}: resolving again after {e.failures} failed attempt(s) over "
                f"{now - (e.failing_since or now):.0f} s; servers: {_fmt_set(new)}")))
        elif old_state != OK:
            events.append(LogLine("info", index, f"{name}: servers: {_fmt_set(new)} "
                                                 f"(ttl {ttl_i} s)"))
        elif new != old:
            added = [a for a in new if a not in old]
            removed = [a for a in old if a not in new]
            diff = " ".join([f"+{a}" for a in added] + [f"-{a}" for a in removed])
            events.append(LogLine("info", index, f"{name}: servers changed ({diff}); "
                                                 f"now {_fmt_set(new)}"))
        self._settle(e, OK, new, now)
        e.ttl = ttl_i
        e.next_at = now + _clamp(ttl_i, self.resolve_min, self.resolve_max)
        if new != old:
            events.append(SetChanged(index, name, old, new, OK))
        return events

    def on_nxdomain(self, index: int, now: float, ttl: int | None = None) -> list[Event]:
        """The name does not exist: the index has no servers.  Asked again after
        ``resolve_min`` (or the negative ``ttl``, clamped to the bounds)."""
        return self._no_servers(index, self._entry(index), "NXDOMAIN", ttl, now)

    def _no_servers(self, index: int, e: _Entry, why: str, ttl: int | None,
                    now: float) -> list[Event]:
        old_state, old = e.state, e.addrs
        events: list[Event] = []
        name = self.name(index)
        if old_state != NXDOMAIN:
            dropped = f"; dropping {_fmt_set(old)}" if old else ""
            events.append(LogLine("warning", index,
                                  f"{name}: {why}: index {index} has no servers{dropped}"))
        self._settle(e, NXDOMAIN, (), now)
        e.ttl = 0
        e.reason = why
        delay = self.resolve_min if ttl is None else _clamp(ttl, self.resolve_min,
                                                            self.resolve_max)
        e.next_at = now + delay
        if old:
            events.append(SetChanged(index, name, old, (), NXDOMAIN))
        return events

    def on_failure(self, index: int, reason: str, now: float) -> list[Event]:
        """A timeout, SERVFAIL or any other failure: the last good set stays; retried
        after ``retry_initial`` doubling per consecutive failure, at most
        ``resolve_max``.  Logged only when the index starts failing."""
        e = self._entry(index)
        events: list[Event] = []
        e.in_flight = False
        e.failures += 1
        e.reason = reason
        delay = min(self.resolve_max, self.retry_initial * 2 ** min(e.failures - 1, 62))
        e.next_at = now + delay
        if e.state != FAILING:
            kept = (f"keeping the last good set ({_fmt_set(e.addrs)})" if e.addrs
                    else "no servers known")
            events.append(LogLine("warning", index, (
                f"{self.name(index)}: resolution failing ({reason}); {kept}; retrying "
                f"with backoff from {self.retry_initial:g} s up to {self.resolve_max:g} s")))
            e.state = FAILING
            e.failing_since = now
            e.changed_at = now
        return events

    def _settle(self, e: _Entry, state: str, addrs: tuple[str, ...], now: float) -> None:
        if state != e.state or addrs != e.addrs:
            e.changed_at = now
        e.state, e.addrs = state, addrs
        e.in_flight = False
        e.failures = 0
        e.failing_since = None
        e.reason = ""
        e.updated_at = now

    # -- views -------------------------------------------------------------------

    def addrs(self, index: int) -> tuple[str, ...]:
        """Index ``index``'s current set (the last good one while failing)."""
        return self._entry(index).addrs

    def state(self, index: int) -> str:
        return self._entry(index).state

    def sets(self) -> dict[int, tuple[str, ...]]:
        """Every index's current set."""
        return {i: e.addrs for i, e in enumerate(self._e)}

    def table(self) -> dict[int, dict[str, Any]]:
        """index -> ``{addrs, ttl, state, updated_at, changed_at, next_at, failures,
        reason, name}`` (times on the caller's clock; ``updated_at`` None until the
        first answer or NXDOMAIN)."""
        return {i: {"name": self.name(i), "addrs": list(e.addrs), "ttl": e.ttl,
                    "state": e.state, "updated_at": e.updated_at, "changed_at": e.changed_at,
                    "next_at": e.next_at, "failures": e.failures, "reason": e.reason}
                for i, e in enumerate(self._e)}

    def value(self, index: int, now: float, wall: float) -> dict[str, Any] | None:
        """The Clone stream value of ``index``: ``{"addrs", "ttl", "state", "updated"}``,
        ``updated`` the wall-clock time the data was last confirmed (``wall`` is the
        wall clock at ``now``); None while pending (not published)."""
        e = self._entry(index)
        if e.state == PENDING:
            return None
        updated = None if e.updated_at is None else round(wall - (now - e.updated_at), 3)
        return {"addrs": list(e.addrs), "ttl": e.ttl, "state": e.state, "updated": updated}


# ---------------------------------------------------------------------------
# readers' helpers


def sets_from_clone(data: Mapping[Any, Any]) -> dict[int, tuple[str, ...]]:
    """A ``seeds`` Clone replica (index -> value) as index -> normalized address set.

    Values that do not look like :meth:`SeedTable.value` are skipped."""
    out: dict[int, tuple[str, ...]] = {}
    for k, v in data.items():
        if isinstance(k, bool) or not isinstance(k, int) or not isinstance(v, dict):
            continue
        try:
            out[k] = normalize_addrs(v.get("addrs") or ())
        except SeedError:
            continue
    return out


def served_indexes(sets: Mapping[int, Iterable[str]], rlocs: Iterable[Any]) -> set[int]:
    """The indexes whose set contains one of ``rlocs`` (DESIGN.md section 6: what a
    node serves)."""
    mine = set(normalize_addrs(rlocs))
    return {i for i, addrs in sets.items() if mine & set(normalize_addrs(addrs))}


__all__ = ["ANSWERED", "CHANGED", "Counted", "FAILING", "LogLine", "Lookup", "NXDOMAIN", "OK", "PENDING",
           "QUERY_TOPIC", "STATES", "STREAM", "SeedError", "SeedTable", "SetChanged", "combine",
           "normalize_addrs", "served_indexes", "sets_from_clone"]
