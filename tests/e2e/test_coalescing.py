"""One upstream request per key (issue 7, SPEC §4), end to end through a real mitmdump."""

import asyncio
import time

import httpx
import pytest


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
    origin.route("/p", headers=[("Set-Cookie", "session=1")], body="yours", delay=1.0)
    proxy = proxy_factory()
    await gather_gets(f"{proxy.url}/p", 1)
    started = time.monotonic()
    responses = await gather_gets(f"{proxy.url}/p", 5)
    assert time.monotonic() - started < 3.0  # concurrent, not 5 x 1 s one after another
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
        await leader
    assert [r.status_code for r in waiters] == [504] * 3
    assert all("upstream-timeout" in r.json()["detail"] for r in waiters)
    assert 0.5 < waited < 2.5


async def test_a_leader_whose_upstream_hangs_is_answered_within_the_timeout(origin, proxy_factory):
    """REQ_TIMEOUT bounds the leader's own fetch too: mitmproxy has no such timeout, so a hung
    upstream would otherwise hold the leader's client, and the key, until the connection dies."""
    origin.route("/hung", fail="hang")
    proxy = proxy_factory({"cache_upstream_timeout": "1"})
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        started = time.monotonic()
        leader = await client.get(f"{proxy.url}/hung")
        waited = time.monotonic() - started
    assert leader.status_code == 504  # the cache's JSON 504, as its waiters get (issue 12 item 4)
    assert leader.json()["detail"] == "upstream-timeout after 1s"
    assert 0.8 < waited < 3
    assert "upstream gave no response" in proxy.log_text()


async def test_after_a_timed_out_fetch_the_next_request_leads_a_new_one(origin, proxy_factory):
    origin.route(
        "/flaky", headers=[("Cache-Control", "max-age=60")], sequence=[{"fail": "hang"}, {"body": "back"}]
    )
    proxy = proxy_factory({"cache_upstream_timeout": "1"})
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        await client.get(f"{proxy.url}/flaky")
        again = await client.get(f"{proxy.url}/flaky")
    assert (again.status_code, again.text, again.headers["x-cache"]) == (200, "back", "MISS")
    assert origin.count("/flaky") == 2


async def test_concurrent_clients_share_one_upstream_error_instead_of_each_asking(origin, proxy_factory):
    """A failing upstream is asked once per herd, not once per client: the waiters get the error."""
    origin.route("/broken", status=503, body="down for maintenance", delay=0.3)
    proxy = proxy_factory()
    responses = await gather_gets(f"{proxy.url}/broken", 10)
    assert [r.status_code for r in responses] == [503] * 10
    assert origin.count("/broken") == 1
    waiters = [r for r in responses if "collapsed" in r.headers["cache-status"]]
    assert len(waiters) == 9 and all("upstream-status-503" in r.json()["detail"] for r in waiters)


async def test_an_upstream_error_does_not_stop_the_next_request_from_coalescing(origin, proxy_factory):
    """No hit-for-miss after an error: it is likely to pass, and the next herd should wait for one
    fetch again."""
    origin.route(
        "/recovering",
        headers=[("Cache-Control", "max-age=60")],
        delay=0.3,
        sequence=[{"status": 503, "headers": []}, {"body": "fine"}],
    )
    proxy = proxy_factory()
    await gather_gets(f"{proxy.url}/recovering", 1)
    responses = await gather_gets(f"{proxy.url}/recovering", 5)
    assert {r.text for r in responses} == {"fine"}
    assert origin.count("/recovering") == 2


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


def request_header(entry: dict, name: str) -> str | None:
    """A field of a request the origin logged (or echoed), by case-insensitive name."""
    return next((value for key, value in entry["headers"] if key.lower() == name.lower()), None)


async def test_a_reply_whose_vary_does_not_match_a_waiter_releases_it_upstream(origin, proxy_factory):
    """A waiter whose request the leader's stored variant does not match (Vary) is not answered
    with it: once the leader's reply is in, the waiter goes upstream with its own request and gets
    its own variant."""
    origin.route(
        "/lang",
        headers=[("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")],
        echo=True,  # the body describes the request the origin got
        delay=0.6,
    )
    proxy = proxy_factory()
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=15, limits=limits, trust_env=False) as client:
        leader = asyncio.ensure_future(client.get(f"{proxy.url}/lang", headers={"Accept-Language": "en"}))
        await asyncio.sleep(0.2)  # the leader's request is at the origin, waiting for its reply
        waiter = await client.get(f"{proxy.url}/lang", headers={"Accept-Language": "fr"})
        led = await leader
    assert request_header(led.json(), "accept-language") == "en"
    assert (waiter.status_code, request_header(waiter.json(), "accept-language")) == (200, "fr")
    assert waiter.headers["x-cache"] == "MISS"
    en, fr = origin.requests("/lang")
    assert (request_header(en, "accept-language"), request_header(fr, "accept-language")) == ("en", "fr")
    # fr reached the origin only after en was answered: it waited for the leader, then was released.
    assert fr["time"] - en["time"] >= 0.5


@pytest.mark.parametrize(
    ("cache_control", "until_stale"),
    [("max-age=1, must-revalidate", 1.3), ("no-cache", 0)],
    ids=["stale-must-revalidate", "no-cache"],
)
async def test_concurrent_clients_for_an_entry_to_revalidate_share_one_conditional_request(
    origin, proxy_factory, cache_control, until_stale
):
    """N concurrent clients for a stored entry that must be revalidated before reuse (stale with
    must-revalidate, or no-cache) cause exactly one conditional request upstream, whose 304 answers
    all of them with the stored body."""
    origin.route(
        "/rv",
        sequence=[
            {"headers": [("Cache-Control", cache_control), ("ETag", '"a"')], "body": "stored body"},
            {"status": 304, "headers": [("Cache-Control", cache_control), ("ETag", '"a"')], "delay": 1.0},
        ],
    )
    # Pure RFC 9111 mode: no background refresh of its own, the clients' requests revalidate.
    proxy = proxy_factory({"cache_ttl": "0", "cache_refresh_window": "30"})
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        first = await client.get(f"{proxy.url}/rv")
    assert (first.headers["x-cache"], first.text) == ("MISS", "stored body")
    await asyncio.sleep(until_stale)
    responses = await gather_gets(f"{proxy.url}/rv", 10)
    assert [(r.status_code, r.text) for r in responses] == [(200, "stored body")] * 10
    assert {r.headers["x-cache"] for r in responses} == {"REVALIDATED"}
    assert origin.count("/rv") == 2
    revalidation = origin.requests("/rv")[1]
    assert request_header(revalidation, "if-none-match") == '"a"'
