#!/usr/bin/env python3
"""How many CPU instructions the cache's hooks execute per miss or per hit, counted by valgrind.

    .venv/bin/python scripts/hook_instructions.py [--hits] [--gzip] [--lean] [--repo PATH]

A measuring tool, not product code. Timings on a shared machine move by ±25 % between runs (see
docs/performance.md), far more than one change to a hook saves; an instruction count does not
move: the same code gives the same count within about 1 %, on a quiet machine or a busy one (the
runs use a fixed ``PYTHONHASHSEED``: with a random one, counts differed by up to 2.5 %).
This drives the cache's four flow hooks (``requestheaders``, ``request``, ``responseheaders``,
``response``) in one process, as mitmproxy would for a flow through a reverse proxy, each flow
built from mitmproxy's own types (``mitmproxy.test.taddons`` loads the addon): a new URL each time
(misses, 1 KiB body) or one stored URL (``--hits``). Valgrind's callgrind counts every
instruction of four such runs: with and without the hooks, each for two numbers of flows, so that
start-up and building the flows cancel out. ``--repo`` measures another checkout (a ``git
worktree`` of the commit to compare with); ``--lean`` runs the interpreter with ``-O``, as the
production launcher does. What it cannot show: mitmproxy's own work around the hooks, and the
CPU's caches, which in a real proxy make the same instructions take about twice as long.
"""

import argparse
import asyncio
import inspect
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 200  # flows before counting starts to matter: caches filled, code specialised
RUNS = (500, 1500)  # flows in the short and the long run; their difference is what is counted
MISS_BODY = b"x" * 1024
JSON_BODY = (b'{"id": 12345, "name": "item", "tags": ["a", "b"], "price": 12.5}, ' * 160)[: 10 * 1024]
REQUEST_FIELDS = ((b"host", b"api.example:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*"))


def drive(flows: int, *, hooks: bool, hits: bool, gzip: bool) -> None:
    """Run ``flows`` flows (after ``WARM_UP``) through the cache's hooks, or only build them."""
    from mitmproxy import http
    from mitmproxy.test import taddons, tflow

    from mitmcache.addon import Cache

    body = JSON_BODY if gzip else MISS_BODY
    media_type = b"application/json" if gzip else b"application/octet-stream"
    request_fields = REQUEST_FIELDS + (((b"accept-encoding", b"gzip"),) if gzip else ())
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()).encode()
    response_fields = (
        (b"content-type", media_type),
        (b"cache-control", b"max-age=3600"),
        (b"date", date),
        (b"content-length", str(len(body)).encode()),
    )
    expected = "HIT" if hits else "MISS"

    def new_flow(i: int) -> http.HTTPFlow:
        path = b"/bench/hit" if hits else b"/bench/miss?u=%d" % i
        now = time.time()
        flow = http.HTTPFlow(tflow.tclient_conn(), tflow.tserver_conn())
        flow.request = http.Request(
            "api.example", 8000, b"GET", b"http", b"", path, b"HTTP/1.1",
            http.Headers(request_fields), b"", None, now, now,
        )  # fmt: skip
        return flow

    async def one(cache: Cache, i: int, upstream: bool) -> None:
        flow = new_flow(i)
        response = http.Response(
            b"HTTP/1.1", 200, b"OK", http.Headers(response_fields), None, None, time.time(), None
        )
        if not hooks:
            return
        cache.requestheaders(flow)
        if inspect.isawaitable(pending := cache.request(flow)):
            await pending
        if flow.response is None:  # forwarded: the upstream's response arrives
            flow.response = response
            cache.responseheaders(flow)
            flow.response.data.content = body
        if inspect.isawaitable(pending := cache.response(flow)):
            await pending
        got = flow.response.headers.get("x-cache", "")
        if not upstream and not got.startswith(expected):
            raise AssertionError(f"expected {expected}, the cache answered {got!r}")

    async def run() -> None:
        cache = Cache()
        with taddons.context(cache) as context:
            context.configure(cache, cache_admin_key="hook-instructions")
            if hits and hooks:
                await one(cache, 0, upstream=True)  # stores the URL every later flow hits
            for i in range(WARM_UP + flows):
                await one(cache, i + 1, upstream=False)
            cache.done()

    asyncio.run(run())


def count(
    python_flags: list[str], repo: Path, flows: int, *, hooks: bool, hits: bool, gzip: bool
) -> subprocess.Popen:
    argv = [sys.executable, *python_flags, __file__, "--drive", str(flows), "--repo", str(repo)]
    argv += [flag for flag, on in (("--no-hooks", not hooks), ("--hits", hits), ("--gzip", gzip)) if on]
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    # A fixed hash seed: with a random one, how sets and dicts probe changes from run to run, and
    # so did the count, by up to 2.5 % (within about 1 % with the seed fixed).
    env = {**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
    return subprocess.Popen(
        [*valgrind, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def collected(process: subprocess.Popen) -> int:
    """The instruction count callgrind reports for a finished run (``==PID== Collected : N``)."""
    out, err = process.communicate()
    found = re.search(r"Collected\s*:\s*(\d+)", err)
    if process.returncode != 0 or found is None:
        raise RuntimeError(f"the counted run failed ({process.returncode}):\n{out}\n{err[-3000:]}")
    return int(found.group(1))


def per_flow(short: int, long: int, bare_short: int, bare_long: int, flows: int) -> float:
    """The hooks' instructions per flow: what the extra flows cost with the hooks, minus what they
    cost without them (building the flows)."""
    return ((long - short) - (bare_long - bare_short)) / flows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hits", action="store_true", help="hits on one stored URL (default: misses)")
    parser.add_argument("--gzip", action="store_true", help="a 10 KiB JSON body and a client accepting gzip")
    parser.add_argument("--lean", action="store_true", help="run with -O, as the production launcher does")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="the checkout whose addons/ to measure")
    parser.add_argument("--drive", type=int, metavar="FLOWS", help=argparse.SUPPRESS)
    parser.add_argument("--no-hooks", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(args.repo.resolve() / "addons"))
    if args.drive is not None:
        drive(args.drive, hooks=not args.no_hooks, hits=args.hits, gzip=args.gzip)
        return 0
    if shutil.which("valgrind") is None:
        print("hook_instructions: valgrind is not installed (apt install valgrind)", file=sys.stderr)
        return 2
    flags = ["-O"] if args.lean else []
    kind = {"hits": args.hits, "gzip": args.gzip}
    short, long = RUNS
    with_hooks = [count(flags, args.repo, n, hooks=True, **kind) for n in RUNS]  # two at a time
    counts = [collected(p) for p in with_hooks]
    without = [count(flags, args.repo, n, hooks=False, **kind) for n in RUNS]
    counts += [collected(p) for p in without]
    what = ("hit" if args.hits else "miss") + (" (10 KiB JSON, gzip client)" if args.gzip else " (1 KiB)")
    result = per_flow(*counts, long - short)
    print(f"{result / 1000:,.1f} k instructions per {what}, {args.repo}{' (-O)' if args.lean else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
