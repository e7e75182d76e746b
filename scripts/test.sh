#!/usr/bin/env bash
# Run the test suite: scripts/test.sh [pytest args...]
#
# Sets up .venv first (a no-op when nothing changed), then runs pytest from the repository root, so
# pyproject.toml's configuration applies whatever the caller's cwd (test paths given as arguments are
# relative to the root). "No tests collected" (pytest exit code 5) counts as a failure: a typo in a
# path or -k expression must not look like a green run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"

status=0
"$ROOT/.venv/bin/python" -m pytest "$@" </dev/null || status=$?
if [[ "$status" -eq 5 ]]; then
    echo "test: no tests were collected (pytest exit code 5): treating as a failure" >&2
    exit 1
fi
exit "$status"
