#!/usr/bin/env python3
"""How many CPU instructions a whole proxy process executes per request, counted by valgrind: the
cache against the process it is measured against (a pass-through for misses, the ceiling addon for
hits), as the throughput budgets pair them.

    .venv/bin/python scripts/proxy_instructions.py [--hits] [--lean] [--requests 400] [--caches]
                                                   [--connections 16]

A measuring tool, not product code. ``scripts/hook_instructions.py`` counts the cache's hooks alone;
this counts everything the process does for a request: mitmproxy's own work, its dispatch of the
hooks, the hooks, the garbage collector and the event loop. Both proxies run under valgrind's
callgrind at once (about 40 times slower, which an instruction count does not mind), behind the
test origin; one client on one keep-alive connection sends a request at a time, 1 KiB bodies (a new
URL each for misses, one cached URL for hits); ``--connections N`` sends on N connections at once,
so that flows overlap in the proxy as under the benchmark's load. After a warm-up the counters are zeroed
(``callgrind_control -z``) and dumped (``-d``) between two complete exchanges, so the count covers
exactly ``--requests`` requests. The ratio of two counts is what the budgets' time ratio would be
if every instruction took as long as every other; where the time ratio is higher, the difference
is in how the instructions run, not in how many there are. ``--caches`` also counts the misses of
valgrind's model of the CPU's caches (about twice as slow).
"""

import argparse
import http.client
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import bench
import benchlib as bl

WARM_UP = 300  # requests before counting: imports done, code specialised, the hit stored
PYTHON = bl.REPO_ROOT / ".venv" / "bin" / "python"
SUMMARY = re.compile(r"^summary:\s*([\d ]+)$", re.MULTILINE)
EVENTS = re.compile(r"^events:\s*(.+)$", re.MULTILINE)
# With --caches: misses in the first-level instruction and data caches, and in the last level.
CACHE_EVENTS = {"I1 misses": ("I1mr",), "D1 misses": ("D1mr", "D1mw"), "LL misses": ("ILmr", "DLmr", "DLmw")}


@dataclass
class Counted:
    name: str
    events: dict[str, int]  # callgrind's totals: Ir (instructions), and with --caches the misses
    requests: int

    def per_request(self, event: str = "Ir") -> float:
        return self.events[event] / self.requests


def command(name: str, lean: bool) -> list[str]:
    """The proxy's command line, as the benchmark runs it; the production launcher as the Python
    module ``scripts/serve.sh`` starts (valgrind would otherwise count the shell script)."""
    tool = bl.LEAN if lean else bl.MITMDUMP
    cache_only = ("--no-cache",) if lean else ()
    if name == "cache":
        template = bl.cache_proxy(tool=tool)
    elif name == "ceiling":
        template = bl.reverse_proxy(*cache_only, "-s", str(bl.CEILING_ADDON), tool=tool)
    else:
        template = bl.reverse_proxy(*cache_only, tool=tool)
    if lean:
        return [str(PYTHON), "-O", "-m", "mitmcache", *template[1:]]
    return list(template)


def exchanges(port: int, path: str, requests: int, connections: int, expect: str | None = None) -> None:
    """``requests`` GETs spread over ``connections`` keep-alive connections, each sending one at a
    time, all at once: with more than one, flows overlap in the proxy as under the benchmark's load."""
    if connections == 1:
        exchange(port, path, requests, expect)
        return
    with ThreadPoolExecutor(connections) as pool:
        for done in [
            pool.submit(exchange, port, path.replace("{i}", f"c{c}-{{i}}"), requests // connections, expect)
            for c in range(connections)
        ]:
            done.result()


def exchange(port: int, path: str, requests: int, expect: str | None = None) -> None:
    """``requests`` GETs (``path`` formatted with ``i``), one at a time, on one keep-alive connection;
    each must carry ``X-Cache: <expect>``, if given (a count over other answers would mislead)."""
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for i in range(requests):
            client.request("GET", path.format(i=i))
            response = client.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{path}: {response.status}")
            if expect is not None and not (response.getheader("x-cache") or "").startswith(expect):
                raise RuntimeError(f"{path}: X-Cache {response.getheader('x-cache')!r}, not {expect}")
    finally:
        client.close()


def count(
    name: str,
    argv: list[str],
    origin_url: str,
    path: str,
    requests: int,
    workdir: Path,
    expect: str | None,
    caches: bool = False,
    connections: int = 1,
) -> Counted:
    port = bl.free_port()
    values = {"upstream": origin_url, "port": port, "confdir": bl.session_confdir(), "repo": bl.REPO_ROOT}
    out = workdir / f"{name}.callgrind"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    if caches:  # valgrind's model of this machine's caches (it reads their sizes off the CPU)
        valgrind.append("--cache-sim=yes")
    env = bl.clean_env({"PYTHONPATH": str(bl.REPO_ROOT / "addons")} if argv[0] == str(PYTHON) else None)
    with open(workdir / f"{name}.log", "wb") as log:
        proc = subprocess.Popen(
            [*valgrind, *[a.format(**values) for a in argv]],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            return _counted(name, proc, port, path, requests, workdir, expect, connections)
        finally:
            proc.terminate()
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _counted(
    name: str,
    proc: subprocess.Popen,
    port: int,
    path: str,
    requests: int,
    workdir: Path,
    expect: str | None,
    connections: int,
) -> Counted:
    deadline = time.monotonic() + 600
    while True:  # started under valgrind: its imports take a minute
        try:
            exchange(port, path.format(i="warm"), 1)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: see {workdir / (name + '.log')}") from None
            time.sleep(1)
    exchanges(port, path.replace("{i}", "w{i}"), WARM_UP, connections)
    subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
    exchanges(port, path, requests, connections, expect)
    subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
    dumps = sorted(workdir.glob(f"{name}.callgrind.*"))
    if not dumps:
        raise RuntimeError(f"{name}: callgrind wrote no dump")
    return Counted(name, totals(dumps[-1].read_text(errors="replace")), requests)


def totals(dump: str) -> dict[str, int]:
    """The totals of a callgrind dump, by event name."""
    names, values = EVENTS.search(dump), SUMMARY.search(dump)
    if names is None or values is None:
        raise RuntimeError("no totals in the callgrind dump")
    return dict(zip(names.group(1).split(), (int(v) for v in values.group(1).split()), strict=True))


def table(base: Counted, cache: Counted, baseline: str) -> str:
    """Per request: instructions (k), and the cache misses when they were counted; the cache's
    figures against the baseline's."""
    rows = [("k instructions", ("Ir",), 1000)]
    rows += [(label, events, 1) for label, events in CACHE_EVENTS.items() if events[0] in base.events]
    lines = [f"| per request | {baseline} | cache | cache / {baseline} |", "|---|---|---|---|"]
    for label, events, unit in rows:
        ours, theirs = (sum(c.per_request(e) for e in events) for c in (cache, base))
        ratio = f"{ours / theirs:.3f}" if theirs else "-"
        lines.append(f"| {label} | {theirs / unit:,.1f} | {ours / unit:,.1f} | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--hits", action="store_true", help="cached hits against the ceiling addon (default: misses)"
    )
    parser.add_argument("--lean", action="store_true", help="the production launcher instead of mitmdump")
    parser.add_argument("--requests", type=int, default=400, help="requests counted in each process")
    parser.add_argument(
        "--caches", action="store_true", help="also count cache misses (valgrind's cache model; slower)"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=1,
        help="connections sending at once (default 1; the benchmark's loaded runs use 16)",
    )
    args = parser.parse_args()
    if args.requests % args.connections:
        parser.error("--requests must be a multiple of --connections")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("proxy_instructions: valgrind is not installed (apt install valgrind)", file=sys.stderr)
        return 2
    baseline = "ceiling" if args.hits else "passthrough"
    path = "/bench/hit-1k" if args.hits else "/bench/miss-1k?u={i}"
    origin = bl.start_origin()
    try:
        for route, size in bench.ROUTES.items():
            origin.route(route, headers=bench.ROUTE_HEADERS, size=size)
        workdir = Path(tempfile.mkdtemp(prefix="proxy-instructions-"))
        expect = {baseline: None, "cache": "HIT" if args.hits else "MISS"}
        with ThreadPoolExecutor(2) as pool:  # both at once: sharing the CPU changes no count
            runs = [
                pool.submit(
                    count,
                    name,
                    command(name, args.lean),
                    origin.url,
                    path,
                    args.requests,
                    workdir,
                    expect[name],
                    args.caches,
                    args.connections,
                )
                for name in (baseline, "cache")
            ]
            base, cache = (run.result() for run in runs)
    finally:
        origin.stop()
    what = "hits" if args.hits else "misses"
    launcher = "production launcher" if args.lean else "mitmdump"
    print(
        f"# instructions per request, {what}, {launcher}, {args.requests} requests each"
        f" over {args.connections} connection(s)\n"
    )
    print(table(base, cache, baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
