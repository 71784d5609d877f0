"""Shared pieces of the bench programs: nodes, the C tools, message templates, output.

Nothing here asserts anything: the programs print figures and save them.  Every
wait is a bounded poll; every node started is stopped by the program that started
it (``decent down`` by its config, then by PID whatever of ours is still alive).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
BUILD = BENCH / "build"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# the node harness and helpers the integration tests use (one copy of each)
from tests.integration import harness  # noqa: E402
from tests.integration.harness import CLI, pid_alive, udp_exchange  # noqa: E402,F401
from tests.integration.harness import wait_for as poll  # noqa: E402,F401  (None on timeout)

PY = sys.executable


def _stop_on_term(signum, _frame) -> None:
    """SIGTERM / SIGHUP (a bench stopped by ``kill`` or ``timeout``) ends the program as
    an exception does: every ``with Node(...)`` stops its node on the way out."""
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _stop_on_term)
signal.signal(signal.SIGHUP, _stop_on_term)


# --------------------------------------------------------------------- helpers

def log(msg: str) -> None:
    print(msg, flush=True)


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` (VmRSS), KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def hwm_kib(pid: int) -> int | None:
    """Peak resident set size of ``pid`` (VmHWM), KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().split(") ", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def run_wait_seconds(pid: int) -> float | None:
    """Seconds ``pid``'s threads spent runnable but waiting for a core (the second
    field of /proc/PID/task/*/schedstat): CPU contention, which utime + stime miss."""
    total, seen = 0, False
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[1])
                seen = True
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9 if seen else None


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat (steal counts as busy)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = sum(v[:8])
    return total - idle, total


def busy_pct(seconds: float = 1.0) -> float:
    """Share of all cores busy over ``seconds`` (100 = every core), whoever uses them."""
    b0, t0 = cpu_times()
    time.sleep(seconds)
    b1, t1 = cpu_times()
    return round(100 * (b1 - b0) / max(1, t1 - t0), 1)


def wait_quiet(max_wait: float = 60.0, threshold: float = 15.0) -> dict:
    """Wait (bounded) until the machine is quiet: other work on a shared machine (tests
    run by others) would be measured as ours.  Returns what was seen."""
    t0 = time.monotonic()
    seen = busy_pct(1.0)
    while seen > threshold and time.monotonic() - t0 < max_wait:
        seen = busy_pct(2.0)
    waited = round(time.monotonic() - t0, 1)
    if seen > threshold:
        log(f"  machine still busy ({seen}% of all cores used by others after {waited} s): "
            f"figures below are disturbed")
    return {"busy_pct_before": seen, "waited_s": waited}


def machine() -> dict:
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu_model": model, "mem_gib": mem,
            "kernel": platform.release(), "python": platform.python_version()}


def pcts(samples, ps=(50, 90, 99, 99.9)) -> dict:
    s = sorted(samples)
    if not s:
        return {}
    out = {}
    for p in ps:
        k = min(len(s) - 1, int(p / 100 * len(s)))
        out[f"p{p:g}"] = s[k]
    out["max"] = s[-1]
    out["n"] = len(s)
    return out


def save_json(name: str, doc: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
           "command": " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]), **doc}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    log(f"  wrote {path.relative_to(REPO)}")
    return path


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        log("  (matplotlib not installed: no plot; bench/run.sh installs it)")
        return None


def ratio(a, b) -> float | None:
    return round(a / b, 3) if a and b else None


# ---------------------------------------------------------------- the C tools

def build_c(name: str) -> Path:
    """Compile bench/c/<name>.c with gcc -O2 into bench/build/<name> (when stale)."""
    src = BENCH / "c" / f"{name}.c"
    out = BUILD / name
    BUILD.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(src), "-lpthread"], check=True,
                       timeout=120)
    return out


def write_templates(path: Path, msgs) -> Path:
    with open(path, "wb") as f:
        for m in msgs:
            f.write(struct.pack("!I", len(m)) + m)
    return path


def count_templates(path: Path) -> int:
    """How many messages a :func:`write_templates` file holds."""
    n, data = 0, Path(path).read_bytes()
    off = 0
    while off + 4 <= len(data):
        off += 4 + struct.unpack_from("!I", data, off)[0]
        n += 1
    return n


def lispload(dst: str, templates: Path, *, src: str, window: int | None = None,
             rate: float | None = None, seconds: float = 3.0, sockets: int = 16, threads: int = 1,
             raw: bool = False, base: int = 0, nonce_off: int | None = None,
             udp_off: int | None = None, warmup: float = 0.5, drain: float = 0.3,
             timeout_ms: float = 200, port: int = 4342, connect: bool = True,
             watch: dict | None = None) -> dict:
    """Run bench/c/lispload once; its JSON result, with the command line and the CPU
    used (percent of one core over the run) by lispload and by the ``watch`` PIDs."""
    exe = build_c("lispload")
    cmd = [str(exe), "-d", dst, "-p", str(port), "-f", str(templates), "-s", src,
           "-n", str(sockets), "-T", str(threads), "-t", str(seconds), "--warmup", str(warmup),
           "--drain", str(drain), "--timeout", str(timeout_ms), "--base", str(base)]
    cmd += ["-w", str(window)] if window else ["-r", str(rate)]
    if raw:
        cmd.append("--raw")
    if nonce_off is not None:
        cmd += ["--nonce-off", str(nonce_off)]
    if udp_off is not None:
        cmd += ["--udp-off", str(udp_off)]
    if not connect:
        cmd.append("--no-connect")
    watch = dict(watch or {})
    before = {k: cpu_seconds(p) for k, p in watch.items()}
    waits0 = {k: run_wait_seconds(p) for k, p in watch.items()}
    sys0 = cpu_times()
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        proc = subprocess.Popen(cmd, stdout=so, stderr=se, text=True)
        limit = time.monotonic() + seconds + warmup + drain + 30
        while True:  # bounded wait, with the child's own CPU time from wait4
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > limit:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read(), se.read()
    if proc.returncode != 0:
        raise RuntimeError(f"lispload failed ({proc.returncode}): {stderr.strip()}")
    sys1 = cpu_times()
    out = json.loads(stdout)
    wall = out["wall_s"]
    # averages over lispload's whole run, its warm-up and drain included (the load
    # itself is ``measured_s`` of ``wall_s``): at saturation a process is busier
    # than its figure while the load runs
    out["cpu_pct"] = {"lispload": round(100 * (ru.ru_utime + ru.ru_stime) / wall, 1)}
    out["run_wait_pct"] = {}      # runnable but waiting for a core, same span
    for k, p in watch.items():
        a, b = before[k], cpu_seconds(p)
        if a is not None and b is not None:
            out["cpu_pct"][k] = round(100 * (b - a) / wall, 1)
        a, b = waits0[k], run_wait_seconds(p)
        if a is not None and b is not None:
            out["run_wait_pct"][k] = round(100 * (b - a) / wall, 1)
    # all cores, in percent of one core, and what is left for others (kernel softirq
    # work done outside our processes, or other people's processes on a shared machine)
    ncpu = os.cpu_count() or 1
    machine_pct = 100 * ncpu * (sys1[0] - sys0[0]) / max(1, sys1[1] - sys0[1])
    out["cpu_pct"]["machine"] = round(machine_pct, 1)
    out["cpu_pct"]["not_ours"] = round(machine_pct - sum(v for k, v in out["cpu_pct"].items()
                                                         if k != "machine"), 1)
    out["cmd"] = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))
    return out


def ms(ns) -> float | None:
    return None if ns is None else round(ns / 1e6, 3)


def us(ns) -> float | None:
    return None if ns is None else round(ns / 1e3, 1)


# ------------------------------------------------------------ message builders

def ecm_templates(eids, itr: str, nonce: int = 0x1122334455667788, sport: int = 40000):
    """ECM Map-Request bytes for each EID (ITR-RLOC ``itr``), and the byte offsets
    of the nonce and of the inner UDP header (which lispload patches)."""
    from tests.unit.msfixtures import ecm_request
    msgs = [ecm_request(e, nonce=nonce, itr=itr, sport=sport) for e in eids]
    m0 = msgs[0]
    nonce_off = m0.find(struct.pack("!Q", nonce))
    ihl = (m0[4] & 0x0F) * 4 if m0[4] >> 4 == 4 else 40
    udp_off = 4 + ihl
    assert struct.unpack_from("!H", m0, udp_off)[0] == sport and nonce_off > 0
    return msgs, nonce_off, udp_off


# ----------------------------------------------------------------------- nodes

BENCH_TIMERS = """
[timers]
registration_lifetime = 3600
heartbeat_interval = 1
watchdog_timeout = 30
snapshot_timeout = 30
"""


class Node(harness.Node):
    """The integration tests' node (tests/integration/harness.py) with bench defaults:
    long timers, log level warning, its directory removed by ``down``, and a failure
    raising RuntimeError instead of failing a test."""

    TIMERS = BENCH_TIMERS
    NODE_KEYS = 'log_level = "warning"'
    DIR_PREFIX = "db"
    UP_TIMEOUT = 120
    KEEP_DIR = False

    def fail(self, message: str) -> None:
        raise RuntimeError(message)


def site_block(name: str, secret: str, prefixes, more: bool = True, policy: str = "strict") -> str:
    pfx = ", ".join(f'{{ eid = "{p}", accept_more_specifics = {str(more).lower()} }}'
                    for p in prefixes)
    return (f'\n[[site]]\nname = "{name}"\nnonce_policy = "{policy}"\n'
            f'key = [{{ id = 0, alg = "hmac-sha-256-128", secret = "{secret}" }}]\n'
            f'prefix = [{pfx}]\n')


RATE_UNLIMITED = "\n[map_resolver]\nrate_limit = 10000000\nrate_burst = 10000000\n"


def register_all(dst: tuple, src: str, regs, timeout: float = 30.0) -> int:
    """Send Map-Registers (want-map-notify) one by one, retrying each until its
    Map-Notify arrives; returns how many were acknowledged."""
    ok = 0
    deadline = time.monotonic() + timeout
    for reg in regs:
        while time.monotonic() < deadline:
            if udp_exchange(dst, reg, src=src, timeout=1.0):
                ok += 1
                break
    return ok


# ------------------------------------------------------------------- profiling

def py_spy_path() -> str | None:
    p = Path(PY).parent / "py-spy"
    return str(p) if p.exists() else None


def py_spy(pid: int, seconds: float, during, rate: int = 200, top: int = 20) -> dict | None:
    """Sample ``pid`` with py-spy (if installed) while ``during()`` runs; the hottest
    frames by own time and by inclusive time, in percent of the samples.  Time spent
    in a system call shows as the Python line that made it."""
    exe = py_spy_path()
    if exe is None:
        return None
    out = BUILD / f"py-spy-{pid}.txt"
    BUILD.mkdir(parents=True, exist_ok=True)
    sp = subprocess.Popen([exe, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", str(rate),
                           "-f", "raw", "-o", str(out), "--nonblocking"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.5)
        result = during()
        msg = sp.communicate(timeout=seconds + 30)[0]
    except subprocess.TimeoutExpired:
        sp.kill()
        sp.wait(5)
        return {"error": "py-spy did not finish"}
    if sp.returncode != 0 or not out.exists():
        return {"error": msg.strip()[-300:]}
    own, incl, total = {}, {}, 0
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        try:
            n = int(n)
        except ValueError:
            continue
        total += n
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    out.unlink()

    def topn(d):
        return [[f, round(100 * n / max(1, total), 1)] for f, n in
                sorted(d.items(), key=lambda kv: -kv[1])[:top]]
    return {"samples": total, "own": topn(own), "inclusive": topn(incl), "during": result}


def lispload_quiet(*args, attempts: int = 3, others_max: float = 15.0, **kw) -> dict:
    """``lispload`` repeated (at most ``attempts`` times) until a run where other work on
    the machine (``cpu_pct.not_ours``, in percent of one core) stayed under
    ``others_max``; returns that run, or else the least disturbed one.  On a shared
    machine someone else's test suite would otherwise be measured as ours.  The
    result says how many attempts it took (``attempts``) and whether it was quiet."""
    best = None
    for k in range(attempts):
        if k:
            wait_quiet(30.0)
        r = lispload(*args, **kw)
        r["attempts"] = k + 1
        r["quiet"] = r["cpu_pct"].get("not_ours", 0) <= others_max
        if best is None or r["cpu_pct"].get("not_ours", 0) < best["cpu_pct"].get("not_ours", 0):
            best = r
        if r["quiet"]:
            return r
    return best


def flood_round(node, dst: str, attacker: str, payloads, tag: str, seconds: float, rate: float,
                legitimate) -> dict:
    """One single-source flood against a running node while ``legitimate()`` runs in a
    thread (it records its own outcome).  The flood cycles ``payloads`` for ``seconds``
    from one socket (open loop, so SO_REUSEPORT puts all of it on one worker), with the
    bytes at offset 4 changed per datagram (a nonce; it spoils no check a flood should
    pass).  Returns the rate the sender reached, the roles restarted meanwhile (PIDs
    before and after) and the drop/shun counters that moved, per role."""
    import threading
    pids = {k: v.get("pid") for k, v in node.status().items()}
    c0 = node.counters()
    t = threading.Thread(target=legitimate)
    t.start()
    tfile = write_templates(BUILD / f"flood-{tag}.bin", payloads)
    r = lispload(dst, tfile, src=attacker, rate=rate, seconds=seconds, nonce_off=4, sockets=1,
                 warmup=0.0, drain=0.2, timeout_ms=50)
    t.join(timeout=seconds + 60)
    after = {k: v.get("pid") for k, v in node.status().items()}
    c1 = node.counters()
    moved: dict = {}
    for inst, c in c1.items():
        role = inst.split(":")[0]
        for name, v in c.items():
            if name.startswith(("dropped.", "shun.")):
                d = v - c0.get(inst, {}).get(name, 0)
                if d:
                    moved.setdefault(role, {})[name] = moved.setdefault(role, {}).get(name, 0) + d
    return {"flood_sent": r["sent"], "flood_rate": round(r["sent"] / seconds),
            "restarts": sorted(k for k in pids if after.get(k) != pids[k]), "counters": moved}
