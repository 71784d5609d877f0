"""Pull mode inside a role: the ``seeds`` Clone stream kept as a PullView.

The ``discovery`` role writes the index -> address-set table as the Clone stream
``seeds``; roles replicate it here and get ``on_change(old_sets, new_sets)`` when a
set changes.  ``PullState.in_sync`` says whether the replica is complete.
"""

from __future__ import annotations

from bus.clone import CloneReader
from common.decent import seeds
from common.decent.pull import PullView


class PullState:
    def __init__(self, ctx, on_change=None) -> None:
        p = ctx.cfg.decent.pull
        self.view = PullView(p.modulus, p.hash_mode, p.hash_mask, ctx.cfg.node.rlocs, p.lookup_ranges)
        self.on_change = on_change
        self.on_sync_changed = None
        self.reader = CloneReader(ctx, seeds.STREAM, on_set=self._changed, on_delete=self._changed,
                                  on_sync=self._sync, on_unsync=self._sync)

    @property
    def in_sync(self) -> bool:
        return self.reader.in_sync

    def start(self) -> None:
        self.reader.start()

    def close(self) -> None:
        self.reader.close()

    def _changed(self, *_args) -> None:
        old = self.view.sets
        new = seeds.sets_from_clone(self.reader.data)
        if new != old:
            self.view.update(new)
            if self.on_change:
                self.on_change(old, new)

    def _sync(self, *_args) -> None:
        self._changed()
        if self.on_sync_changed:
            self.on_sync_changed()


def pull_state(ctx, on_change=None) -> PullState | None:
    """A PullState when the node is in pull mode, else None."""
    return PullState(ctx, on_change) if ctx.cfg.decent.mode == "pull" else None
