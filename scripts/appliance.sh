#!/usr/bin/env bash
# Quick start: set up, start the appliance (every role under supervisord, on
# loopback, configs/appliance.toml) and show it answering.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
CFG=${1:-configs/appliance.toml}
decent up -c "$CFG"     # prints the status table once every role is RUNNING
echo
# The ETR registers within a second or two of starting; wait for it (bounded).
for i in $(seq 1 30); do
  if decent lig 10.1.1.1 -c "$CFG" --count 1 --timeout 1 --json >/dev/null 2>&1; then break; fi
  sleep 1
done
for eid in 10.1.1.1 2001:db8:1:1::1 '[1000]10.2.1.1' 192.0.2.99; do
  echo "\$ decent lig $eid"
  decent lig "$eid" -c "$CFG" || true
  echo
done
echo "\$ decent show registrations"
decent show registrations -c "$CFG"
echo
echo "The appliance keeps running: try 'decent counters', 'decent restart map_server',"
echo "'decent logs etr', the Prometheus metrics at http://127.0.0.1:9464/metrics,"
echo "and stop it with: .venv/bin/decent down"
