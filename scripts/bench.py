#!/usr/bin/env python3
"""The benchmark: one command that measures the cache against mitmproxy's own ceiling, on loopback.

    scripts/bench.sh                 # full run: 44 minutes on a slow day (9 of them the 200k-key flood)
    scripts/bench.sh --quick         # short smoke run: 6 minutes on a slow day
    scripts/bench.sh --only hit-1k,ceiling-1k --json out.json

Sections (``--only`` takes section names, scenario names or throughput configuration names):

* ``throughput``: each configuration in ``CONFIGS`` is run with wrk, interleaved and repeated (rounds,
  rotating the order, each with freshly started proxies), and medians are reported: requests/s and
  p50/p99 at 16 connections, CPU time per request of the server process (from /proc/PID/stat), and
  p50/p99 at 1 connection (latency without queueing). Ratios are taken per round, then their median.
  The two configurations of every budgeted ratio are also run side by side in each round (both at
  once, on the same core): budgets are judged on those medians, which a machine whose speed changes
  from one run to the next cannot tilt (``_side_by_side``); their 1-connection latencies are
  measured alternately, a request to one and then one to the other (``_alternating``).
* ``memory`` (``bench_memory.py``): ``flood`` (200k distinct keys, cache_max_bytes=64MB), ``stream``
  (a 2 GiB body through the proxy), ``mitmweb`` (RSS growth per 10k flows in mitmweb).
* ``connections``: 1000 concurrent keep-alive client connections held open, each making requests
  for cached keys.
* ``coalescing`` (``bench_coalescing.py``): ``herd`` (200 and 1000 clients on one cold key),
  ``hotkey`` (one key polled for 30 s; then the cold-key phase: refreshes stop, entry dropped).
* ``shared`` (``bench_shared.py``): the Redis store -- ``shared-hits`` (hits from the in-process
  tier and from Redis against the memory store), ``shared-herd`` (1000 clients over 2 processes),
  ``shared-purge`` (propagation to another process), ``shared-outage`` (Redis killed under load).
* ``writequeue`` (``bench_writequeue.py``): ``queue-accept`` (accepted writes/s and p50/p99 on SQLite and
  PostgreSQL against pass-through), ``queue-rate`` (delivery rate against ASYNC_RATE), ``queue-crash``
  (10,000 writes with a SIGKILL and a restart: accepted = delivered, duplicates counted).
* ``workers`` (``bench_workers.py``): ``disk-hits`` (hits from the in-process tier and from the disk
  store, misses written behind, against the memory store), ``workers-hits`` (1 and 2 workers on one
  port and one Redis), ``workers-herd`` (1000 clients connecting at once to 2 workers).
* ``tags`` (``bench_tags.py``): ``tag-purge`` (a purge of a tag naming 10,000 entries, on memory and
  on Redis), ``tag-memory`` (memory per tagged entry).

A configuration is a name, a proxy command line and a workload: adding one (say the lean launcher of
issue 6) is one entry in ``CONFIGS``; within a round, processes with the same command line are shared.
"""

import argparse
import asyncio
import json
import signal
import socket
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import bench_coalescing
import bench_compression
import bench_memory
import bench_shared
import bench_tags
import bench_workers
import bench_writequeue
import benchlib as bl
from benchlib import Budget, Section, fmt, median, table

CONNECTIONS = 16  # wrk connections for the throughput runs (the proxy saturates well below this)

# The origin's routes for this section: a pattern body of this size, cacheable for an hour.
ROUTES = {"/bench/hit-1k": 1024, "/bench/hit-100k": 100 * 1024, "/bench/miss-1k": 1024}
ROUTE_HEADERS = [("Content-Type", "application/octet-stream"), ("Cache-Control", "max-age=3600")]

PASSTHROUGH = bl.reverse_proxy()
CEILING = bl.reverse_proxy("-s", str(bl.CEILING_ADDON))
CACHE = bl.CACHE_DEFAULT
# The lean production launcher (issue 6, docs/launcher.md): our addon is built in (-s addons/cache.py
# names it); --no-cache leaves it out so that -s loads the ceiling addon alone.
LEAN = bl.LEAN
LEAN_CEILING = bl.reverse_proxy("--no-cache", "-s", str(bl.CEILING_ADDON), tool=LEAN)
LEAN_CACHE = bl.cache_proxy(tool=LEAN)


@dataclass(frozen=True)
class Config:
    name: str
    proxy: tuple[str, ...] | None  # command line template (benchlib.reverse_proxy); None: the origin alone
    path: str
    unique: bool = False  # every request a new key (?u=...): misses for a cache
    expect: str | None = None  # the X-Cache a warmed-up reply must carry (proves who answered)
    about: str = ""
    headers: tuple[str, ...] = ()  # request header lines every request sends ("Accept-Encoding: gzip")


# Pairs whose ratio is a budget sit next to each other, so that they run close together in every round.
CONFIGS: tuple[Config, ...] = (
    Config("upstream", None, "/bench/hit-1k", about="the origin alone, no proxy"),
    Config("passthrough", PASSTHROUGH, "/bench/miss-1k", unique=True, about="mitmdump, no addon"),
    Config("miss-1k", CACHE, "/bench/miss-1k", unique=True, expect="MISS", about="our cache, misses, 1 KiB"),
    Config("ceiling-1k", CEILING, "/bench/hit-1k", expect="HIT", about="ceiling addon, 1 KiB"),
    Config("hit-1k", CACHE, "/bench/hit-1k", expect="HIT", about="our cache, hits, 1 KiB"),
    Config("lean-ceiling-1k", LEAN_CEILING, "/bench/hit-1k", expect="HIT", about="lean, ceiling addon"),
    Config("lean-hit-1k", LEAN_CACHE, "/bench/hit-1k", expect="HIT", about="lean, our cache, hits"),
    Config("ceiling-100k", CEILING, "/bench/hit-100k", expect="HIT", about="ceiling addon, 100 KiB"),
    Config("hit-100k", CACHE, "/bench/hit-100k", expect="HIT", about="our cache, hits, 100 KiB"),
)

# The compression section (issue 17): hits on a 10 KiB JSON body stored compressed (gzip, the default)
# for a client that accepts gzip and for one that accepts only identity, against the same body stored
# as sent (cache_compress=off) and against the ceiling addon, on both launchers.
JSON_ROUTES = {"/bench/json-10k": bench_compression.json_body(10 * 1024, 1)}
JSON_HEADERS = [("Content-Type", "application/json"), ("Cache-Control", "max-age=3600")]
GZIP_CLIENT = ("Accept-Encoding: gzip",)
IDENTITY_CLIENT = ("Accept-Encoding: identity",)
CACHE_PLAIN = bl.cache_proxy("cache_compress=off")
LEAN_CACHE_PLAIN = bl.cache_proxy("cache_compress=off", tool=LEAN)
JSON = "/bench/json-10k"
COMPRESSION_CONFIGS: tuple[Config, ...] = (
    Config(
        "ceiling-json-10k", CEILING, JSON, expect="HIT", about="ceiling, gzip client", headers=GZIP_CLIENT
    ),
    Config(
        "plain-json-10k",
        CACHE_PLAIN,
        JSON,
        expect="HIT",
        about="stored as sent, gzip client",
        headers=GZIP_CLIENT,
    ),
    Config("gzip-json-10k", CACHE, JSON, expect="HIT", about="stored gzip, gzip client", headers=GZIP_CLIENT),
    Config(
        "identity-json-10k",
        CACHE,
        JSON,
        expect="HIT",
        about="stored gzip, identity client",
        headers=IDENTITY_CLIENT,
    ),
    Config(
        "lean-ceiling-json-10k",
        LEAN_CEILING,
        JSON,
        expect="HIT",
        about="lean, ceiling, gzip client",
        headers=GZIP_CLIENT,
    ),
    Config(
        "lean-plain-json-10k",
        LEAN_CACHE_PLAIN,
        JSON,
        expect="HIT",
        about="lean, as sent, gzip client",
        headers=GZIP_CLIENT,
    ),
    Config(
        "lean-gzip-json-10k",
        LEAN_CACHE,
        JSON,
        expect="HIT",
        about="lean, stored gzip, gzip client",
        headers=GZIP_CLIENT,
    ),
    Config(
        "lean-identity-json-10k",
        LEAN_CACHE,
        JSON,
        expect="HIT",
        about="lean, stored gzip, identity client",
        headers=IDENTITY_CLIENT,
    ),
)
COMPRESSION_RATIOS = (
    (
        "gzip-json-10k / plain-json-10k CPU per request",
        "gzip-json-10k",
        "plain-json-10k",
        "cpu",
        ("<=", 1.05),
    ),
    (
        "identity-json-10k / plain-json-10k CPU per request",
        "identity-json-10k",
        "plain-json-10k",
        "cpu",
        None,
    ),
    ("gzip-json-10k / ceiling-json-10k req/s", "gzip-json-10k", "ceiling-json-10k", "rps", (">=", 0.9)),
    ("identity-json-10k / ceiling-json-10k req/s", "identity-json-10k", "ceiling-json-10k", "rps", None),
    ("plain-json-10k / ceiling-json-10k req/s", "plain-json-10k", "ceiling-json-10k", "rps", None),
    (
        "lean-gzip-json-10k / lean-plain-json-10k CPU per request",
        "lean-gzip-json-10k",
        "lean-plain-json-10k",
        "cpu",
        ("<=", 1.05),
    ),
    (
        "lean-identity-json-10k / lean-plain-json-10k CPU per request",
        "lean-identity-json-10k",
        "lean-plain-json-10k",
        "cpu",
        None,
    ),
    (
        "lean-gzip-json-10k / lean-ceiling-json-10k req/s",
        "lean-gzip-json-10k",
        "lean-ceiling-json-10k",
        "rps",
        (">=", 0.9),
    ),
    (
        "lean-identity-json-10k / lean-ceiling-json-10k req/s",
        "lean-identity-json-10k",
        "lean-ceiling-json-10k",
        "rps",
        None,
    ),
)

# (name, numerator, denominator, what, budget): ratios taken per round, then their median.
RATIOS = (
    ("hit-1k / ceiling-1k req/s", "hit-1k", "ceiling-1k", "rps", (">=", 0.9)),
    ("hit-100k / ceiling-100k req/s", "hit-100k", "ceiling-100k", "rps", None),
    ("hit-1k / ceiling-1k CPU per request", "hit-1k", "ceiling-1k", "cpu", None),
    ("miss-1k / passthrough p50 (16 connections)", "miss-1k", "passthrough", "p50", ("<=", 1.15)),
    ("miss-1k / passthrough p50 (1 connection)", "miss-1k", "passthrough", "p50_1", ("<=", 1.15)),
    ("miss-1k / passthrough CPU per request", "miss-1k", "passthrough", "cpu", None),
    ("hit-1k / passthrough req/s", "hit-1k", "passthrough", "rps", None),
    ("lean-hit-1k / ceiling-1k req/s", "lean-hit-1k", "ceiling-1k", "rps", (">=", 2.2)),
    ("lean-hit-1k / lean-ceiling-1k req/s", "lean-hit-1k", "lean-ceiling-1k", "rps", (">=", 0.9)),
    ("lean-hit-1k / hit-1k req/s", "lean-hit-1k", "hit-1k", "rps", None),
    ("lean-ceiling-1k / ceiling-1k req/s", "lean-ceiling-1k", "ceiling-1k", "rps", None),
    ("lean-hit-1k / lean-ceiling-1k CPU per request", "lean-hit-1k", "lean-ceiling-1k", "cpu", None),
    ("shared-tier-hit-1k / hit-1k CPU per request", "shared-tier-hit-1k", "hit-1k", "cpu", ("<=", 1.1)),
    ("shared-tier-hit-1k / hit-1k req/s", "shared-tier-hit-1k", "hit-1k", "rps", None),
    ("shared-redis-hit-1k / hit-1k CPU per request", "shared-redis-hit-1k", "hit-1k", "cpu", None),
    ("shared-redis-hit-1k / hit-1k req/s", "shared-redis-hit-1k", "hit-1k", "rps", None),
    ("disk-tier-hit-1k / hit-1k CPU per request", "disk-tier-hit-1k", "hit-1k", "cpu", None),
    ("disk-tier-hit-1k / hit-1k req/s", "disk-tier-hit-1k", "hit-1k", "rps", None),
    ("disk-read-hit-1k / hit-1k CPU per request", "disk-read-hit-1k", "hit-1k", "cpu", None),
    ("disk-read-hit-1k / hit-1k req/s", "disk-read-hit-1k", "hit-1k", "rps", None),
    ("disk-miss-1k / miss-1k p50 (16 connections)", "disk-miss-1k", "miss-1k", "p50", ("<=", 1.1)),
    ("disk-miss-1k / miss-1k p50 (1 connection)", "disk-miss-1k", "miss-1k", "p50_1", ("<=", 1.1)),
    ("disk-miss-1k / miss-1k CPU per request", "disk-miss-1k", "miss-1k", "cpu", None),
)


@dataclass
class Timing:
    rounds: int
    seconds: float  # loaded run (16 connections)
    latency_seconds: float  # 1-connection run
    warmup_seconds: float


FULL = Timing(rounds=5, seconds=3, latency_seconds=2, warmup_seconds=1)
QUICK = Timing(rounds=1, seconds=1, latency_seconds=1, warmup_seconds=0)


def _metric(run: dict, what: str) -> float | None:
    return {
        "rps": run["loaded"]["rps"],
        "p50": run["loaded"]["p50_ms"],
        "p99": run["loaded"]["p99_ms"],
        "cpu": run["loaded"]["cpu_ms_per_request"],
        "p50_1": run["single"]["p50_ms"],
    }[what]


def _paired_metric(run: dict, what: str) -> float | None:
    """``_metric`` of a side-by-side run, as if the process had had the core to itself: the
    scheduler need not split it evenly between the two. Requests/s become requests per CPU-second;
    the 16-connection latencies, which at saturation are the connections' queue (Little's law:
    connections x cost / share of the core), are scaled by the share the process got; CPU per
    request is taken as measured. The 1-connection latency is not read off the loaded run (each
    request there mostly waits for the other process's, which pulls any ratio towards 1) but off
    the alternating one (``_alternating``), where there is one."""
    if what == "p50_1":
        return run["single"]["p50_ms"] if "single" in run else None
    loaded = run["loaded"]
    cpu, seconds = loaded["cpu_s"], loaded["seconds"]
    if what == "cpu":
        return loaded["cpu_ms_per_request"]
    if what not in ("rps", "p50", "p99") or not (cpu and seconds):
        return None
    if what == "rps":
        return loaded["requests"] / cpu
    return loaded[f"{what}_ms"] * cpu / seconds


def _per_round(pairs, what: str, metric=_metric) -> list[float]:
    """The ratio of ``what`` for each (numerator run, denominator run), where both were measured."""
    ratios = []
    for a, b in pairs:
        x, y = metric(a, what), metric(b, what)
        if x is not None and y:
            ratios.append(x / y)
    return ratios


def _rotated[T](items: list[T], r: int) -> list[T]:
    """``items`` starting at round ``r``'s turn, so that no item always runs first."""
    if not items:
        return []
    r %= len(items)
    return items[r:] + items[:r]


def _budget_pairs(ratios, configs: list[Config]) -> list[tuple[str, str]]:
    """The (numerator, denominator) of every budgeted ratio whose two configurations run in their own
    processes here, once each: these are also measured side by side."""
    proxies = {c.name: c.proxy for c in configs}
    pairs: list[tuple[str, str]] = []
    for _, num, den, _, budget in ratios:
        if budget is None or num not in proxies or den not in proxies or (num, den) in pairs:
            continue
        if proxies[num] is not None and proxies[den] is not None and proxies[num] != proxies[den]:
            pairs.append((num, den))
    return pairs


def _side_by_side(
    pair: tuple[Config, Config], targets: list[tuple[str, int]], seconds: float
) -> list[bl.WrkResult]:
    """Load both configurations of ``pair`` at the same time, 16 connections each, both proxies on
    the proxy core: whatever slows the machine down during the run slows both (``_paired_metric``
    reads the results)."""

    def load(config: Config, target: tuple[str, int]) -> bl.WrkResult:
        url, pid = target
        return bl.run_wrk(
            url + config.path,
            connections=CONNECTIONS,
            seconds=seconds,
            unique=config.unique,
            measure_pid=pid,
            headers=config.headers,
        )

    with ThreadPoolExecutor(len(pair)) as pool:
        return list(pool.map(load, pair, targets))


def _alternating(pair: tuple[Config, Config], urls: list[str], seconds: float) -> list[dict]:
    """The 1-connection latency of both configurations of ``pair``, measured alternately: one
    client (on the load core, like wrk) sends a request to the first proxy, reads its answer, then
    one to the second, and so on for ``seconds``. One request is in flight at a time, so neither
    proxy waits for the other (as it would loaded side by side), and a machine whose speed changes
    meanwhile changes both alike, which measured one after the other swung this ratio from 0.69 to
    1.62 between rounds of one run. The client is a few lines over a blocking socket: what it adds
    to every latency, alike for both, is tens of microseconds against milliseconds."""
    conns = [_LatencyClient(url, config) for config, url in zip(pair, urls, strict=True)]
    latencies: list[list[float]] = [[] for _ in pair]
    try:
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            for conn, measured in zip(conns, latencies, strict=True):
                measured.append(conn.exchange(i))
            i += 1
    finally:
        for conn in conns:
            conn.close()
    return [
        {"requests": len(measured), "p50_ms": bl.percentile(measured, 50) * 1000, "errors": 0}
        for measured in latencies
    ]


class _LatencyClient:
    """One keep-alive connection sending a configuration's GETs one at a time (a new URL each for
    a configuration of misses), each answer read to its last byte (``Content-Length``)."""

    def __init__(self, url: str, config: Config) -> None:
        host, port = url.removeprefix("http://").split(":")
        self._sock = socket.create_connection((host, int(port)), timeout=30)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._config = config
        self._prefix = f"alt-{time.time_ns()}"
        extra = "".join(f"{h}\r\n" for h in config.headers)
        self._head = f" HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()

    def exchange(self, i: int) -> float:
        """One request and its whole answer; the seconds it took."""
        path = self._config.path + (f"?u={self._prefix}-{i}" if self._config.unique else "")
        request = b"GET " + path.encode() + self._head
        started = time.perf_counter()
        self._sock.sendall(request)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += self._recv()
        head, _, body = buffer.partition(b"\r\n\r\n")
        status, fields = bl.parse_head(head)
        length = fields.get("content-length", "")
        if status != 200 or not length.isdigit():
            raise RuntimeError(f"{self._config.name}: status {status}, Content-Length {length!r}")
        remaining = int(length) - len(body)
        while remaining > 0:
            remaining -= len(self._recv())
        return time.perf_counter() - started

    def _recv(self) -> bytes:
        chunk = self._sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError(f"{self._config.name}: connection closed mid-answer")
        return chunk

    def close(self) -> None:
        self._sock.close()


def _busy(runs: list[dict]) -> float | None:
    """The share of the proxy core the two processes of a side-by-side run used while loaded."""
    cpu = [run["loaded"]["cpu_s"] for run in runs]
    seconds = max(run["loaded"]["seconds"] for run in runs)
    if None in cpu or not seconds:
        return None
    return sum(cpu) / seconds


def _stats(server: bl.Server | None) -> dict | None:
    """The cache's counters, where the process runs the cache (None elsewhere)."""
    return server.stats() if server is not None and server.addon_health else None


def _answered_as_expected(
    config: Config, server: bl.Server | None, before: dict | None, requests: int
) -> str | None:
    """What is wrong if fewer than 99 % of a run's replies carried the X-Cache the configuration
    expects, by the cache's own counts: a benchmark of an addon that silently stopped answering
    would otherwise look fine."""
    if before is None or server is None or not config.expect:
        return None
    served = bl.served(server.stats(), config.expect) - bl.served(before, config.expect)
    if served >= 0.99 * requests:
        return None
    return f"only {served} of {requests} replies were X-Cache {config.expect} (stats counts)"


def _started(configs: list[Config], origin_url: str) -> dict[tuple[str, ...], bl.Server]:
    """One proxy per command line (configurations with the same one share it), started."""
    servers: dict[tuple[str, ...], bl.Server] = {}
    for config in configs:
        if config.proxy is not None and config.proxy not in servers:
            servers[config.proxy] = bl.Server(config.name, config.proxy, origin_url).start()
    return servers


def _warm_up(config: Config, url: str, timing: Timing) -> None:
    """Prove who answers (X-Cache), fill the cache, let the process settle."""
    host, port = url.removeprefix("http://").split(":")
    path = config.path + ("?u=warmup" if config.unique else "")
    sent = dict(h.split(": ", 1) for h in config.headers)
    for _ in range(2):
        status, headers, body = bl.http_get_once(host, int(port), path, sent)
    if status != 200 or len(body) != ROUTES.get(config.path, len(body)):
        raise RuntimeError(f"{config.name}: warm-up GET {path} -> {status}, {len(body)} bytes")
    if config.expect and config.expect != "MISS" and headers.get("x-cache") != config.expect:
        raise RuntimeError(f"{config.name}: expected X-Cache {config.expect}, got {headers}")
    if timing.warmup_seconds:
        bl.run_wrk(
            url + config.path,
            connections=CONNECTIONS,
            seconds=timing.warmup_seconds,
            unique=config.unique,
            headers=config.headers,
        )


def throughput(
    configs: list[Config], timing: Timing, ratios=RATIOS, title: str = "Throughput and latency"
) -> Section:
    origin = bl.start_origin()
    servers: dict[tuple[str, ...], bl.Server] = {}
    commands: dict[str, str] = {}
    try:
        for path, size in ROUTES.items():
            origin.route(path, headers=ROUTE_HEADERS, size=size)
        for path, body in JSON_ROUTES.items():
            origin.route(path, headers=JSON_HEADERS, body=body)

        def target(config: Config) -> tuple[str, int]:
            if config.proxy is None:
                return origin.url, bl.origin_pid(origin)
            server = servers[config.proxy]
            return server.url, server.pid

        runs: dict[str, list[dict]] = {c.name: [] for c in configs}
        problems: list[str] = []
        by_name = {c.name: c for c in configs}
        pairs = _budget_pairs(ratios, configs)
        # The pairs with a budget on their 1-connection latency: measured alternately too.
        latency_pairs = {(num, den) for _, num, den, what, budget in ratios if what == "p50_1" and budget}
        paired: dict[tuple[str, str], list[list[dict]]] = {pair: [] for pair in pairs}
        for r in range(timing.rounds):
            # Fresh processes every round: two processes started alike differ in speed by up to
            # 10 % for as long as they run (docs/performance.md), so one process per configuration
            # would carry its own speed into every round's ratio; a round each draws anew.
            servers = _started(configs, origin.url)
            for config in configs:
                _warm_up(config, target(config)[0], timing)
            order = _rotated(configs, r)
            bl.log(f"throughput round {r + 1}/{timing.rounds}: {', '.join(c.name for c in order)}")
            for config in order:
                url, pid = target(config)
                server = servers.get(config.proxy) if config.proxy else None
                before = _stats(server)
                loaded = bl.run_wrk(
                    url + config.path,
                    connections=CONNECTIONS,
                    seconds=timing.seconds,
                    unique=config.unique,
                    measure_pid=pid,
                    headers=config.headers,
                )
                single = bl.run_wrk(
                    url + config.path,
                    connections=1,
                    seconds=timing.latency_seconds,
                    unique=config.unique,
                    headers=config.headers,
                )
                problem = _answered_as_expected(config, server, before, loaded.requests + single.requests)
                if problem:
                    problems.append(f"{config.name} round {r + 1}: {problem}")
                if loaded.errors or single.errors:
                    problems.append(
                        f"{config.name} round {r + 1}: wrk errors {loaded.error_detail} {single.error_detail}"
                    )
                runs[config.name].append({"loaded": loaded.as_dict(), "single": single.as_dict()})
                bl.log(
                    f"  {config.name}: {loaded.rps:,.0f} req/s, p50 {loaded.p50_ms:.2f} ms, "
                    f"CPU {fmt(loaded.cpu_ms_per_request, 3)} ms/req, 1-conn p50 {single.p50_ms:.2f} ms"
                )
            for num, den in _rotated(pairs, r):
                pair = (by_name[num], by_name[den])
                pair_servers = [servers[c.proxy] for c in pair]  # both run a proxy (_budget_pairs)
                before_pair = [_stats(server) for server in pair_servers]
                results = _side_by_side(pair, [target(c) for c in pair], timing.seconds)
                paired[(num, den)].append([{"loaded": result.as_dict()} for result in results])
                if (num, den) in latency_pairs:
                    before_single = [_stats(server) for server in pair_servers]
                    singles = _alternating(pair, [target(c)[0] for c in pair], 2 * timing.latency_seconds)
                    for config, server, before, run, single in zip(
                        pair, pair_servers, before_single, paired[(num, den)][-1], singles, strict=True
                    ):
                        run["single"] = single
                        problem = _answered_as_expected(config, server, before, single["requests"])
                        if problem:
                            problems.append(f"{config.name} round {r + 1}, alternately: {problem}")
                for config, server, before, result in zip(
                    pair, pair_servers, before_pair, results, strict=True
                ):
                    problem = _answered_as_expected(config, server, before, result.requests)
                    if problem:
                        problems.append(f"{config.name} round {r + 1}, side by side: {problem}")
                    if result.errors:
                        problems.append(
                            f"{config.name} round {r + 1}, side by side: wrk errors {result.error_detail}"
                        )
                bl.log(
                    f"  side by side {num} | {den}: {results[0].rps:,.0f} | {results[1].rps:,.0f} req/s, "
                    f"core busy {fmt(_busy(paired[(num, den)][-1]), 2)}"
                )
            commands = {s.name: s.command_line() for s in servers.values()}
            for server in servers.values():
                server.cleanup()
            servers = {}

        rows = []
        for config in configs:
            rs = runs[config.name]
            rows.append(
                [
                    config.name,
                    config.about,
                    fmt(median(x["loaded"]["rps"] for x in rs), 0),
                    fmt(median(x["loaded"]["p50_ms"] for x in rs)),
                    fmt(median(x["loaded"]["p99_ms"] for x in rs)),
                    fmt(median(x["loaded"]["cpu_ms_per_request"] for x in rs), 3),
                    fmt(median(x["single"]["p50_ms"] for x in rs), 3),
                    fmt(median(x["single"]["p99_ms"] for x in rs), 3),
                    sum(x["loaded"]["errors"] + x["single"]["errors"] for x in rs),
                ]
            )
        md = [
            table(
                [
                    "configuration",
                    "what",
                    "req/s",
                    "p50 ms",
                    "p99 ms",
                    "CPU ms/req",
                    "1-conn p50 ms",
                    "1-conn p99 ms",
                    "errors",
                ],
                rows,
            ),
            "",
            (
                f"{timing.rounds} round(s), interleaved (order rotated per round), medians; "
                f"{CONNECTIONS} connections for {timing.seconds:g} s, then 1 connection for "
                f"{timing.latency_seconds:g} s; CPU = utime+stime of the server process per request."
                + (
                    " One short round: the ratios below are a smoke check, not a measurement."
                    if timing.rounds == 1
                    else ""
                )
            ),
            "",
        ]
        budgets: list[Budget] = []
        ratio_rows = []
        ratio_data = {}
        names = {c.name for c in configs}
        for label, num, den, what, budget in ratios:
            if num not in names or den not in names:
                continue
            per_round = _per_round(zip(runs[num], runs[den], strict=True), what)
            value = median(per_round)
            paired_rounds = _per_round(paired.get((num, den), ()), what, _paired_metric)
            paired_value = median(paired_rounds) if paired_rounds else None
            ratio_data[label] = {"median": value, "per_round": per_round}
            if paired_rounds:
                ratio_data[label] |= {"paired_median": paired_value, "paired_per_round": paired_rounds}
            ratio_rows.append(
                [
                    label,
                    fmt(value, 3),
                    ", ".join(f"{v:.3f}" for v in per_round),
                    fmt(paired_value, 3) if paired_rounds else "",
                    ", ".join(f"{v:.3f}" for v in paired_rounds),
                ]
            )
            if budget is not None:
                op, limit = budget
                judged = paired_value if paired_rounds else value
                ok = None if judged is None else (judged >= limit if op == ">=" else judged <= limit)
                how = "alternately" if what == "p50_1" else "side by side"
                shown = (
                    f"{fmt(judged, 3)} {how} (one after the other: {fmt(value, 3)})"
                    if paired_rounds
                    else fmt(value, 3)
                )
                budgets.append(Budget(label, shown, f"{op} {limit}", ok))
        headers = ["ratio", "median", "per round", "side by side: median", "side by side: per round"]
        md += [table(headers, ratio_rows), ""]
        if pairs:
            md.append(
                "Side by side: the two configurations of each budgeted ratio were also loaded at the "
                "same time (16 connections each), on the same core, in every round, and read as if "
                "each had had the core to itself: a machine whose speed changes from one run to the "
                "next changes both alike; 1-connection latencies were measured alternately (a "
                "request to one, then one to the other, one at a time). Budgets are judged on these "
                "medians. Core busy, the two processes' CPU over "
                "the run's wall time (1.0: the proxies set the pace, not the load generator): "
                + ", ".join(
                    f"{num} | {den} {fmt(median(_busy(runs) for runs in rounds), 2)}"
                    for (num, den), rounds in paired.items()
                )
                + "."
            )
            md.append("")
        md.append("Proxy command lines (the last round's; every round starts its own processes):")
        md += [f"- `{line}`" for line in commands.values()]
        if problems:
            md += ["", "Problems seen:"] + [f"- {p}" for p in problems]
        return Section(
            title,
            "\n".join(md),
            budgets,
            {
                "runs": runs,
                "side_by_side": {f"{num} | {den}": rounds for (num, den), rounds in paired.items()},
                "ratios": ratio_data,
                "problems": problems,
                "commands": commands,
            },
        )
    finally:
        for server in servers.values():
            server.cleanup()
        origin.stop()


# -- 1000 concurrent connections -----------------------------------------------------------------


async def _hold_connections(
    server: bl.Server, n: int, requests_each: int, keys: list[str], body_sha: str
) -> dict:
    await bl.wait_fds_at_most(server.pid, server.idle_fds + 8)
    fds = bl.open_fds(server.pid)
    t0 = time.perf_counter()
    conns, connect_errors = await bl.open_many("127.0.0.1", server.port, n)
    accepted = await bl.wait_accepted(server.pid, fds + len(conns)) - fds
    connected = time.perf_counter() - t0
    errors: Counter[str] = Counter()
    if connect_errors:
        errors["connect"] += connect_errors
    latencies: list[float] = []
    xcache: Counter[str] = Counter()
    barrier_open = asyncio.Event()

    async def client(i: int, conn: bl.Connection) -> None:
        await barrier_open.wait()
        for j in range(requests_each):
            try:
                reply = await asyncio.wait_for(conn.get(keys[(i + j) % len(keys)]), 60)
            except Exception as e:  # noqa: BLE001 - every failure is an error to count
                errors[type(e).__name__] += 1
                return
            latencies.append(reply.latency)
            xcache[reply.headers.get("x-cache", "-")] += 1
            if reply.status != 200:
                errors[f"status {reply.status}"] += 1
            elif reply.body_sha256 != body_sha:
                errors["body mismatch"] += 1

    tasks = [asyncio.create_task(client(i, c)) for i, c in enumerate(conns)]
    t1 = time.perf_counter()
    barrier_open.set()
    await asyncio.gather(*tasks)
    served = time.perf_counter() - t1
    # All connections were held open until every client finished; a last request on each proves it.
    still_open = 0
    for conn in conns:
        try:
            reply = await asyncio.wait_for(conn.get(keys[0]), 30)
            still_open += reply.status == 200
        except Exception as e:  # noqa: BLE001
            errors[f"final {type(e).__name__}"] += 1
    await bl.close_all(conns)
    return {
        "connections": n,
        "connected": len(conns),
        "connect_seconds": connected,  # until the proxy accepted them (or stopped accepting more)
        "accepted_before_requests": accepted,
        "requests": len(latencies),
        "serve_seconds": served,
        "rps": len(latencies) / served if served else 0,
        "p50_ms": bl.percentile(latencies, 50) * 1000 if latencies else None,
        "p99_ms": bl.percentile(latencies, 99) * 1000 if latencies else None,
        "max_ms": max(latencies) * 1000 if latencies else None,
        "still_open_after": still_open,
        "x_cache": dict(xcache),
        "errors": dict(errors),
        "error_count": sum(errors.values()),
    }


def connections(quick: bool) -> Section:
    n, requests_each, keys_n = 1000, 1 if quick else 5, 10
    origin = bl.start_origin()
    try:
        keys = [f"/conn/k{i}" for i in range(keys_n)]
        for key in keys:
            origin.route(key, headers=ROUTE_HEADERS, size=1024)
        with bl.Server("connections", CACHE, origin.url) as server:
            for key in keys:
                bl.http_get_once("127.0.0.1", server.port, key)
            result = asyncio.run(_hold_connections(server, n, requests_each, keys, bl.pattern_sha256(1024)))
            result["proxy_rss_mb"] = bl.rss(server.pid) / 2**20
            result["upstream_requests"] = bl.origin_request_count(origin)
            result["command"] = server.command_line()
    finally:
        origin.stop()
    md = table(
        [
            "connections",
            "accepted before requests",
            "requests",
            "errors",
            "connect s",
            "serve s",
            "req/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "open after",
            "X-Cache",
        ],
        [
            [
                f"{result['connected']}/{n}",
                f"{result['accepted_before_requests']}/{n}",
                result["requests"],
                result["error_count"],
                fmt(result["connect_seconds"]),
                fmt(result["serve_seconds"]),
                fmt(result["rps"], 0),
                fmt(result["p50_ms"]),
                fmt(result["p99_ms"]),
                fmt(result["max_ms"]),
                result["still_open_after"],
                ", ".join(f"{k} {v}" for k, v in sorted(result["x_cache"].items())),
            ]
        ],
    )
    if result["errors"]:
        md += "\n\nErrors: " + ", ".join(f"{k}: {v}" for k, v in result["errors"].items())
    md += (
        f"\n\nEach of {n} keep-alive connections (opened concurrently, held open throughout) makes "
        f"{requests_each} requests for {keys_n} cached 1 KiB keys, all clients released together, then "
        f'one more request each to prove the connection stayed usable. "Accepted before requests": mitmproxy '
        "listens with asyncio's default backlog of 100, so a burst of connects overflows its accept queue; with "
        "SYN cookies the rest are accepted when their first request arrives (no error, some latency). "
        f"Proxy: `{result['command']}`"
    )
    budget = Budget(
        f"{n} concurrent connections",
        f"{result['error_count']} errors",
        "0 errors",
        result["error_count"] == 0,
    )
    return Section("1000 concurrent connections", md, [budget], result)


# -- main ----------------------------------------------------------------------------------------


def crashed(name: str) -> Section:
    """A section that raised: its traceback on stderr, and a MISS in the report."""
    error = traceback.format_exc()
    bl.log(f"section {name} failed:\n{error}")
    last = error.strip().splitlines()[-1]
    budget = Budget(f"section {name} ran to the end", f"failed: {last}", "no error", False)
    return Section(f"{name}: failed", f"The section raised `{last}` (traceback on stderr).", [budget])


SECTIONS = (
    "throughput",
    "memory",
    "connections",
    "coalescing",
    "writequeue",
    "shared",
    "compression",
    "workers",
    "tags",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--quick", action="store_true", help="short runs (a smoke test: about 6 minutes on a slow day)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only these (comma-separated, repeatable): sections "
        f"({', '.join(SECTIONS)}), scenarios ({', '.join(bench_memory.SCENARIOS)}, "
        f"{', '.join(bench_coalescing.SCENARIOS)}, {', '.join(bench_writequeue.SCENARIOS)}, "
        f"{', '.join(bench_shared.SCENARIOS)}, {', '.join(bench_compression.SCENARIOS)}, "
        f"{', '.join(bench_workers.SCENARIOS)}, {', '.join(bench_tags.SCENARIOS)}) or throughput "
        "configurations "
        f"({', '.join(c.name for c in CONFIGS + COMPRESSION_CONFIGS)})",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    parser.add_argument("--rounds", type=int, help="throughput rounds (default 5, quick 1)")
    parser.add_argument(
        "--herd-rounds",
        type=int,
        help=f"rounds of every herd: coalescing, shared, workers (default {bl.HERD_ROUNDS}, quick "
        f"{bl.QUICK_HERD_ROUNDS}); each must make exactly 1 upstream request",
    )
    parser.add_argument(
        "--flood-keys", type=int, help="distinct keys of the memory flood (default 200000, quick 3000)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a budget is missed")
    args = parser.parse_args(argv)

    only = {name.strip() for item in args.only for name in item.split(",") if name.strip()}
    known = set(SECTIONS) | set(bench_memory.SCENARIOS) | set(bench_coalescing.SCENARIOS)
    known |= set(bench_writequeue.SCENARIOS) | set(bench_compression.SCENARIOS)
    known |= set(bench_shared.SCENARIOS)
    known |= {c.name for c in CONFIGS + COMPRESSION_CONFIGS}
    known |= set(bench_workers.SCENARIOS)
    known |= set(bench_tags.SCENARIOS)
    if unknown := only - known:
        parser.error(f"unknown --only names: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")

    def wanted(section: str, members: tuple[str, ...]) -> list[str]:
        if not only or section in only:
            return list(members)
        return [m for m in members if m in only]

    timing = QUICK if args.quick else FULL
    if args.rounds:
        timing = Timing(args.rounds, timing.seconds, timing.latency_seconds, timing.warmup_seconds)

    bl.ensure_wrk()
    fd_limit = bl.raise_fd_limit()
    bl.pin(0, bl.LOAD_CORE)  # this script's own clients run on the load core
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    plan: list[tuple[str, Callable[[], list[Section]]]] = []
    configs = [c for c in CONFIGS if c.name in wanted("throughput", tuple(c.name for c in CONFIGS))]
    if configs:
        plan.append(("throughput", lambda: [throughput(configs, timing)]))
    if mem := wanted("memory", bench_memory.SCENARIOS):
        plan.append(("memory", lambda: bench_memory.run(mem, args.quick, flood_keys=args.flood_keys)))
    if wanted("connections", ("connections",)):
        plan.append(("connections", lambda: [connections(args.quick)]))
    if coal := wanted("coalescing", bench_coalescing.SCENARIOS):
        plan.append(("coalescing", lambda: bench_coalescing.run(coal, args.quick, args.herd_rounds)))
    if queue := wanted("writequeue", bench_writequeue.SCENARIOS):
        plan.append(("writequeue", lambda: bench_writequeue.run(queue, args.quick)))
    if shared := wanted("shared", bench_shared.SCENARIOS):
        plan.append(
            (
                "shared",
                lambda: bench_shared.run(
                    shared,
                    args.quick,
                    lambda specs: throughput(
                        [Config(n, proxy, path, expect=x, about=about) for n, proxy, path, x, about in specs],
                        timing,
                    ),
                    args.herd_rounds,
                ),
            )
        )
    coded = [
        c
        for c in COMPRESSION_CONFIGS
        if c.name in wanted("compression", tuple(c.name for c in COMPRESSION_CONFIGS))
    ]
    if coded:
        title = "Hits on a compressed entry (10 KiB JSON)"
        plan.append(("compression hits", lambda: [throughput(coded, timing, COMPRESSION_RATIOS, title)]))
    if comp := wanted("compression", bench_compression.SCENARIOS):
        plan.append(("compression", lambda: bench_compression.run(comp, args.quick)))

    if work := wanted("workers", bench_workers.SCENARIOS):
        plan.append(
            (
                "workers",
                lambda: bench_workers.run(
                    work,
                    args.quick,
                    timing.rounds,
                    timing.seconds,
                    lambda specs: throughput(
                        [
                            Config(n, proxy, path, unique=unique, expect=x, about=about)
                            for n, proxy, path, x, about, unique in specs
                        ],
                        timing,
                    ),
                    args.herd_rounds,
                ),
            )
        )

    if tag_scenarios := wanted("tags", bench_tags.SCENARIOS):
        plan.append(("tags", lambda: bench_tags.run(tag_scenarios, args.quick)))

    machine = bl.machine_info()
    started = time.monotonic()
    sections: list[Section] = []
    try:
        for name, run in plan:
            bl.log(f"section {name}")
            t0 = time.monotonic()
            try:
                produced = run()
            except Exception:  # noqa: BLE001 - one broken section must not take the others' figures with it
                produced = [crashed(name)]
            finally:
                bl.stop_all()  # a crashed section's processes too
            for s in produced:
                s.seconds = s.seconds or (time.monotonic() - t0) / len(produced)
            sections += produced
    finally:
        bl.stop_all()
    elapsed = time.monotonic() - started

    out = [
        f"# Benchmark ({'quick' if args.quick else 'full'} run, {elapsed:.0f} s)",
        "",
        (
            f"- machine: {machine['cpu']}, {machine['cores_visible']} cores visible, load average at start "
            f"{', '.join(f'{x:.2f}' for x in machine['load_average_at_start'])}; Python {machine['python']}, "
            f"mitmproxy {machine['mitmproxy']}, commit {machine['commit'] or 'unknown'}"
        ),
        f"- layout: {bl.layout_text()}",
        f"- fd limit (inherited by the processes started here): {fd_limit}",
        "- shared machine: other processes may use the same cores, so compare ratios within this run only",
        "",
    ]
    for s in sections:
        out += [f"## {s.title}", "", s.markdown, ""]
    budgets = [b for s in sections for b in s.budgets]
    out += ["## Budgets", ""] + [f"- {b.line()}" for b in budgets] + [""]
    print("\n".join(out), flush=True)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "quick": args.quick,
                    "seconds": elapsed,
                    "machine": machine,
                    "layout": bl.layout_text(),
                    "sections": [s.as_dict() for s in sections],
                },
                indent=1,
                default=str,
            )
        )
    return 1 if args.strict and any(b.ok is False for b in budgets) else 0


if __name__ == "__main__":
    sys.exit(main())
