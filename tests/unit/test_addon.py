"""The addon's hooks, driven the way mitmproxy drives them (taddons/tflow, no sockets)."""

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow, tutils

from mitmcache.addon import Cache
from mitmcache.request_key import authority
from tests.support.hooks import run_hook
from tests.support.serialising_store import SerialisingStore

ENTRY_SCRIPT = Path(__file__).resolve().parents[2] / "addons" / "cache.py"


def get(path: str = "/a", method: str = "GET", **headers: str) -> http.HTTPFlow:
    request = tutils.treq(
        method=method.encode(), path=path.encode(), headers=http.Headers(host="example", **headers)
    )
    return tflow.tflow(req=request)


def upstream_reply(flow: http.HTTPFlow, body: bytes = b"shared", status: int = 200, **headers: str) -> None:
    fields = http.Headers(content_length=str(len(body)), cache_control="max-age=60", **headers)
    flow.response = tutils.tresp(status_code=status, content=body, headers=fields)


async def fetch(cache: Cache, flow: http.HTTPFlow, **reply_headers: str) -> http.HTTPFlow:
    """What the proxy does for one flow: request hook, then (if not answered) the upstream's reply."""
    await run_hook(cache.request(flow))
    if flow.response is None:
        upstream_reply(flow, **reply_headers)
        cache.responseheaders(flow)
        await cache.response(flow)
    return flow


async def leader_and_waiting_follower(cache: Cache) -> tuple[http.HTTPFlow, http.HTTPFlow, asyncio.Task]:
    """Two requests for one missing key: the first leads, the second is parked in its hook."""
    leader, follower = get(), get()
    await run_hook(cache.request(leader))
    waiting = asyncio.get_running_loop().create_task(run_hook(cache.request(follower)))
    await asyncio.sleep(0.01)
    return leader, follower, waiting


def _package_modules() -> dict[str, object]:
    return {n: m for n, m in sys.modules.items() if n == "mitmcache" or n.startswith("mitmcache.")}


@pytest.fixture
def package_restored() -> Iterator[None]:
    """The entry script purges the package and imports it again (for hot reload); afterwards this
    process gets its own modules back, or a module the cache imports later (the Redis tier, when a
    store names it) would come from the new package and its classes would not be the ones the other
    tests in this process imported."""
    saved = _package_modules()
    yield
    for name in _package_modules():
        del sys.modules[name]
    sys.modules.update(saved)


async def test_entry_script_loads_like_mitmdump_does(package_restored):
    with taddons.context() as tctx:
        module = tctx.script(str(ENTRY_SCRIPT))
        assert module is not None
        # The entry script re-imports the package (for hot reload), so compare by name.
        assert [type(addon).__name__ for addon in module.addons] == ["Cache", "WriteQueue"]


async def test_invalid_options_raise_options_error_naming_the_setting_and_its_source():
    cache = Cache()
    with (
        taddons.context(cache) as tctx,
        pytest.raises(exceptions.OptionsError, match=r"for cache_ttl \(from --set\): expected"),
    ):
        tctx.configure(cache, cache_ttl="-1")


async def test_an_invalid_option_change_while_running_is_refused_as_such():
    """mitmweb's options editor or the console's :set: the proxy keeps running, the change is refused."""
    cache = Cache()
    with taddons.context(cache) as tctx:
        cache.running()
        try:
            with pytest.raises(exceptions.OptionsError, match=r"for cache_ttl \(from an option change\)"):
                tctx.configure(cache, cache_ttl="-1")
        finally:
            cache.done()


async def test_a_stored_response_answers_the_next_request_in_the_request_hook():
    cache = Cache()
    with taddons.context(cache):
        await fetch(cache, get())
        hit = get()
        await run_hook(cache.request(hit))
        assert hit.response is not None
        assert hit.response.headers["x-cache"] == "HIT"
        assert hit.response.content == b"shared"


async def test_a_hit_on_what_the_process_holds_is_answered_without_a_coroutine():
    cache = Cache()
    with taddons.context(cache):
        await fetch(cache, get())
        hit = get()
        assert cache.request(hit) is None
        assert hit.response is not None and hit.response.headers["x-cache"] == "HIT"


async def test_a_miss_on_the_memory_store_is_decided_without_an_await():
    cache = Cache()
    with taddons.context(cache):
        miss = get()
        assert cache.request(miss) is None
        assert miss.response is None  # it goes upstream
        assert cache.engine.refreshing("http://example/a")  # as the leader: others wait for it


async def test_a_miss_on_a_store_shared_with_others_hands_mitmproxy_the_lookup_to_await():
    cache = Cache()
    with taddons.context(cache):
        cache.engine.core.store = SerialisingStore()  # asked like a networked store
        miss = get()
        pending = cache.request(miss)
        assert pending is not None and miss.response is None
        await pending
        assert miss.response is None  # it goes upstream
        assert cache.engine.refreshing("http://example/a")


async def test_a_flow_carries_its_cache_decision_for_mitmweb():
    cache = Cache()
    with taddons.context(cache):
        miss = await fetch(cache, get())
        hit = await fetch(cache, get())
        assert miss.metadata["cache"]["status"] == "MISS" and miss.marked == ":red_circle:"
        assert hit.comment.startswith("HIT") and hit.marked == ":green_circle:"
        assert hit.metadata["cache"]["key"] == "http://example/a"


async def test_concurrent_requests_wait_for_the_leader_and_share_its_response():
    cache = Cache()
    with taddons.context(cache):
        leader, follower, waiting = await leader_and_waiting_follower(cache)
        assert not waiting.done()
        upstream_reply(leader)
        cache.responseheaders(leader)
        await cache.response(leader)
        await asyncio.wait_for(waiting, 1)
        assert follower.response.headers["x-cache"] == "COALESCED"
        assert follower.response.content == b"shared"


async def test_flows_that_go_upstream_are_counted_as_upstream_fetches():
    """varnish MAIN.backend_req: a miss and a POST went upstream, a hit did not."""
    cache = Cache()
    with taddons.context(cache):
        await fetch(cache, get())
        await fetch(cache, get())
        await run_hook(cache.request(get(method="POST")))
        assert cache.engine.counters["upstream_fetch"] == 2


async def test_an_upstream_error_releases_the_waiters_with_a_502():
    cache = Cache()
    with taddons.context(cache):
        leader, follower, waiting = await leader_and_waiting_follower(cache)
        leader.error = tflow.terr("Connection refused")
        cache.error(leader)
        await asyncio.wait_for(waiting, 1)
        assert follower.response.status_code == 502


async def test_a_flow_that_failed_upstream_says_why_on_the_flow():
    cache = Cache()
    with taddons.context(cache):
        flow = get()
        await run_hook(cache.request(flow))
        flow.error = tflow.terr("Connection refused")
        cache.error(flow)
        assert flow.metadata["cache"]["detail"] == "upstream-error: Connection refused"
        assert flow.comment.startswith("MISS upstream-error")


async def test_a_leader_without_a_response_head_in_time_releases_its_waiters_with_a_504():
    cache = Cache()
    with taddons.context(cache) as tctx:
        tctx.configure(cache, cache_upstream_timeout="1")
        _, follower, waiting = await leader_and_waiting_follower(cache)
        cache.forwarding.time_out(time.time() + 0.5)  # not yet
        assert not waiting.done()
        cache.forwarding.time_out(time.time() + 1.5)
        await asyncio.wait_for(waiting, 1)
        assert follower.response.status_code == 504
        assert "upstream-timeout" in follower.response.headers["cache-status"]
        assert not cache.engine.refreshing("http://example/a")


async def test_a_leader_whose_response_head_arrived_is_not_timed_out():
    """Only the wait for the head is bounded: a large body may take longer to stream."""
    cache = Cache()
    with taddons.context(cache) as tctx:
        tctx.configure(cache, cache_upstream_timeout="1")
        leader, follower, waiting = await leader_and_waiting_follower(cache)
        upstream_reply(leader)
        cache.responseheaders(leader)
        cache.forwarding.time_out(time.time() + 5)
        await asyncio.sleep(0.01)
        assert not waiting.done()
        await cache.response(leader)
        await asyncio.wait_for(waiting, 1)
        assert follower.response.headers["x-cache"] == "COALESCED"


async def test_the_leaders_client_leaving_makes_a_waiter_the_new_leader():
    cache = Cache()
    with taddons.context(cache):
        leader, follower, waiting = await leader_and_waiting_follower(cache)
        leader.error = tflow.terr("Client disconnected.")
        cache.error(leader)
        await asyncio.wait_for(waiting, 1)
        assert follower.response is None  # it goes upstream itself, as the new leader
        assert cache.engine.refreshing("http://example/a")


async def test_a_successful_post_drops_the_stored_url():
    cache = Cache()
    with taddons.context(cache):
        await fetch(cache, get())
        post = get(method="POST")
        await run_hook(cache.request(post))
        upstream_reply(post, status=201)
        await cache.response(post)
        again = get()
        await run_hook(cache.request(again))
        assert again.response is None


async def test_head_is_answered_without_a_body():
    cache = Cache()
    with taddons.context(cache):
        await fetch(cache, get())
        head = get(method="HEAD")
        await run_hook(cache.request(head))
        assert head.response.content == b""
        assert head.response.headers["content-length"] == "6"


async def test_admin_health_is_answered_by_the_addon():
    cache = Cache()
    with taddons.context(cache):
        flow = get("/__cache/health")
        await run_hook(cache.request(flow))
        assert flow.response.status_code == 200
        assert flow.response.json()["service"] == "mitmcache"


async def test_user_replays_are_never_answered_from_cache():
    cache = Cache()
    with taddons.context(cache):
        await fetch(cache, get())
        replay = get()
        replay.is_replay = "request"
        await run_hook(cache.request(replay))
        assert replay.response is None


@pytest.mark.parametrize(
    ("http_version", "headers", "authority_field", "expected"),
    [
        ("HTTP/1.1", {"host": "api.example:8080"}, "", "api.example:8080"),
        ("HTTP/1.1", {}, "", "address:22"),  # no Host: where the request goes
        ("HTTP/2.0", {}, "api.example", "api.example"),  # :authority
        ("HTTP/2.0", {"host": "h2-host"}, "", "h2-host"),
    ],
)
def test_the_authority_is_what_mitmproxy_calls_the_host_header(
    http_version, headers, authority_field, expected
):
    request = tutils.treq(
        host="address", port=22, http_version=http_version.encode(), headers=http.Headers(**headers)
    )
    request.authority = authority_field
    assert authority(request) == expected == (request.host_header or f"{request.host}:{request.port}")


async def test_an_exception_while_storing_releases_the_waiters_and_the_key():
    cache = Cache()
    with taddons.context(cache):
        leader, follower, waiting = await leader_and_waiting_follower(cache)

        async def broken_put(*args, **kwargs):
            raise RuntimeError("store failed")

        cache.engine.core.store.put = broken_put
        upstream_reply(leader)
        cache.responseheaders(leader)
        with pytest.raises(RuntimeError):
            await cache.response(leader)
        await asyncio.wait_for(waiting, 1)
        assert follower.response is None  # it goes upstream itself
        assert not cache.engine.refreshing("http://example/a")


async def test_the_leaders_client_leaving_after_the_head_makes_a_waiter_the_new_leader():
    cache = Cache()
    with taddons.context(cache):
        leader, follower, waiting = await leader_and_waiting_follower(cache)
        upstream_reply(leader)
        cache.responseheaders(leader)
        leader.error = tflow.terr("Client disconnected.")
        cache.error(leader)
        await asyncio.wait_for(waiting, 1)
        assert follower.response is None  # not a 502: it goes upstream itself, as the new leader
        assert cache.engine.refreshing("http://example/a")


async def test_a_body_that_pauses_past_the_idle_timeout_releases_the_waiters_with_a_504():
    cache = Cache()
    with taddons.context(cache) as tctx:
        tctx.configure(cache, cache_body_idle_timeout="2", cache_upstream_timeout="1")
        leader, follower, waiting = await leader_and_waiting_follower(cache)
        upstream_reply(leader)
        cache.responseheaders(leader)
        cache.forwarding.time_out(time.time() + 1.5)  # past REQ_TIMEOUT, but the head arrived in time
        await asyncio.sleep(0.01)
        assert not waiting.done()
        cache.forwarding.time_out(time.time() + 2.5)
        await asyncio.wait_for(waiting, 1)
        assert follower.response.status_code == 504
        assert "upstream-body-idle" in follower.response.headers["cache-status"]


async def test_a_head_that_cannot_be_stored_releases_the_waiters_before_the_body():
    cache = Cache()
    with taddons.context(cache):
        leader, follower, waiting = await leader_and_waiting_follower(cache)
        upstream_reply(leader, set_cookie="session=1")
        cache.responseheaders(leader)
        await asyncio.wait_for(waiting, 1)
        assert follower.response is None  # it goes upstream itself, without waiting for the body


def test_an_absolute_form_target_is_sent_in_origin_form():
    cache = Cache()
    with taddons.context(cache):
        flow = get("/home")
        flow.request.authority = "evil.example"
        cache.requestheaders(flow)
        assert flow.request.authority == ""
        assert flow.request.path == "/home"


async def test_a_failed_flow_leaves_the_caches_json_error_for_its_client():
    cache = Cache()
    with taddons.context(cache):
        flow = get()
        await run_hook(cache.request(flow))
        flow.error = tflow.terr("Connection refused")
        cache.error(flow)
        answer = flow.request._mitmcache_failure_answer  # what compat.answer_failure_with left
        assert answer.status_code == 502
        assert answer.headers["x-cache"] == "MISS"
        assert "upstream-error: Connection refused" in answer.text
