"""One upstream request per key (issue 7, SPEC §4), end to end through a real mitmdump."""

import asyncio
import time

import httpx


async def gather_gets(url: str, n: int, headers: list[dict[str, str]] | None = None, timeout: float = 15):
    """``n`` concurrent GETs, each on its own connection."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
        return await asyncio.gather(*(client.get(url, headers=(headers or [{}] * n)[i]) for i in range(n)))


async def test_concurrent_requests_for_a_cold_key_make_one_upstream_request(origin, proxy_factory):
    origin.route("/hot", headers=[("Cache-Control", "max-age=60")], body="shared", delay=0.3)
    proxy = proxy_factory()
    responses = await gather_gets(f"{proxy.url}/hot", 20)
    assert origin.count("/hot") == 1
    assert {r.text for r in responses} == {"shared"}
    assert sorted(r.headers["x-cache"] for r in responses) == ["COALESCED"] * 19 + ["MISS"]
    assert all(
        "collapsed" in r.headers["cache-status"] for r in responses if r.headers["x-cache"] == "COALESCED"
    )


async def test_each_waiter_gets_its_own_conditional_answer(origin, proxy_factory):
    origin.route("/c", headers=[("Cache-Control", "max-age=60"), ("ETag", '"v1"')], body="body", delay=0.3)
    proxy = proxy_factory()
    headers = [{}, {"If-None-Match": '"v1"'}, {}, {"If-None-Match": '"v0"'}, {"If-None-Match": '"v1"'}]
    responses = await gather_gets(f"{proxy.url}/c", len(headers), headers)
    assert [r.status_code for r in responses] == [200, 304, 200, 200, 304]
    assert origin.count("/c") == 1


async def test_an_unshareable_reply_releases_the_waiters_to_go_upstream(origin, proxy_factory):
    origin.route("/p", headers=[("Cache-Control", "private")], body="yours", delay=0.3)
    proxy = proxy_factory()
    responses = await gather_gets(f"{proxy.url}/p", 5)
    assert all(r.status_code == 200 for r in responses)
    assert origin.count("/p") == 5


async def test_an_unshareable_key_is_not_serialised_afterwards(origin, proxy_factory):
    origin.route("/p", headers=[("Set-Cookie", "session=1")], body="yours", delay=0.5)
    proxy = proxy_factory()
    await gather_gets(f"{proxy.url}/p", 1)
    started = time.monotonic()
    responses = await gather_gets(f"{proxy.url}/p", 5)
    assert time.monotonic() - started < 1.5  # concurrent, not 5 x 0.5 s one after another
    assert all("detail=set-cookie" in r.headers["cache-status"] for r in responses)
    assert origin.count("/p") == 6


async def test_waiters_get_a_clear_502_when_the_upstream_fails(origin, proxy_factory):
    origin.route("/down", fail="close", delay=0.3)
    proxy = proxy_factory()
    started = time.monotonic()
    responses = await gather_gets(f"{proxy.url}/down", 5)
    assert time.monotonic() - started < 5
    assert [r.status_code for r in responses] == [502] * 5
    waiters = [
        r
        for r in responses
        if r.headers.get("x-cache") == "MISS" and "collapsed" in r.headers.get("cache-status", "")
    ]
    assert len(waiters) == 4
    assert all("upstream-error" in r.json()["detail"] for r in waiters)


async def test_waiters_get_a_504_when_the_upstream_times_out(origin, proxy_factory):
    origin.route("/slow", headers=[("Cache-Control", "max-age=60")], body="late", delay=3)
    proxy = proxy_factory({"cache_upstream_timeout": "1"})
    limits = httpx.Limits(max_connections=4)
    async with httpx.AsyncClient(timeout=10, limits=limits, trust_env=False) as client:
        leader = asyncio.ensure_future(client.get(f"{proxy.url}/slow"))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        waiters = await asyncio.gather(*(client.get(f"{proxy.url}/slow") for _ in range(3)))
        waited = time.monotonic() - started
        assert (await leader).text == "late"
    assert [r.status_code for r in waiters] == [504] * 3
    assert 0.5 < waited < 2.5


async def test_a_waiter_that_disconnects_does_not_disturb_the_others(origin, proxy_factory):
    origin.route("/w", headers=[("Cache-Control", "max-age=60")], body="ok", delay=0.6)
    proxy = proxy_factory()
    async with httpx.AsyncClient(timeout=10, trust_env=False) as patient:
        leader = asyncio.ensure_future(patient.get(f"{proxy.url}/w"))
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(timeout=0.2, trust_env=False) as impatient:
            try:
                await impatient.get(f"{proxy.url}/w")
            except httpx.TimeoutException:
                pass
        other = await patient.get(f"{proxy.url}/w")
        assert (await leader).status_code == 200
    assert (other.status_code, other.text) == (200, "ok")
    assert origin.count("/w") == 1


async def test_the_leaders_client_leaving_does_not_abandon_the_waiters(origin, proxy_factory):
    origin.route("/l", headers=[("Cache-Control", "max-age=60")], body="still served", delay=0.5)
    proxy = proxy_factory()
    async with httpx.AsyncClient(timeout=0.2, trust_env=False) as leaving:
        leader = asyncio.ensure_future(leaving.get(f"{proxy.url}/l"))
        await asyncio.sleep(0.05)
        waiters = asyncio.ensure_future(gather_gets(f"{proxy.url}/l", 3))
        try:
            await leader
        except httpx.TimeoutException:
            pass
    responses = await waiters
    assert [r.text for r in responses] == ["still served"] * 3
