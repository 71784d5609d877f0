"""The pull cluster of test_pull_cluster.py in `draft` mode with a byte mask.

A module of its own so that the `prefix` cluster (same addresses) is down first.
"""

from __future__ import annotations

import pytest

from tests.integration.harness import poll
from tests.integration.test_pull_cluster import Cluster, index_sets

pytestmark = pytest.mark.integration


def test_draft_mode_with_a_byte_mask():
    # "[0]10.30.1." is 11 bytes: every host of 10.30.k.0/24 (k < 10) shares it, as do
    # the IPv6 "[0]fd30:0:k" and the IID "[1000]10.30" strings
    c = Cluster("draft", 11, "pd")
    try:
        c.up()
        poll(lambda: c.placement_ok(index_sets()), 60, 0.5, what="draft-mode placement")
        poll(lambda: c.all_resolve(via=[1, 4, 8]), 30, 0.5, what="draft-mode lookups")
    finally:
        c.down()
