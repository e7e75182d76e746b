#!/usr/bin/env python3
"""Write queue scenarios (issue 15), run by ``bench.py`` (section ``writequeue``) or alone.

* ``queue-accept``: POST writes with wrk (16 connections, every write a new URL) answered by the
  write queue on SQLite and on PostgreSQL, against synchronous pass-through of the same requests
  (the same proxy without ``ASYNC_ROUTES``: forwarded, the origin's answer awaited). Rounds are
  interleaved; medians. Deliveries run in the same process meanwhile, as in production. Target:
  accepting is at least as fast as forwarding.
* ``queue-rate``: a backlog of writes delivered with ``ASYNC_RATE`` set; the delivery rate measured
  from the origin's own timestamps once the token bucket's first second is spent. Target: within 5%.
* ``queue-crash``: 10,000 writes, each with its own ``Idempotency-Key``, sent by 16 clients that retry
  until they are accepted (as a client that got no answer does); the proxy is SIGKILLed in the middle
  and restarted. Target: every accepted write delivered; duplicates (a write in flight at the crash,
  delivered again) are counted.
"""

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import benchlib as bl
import httpx
from benchlib import Budget, Section, fmt, median, table

from tests.support import postgres  # a database of the benchmark's own

SCENARIOS = ("queue-accept", "queue-rate", "queue-crash")
ROUTE = "/bench/events/w"
ROUTES = "async_routes=POST /bench/events/*"
BODY = '{"event": "signup", "user": 42, "source": "bench"}'
CONNECTIONS = 16
HELD_BACK = "async_rate=1"  # deliveries held back: what accepting alone costs


def _queue_proxy(*settings: str) -> tuple[str, ...]:
    return bl.cache_proxy(ROUTES, *settings)


# -- acceptance vs pass-through ---------------------------------------------------------------------


def accept(quick: bool, pg_url: str) -> Section:
    rounds, seconds = (1, 2) if quick else (3, 5)
    origin = bl.start_origin()
    origin.route(ROUTE, status=200, body=b"ok")
    configs = {
        "pass-through": bl.cache_proxy(),
        "queue-sqlite": _queue_proxy(HELD_BACK),
        "queue-postgresql": _queue_proxy(f"async_queue_url={pg_url}", HELD_BACK),
        "queue-sqlite, delivering": _queue_proxy(),
        "queue-postgresql, delivering": _queue_proxy(f"async_queue_url={pg_url}"),
    }
    runs: dict[str, list[bl.WrkResult]] = {name: [] for name in configs}
    try:
        for r in range(rounds):
            order = list(configs)[r % len(configs) :] + list(configs)[: r % len(configs)]
            for name in order:
                with bl.Server(name, configs[name], origin.url) as server:
                    url = server.url + ROUTE
                    bl.run_wrk(url, connections=CONNECTIONS, seconds=1, unique=True, method="POST", body=BODY)
                    result = bl.run_wrk(
                        url,
                        connections=CONNECTIONS,
                        seconds=seconds,
                        unique=True,
                        method="POST",
                        body=BODY,
                        measure_pid=server.pid,
                    )
                    runs[name].append(result)
                    bl.log(
                        f"{name}: {result.rps:,.0f}/s p50 {result.p50_ms:.2f} ms p99 {result.p99_ms:.2f} ms"
                    )
    finally:
        origin.stop()
    rows, data = [], {}
    for name, results in runs.items():
        summary = {
            "rps": median(r.rps for r in results),
            "p50_ms": median(r.p50_ms for r in results),
            "p99_ms": median(r.p99_ms for r in results),
            "cpu_ms": median(r.cpu_ms_per_request for r in results),
            "errors": sum(r.errors for r in results),
        }
        data[name] = summary | {"runs": [r.as_dict() for r in results]}
        rows.append(
            [
                name,
                fmt(summary["rps"], 0),
                fmt(summary["p50_ms"]),
                fmt(summary["p99_ms"]),
                fmt(summary["cpu_ms"], 3),
                summary["errors"],
            ]
        )
    md = table(["configuration", "writes/s", "p50 ms", "p99 ms", "proxy CPU ms/write", "errors"], rows)
    md += (
        f"\n\nwrk, {CONNECTIONS} connections, {seconds} s per run, {rounds} rounds (medians), every write a new "
        f"URL with a {len(BODY)}-byte JSON body. pass-through: the cache without ASYNC_ROUTES (the origin's answer "
        "awaited); queue-*: answered 202 once committed (SQLite WAL with synchronous=FULL; PostgreSQL commit). "
        "queue-sqlite and queue-postgresql measure accepting, with deliveries held back (ASYNC_RATE=1): a burst "
        "absorbed. The *delivering* rows deliver without a limit in the same process meanwhile, so each write "
        "costs that process an acceptance and a delivery (an upstream request of its own), against pass-through's "
        "one forward. Errors include any answer other than 2xx."
    )
    base = data["pass-through"]["rps"] or 0
    budgets = [
        Budget(
            f"{name} writes/s vs pass-through",
            f"{fmt(data[name]['rps'], 0)} vs {fmt(base, 0)}",
            ">= pass-through",
            bool(data[name]["rps"]) and data[name]["rps"] >= base and data[name]["errors"] == 0,
        )
        for name in ("queue-sqlite", "queue-postgresql")
    ]
    return Section("Write queue: accepted writes per second", md, budgets, data)


# -- delivery rate ----------------------------------------------------------------------------------


def _delivery_rate(limit: int, backlog: int) -> dict:
    """Deliveries per second of a backlog, from the origin's arrival timestamps once the backlog is
    complete and the bucket's burst spent (limit 0: no limit, what this machine can deliver).

    The bucket holds one second's worth: tokens left unused while the process was busy accepting
    the backlog start at once when it is done, so the first ``limit`` deliveries after it are
    left out; from then on the bucket is empty and the rate is the limiter's."""
    origin = bl.start_origin()
    origin.route(ROUTE, status=200)
    try:
        with bl.Server(f"rate-{limit}", _queue_proxy(f"async_rate={limit}"), origin.url) as server:
            accepted = bl.run_wrk(
                server.url + ROUTE,
                connections=CONNECTIONS,
                seconds=30,
                unique=True,
                method="POST",
                body=BODY,
                limit=backlog,
            )
            backlog_from = time.time()
            deadline = time.monotonic() + backlog / (limit or 50) + 30
            while bl.origin_request_count(origin) < accepted.requests and time.monotonic() < deadline:
                time.sleep(0.2)
        times = sorted(e["time"] for e in origin.log() if e["time"] >= backlog_from)[limit:]
    finally:
        origin.stop()
    return {"accepted": accepted.requests, "measured": _slope(times), "steady_deliveries": len(times)}


def _slope(times: list[float]) -> float:
    """Deliveries per second: the least-squares slope of the delivery count over time, which a
    stall and the catch-up after it (the bucket refilled meanwhile) barely move, unlike the first
    and last timestamps alone."""
    if len(times) < 2:
        return 0.0
    n = len(times)
    mean_t, mean_i = sum(times) / n, (n - 1) / 2
    covariance = sum((t - mean_t) * (i - mean_i) for i, t in enumerate(times))
    variance = sum((t - mean_t) ** 2 for t in times)
    return covariance / variance if variance else 0.0


def rate(quick: bool, pg_url: str) -> Section:
    """First what the machine can deliver without a limit, then limits well below it: the limiter
    is what is measured, not the machine."""
    ceiling = _delivery_rate(0, 600 if quick else 2000)
    fractions = (0.25,) if quick else (0.25, 0.6)
    rows = [["none", ceiling["accepted"], ceiling["steady_deliveries"], fmt(ceiling["measured"]), "-"]]
    data, budgets = {"none": ceiling}, []
    for fraction in fractions:
        limit = max(10, int(ceiling["measured"] * fraction))
        result = data[str(limit)] = _delivery_rate(limit, limit * (6 if quick else 20))
        error = abs(result["measured"] - limit) / limit
        rows.append(
            [limit, result["accepted"], result["steady_deliveries"], fmt(result["measured"]), f"{error:.1%}"]
        )
        budgets.append(
            Budget(
                f"delivery rate at ASYNC_RATE={limit}",
                f"{result['measured']:.2f}/s",
                "within 5%",
                error <= 0.05,
            )
        )
    md = table(["ASYNC_RATE", "writes accepted", "deliveries measured", "deliveries/s", "error"], rows)
    md += (
        "\n\nA backlog is accepted as fast as wrk sends it; the rate is taken from the origin's arrival "
        "timestamps once the backlog is complete, leaving out the first second's worth of deliveries after it "
        "(the token bucket holds one second's worth: tokens unused while the process was busy accepting start "
        "at once), to the last delivery, as the least-squares slope of deliveries over time. The first row (no limit) is what this machine delivers at all; the "
        "limits are set to a quarter and 60% of it, so that the limiter, not the CPU, decides the rate."
    )
    return Section("Write queue: delivery rate against ASYNC_RATE", md, budgets, data)


# -- SIGKILL mid-burst ------------------------------------------------------------------------------


async def _send_all(
    n: int, url: list[str], accepted: set[str], stop_after: int, killed: asyncio.Event
) -> dict:
    """Send ``n`` writes from CONNECTIONS clients, each retried until accepted; ``url[0]`` is where the
    proxy is now. After ``stop_after`` acceptances, ``killed`` is awaited (the proxy is being killed)."""
    todo = asyncio.Queue()
    for i in range(n):
        todo.put_nowait(i)
    retries = Counter()
    repeated = 0

    async def client() -> None:
        nonlocal repeated
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=1)) as http:
            while not todo.empty():
                i = todo.get_nowait()
                key = f"bench-{i}"
                while True:
                    try:
                        answer = await http.post(
                            url[0] + ROUTE + f"?n={i}", content=BODY, headers={"Idempotency-Key": key}
                        )
                        if answer.status_code == 202:
                            break
                        retries[f"status {answer.status_code}"] += 1
                    except httpx.HTTPError as e:
                        retries[type(e).__name__] += 1
                    await asyncio.sleep(0.05)
                if key in accepted:
                    repeated += 1
                accepted.add(key)
                if len(accepted) == stop_after:
                    await killed.wait()

    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    return {"client_retries": dict(retries)}


async def _kill_and_restart(n: int, template: tuple[str, ...], origin: bl.Origin, accepted: set[str]) -> dict:
    """Send the writes; half-way, SIGKILL the proxy and start another on the same queue."""
    first = bl.Server("crash", template, origin.url).start()
    url = [first.url]
    killed = asyncio.Event()
    sender = asyncio.create_task(_send_all(n, url, accepted, n // 2, killed))
    while len(accepted) < n // 2:
        await asyncio.sleep(0.01)
    os.kill(first.pid, signal.SIGKILL)
    first.proc.wait()  # type: ignore[union-attr]
    delivered_at_kill = bl.origin_request_count(origin)
    first.cleanup()
    killed.set()
    await asyncio.sleep(0.5)  # clients find the proxy gone and retry
    second = bl.Server("crash-restarted", template, origin.url).start()
    url[0] = second.url
    result = await sender
    return result | {"second": second, "delivered_at_kill": delivered_at_kill}


def _crash_once(n: int, queue_url: str) -> dict:
    origin = bl.start_origin()
    origin.route(ROUTE, status=200, delay=0.002)
    template = _queue_proxy(f"async_queue_url={queue_url}", "async_request_timeout=2")
    accepted: set[str] = set()
    started = time.monotonic()
    try:
        result = asyncio.run(_kill_and_restart(n, template, origin, accepted))
        second = result.pop("second")
        deadline = time.monotonic() + 120
        keys: Counter[str] = Counter()
        while time.monotonic() < deadline:
            keys = Counter(_key(e) for e in origin.log())
            if accepted <= set(keys):
                break
            time.sleep(0.5)
        seconds = time.monotonic() - started
        second.cleanup()
    finally:
        origin.stop()
    return {
        "writes": n,
        "accepted": len(accepted),
        "delivered_distinct": len(set(keys) & accepted),
        "missing": len(accepted - set(keys)),
        "duplicate_deliveries": sum(v - 1 for v in keys.values() if v > 1),
        "seconds": seconds,
        **result,
    }


def crash(quick: bool, pg_url: str) -> Section:
    n = 2000 if quick else 10_000
    rows, data, budgets = [], {}, []
    for store in ("sqlite", "postgresql"):
        if store == "sqlite":
            queue_url = f"sqlite://{Path(tempfile.mkdtemp(prefix='bench-crash-')) / 'queue.db'}"
        else:
            queue_url = pg_url
            asyncio.run(_empty_pg_queue(pg_url))
        d = data[store] = _crash_once(n, queue_url)
        rows.append(
            [
                store,
                d["writes"],
                d["accepted"],
                d["delivered_distinct"],
                d["missing"],
                d["duplicate_deliveries"],
                d["delivered_at_kill"],
                fmt(d["seconds"], 1),
            ]
        )
        budgets.append(
            Budget(
                f"{store}: every accepted write delivered after SIGKILL",
                f"{d['missing']} missing, {d['accepted']}/{n} accepted",
                "0 missing",
                d["missing"] == 0 and d["accepted"] == n,
            )
        )
    md = table(
        [
            "queue",
            "writes",
            "accepted",
            "delivered",
            "missing",
            "duplicates",
            "delivered at the kill",
            "seconds",
        ],
        rows,
    )
    md += (
        f"\n\n{CONNECTIONS} clients send {n:,} writes, each with its own Idempotency-Key, and retry a write until it "
        "is answered 202 (as a client that got no answer does: the proxy recognises a write it committed before "
        "the crash by its key). Half-way through the proxy is SIGKILLed, then restarted on the same queue. "
        "Duplicates: deliveries of a write beyond its first, i.e. writes in flight at the crash, delivered again "
        "with the same Idempotency-Key once their lease (ASYNC_REQUEST_TIMEOUT + 10 s) ran out."
    )
    return Section("Write queue: 10,000 writes with a SIGKILL and a restart", md, budgets, data)


def _key(entry: dict) -> str:
    return next((v for k, v in entry["headers"] if k.lower() == "idempotency-key"), "")


async def _empty_pg_queue(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP TABLE IF EXISTS mitmcache_jobs")
    finally:
        await conn.close()


# -- running ----------------------------------------------------------------------------------------

RUNNERS = {"queue-accept": accept, "queue-rate": rate, "queue-crash": crash}


def run(names: list[str], quick: bool) -> list[Section]:
    sections = []
    for url, _ in postgres.database():  # created for this run, dropped after
        for name in names:
            t0 = time.monotonic()
            bl.log(f"write queue scenario {name}")
            section = RUNNERS[name](quick, url)
            section.seconds = time.monotonic() - t0
            sections.append(section)
    return sections


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated: {', '.join(SCENARIOS)}"
    )
    args = parser.parse_args()
    bl.ensure_wrk()
    bl.raise_fd_limit()
    bl.pin(0, bl.LOAD_CORE)
    try:
        sections = run([n for n in args.only.split(",") if n], args.quick)
    finally:
        bl.stop_all()
    for s in sections:
        print(f"## {s.title}\n\n{s.markdown}\n")
        for b in s.budgets:
            print(f"- {b.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
