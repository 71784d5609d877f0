#!/usr/bin/env bash
# Run every benchmark once and write bench/results/*.json and *.png.
#
#   bench/run.sh                  # full sizes (about 15-25 minutes on 2 cores)
#   bench/run.sh --quick          # shorter runs, scale at 100k + 20k registrations
#   bench/run.sh lookup register  # only some of: lookup register scale pull push bus dataplane abuse remote restart
#
# On an already set-up checkout (scripts/setup.sh is run first anyway: it only
# checks when everything is there).  Bench-only dependencies (matplotlib for the
# plots, py-spy for the live profile) are installed into .venv if missing; gcc
# compiles bench/c/*.c into bench/build/.  Loopback only; every node a program
# starts is stopped by that program.  The figures are reported, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0
WHICH=()
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    lookup|register|scale|pull|push|bus|dataplane|abuse|remote|restart) WHICH+=("$a") ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done
[ ${#WHICH[@]} -gt 0 ] || WHICH=(lookup register scale pull push abuse)

scripts/setup.sh
command -v gcc >/dev/null || { echo "bench/run.sh: gcc is required (apt-get install gcc)" >&2; exit 1; }
PY=.venv/bin/python
$PY -c 'import matplotlib' 2>/dev/null || $PY -m pip install -q --disable-pip-version-check matplotlib 2>&1 | grep -v '^WARNING: Location' || true
[ -x .venv/bin/py-spy ] || $PY -m pip install -q --disable-pip-version-check py-spy 2>&1 | grep -v '^WARNING: Location' || true
mkdir -p bench/results

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
failed=()
for b in "${WHICH[@]}"; do
  echo
  echo "=== $b ==="
  set +e
  case "$b" in
    lookup)
      if [ $QUICK = 1 ]; then timeout 900 $PY bench/lookup.py --quick --seconds 2
      else timeout 1200 $PY bench/lookup.py; fi ;;
    register)
      if [ $QUICK = 1 ]; then timeout 600 $PY bench/register.py --seconds 2 --count 20000
      else timeout 900 $PY bench/register.py; fi ;;
    scale)
      if [ $QUICK = 1 ]; then timeout 900 $PY bench/scale.py --v4 100000 --v6 20000 --order-sizes 10000,20000,40000
      else timeout 2400 $PY bench/scale.py --default-timers-wait 240; fi ;;
    pull)
      timeout 600 $PY bench/pull.py ;;
    push)
      if [ -f bench/push.py ]; then timeout 900 $PY bench/push.py; else echo "(bench/push.py not there yet)"; fi ;;
    bus)
      timeout 600 $PY bench/bus_throughput.py ;;
    abuse)       # in process: reply amplification bound, spoofed flood to one victim
      timeout 300 $PY bench/abuse.py ;;
    dataplane)   # root: network namespaces and TUN (not in the default run)
      if [ $QUICK = 1 ]; then timeout 600 $PY bench/dataplane.py --seconds 2 --rounds 1
      else timeout 900 $PY bench/dataplane.py; fi ;;
    restart)     # map_server restarts resumed vs with snapshots, cold start (not in the default run)
      if [ $QUICK = 1 ]; then timeout 900 $PY bench/restart.py --v4 100000 --v6 20000 --load-s 20
      else timeout 2400 $PY bench/restart.py; fi ;;
    remote)      # a node across hosts on loopback, CURVE bus (not in the default run)
      if [ $QUICK = 1 ]; then timeout 600 $PY bench/remote.py --seconds 2 --changes 30
      else timeout 900 $PY bench/remote.py; fi ;;
  esac
  rc=$?
  set -e
  [ $rc -eq 0 ] || { echo "bench/run.sh: $b failed (exit $rc)"; failed+=("$b"); }
done
echo
echo "bench/run.sh: done in $(( $(date +%s) - start )) s; results in bench/results/"
if [ ${#failed[@]} -gt 0 ]; then
  echo "bench/run.sh: failed: ${failed[*]}" >&2
  exit 1
fi
