"""One node, every role, real supervisord, real ZeroMQ bus, on 127.0.20.1.

Registration and resolution end to end (the ETR registers, `decent lig` asks the
Map-Resolver workers, which forward to the ETR or answer negatively), the
Map-Server's refusals, two resolver workers, malformed datagrams, role-by-role
restarts (`decent restart` and kill -9 of every role) and expiry after the ETR
stops.  Tests run in file order on one node; each leaves it serving.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.integration.harness import FAST_TIMERS, SECRET, Node, pid_alive, poll, udp_exchange
from tests.unit.msfixtures import ecm_request, register

pytestmark = pytest.mark.integration

RLOC = "127.0.20.1"
MR = (RLOC, 4342)

BODY = f"""
[roles]
map_resolver = {{ workers = 2 }}
map_server = {{ shards = 1 }}
etr = true
itr = true

[[site]]
name = "lab"
nonce_policy = "strict"
[[site.key]]
id = 0
alg = "hmac-sha-256-128"
secret = "{SECRET}"
[[site.prefix]]
eid = "10.1.0.0/16"
accept_more_specifics = true
[[site.prefix]]
eid = "2001:db8:1::/48"
accept_more_specifics = true
[[site.prefix]]
eid = "[1000]10.2.0.0/16"
accept_more_specifics = true
[[site.prefix]]
eid = "10.5.0.0/16"

[[site]]
name = "oor"                     # a peer that signs with HMAC-SHA-1 (Key ID field 0x0001)
[[site.key]]
id = 0
alg = "hmac-sha-1-96"
secret = "oor-secret"
[[site.prefix]]
eid = "10.6.0.0/16"

[[database_mapping]]
eid = "10.1.1.0/24"
[[database_mapping]]
eid = "2001:db8:1:1::/64"
[[database_mapping]]
eid = "[1000]10.2.1.0/24"

[etr]
map_servers = [{{ address = "{RLOC}", key_id = 0, alg = "hmac-sha-256-128", secret = "{SECRET}" }}]
"""

EIDS = {"10.1.1.7": "[0]10.1.1.0/24", "2001:db8:1:1::7": "[0]2001:db8:1:1::/64",
        "[1000]10.2.1.7": "[1000]10.2.1.0/24"}


# a hung (SIGSTOPped) role ignores the watchdog's SIGTERM: supervisord's SIGKILL comes
# stop_wait s later (default 10)
TIMERS = FAST_TIMERS + "stop_wait = 3\n"


@pytest.fixture(scope="module")
def node():
    n = Node("itapp", RLOC, BODY, timers=TIMERS)
    try:
        n.up()
        poll(n.all_running, 20, what="every role RUNNING")
        for eid, want in EIDS.items():
            n.wait_lig(eid, want)
        yield n
    finally:
        n.down()


def replaced(n: Node, old: dict) -> bool:
    """Every instance of ``old`` (instance -> its old pid) RUNNING with another pid
    (one `decent status` for all of them)."""
    st = n.status()
    return all(st[k]["pid"] not in (None, pid) and st[k]["state"] == "RUNNING" for k, pid in old.items())


def reg_keys(n: Node) -> set:
    return {r["eid"] for r in n.registrations()}


def test_positive_ipv4_ipv6_iid(node):
    for eid, want in EIDS.items():
        r = node.lig(eid)
        assert r is not None and r["eid"] == want and not r["negative"]
        assert r["authoritative"]  # P=0: forwarded to the ETR, which answers with A=1
        assert [x["address"] for x in r["rlocs"]] == [RLOC]
        assert r["rlocs"][0]["priority"] == 1 and r["rlocs"][0]["weight"] == 100


def test_negative_non_eid_least_specific_15_minutes(node):
    r = node.lig("192.0.2.55")
    assert r["negative"] and r["ttl"] == 15 and r["action"] == "natively-forward"
    # 192.0.2.55 shares no leading bit with 10/8 or 2001::: the least-specific is 128/1
    assert r["eid"] == "[0]128.0.0.0/1"
    r = node.lig("10.3.0.1")  # 14 leading bits shared with 10.1.0.0/16 (13 with 10.5.0.0/16)
    assert r["negative"] and r["ttl"] == 15 and r["eid"] == "[0]10.2.0.0/15"


def test_negative_configured_but_unregistered_1_minute(node):
    r = node.lig("10.5.3.3")
    assert r["negative"] and r["ttl"] == 1 and r["eid"] == "[0]10.5.0.0/16"
    r = node.lig("10.1.200.1")  # inside 10.1/16, outside the registered 10.1.1.0/24
    assert r["negative"] and r["ttl"] == 1 and r["eid"] == "[0]10.1.128.0/17"


def _no_notify(data: bytes) -> bool:
    return udp_exchange(MR, data, src=RLOC, timeout=1.0) is None


def _edge(counters: dict) -> dict:
    """Drop counters of every map_resolver worker, summed (the edge gate's)."""
    out: dict = {}
    for k, c in counters.items():
        if k.startswith("map_resolver:"):
            for name, v in c.items():
                out[name] = out.get(name, 0) + v
    return out


def test_wrong_key_outside_prefix_and_replay_refused(node):
    """Forged and unwanted Map-Registers are dropped at the workers' edge gate; a
    replay passes the gate (its MAC is good) and is refused by the shard."""
    all_before = node.counters()
    before, edge_before = all_before["map_server:0"], _edge(all_before)
    nonce = time.time_ns()
    assert _no_notify(register(["[0]10.1.9.0/24"], nonce=nonce, key=b"wrong-key"))
    assert _no_notify(register(["[0]10.77.0.0/16"], nonce=nonce + 1, key=SECRET.encode()))
    good = register(["[0]10.1.9.0/24"], nonce=nonce + 2, key=SECRET.encode(), xtr=b"\x42" * 16)
    assert udp_exchange(MR, good, src=RLOC, timeout=2.0) is not None      # accepted, Map-Notify
    assert _no_notify(good)                                              # the same bytes again
    after = poll(lambda: (lambda c: c if c.get("dropped.register.replayed-nonce", 0)
                          > before.get("dropped.register.replayed-nonce", 0) else None)(
                              node.counters()["map_server:0"]), 5, what="replay counted")
    edge = _edge(node.counters())
    for k in ("dropped.register.auth-failure", "dropped.register.no-site"):
        assert edge.get(k, 0) > edge_before.get(k, 0), k
        assert after.get(k, 0) == before.get(k, 0), k       # the shard never saw them
    keys = reg_keys(node)
    assert "[0]10.1.9.0/24" in keys and "[0]10.77.0.0/16" not in keys
    # withdraw it again so later tests see only the ETR's registrations
    bye = register(["[0]10.1.9.0/24"], nonce=nonce + 3, key=SECRET.encode(), xtr=b"\x42" * 16, ttl=0)
    assert udp_exchange(MR, bye, src=RLOC, timeout=2.0) is not None
    poll(lambda: "[0]10.1.9.0/24" not in reg_keys(node), 5, what="withdrawal")


def test_interop_sha1_key_field_0x0001_notify_to_source_port(node):
    """Open Overlay Router style: Key ID 0 / Algorithm 1 with a 20-byte HMAC-SHA-1, and
    the Map-Notify expected at the Map-Register's source port (not 4342)."""
    from common.wire.auth import verify
    from common.wire.messages import decode_message
    data = register(["[0]10.6.0.0/16"], nonce=time.time_ns(), key=b"oor-secret", alg=1,
                    xtr=b"\x07" * 16, proxy=True)
    assert data[12:16] == b"\x00\x01\x00\x14"
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((RLOC, 0))
        s.settimeout(2.0)
        s.sendto(data, MR)
        notify, frm = s.recvfrom(65535)  # arrives at our (ephemeral) source port
    finally:
        s.close()
    assert frm == MR
    n = decode_message(notify)
    assert type(n).__name__ == "MapNotify" and n.alg_id == 1 and len(n.auth_data) == 20
    assert verify(notify, b"oor-secret")
    r = node.wait_lig("10.6.1.1", "[0]10.6.0.0/16")
    assert not r["authoritative"] and r["rlocs"][0]["address"] == "192.0.2.1"  # a proxy reply
    bye = register(["[0]10.6.0.0/16"], nonce=time.time_ns(), key=b"oor-secret", alg=1,
                   xtr=b"\x07" * 16, ttl=0)
    assert udp_exchange(MR, bye, src=RLOC, timeout=2.0) is not None


def test_hung_role_is_restarted_by_the_watchdog(node):
    """SIGSTOP: the process exists but stops heartbeating; the watchdog restarts it."""
    victim = node.pid("itr:0")
    os.kill(victim, signal.SIGSTOP)
    try:
        poll(lambda: replaced(node, {"itr:0": victim}), 30, what="watchdog restart")
    finally:
        if pid_alive(victim):
            os.kill(victim, signal.SIGKILL)


def test_two_workers_both_answer_and_survive_one_killed(node):
    def answered():
        c = node.counters()
        return [c[f"map_resolver:{i}"].get("received", 0) for i in (0, 1)]
    base = answered()
    # many source ports: the kernel's SO_REUSEPORT hash spreads them over both workers
    for i in range(40):
        assert udp_exchange(MR, lambda port: ecm_request("10.5.1.1", nonce=i, itr=RLOC, sport=port),
                            src=RLOC, timeout=2.0)
    got = answered()
    assert got[0] > base[0] and got[1] > base[1], (base, got)
    victim = node.pid("map_resolver:0")
    os.kill(victim, signal.SIGKILL)
    poll(lambda: not pid_alive(victim), 5, what="worker gone")
    # while it is down, and while supervisord restarts it (its socket joining the
    # SO_REUSEPORT group again), every request is answered; like an ITR, a request may
    # be retransmitted once (a datagram can be lost in the moment a socket joins)
    retransmitted = 0
    for i in range(20):
        for attempt in range(2):
            if udp_exchange(MR, lambda port: ecm_request("10.5.1.1", nonce=100 + i, itr=RLOC, sport=port),
                            src=RLOC, timeout=2.0):
                break
            retransmitted += 1
        else:
            pytest.fail(f"request {i} unanswered after a retransmission")
    assert retransmitted <= 2
    poll(lambda: replaced(node, {"map_resolver:0": victim}), 20, what="worker restarted")


def test_bad_input_is_dropped_counted_and_survived(node):
    pids = {k: v["pid"] for k, v in node.status().items()}
    rng = random.Random(4342)
    good = ecm_request("10.1.1.7", nonce=5, itr=RLOC)
    reg = register(["[0]10.1.1.0/24"], nonce=1, key=SECRET.encode())
    samples = [good[:n] for n in (1, 3, 5, 10, 30, len(good) - 1)]                 # truncated
    samples += [bytes([0x20, 0, 0, 0xFF]) + bytes(8), bytes([0x10, 0, 0x1F, 0xFF]) + bytes(10)]  # counts
    samples += [reg[:14] + b"\xff\xff" + reg[16:]]                                   # wrong length
    samples += [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))) for _ in range(200)]
    before = node.counters()
    drop_before = sum(v for k, v in before["map_resolver:0"].items() if k.startswith("dropped."))
    drop_before += sum(v for k, v in before["map_resolver:1"].items() if k.startswith("dropped."))
    for s in samples:
        udp_exchange(MR, s, src=RLOC, timeout=0.01)
    after = poll(lambda: (lambda c: c if sum(v for i in (0, 1) for k, v in c[f"map_resolver:{i}"].items()
                                             if k.startswith("dropped.")) >= drop_before + 9 else None)(
        node.counters()), 10, what="drops counted")
    reasons = {k for i in (0, 1) for k in after[f"map_resolver:{i}"] if k.startswith("dropped.malformed")}
    assert len(reasons) >= 3, reasons
    assert {k: v["pid"] for k, v in node.status().items()} == pids  # nobody crashed
    assert node.lig("10.1.1.7")["eid"] == "[0]10.1.1.0/24"           # still serving


ROLES = ["bus", "map_server", "map_resolver", "etr", "itr", "watchdog"]


@pytest.mark.parametrize("how", ["restart", "kill"])
@pytest.mark.parametrize("role", ROLES)
def test_role_restart_loses_nothing(node, role, how):
    regs_before = reg_keys(node)
    assert set(EIDS.values()) <= regs_before
    old = {k: v["pid"] for k, v in node.status().items() if k.split(":")[0] == role}
    if how == "restart":
        r = node.decent("restart", role)
        assert r.returncode == 0, r.stderr
    else:
        for pid in old.values():
            os.kill(pid, signal.SIGKILL)
    poll(lambda: replaced(node, old), 30, what=f"{role} back")
    # answers correctly within a bounded time, nothing acknowledged is lost
    for eid, want in EIDS.items():
        node.wait_lig(eid, want, timeout=20)
    assert set(EIDS.values()) <= reg_keys(node)
    if role == "etr":
        # the restarted ETR's Map-Registers are accepted again under `strict`
        def accepted_again():
            c = node.counters()
            return c.get("etr:0", {}).get("map-notify.accepted", 0) >= 1
        poll(accepted_again, 15, what="restarted ETR registered again")


def test_registrations_expire_after_the_etr_stops(node):
    assert node.decent("stop", "etr").returncode == 0
    try:
        # lifetime 6 s: the Map-Server deletes them and every replica forgets
        poll(lambda: not (set(EIDS.values()) & reg_keys(node)), 20, what="expiry")
        # the replicas forgot 10.1.1.0/24: the negative beside it now covers the whole
        # configured 10.1.0.0/16 (while registered it was 10.1.128.0/17).  (10.1.1.7
        # itself is this node's own EID: with its Map-Server holding nothing, a request
        # for it goes to the node's ETR, which is stopped.)
        r = node.lig("10.1.200.1")
        assert r["negative"] and r["ttl"] == 1 and r["eid"] == "[0]10.1.0.0/16"
    finally:
        node.decent("start", "etr")
    node.wait_lig("10.1.1.7", "[0]10.1.1.0/24")
