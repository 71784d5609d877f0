"""A real DNS server for tests: dnsmasq, authoritative-style for one suffix, on loopback.

::

    from tests.integration.dnsserver import DnsServer, require_dnsmasq

    with DnsServer("ms.test", address="127.0.53.1", ttl=2, tmpdir=tmp_path) as dns:
        dns.set_records({0: ["127.0.1.1", "127.0.1.2"], 1: ["127.0.1.3", "fd00::4"]})
        ...                    # name_servers = [f"{dns.address}:{dns.port}"]
        dns.set_records({0: ["127.0.1.1", "127.0.1.9"], 1: ["127.0.1.3", "fd00::4"]})
        dns.pause()            # SIGSTOP: queries now time out
        dns.resume()           # SIGCONT
    # stopped (SIGTERM by pid, bounded wait, then SIGKILL)

dnsmasq runs in the foreground with ``--no-resolv --no-hosts --conf-file=/dev/null``,
answering only ``<name>.<suffix>`` from an ``--addn-hosts`` file that
:meth:`DnsServer.set_records` rewrites before sending SIGHUP (which makes dnsmasq
re-read it and drop its cache); the method then polls with dnspython until the new
records are served, so the test knows the change is live.  Names not in the file
get NXDOMAIN (``--local=/<suffix>/``), an index with only IPv4 (or IPv6) addresses
gets NODATA for the other type.  ``--user=root`` keeps dnsmasq from switching to a
user that could not re-read the hosts file in a private temporary directory.

The port is a free high one chosen at start (UDP and TCP both free on the address),
unless the test passes one.  Only the dnsmasq this object started is ever signalled,
by its pid.  :func:`require_dnsmasq` skips a test when dnsmasq is missing, unless
the ``CI`` environment variable is set (then it fails: CI must have it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable, Mapping

import dns.exception
import dns.resolver

CANDIDATES = ("/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq")


def dnsmasq_path() -> str | None:
    found = shutil.which("dnsmasq")
    if found:
        return found
    return next((p for p in CANDIDATES if os.access(p, os.X_OK)), None)


def require_dnsmasq() -> str:
    """The dnsmasq binary; skips the calling test without one (fails under CI)."""
    import pytest
    path = dnsmasq_path()
    if path is None:
        msg = "dnsmasq is not installed (Debian package dnsmasq-base)"
        if os.environ.get("CI"):
            pytest.fail(msg + ", and CI is set: CI must install it")
        pytest.skip(msg)
    return path


def free_port(address: str) -> int:
    """A port free for both UDP and TCP on ``address`` (racy, so start() retries)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((address, 0))
            port = u.getsockname()[1]
            if port < 1024:
                continue
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind((address, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on {address}")


class DnsServerError(RuntimeError):
    pass


class DnsServer:
    """A dnsmasq serving ``<index>.<suffix>`` A/AAAA records on ``address:port``."""

    def __init__(self, suffix: str, *, address: str = "127.0.53.1", port: int | None = None,
                 ttl: int = 2, tmpdir: str | os.PathLike | None = None,
                 binary: str | None = None) -> None:
        self.suffix = suffix.rstrip(".")
        self.address = address
        self.port = port
        self.ttl = ttl
        self.binary = binary or dnsmasq_path()
        if self.binary is None:
            raise DnsServerError("dnsmasq is not installed")
        self._own_dir = tmpdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="dns", dir="/tmp") if tmpdir is None
                        else tmpdir)
        self.hosts = self.dir / "seeds.hosts"
        self.log = self.dir / "dnsmasq.log"
        self.records: dict[int | str, list[str]] = {}
        self.proc: subprocess.Popen | None = None
        self.paused = False

    # -- life cycle ------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def endpoint(self) -> str:
        """``address:port``, as ``decent.name_servers`` takes it."""
        return f"{self.address}:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                "--no-hosts", f"--local=/{self.suffix}/", f"--addn-hosts={self.hosts}",
                f"--local-ttl={self.ttl}", f"--listen-address={self.address}",
                f"--port={self.port}", "--bind-interfaces", "--user=root", "--group=root",
                "--pid-file=", "--log-facility=-", "--log-queries", "--cache-size=0"]

    def start(self, timeout: float = 10.0) -> "DnsServer":
        """Start dnsmasq and wait until it answers (bounded); returns self."""
        if self.proc is not None:
            raise DnsServerError("already started")
        self._write_hosts()
        fixed = self.port is not None
        last = ""
        for _ in range(1 if fixed else 5):
            if not fixed:
                self.port = free_port(self.address)
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
            try:
                self._wait_answering(timeout)
                return self
            except DnsServerError as exc:
                last = str(exc)
                self._kill()
        raise DnsServerError(f"dnsmasq did not start: {last}; log: {self._log_tail()}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM by pid, wait at most ``timeout``, then SIGKILL.  Idempotent."""
        if self.proc is None:
            return
        if self.paused:
            self.resume()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        self.proc = None

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "DnsServer":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    def pause(self) -> None:
        """SIGSTOP: dnsmasq stays bound but answers nothing, so queries time out."""
        self._require_running()
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.proc is not None and self.paused:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    # -- records -----------------------------------------------------------------

    def name(self, key: int | str) -> str:
        """``<key>.<suffix>`` for an index, or a relative name."""
        return f"{key}.{self.suffix}"

    def set_records(self, records: Mapping[int | str, Iterable[str]], *,
                    timeout: float = 10.0) -> None:
        """Serve exactly ``records`` (index -> addresses; a missing index is NXDOMAIN)
        and wait until dnsmasq answers with them."""
        self.records = {k: list(v) for k, v in records.items()}
        self._write_hosts()
        if self.proc is None:
            return
        self._require_running()
        os.kill(self.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while True:
            if self.served() == self._expected():
                return
            if time.monotonic() > deadline:
                raise DnsServerError(f"dnsmasq still serves {self.served()} after {timeout} s, "
                                     f"not {self._expected()}")
            time.sleep(0.05)

    def _write_hosts(self) -> None:
        lines = ["# written by tests/integration/dnsserver.py"]
        for key, addrs in self.records.items():
            lines += [f"{a}\t{self.name(key)}" for a in addrs]
        tmp = self.hosts.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.hosts)

    def _expected(self) -> dict[str, set[str]]:
        import ipaddress
        return {self.name(k): {str(ipaddress.ip_address(a)) for a in v}
                for k, v in self.records.items() if v}

    def resolver(self, timeout: float = 1.0) -> dns.resolver.Resolver:
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [self.address]
        r.port = self.port
        r.timeout = r.lifetime = timeout
        r.cache = None
        return r

    def query(self, key: int | str) -> set[str] | None:
        """The A and AAAA addresses served for ``<key>.<suffix>`` (None: NXDOMAIN)."""
        r = self.resolver()
        out: set[str] = set()
        for rdtype in ("A", "AAAA"):
            try:
                ans = r.resolve(self.name(key) + ".", rdtype, raise_on_no_answer=False)
            except dns.resolver.NXDOMAIN:
                return None
            if ans.rrset is not None:
                out.update(x.address for x in ans.rrset)
        return out

    def served(self) -> dict[str, set[str]]:
        """What dnsmasq answers now for every name in :attr:`records`."""
        out = {}
        for key in self.records:
            got = self.query(key)
            if got:
                out[self.name(key)] = got
        return out

    # -- helpers -----------------------------------------------------------------

    def _require_running(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise DnsServerError(f"dnsmasq is not running; log: {self._log_tail()}")

    def _wait_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe = self.resolver(0.3)
        while True:
            if self.proc is None or self.proc.poll() is not None:
                raise DnsServerError("dnsmasq exited")
            try:
                probe.resolve(f"probe.{self.suffix}.", "A", raise_on_no_answer=False)
                return
            except dns.resolver.NXDOMAIN:
                return  # it answers
            except (dns.exception.DNSException, OSError):
                pass
            if time.monotonic() > deadline:
                raise DnsServerError(f"no answer on {self.endpoint} within {timeout} s")
            time.sleep(0.05)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
