"""Network namespaces for data-plane tests: a routed RLOC network, hosts behind nodes.

Topology (``tag`` keeps concurrent runs apart; every name is the test's own)::

    h<k> (10.<k>.0.2/24, fd00:<k>::2/64)
      | veth "hv" <-> "eth0"
    n<k> (node k: decent up inside; 10.<k>.0.1/24 on "hv"; RLOC 172.16.<k>.2/24 on "eth0")
      | veth "eth0" <-> "n<k>"
    core (routes between 172.16.<k>.0/24; 10.99.0.1 on lo: a non-LISP destination;
          routes 10.<k>.0.0/16 back to node k for natively forwarded traffic)

Every namespace is deleted by :meth:`Topology.destroy` (processes of nodes are
stopped by their :class:`NsNode` first).  Needs root, ``ip``, ``ping``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.integration.harness import CLI, REPO, Node


def need_root() -> None:
    """Skip outside root; under CI a missing capability or tool fails instead."""
    missing = [t for t in ("ip", "ping", "tshark") if shutil.which(t) is None]
    problem = None
    if os.geteuid() != 0:
        problem = "network namespaces and TUN need root"
    elif missing:
        problem = f"missing tools: {', '.join(missing)} (scripts/setup.sh installs them)"
    elif not os.path.exists("/dev/net/tun"):
        problem = "no /dev/net/tun"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)


def run(*args: str, timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r


class Topology:
    def __init__(self, tag: str, nodes: int) -> None:
        self.tag = tag
        self.k = nodes
        self.names: list[str] = []

    def ns(self, what: str) -> str:
        return f"{self.tag}-{what}"

    def ip(self, ns: str, *args: str, check: bool = True):
        return run("ip", "-n", ns, *args, check=check)

    def sh(self, ns: str, *args: str, timeout: float = 30, check: bool = False):
        return run("ip", "netns", "exec", ns, *args, timeout=timeout, check=check)

    def sysctl(self, ns: str, *kv: str) -> None:
        for x in kv:
            self.sh(ns, "sysctl", "-qw", x, check=True)

    def create(self) -> "Topology":
        core = self.ns("core")
        for name in [core] + [self.ns(f"n{k}") for k in range(1, self.k + 1)] + \
                [self.ns(f"h{k}") for k in range(1, self.k + 1)]:
            run("ip", "netns", "add", name)
            self.names.append(name)
            self.ip(name, "link", "set", "lo", "up")
        self.sysctl(core, "net.ipv4.ip_forward=1")
        self.ip(core, "addr", "add", "10.99.0.1/32", "dev", "lo")
        for k in range(1, self.k + 1):
            n, h = self.ns(f"n{k}"), self.ns(f"h{k}")
            run("ip", "link", "add", "eth0", "netns", n, "type", "veth", "peer", "name", f"n{k}",
                "netns", core)
            run("ip", "link", "add", "hv", "netns", n, "type", "veth", "peer", "name", "eth0",
                "netns", h)
            self.ip(core, "addr", "add", f"172.16.{k}.1/24", "dev", f"n{k}")
            self.ip(core, "link", "set", f"n{k}", "up")
            self.ip(core, "route", "add", f"10.{k}.0.0/16", "via", f"172.16.{k}.2")
            self.ip(n, "addr", "add", f"172.16.{k}.2/24", "dev", "eth0")
            self.ip(n, "link", "set", "eth0", "up")
            self.ip(n, "route", "add", "default", "via", f"172.16.{k}.1")
            self.ip(n, "addr", "add", f"10.{k}.0.1/24", "dev", "hv")
            self.ip(n, "-6", "addr", "add", f"fd00:{k}::1/64", "dev", "hv", "nodad")
            self.ip(n, "link", "set", "hv", "up")
            self.sysctl(n, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                        "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
            self.ip(h, "addr", "add", f"10.{k}.0.2/24", "dev", "eth0")
            self.ip(h, "-6", "addr", "add", f"fd00:{k}::2/64", "dev", "eth0", "nodad")
            self.ip(h, "link", "set", "eth0", "up")
            self.ip(h, "route", "add", "default", "via", f"10.{k}.0.1")
            self.ip(h, "-6", "route", "add", "default", "via", f"fd00:{k}::1")
        return self

    def destroy(self) -> None:
        for name in reversed(self.names):
            run("ip", "netns", "del", name, check=False)
        self.names.clear()

    def ping(self, host: int, dst: str, *, count: int = 3, interval: float = 0.2,
             wait: float = 1.0, size: int | None = None, df: bool = False,
             deadline: float | None = None) -> "PingResult":
        args = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait)]
        if size is not None:
            args += ["-s", str(size)]
        if df:
            args += ["-M", "do"]
        if deadline is not None:
            args += ["-w", str(deadline)]
        r = self.sh(self.ns(f"h{host}"), *args, dst, timeout=count * (interval + wait) + 30)
        return PingResult(r.returncode, r.stdout + r.stderr)

    def ping_background(self, host: int, dst: str, count: int, interval: float) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.ns(f"h{host}"), "ping", "-n", "-c",
                                 str(count), "-i", str(interval), "-W", "1", dst],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class PingResult:
    def __init__(self, rc: int, out: str) -> None:
        self.rc, self.out = rc, out
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        self.sent, self.received = (int(m.group(1)), int(m.group(2))) if m else (0, 0)

    @property
    def lost(self) -> int:
        return self.sent - self.received

    def __repr__(self) -> str:
        return f"PingResult(rc={self.rc}, sent={self.sent}, received={self.received}, out={self.out!r})"


class NsNode(Node):
    """A node whose every process runs inside network namespace ``netns``."""

    def __init__(self, netns: str, name: str, rloc: str, body: str, **kw) -> None:
        super().__init__(name, rloc, body, **kw)
        self.netns = netns

    def decent(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
        r = subprocess.run(["ip", "netns", "exec", self.netns] + CLI + list(args) + ["-c", str(self.conf)],
                           cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            pytest.fail(f"decent {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
        return r
