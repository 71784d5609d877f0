"""An NSD authoritative server on a loopback address, for the DNSSEC tests.

    from tests.integration.nsdserver import NsdServer, require_nsd

``NsdServer(origin).start(zone_text)`` writes the zone file and a private config
(no chroot, no database, no remote control) in a temporary directory and runs
``nsd -d`` on ``address:port`` until it answers the SOA; :meth:`serve` replaces
the zone (a restart on the same port); :meth:`close` stops it by pid.
:func:`require_nsd` skips without nsd, and fails under CI (scripts/setup.sh
installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

from tests.integration.dnsserver import free_port


def nsd_path() -> str | None:
    return shutil.which("nsd") or next((p for p in ("/usr/sbin/nsd",) if os.access(p, os.X_OK)), None)


def require_nsd() -> str:
    import pytest
    path = nsd_path()
    if path is None:
        msg = "nsd is not installed (Debian package nsd)"
        if os.environ.get("CI"):
            pytest.fail(msg + ", and CI is set: CI must install it")
        pytest.skip(msg)
    return path


class NsdServer:
    def __init__(self, origin: str, *, address: str = "127.0.53.60") -> None:
        self.origin = origin if origin.endswith(".") else origin + "."
        self.address = address
        self.port: int | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="nsd", dir="/tmp"))
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def _config(self) -> str:
        d = self.dir
        return (f"server:\n  ip-address: {self.address}@{self.port}\n  zonesdir: \"{d}\"\n"
                f"  pidfile: \"\"\n  username: \"\"\n  chroot: \"\"\n  database: \"\"\n"
                f"  zonelistfile: \"{d}/zone.list\"\n  xfrdfile: \"{d}/xfrd.state\"\n"
                f"  logfile: \"{d}/nsd.log\"\n  server-count: 1\n  verbosity: 1\n"
                f"remote-control:\n  control-enable: no\n"
                f"zone:\n  name: \"{self.origin}\"\n  zonefile: \"zone\"\n")

    def start(self, zone_text: str, timeout: float = 10.0) -> "NsdServer":
        (self.dir / "zone").write_text(zone_text)
        if self.port is None:
            self.port = free_port(self.address)
        (self.dir / "nsd.conf").write_text(self._config())
        self.proc = subprocess.Popen([nsd_path() or "nsd", "-d", "-c", str(self.dir / "nsd.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = dns.query.udp(dns.message.make_query(self.origin, "SOA"), self.address,
                                  port=self.port, timeout=0.3)
                if r.rcode() == dns.rcode.NOERROR and r.answer:
                    return self
            except (dns.exception.DNSException, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "nsd.log").read_text(errors="replace")[-800:] \
                    if (self.dir / "nsd.log").exists() else ""
                self.stop()
                raise RuntimeError(f"nsd did not answer on {self.endpoint}: {log}")
            time.sleep(0.1)

    def serve(self, zone_text: str) -> None:
        """Serve ``zone_text`` instead (restart on the same address and port)."""
        self.stop()
        self.start(zone_text)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # nsd and its server children, our session
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
