"""CompactTable.count_by_site (``decent show sites`` without building an entry per
registration) counts what entries() holds, per site: shared items, several
registrants on a prefix, unusual keys, multicast, after deletions and replacements."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from common.machines.compact import CompactTable
from common.machines.shardtable import ShardTable
from common.machines.regtable import entry_key
from tests.unit.test_compact_fill import item, pairs
from tests.unit.test_compact_table import prefix, value

SET_ERRORS = (KeyError, TypeError, ValueError, AttributeError)


@settings(max_examples=150, deadline=None)
@given(st.lists(item, max_size=60), st.lists(st.integers(0, 59), max_size=20), st.sampled_from([CompactTable,
                                                                                                ShardTable]))
def test_counts_per_site_are_those_of_the_entries(spec, gone, kind):
    rows = pairs(spec)
    t = kind()
    for j in range(12):       # one registrant's registrations: one shared item
        eid = prefix(4, 0x0AC80000 | j << 8, 24)
        t.set(entry_key(eid, b"\x05" * 16), value(eid, b"\x05" * 16, 3))
    for i, (k, v) in enumerate(rows):
        try:
            t.set(k, dict(v, site=f"site-{i % 3}"))
        except SET_ERRORS:
            pass
    for i in gone:                      # deletions, and a replacement under another site
        if i < len(rows):
            t.delete(rows[i][0])
            if i % 2:
                try:
                    t.set(rows[i][0], dict(rows[i][1], site="moved"))
                except SET_ERRORS:
                    pass
    want = Counter(e.site for e in t.entries())
    assert t.count_by_site() == dict(want)
    assert sum(t.count_by_site().values()) == len(t)
