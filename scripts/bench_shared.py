"""The shared tier (CACHE_STORE=redis://..., issue 14), run by ``bench.py`` (``--only shared`` or a
scenario name). Each scenario starts a redis-server of its own on a free port.

* ``shared-hits``: hits per second and CPU per hit against the memory store, with wrk, through the
  throughput section's machinery: ``shared-tier-hit-1k`` (hits from the in-process tier in front of
  Redis; budget: CPU per hit within 1.1x of the memory store's) and ``shared-redis-hit-1k`` (every
  hit read from Redis: an in-process tier of 1 byte holds nothing). Redis's own CPU per request is
  reported beside them.
* ``shared-herd``: 1000 clients, spread over 2 proxy processes sharing one Redis (500 connections
  each, opened first, then every request written at once) ask for one cold key from an upstream
  that takes 300 ms: upstream requests (target 1), errors (0), p50/p99.
* ``shared-purge``: how long after a purge on one proxy the other stops serving the entry from its
  own tier (polled with back-to-back requests): p50/p99 over 200 purges; the promise is 100 ms.
* ``shared-outage``: clients keep asking 2 proxies for 50 cached keys while Redis is killed (SIGKILL)
  and started again: client errors (target 0), and how soon both say the store is up again.
"""

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable

import benchlib as bl
from benchlib import Budget, Section, fmt, median, table

from tests.support.redis_server import RedisServer

SCENARIOS = ("shared-hits", "shared-herd", "shared-purge", "shared-outage")
HERD_DELAY = 0.3
HERD_CLIENTS = 1000
PURGES = 200
PURGE_PROMISE = 0.1
OUTAGE_KEYS = 50
CACHED = [("Content-Type", "application/octet-stream"), ("Cache-Control", "max-age=3600")]
ONLY_IF_CACHED = {"Cache-Control": "only-if-cached"}  # a miss is a 504 at once, no upstream fetch

# name, proxy template builder (from the Redis URL), path, X-Cache expected, what
type HitConfig = tuple[str, tuple[str, ...] | None, str, str, str]


def hit_configs(redis_url: str) -> list[HitConfig]:
    memory = bl.CACHE_DEFAULT
    tier = bl.cache_proxy(f"cache_store={redis_url}")
    from_redis = bl.cache_proxy(f"cache_store={redis_url}", "cache_max_bytes=1")
    return [
        ("hit-1k", memory, "/bench/hit-1k", "HIT", "our cache, memory store, hits, 1 KiB"),
        ("shared-tier-hit-1k", tier, "/bench/hit-1k", "HIT", "Redis store, hits from the in-process tier"),
        ("shared-redis-hit-1k", from_redis, "/bench/hit-1k", "HIT", "Redis store, every hit read from Redis"),
    ]


def hits(throughput: Callable[[list[HitConfig]], Section]) -> Section:
    with RedisServer() as redis:
        cpu0 = bl.cpu_seconds(redis.pid)
        section = throughput(hit_configs(redis.url))
        redis_cpu = bl.cpu_seconds(redis.pid) - cpu0
    runs = section.data["runs"]
    served_by_redis = sum(
        r["loaded"]["requests"] + r["single"]["requests"] for r in runs.get("shared-redis-hit-1k", [])
    )
    note = (
        f"\n\nredis-server CPU over the whole section: {redis_cpu:.2f} s; the Redis-read hits were "
        f"{served_by_redis} requests, so at most {redis_cpu / max(served_by_redis, 1) * 1000:.3f} ms of Redis CPU "
        "per hit read from Redis (the in-process tier's hits cost Redis only the uses written behind, "
        "one script run per 0.25 s)."
    )
    section.title = "Shared store: hits per second and CPU per hit"
    section.markdown += note
    return section


# -- herd over two processes -------------------------------------------------------------------------


def shared_servers(redis: RedisServer, origin_url: str, *settings: str) -> list[bl.Server]:
    """Two proxies on one Redis, one per core."""
    template = bl.cache_proxy(f"cache_store={redis.url}", *settings)
    cores = [bl.PROXY_CORE, bl.LOAD_CORE]
    return [bl.Server(f"shared{i}", template, origin_url, core=cores[i]).start() for i in range(2)]


def herd(repeats: int) -> Section:
    origin = bl.start_origin()
    try:
        origin.route("/herd", headers=CACHED, size=1024, delay=HERD_DELAY)
        with RedisServer() as redis:
            servers = shared_servers(redis, origin.url)
            try:
                ports = [s.port for s in servers]
                results = bl.cold_herds(origin, ports, HERD_CLIENTS, repeats, "shared herd")
            finally:
                for server in servers:
                    server.cleanup()
    finally:
        origin.stop()
    upstream = [x["upstream_requests"] for x in results]
    errors = sum(x["error_count"] for x in results)
    same = all(x["bodies"] == 1 for x in results)
    md = table(
        [
            "N",
            "processes",
            "upstream requests",
            "errors",
            "same body",
            "X-Cache (last round)",
            "p50 ms",
            "p99 ms",
        ],
        [
            [
                HERD_CLIENTS,
                2,
                ", ".join(map(str, upstream)),
                errors,
                "yes" if same else "NO",
                ", ".join(f"{k} {v}" for k, v in sorted(results[-1]["x_cache"].items())),
                fmt(median(x["p50"] for x in results) * 1000, 0),
                fmt(median(x["p99"] for x in results) * 1000, 0),
            ]
        ],
    )
    md += (
        f"\n\n{repeats} round(s), medians; upstream latency {HERD_DELAY * 1000:.0f} ms; {HERD_CLIENTS // 2} "
        "connections per proxy, opened and accepted first, then every request written at once."
    )
    budgets = [
        Budget(
            "shared herd: upstream requests",
            ", ".join(map(str, upstream)),
            "exactly 1 each",
            all(u == 1 for u in upstream),
        ),
        Budget(
            "shared herd: errors, same body",
            f"{errors} errors, same body: {same}",
            "0, yes",
            errors == 0 and same,
        ),
    ]
    return Section("Shared store: a herd over two processes", md, budgets, {"rounds": results})


# -- purge propagation ---------------------------------------------------------------------------------


async def _purge_times(servers: list[bl.Server], n: int) -> list[float]:
    one, two = servers
    first = await bl.Connection.open("127.0.0.1", one.port)
    second = await bl.Connection.open("127.0.0.1", two.port)
    admin = {"Clear-Cache-Key": bl.ADMIN_KEY}
    times = []
    try:
        for i in range(n):
            path = f"/bench/purge-{i}"
            await first.get(path)
            await second.get(path)  # read from Redis, now held in the second proxy's tier
            reply = await second.get(path)
            assert reply.headers.get("x-cache") == "HIT", reply.headers
            await _post(one.port, f"/__cache/purge?url={path}", admin)
            purged = time.perf_counter()
            while (await second.get(path, ONLY_IF_CACHED)).headers.get("x-cache") == "HIT":
                if time.perf_counter() - purged > 5:
                    raise RuntimeError(f"{path} still served by the second proxy 5 s after its purge")
            times.append(time.perf_counter() - purged)
    finally:
        await bl.close_all([first, second])
    return times


async def _post(port: int, path: str, headers: dict[str, str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 0", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    status = (await reader.readline()).split()[1]
    await reader.read()
    writer.close()
    if status != b"200":
        raise RuntimeError(f"purge {path}: {status!r}")


def purge(quick: bool) -> Section:
    n = 30 if quick else PURGES
    origin = bl.start_origin()
    try:
        origin.route("/bench/purge", headers=CACHED, size=1024)
        for i in range(n):
            origin.route(f"/bench/purge-{i}", headers=CACHED, size=1024)
        with RedisServer() as redis:
            servers = shared_servers(redis, origin.url)
            try:
                times = asyncio.run(_purge_times(servers, n))
            finally:
                for server in servers:
                    server.cleanup()
    finally:
        origin.stop()
    p50, p99 = bl.percentile(times, 50), bl.percentile(times, 99)
    md = table(
        ["purges", "p50 ms", "p99 ms", "max ms"],
        [[n, fmt(p50 * 1000, 2), fmt(p99 * 1000, 2), fmt(max(times) * 1000, 2)]],
    )
    md += (
        "\n\nTime from the purge's answer on one proxy to the first request the other proxy no longer "
        "answers from its own tier (``only-if-cached`` requests sent back to back on one connection, so "
        "it includes one request's round trip)."
    )
    budget = Budget(
        "purge propagation p99",
        f"{p99 * 1000:.1f} ms",
        f"<= {PURGE_PROMISE * 1000:.0f} ms",
        p99 <= PURGE_PROMISE,
    )
    return Section("Shared store: purge propagation", md, [budget], {"times": times})


# -- Redis killed under load ---------------------------------------------------------------------------


async def _outage(
    servers: list[bl.Server], redis: RedisServer, seconds: float, down_at: float, up_at: float
) -> dict:
    paths = [f"/bench/out-{i}" for i in range(OUTAGE_KEYS)]
    errors: Counter[str] = Counter()
    x_cache: Counter[str] = Counter()
    sent = 0
    deadline = time.monotonic() + seconds

    async def client(server: bl.Server, offset: int) -> None:
        nonlocal sent
        conn = await bl.Connection.open("127.0.0.1", server.port)
        try:
            while time.monotonic() < deadline:
                try:
                    reply = await asyncio.wait_for(conn.get(paths[(sent + offset) % len(paths)]), 10)
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as e:
                    errors[type(e).__name__] += 1
                    await conn.close()
                    conn = await bl.Connection.open("127.0.0.1", server.port)
                    continue
                sent += 1
                x_cache[reply.headers.get("x-cache", "-")] += 1
                if reply.status != 200:
                    errors[f"status {reply.status}"] += 1
        finally:
            await conn.close()

    async def outage() -> dict:
        await asyncio.sleep(down_at)
        redis.kill()
        killed = time.monotonic()
        await asyncio.sleep(up_at - down_at)
        redis.start()
        started = time.monotonic()
        up = await asyncio.to_thread(_wait_up, servers, 15)
        return {"down_for": started - killed, "recovered_after": up - started if up else None}

    clients = [client(s, i) for i in range(8) for s in servers]
    *_, timeline = await asyncio.gather(*clients, outage())
    return {
        "requests": sent,
        "errors": dict(errors),
        "error_count": sum(errors.values()),
        "x_cache": dict(x_cache),
        **timeline,
    }


def _wait_up(servers: list[bl.Server], timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for server in servers:
            _, _, body = bl.http_get_once("127.0.0.1", server.port, "/__cache/health")
            states.append(json.loads(body)["store"]["state"])
        if states == ["up"] * len(servers):
            return time.monotonic()
        time.sleep(0.05)
    return None


def outage(quick: bool) -> Section:
    seconds, down_at, up_at = (6, 1.5, 3.5) if quick else (12, 3, 7)
    origin = bl.start_origin()
    try:
        for i in range(OUTAGE_KEYS):
            origin.route(f"/bench/out-{i}", headers=CACHED, size=1024)
        with RedisServer() as redis:
            servers = shared_servers(redis, origin.url)
            try:
                for i in range(OUTAGE_KEYS):
                    bl.http_get_once("127.0.0.1", servers[0].port, f"/bench/out-{i}")
                result = asyncio.run(_outage(servers, redis, seconds, down_at, up_at))
                result["upstream_requests"] = bl.origin_request_count(origin)
            finally:
                for server in servers:
                    server.cleanup()
    finally:
        origin.stop()
    recovered = result["recovered_after"]
    md = table(
        [
            "requests",
            "client errors",
            "X-Cache",
            "Redis down for s",
            "both up again after s",
            "upstream requests",
        ],
        [
            [
                result["requests"],
                result["error_count"],
                ", ".join(f"{k} {v}" for k, v in sorted(result["x_cache"].items())),
                fmt(result["down_for"], 1),
                fmt(recovered, 2),
                result["upstream_requests"],
            ]
        ],
    )
    md += (
        f"\n\n16 clients (8 per proxy, keep-alive) ask for {OUTAGE_KEYS} cached keys for {seconds} s; Redis "
        f"is killed (SIGKILL) at {down_at} s and started again, empty, at {up_at} s. Upstream requests: the "
        "warm-up's 50 plus what each proxy fetched itself while Redis was away or empty."
    )
    budget = Budget(
        "Redis killed under load: client errors", str(result["error_count"]), "0", result["error_count"] == 0
    )
    return Section("Shared store: Redis killed under load", md, [budget], result)


def run(
    scenarios: list[str],
    quick: bool,
    throughput: Callable[[list[HitConfig]], Section],
    herd_rounds: int | None = None,
) -> list[Section]:
    runners = {
        "shared-hits": lambda: hits(throughput),
        "shared-herd": lambda: herd(bl.herd_rounds(quick, herd_rounds)),
        "shared-purge": lambda: purge(quick),
        "shared-outage": lambda: outage(quick),
    }
    return [runners[name]() for name in scenarios]
