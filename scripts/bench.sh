#!/usr/bin/env bash
# The benchmark, in one command: scripts/bench.sh [--quick] [--only NAME[,NAME...]] [--json out.json] [--strict]
#
# Sets up .venv (scripts/setup.sh), then runs scripts/bench.py with the venv's Python. bench.py installs
# the load generator `wrk` (Debian package) when it is missing and it runs as root with apt-get; otherwise
# it stops and says how to install it. Everything runs on 127.0.0.1 and stops by itself: about 15
# minutes for the full run on a 2-core machine, under 2 minutes with --quick. Output: markdown tables and
# one PASS/MISS line per budget on stdout, progress on stderr. See docs/performance.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" >&2
cd "$ROOT"
exec "$ROOT/.venv/bin/python" "$ROOT/scripts/bench.py" "$@" </dev/null
