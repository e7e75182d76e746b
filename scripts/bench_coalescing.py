#!/usr/bin/env python3
"""Coalescing and refresh scenarios (issue 7), run by ``bench.py`` or alone: ``bench_coalescing.py``.

* ``herd``: N = 200 and 1000 clients connect at the same instant, each writing its request as soon as
  it is connected, and ask for one cold key from an upstream that takes 300 ms, through stock
  mitmdump and through the production launcher. Reported: upstream requests (target 1), failures
  (none: a client without an answer after 20 s fails), whether every client got the same body,
  p50/p99 counted from the instant the herd started (connecting included), and the CPU floor
  300 ms + N x (proxy CPU time of one hit), where the CPU per hit is measured in the same run by the
  same herd on a warm key. Target: p99 / floor <= 1.2.
* ``hotkey``: clients poll one key for 30 s with ``cache_ttl=2`` and ``cache_refresh_window=10`` (the
  origin sends no cache headers), once with refreshes at expiry and once with
  ``cache_refresh_ahead=1``. Every upstream reply carries a version number in its body, so the age of
  each served copy is known exactly (reply time - origin reply time), not only the whole-second
  ``Age`` header. Then the cold-key phase: after the last client leaves, the origin log and
  ``/__cache/stats`` are polled until the refreshes stop and the entry is dropped.
"""

import argparse
import asyncio
import sys
import time
from collections import Counter

import benchlib as bl
from benchlib import Budget, Section, fmt, median, table

SCENARIOS = ("herd", "hotkey")
UPSTREAM_DELAY = 0.3  # herd
HERD_TIMEOUT = 20.0  # a herd client that has no answer by then counts as failed
# Both ways a user runs the cache: stock mitmdump -s addons/cache.py, and the production launcher.
LAUNCHERS = (("mitmdump", bl.CACHE_DEFAULT), ("lean", bl.cache_proxy(tool=bl.LEAN)))
HOT_DELAY = 0.2  # hot key: the upstream latency in "lifetime + upstream latency"
AGE_TOLERANCE = 0.1  # seconds of scheduling slack allowed on top of lifetime + upstream latency
STOP_TOLERANCE = 0.5  # one expiry-scheduler tick (0.25 s) plus polling granularity


# -- herd ----------------------------------------------------------------------------------------


async def _herd(server: bl.Server, path: str, n: int) -> dict:
    """N clients that connect at the same instant and each send their request at once
    (``benchlib.herd``), with the proxy's CPU time and the herd's wall time."""
    await bl.wait_fds_at_most(server.pid, server.idle_fds + 8)
    cpu0 = bl.cpu_seconds(server.pid)
    t0 = time.perf_counter()
    replies = await bl.herd([server.port], path, n, HERD_TIMEOUT)
    wall = time.perf_counter() - t0
    cpu = bl.cpu_seconds(server.pid) - cpu0
    return {**bl.herd_summary(replies), "wall": wall, "cpu": cpu, "cpu_per_request": cpu / n}


def herd(repeats: int) -> Section:
    sizes = (200, 1000)
    expected_sha = bl.pattern_sha256(1024)
    origin = bl.start_origin()
    results: dict[tuple[str, int], list[dict]] = {(name, n): [] for name, _ in LAUNCHERS for n in sizes}
    commands: list[str] = []
    try:
        origin.route(
            "/herd",
            headers=[("Content-Type", "application/octet-stream"), ("Cache-Control", "max-age=600")],
            size=1024,
            delay=UPSTREAM_DELAY,
        )
        for name, command_line in LAUNCHERS:
            with bl.Server(f"herd-{name}", command_line, origin.url) as server:
                commands.append(f"{name}: `{server.command_line()}`")
                for r in range(repeats):
                    for n in sizes:  # interleaved: 200, 1000, 200, 1000, ...
                        results[name, n].append(_herd_round(server, origin, name, n, r, expected_sha))
    finally:
        origin.stop()

    rows, budgets = [], []
    for (name, n), rs in results.items():
        upstream = [x["upstream_requests"] for x in rs]
        errors = sum(x["error_count"] for x in rs)
        same = all(x["same_body"] for x in rs)
        ratio = median(x["p99_over_floor"] for x in rs)
        rows.append(
            [
                name,
                n,
                ", ".join(map(str, upstream)),
                errors,
                "yes" if same else "NO",
                ", ".join(f"{k} {v}" for k, v in sorted(rs[-1]["x_cache"].items())),
                fmt(median(x["p50"] for x in rs) * 1000, 0),
                fmt(median(x["p99"] for x in rs) * 1000, 0),
                fmt(median(x["cpu_per_hit"] for x in rs) * 1000, 3),
                fmt(median(x["floor"] for x in rs) * 1000, 0),
                fmt(ratio, 2),
                fmt(median(x["warm"]["p99"] for x in rs) * 1000, 0),
                ", ".join(f"{k} {v}" for k, v in sorted(Counter(_sum_errors(rs)).items())) or "-",
            ]
        )
        budgets += [
            Budget(
                f"herd {name} N={n}: upstream requests",
                ", ".join(map(str, upstream)),
                "exactly 1 each",
                all(u == 1 for u in upstream),
            ),
            Budget(
                f"herd {name} N={n}: errors, same body",
                f"{errors} errors, same body: {same}",
                "0, yes",
                errors == 0 and same,
            ),
            Budget(
                f"herd {name} N={n}: p99 / CPU floor",
                fmt(ratio, 2),
                "<= 1.2",
                None if ratio is None else ratio <= 1.2,
            ),
        ]
    md = table(
        [
            "launcher",
            "N",
            "upstream requests",
            "errors",
            "same body",
            "X-Cache (last round)",
            "p50 ms",
            "p99 ms",
            "CPU/hit ms",
            "floor ms",
            "p99/floor",
            "warm-herd p99 ms",
            "failures (all rounds)",
        ],
        rows,
    )
    md += (
        f"\n\n{repeats} round(s) per N, interleaved, medians. Floor = {UPSTREAM_DELAY * 1000:.0f} ms upstream "
        "+ N x CPU/hit, where CPU/hit is the proxy's CPU time per request for the same herd on a warm key "
        "(new connection, one request each), measured just before. All N clients connect at the same instant "
        "and each writes its request as soon as it is connected; latencies count from that instant, connecting "
        f"included, and a client without an answer after {HERD_TIMEOUT:g} s is a failure (a listen backlog "
        "smaller than the herd shows here as SYN retries and timeouts). "
        f"Proxies: {'; '.join(commands)}"
    )
    data = {f"{name} {n}": v for (name, n), v in results.items()}
    return Section("Coalescing: thundering herd", md, budgets, data)


def _herd_round(server: bl.Server, origin, name: str, n: int, r: int, expected_sha: str) -> dict:
    """A herd on a warm key (the CPU floor: one hit per client), then on a cold one (coalescing)."""
    warm_key = f"/herd?warm={name}-{n}-{r}"  # the origin is shared by the launchers' runs
    bl.http_get_once("127.0.0.1", server.port, warm_key)
    warm = asyncio.run(_herd(server, warm_key, n))
    cold_key = f"/herd?cold={name}-{n}-{r}"
    cold = asyncio.run(_herd(server, cold_key, n))
    cold["upstream_requests"] = origin.count(cold_key)
    cold["same_body"] = cold["bodies"] == 1 and cold["sha256"] == expected_sha
    cold["cpu_per_hit"] = warm["cpu_per_request"]
    cold["floor"] = UPSTREAM_DELAY + n * warm["cpu_per_request"]
    cold["p99_over_floor"] = cold["p99"] / cold["floor"] if cold["p99"] else None
    cold["warm"] = warm
    bl.log(
        f"herd {name} N={n} round {r + 1}: upstream {cold['upstream_requests']}, errors "
        f"{cold['error_count']} {cold['errors'] or ''}, p99 {fmt_ms(cold['p99'])} ms, "
        f"floor {cold['floor'] * 1000:.0f} ms (hit CPU {warm['cpu_per_request'] * 1000:.2f} ms)"
    )
    return cold


def _sum_errors(rounds: list[dict]) -> Counter[str]:
    total: Counter[str] = Counter()
    for result in rounds:
        total.update(result["errors"])
    return total


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


# -- hot key, then cold key ----------------------------------------------------------------------

VARIANTS = (
    ("refresh-at-expiry", ()),
    ("refresh-ahead=1", ("cache_refresh_ahead=1",)),
)


async def _poll(url: str, path: str, clients: int, seconds: float, pause: float) -> list[dict]:
    host, port = url.removeprefix("http://").split(":")
    conns = [await bl.Connection.open(host, int(port)) for _ in range(clients)]
    records: list[dict] = []
    deadline = time.monotonic() + seconds

    async def client(conn: bl.Connection) -> None:
        while time.monotonic() < deadline:
            sent = time.time()
            reply = await conn.get(path)
            body = reply.body or b""
            records.append(
                {
                    "sent": sent,
                    "received": time.time(),
                    "status": reply.status,
                    "x_cache": reply.headers.get("x-cache", "-"),
                    "age": int(reply.headers.get("age", "0") or 0),
                    "version": int(body.split()[1]) if body.startswith(b"version ") else None,
                }
            )
            await asyncio.sleep(pause)

    await asyncio.gather(*(client(c) for c in conns))
    await bl.close_all(conns)
    return records


def _hot_variant(origin: bl.Origin, name: str, extra: tuple[str, ...], quick: bool) -> dict:
    ttl, window, seconds = (2, 2, 4) if quick else (2, 10, 30)
    clients, pause = 4, 0.01
    path = f"/hot-{name.replace('=', '-')}"
    origin.route(
        path,
        headers=[("Content-Type", "text/plain")],
        delay=HOT_DELAY,
        sequence=[{"body": f"version {i:06d}\n".ljust(1024)} for i in range(400)],
    )
    # No stale-if-error allowance: the cold phase measures the refresh window alone (an entry is
    # otherwise kept past it for as long as it may stand in for a failing upstream).
    proxy = bl.cache_proxy(
        f"cache_ttl={ttl}", f"cache_refresh_window={window}", "cache_stale_if_error=0", *extra
    )
    with bl.Server(f"hot-{name}", proxy, origin.url) as server:
        records = asyncio.run(_poll(server.url, path, clients, seconds, pause))
        stop = max(r["received"] for r in records)
        # Cold phase: nobody asks any more. Watch the entry until it is gone (or give up).
        watch_until = stop + window + ttl + 4
        dropped_at = None
        while time.time() < watch_until:
            if server.stats()["entries"] == 0:
                dropped_at = time.time()
                break
            time.sleep(0.25)
        if dropped_at is not None:  # a little longer: no refresh may follow the drop
            time.sleep(min(2.0, max(0.0, watch_until - time.time())))
        stats = server.stats()
        command = server.command_line()
    upstream = origin.requests(path)
    times = [e["time"] for e in upstream]  # when the origin got request i (it answers HOT_DELAY later)
    first_done = min(r["received"] for r in records)
    after_first = [r for r in records if r["sent"] >= first_done]
    waited = Counter(r["x_cache"] for r in after_first if r["x_cache"] not in ("HIT", "STALE"))
    ages = [
        r["received"] - (times[r["version"]] + HOT_DELAY)
        for r in records
        if r["version"] is not None and r["version"] < len(times)
    ]
    refreshes_after = [t - stop for t in times if t > stop]
    return {
        "variant": name,
        "ttl": ttl,
        "window": window,
        "seconds": seconds,
        "clients": clients,
        "responses": len(records),
        "errors": sum(r["status"] != 200 for r in records),
        "x_cache": dict(Counter(r["x_cache"] for r in records)),
        "waited_after_first": dict(waited),
        "misses_after_first": sum(waited.values()),
        "upstream_hot": sum(t <= stop for t in times),
        "expected_upstream": seconds / ttl,
        "max_content_age": max(ages) if ages else None,
        "bound": ttl + HOT_DELAY,
        "max_age_header": max(r["age"] for r in records),
        "stale": sum(r["x_cache"] == "STALE" for r in records),
        "refreshes_after_stop": refreshes_after,
        "last_refresh_after_stop": max(refreshes_after) if refreshes_after else 0.0,
        "dropped_after_stop": None if dropped_at is None else dropped_at - stop,
        "final_stats": stats,
        "command": command,
    }


def hotkey(quick: bool) -> Section:
    origin = bl.start_origin()
    runs = []
    try:
        for name, extra in VARIANTS:
            bl.log(f"hot key: {name}")
            runs.append(_hot_variant(origin, name, extra, quick))
    finally:
        origin.stop()
    hot_rows, cold_rows, budgets = [], [], []
    for v in runs:
        hot_rows.append(
            [
                v["variant"],
                f"{v['responses']:,}",
                v["errors"],
                ", ".join(f"{k} {n}" for k, n in sorted(v["x_cache"].items())),
                v["misses_after_first"],
                f"{v['upstream_hot']} (~{v['expected_upstream']:.0f})",
                fmt(v["max_content_age"], 2),
                fmt(v["bound"], 2),
                v["max_age_header"],
                v["stale"],
            ]
        )
        cold_rows.append(
            [
                v["variant"],
                v["window"],
                len(v["refreshes_after_stop"]),
                ", ".join(f"{t:.1f}" for t in v["refreshes_after_stop"]) or "-",
                fmt(v["dropped_after_stop"], 1) if v["dropped_after_stop"] is not None else "not dropped",
                v["final_stats"]["entries"],
            ]
        )
        bound = v["bound"] + AGE_TOLERANCE
        age_ok = v["max_content_age"] is not None and v["max_content_age"] <= bound
        budgets += [
            Budget(
                f"hot key ({v['variant']}): misses after the first",
                str(v["misses_after_first"]),
                "0",
                v["misses_after_first"] == 0 and v["errors"] == 0,
            ),
            Budget(
                f"hot key ({v['variant']}): max age of a served copy",
                f"{fmt(v['max_content_age'], 2)} s (Age header max {v['max_age_header']})",
                f"<= lifetime + upstream latency = {v['bound']:.1f} s (+{AGE_TOLERANCE} s slack)",
                age_ok,
            ),
        ]
        if v["variant"].startswith("refresh-ahead"):
            budgets.append(
                Budget(f"hot key ({v['variant']}): stale responses", str(v["stale"]), "0", v["stale"] == 0)
            )
        # The last client buys one refresh, at the latest when the copy it was served expires (one
        # lifetime later); the refreshed copy is kept for its lifetime plus the refresh window, counted
        # from when the upstream answered that refresh (HOT_DELAY after the request the origin logged).
        last_refresh = v["last_refresh_after_stop"]
        stopped = len(v["refreshes_after_stop"]) <= 1 and last_refresh <= v["ttl"] + STOP_TOLERANCE
        drop_bound = last_refresh + HOT_DELAY + v["ttl"] + v["window"]
        dropped = (
            v["dropped_after_stop"] is not None and v["dropped_after_stop"] <= drop_bound + STOP_TOLERANCE
        )
        budgets.append(
            Budget(
                f"cold key ({v['variant']}): one refresh after the last client, then the entry dropped",
                f"{len(v['refreshes_after_stop'])} refresh(es), the last {last_refresh:.1f} s after the last "
                f"client; dropped after {fmt(v['dropped_after_stop'], 1)} s",
                f"<= 1 refresh, within {v['ttl']} s; dropped <= {drop_bound:.1f} s (that refresh + "
                f"{HOT_DELAY} + lifetime {v['ttl']} + window {v['window']}) (+{STOP_TOLERANCE} s slack each)",
                stopped and dropped,
            )
        )
    first = runs[0]
    md = table(
        [
            "variant",
            "responses",
            "errors",
            "X-Cache",
            "misses after first",
            "upstream requests (~expected)",
            "max copy age s",
            "lifetime + latency s",
            "max Age header",
            "STALE",
        ],
        hot_rows,
    )
    md += (
        f"\n\n{first['clients']} keep-alive clients poll one key for {first['seconds']} s (10 ms pause), "
        f"`cache_ttl={first['ttl']}`, `cache_refresh_window={first['window']}`, upstream latency "
        f"{HOT_DELAY * 1000:.0f} ms, no cache headers from the origin. Copy age = reply time - time the origin "
        "answered the version served.\n\n"
        "Cold key (after the last client left):\n\n"
    )
    md += table(
        [
            "variant",
            "window s",
            "upstream requests after",
            "at s after the last client",
            "entry dropped at s",
            "entries at end",
        ],
        cold_rows,
    )
    md += "\n\n" + " ".join(f"`{v['variant']}`: `{v['command']}`" for v in runs)
    return Section("Coalescing: hot key, then cold key", md, budgets, {"runs": runs})


def run(names: list[str], quick: bool, herd_rounds: int | None = None) -> list[Section]:
    runners = {"herd": lambda: herd(bl.herd_rounds(quick, herd_rounds)), "hotkey": lambda: hotkey(quick)}
    sections = []
    for name in names:
        t0 = time.monotonic()
        bl.log(f"coalescing scenario {name}")
        section = runners[name]()
        section.seconds = time.monotonic() - t0
        sections.append(section)
    return sections


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated: {', '.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--herd-rounds",
        type=int,
        help=f"rounds of the herd (default {bl.HERD_ROUNDS}, quick {bl.QUICK_HERD_ROUNDS})",
    )
    args = parser.parse_args()
    bl.ensure_wrk()
    bl.raise_fd_limit()
    bl.pin(0, bl.LOAD_CORE)
    try:
        sections = run([n for n in args.only.split(",") if n], args.quick, args.herd_rounds)
    finally:
        bl.stop_all()
    for s in sections:
        print(f"## {s.title}\n\n{s.markdown}\n")
    print("\n".join(f"- {b.line()}" for s in sections for b in s.budgets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
