"""The disk store (CACHE_STORE=disk or sqlite:///abs/path), end to end: real proxies on a real
SQLite file, stopped, killed with SIGKILL and restarted."""

import asyncio
import os
import signal
import sqlite3
import stat
import time
from pathlib import Path

import httpx
import pytest

from tests.support.harness import Proxy, json_body

KEY = "disk-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}


def sqlite_url(path: Path) -> str:
    return f"sqlite://{path}"


@pytest.fixture
def disk(proxy_factory, tmp_path):
    """Start a proxy on the test's store file: ``disk()``, ``disk(settings)``."""
    path = tmp_path / "store" / "cache.db"

    def start(settings: dict | None = None, **kwargs):
        return proxy_factory(
            {"cache_store": sqlite_url(path), "cache_admin_key": KEY, **(settings or {})}, **kwargs
        )

    start.path = path
    return start


def test_a_restarted_proxy_serves_what_was_stored_with_its_age(origin, disk, http, proxy_factory):
    origin.route("/kept", headers={"Cache-Control": "max-age=600"}, body="kept")
    first = disk()
    assert http.get(f"{first.url}/kept").headers["x-cache"] == "MISS"
    stored_at = time.time()
    proxy_factory.stop_all()
    time.sleep(2)
    answer = http.get(f"{disk().url}/kept")
    assert (answer.text, answer.headers["x-cache"]) == ("kept", "HIT")
    assert "detail=tier-shared" in answer.headers["cache-status"]  # read from the file
    assert 2 <= int(answer.headers["age"]) <= time.time() - stored_at + 1  # stopped time counts
    assert origin.count("/kept") == 1


@pytest.mark.parametrize(("data_dir", "where"), [(None, "data"), ("state/cache", "state/cache")])
def test_disk_keeps_cache_db_in_the_data_directory_created_private(
    origin, proxy_factory, http, tmp_path, data_dir, where
):
    origin.route("/a", headers={"Cache-Control": "max-age=600"}, body="a")
    settings = {"cache_store": "disk"} | ({"cache_data_dir": data_dir} if data_dir else {})
    proxy = proxy_factory(settings, cwd=tmp_path / "cwd")
    http.get(f"{proxy.url}/a")
    proxy_factory.stop_all()
    data = tmp_path / "cwd" / where
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    with sqlite3.connect(data / "cache.db") as db:
        assert db.execute("SELECT count(*) FROM entries").fetchone() == (1,)


def test_writes_are_committed_within_a_second_while_the_proxy_runs(origin, disk, http):
    origin.route("/w", headers={"Cache-Control": "max-age=600"}, body="w")
    proxy = disk()
    http.get(f"{proxy.url}/w")
    time.sleep(1)
    with sqlite3.connect(disk.path) as db:
        assert db.execute("SELECT count(*) FROM entries").fetchone() == (1,)
    assert proxy.returncode is None


async def test_sigkill_mid_traffic_loses_at_most_the_last_second_and_serves_only_complete_entries(
    origin, disk, http
):
    size = 20_000
    origin.route("/k", headers={"Cache-Control": "max-age=600"}, body="x" * size)
    proxy = disk()
    answered: dict[str, float] = {}  # path -> when its MISS was answered
    stop = asyncio.Event()

    async def traffic(client: httpx.AsyncClient, lane: int) -> None:
        n = 0
        while not stop.is_set():
            path = f"/k?n={lane}-{n}"
            n += 1
            try:
                response = await client.get(f"{proxy.url}{path}")
            except httpx.HTTPError:
                return  # the proxy was killed under us
            if response.status_code == 200:
                answered[path] = time.monotonic()

    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        lanes = [asyncio.create_task(traffic(client, lane)) for lane in range(8)]
        await asyncio.sleep(3)
        os.kill(proxy.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        stop.set()
        await asyncio.gather(*lanes)
    assert len(answered) > 20

    with sqlite3.connect(disk.path) as db:  # readable, consistent
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    restarted = disk({"cache_upstream_timeout": 5})
    origin.route("/k", status=500, body="the upstream must not be asked again")
    for path, at in answered.items():
        response = http.get(f"{restarted.url}{path}", headers={"Cache-Control": "only-if-cached"})
        if response.status_code == 200:
            assert response.text == "x" * size  # complete, never a prefix
        else:
            assert response.status_code == 504
            assert killed_at - at < 1.0, f"{path} answered {killed_at - at:.2f}s before the kill was lost"


def test_the_disk_budget_is_respected_evicting_the_least_recently_used(origin, disk, http):
    body = "b" * 100_000
    origin.route("/big", headers={"Cache-Control": "max-age=600"}, body=body)
    budget = 1024 * 1024
    proxy = disk({"cache_store_max_bytes": "1MB", "cache_max_bytes": "256k"})
    http.get(f"{proxy.url}/big?first")
    for i in range(40):
        http.get(f"{proxy.url}/big?{i}")
        http.get(f"{proxy.url}/big?first")  # kept in use: never the least recently used
        time.sleep(0.05)
    time.sleep(0.5)
    stats = json_body(http.get(f"{proxy.url}/__cache/stats", headers=AUTH))["disk"]
    assert stats["bytes"] <= budget and stats["evictions"] > 0
    assert stats["file_bytes"] <= budget * 1.5 + 256 * 1024  # the file, its index and log
    files = sum(p.stat().st_size for p in disk.path.parent.glob("cache.db*"))
    assert files <= budget * 1.5 + 256 * 1024
    assert http.get(f"{proxy.url}/big?first").headers["x-cache"] == "HIT"
    assert http.get(f"{proxy.url}/big?39").headers["x-cache"] == "HIT"
    assert http.get(f"{proxy.url}/big?0", headers={"Cache-Control": "only-if-cached"}).status_code == 504


def test_health_and_stats_name_the_disk_store(origin, disk, http):
    proxy = disk()
    health = json_body(http.get(f"{proxy.url}/__cache/health"))
    assert health["status"] == "ok"
    assert health["store"] == {
        "backend": "disk",
        "state": "up",
        "url": sqlite_url(disk.path),
        "path": str(disk.path),
    }


def test_a_second_proxy_on_the_same_file_is_refused(origin, disk, proxy_factory):
    disk()
    code, log = Proxy.run_expecting_failure(
        origin, {"cache_store": sqlite_url(disk.path)}, launcher=proxy_factory.launcher
    )
    assert code != 0
    assert "cache_store: cannot use the disk store" in log and "in use by another proxy" in log


def test_an_unusable_store_path_stops_startup_naming_the_setting(origin, proxy_factory, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, log = Proxy.run_expecting_failure(
        origin, {"cache_store": f"sqlite://{blocker}/cache.db"}, launcher=proxy_factory.launcher
    )
    assert code != 0 and "cache_store: cannot use the disk store" in log
