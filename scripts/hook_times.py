#!/usr/bin/env python3
"""Where a request's CPU goes in a real proxy: the cache's hooks and steps, exactly, and the garbage
collector's time, against a pass-through (misses) or the ceiling addon (hits) in the same run.

    .venv/bin/python scripts/hook_times.py [--hits] [--lean] [--seconds 10]

Starts the test origin and two proxies one after the other on core 0 (``scripts/hook_timer.py``
inside them), loads each with wrk on core 1 for ``--seconds`` (1 KiB bodies; every request a new
URL for misses, one cached URL for hits) and prints the CPU per request of each process, the
collector's time per request and per generation, and the cache's time per hook and step
(``hook_timer.py`` explains how). ``--lean`` runs the production launcher instead of mitmdump.
The timers themselves add about 0.2 us per timed call.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import bench
import benchlib as bl

HOOK_TIMER = Path(__file__).resolve().with_name("hook_timer.py")
LEAN = bl.REPO_ROOT / "scripts" / "serve.sh"


def measure(name: str, argv: tuple[str, ...], origin_url: str, path: str, unique: bool, seconds: float):
    out = Path(tempfile.mkdtemp(prefix="hook-times-")) / "report.json"
    os.environ["HOOK_TIMER_OUT"] = str(out)
    os.environ["HOOK_TIMER_CACHE"] = "1" if "cache" in name else "0"
    server = bl.Server(name, argv, origin_url).start()
    try:
        bl.run_wrk(server.url + path, connections=bench.CONNECTIONS, seconds=2, unique=unique)  # warm up
        run = bl.run_wrk(
            server.url + path,
            connections=bench.CONNECTIONS,
            seconds=seconds,
            unique=unique,
            measure_pid=server.pid,
        )
    finally:
        server.stop()  # the report is written at shutdown
    return run, json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--hits", action="store_true", help="cached hits against the ceiling addon (default: misses)"
    )
    parser.add_argument("--lean", action="store_true", help="the production launcher instead of mitmdump")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    bl.ensure_wrk()
    bl.pin(0, bl.LOAD_CORE)
    tool = LEAN if args.lean else bl.MITMDUMP
    cache_only = ("--no-cache",) if args.lean else ()
    timer = ("-s", str(HOOK_TIMER), "--set", f"cache_admin_key={bl.ADMIN_KEY}")
    if args.hits:
        path, unique = "/bench/hit-1k", False
        baseline = (
            "ceiling",
            bl.reverse_proxy(*cache_only, "-s", str(bl.CEILING_ADDON), "-s", str(HOOK_TIMER), tool=tool),
        )
    else:
        path, unique = "/bench/miss-1k", True
        baseline = ("passthrough", bl.reverse_proxy(*cache_only, "-s", str(HOOK_TIMER), tool=tool))
    origin = bl.start_origin()
    try:
        for route, size in bench.ROUTES.items():
            origin.route(route, headers=bench.ROUTE_HEADERS, size=size)
        results = [
            measure(baseline[0], baseline[1], origin.url, path, unique, args.seconds),
            measure(
                "cache",
                bl.reverse_proxy(*cache_only, *timer, tool=tool),
                origin.url,
                path,
                unique,
                args.seconds,
            ),
        ]
    finally:
        bl.stop_all()
        origin.stop()
    print(
        f"# {'hits' if args.hits else 'misses'}, {'production launcher' if args.lean else 'mitmdump'}, {args.seconds:g} s each\n"
    )
    print(
        "| process | req/s | CPU us/request | GC us/request | GC ms per generation (collections) | tracked objects | entries |"
    )
    print("|---|---|---|---|---|---|---|")
    for (name, _), (run, report) in zip([baseline, ("cache", None)], results, strict=True):
        requests = max(run.requests, 1)
        gc_ns = sum(ns for ns, _ in report["gc"].values())
        generations = ", ".join(f"{g}: {ns / 1e6:.0f} ({n})" for g, (ns, n) in sorted(report["gc"].items()))
        print(
            f"| {name} | {run.rps:,.0f} | {run.cpu_ms_per_request * 1000:.0f} | {gc_ns / 1000 / requests:.1f} | "
            f"{generations} | {report['tracked_objects']:,} | {report['entries']:,} |"
        )
    hooks = results[1][1]["hooks"]
    print("\n| cache hook or step | us per call | calls |\n|---|---|---|")
    for name, (ns, calls) in sorted(hooks.items(), key=lambda item: -item[1][0]):
        print(f"| {name} | {ns / 1000 / calls:.1f} | {calls:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
