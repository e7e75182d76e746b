"""The control plane (control.py): commands through mitmproxy's command manager, the admin API and
the Clear-Cache header answered in the cache's request hook, and what names a purge."""

import asyncio
import json
import logging
import re
import time

import pytest
from mitmproxy import ctx, exceptions, http
from mitmproxy.test import taddons, tflow, tutils

from mitmcache.addon import Cache
from mitmcache.admin_api import redact
from mitmcache.entry import Entry, Meta
from mitmcache.request_key import cache_key
from mitmcache.targets import BadRequest, Target
from mitmcache.targets import count_param as _count
from mitmcache.targets import position as _position
from mitmcache.upstream import Fetched
from tests.support.entries import stored_entry
from tests.support.hooks import run_hook

KEY = "s3cret-key"
HOST = "http://up:80"


IDLE: dict[int, float] = {}  # seconds since a client last asked, by entry version


def entry(key: str = f"{HOST}/a", vary: tuple[tuple[str, str], ...] = (), *, idle: float = 0.0) -> Entry:
    """A stored 200 with 60 s to live, last asked for ``idle`` seconds ago (once stored by ``put``)."""
    now = time.time()
    made = stored_entry(
        key,
        host=key.split("/")[2],
        vary=vary,
        fields=((b"content-type", b"text/plain"), (b"etag", b'"v1"')),
        body=b"v1",
        etag='"v1"',
        upstream_etag='"v1"',
        date=now,
        response_time=now,
    )
    IDLE[made.version] = idle
    return made


def request_flow(path: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes = b""):
    fields = http.Headers(**{k.replace("-", "_"): v for k, v in (headers or {}).items()})
    return tflow.tflow(
        req=tutils.treq(method=method.encode(), path=path.encode(), headers=fields, content=body)
    )


class FakeUpstream:
    """Answers every refresh with a new body (varying on Accept-Language), and remembers the requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[bytes, bytes]]] = []

    async def get(self, url, fields, timeout, max_bytes) -> Fetched:
        self.requests.append((url, dict(fields)))
        await asyncio.sleep(0)
        now = time.time()
        fields = [(b"cache-control", b"max-age=60"), (b"vary", b"accept-language")]
        return Fetched(200, b"OK", fields, b"v2", now, now)


@pytest.fixture
async def cache():
    addon = Cache()
    addon.engine.upstream.get = FakeUpstream().get  # refreshes never leave the process
    with taddons.context(addon) as tctx:
        tctx.configure(addon, cache_admin_key=KEY)
        yield addon
        addon.engine.stop()


def store(cache: Cache):
    return cache.engine.core.store


async def put(cache: Cache, *entries: Entry) -> None:
    now = time.time()
    for e in entries:
        meta = Meta(stored_at=now - IDLE.get(e.version, 0.0), last_access=now - IDLE.get(e.version, 0.0))
        await store(cache).put(e, meta, keep_until=now + 3600, check_at=now + 3600)


async def entries_stored(cache: Cache) -> int:
    return (await store(cache).usage()).entries


async def settle(cache: Cache) -> None:
    """Let the control plane's background refreshes finish."""
    for _ in range(100):
        if cache.engine.idle:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("background work did not finish")


async def answer(cache: Cache, flow: http.HTTPFlow) -> tuple[int, dict]:
    await run_hook(cache.request(flow))
    assert flow.response is not None
    return flow.response.status_code, json.loads(flow.response.content or b"null")


# -- what a purge or refresh names ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "prefix", "matching", "not_matching"),
    [
        ("/a?b=2&a=1", False, ["http://up:80/a?a=1&b=2", "https://other/a?a=1&b=2"], ["http://up:80/a"]),
        ("HTTP://Up:80/a?b=1&a=2", False, ["http://up:80/a?a=2&b=1"], ["http://other:80/a?a=2&b=1"]),
        ("/api/", True, ["http://up:80/api/x", "http://other/api/"], ["http://up:80/apiary"]),
        ("http://up:80/api", True, ["http://up:80/api/x", "http://up:80/apiary"], ["http://other:80/api"]),
    ],
)
def test_a_path_matches_under_every_host_and_a_url_under_its_own(raw, prefix, matching, not_matching):
    target = Target.parse(raw, prefix=prefix)
    assert all(target.matches(k) for k in matching)
    assert not any(target.matches(k) for k in not_matching)


@pytest.mark.parametrize("raw", ["api/items", "ftp://host/a", ""])
def test_something_that_is_neither_a_path_nor_a_url_is_refused(raw):
    with pytest.raises(BadRequest):
        Target.parse(raw, prefix=False)


# -- commands ------------------------------------------------------------------------------------


async def test_command_names_are_reachable_from_mitmweb(cache):
    names = {n for n in ctx.master.commands.commands if n.startswith("cache.")}
    assert {"cache.clear", "cache.purge", "cache.refresh", "cache.stats"} <= names
    assert all(re.fullmatch(r"[a-z.]+", n) for n in names)  # mitmweb's /commands/<name> route


async def test_cache_stats_returns_the_main_counters_on_one_line(cache):
    cache.engine.counters.update({"HIT": 3, "MISS": 1, "MISS:private": 1})
    await put(cache, entry())
    stats = ctx.master.commands.execute("cache.stats")
    assert stats.startswith("hit_ratio=0.75 hits=3 stale_hits=0 misses=1 miss_reasons=private:1 ")
    assert " entries=1 " in stats and "\n" not in stats


async def test_cache_clear_returns_how_many_entries_were_dropped(cache):
    await put(cache, entry(f"{HOST}/a"), entry(f"{HOST}/b"))
    assert ctx.master.commands.call("cache.clear") == 2
    assert await entries_stored(cache) == 0


async def test_cache_purge_drops_every_variant_of_a_path_under_every_host(cache):
    await put(
        cache,
        entry(f"{HOST}/a", (("accept-language", "en"),)),
        entry(f"{HOST}/a", (("accept-language", "de"),)),
        entry("http://other:80/a"),
        entry(f"{HOST}/b"),
    )
    assert ctx.master.commands.execute("cache.purge /a") == 3
    assert await store(cache).keys() == [f"{HOST}/b"]


async def test_cache_purge_of_a_full_url_spares_other_hosts(cache):
    await put(cache, entry(f"{HOST}/a"), entry("http://other:80/a"))
    assert ctx.master.commands.call("cache.purge", f"{HOST}/a") == 1
    assert await store(cache).keys() == ["http://other:80/a"]


async def test_cache_purge_prefix_drops_every_url_under_it(cache):
    await put(cache, entry(f"{HOST}/api/a"), entry(f"{HOST}/api/b?x=1"), entry(f"{HOST}/apiary"))
    assert ctx.master.commands.call("cache.purge.prefix", "/api/") == 2
    assert cache.engine.counters["purged"] == 2 and cache.engine.counters["purges"] == 1


async def test_cache_purge_flows_drops_the_urls_of_the_given_flows(cache):
    flow = request_flow("/from-a-flow")
    await put(cache, entry(cache_key(flow.request)), entry(f"{HOST}/kept"))
    assert ctx.master.commands.call("cache.purge.flows", [flow]) == 1
    assert await store(cache).keys() == [f"{HOST}/kept"]


async def test_a_bad_url_is_a_command_error(cache):
    with pytest.raises(exceptions.CommandError, match="expected a path"):
        ctx.master.commands.call("cache.purge", "no-slash")


async def test_cache_refresh_refetches_every_variant_one_after_the_other(cache):
    fake = FakeUpstream()
    cache.engine.upstream.get = fake.get
    await put(
        cache,
        entry(f"{HOST}/v", (("accept-language", "en"),)),
        entry(f"{HOST}/v", (("accept-language", "de"),)),
    )
    result = ctx.master.commands.call("cache.refresh", "/v")
    assert result == "url=/v result=refreshing refreshing=2 keys=1"
    await settle(cache)
    assert sorted(fields[b"accept-language"] for _, fields in fake.requests) == [b"de", b"en"]
    assert {s.entry.body for s in await store(cache).peek(f"{HOST}/v")} == {b"v2"}


async def test_a_refresh_drops_the_variants_that_vary_on_credentials(cache):
    """No refresh may replay a client's Cookie: such a variant is dropped, the next client
    fetches it with its own."""
    fake = FakeUpstream()
    cache.engine.upstream.get = fake.get
    await put(cache, entry(f"{HOST}/me", (("cookie", "session=alice"),)))
    result = ctx.master.commands.call("cache.refresh", "/me")
    assert result == "url=/me result=cleared refreshing=0 keys=1 cleared=1"
    await settle(cache)
    assert fake.requests == []
    assert list(await store(cache).peek(f"{HOST}/me")) == []


async def test_cache_entries_lists_what_is_stored(cache):
    await put(cache, entry(f"{HOST}/a"), entry(f"{HOST}/b"))
    listing = ctx.master.commands.execute("cache.entries /a")
    assert re.fullmatch(rf"total=1 count=1: {re.escape(HOST)}/a fresh ttl=\d+s hits=0", listing)


# -- the Clear-Cache header ----------------------------------------------------------------------


async def test_clear_cache_refreshes_hot_variants_and_drops_cold_ones(cache):
    flow = request_flow("/h", headers={"Clear-Cache": "1", "Clear-Cache-Key": KEY})
    key = cache_key(flow.request)
    hot, cold = entry(key, (("accept-language", "en"),)), entry(key, (("accept-language", "de"),), idle=600)
    await put(cache, hot, cold)
    code, body = await answer(cache, flow)
    assert (code, body["result"], body["refreshing"], body["cleared"]) == (200, "refreshing", 1, 1)
    assert {v["vary"]["accept-language"]: v["result"] for v in body["variants"]} == {
        "en": "refreshing",
        "de": "cleared",
    }
    await settle(cache)
    assert [s.entry.vary for s in await store(cache).peek(key)] == [hot.vary]


async def test_clear_cache_with_a_wrong_key_changes_nothing(cache):
    flow = request_flow("/h", headers={"Clear-Cache": "1", "Clear-Cache-Key": "wrong"})
    await put(cache, entry(cache_key(flow.request), idle=600))
    assert (await answer(cache, flow))[0] == 401
    assert await entries_stored(cache) == 1


async def test_the_key_is_redacted_on_the_flow(cache):
    flow = request_flow("/__cache/stats", headers={"Clear-Cache-Key": KEY, "Authorization": f"Bearer {KEY}"})
    assert (await answer(cache, flow))[0] == 200
    assert KEY not in str(flow.request.headers)


async def test_the_key_is_never_logged(cache, caplog):
    caplog.set_level(logging.DEBUG, logger="mitmcache")
    logging.getLogger("mitmcache").setLevel(logging.DEBUG)
    for headers in (
        {"Clear-Cache": "1", "Clear-Cache-Key": KEY},
        {"Clear-Cache": "1", "Clear-Cache-Key": KEY + "x"},
    ):
        await answer(cache, request_flow("/logged", headers=headers))
    await answer(cache, request_flow("/__cache/clear", "POST", {"Authorization": f"Bearer {KEY}"}))
    assert "control: clear" in caplog.text and "Clear-Cache" in caplog.text
    assert KEY not in caplog.text


# -- the admin API -------------------------------------------------------------------------------


async def test_control_flows_say_what_they_were_in_mitmweb(cache):
    flow = request_flow("/__cache/clear", "POST", {"Authorization": f"Bearer {KEY}"})
    await answer(cache, flow)
    assert flow.comment == "ADMIN clear 200 cleared=0"
    assert flow.marked == ":gear:"
    assert flow.metadata["cache"]["status"] == "ADMIN"
    assert flow.metadata["cache_control"] == "clear"


async def test_head_gets_the_headers_without_the_body(cache):
    flow = request_flow("/__cache/health", "HEAD")
    await run_hook(cache.request(flow))
    assert flow.response.raw_content == b""
    assert int(flow.response.headers["content-length"]) > 0


async def test_a_body_that_is_not_a_json_object_is_a_400(cache):
    flow = request_flow("/__cache/purge", "POST", {"Authorization": f"Bearer {KEY}"}, body=b"[1]")
    assert (await answer(cache, flow))[0] == 400


async def test_purge_accepts_a_form_body(cache):
    await put(cache, entry(f"{HOST}/f"))
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/x-www-form-urlencoded"}
    flow = request_flow("/__cache/purge", "POST", headers, body=b"url=/f")
    assert (await answer(cache, flow))[1]["purged"] == 1


async def test_an_invalid_cursor_is_a_400(cache):
    flow = request_flow("/__cache/entries?cursor=%25%25", headers={"Authorization": f"Bearer {KEY}"})
    assert (await answer(cache, flow))[0] == 400


async def test_the_prefix_itself_lists_the_endpoints(cache):
    code, body = await answer(cache, request_flow("/__cache"))
    assert code == 200
    assert body["endpoints"]["/__cache/purge"] == "POST"
    assert body["endpoints"]["/__cache/health"] == "GET HEAD (no key)"


async def test_a_json_body_labelled_as_a_form_is_read_as_json(cache):
    await put(cache, entry(f"{HOST}/j"))
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/x-www-form-urlencoded"}
    flow = request_flow("/__cache/purge", "POST", headers, body=b'{"url": "/j"}')  # what curl -d sends
    assert (await answer(cache, flow))[1]["purged"] == 1


def test_variants_with_and_without_a_varied_field_sort_together():
    """An absent field (None) sorts before any value; comparing None with a string used to raise."""
    positions = [_position("k", (("x-tenant", "a"),)), _position("k", (("x-tenant", None),))]
    assert sorted(positions) == [_position("k", (("x-tenant", None),)), _position("k", (("x-tenant", "a"),))]


@pytest.mark.parametrize("raw", ["\u00b2", "\u0663", "-1", "1.5", "ten"])
def test_a_count_that_is_not_ascii_digits_is_a_bad_request(raw):
    with pytest.raises(BadRequest, match="whole number"):
        _count({"limit": raw}, "limit", 100, 1000)


def test_a_count_of_thousands_of_digits_is_the_maximum():
    assert _count({"limit": "9" * 5000}, "limit", 100, 1000) == 1000


@pytest.mark.parametrize("authorization", ["Bearer k3y", "Basic YWRtaW46azN5", "k3y"])
def test_a_control_requests_authorization_is_redacted_whatever_its_scheme(authorization):
    request = tutils.treq()
    request.headers["Authorization"] = authorization
    redact(request)
    assert "k3y" not in request.headers["authorization"]
    assert "YWRtaW46azN5" not in request.headers["authorization"]
    assert request.headers["authorization"].endswith("[redacted]")
