#!/usr/bin/env bash
# The production launcher: scripts/serve.sh [--workers N] --mode reverse:URL[@HOST:PORT] [mitmdump-style args...]
#
# --workers N runs N launchers on one port under a supervisor (restarts, clean stop, exit codes:
# addons/mitmcache/workers.py, docs/workers-and-disk.md); N > 1 needs CACHE_STORE=redis://...
#
# Runs the cache on a lean mitmproxy (addons/mitmcache/launcher.py; docs/launcher.md): the same cache and
# settings (.env, environment, --set) as `mitmdump -s addons/cache.py`, at about twice the requests per
# second. It accepts mitmdump's command line for what it supports and refuses the rest with a message.
# The arguments are passed on as they are: nothing is defaulted here (scripts/run.sh does that), so use
# e.g. --set connection_strategy=lazy as the README says.
#
# Sets up .venv first (skipped with MITMCACHE_SKIP_SETUP=1, for callers that just did), then execs
# Python in place of this script, so the PID, signals and exit code are the proxy's own. Python runs
# with PYTHONOPTIMIZE=1 (asserts off; PYTHONOPTIMIZE=0 turns that off again) and addons/ on PYTHONPATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ "${MITMCACHE_SKIP_SETUP:-}" != "1" ]]; then
    "$ROOT/scripts/setup.sh" >&2
fi
export PYTHONPATH="$ROOT/addons${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONOPTIMIZE="${PYTHONOPTIMIZE:-1}"
exec "$ROOT/.venv/bin/python" -m mitmcache "$@"
