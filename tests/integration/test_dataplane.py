"""The LISP data plane (RFC 9300) between two full nodes in network namespaces.

Node 1 (RLOC 172.16.1.2) and node 2 (172.16.2.2) each run every role inside their own
namespace, with TUN ``lisp0`` (IID 0) routing 10.0.0.0/8 and fd00::/16 into the
overlay, and TUN ``lisp1`` (IID 7, policy-routed table 107) for a second host with
the same addresses.  Node 1 is the Map-Server/Map-Resolver of both; node 1
forwards natively through its ``eth0``, node 2 has no native interface.
Hosts: h1 10.1.0.2 / fd00:1::2 and h1b 10.1.0.2 (IID 7) behind node 1; h2 10.2.0.2 /
fd00:2::2 and h2b 10.2.0.3 (IID 7) behind node 2.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from tests.integration.harness import down_all, poll, up_all
from tests.integration.netns import NsNode, Topology, need_root, run

pytestmark = pytest.mark.integration

KEY = "dp-secret"
MS = "172.16.1.2"


def site(k: int) -> str:
    return f"""
[[site]]
name = "s{k}"
[[site.key]]
id = 0
secret = "{KEY}"
[[site.prefix]]
eid = "10.{k}.0.0/24"
[[site.prefix]]
eid = "fd00:{k}::/48"
[[site.prefix]]
eid = "[7]10.{k}.0.0/24"
"""


def body(k: int, nodes: int = 2) -> str:
    native = 'native_interface = "eth0"' if k == 1 else ""
    return f"""
[roles]
map_resolver = {{ workers = 1 }}
map_server = {{ shards = 1 }}
etr = true
itr = true
dataplane = true

[itr]
map_resolvers = ["{MS}"]

[etr]
map_servers = [{{ address = "{MS}", key_id = 0, alg = "hmac-sha-256-128", secret = "{KEY}" }}]

{"".join(site(j) for j in range(1, nodes + 1)) if k == 1 else ""}

[[database_mapping]]
eid = "10.{k}.0.0/24"
[[database_mapping]]
eid = "fd00:{k}::/48"
[[database_mapping]]
eid = "[7]10.{k}.0.0/24"

[dataplane]
underlay_mtu = 1500
{native}

[[dataplane.interface]]
tun = "lisp0"
iid = 0
routes = ["10.0.0.0/8", "fd00::/16"]

[[dataplane.interface]]
tun = "lisp1"
iid = 7
routes = ["10.0.0.0/8"]
table = 107
"""


def add_iid7_hosts(topo: Topology) -> None:
    """h<k>b behind node k on veth "hb", routed by table 107 (IID 7): same 10.<k>.0/24."""
    for k, addr in ((1, "10.1.0.2"), (2, "10.2.0.3")):
        n, hb = topo.ns(f"n{k}"), topo.ns(f"h{k}b")
        run("ip", "netns", "add", hb)
        topo.names.append(hb)
        topo.ip(hb, "link", "set", "lo", "up")
        run("ip", "link", "add", "hb", "netns", n, "type", "veth", "peer", "name", "eth0", "netns", hb)
        topo.ip(n, "addr", "add", f"10.{k}.0.1/24", "dev", "hb", "noprefixroute")
        topo.ip(n, "link", "set", "hb", "up")
        topo.ip(n, "route", "add", f"10.{k}.0.0/24", "dev", "hb", "table", "107")
        topo.ip(n, "rule", "add", "iif", "hb", "lookup", "107")
        topo.ip(n, "rule", "add", "iif", "lisp1", "lookup", "107")
        topo.ip(hb, "addr", "add", f"{addr}/24", "dev", "eth0")
        topo.ip(hb, "link", "set", "eth0", "up")
        topo.ip(hb, "route", "add", "default", "via", f"10.{k}.0.1")


@pytest.fixture(scope="module")
def net():
    need_root()
    topo = Topology(f"dp{os.getpid() % 100000}", 2)
    nodes = []
    try:
        topo.create()
        add_iid7_hosts(topo)
        for k in (1, 2):
            nodes.append(NsNode(topo.ns(f"n{k}"), f"dp{k}", f"172.16.{k}.2", body(k)))
        up_all(nodes)
        for n in nodes:
            poll(n.all_running, 30, what=f"{n.name}: every role RUNNING")
        for want in ("[0]10.1.0.0/24", "[0]10.2.0.0/24", "[0]fd00:2::/48", "[7]10.2.0.0/24",
                     "[7]10.1.0.0/24"):
            addr = want.split("]")[1].split("/")[0]
            nodes[0].wait_lig(f"[{want[1]}]{addr}" if want.startswith("[7]") else addr, want, timeout=30)
        yield topo, nodes
    finally:
        down_all(nodes)
        topo.destroy()


def counters(node, role="dataplane:0") -> dict:
    return node.counters().get(role, {})


def test_ipv4_ping_first_packet_miss(net):
    topo, (n1, n2) = net
    r = topo.ping(1, "10.2.0.2", count=5)
    print(f"first ping across the overlay: {r.sent} sent, {r.lost} lost")
    assert r.received >= 4 and r.lost <= 1, r
    rows = {e["eid"]: e for e in _map_cache(n1)}
    assert "[0]10.2.0.0/24" in rows and rows["[0]10.2.0.0/24"]["rlocs"][0]["address"] == "172.16.2.2"
    # the counters reach `decent counters` with the dataplane's next heartbeat: polled,
    # as below (a fast machine read encap.packets 3 of the 4+ echoed pings before it)
    def counted() -> bool:
        c1, c2 = counters(n1), counters(n2)
        return (c1.get("encap.packets", 0) >= 4 and c1.get("decap.packets", 0) >= 4
                and c2.get("decap.packets", 0) >= 4 and c2.get("encap.bytes", 0) >= 4 * 84)
    poll(counted, 5, what="the pings encapsulated and decapsulated at both ends")


def _map_cache(node) -> list:
    import json
    r = node.decent("show", "map-cache", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_ipv6_eids_over_ipv4_rlocs(net):
    topo, _ = net
    r = topo.ping(1, "fd00:2::2", count=5)
    assert r.received >= 4 and r.lost <= 1, r


def test_two_iids_with_overlapping_eids_kept_apart(net):
    topo, (n1, n2) = net
    # h1b (IID 7) and h1 (IID 0) have the same address 10.1.0.2
    r = topo.ping(1, "10.2.0.3", count=3, wait=1)       # IID 0 has no 10.2.0.3
    assert r.received == 0, r
    ping7 = subprocess.run(["ip", "netns", "exec", topo.ns("h1b"), "ping", "-n", "-c", "5", "-i", "0.2",
                            "-W", "1", "10.2.0.3"], capture_output=True, text=True, timeout=60)
    assert re.search(r" [45] received", ping7.stdout), ping7.stdout
    bad = subprocess.run(["ip", "netns", "exec", topo.ns("h1b"), "ping", "-n", "-c", "3", "-i", "0.2",
                          "-W", "1", "10.2.0.2"], capture_output=True, text=True, timeout=60)
    assert " 0 received" in bad.stdout, bad.stdout   # IID 7 has no 10.2.0.2
    rows = {e["eid"] for e in _map_cache(n1)}
    assert {"[7]10.2.0.0/24", "[0]10.2.0.0/24"} <= rows


def test_negative_natively_forwarded_or_unreachable(net):
    topo, (n1, n2) = net
    r = topo.ping(1, "10.99.0.1", count=4)             # node 1 forwards natively via eth0
    assert r.received >= 3, r
    # counters travel in heartbeats: the last packets show up a heartbeat later
    poll(lambda: counters(n1).get("native.packets", 0) >= 3, 5, what="native packets counted")
    r2 = topo.ping(2, "10.99.0.1", count=3)            # node 2 has no native interface
    assert r2.received == 0 and "Unreachable" in r2.out, r2
    poll(lambda: counters(n2).get("dropped.native-no-interface", 0) >= 1, 5, what="no-interface drop counted")


def test_oversized_df_packet_gets_icmp_frag_needed(net):
    topo, (n1, _) = net
    topo.ping(1, "10.2.0.2", count=1)                    # cached
    r = topo.ping(1, "10.2.0.2", count=2, size=1472, df=True)   # 1500 bytes: 1536 outer
    assert r.received == 0 and re.search(r"mtu ?= ?1464", r.out), r
    # counters travel with the heartbeats: the drop shows within one period
    poll(lambda: counters(n1).get("dropped.too-big", 0) >= 1, 5, what="too-big drop counted")
    ok = topo.ping(1, "10.2.0.2", count=2, size=1436, df=True)  # 1464 bytes: fits exactly
    assert ok.received == 2, ok
    big = topo.ping(1, "fd00:2::2", count=2, size=1452, df=True)  # IPv6 1500 bytes: packet too big
    assert big.received == 0 and re.search(r"mtu ?= ?1464", big.out), big


def _ping_through(topo, action, count=60, interval=0.1):
    p = topo.ping_background(1, "10.2.0.2", count, interval)
    time.sleep(1.0)
    action()
    out, _ = p.communicate(timeout=count * interval + 30)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    sent, received = int(m.group(1)), int(m.group(2))
    seqs = [int(x) for x in re.findall(r"icmp_seq=(\d+) ttl", out)]
    return sent, received, seqs


def test_restart_itr_during_ping(net):
    topo, (n1, _) = net
    topo.ping(1, "10.2.0.2", count=1)
    sent, received, seqs = _ping_through(topo, lambda: n1.decent("restart", "itr", check=True))
    print(f"itr restart during a 10/s ping: {sent - received} of {sent} lost")
    assert sent - received <= 1 and seqs[-1] == sent


def test_restart_dataplane_during_ping(net):
    topo, (n1, _) = net
    topo.ping(1, "10.2.0.2", count=1)
    sent, received, seqs = _ping_through(topo, lambda: n1.decent("restart", "dataplane", check=True))
    print(f"dataplane restart during a 10/s ping: {sent - received} of {sent} lost")
    assert received >= sent // 2 and seqs[-1] == sent  # forwarding resumed with the cache it had
    rows = {e["eid"] for e in _map_cache(n1)}
    assert "[0]10.2.0.0/24" in rows


def test_wireshark_decodes_lisp_data_with_iid(net, tmp_path):
    topo, _ = net
    pcap = "/tmp/" + topo.ns("cap") + ".pcap"
    cap = subprocess.Popen(["ip", "netns", "exec", topo.ns("n2"), "dumpcap", "-q", "-i", "eth0", "-f",
                            "udp dst port 4341 and dst host 172.16.2.2", "-c", "6", "-a", "duration:20", "-w", pcap],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.5)
        topo.ping(1, "10.2.0.2", count=3)
        subprocess.run(["ip", "netns", "exec", topo.ns("h1b"), "ping", "-n", "-c", "3", "-i", "0.2",
                        "10.2.0.3"], capture_output=True, timeout=30)
        cap.wait(timeout=30)
        out = subprocess.run(["tshark", "-r", pcap, "-d", "udp.port==4341,lisp-data", "-T", "fields",
                              "-e", "lisp-data.flags.nonce", "-e", "lisp-data.flags.iid",
                              "-e", "lisp-data.iid", "-e", "ip.dst", "-e", "udp.srcport", "-e", "ip.ttl"],
                             capture_output=True, text=True, timeout=60).stdout
    finally:
        if cap.poll() is None:
            cap.kill()
        if os.path.exists(pcap):
            os.unlink(pcap)
    rows = [line.split("\t") for line in out.strip().splitlines()]
    assert len(rows) == 6, out
    by_inner = {}
    for nonce, ibit, iid, dsts, sport, ttls in rows:
        outer_dst, inner_dst = dsts.split(",")[:2]
        outer_ttl, inner_ttl = (int(x) for x in ttls.split(",")[:2])
        assert outer_ttl == inner_ttl - 1   # copied at encapsulation, then the core router's hop
        assert outer_dst == "172.16.2.2" and nonce in ("1", "True") and ibit in ("1", "True")
        assert 49152 <= int(sport.split(",")[0]) <= 65535
        by_inner.setdefault(inner_dst, set()).add(int(iid))
    assert by_inner == {"10.2.0.2": {0}, "10.2.0.3": {7}}


def test_down_removes_the_tun(net):
    topo, (_, n2) = net
    assert topo.ip(topo.ns("n2"), "link", "show", "lisp0", check=False).returncode == 0
    n2.down()
    assert topo.ip(topo.ns("n2"), "link", "show", "lisp0", check=False).returncode != 0
    assert topo.ip(topo.ns("n2"), "link", "show", "lisp1", check=False).returncode != 0
