#!/usr/bin/env python3
"""Memory scenarios of the benchmark (run by ``bench.py``, or alone: ``bench_memory.py [--quick]``).

* ``flood``: 200k distinct keys (every request a miss that gets stored) with
  ``--set cache_max_bytes=64MB``: RSS after the flood vs the process's baseline (budget: baseline +
  1.5 x 64 MB), entries and evictions from ``/__cache/stats``.
* ``stream``: one 2 GiB response (larger than ``cache_max_object_bytes``) streams through; the client
  checksums it (SHA-256 vs the origin's pattern), RSS is sampled every 50 ms (budget: growth < 50 MB),
  and ``/__cache/stats`` must show it was not stored.
* ``mitmweb``: a long mitmweb session: RSS after every batch of flows, growth per 10k flows. Each
  entry of ``WEB_CONFIGS`` is one run; the capped variant needs the ``cache_web_max_flows`` option
  and is skipped (and says so) until the addon has it.
"""

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass

import benchlib as bl
from benchlib import Budget, Section, fmt, table

SCENARIOS = ("flood", "stream", "mitmweb")
MB = 2**20
HEADERS_CACHEABLE = [("Content-Type", "application/octet-stream"), ("Cache-Control", "max-age=3600")]


@dataclass(frozen=True)
class WebConfig:
    name: str
    proxy: tuple[str, ...]
    requires_option: str | None = None  # skipped while no file under addons/ defines this option
    about: str = ""


_WEB = ("web_open_browser=false", "web_host=127.0.0.1", "web_port={web_port}", "web_password=bench")
WEB_CONFIGS: tuple[WebConfig, ...] = (
    WebConfig("mitmweb", bl.cache_proxy(*_WEB, tool=bl.MITMWEB), about="mitmweb + our addon, no cap"),
    WebConfig(
        "mitmweb-capped",
        bl.cache_proxy(*_WEB, "cache_web_max_flows=1000", tool=bl.MITMWEB),
        requires_option="cache_web_max_flows",
        about="mitmweb + our addon, cache_web_max_flows=1000",
    ),
)


def option_defined(name: str) -> bool:
    return any(name in p.read_text(errors="replace") for p in (bl.REPO_ROOT / "addons").rglob("*.py"))


# -- flood ---------------------------------------------------------------------------------------


def flood(quick: bool, keys: int | None = None) -> Section:
    keys = keys or (3_000 if quick else 200_000)
    budget_mb = 2 if quick else 64
    origin = bl.start_origin()
    try:
        origin.route("/flood", headers=HEADERS_CACHEABLE, size=1024)
        proxy = bl.cache_proxy(f"cache_max_bytes={budget_mb}MB")
        with bl.Server("flood", proxy, origin.url) as server:
            for i in range(20):  # touch the miss and store paths before taking the baseline
                bl.http_get_once("127.0.0.1", server.port, f"/flood?warmup={i}")
            time.sleep(0.5)
            baseline = bl.rss(server.pid)
            bl.log(
                f"flood: {keys} distinct keys, cache_max_bytes={budget_mb}MB, baseline {baseline / MB:.1f} MB"
            )
            with bl.RssSampler(server.pid, 0.2) as sampler:
                run = bl.run_wrk(
                    server.url + "/flood",
                    connections=16,
                    seconds=1200,
                    unique=True,
                    limit=keys,
                    measure_pid=server.pid,
                )
            time.sleep(0.5)
            after = bl.rss(server.pid)
            stats = server.stats()
            alive = server.proc is not None and server.proc.poll() is None
            command = server.command_line()
    finally:
        origin.stop()
    limit = baseline + 1.5 * budget_mb * MB
    evicted = stats["evictions"] > 0 and stats["bytes"] <= budget_mb * MB
    data = {
        "keys": keys,
        "requests": run.requests,
        "rps": run.rps,
        "errors": run.errors,
        "cpu_ms_per_request": run.cpu_ms_per_request,
        "baseline_mb": baseline / MB,
        "after_mb": after / MB,
        "peak_mb": sampler.peak / MB,
        "limit_mb": limit / MB,
        "stats": stats,
        "alive": alive,
        "command": command,
    }
    md = table(
        [
            "keys",
            "req/s",
            "errors",
            "baseline MB",
            "after MB",
            "peak MB",
            "limit MB",
            "entries",
            "stored MB",
            "evictions",
        ],
        [
            [
                f"{run.requests:,}",
                fmt(run.rps, 0),
                run.errors,
                fmt(baseline / MB, 1),
                fmt(after / MB, 1),
                fmt(sampler.peak / MB, 1),
                fmt(limit / MB, 1),
                f"{stats['entries']:,}",
                fmt(stats["bytes"] / MB, 1),
                f"{stats['evictions']:,}",
            ]
        ],
    )
    md += (
        f"\n\n1 KiB bodies with `Cache-Control: max-age=3600`, every request a new key (wrk, 16 connections). "
        f"Limit = baseline + 1.5 x {budget_mb} MB. Proxy: `{command}`"
    )
    budgets = [
        Budget(
            f"RSS after {keys:,} keys, cache_max_bytes={budget_mb}MB",
            f"{after / MB:.1f} MB (baseline {baseline / MB:.1f}, peak {sampler.peak / MB:.1f})",
            f"<= {limit / MB:.1f} MB",
            after <= limit,
        ),
        Budget(
            "flood: entries evicted, bytes within bound, proxy alive, no errors",
            f"evictions {stats['evictions']:,}, {stats['bytes'] / MB:.1f} MB stored, alive={alive}, "
            f"errors={run.errors}",
            "evictions > 0, alive, 0 errors",
            evicted and alive and run.errors == 0,
        ),
    ]
    return Section("Memory: flood of distinct keys", md, budgets, data)


# -- stream --------------------------------------------------------------------------------------


async def _fetch(url: str, path: str) -> bl.Reply:
    host, port = url.removeprefix("http://").split(":")
    conn = await bl.Connection.open(host, int(port))
    try:
        return await conn.receive(conn.send(path), read_size=1 << 20)
    finally:
        await conn.close()


def stream(quick: bool) -> Section:
    size = (512 if quick else 2048) * MB
    origin = bl.start_origin()
    try:
        origin.route("/big", headers=[("Content-Type", "application/octet-stream")], size=size)
        origin.route("/small", headers=HEADERS_CACHEABLE, size=1024)
        bl.log(f"stream: computing the expected SHA-256 of {size // MB} MiB")
        expected = bl.pattern_sha256(size)
        with bl.Server("stream", bl.CACHE_DEFAULT, origin.url) as server:
            for _ in range(3):
                bl.http_get_once("127.0.0.1", server.port, "/small")
            time.sleep(0.5)
            baseline = bl.rss(server.pid)
            before = server.stats()
            cpu0 = bl.cpu_seconds(server.pid)
            t0 = time.perf_counter()
            with bl.RssSampler(server.pid) as sampler:
                reply = asyncio.run(_fetch(server.url, "/big"))
            seconds = time.perf_counter() - t0
            cpu = bl.cpu_seconds(server.pid) - cpu0
            after_stats = server.stats()
            again = bl.http_get_once("127.0.0.1", server.port, "/small")  # still serving after the stream
            command = server.command_line()
    finally:
        origin.stop()
    growth = sampler.peak - baseline
    exact = reply.status == 200 and reply.size == size and reply.body_sha256 == expected
    stored = after_stats["bytes"] - before["bytes"]
    not_stored = stored < size and after_stats["entries"] == before["entries"]
    data = {
        "size": size,
        "seconds": seconds,
        "mb_per_s": size / MB / seconds,
        "proxy_cpu_s": cpu,
        "baseline_mb": baseline / MB,
        "peak_mb": sampler.peak / MB,
        "growth_mb": growth / MB,
        "byte_exact": exact,
        "sha256": reply.body_sha256,
        "expected_sha256": expected,
        "x_cache": reply.headers.get("x-cache"),
        "cache_status": reply.headers.get("cache-status"),
        "stats_before": before,
        "stats_after": after_stats,
        "served_after": again[0],
        "command": command,
    }
    md = table(
        [
            "body",
            "seconds",
            "MB/s",
            "proxy CPU s",
            "baseline MB",
            "peak MB",
            "growth MB",
            "byte-exact",
            "X-Cache / Cache-Status",
            "stored bytes",
        ],
        [
            [
                f"{size // MB} MiB",
                fmt(seconds, 1),
                fmt(size / MB / seconds, 0),
                fmt(cpu, 1),
                fmt(baseline / MB, 1),
                fmt(sampler.peak / MB, 1),
                fmt(growth / MB, 1),
                "yes" if exact else f"NO ({reply.size} bytes, {reply.body_sha256[:12]})",
                f"{reply.headers.get('x-cache')} / {reply.headers.get('cache-status')}",
                f"+{stored}",
            ]
        ],
    )
    md += f"\n\nRSS sampled every 50 ms. Proxy: `{command}`"
    budgets = [
        Budget(
            f"{size // MB} MiB stream: RSS growth",
            f"{growth / MB:.1f} MB",
            "< 50 MB",
            growth < 50 * MB,
        ),
        Budget(
            f"{size // MB} MiB stream: byte-exact and not stored",
            f"sha256 {'matches' if exact else 'DIFFERS'}, stored +{stored} bytes, "
            f"entries {before['entries']} -> {after_stats['entries']}",
            "exact, not stored",
            exact and not_stored,
        ),
    ]
    return Section("Memory: a large response streaming through", md, budgets, data)


# -- mitmweb -------------------------------------------------------------------------------------


async def _send_many(url: str, path: str, total: int, connections: int) -> tuple[int, int]:
    host, port = url.removeprefix("http://").split(":")
    conns = [await bl.Connection.open(host, int(port)) for _ in range(connections)]
    errors = 0
    per = [total // connections + (i < total % connections) for i in range(connections)]

    async def client(conn: bl.Connection, n: int) -> None:
        nonlocal errors
        for _ in range(n):
            reply = await conn.get(path)
            errors += reply.status != 200

    await asyncio.gather(*(client(c, n) for c, n in zip(conns, per, strict=True)))
    await bl.close_all(conns)
    return total, errors


def _web_flows(server: bl.Server) -> int | None:
    if server.web_port is None:
        return None
    try:
        status, _, body = bl.http_get_once(
            "127.0.0.1", server.web_port, "/flows", headers={"Authorization": "Bearer bench"}, timeout=60
        )
        return len(json.loads(body)) if status == 200 else None
    except (OSError, ValueError):
        return None


def mitmweb(quick: bool) -> Section:
    batches, batch = (2, 500) if quick else (2, 5_000)
    rows, data, budgets, notes = [], {}, [], []
    origin = bl.start_origin()
    try:
        origin.route("/web/1k", headers=HEADERS_CACHEABLE, size=1024)
        for config in WEB_CONFIGS:
            if config.requires_option and not option_defined(config.requires_option):
                notes.append(
                    f"`{config.name}` skipped: no option `{config.requires_option}` under addons/ yet "
                    f"(it runs as soon as the addon defines it)."
                )
                data[config.name] = {"skipped": f"option {config.requires_option} not defined"}
                continue
            with bl.Server(config.name, config.proxy, origin.url) as server:
                for _ in range(2):
                    bl.http_get_once("127.0.0.1", server.port, "/web/1k")
                time.sleep(1.0)
                baseline = bl.rss(server.pid)
                points = [(0, baseline)]
                errors = 0
                t0 = time.perf_counter()
                for b in range(batches):
                    _, errs = asyncio.run(_send_many(server.url, "/web/1k", batch, 8))
                    errors += errs
                    time.sleep(1.0)
                    points.append(((b + 1) * batch, bl.rss(server.pid)))
                    bl.log(f"{config.name}: {(b + 1) * batch} flows, RSS {points[-1][1] / MB:.1f} MB")
                seconds = time.perf_counter() - t0
                flows_kept = _web_flows(server)
                command = server.command_line()
            total = batches * batch
            per_10k = (points[-1][1] - baseline) / total * 10_000
            # The growth over the later batches only, without first-use allocations.
            later = (points[-1][1] - points[1][1]) / (total - batch) * 10_000 if batches > 1 else None
            data[config.name] = {
                "flows": total,
                "seconds": seconds,
                "errors": errors,
                "rss_points_mb": [(n, r / MB) for n, r in points],
                "growth_per_10k_mb": per_10k / MB,
                "growth_per_10k_after_first_batch_mb": None if later is None else later / MB,
                "flows_kept": flows_kept,
                "command": command,
            }
            rows.append(
                [
                    config.name,
                    config.about,
                    f"{total:,}",
                    fmt(total / seconds, 0),
                    errors,
                    " -> ".join(f"{r / MB:.0f}" for _, r in points),
                    fmt(per_10k / MB, 1),
                    fmt(None if later is None else later / MB, 1),
                    "n/a" if flows_kept is None else f"{flows_kept:,}",
                ]
            )
            notes.append(f"`{config.name}`: `{command}`")
    finally:
        origin.stop()
    md = table(
        [
            "configuration",
            "what",
            "flows",
            "flows/s",
            "errors",
            "RSS MB (per batch)",
            "MB per 10k flows",
            "MB per 10k (after 1st batch)",
            "flows kept",
        ],
        rows,
    )
    md += (
        f"\n\nCached 1 KiB hits over 8 keep-alive connections, {batches} batches of {batch:,}, RSS read 1 s "
        "after each batch. " + " ".join(notes)
    )
    if not any(c.requires_option for c in WEB_CONFIGS if c.name in data and "skipped" not in data[c.name]):
        budgets.append(
            Budget(
                "mitmweb flow retention capped",
                "no cap option yet: growth per 10k flows reported above",
                "bounded RSS with cache_web_max_flows",
                None,
            )
        )
    return Section("Memory: a long mitmweb session", md, budgets, data)


RUNNERS = {"flood": flood, "stream": stream, "mitmweb": mitmweb}


def run(names: list[str], quick: bool, flood_keys: int | None = None) -> list[Section]:
    sections = []
    for name in names:
        t0 = time.monotonic()
        bl.log(f"memory scenario {name}")
        section = flood(quick, flood_keys) if name == "flood" else RUNNERS[name](quick)
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
    bl.raise_fd_limit()
    bl.pin(0, bl.LOAD_CORE)
    try:
        sections = run([n for n in args.only.split(",") if n], args.quick)
    finally:
        bl.stop_all()
    for s in sections:
        print(f"## {s.title}\n\n{s.markdown}\n")
    print("\n".join(f"- {b.line()}" for s in sections for b in s.budgets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
