"""Conformance tests: our encodings as Wireshark (tshark) decodes them."""

from __future__ import annotations

import pytest

from tests.conformance import oracle


def pytest_report_header(config):
    path = oracle.tshark_path()
    if not path:
        return "tshark: not found (conformance tests skip, or fail under CI)"
    try:
        return f"tshark: {path} ({oracle.tshark_version()})"
    except BaseException as exc:  # never break collection over a header line
        return f"tshark: {path} (version unknown: {exc})"


@pytest.fixture(autouse=True)
def _tshark_available():
    """Skip (or, with $CI set, fail) before drawing any example if tshark is missing."""
    oracle.require()
