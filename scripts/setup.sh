#!/usr/bin/env bash
# Install system packages (tshark, dnsmasq, nsd) and the Python virtualenv in .venv.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
command -v nsd >/dev/null 2>&1 || [ -x /usr/sbin/nsd ] || need+=(nsd)   # DNSSEC tests: a signed zone
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)   # data-plane tests (netns)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
# the C receive loop of the map_resolver workers (roles/_fastloop.c, built by pip below)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
"${PYTHON:-python3}" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections 2>/dev/null || true
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import zmq, msgpack, dns, cryptography, uvloop, pytricia, supervisor, hypothesis, prometheus_client' 
.venv/bin/python -c 'import roles._fastloop' 2>/dev/null || echo "setup: WARNING: roles._fastloop (C) not built: workers use the Python fast path"
echo "setup: ok ($(.venv/bin/python --version), tshark $(tshark --version 2>/dev/null | head -1 | awk '{print $3}'))"
