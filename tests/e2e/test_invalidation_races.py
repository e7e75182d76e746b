"""A fetch that began before its URL was invalidated never stores its answer (the invalidation bus):
no resurrection of the old response after a write, from a client's miss or a background refresh."""

import threading
import time

import httpx


def get_in_background(url: str) -> tuple[threading.Thread, list[httpx.Response]]:
    answers: list[httpx.Response] = []

    def run() -> None:
        with httpx.Client(timeout=10, trust_env=False) as client:
            answers.append(client.get(url))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, answers


def test_a_miss_answered_after_a_write_to_its_url_is_not_stored(origin, proxy_factory, http):
    origin.route(
        "/item",
        headers={"Cache-Control": "max-age=60"},
        sequence=[{"body": "old", "delay": 1.0}, {"status": 204}, {"body": "new"}],
    )
    proxy = proxy_factory()
    thread, answers = get_in_background(f"{proxy.url}/item")
    origin.wait_for_count(1, "/item", timeout=5)  # the GET is at the origin
    assert http.post(f"{proxy.url}/item", content=b"change").status_code == 204
    thread.join()
    assert answers[0].text == "old"  # its own client still gets what the origin said then
    after = http.get(f"{proxy.url}/item")
    assert (after.headers["x-cache"], after.text) == ("MISS", "new")


def test_a_background_refresh_answered_after_a_write_is_not_stored(origin, proxy_factory, http):
    origin.route(
        "/feed",
        headers={"Cache-Control": "max-age=1"},
        sequence=[
            {"body": "v1"},
            {"body": "refreshed before the write", "delay": 1.5},
            {"status": 204},
            {"body": "new"},
        ],
    )
    proxy = proxy_factory({"cache_refresh_window": "10"})
    http.get(f"{proxy.url}/feed")
    assert http.get(f"{proxy.url}/feed").headers["x-cache"] == "HIT"  # asked for: refreshed at expiry
    origin.wait_for_count(2, "/feed", timeout=5)  # the refresh is at the origin
    assert http.post(f"{proxy.url}/feed").status_code == 204
    time.sleep(1.8)  # the refresh's answer has arrived
    after = http.get(f"{proxy.url}/feed")
    assert (after.headers["x-cache"], after.text) == ("MISS", "new")
