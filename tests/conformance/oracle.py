"""Thin wrapper around the shared Wireshark oracle (``lisp_oracle.py``).

The oracle lives outside the repository, at ``<repo>/../shared/oracle/lisp_oracle.py``;
``$LISP_ORACLE`` may point elsewhere.  tshark start-up dominates the cost of a
decode, so :func:`decode_batch` puts a whole batch of payloads into one capture and
runs the oracle (one tshark PDML pass plus its Info-column pass) once.  IPv4 and
IPv6 outer headers can be mixed within that one capture.  Nothing is cached here:
every call writes a fresh capture and runs tshark again.

Availability: without tshark (or without the oracle script) the conformance tests
are skipped on a developer machine, but fail when ``$CI`` is set, because CI must
run them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ORACLE = REPO.parent / "shared" / "oracle" / "lisp_oracle.py"


def oracle_path() -> Path:
    env = os.environ.get("LISP_ORACLE")
    return Path(env).expanduser() if env else DEFAULT_ORACLE


def tshark_path() -> str | None:
    return os.environ.get("TSHARK") or shutil.which("tshark")


def _unavailable(reason: str) -> None:
    """Skip locally; fail under CI, where tshark is installed on purpose."""
    if os.environ.get("CI"):
        pytest.fail(f"conformance tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def load() -> ModuleType:
    """Import lisp_oracle from its file (once per interpreter, like any import)."""
    path = oracle_path()
    mod = sys.modules.get("lisp_oracle")
    if mod is not None and Path(getattr(mod, "__file__", "")).resolve() == path.resolve():
        return mod
    if not path.is_file():
        _unavailable(f"Wireshark oracle not found at {path} (set LISP_ORACLE)")
    spec = importlib.util.spec_from_file_location("lisp_oracle", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["lisp_oracle"] = mod
    spec.loader.exec_module(mod)
    return mod


def require() -> ModuleType:
    """The oracle module, after checking that tshark can be run."""
    mod = load()
    ts = tshark_path()
    if not ts or not (os.path.isfile(ts) and os.access(ts, os.X_OK)):
        _unavailable("tshark not found (apt-get install tshark, or set $TSHARK)")
    return mod


def tshark_version() -> str:
    return require().tshark_version(tshark_path())


def decode_batch(payloads: list[bytes], kind: str | list[str] = "control",
                 ipv6: bool | list[bool] = False, psk: bytes | None = None) -> list[dict]:
    """Decode every payload with ONE tshark run; one result dict per payload, in order.

    ``kind`` is "control" (UDP 4342) or "data" (UDP 4341), for all payloads or per
    payload; ``ipv6`` picks the outer header family likewise.  With ``psk`` the
    oracle also checks Map-Register/Map-Notify HMACs (result key "_auth")."""
    lo = require()
    n = len(payloads)
    kinds = kind if isinstance(kind, list) else [kind] * n
    fams = ipv6 if isinstance(ipv6, list) else [ipv6] * n
    if not (len(kinds) == len(fams) == n):
        raise ValueError("kind/ipv6 lists must have one entry per payload")
    frames, bases = [], []
    for payload, k, v6 in zip(payloads, kinds, fams):
        sport, dport = lo.default_ports(payload, k)
        frame = (lo.ipv6_udp if v6 else lo.ipv4_udp)(bytes(payload), sport, dport)
        frames.append(frame)
        bases.append(len(frame) - len(payload))
    with tempfile.TemporaryDirectory(prefix="lisp_conformance_") as tmp:
        path = os.path.join(tmp, "batch.pcap")
        lo.write_pcap(path, frames)
        results = lo.decode_pcap(path, tshark=tshark_path(), psk=psk, _bases=bases)
    if len(results) != n:
        raise AssertionError(f"tshark returned {len(results)} packets for {n} frames")
    return results


def field_types() -> dict[str, str]:
    """Wireshark field name -> FT_* type (from ``tshark -G fields``)."""
    lo = require()
    return lo.field_types(lo.find_tshark(tshark_path()))
