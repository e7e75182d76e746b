"""The write queue's pure rules: routes, queue URLs, settings, retry verdicts and back-off, pacing."""

import random
from pathlib import Path

import pytest

from mitmcache import config
from mitmcache.writequeue.pacing import RecentRate, TokenBucket
from mitmcache.writequeue.queue_url import Kind, default_queue_url, parse_queue_url
from mitmcache.writequeue.retry import BACKOFF_CAP, Verdict, backoff, parse_retry_after, verdict
from mitmcache.writequeue.routes import parse_routes, route_for
from mitmcache.writequeue.settings import OPTIONS, parse_queue_settings


def raw(**changes: str) -> dict[str, str]:
    return {s.option: s.default for s in config.WRITE_QUEUE_SETTINGS} | changes


# -- routes -------------------------------------------------------------------------------------


def test_a_route_glob_crosses_slashes_and_ignores_nothing_but_the_method_case():
    routes = parse_routes("post /events/*, PUT /items/*")
    assert route_for(routes, "POST", "/events/a/b") is not None
    assert route_for(routes, "put", "/items/1") is not None
    assert route_for(routes, "PUT", "/events/a") is None
    assert route_for(routes, "POST", "/eventsx") is None


def test_empty_routes_turn_the_queue_off():
    assert parse_routes(" , ") == ()
    assert not parse_queue_settings(raw(), 10, Path("/tmp")).enabled


@pytest.mark.parametrize(
    "value", ["GET /a/*", "head /x", "POST", "POST events/*", "/events/* POST", "P@ST /x"]
)
def test_unreadable_or_read_routes_are_refused(value):
    with pytest.raises(ValueError):
        parse_routes(value)


def from_env(option: str) -> dict[str, str]:
    return {option: f"environment variable {option.upper()}"}


def test_a_refused_route_stops_startup_naming_the_setting_and_the_item():
    with pytest.raises(
        ValueError, match=r"async_routes \(from environment variable ASYNC_ROUTES\).*'GET /a/\*'"
    ):
        parse_queue_settings(
            raw(async_routes="POST /x, GET /a/*"), 10, Path("/tmp"), from_env("async_routes")
        )


# -- queue URL ----------------------------------------------------------------------------------


def test_a_sqlite_url_names_an_absolute_file():
    url = parse_queue_url("sqlite:///var/lib/mitmcache/queue.db")
    assert (url.kind, url.path) == (Kind.SQLITE, Path("/var/lib/mitmcache/queue.db"))


@pytest.mark.parametrize(
    "value", ["sqlite://queue.db", "sqlite://", "sqlite:///var/lib/", "mysql://x/y", "queue.db"]
)
def test_other_queue_urls_are_refused(value):
    with pytest.raises(ValueError):
        parse_queue_url(value)


def test_a_postgresql_password_never_shows():
    url = parse_queue_url("postgresql://app:hunter2@db.internal:5432/queue")
    assert url.kind is Kind.POSTGRESQL and "hunter2" not in url.redacted
    assert url.redacted == "postgresql://app:***@db.internal:5432/queue"
    with pytest.raises(ValueError) as refused:
        parse_queue_settings(
            raw(async_queue_url="postgresql://app:hunter2@:x/"), 10, Path("/tmp"), from_env("async_queue_url")
        )
    assert "hunter2" not in str(refused.value) and "ASYNC_QUEUE_URL" in str(refused.value)


def test_the_default_queue_is_a_file_in_the_data_directory(tmp_path):
    settings = parse_queue_settings(raw(async_routes="POST /x"), 10, tmp_path)
    assert settings.queue_url == default_queue_url(tmp_path / "data")
    assert settings.queue_url.path == (tmp_path / "data" / "queue.db").resolve()


# -- other settings -----------------------------------------------------------------------------


def test_the_delivery_timeout_defaults_to_req_timeout_and_the_lease_outlives_it():
    settings = parse_queue_settings(raw(), 7, Path("/tmp"))
    assert (settings.request_timeout, settings.lease_secs) == (7, 17)
    assert parse_queue_settings(raw(async_request_timeout="2"), 7, Path("/tmp")).request_timeout == 2


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("async_response_status", "302"),
        ("async_response_status", "199"),
        ("async_workers", "0"),
        ("async_rate", "-1"),
        ("async_max_retries", "x"),
        ("async_ordered", "host"),
        ("async_max_body_bytes", "1 parsec"),
        ("async_max_queued", "0"),
        ("async_request_timeout", "0"),
    ],
)
def test_bad_values_stop_startup_naming_the_setting(option, value):
    env = config.WRITE_QUEUE_SETTINGS[OPTIONS.index(option)].env
    with pytest.raises(ValueError, match=f"{option} \\(from environment variable {env}\\)"):
        parse_queue_settings(raw(**{option: value}), 10, Path("/tmp"), from_env(option))


# -- retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204, 301, 304])
def test_2xx_and_3xx_are_delivered(status):
    assert verdict(status, 1, 10) is Verdict.DELIVERED


@pytest.mark.parametrize("status", [None, 408, 425, 429, 500, 502, 503, 504])
def test_network_errors_and_not_now_statuses_are_retried_until_retries_run_out(status):
    assert verdict(status, 3, 3) is Verdict.RETRY
    assert verdict(status, 4, 3) is Verdict.DEAD


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422, 501])
def test_other_statuses_are_dead_at_once(status):
    assert verdict(status, 1, 10) is Verdict.DEAD


def test_no_retries_means_the_first_failure_is_final():
    assert verdict(503, 1, 0) is Verdict.DEAD


def test_backoff_is_full_jitter_from_half_a_second_capped_at_30():
    rand = random.Random(1)
    first = [backoff(1, rand=rand) for _ in range(200)]
    late = [backoff(20, rand=rand) for _ in range(200)]
    assert 0 <= min(first) and max(first) <= 0.5
    assert max(late) <= BACKOFF_CAP and max(late) > 20


def test_retry_after_is_honoured_up_to_the_cap():
    assert backoff(1, retry_after=7, rand=random.Random(1)) == 7
    assert backoff(1, retry_after=3600) == BACKOFF_CAP


def test_retry_after_reads_seconds_and_dates():
    assert parse_retry_after("12", 0) == 12
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:30 GMT", 10) == 20
    assert parse_retry_after("soon", 0) is None and parse_retry_after(None, 0) is None


# -- pacing -------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_token_bucket_holds_one_seconds_worth_and_refills_at_the_rate():
    clock = Clock()
    bucket = TokenBucket(10, clock)
    assert bucket.available() == 10
    bucket.take(10)
    assert bucket.available() == 0
    clock.now += 0.5
    assert bucket.available() == 5
    clock.now += 10
    assert bucket.available() == 10


def test_rate_zero_is_no_limit():
    assert TokenBucket(0).available() > 10**6


def test_the_enqueue_window_counts_the_last_second_only():
    clock = Clock()
    recent = RecentRate(3, clock)
    assert [recent.below() for _ in range(4)] == [True, True, True, False]
    clock.now += 1.01
    assert recent.below()
