"""Compression benchmarks (issue 17, docs/compression.md), in process: no proxy is needed to measure
a codec or what the store holds, and the figures do not depend on the machine's load as much.

* ``codecs``: ratio and speed of gzip, brotli and zstd at several levels on JSON bodies of 1, 10 and
  100 KiB (what ``cache_compress`` and the levels in ``compression.py`` were chosen from);
* ``capacity``: how many entries a 64 MB budget holds with 1 KiB and 10 KiB JSON bodies, stored as
  sent and stored compressed, through the engine's own write path and memory store.

The CPU per hit of a compressed entry is measured through real proxies by bench.py's ``compression``
section (the ``*-json-10k`` configurations).
"""

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable

import benchlib as bl
from benchlib import Section, fmt, table

sys.path.insert(0, str(bl.REPO_ROOT / "addons"))

import brotli
import zstandard

from mitmcache import config
from mitmcache.compression import decompress
from mitmcache.engine import Engine
from mitmcache.policy.storable import Rules, admit

SCENARIOS = ("codecs", "capacity")
BUDGET_BYTES = 64 * 2**20
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "omega",
    "north",
    "south",
    "east",
    "west",
    "red",
    "green",
    "blue",
    "open",
    "closed",
    "pending",
    "shipped",
]


def json_body(size: int, number: int) -> bytes:
    """A JSON array of API-like records (ids, names, prices, dates, flags, tags), ``size`` bytes
    or just over: distinct per number, so no two entries compress against each other."""
    rng = random.Random(number)
    records, length = [], 2
    while length < size:
        record = {
            "id": rng.randrange(10**9),
            "name": f"{rng.choice(WORDS)} {rng.choice(WORDS)} {rng.randrange(1000)}",
            "price": round(rng.uniform(1, 500), 2),
            "currency": "EUR",
            "created": f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:00:00Z",
            "active": rng.random() < 0.5,
            "status": rng.choice(WORDS[8:]),
            "tags": rng.sample(WORDS, 3),
        }
        records.append(record)
        length += len(json.dumps(record)) + 2
    return json.dumps(records).encode()


def _codecs() -> dict[str, tuple[Callable[[bytes], bytes], str]]:
    import gzip

    return {
        "gzip 1": (lambda b: gzip.compress(b, 1, mtime=0), "gzip"),
        "gzip 6": (lambda b: gzip.compress(b, 6, mtime=0), "gzip"),
        "gzip 9": (lambda b: gzip.compress(b, 9, mtime=0), "gzip"),
        "br 1": (lambda b: brotli.compress(b, quality=1), "br"),
        "br 5": (lambda b: brotli.compress(b, quality=5), "br"),
        "br 11": (lambda b: brotli.compress(b, quality=11), "br"),
        "zstd 1": (lambda b: zstandard.ZstdCompressor(level=1).compress(b), "zstd"),
        "zstd 6": (lambda b: zstandard.ZstdCompressor(level=6).compress(b), "zstd"),
        "zstd 19": (lambda b: zstandard.ZstdCompressor(level=19).compress(b), "zstd"),
    }


def codecs(quick: bool) -> Section:
    samples = 5 if quick else 30
    rows, data = [], {}
    for size in (1024, 10 * 1024, 100 * 1024):
        bodies = [json_body(size, n) for n in range(samples)]
        sent = sum(len(b) for b in bodies)
        for name, (compress, coding) in _codecs().items():
            t0 = time.process_time()
            coded = [compress(b) for b in bodies]
            t1 = time.process_time()
            for c in coded:
                decompress(c, coding)
            t2 = time.process_time()
            held = sum(len(c) for c in coded)
            row = {
                "ratio": sent / held,
                "compress_us": (t1 - t0) / samples * 1e6,
                "decompress_us": (t2 - t1) / samples * 1e6,
            }
            data[f"{name} {size}"] = row
            rows.append(
                [
                    f"{size // 1024} KiB",
                    name,
                    fmt(row["ratio"], 2),
                    fmt(row["compress_us"], 0),
                    fmt(row["decompress_us"], 0),
                    fmt(sent / (t1 - t0) / 2**20 if t1 > t0 else None, 0),
                ]
            )
    md = table(["body", "codec level", "ratio", "compress us/body", "decode us/body", "compress MiB/s"], rows)
    md += (
        f"\n\n{samples} distinct JSON bodies per size (records of ids, names, prices, dates, tags); CPU time."
    )
    return Section("Compression codecs on JSON bodies", md, [], data)


async def _fill(size: int, coding: str, writes: int) -> dict:
    raw = {s.option: s.default for s in config.SETTINGS} | {
        "cache_max_bytes": str(BUDGET_BYTES),
        "cache_max_entries": "0",
        "cache_compress": coding,
    }
    settings = config.parse_settings(raw)
    engine = Engine(lambda: settings)
    rules = Rules(default_ttl=3600, override=False)
    fields = [(b"content-type", b"application/json"), (b"cache-control", b"max-age=3600")]
    body_bytes, elapsed = 0, 0.0
    for i in range(writes):
        body = json_body(size, i)
        body_bytes += len(body)
        url = f"http://bench.example/items/{i}"
        t0 = time.process_time()
        entry = admit(
            key=url,
            url=url,
            host="bench.example",
            method="GET",
            request_fields=[(b"accept-encoding", b"gzip")],
            status=200,
            reason=b"OK",
            response_fields=fields,
            body=body,
            request_time=time.time(),
            response_time=time.time(),
            rules=rules,
        )
        await engine.core.write(entry, engine.core.meta_after(None, time.time()))
        elapsed += time.process_time() - t0
    usage = await engine.read_usage()
    return {
        "entries": usage.entries,
        "bytes": usage.bytes,
        "bytes_as_sent": usage.sent_bytes,
        "evictions": usage.evictions,
        "writes": writes,
        "mean_body": body_bytes / writes,
        "write_us": elapsed / writes * 1e6,
    }


def capacity(quick: bool) -> Section:
    rows, data = [], {}
    for size in (1024, 10 * 1024):
        per_size = {}
        for coding in ("off", "gzip", "br", "zstd"):
            # Enough writes to fill the budget at least twice over: the count held is then the budget's.
            writes = int(BUDGET_BYTES / (size / 8 + 1700) * 1.2)
            if quick:
                writes //= 4
            result = asyncio.run(_fill(size, coding, writes))
            per_size[coding] = result
            data[f"{size} {coding}"] = result
        base = per_size["off"]["entries"]
        for coding, result in per_size.items():
            rows.append(
                [
                    f"{size // 1024} KiB",
                    "as sent" if coding == "off" else coding,
                    f"{result['entries']:,}",
                    fmt(result["entries"] / base if base else None, 2),
                    fmt(result["bytes"] / 2**20, 1),
                    fmt(result["bytes_as_sent"] / result["bytes"] if result["bytes"] else None, 2),
                    f"{result['evictions']:,}",
                    fmt(result["write_us"], 0),
                ]
            )
    md = table(
        [
            "body",
            "stored",
            "entries held",
            "vs as sent",
            "MiB held",
            "stands for / held",
            "evictions",
            "write us (admit + code + put)",
        ],
        rows,
    )
    md += (
        "\n\ncache_max_bytes=64MB, distinct JSON bodies written through the engine (admit, compress, the "
        "memory store's byte accounting: body + fields + per-entry overhead) until well past the budget."
    )
    if quick:
        md += " Quick run: the budget is not filled, counts are what was written."
    return Section("Entries held in a 64 MB budget, JSON bodies as sent and compressed", md, [], data)


def run(scenarios: list[str], quick: bool) -> list[Section]:
    sections = []
    if "codecs" in scenarios:
        bl.log("compression: codecs")
        sections.append(codecs(quick))
    if "capacity" in scenarios:
        bl.log("compression: capacity")
        sections.append(capacity(quick))
    return sections
