#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# the slowest tests named at the end: where the suite's time goes
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 tests "$@"
