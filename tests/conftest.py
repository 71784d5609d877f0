"""The whole suite's environment for the processes the tests start.

Every node role, `decent` call, probe and helper a test starts is a fresh Python
interpreter, several hundred per run.  Where the environment sets
PYTHONDONTWRITEBYTECODE (this project's machines and CI do), each of them compiled
the project's modules from source again: 0.1-0.25 s of CPU per process on a 2-core
machine.  The processes started by the tests share one bytecode cache instead, in a
private temporary directory (PYTHONPYCACHEPREFIX), so the repository gets no
__pycache__ and nothing outlives the run.  Python checks each cached file against
its source's size and mtime, so an edited module is compiled again.  A
PYTHONPYCACHEPREFIX the caller set is kept as it is.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_SAVED = "PYTHONDONTWRITEBYTECODE"
_made: list[tuple[str, str | None]] = []    # (the cache directory, the saved variable)


def pytest_configure(config) -> None:
    if os.environ.get("PYTHONPYCACHEPREFIX"):
        return
    cache = tempfile.mkdtemp(prefix="lisp-pyc-", dir="/tmp")
    _made.append((cache, os.environ.pop(_SAVED, None)))
    os.environ["PYTHONPYCACHEPREFIX"] = cache


def pytest_unconfigure(config) -> None:
    if not _made:
        return
    cache, dont_write = _made.pop()
    os.environ.pop("PYTHONPYCACHEPREFIX", None)
    if dont_write is not None:
        os.environ[_SAVED] = dont_write
    shutil.rmtree(cache, ignore_errors=True)
