#!/usr/bin/env python3
"""Mutation check of the Map-Server / Map-Resolver machines: does the suite notice?

Each mutant is one source edit that reintroduces a defect the review found (or a
behaviour a test should pin).  For each, the repository is copied to a temporary
directory, the edit applied, and the machine tests run; a mutant is "killed" when
they fail.  Exit status 1 if any mutant survives.

    .venv/bin/python scripts/mutants.py [-k NAME]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = ["tests/unit/test_ms_semantics.py", "tests/unit/test_negative_oracle.py",
         "tests/unit/test_mapserver.py", "tests/unit/test_resolver.py",
         "tests/unit/test_reply_bound.py", "tests/unit/test_negative_cache.py"]
MS, RES, AUTH = "common/machines/mapserver.py", "common/machines/resolver.py", "common/wire/auth.py"
MSR = "common/machines/msrecords.py"     # the Map-Server's per-record judging (MapServer._record)

# the test that the edits below still apply fails on any mutated tree by construction:
# leave it out of the mutant runs, or it "kills" every mutant
PYTEST = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
          "--deselect", "tests/unit/test_ms_semantics.py::test_the_mutation_check_still_applies"]

# (name, file, old text, new text)
MUTANTS = [
    ("notify sent before the commit", MS,
     "        res = self.compute_register(data, src, now, remaining)\n",
     "        res = self.compute_register(data, src, now, remaining)\n"
     "        if send is not None and res.notify is not None:\n"
     "            send(res.notify_to[0], res.notify_to[1], res.notify)\n"),
    ("no commit at all", MS, "                commit(res.changes, res.nonces)\n", "                pass\n"),
    ("memory applied before the commit", MS,
     "        if commit is not None:\n            try:\n                commit(res.changes, res.nonces)",
     "        self.apply(res, now)\n        if commit is not None:\n            try:\n"
     "                commit(res.changes, res.nonces)"),
    ("notify before publish", MS,
     "        if publish is not None and res.changes:\n            publish(res.changes)\n"
     "        if send is not None:\n",
     "        if send is not None and res.notify is not None:\n"
     "            send(res.notify_to[0], res.notify_to[1], res.notify)\n"
     "        if publish is not None and res.changes:\n            publish(res.changes)\n"
     "        if False:\n"),
    ("P=1 probe in an ECM answered", RES, "        if inner.probe:\n", "        if False:\n"),
    ("inner port 4341 accepted", RES, "        if 4341 in (msg.ip.sport, msg.ip.dport):\n", "        if False:\n"),
    ("configured prefixes ignored by the negative", RES,
     "negative_prefix(eid, [self.table, self.configured], floor=floor)",
     "negative_prefix(eid, [self.table], floor=floor)"),
    ("prefix request not answered for its first address", RES,
     "            if hit is None and eid.length < _BITS[eid.address.version]:\n", "            if False:\n"),
    ("TTL-0 withdrawal with merge deletes every registrant", MSR,
     "                if (not merge) or k == key:\n", "                if True:\n"),
    ("warn keeps the last nonce, not the highest", MS, "max(last, msg.nonce)", "msg.nonce"),
    ("ITR-RLOC family ignored", RES, '        if getattr(a, "version", None) == version:\n', "        if True:\n"),
    ("answer cache shared across families", RES, "(hit, version)", "(hit, 0)"),
    ("short MAC coverage tried without the I bit", AUTH,
     "announced = (mtype == 3 and data[0] & 0x02) or (mtype == 4 and data[0] & 0x08)", "announced = True"),
    ("a shard judges only its own sites", MS, "        self.site_table = SiteTable(sites)\n",
     "        self.site_table = SiteTable([s for s in sites if own is None or s.name in own])\n"),
    ("non-IP locators stored as they come", MSR,
     "            ip = ip_of(loc.address)\n            if ip is None:\n",
     "            ip = loc.address\n            if ip is None:\n"),
    ("RLE entries stored as they come", MSR,
     "                    ip = ip_of(x.address)\n", "                    ip = x.address\n"),
    ("snapshot entries get a fresh lifetime", MSR, "            life = remaining\n",
     "            life = self.lifetime\n"),
    ("multicast negatives ignore configured prefixes", RES,
     "        covering = self.configured.covering(eid)\n",
     "        covering = None if eid.is_multicast else self.configured.covering(eid)\n"),
    ("Map-Notify lists refused records too", MS, "MapNotify(msg.nonce, tuple(accepted),",
     "MapNotify(msg.nonce, msg.records,"),
    ("nonces tracked per source address", MS,
     'f"{site.name}|{msg.key_id}|p:{format_eid(e)}"', 'f"{site.name}|{msg.key_id}|a:{src[0]}"'),
    ("xTR-ID trusted outside the MAC", MS,
     'xtr = msg.xtr_id if (msg.xtr_id and coverage == "all") else None', "xtr = msg.xtr_id"),
    ("refresh under a new xTR-ID is no change", "common/machines/regtable.py",
     "and self.xtr_id == other.xtr_id and self.registrant == other.registrant", ""),
    ("only the first request record answered", RES,
     "        eids = [r.prefix for r in inner.records[:MAX_RECORDS]]",
     "        eids = [r.prefix for r in inner.records[:1]]"),
    ("D (dont-map-reply) ignored", RES, "        if inner.dont_map_reply:\n", "        if False:\n"),
    ("no carved record when the rest of the reply is full", RES,
     "                kind, a, b = self._carved(eid, local)\n", "                pass\n"),
    ("reply size not checked against the MTU", RES, "len(b) > room", "False"),
    ("carved record is the whole match", "common/machines/regtable.py",
     "carved = negative_prefix(eid, [self], floor=best.length)", "carved = best"),
    ("prefix request carved for itself, not its first address", RES,
     "        found = self.table.carve(host)\n", "        found = self.table.carve(eid)\n"),
    ("pending network numbers never merged into the sorted index", "common/machines/regtable.py",
     "            nets.extend(pending)\n", "            pass\n"),
    ("negative cache entry one bit too wide", RES, 'tree[f"{neg.address}/{neg.length}"] = answer',
     'tree[f"{neg.address}/{max(0, neg.length - 1)}"] = answer'),
    ("no unsolicited Map-Notify", MSR, "                self._plan_unsolicited(new, existing, src, res)\n",
     "                pass\n"),
]


def run(name_filter: str | None) -> int:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    survived = []
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        root = Path(tmp) / "repo"
        for f in files:
            src = REPO / f
            if src.is_file():
                (root / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, root / f)
        base = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
                              cwd=root, capture_output=True, text=True)
        if base.returncode != 0:
            print("the unmutated tests fail; fix them first:\n" + base.stdout[-2000:])
            return 2
        for name, path, old, new in MUTANTS:
            if name_filter and name_filter not in name:
                continue
            target = root / path
            text = target.read_text()
            if text.count(old) < 1:
                print(f"STALE    {name}: the text to mutate is gone from {path}")
                survived.append(name)
                continue
            target.write_text(text.replace(old, new))
            t0 = time.monotonic()
            r = subprocess.run([*PYTEST, *TESTS],
                               cwd=root, capture_output=True, text=True)
            target.write_text(text)
            killed = r.returncode != 0
            failed = next((ln.split(" - ")[0] for ln in r.stdout.splitlines() if ln.startswith("FAILED")), "")
            print(f"{'killed ' if killed else 'SURVIVED'} {name} ({time.monotonic() - t0:.1f}s) {failed}")
            if not killed:
                survived.append(name)
    print(f"{len(survived)} survived" + (": " + "; ".join(survived) if survived else ""))
    return 1 if survived else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", help="only mutants whose name contains this")
    sys.exit(run(ap.parse_args().k))
