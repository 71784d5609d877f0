"""common/ stays sans-IO: no sockets, event loops, ZeroMQ, clocks or randomness."""

from __future__ import annotations

import ast
import pathlib

FORBIDDEN = {"socket", "asyncio", "zmq", "time", "random", "selectors", "threading", "uvloop",
             "subprocess", "secrets", "datetime"}
COMMON = pathlib.Path(__file__).resolve().parents[2] / "common"


def imported_roots(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            roots.add("__import__")
    return roots


def test_common_is_pure():
    files = sorted(COMMON.glob("**/*.py"))
    assert len(files) >= 8
    offenders = {str(f.relative_to(COMMON)): sorted(imported_roots(f) & (FORBIDDEN | {"__import__"}))
                 for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_checker_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom time import monotonic\n")
    assert "time" in imported_roots(bad)
