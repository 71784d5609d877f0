"""LISP-Decent pull mode: eight nodes, a real DNS server, modulus 4, two per index.

Nodes 127.0.30.1-8 each run every role and register their own EIDs (IPv4, IPv6,
instance-ID 1000).  dnsmasq on 127.0.53.30 serves ``<i>.pull.test`` with two nodes
per index.  Every EID, asked as a host address inside its prefix, is answered via
every node's Map-Resolver (forwarded with M=1 to the index's set, then to the ETR),
and every registration is stored on exactly the two nodes of its index.  Then: a
DNS change moves registrations (withdrawn from the old member), a stopped node
leaves its index served by the other, and a node with another modulus is refused
and counted.  (`draft` mode: test_pull_draft.py; lookup ranges: test_pull_ranges.py.)
"""

from __future__ import annotations

import json
import time

import pytest

from common.decent.hash import LookupRange, decent_index
from common.wire.eidtext import format_eid, parse_eidspec
from common.wire.messages import MapReply, decode_message
from tests.integration.dnsserver import DnsServer, require_dnsmasq
from tests.integration.harness import Node, down_all, in_parallel, poll, udp_exchange, up_all
from tests.unit.msfixtures import ecm_request

pytestmark = pytest.mark.integration

N = 8
MODULUS = 4
SUFFIX = "pull.test"
CLIENT = "127.0.30.100"   # where the test's own Map-Requests come from (the ITR-RLOC)

TIMERS = """
[timers]
register_interval = 2
register_interval_fast = 1
fast_period = 4
registration_lifetime = 8
map_notify_retry_initial = 0.5
map_notify_retry_max = 2
heartbeat_interval = 1
watchdog_timeout = 15
snapshot_timeout = 2
"""


def rloc(k: int) -> str:
    return f"127.0.30.{k}"


def eids(k: int) -> dict:
    """node k's prefixes -> a host inside each."""
    return {f"[0]10.30.{k}.0/24": f"10.30.{k}.7", f"[0]fd30:0:{k}::/48": f"fd30:0:{k}::7",
            f"[1000]10.30.{k}.0/24": f"[1000]10.30.{k}.9"}


def node_body(k: int, dns: DnsServer, mode: str, mask, modulus: int = MODULUS, ranges=()) -> str:
    sites = "".join(f"""
[[site]]
name = "n{j}"
key = [{{ id = 0, alg = "hmac-sha-256-128", secret = "secret-{j}" }}]
prefix = [{", ".join(f'{{ eid = "{p}" }}' for p in eids(j))}]
""" for j in range(1, N + 2))
    mappings = "".join(f'\n[[database_mapping]]\neid = "{p}"\n' for p in eids(k))
    lookup = ""
    if ranges:
        lookup = "lookup_ranges = [" + ", ".join(f'{{ range = "{r}", length = {n} }}'
                                                 for r, n in ranges) + "]"
    return f"""
[roles]
map_resolver = {{ workers = 1 }}
map_server = {{ shards = 1 }}
etr = true
itr = true
discovery = true

[decent]
mode = "pull"
modulus = {modulus}
suffix = "{SUFFIX}"
hash_mode = "{mode}"
hash_mask = {mask if isinstance(mask, int) else f'"{mask}"'}
{lookup}
name_servers = ["{dns.endpoint}"]
resolve_min = 1
resolve_max = 3
query_timeout = 1

[etr]
decent_key = {{ key_id = 0, alg = "hmac-sha-256-128", secret = "secret-{k}" }}
{mappings}
{sites}
"""


def index_sets() -> dict:
    return {i: [rloc(2 * i + 1), rloc(2 * i + 2)] for i in range(MODULUS)}


def resolve_via(node_addr: str, host: str) -> MapReply | None:
    data = udp_exchange((node_addr, 4342), lambda port: ecm_request(host, itr=CLIENT, sport=port),
                        src=CLIENT, timeout=2.0)
    if data is None:
        return None
    m = decode_message(data)
    return m if isinstance(m, MapReply) else None


def answered_prefix(node_addr: str, host: str, attempts: int = 1) -> str | None:
    """What ``node_addr`` answers for ``host``; ``attempts`` > 1 retransmits like an ITR."""
    for _ in range(attempts):
        r = resolve_via(node_addr, host)
        if r is not None and r.records and r.records[0].locators:
            return format_eid(r.records[0].prefix)
    return None


class Cluster:
    def __init__(self, mode: str, mask, tag: str, ranges=()) -> None:
        """``ranges``: (``[<iid>]<prefix>``, lookup length) pairs (rfc9962 mode)."""
        require_dnsmasq()
        self.mode, self.mask = mode, None if mask == "none" else mask
        self.ranges = tuple(LookupRange(parse_eidspec(r), n) for r, n in ranges)
        self.dns = DnsServer(SUFFIX, address="127.0.53.30", ttl=1).start()
        self.dns.set_records(index_sets())
        self.nodes = {k: Node(f"{tag}{k}", rloc(k), node_body(k, self.dns, mode, mask, ranges=ranges),
                              timers=TIMERS)
                      for k in range(1, N + 1)}

    def index(self, prefix: str) -> int:
        return decent_index(parse_eidspec(prefix), MODULUS, self.mode, self.mask, self.ranges)

    def up(self) -> None:
        up_all(self.nodes.values())

    def down(self) -> None:
        try:
            down_all(self.nodes.values())
        finally:
            self.dns.close()

    def stored(self) -> dict:
        """node -> set of registered EID prefixes (the nodes asked at once)."""
        got = in_parallel(lambda n: n.registrations(), self.nodes.values())
        return {k: {r["eid"] for r in regs} for k, regs in zip(self.nodes, got)}

    def placement_ok(self, sets: dict, alive=None) -> bool:
        stored = self.stored()
        for k in (alive or self.nodes):
            want = {p for j in range(1, N + 1) for p in eids(j)
                    if rloc(k) in sets[self.index(p)]}
            if stored[k] != want:
                return False
        return True

    def all_resolve(self, via=None, owners=None, attempts: int = 1) -> bool:
        for k in via or self.nodes:
            for j in owners or range(1, N + 1):
                for prefix, host in eids(j).items():
                    if answered_prefix(rloc(k), host, attempts) != prefix:
                        return False
        return True


@pytest.fixture(scope="module")
def prefix_cluster():
    c = Cluster("prefix", 24, "pp")
    try:
        c.up()
        yield c
    finally:
        c.down()


def test_hash_spreads_the_address_plan(prefix_cluster):
    used = {prefix_cluster.index(p) for j in range(1, N + 1) for p in eids(j)}
    assert len(used) >= 3  # the test is meaningless if everything lands on one index


def test_every_eid_resolves_from_every_node_and_is_stored_on_its_two(prefix_cluster):
    c = prefix_cluster
    poll(lambda: c.placement_ok(index_sets()), 60, 0.5, what="registrations on their index's two nodes")
    poll(c.all_resolve, 30, 0.5, what="every EID from every node")
    # forwarded: a node that does not serve the index counted a forward to the set
    k = next(k for k in c.nodes if rloc(k) not in index_sets()[c.index("[0]10.30.1.0/24")])
    counters = c.nodes[k].counters()["map_resolver:0"]
    assert counters.get("forwarded-to-set", 0) > 0
    # and `decent lig --decent` asks the index set itself, as an ITR of the node would
    r = c.nodes[1].decent("lig", "--decent", "10.30.5.7", "--json", "--count", "3")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["eid"] == "[0]10.30.5.0/24"


def test_negative_replies_never_cover_other_indexes(prefix_cluster):
    r = resolve_via(rloc(1), "10.30.200.1")  # hashes somewhere; nothing registered there
    assert r is not None and not r.records[0].locators
    assert r.records[0].mask_len >= 24


def test_seeds_table_shown(prefix_cluster):
    r = prefix_cluster.nodes[1].decent("show", "seeds", "--json")
    assert r.returncode == 0, r.stderr
    table = {e["index"]: sorted(e["addrs"]) for e in json.loads(r.stdout)}
    assert table == {i: sorted(a) for i, a in index_sets().items()}


def test_dns_change_moves_registrations(prefix_cluster):
    c = prefix_cluster
    i = c.index("[0]10.30.1.0/24")
    old = index_sets()
    new = dict(old)
    leaving, staying = old[i]
    joining = next(rloc(k) for k in range(1, N + 1) if rloc(k) not in old[i])
    new[i] = [staying, joining]
    k_leaving = int(leaving.rsplit(".", 1)[1])
    expired_before = c.nodes[k_leaving].counters()["map_server:0"].get("expired", 0)
    t0 = time.monotonic()
    c.dns.set_records(new)
    try:
        poll(lambda: c.placement_ok(new), 30, 0.5, what="registrations moved to the new set")
        print(f"placement converged {time.monotonic() - t0:.1f} s after the DNS change")
        # withdrawn from the member that left (TTL-0 Map-Registers), not left to expire
        assert c.nodes[k_leaving].counters()["map_server:0"].get("expired", 0) == expired_before
        poll(c.all_resolve, 30, 0.5, what="lookups follow the new set")
    finally:
        c.dns.set_records(old)
    poll(lambda: c.placement_ok(old), 30, 0.5, what="back to the original placement")


def test_a_stopped_node_leaves_its_index_served(prefix_cluster):
    c = prefix_cluster
    victim = 3
    assert c.nodes[victim].decent("down").returncode == 0
    try:
        alive = [k for k in c.nodes if k != victim]
        # node 3's own EIDs go with its ETR; everyone else's stay answered, those of
        # node 3's index by its partner (a request forwarded to the dead member is
        # lost, and the ITR's retransmission goes round-robin to the other)
        poll(lambda: c.all_resolve(via=alive[:3], owners=alive, attempts=2), 30, 0.5,
             what="lookups without node 3")
    finally:
        c.nodes[victim].up()
    poll(lambda: c.placement_ok(index_sets()), 60, 0.5, what="node 3 complete again")


def test_a_node_with_another_modulus_is_refused_and_counted(prefix_cluster):
    c = prefix_cluster
    odd = Node("ppodd", rloc(9), node_body(9, c.dns, "prefix", 24, modulus=5), timers=TIMERS)
    try:
        odd.up()
        # its ETR registers where modulus 5 says; nodes serving other indexes refuse
        def refused():
            total = 0
            for counters in in_parallel(lambda n: n.counters(), c.nodes.values()):
                ms = counters.get("map_server:0", {})
                total += sum(v for k, v in ms.items() if "index-not-served" in k)
            return total
        poll(refused, 30, 0.5, what="mismatched registrations refused and counted")
        log = (c.nodes[1].dir / "st" / "logs").glob("map_server_0.log")
        text = "".join(p.read_text() for p in log) + "".join(
            (n.dir / "st" / "logs" / "map_server_0.log").read_text() for n in c.nodes.values())
        assert "modulus" in text
    finally:
        odd.down()
