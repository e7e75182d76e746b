"""Workers and the disk store (issue 16), run by ``bench.py`` (``--only workers`` or a scenario name).

* ``disk-hits``: through the throughput section's machinery (wrk, interleaved rounds, CPU of the
  proxy process per request), against the memory store: ``disk-tier-hit-1k`` (hits from the
  in-process tier in front of the disk store), ``disk-read-hit-1k`` (every hit read from the file:
  an in-process tier of 1 byte holds nothing), and ``disk-miss-1k`` (misses, each stored on disk
  behind the request) against ``miss-1k`` (goal: p50 within 1.1x).
* ``workers-hits``: requests per second and CPU per hit (summed over the worker processes) of
  ``scripts/serve.sh --workers 1`` and ``--workers 2`` on one Redis, interleaved rounds; reported
  as a ratio. The workers are not pinned: on a 2-core machine the load generator takes a core, so
  there is no budget (see docs/workers-and-disk.md for what free cores give).
* ``workers-herd``: 1000 clients connecting at once to the port of 2 workers on one Redis, each
  asking for one cold key from an upstream that takes 300 ms: upstream requests (1), failures (0).
"""

import json
import time
from collections.abc import Callable
from pathlib import Path

import benchlib as bl
from benchlib import Budget, Section, fmt, median, table

from tests.support.redis_server import RedisServer

SCENARIOS = ("disk-hits", "workers-hits", "workers-herd")
SERVE = bl.REPO_ROOT / "scripts" / "serve.sh"
HERD_CLIENTS = 1000
HERD_DELAY = 0.3
CACHED = [("Content-Type", "application/octet-stream"), ("Cache-Control", "max-age=3600")]

# name, proxy template, path, X-Cache expected, what, unique (every request a new key)
type DiskConfig = tuple[str, tuple[str, ...], str, str, str, bool]


def disk_configs() -> list[DiskConfig]:
    memory = bl.CACHE_DEFAULT
    tier = bl.cache_proxy("cache_store=disk")
    from_disk = bl.cache_proxy("cache_store=disk", "cache_max_bytes=1")
    return [
        ("hit-1k", memory, "/bench/hit-1k", "HIT", "our cache, memory store, hits, 1 KiB", False),
        (
            "disk-tier-hit-1k",
            tier,
            "/bench/hit-1k",
            "HIT",
            "disk store, hits from the in-process tier",
            False,
        ),
        (
            "disk-read-hit-1k",
            from_disk,
            "/bench/hit-1k",
            "HIT",
            "disk store, every hit read from the file",
            False,
        ),
        ("miss-1k", memory, "/bench/miss-1k", "MISS", "our cache, memory store, misses, 1 KiB", True),
        ("disk-miss-1k", tier, "/bench/miss-1k", "MISS", "disk store, misses written behind", True),
    ]


def disk_hits(throughput: Callable[[list[DiskConfig]], Section]) -> Section:
    section = throughput(disk_configs())
    section.title = "Disk store: hits and misses against the memory store"
    return section


# -- workers -------------------------------------------------------------------------------------------


def workers_template(count: int, redis_url: str) -> tuple[str, ...]:
    return (str(SERVE), "--workers", str(count), *bl.cache_proxy(f"cache_store={redis_url}", tool=SERVE)[1:])


def worker_pids(supervisor: int) -> list[int]:
    """The supervisor's children (its workers)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [int(pid) for pid in children]


def cpu_of(pids: list[int]) -> float:
    return sum(bl.cpu_seconds(pid) for pid in pids)


def start_workers(count: int, redis_url: str, origin_url: str) -> bl.Server:
    server = bl.Server(f"workers{count}", workers_template(count, redis_url), origin_url, core=None)
    server.env["MITMCACHE_SKIP_SETUP"] = "1"
    server.start(timeout=120)
    deadline = time.monotonic() + 120
    while len(worker_pids(server.pid)) < count or not _all_answer(server, count):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: not every worker answers:\n{server.log_text()}")
        time.sleep(0.2)
    return server


def _all_answer(server: bl.Server, count: int) -> bool:
    seen = set()
    for _ in range(10 * count):
        status, _, body = bl.http_get_once("127.0.0.1", server.port, "/__cache/health")
        if status == 200:
            seen.add(json.loads(body)["worker"])
    return len(seen) == count


def workers_hits(quick: bool, rounds: int, seconds: float) -> Section:
    origin = bl.start_origin()
    runs: dict[int, list[dict]] = {1: [], 2: []}
    try:
        origin.route("/bench/hit-1k", headers=CACHED, size=1024)
        with RedisServer() as redis:
            servers = {n: start_workers(n, redis.url, origin.url) for n in (1, 2)}
            try:
                for server in servers.values():
                    bl.http_get_once("127.0.0.1", server.port, "/bench/hit-1k")
                    bl.run_wrk(server.url + "/bench/hit-1k", connections=16, seconds=1)
                for r in range(1 if quick else rounds):
                    for n in (1, 2) if r % 2 == 0 else (2, 1):
                        server = servers[n]
                        pids = worker_pids(server.pid)
                        before = cpu_of(pids)
                        result = bl.run_wrk(server.url + "/bench/hit-1k", connections=16, seconds=seconds)
                        cpu = cpu_of(pids) - before
                        runs[n].append(
                            {
                                "rps": result.rps,
                                "p50_ms": result.p50_ms,
                                "cpu_ms": cpu / max(result.requests, 1) * 1000,
                                "errors": result.errors,
                            }
                        )
                        bl.log(
                            f"  {n} worker(s): {result.rps:,.0f} req/s, CPU {runs[n][-1]['cpu_ms']:.3f} ms/req"
                        )
            finally:
                for server in servers.values():
                    server.cleanup()
    finally:
        origin.stop()
    ratios = [b["rps"] / a["rps"] for a, b in zip(runs[1], runs[2], strict=True) if a["rps"]]
    cpu_ratios = [b["cpu_ms"] / a["cpu_ms"] for a, b in zip(runs[1], runs[2], strict=True) if a["cpu_ms"]]
    rows = [
        [
            n,
            fmt(median(x["rps"] for x in runs[n]), 0),
            fmt(median(x["p50_ms"] for x in runs[n])),
            fmt(median(x["cpu_ms"] for x in runs[n]), 3),
            sum(x["errors"] for x in runs[n]),
        ]
        for n in (1, 2)
    ]
    md = table(["workers", "req/s", "p50 ms", "CPU ms/hit (all workers)", "errors"], rows)
    md += (
        f"\n\n2 workers / 1 worker: req/s **{fmt(median(ratios), 2)}** (per round: "
        f"{', '.join(f'{v:.2f}' for v in ratios)}), CPU per hit {fmt(median(cpu_ratios), 2)}. "
        "Redis store, hits of 1 KiB, wrk with 16 connections (one thread), rounds interleaved; the "
        "workers are not pinned. On this 2-core machine wrk itself takes most of a core, so a second "
        "worker has little free CPU to use: no budget here. With a core free per worker, req/s should "
        "scale close to linearly (each worker answers hits from its own in-process tier)."
    )
    return Section("Workers: 1 and 2 on one port, Redis store", md, [], {"runs": runs})


def workers_herd(repeats: int) -> Section:
    origin = bl.start_origin()
    try:
        origin.route("/herd", headers=CACHED, size=1024, delay=HERD_DELAY)
        with RedisServer() as redis:
            server = start_workers(2, redis.url, origin.url)
            try:
                results = bl.cold_herds(origin, [server.port], HERD_CLIENTS, repeats, "workers herd")
            finally:
                server.cleanup()
    finally:
        origin.stop()
    upstream = [x["upstream_requests"] for x in results]
    errors = sum(x["error_count"] for x in results)
    md = table(
        ["clients", "workers", "upstream requests", "failures", "p50 ms", "p99 ms"],
        [
            [
                HERD_CLIENTS,
                2,
                ", ".join(map(str, upstream)),
                errors,
                fmt(median(x["p50"] for x in results) * 1000, 0),
                fmt(median(x["p99"] for x in results) * 1000, 0),
            ]
        ],
    )
    md += (
        f"\n\n{repeats} round(s); every client opens its connection and sends its request at the same "
        f"instant, to the one port both workers listen on; upstream latency {HERD_DELAY * 1000:.0f} ms."
    )
    budgets = [
        Budget(
            "workers herd: upstream requests", ", ".join(map(str, upstream)), "1 each", set(upstream) == {1}
        ),
        Budget("workers herd: failures", str(errors), "0", errors == 0),
    ]
    return Section("Workers: a herd of 1000 over 2 workers", md, budgets, {"rounds": results})


def run(
    scenarios: list[str],
    quick: bool,
    rounds: int,
    seconds: float,
    throughput: Callable[[list[DiskConfig]], Section],
    herd_rounds: int | None = None,
) -> list[Section]:
    runners = {
        "disk-hits": lambda: disk_hits(throughput),
        "workers-hits": lambda: workers_hits(quick, rounds, seconds),
        "workers-herd": lambda: workers_herd(bl.herd_rounds(quick, herd_rounds)),
    }
    return [runners[name]() for name in scenarios]
