"""A PostgreSQL database of a test's own on the local server (127.0.0.1:5432, trust authentication),
created for it and dropped after. Unreachable: the test is skipped, except with ``CI=true``, where a
missing service is a failure."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import pytest

HOST, PORT = "127.0.0.1", 5432
USERS = ("postgres", "root")


async def _admin_connection() -> tuple[asyncpg.Connection, str]:
    last: Exception | None = None
    for user in USERS:
        try:
            return await asyncpg.connect(
                host=HOST, port=PORT, user=user, database="postgres", timeout=5
            ), user
        except (OSError, asyncpg.PostgresError, TimeoutError) as e:
            last = e
    raise ConnectionError(f"PostgreSQL at {HOST}:{PORT}: {last}")


def _unreachable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required when CI=true: {reason}")
    pytest.skip(f"PostgreSQL unreachable: {reason}")


async def _create(name: str) -> str:
    conn, user = await _admin_connection()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://{user}@{HOST}:{PORT}/{name}"
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    """Drop it even while proxies are still connected."""
    conn, _ = await _admin_connection()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _run[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion, also from inside a running event loop (an async fixture)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def database() -> Iterator[tuple[str, str]]:
    """``(url, name)`` of a fresh database; a generator for fixtures."""
    name = f"mitmcache_test_{uuid.uuid4().hex[:12]}"
    try:
        url = _run(_create(name))
    except ConnectionError as e:
        _unreachable(str(e))
        raise AssertionError("unreachable") from None
    try:
        yield url, name
    finally:
        _run(drop_database(name))
