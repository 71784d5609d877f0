"""The Map-Server's registration lifetimes (common/machines/mapserver.py): expiry
times in a heap, each with the keys armed for it (a reload arms a chunk of keys at one
time: one heap entry, not one per key), the next timer, the expiry of lapsed
registrations, and a restart's restore (each persisted registration lives one grace
period unless refreshed).  Methods of :class:`~common.machines.mapserver.MapServer`, on
its state (``expiry``, ``_heap``, ``_due``)."""

from __future__ import annotations

import heapq


class ExpiryHeap:
    """Registration lifetimes (a base class of
    :class:`~common.machines.mapserver.MapServer`)."""

    # -- time -----------------------------------------------------------------------
    def _arm(self, key: str, at: float) -> None:
        self.expiry[key] = at
        due = self._due.get(at)
        if due is None:
            self._due[at] = [key]
            heapq.heappush(self._heap, at)
        else:
            due.append(key)

    def _forget(self, key: str) -> None:
        self.table.delete(key)
        self.expiry.pop(key, None)
        self.raw.pop(key, None)
        self.wants_notify.pop(key, None)

    def next_timer(self) -> float | None:
        heap, expiry = self._heap, self.expiry
        while heap:     # drop what was re-armed or forgotten since, from the front
            at = heap[0]
            due = self._due[at]
            i = 0
            while i < len(due) and expiry.get(due[i]) != at:
                i += 1
            if i:
                del due[:i]
            if due:
                break
            heapq.heappop(heap)
            del self._due[at]
        nxt = heap[0] if heap else None
        for p in self.pending.values():
            nxt = p[4] if nxt is None else min(nxt, p[4])
        return nxt

    def expire(self, now: float, commit=None) -> list:
        """Delete every lapsed registration, committed first when ``commit`` is given;
        if it raises, nothing is deleted and the next call retries."""
        lapsed, seen = [], set()
        heap, expiry = self._heap, self.expiry
        while heap and heap[0] <= now:
            at = heapq.heappop(heap)
            for key in self._due.pop(at):
                if expiry.get(key) == at and key not in seen:   # a key may be armed twice
                    seen.add(key)
                    lapsed.append((at, key))
        lapsed.sort()
        changes = [("delete", key) for _, key in lapsed]
        if changes and commit is not None:
            try:
                commit(changes, {})
            except Exception:
                for at, key in lapsed:
                    self._arm(key, at)
                raise
        for ch in changes:
            self._forget(ch[1])
        return changes

    def expires_in(self, key: str, now: float) -> float | None:
        at = self.expiry.get(key)
        return None if at is None else max(0.0, at - now)

    # -- restart --------------------------------------------------------------------
    def restore(self, rows, nonces: dict, now: float) -> list:
        """Load persisted registrations: each lives one grace period unless refreshed.
        ``rows``: (key, value, raw), the value as published or its msgpack bytes as
        stored (inserted without decoding: :meth:`ShardTable.load`).  Returns the
        keys of rows that could not be read (skipped)."""
        rows = rows if isinstance(rows, list) else list(rows)
        bad = self.table.load([(key, value) for key, value, _raw in rows])
        skip = set(bad)
        at = now + self.grace
        raws, expiry = self.raw, self.expiry
        keys = []
        for key, _value, raw in rows:
            if skip and key in skip:
                continue
            raws[key] = raw
            expiry[key] = at
            keys.append(key)
        if keys:
            due = self._due.get(at)
            if due is None:
                self._due[at] = keys
                heapq.heappush(self._heap, at)
            else:
                due.extend(keys)
        self.nonces.update(nonces)
        return bad
