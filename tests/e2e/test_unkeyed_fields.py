"""A client's no-cache cannot make its own unkeyed fields decide what everyone else gets (issue 13
item 9): the upstream's answer to its forced revalidation goes to that client, and a fresh shared
entry stays; through both launchers."""

import time

import pytest

FORCING = [
    pytest.param({"Cache-Control": "no-cache"}, False, id="no-cache"),
    pytest.param({"Pragma": "no-cache"}, False, id="pragma"),
    pytest.param({"Cache-Control": "max-age=0"}, True, id="max-age=0, with an etag"),
]


@pytest.mark.parametrize(("forcing", "validators"), FORCING)
def test_a_forced_revalidation_with_unkeyed_fields_does_not_replace_the_fresh_shared_entry(
    origin, proxy_factory, http, forcing, validators
):
    headers = [("Cache-Control", "max-age=60")] + ([("ETag", '"v"')] if validators else [])
    origin.route("/shared", headers=headers, echo=True)
    proxy = proxy_factory()
    first = http.get(f"{proxy.url}/shared")
    forced = http.get(f"{proxy.url}/shared", headers={**forcing, "X-Forwarded-Host": "evil.example"})
    later = http.get(f"{proxy.url}/shared")
    assert "evil.example" in forced.text  # the forcing client gets the upstream's answer to it
    assert later.headers["x-cache"] == "HIT"
    assert later.text == first.text
    assert "evil.example" not in later.text
    assert origin.count("/shared") == 2


def test_a_forced_revalidation_answered_304_still_freshens_the_entry(origin, proxy_factory, http):
    origin.route(
        "/v",
        sequence=[
            {"headers": [("Cache-Control", "max-age=60"), ("ETag", '"v"')], "body": "stored"},
            {"status": 304, "headers": [("Cache-Control", "max-age=60"), ("ETag", '"v"')]},
        ],
    )
    proxy = proxy_factory()
    http.get(f"{proxy.url}/v")
    forced = http.get(f"{proxy.url}/v", headers={"Cache-Control": "no-cache"})
    assert (forced.text, forced.headers["x-cache"]) == ("stored", "REVALIDATED")


def test_an_expired_entry_is_still_replaced_by_the_answer_to_a_forced_fetch(origin, proxy_factory, http):
    origin.route(
        "/old",
        sequence=[
            {"headers": [("Cache-Control", "max-age=1")], "body": "old"},
            {"headers": [("Cache-Control", "max-age=60")], "body": "new"},
        ],
    )
    proxy = proxy_factory({"cache_refresh_window": "0"})
    http.get(f"{proxy.url}/old")

    time.sleep(1.2)
    assert http.get(f"{proxy.url}/old", headers={"Cache-Control": "no-cache"}).text == "new"
    later = http.get(f"{proxy.url}/old")
    assert (later.text, later.headers["x-cache"]) == ("new", "HIT")
