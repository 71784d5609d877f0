"""common/ stays sans-IO: no sockets, event loops, ZeroMQ, clocks, randomness, files
or any other I/O (no os, pathlib, sqlite3, io, ...; no calls to open/input/print)."""

from __future__ import annotations

import ast
import pathlib

FORBIDDEN = {"socket", "asyncio", "zmq", "time", "random", "selectors", "threading", "uvloop",
             "subprocess", "secrets", "datetime", "os", "pathlib", "sqlite3", "io", "shutil", "tempfile",
             "fcntl", "signal", "mmap", "glob", "logging", "multiprocessing", "concurrent", "urllib",
             "http", "ssl", "sys", "dns", "supervisor", "prometheus_client", "ctypes", "builtins"}
FORBIDDEN_CALLS = {"open", "input", "print", "exec", "eval", "compile", "__import__", "breakpoint"}
COMMON = pathlib.Path(__file__).resolve().parents[2] / "common"


def imported_roots(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in FORBIDDEN_CALLS:
            roots.add(node.func.id + "()")
    return roots


def test_common_is_pure():
    files = sorted(COMMON.glob("**/*.py"))
    assert len(files) >= 8
    bad = FORBIDDEN | {c + "()" for c in FORBIDDEN_CALLS}
    offenders = {str(f.relative_to(COMMON)): sorted(imported_roots(f) & bad) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_checker_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom time import monotonic\nimport sqlite3\nx = open('f')\n")
    found = imported_roots(bad)
    assert {"os", "time", "sqlite3", "open()"} <= found
