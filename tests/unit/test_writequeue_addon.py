"""The write queue's hooks and commands, driven the way mitmproxy drives them (taddons/tflow), on a
real SQLite file: what is kept of a request, how the flow says it was queued, the commands' lines."""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import ctx, exceptions, hooks, http
from mitmproxy.addonmanager import traverse
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import taddons, tflow, tutils

from mitmcache.addon import Cache
from mitmcache.writequeue.addon import WriteQueue
from mitmcache.writequeue.job import capture
from tests.support.hooks import run_hook

KEY = "admin-key"


def write(
    path: str = "/events/a", body: bytes = b"payload", method: str = "POST", **headers: str
) -> http.HTTPFlow:
    fields = http.Headers(host="example", content_length=str(len(body)), **headers)
    request = tutils.treq(method=method.encode(), path=path.encode(), headers=fields, content=body)
    return tflow.tflow(req=request)


# -- what is kept ---------------------------------------------------------------------------------


def test_capture_keeps_end_to_end_fields_and_drops_this_hops_and_the_admin_keys():
    flow = write(
        "/events/a?x=1",
        connection="keep-alive, x-hop",
        x_hop="1",
        x_trace="t",
        clear_cache_key=KEY,
        authorization=f"Bearer {KEY}",
        transfer_encoding="chunked",
    )
    job = capture(flow.request, KEY)
    names = [name.lower() for name, _ in job.fields]
    assert names == ["host", "x-trace"]
    assert (job.method, job.target, job.body) == ("POST", "/events/a?x=1", b"payload")


def test_capture_keeps_an_authorization_that_is_not_the_admin_key():
    job = capture(write(authorization="Bearer user-token", clear_cache_key=KEY).request, KEY)
    assert ("authorization", "Bearer user-token") in [(k.lower(), v) for k, v in job.fields]


def test_the_clients_idempotency_key_is_kept_apart_and_used_for_delivery():
    job = capture(write(idempotency_key="order-1").request, KEY)
    assert job.idempotency_key == "order-1"
    assert "idempotency-key" not in [k.lower() for k, _ in job.fields]


def test_the_same_request_has_the_same_fingerprint_and_another_body_another():
    one, same, other = (capture(write(body=b).request, KEY) for b in (b"a", b"a", b"b"))
    assert one.fingerprint == same.fingerprint != other.fingerprint
    assert one.id != same.id


# -- the hooks ------------------------------------------------------------------------------------


@pytest.fixture
async def queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    cache = Cache()
    writequeue = WriteQueue(cache)
    with taddons.context(cache, writequeue) as tctx:
        tctx.configure(cache, cache_admin_key=KEY)
        tctx.configure(writequeue, async_routes="POST /events/*", async_request_timeout="1")
        await writequeue.running()
        yield writequeue
        await writequeue.done()


def flow_hooks(queue: WriteQueue) -> Any:
    """The queue's flow hooks, as mitmproxy finds them: its one child addon."""
    (hooks_addon,) = queue.addons
    return hooks_addon


async def routed(queue: WriteQueue, flow: http.HTTPFlow) -> http.HTTPFlow:
    flow_hooks(queue).requestheaders(flow)
    await run_hook(flow_hooks(queue).request(flow))
    return flow


async def test_an_accepted_write_says_queued_with_its_id_on_the_flow(queue):
    flow = await routed(queue, write())
    assert flow.response is not None and flow.response.status_code == 202
    job_id = json.loads(flow.response.content)["id"]
    assert flow.comment == f"QUEUED id={job_id}"
    assert flow.response.headers["x-cache"] == "QUEUED"
    assert flow.metadata["cache_control"] == "queue"  # the cache's response hook leaves it alone


async def test_an_unrouted_write_is_left_to_the_cache(queue):
    flow = await routed(queue, write("/other"))
    assert flow.response is None and not flow.comment


async def test_a_request_not_queued_passes_the_request_hook_without_a_coroutine(queue):
    """Every request passes this hook, the cache's hits too."""
    for flow in (write("/other"), write("/events/a", method="GET", body=b"")):
        flow_hooks(queue).requestheaders(flow)
        assert flow_hooks(queue).request(flow) is None


async def test_the_stats_command_is_one_line_of_key_value_pairs(queue):
    await routed(queue, write())
    await queue._refresh_counts()
    line = queue.admin.cmd_stats()
    assert "\n" not in line
    pairs = dict(item.split("=", 1) for item in line.split())
    assert set(pairs) == {"queued", "delivering", "delivered", "dead", "oldest_queued_age", "delivery_rate"}
    assert int(pairs["queued"]) + int(pairs["delivering"]) + int(pairs["dead"]) == 1


async def test_the_retry_commands_answer_in_one_line(queue):
    assert queue.admin.cmd_retry("some-id") == "id=some-id retry=scheduled"
    assert queue.admin.cmd_retry_dead() == "retry_dead=scheduled"
    await asyncio.sleep(0.1)


async def test_routes_that_queue_reads_are_refused_naming_the_setting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = Cache()
    writequeue = WriteQueue(cache)
    with (
        taddons.context(cache, writequeue) as tctx,
        pytest.raises(exceptions.OptionsError, match=r"async_routes \(from --set\): 'GET /events/\*': GET"),
    ):
        tctx.configure(writequeue, async_routes="GET /events/*")


async def test_the_commands_say_the_queue_is_off_without_routes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = Cache()
    writequeue = WriteQueue(cache)
    with taddons.context(cache, writequeue):
        await writequeue.running()
        assert writequeue.admin.cmd_stats() == "queue=off"


@pytest.fixture
def unrouted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A queue configured without routes, not yet running, and its test context."""
    monkeypatch.chdir(tmp_path)
    cache = Cache()
    writequeue = WriteQueue(cache)
    with taddons.context(cache, writequeue) as tctx:
        tctx.configure(writequeue, async_routes="")
        yield tctx, writequeue


def request_hooks_found(tctx: taddons.context, queue: WriteQueue) -> list[Any]:
    """The request hooks mitmproxy's addon manager finds in the queue's part of the chain."""
    return [func for _, func in tctx.master.addons._iter_hooks(queue, HttpRequestHook(tflow.tflow()))]


async def test_a_queue_without_routes_leaves_its_flow_hooks_out_of_the_chain(unrouted):
    """mitmproxy calls every hook it finds on every request: a queue with nothing to route has none."""
    tctx, writequeue = unrouted
    assert list(traverse([writequeue])) == [writequeue]
    assert request_hooks_found(tctx, writequeue) == []
    assert tctx.master.addons.get("flowhooks") is None


async def test_a_queue_given_routes_before_it_runs_gets_its_flow_hooks(unrouted):
    tctx, writequeue = unrouted
    tctx.configure(writequeue, async_routes="POST /events/*")
    assert request_hooks_found(tctx, writequeue) == [flow_hooks(writequeue).request]
    assert tctx.master.addons.get("flowhooks") is flow_hooks(writequeue)


async def test_a_running_queue_keeps_its_flow_hooks_when_its_routes_are_removed(queue):
    """A write under way must still reach its request hook (new routes wait for a restart anyway)."""
    hooks_addon = flow_hooks(queue)
    ctx.options.update(async_routes="")
    assert queue.addons == [hooks_addon]


async def test_the_queue_commands_are_registered_without_a_child_addon(queue):
    assert "cache.queue.stats" in ctx.master.commands.commands


async def test_a_script_reload_may_call_running_and_done_synchronously(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = Cache()
    writequeue = WriteQueue(cache)
    with taddons.context(cache, writequeue) as tctx:
        tctx.configure(writequeue, async_routes="POST /events/*")
        tctx.master.addons.invoke_addon_sync(writequeue, hooks.RunningHook())  # as script.py does on reload
        await eventually(lambda: writequeue.store is not None)
        tctx.master.addons.invoke_addon_sync(writequeue, hooks.DoneHook())  # as AddonManager.remove does
        await eventually(lambda: writequeue.store is None)


async def eventually(check, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)
