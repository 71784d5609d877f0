"""`decent config check`: common.decent.cluster_check on parsed configs, and the CLI verb."""

from __future__ import annotations

import glob
import pathlib

import pytest

from cli.main import main as decent
from common.decent import cluster_check
from common.config import parse_config

REPO = pathlib.Path(__file__).resolve().parents[2]


def node(n: int, *, modulus=4, suffix="ms.example", mode="prefix", mask: object = 24,
         mappings=None, site_prefixes=None, secret=None, decent_mode="pull",
         ranges=None) -> dict:
    """A parsed-TOML dict for node ``n`` (127.0.1.n) registering 10.0.n.0/24 etc."""
    maps = mappings if mappings is not None else [f"10.0.{n}.0/24", f"fd0{n}:0:1::/48",
                                                  f"[1000]10.0.{n}.0/24"]
    prefixes = site_prefixes if site_prefixes is not None else \
        [p for m in range(1, 4) for p in (f"10.0.{m}.0/24", f"fd0{m}:0:1::/48",
                                          f"[1000]10.0.{m}.0/24")]
    d: dict = {
        "node": {"name": f"n{n}", "rlocs": [f"127.0.1.{n}"], "state_dir": f"s{n}"},
        "roles": {"etr": True, "itr": False},
        "site": [{"name": "all", "key": [{"id": 0, "secret": "s3cret"}],
                  "prefix": [{"eid": p} for p in prefixes]}],
        "database_mapping": [{"eid": e} for e in maps],
        "etr": {"decent_key": {"key_id": 0, "secret": secret or "s3cret"}},
        "decent": {"mode": decent_mode},
    }
    if decent_mode == "pull":
        d["decent"].update({"modulus": modulus, "suffix": suffix, "hash_mode": mode})
        if mode != "lispers":
            d["decent"]["hash_mask"] = mask
        if ranges is not None:
            d["decent"]["lookup_ranges"] = [{"range": r, "length": n} for r, n in ranges]
    else:
        d["etr"] = {"map_servers": [{"address": "127.0.0.1", "secret": "s3cret"}]}
    return d


def cfg(n: int, **kw):
    return parse_config(node(n, **kw), f"node{n}.toml", "/tmp")


def test_agreeing_files_are_consistent():
    cfgs = [cfg(1), cfg(2), cfg(3)]
    assert cluster_check.check(cfgs, sites=True) == []
    assert "3 file(s) agree: modulus 4, suffix ms.example, hash mode prefix, mask 24" in \
        cluster_check.summary(cfgs)


def test_each_disagreement_names_the_files():
    cfgs = [cfg(1), cfg(2, modulus=8), cfg(3, suffix="MS.Example."), cfg(4, mask=16)]
    found = [str(f) for f in cluster_check.check(cfgs)]
    assert found == [
        "disagreement: decent.modulus differs: 4 in node1.toml, node3.toml, node4.toml; "
        "8 in node2.toml",
        "disagreement: decent.hash_mask differs: 24 in node1.toml, node2.toml, node3.toml; "
        "16 in node4.toml"]  # the suffix differs only in case and the trailing dot


def test_suffix_mode_and_decent_mode_disagreements():
    found = [str(f) for f in cluster_check.check(
        [cfg(1), cfg(2, suffix="other.example"), cfg(3, mode="draft", mask=8),
         cfg(4, mode="lispers"), cfg(5, decent_mode="none")])]
    assert found[0] == ("disagreement: decent.mode differs: pull in node1.toml, node2.toml, "
                        "node3.toml, node4.toml; none in node5.toml")
    assert any(f.startswith("disagreement: decent.suffix differs: ms.example in node1.toml, "
                            "node3.toml, node4.toml; other.example in node2.toml") for f in found)
    assert any("decent.hash_mode differs: prefix in node1.toml, node2.toml; rfc9962 in "
               "node3.toml; lispers in node4.toml" in f for f in found)
    assert any("decent.hash_mask differs: 24 in node1.toml, node2.toml; 8 in node3.toml; "
               "none in node4.toml" in f for f in found)


def test_prefix_shorter_than_mask_is_reported():
    c = cfg(1, mappings=["10.0.0.0/16"], site_prefixes=["10.0.0.0/16", "10.0.1.0/24"])
    found = [str(f) for f in cluster_check.mask_findings(c)]
    assert found == [
        "mask: node1.toml: site[0].prefix[0].eid: [0]10.0.0.0/16: prefix /16 is shorter than "
        "the hash mask /24; lookups inside it hash to other indexes",
        "mask: node1.toml: database_mapping[0].eid: [0]10.0.0.0/16: prefix /16 is shorter "
        "than the hash mask /24; lookups inside it hash to other indexes"]


def test_draft_mask_cutting_inside_a_prefix_is_reported():
    # "[0]10.0.1" is the same for every host of 10.0.1.0/24; 12 bytes reach the last octet
    ok = cfg(1, mode="draft", mask=9, mappings=["10.0.1.0/24"], site_prefixes=["10.0.1.0/24"])
    assert cluster_check.mask_findings(ok) == []
    bad = cfg(1, mode="draft", mask=12, mappings=["10.0.1.0/24"],
              site_prefixes=["10.0.1.0/24"])
    found = [str(f) for f in cluster_check.mask_findings(bad)]
    assert len(found) == 2 and all("lookups inside it may miss its index" in f for f in found)


def test_rloc_claimed_twice():
    a, b = cfg(1), node(2)
    b["node"]["rlocs"] = ["127.0.1.1"]
    found = cluster_check.check([a, parse_config(b, "node2.toml", "/tmp")])
    assert [str(f) for f in found] == ["rloc: 127.0.1.1 is an RLOC of node1.toml, node2.toml"]


def test_sites_must_accept_every_mapping():
    a = cfg(1)
    b = cfg(2, site_prefixes=["10.0.1.0/24", "10.0.2.0/24"])       # lacks IPv6 and IID 1000
    c = cfg(3, secret="different")
    found = [str(f) for f in cluster_check.site_findings([a, b, c])]
    assert "sites: node2.toml: no site covers [0]fd01:0:1::/48, [1000]10.0.1.0/24 " \
           "(database mappings of node1.toml)" in found
    assert any(f.startswith("sites: node1.toml: site 'all' key id 0 has another secret than "
                            "etr.decent_key, for [0]10.0.3.0/24") and "node3.toml" in f
               for f in found)
    assert not any("secret" in f and "s3cret" in f for f in found)  # secrets never printed
    # an exact site prefix does not accept a more specific registration
    d = cfg(4, mappings=["10.0.1.128/25"], site_prefixes=["10.0.1.0/24"])
    assert any("without accept_more_specifics" in str(f)
               for f in cluster_check.site_findings([d]))


# -- the CLI verb ---------------------------------------------------------------------


def write(tmp_path, name: str, d: dict) -> str:
    lines = []

    def val(v):
        if isinstance(v, str):
            return '"' + v + '"'
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return str(v)
    for k, v in d.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                lines.append(f"[[{k}]]")
                lines += [f"{kk} = {val(vv)}" for kk, vv in item.items()]
        else:
            lines.append(f"[{k}]")
            lines += [f"{kk} = {val(vv)}" for kk, vv in v.items()]
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def test_cli_exit_codes(tmp_path, capsys):
    a = write(tmp_path, "a.toml", node(1))
    b = write(tmp_path, "b.toml", node(2))
    assert decent(["config", "check", a, b]) == 0
    assert "2 file(s) agree" in capsys.readouterr().out
    c = write(tmp_path, "c.toml", node(3, modulus=5))
    assert decent(["config", "check", a, b, c]) == 1
    out = capsys.readouterr().out
    assert "decent.modulus differs: 4 in " + a + ", " + b + "; 5 in " + c in out
    assert "1 problem(s) in 3 file(s)" in out
    d = write(tmp_path, "d.toml", node(4, mappings=["10.0.0.0/16"],
                                       site_prefixes=["10.0.4.0/24"]))
    assert decent(["config", "check", d]) == 1
    assert "shorter than the hash mask" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nname = "x"\nrlocs = []\n')
    assert decent(["config", "check", a, str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.toml" in err and "node.rlocs" in err
    assert decent(["config", "check", a, str(tmp_path / "missing.toml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_example_pull_cluster_is_consistent(capsys):
    files = sorted(glob.glob(str(REPO / "configs" / "pull" / "*.toml")))
    assert len(files) == 8, files
    assert decent(["config", "check", "--sites"] + files) == 0, capsys.readouterr().out


# ---------------------------------------------------------------------------
# RFC 9962 section 5.2 lookup ranges

RANGES = [("[0]10.0.0.0/16", 24), ("fd00::/8", 48), ("[1000]10.0.0.0/16", 24)]


def test_draft_and_rfc9962_are_one_mode_and_ranges_agree():
    cfgs = [cfg(1, mode="rfc9962", mask="none", ranges=RANGES),
            cfg(2, mode="draft", mask="none", ranges=list(reversed(RANGES)))]
    assert cluster_check.check(cfgs, sites=True) == []
    assert ("hash mode rfc9962, mask none, lookup ranges [[0]10.0.0.0/16=24, [0]fd00::/8=48, "
            "[1000]10.0.0.0/16=24]") in \
        cluster_check.summary(cfgs)


def test_lookup_range_disagreement_names_the_files():
    cfgs = [cfg(1, mode="rfc9962", mask="none", ranges=RANGES),
            cfg(2, mode="rfc9962", mask="none", ranges=RANGES),
            cfg(3, mode="rfc9962", mask="none", ranges=[("[0]10.0.0.0/16", 25)] + RANGES[1:]),
            cfg(4, mode="rfc9962", mask="none")]
    found = [str(f) for f in cluster_check.check(cfgs) if f.kind == "disagreement"]
    assert found == [
        "disagreement: decent.lookup_ranges differs: [[0]10.0.0.0/16=24, [0]fd00::/8=48, "
        "[1000]10.0.0.0/16=24] in node1.toml, node2.toml; [[0]10.0.0.0/16=25, [0]fd00::/8=48, "
        "[1000]10.0.0.0/16=24] in node3.toml; [] in node4.toml"]


def test_prefix_shorter_than_lookup_length_is_reported():
    c = cfg(1, mode="rfc9962", mask="none", ranges=[("[0]10.0.0.0/16", 24)],
            mappings=["10.0.0.0/23", "10.0.5.0/24", "10.0.6.16/28"],
            site_prefixes=["10.0.0.0/16", "10.0.0.0/23", "10.0.5.0/24", "10.0.6.16/28"])
    found = [str(f) for f in cluster_check.mask_findings(c)]
    assert found == [
        "mask: node1.toml: site[0].prefix[0].eid: [0]10.0.0.0/16: prefix /16 is shorter than the "
        "lookup length /24 of range [0]10.0.0.0/16; lookups inside it hash to other indexes",
        "mask: node1.toml: site[0].prefix[1].eid: [0]10.0.0.0/23: prefix /23 is shorter than the "
        "lookup length /24 of range [0]10.0.0.0/16; lookups inside it hash to other indexes",
        "mask: node1.toml: database_mapping[0].eid: [0]10.0.0.0/23: prefix /23 is shorter than "
        "the lookup length /24 of range [0]10.0.0.0/16; lookups inside it hash to other indexes"]


def test_lookup_ranges_config_errors():
    from common.config import ConfigError
    bad = [
        ({"hash_mode": "prefix", "hash_mask": 24, "lookup_ranges": [{"range": "10.0.0.0/8", "length": 16}]},
         "decent.lookup_ranges", 'only used with hash_mode "rfc9962", not "prefix"'),
        ({"hash_mode": "rfc9962", "hash_mask": "none", "lookup_ranges": [{"range": "10.0.0.0/8", "length": 4}]},
         "decent.lookup_ranges[0].length", "4 out of range 8..32"),
        ({"hash_mode": "rfc9962", "hash_mask": "none", "lookup_ranges": [{"range": "10.0.0.0/8"}]},
         "decent.lookup_ranges[0].length", "missing"),
        ({"hash_mode": "rfc9962", "hash_mask": "none",
          "lookup_ranges": [{"range": "239.0.0.0/8-0.0.0.0/0", "length": 16}]},
         "decent.lookup_ranges[0].range", "a lookup range is a unicast IPv4 or IPv6 prefix"),
        ({"hash_mode": "rfc9962", "hash_mask": "none",
          "lookup_ranges": [{"range": "10.0.0.0/8", "length": 16}, {"range": "[0]10.0.0.0/8", "length": 24}]},
         "decent.lookup_ranges[1].range", "[0]10.0.0.0/8 is listed twice"),
        ({"hash_mode": "rfc9962", "hash_mask": "none", "lookup_ranges": "10.0.0.0/8=16"},
         "decent.lookup_ranges", "expected an array of { range, length } tables"),
    ]
    for decent, path, reason in bad:
        d = node(1, mode="rfc9962", mask="none")
        d["decent"].update(decent)
        with pytest.raises(ConfigError) as exc:
            parse_config(d, "x.toml", "/tmp")
        assert exc.value.key_path == path and reason in exc.value.reason, (decent, str(exc.value))


# ---------------------------------------------------------------------------
# push mode (RFC 9962 section 4.3: members must agree on sites and keys)

CURVE_A = "F3O1GTuuA^h-NToRGmkQ*a4c<[aq-Yop-=Uf+=FT"
CURVE_B = "G3O1GTuuA^h-NToRGmkQ*a4c<[aq-Yop-=Uf+=FT"


def push_node(n: int, *, group="224.2.0.1", iid=0, seeds=None, curve=CURVE_A, secret="s3cret",
              prefixes=("10.2.0.0/16",), more=True, policy="strict", extra_site=False) -> dict:
    sites = [{"name": "demo", "nonce_policy": policy, "key": [{"id": 0, "secret": secret}],
              "prefix": [{"eid": p, "accept_more_specifics": more} for p in prefixes]}]
    if extra_site:
        sites.append({"name": "extra", "key": [{"id": 1, "secret": "x"}],
                      "prefix": [{"eid": "10.9.0.0/16"}]})
    return {
        "node": {"name": f"p{n}", "rlocs": [f"127.0.2.{n}"], "state_dir": f"s{n}"},
        "site": sites,
        "database_mapping": [{"eid": f"10.2.{n}.0/24"}],
        "etr": {"decent_key": {"key_id": 0, "secret": secret}},
        "decent": {"mode": "push", "group": group, "iid": iid,
                   "seed_rlocs": seeds if seeds is not None else [f"127.0.2.{1 if n != 1 else 2}"],
                   "curve_secret": curve},
    }


def pcfg(n: int, **kw):
    return parse_config(push_node(n, **kw), f"m{n}.toml", "/tmp")


def test_push_members_that_agree_are_consistent():
    cfgs = [pcfg(1), pcfg(2), pcfg(3)]
    assert cluster_check.check(cfgs) == []
    assert cluster_check.summary(cfgs) == ("3 file(s) agree: push group [0]224.2.0.1, 1 seed "
                                           "RLOC(s), 1 site(s) with the same prefixes and keys")


def test_push_disagreements_one_line_each_naming_the_files():
    cfgs = [pcfg(1), pcfg(2, group="224.2.0.9", iid=5, curve=CURVE_B, seeds=["127.0.2.77"]),
            pcfg(3, secret="other", prefixes=("10.2.0.0/16", "10.3.0.0/16"), more=False,
                 policy="warn", extra_site=True)]
    found = [str(f) for f in cluster_check.check(cfgs)]
    assert found == [
        "push: decent.group differs: 224.2.0.1 in m1.toml, m3.toml; 224.2.0.9 in m2.toml",
        "push: decent.iid differs: 0 in m1.toml, m3.toml; 5 in m2.toml",
        "push: m2.toml: decent.seed_rlocs 127.0.2.77 is no RLOC of any member file",
        "push: decent.curve_secret differs: secret A in m1.toml, m3.toml; secret B in m2.toml",
        "push: site 'demo' prefixes differ: [[0]10.2.0.0/16 (more-specifics)] in m1.toml, "
        "m2.toml; [[0]10.2.0.0/16, [0]10.3.0.0/16] in m3.toml",
        "push: site 'demo' nonce_policy differs: strict in m1.toml, m2.toml; warn in m3.toml",
        "push: site 'demo' key id 0 secret differs: secret A in m1.toml, m2.toml; secret B in "
        "m3.toml",
        "push: site 'extra' is in m3.toml but not in m1.toml, m2.toml",
    ]
    text = "\n".join(found)
    assert "s3cret" not in text and "other" not in text and CURVE_A not in text


def test_push_check_through_the_cli(tmp_path, capsys):
    a = write(tmp_path, "a.toml", push_node(1))
    b = write(tmp_path, "b.toml", push_node(2))
    assert decent(["config", "check", a, b]) == 0
    assert "2 file(s) agree: push group" in capsys.readouterr().out
    c = write(tmp_path, "c.toml", push_node(3, secret="other"))
    assert decent(["config", "check", a, b, c]) == 1
    out = capsys.readouterr().out
    assert f"push: site 'demo' key id 0 secret differs: secret A in {a}, {b}; secret B in {c}" in out


def test_example_push_group_is_consistent(capsys):
    files = sorted(glob.glob(str(REPO / "configs" / "push" / "*.toml")))
    assert len(files) == 3, files
    assert decent(["config", "check"] + files) == 0, capsys.readouterr().out
