#!/usr/bin/env bash
# Run the caching reverse proxy: scripts/run.sh [UPSTREAM_URL] [extra mitmdump-style args...]
#
# The upstream (http://HOST[:PORT] or https://...; anything else is refused) comes from, in order: the
# first argument (unless it starts with -; "" for none, e.g. before a flow filter), the
# UPSTREAM_URL environment variable, UPSTREAM_URL in the .env the addon reads ($CACHE_ENV_FILE, else
# <repo>/.env; read with python-dotenv, the file is not sourced). With none, a demo upstream
# (scripts/demo_upstream.py) is started on a free port and stopped again when the proxy exits, and a
# few curl commands to try are printed.
#
# The proxy is stock `mitmdump --mode reverse:URL -s addons/cache.py` with the defaults below (every
# mitmproxy feature: replay, map/modify, -w, per-flow lines...). PRODUCTION=1 runs the lean production
# launcher instead (scripts/serve.sh, `python -m mitmcache`: the same cache on a mitmproxy that loads only
# what it needs, 2-3x the requests per second; docs/launcher.md). MITMWEB=1 runs mitmweb (the web UI,
# with the comment column showing each flow's cache decision). MITMDUMP=1 is still accepted: it is the
# default.
#
# Defaults, each left out when the extra arguments --set it themselves: connection_strategy=lazy,
# flow_detail=0, termlog_verbosity=$TERMLOG. TERMLOG defaults to info, or to debug when the cache logs
# at debug (cache_log_level from --set, else CACHE_LOG_LEVEL from the environment, else from the .env
# the addon reads): mitmproxy's termlog drops debug lines at info, and the cache's per-decision lines
# are debug lines.
#
# Environment: LISTEN_HOST (127.0.0.1), LISTEN_PORT (8080), TERMLOG (see above: mitmproxy's
# termlog_verbosity), PRODUCTION=1, MITMWEB=1, CACHE_ENV_FILE (default <repo>/.env when it exists).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ "${PRODUCTION:-}" == "1" && "${MITMWEB:-}" == "1" ]]; then
    echo "run: PRODUCTION=1 and MITMWEB=1 exclude each other (the lean launcher has no web UI)" >&2
    exit 2
fi
"$ROOT/scripts/setup.sh"
PY="$ROOT/.venv/bin/python"

# An upstream without its scheme would be misread: as a first argument mitmdump takes it for a flow
# filter, and in --mode reverse:HOST:PORT mitmproxy assumes https. Refuse it, saying what is wanted.
check_upstream() {  # check_upstream VALUE WHERE
    if [[ ! "$1" =~ ^https?://[^/?#[:space:]]+ ]]; then
        echo "run: invalid upstream '$1' ($2): expected a URL with its scheme, such as" \
            "http://127.0.0.1:8000 or https://api.example.com" >&2
        exit 2
    fi
}

url=""
if [[ $# -gt 0 && -z "$1" ]]; then
    shift  # an explicit empty URL means "none given"
elif [[ $# -gt 0 && "$1" != -* ]]; then
    check_upstream "$1" "the first argument"
    url="$1"
    shift
fi
if [[ -z "$url" && -n "${UPSTREAM_URL:-}" ]]; then
    check_upstream "$UPSTREAM_URL" "environment variable UPSTREAM_URL"
    url="$UPSTREAM_URL"
fi
# The .env the addon reads (relative to the working directory, like the addon's): $CACHE_ENV_FILE, else
# the repository's (exported below).
env_file="${CACHE_ENV_FILE:-$ROOT/.env}"
if [[ -z "$url" && -f "$env_file" ]]; then
    # python-dotenv parses it exactly as the addon will (quotes, comments, export prefix).
    url="$("$PY" -c 'import sys; from dotenv import dotenv_values
print(dotenv_values(sys.argv[1]).get("UPSTREAM_URL") or "")' "$env_file")"
    if [[ -n "$url" ]]; then check_upstream "$url" "UPSTREAM_URL in $env_file"; fi
fi

host="${LISTEN_HOST:-127.0.0.1}"
port="${LISTEN_PORT:-8080}"
demo_pid=""
demo_log=""

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    if [[ -n "$demo_pid" ]]; then
        kill "$demo_pid" 2>/dev/null || true
        wait "$demo_pid" 2>/dev/null || true
    fi
    if [[ -n "$demo_log" ]]; then rm -f "$demo_log"; fi
}

if [[ -z "$url" ]]; then
    trap cleanup EXIT
    demo_log="$(mktemp "${TMPDIR:-/tmp}/demo-upstream.XXXXXX")"
    "$PY" "$ROOT/scripts/demo_upstream.py" --host 127.0.0.1 --port 0 >"$demo_log" 2>&1 &
    demo_pid=$!
    for _ in $(seq 100); do
        if grep -q '^demo upstream listening on ' "$demo_log"; then break; fi
        if ! kill -0 "$demo_pid" 2>/dev/null; then
            cat "$demo_log" >&2
            echo "run: the demo upstream failed to start" >&2
            exit 1
        fi
        sleep 0.1
    done
    url="$(sed -n 's/^demo upstream listening on //p' "$demo_log" | head -n 1)"
    [[ -n "$url" ]] || { cat "$demo_log" >&2; echo "run: the demo upstream did not start in 10 s" >&2; exit 1; }
    proxy="http://$host:$port"
    cat <<EOF
run: no UPSTREAM_URL given: started the demo upstream at $url (stopped on exit). Try:
    curl -i $proxy/time                     # first: X-Cache: MISS
    curl -i $proxy/time                     # again: X-Cache: HIT, with Age
    etag=\$(curl -sI $proxy/time | tr -d '\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: //p')
    curl -i -H "If-None-Match: \$etag" $proxy/time    # 304 Not Modified, no body
    curl -s "$proxy/items?page=2" >/dev/null; curl -I "$proxy/items?page=2"   # HEAD, from the cached GET
    curl -s $proxy/__cache/health           # the addon's health endpoint
EOF
fi

script_args=(-s "$ROOT/addons/cache.py")
ui_args=()
if [[ "${MITMWEB:-}" == "1" ]]; then
    tool="$ROOT/.venv/bin/mitmweb"
    ui_args=(--set web_open_browser=false)
    for column in tls icon path method status size time comment; do
        ui_args+=(--set "web_columns=$column")
    done
elif [[ "${PRODUCTION:-}" == "1" ]]; then
    tool="$ROOT/scripts/serve.sh"  # the cache is built in
    script_args=()
    export MITMCACHE_SKIP_SETUP=1  # done above
else
    tool="$ROOT/.venv/bin/mitmdump"  # the default (MITMDUMP=1 asks for it explicitly)
fi

# Print the value the extra arguments --set option "$1" to (`--set NAME=VALUE` or `--set=NAME=VALUE`);
# fail when they don't set it. mitmproxy refuses a scalar option given twice ("Received multiple values"), so our
# defaults must step aside for the caller's.
user_value() {
    local previous="" arg
    for arg in "${extra_args[@]}"; do
        if [[ "$previous" == "--set" && "$arg" == "$1="* ]]; then
            printf '%s\n' "${arg#"$1="}"
            return 0
        fi
        if [[ "$arg" == "--set=$1="* ]]; then
            printf '%s\n' "${arg#"--set=$1="}"
            return 0
        fi
        previous="$arg"
    done
    return 1
}
user_sets() { user_value "$1" >/dev/null; }
extra_args=("$@")

# The cache's log level, with the addon's precedence: --set, environment (even when empty), .env.
if ! log_level="$(user_value cache_log_level)"; then
    if [[ -n "${CACHE_LOG_LEVEL+set}" ]]; then
        log_level="$CACHE_LOG_LEVEL"
    elif [[ -f "$env_file" ]]; then
        log_level="$("$PY" -c 'import sys; from dotenv import dotenv_values
print(dotenv_values(sys.argv[1]).get("CACHE_LOG_LEVEL") or "")' "$env_file")"
    else
        log_level=""
    fi
fi
termlog_default=info
if [[ "$(printf '%s' "$log_level" | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')" == "debug" ]]; then
    termlog_default=debug  # otherwise termlog would drop the cache's per-decision (debug) lines
fi

defaults=()
for setting in connection_strategy=lazy flow_detail=0 "termlog_verbosity=${TERMLOG:-$termlog_default}"; do
    if ! user_sets "${setting%%=*}"; then defaults+=(--set "$setting"); fi
done

# The addon reads .env from its working directory; point it at the repository's, wherever we run from.
if [[ -z "${CACHE_ENV_FILE:-}" && -f "$ROOT/.env" ]]; then
    export CACHE_ENV_FILE="$ROOT/.env"
fi

cmd=("$tool" --mode "reverse:$url@$host:$port" "${script_args[@]}" "${defaults[@]}" "${ui_args[@]}" "$@")
echo "run: ${cmd[*]}"

if [[ -z "$demo_pid" ]]; then
    exec "${cmd[@]}"
fi

# With a demo upstream to stop afterwards we cannot exec. The proxy runs as a child that we wait for,
# and SIGINT/SIGTERM sent to this script are forwarded to it (a plain foreground child would not get a
# SIGTERM sent to the script, and bash would hold the trap until the child exits).
"${cmd[@]}" <&0 &
proxy_pid=$!
trap 'kill -TERM "$proxy_pid" 2>/dev/null || true' INT TERM
while true; do
    status=0
    wait "$proxy_pid" || status=$?
    # A trapped signal interrupts `wait` (status > 128) while the proxy is still shutting down: wait
    # again, so the script exits with the proxy's own exit code once it is gone.
    kill -0 "$proxy_pid" 2>/dev/null || break
done
exit "$status"
