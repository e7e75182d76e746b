#!/usr/bin/env bash
# Create or refresh the project's virtualenv at <repo>/.venv.
#
# Why this exists: mitmproxy 12 needs Python >= 3.12, but the default `python3` on the development and CI
# machines is older, so the right interpreter has to be found rather than assumed. The script is
# idempotent and cheap when nothing changed (it reinstalls only when requirements.txt changed), so
# run.sh and test.sh call it every time. It never reads stdin, so it works under CI=true.
#
# Interpreter search order: $PYTHON, python3.13, python3.12, python3 on PATH, then
# $(pyenv root)/versions/3.1[2-9]*/bin/python (when pyenv is on PATH) and
# ${PYENV_ROOT:-$HOME/.pyenv}/versions/3.1[2-9]*/bin/python (pyenv installed but not on PATH).
# Each candidate is *run* to check its version (pyenv shims exist on PATH even for versions that are
# not active, and fail when run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/requirements.txt"
STAMP="$VENV/.requirements.sha256"
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# Serialise concurrent runs (e.g. run.sh and test.sh started together) so they don't build one venv twice.
# Locking the script file itself needs no extra lock file in the work tree.
if command -v flock >/dev/null 2>&1; then
    exec 9<"${BASH_SOURCE[0]}"
    flock 9
fi

# True when "$1" runs and is Python >= 3.12.
is_good_python() {
    [[ -n "$1" ]] || return 1
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' </dev/null >/dev/null 2>&1
}

python_version() { "$1" -c 'import platform; print(platform.python_version())'; }

# Print the pyenv roots to search, one per line: `pyenv root` when pyenv is on PATH, then $PYENV_ROOT or
# ~/.pyenv (pyenv's own default), each once.
pyenv_roots() {
    local first=""
    if command -v pyenv >/dev/null 2>&1; then
        first="$(pyenv root 2>/dev/null || true)"
        if [[ -n "$first" ]]; then printf '%s\n' "$first"; fi
    fi
    local default="${PYENV_ROOT:-${HOME:-}/.pyenv}"
    if [[ "$default" != "$first" ]]; then printf '%s\n' "$default"; fi
}

# Print candidate interpreters, one per line, in search order.
candidates() {
    if [[ -n "${PYTHON:-}" ]]; then printf '%s\n' "$PYTHON"; fi
    local name path
    for name in python3.13 python3.12 python3; do
        if path="$(command -v "$name" 2>/dev/null)"; then printf '%s\n' "$path"; fi
    done
    local root
    while IFS= read -r root; do
        for path in "$root"/versions/3.1[2-9]*/bin/python; do
            if [[ -x "$path" ]]; then printf '%s\n' "$path"; fi
        done
    done < <(pyenv_roots)
}

find_python() {
    local candidate
    while IFS= read -r candidate; do
        if is_good_python "$candidate"; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done < <(candidates)
    return 1
}

requirements_hash() {
    "$VENV/bin/python" -c \
        'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$REQUIREMENTS"
}

[[ -f "$REQUIREMENTS" ]] || die "missing $REQUIREMENTS"

# 1. The virtualenv: keep it when its interpreter still runs and is new enough.
if is_good_python "$VENV/bin/python"; then
    say ".venv ok (Python $(python_version "$VENV/bin/python"))"
else
    if ! PY="$(find_python)"; then
        {
            echo "setup: error: no Python >= 3.12 found (mitmproxy 12 needs it)."
            echo "setup: tried, in order: \$PYTHON (${PYTHON:-unset}), python3.13, python3.12, python3 on PATH,"
            pyenv_roots | sed 's|^\(.*\)$|setup:   \1/versions/3.1[2-9]*/bin/python|'
            echo "setup: found but unusable:"
            candidates | sed 's/^/setup:   /'
            echo "setup: install one, e.g. 'pyenv install 3.12' or 'apt-get install python3.12 python3.12-venv',"
            echo "setup: or point PYTHON=/path/to/python3.12 at an existing one."
        } >&2
        exit 1
    fi
    if [[ -e "$VENV" ]]; then
        say "replacing unusable .venv"
        rm -rf -- "$VENV"
    fi
    say "creating .venv with $PY (Python $(python_version "$PY"))"
    "$PY" -m venv "$VENV" </dev/null
fi

# 2. The requirements: install only when requirements.txt changed since the last successful install.
want="$(requirements_hash)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want" == "$have" ]]; then
    say "requirements up to date"
else
    say "installing requirements.txt"
    if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        "$VENV/bin/python" -m ensurepip --upgrade >/dev/null </dev/null
    fi
    # pip's output goes to a log shown only on failure: some machines' pip.conf makes even a
    # successful quiet install print pages of index warnings.
    pip_log="$VENV/pip-install.log"
    if ! "$VENV/bin/python" -m pip install --quiet -r "$REQUIREMENTS" </dev/null >"$pip_log" 2>&1; then
        cat "$pip_log" >&2
        die "pip install -r requirements.txt failed (output above, also in $pip_log)"
    fi
    printf '%s\n' "$want" >"$STAMP"
fi

# Optimised bytecode (*.opt-1.pyc) for scripts/serve.sh, which runs Python with PYTHONOPTIMIZE=1. Python
# writes none itself where PYTHONDONTWRITEBYTECODE is set, and compiling mitmproxy afresh costs ~2.5 s of
# CPU at every start. Once per requirements.txt (the check itself takes ~1 s, too slow for every run).
OPT_STAMP="$VENV/.opt1-bytecode.sha256"
if [[ "$(cat "$OPT_STAMP" 2>/dev/null || true)" != "$want" ]]; then
    say "compiling optimised bytecode for PYTHONOPTIMIZE=1 (once)"
    site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    "$VENV/bin/python" -O -m compileall -q -j 0 "$site" </dev/null >/dev/null 2>&1 || true
    printf '%s\n' "$want" >"$OPT_STAMP"
fi

# The cache's own bytecode, plain and optimised: where PYTHONDONTWRITEBYTECODE is set (as on the CI
# machines), every proxy start would otherwise compile the package again (~0.1-0.2 s of each start).
# Up-to-date files are only checked (~0.1 s); edited ones are compiled again, here or by Python.
if [[ -d "$ROOT/addons" ]]; then
    "$VENV/bin/python" -m compileall -q -o 0 -o 1 "$ROOT/addons" </dev/null >/dev/null 2>&1 || true
fi
