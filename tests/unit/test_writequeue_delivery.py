"""Delivery through the small delivery interface (a fake client, a real SQLite queue), and the
adapter that delivers through the cache engine's own upstream client (against a real origin)."""

import asyncio
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from mitmcache import config
from mitmcache.upstream import Upstream
from mitmcache.writequeue.delivery import Deliverer
from mitmcache.writequeue.engine import POOL_SHARE, Answer, DeliveryFailed, EngineDelivery
from mitmcache.writequeue.job import NewJob
from mitmcache.writequeue.metrics import QueueMetrics
from mitmcache.writequeue.settings import parse_queue_settings
from mitmcache.writequeue.sqlite_store import SQLiteStore


class FakeClient:
    def __init__(self, answer: Answer | None) -> None:
        self.answer = answer
        self.sent: list[tuple[str, str, list[tuple[str, str]], bytes, float]] = []

    async def send(
        self, method: str, url: str, fields: Sequence[tuple[str, str]], body: bytes, timeout: float
    ) -> Answer:
        self.sent.append((method, url, list(fields), body, timeout))
        if self.answer is None:
            raise DeliveryFailed("upstream-error: ConnectError")
        return self.answer


def settings(tmp_path: Path):
    raw = {s.option: s.default for s in config.WRITE_QUEUE_SETTINGS}
    raw.update(async_routes="POST /e", async_request_timeout="7")
    return parse_queue_settings(raw, 30, tmp_path)


def new_job() -> NewJob:
    return NewJob(
        id=str(uuid.uuid4()),
        method="POST",
        url="http://up:80/items",
        target="/items",
        fields=[("Host", "shop.test"), ("Content-Type", "text/plain")],
        body=b"made",
        idempotency_key=None,
        fingerprint="fp",
        accepted_at=time.time(),
    )


async def deliver_one(tmp_path: Path, client: FakeClient) -> tuple[list, str]:
    store = SQLiteStore(tmp_path / "queue.db")
    await store.open()
    invalidated: list = []

    async def invalidate(url, fields, answer_fields) -> int:
        invalidated.append((url, fields, answer_fields))
        return 0

    accepted = await store.accept(new_job(), 10)
    deliverer = Deliverer(store, client, lambda: settings(tmp_path), QueueMetrics(), invalidate)
    deliverer.start()
    for _ in range(100):
        job = await store.get(accepted.id, time.time())
        if job is not None and job.attempts and job.state.value != "delivering":
            break
        await asyncio.sleep(0.05)
    await deliverer.stop(1)
    await store.close()
    return invalidated, accepted.id


async def test_a_delivery_sends_the_job_with_its_idempotency_key_within_the_timeout(tmp_path):
    client = FakeClient(Answer(201, []))
    _, job_id = await deliver_one(tmp_path, client)
    [(method, url, fields, body, timeout)] = client.sent
    assert (method, url, body, timeout) == ("POST", "http://up:80/items", b"made", 7)
    assert fields[-1] == ("Idempotency-Key", job_id)


async def test_a_delivered_write_invalidates_with_its_answers_fields(tmp_path):
    location = [(b"location", b"/items/7")]
    invalidated, _ = await deliver_one(tmp_path, FakeClient(Answer(201, location)))
    [(url, fields, answer_fields)] = invalidated
    assert (url, answer_fields) == ("http://up:80/items", location)
    assert ("Host", "shop.test") in fields


async def test_a_write_without_an_answer_invalidates_nothing(tmp_path):
    invalidated, _ = await deliver_one(tmp_path, FakeClient(None))
    assert invalidated == []


# -- through the engine's upstream client ------------------------------------------------------------


async def origin(answer: bytes) -> tuple[asyncio.Server, str, list[bytes]]:
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", heads


def cache_with(upstream: Upstream) -> SimpleNamespace:
    return SimpleNamespace(engine=SimpleNamespace(upstream=upstream))


async def test_deliveries_go_through_the_engines_client_and_keep_a_redirect_as_the_answer():
    big = b"x" * 100_000  # the answer's body is dropped, whatever its size
    answer = b"HTTP/1.1 303 See Other\r\nLocation: /items/7\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)
    server, url, heads = await origin(answer)
    upstream = Upstream()
    cache = cache_with(upstream)
    EngineDelivery.reserve(cache, 3)
    upstream.start(verify_tls=True, max_connections=2)
    try:
        got = await EngineDelivery(cache).send("PATCH", url + "/items", [("X-Odd", "\xe9")], b"b", 5)
    finally:
        await upstream.close()
        server.close()
    assert got.status == 303 and (b"Location", b"/items/7") in got.fields
    assert heads[0].startswith(b"PATCH /items HTTP/1.1\r\n") and b"X-Odd: \xe9\r\n" in heads[0]
    assert upstream._shares == {POOL_SHARE: 3}


async def test_no_answer_from_the_engines_client_is_a_failed_delivery_with_its_reason():
    upstream = Upstream()  # never started: the engine is not running
    with pytest.raises(DeliveryFailed, match="upstream client not running"):
        await EngineDelivery(cache_with(upstream)).send("POST", "http://127.0.0.1:1/", [], b"", 5)
