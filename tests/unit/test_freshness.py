"""Freshness lifetime and age (RFC 9111 §4.2.1-§4.2.3)."""

import pytest

from mitmcache.policy.cache_control import DELTA_SECONDS_CAP, parse
from mitmcache.policy.dates import format_http_date
from mitmcache.policy.freshness import (
    HEURISTIC_MAX_SECONDS,
    HEURISTICALLY_CACHEABLE_STATUS_CODES,
    Lifetime,
    corrected_initial_age,
    current_age,
    freshness_lifetime,
)

NOW = 1_700_000_000.0
DEFAULT_TTL = 60.0


def lifetime(
    cache_control: str = "",
    *,
    expires: list[str] | None = None,
    status: int = 200,
    date: float = NOW,
    default_ttl: float = DEFAULT_TTL,
    override: bool = False,
) -> Lifetime | None:
    return freshness_lifetime(
        status,
        parse([cache_control]),
        expires or [],
        date,
        default_ttl=default_ttl,
        override=override,
    )


def http_date(offset: float) -> str:
    return format_http_date(NOW + offset)


@pytest.mark.parametrize(
    ("cache_control", "expires", "expected"),
    [
        pytest.param(
            "s-maxage=10, max-age=20", [http_date(30)], Lifetime(10, "s-maxage"), id="s-maxage first"
        ),
        pytest.param("max-age=20", [http_date(30)], Lifetime(20, "max-age"), id="max-age over Expires"),
        pytest.param("", [http_date(30)], Lifetime(30, "expires"), id="Expires minus Date"),
        pytest.param("public", [http_date(30)], Lifetime(30, "expires"), id="Expires over the default"),
        pytest.param("", [], Lifetime(DEFAULT_TTL, "default"), id="default last"),
        pytest.param("max-age=0", [], Lifetime(0, "max-age"), id="max-age=0"),
        pytest.param("s-maxage=0, max-age=60", [], Lifetime(0, "s-maxage"), id="s-maxage=0 wins"),
    ],
)
def test_first_matching_rule_gives_the_lifetime(cache_control, expires, expected):
    """RFC 9111 §4.2.1: s-maxage (shared cache), then max-age, then Expires minus Date, then a
    heuristic; §5.3: Expires is ignored when max-age or s-maxage is present."""
    assert lifetime(cache_control, expires=expires) == expected


@pytest.mark.parametrize(
    ("cache_control", "expires", "source"),
    [
        ("max-age=abc", [], "max-age"),
        ("max-age=-5", [], "max-age"),
        ("max-age=1.5", [], "max-age"),
        ("max-age", [], "max-age"),
        ("s-maxage=oops, max-age=60", [], "s-maxage"),
        ("", ["0"], "expires"),
        ("", ["-1"], "expires"),
        ("", ["next week"], "expires"),
        ("", [http_date(-30)], "expires"),
    ],
)
def test_invalid_or_past_freshness_information_means_stale(cache_control, expires, source):
    """RFC 9111 §4.2.1: "caches are encouraged to consider responses that have invalid freshness
    information ... to be stale"; §5.3: an invalid Expires, "especially the value 0", is in the past."""
    assert lifetime(cache_control, expires=expires) == Lifetime(0, source)


def test_first_expires_line_is_used():
    """RFC 9111 §4.2.1: with more than one value for a directive the first occurrence may be used."""
    assert lifetime(expires=[http_date(10), http_date(500)]) == Lifetime(10, "expires")


def test_expires_is_relative_to_the_date_passed_in():
    """RFC 9111 §4.2.1: freshness_lifetime = expires_value - date_value (the caller passes the
    time of receipt when Date is absent)."""
    assert lifetime(expires=[http_date(100)], date=NOW + 40) == Lifetime(60, "expires")


@pytest.mark.parametrize("status", sorted(HEURISTICALLY_CACHEABLE_STATUS_CODES))
def test_heuristically_cacheable_statuses_get_the_default(status):
    """RFC 9111 §4.2.2 / RFC 9110 §15.1: these statuses may be given a heuristic lifetime."""
    assert lifetime(status=status) == Lifetime(DEFAULT_TTL, "default")


@pytest.mark.parametrize("status", [201, 202, 206, 302, 303, 307, 400, 401, 403, 500, 502, 503, 504])
def test_other_statuses_have_no_lifetime_without_explicit_freshness(status):
    """RFC 9111 §3: other statuses are storable only with explicit freshness (or ``public``);
    206 is never completed from a partial response (§3.3)."""
    assert lifetime(status=status) is None


@pytest.mark.parametrize("status", [302, 500])
def test_explicit_freshness_applies_to_any_status(status):
    """RFC 9111 §3: a response with max-age or Expires is storable whatever its final status."""
    assert lifetime("max-age=5", status=status) == Lifetime(5, "max-age")
    assert lifetime(expires=[http_date(7)], status=status) == Lifetime(7, "expires")


def test_public_allows_the_default_for_any_status():
    """RFC 9111 §5.2.2.9: ``public`` makes a response cacheable "even if it would otherwise have a
    heuristic expiration time" only for some statuses."""
    assert lifetime("public", status=302) == Lifetime(DEFAULT_TTL, "default")


def test_a_zero_default_makes_responses_without_freshness_stale():
    assert lifetime(default_ttl=0) == Lifetime(0, "default")


@pytest.mark.parametrize(
    ("cache_control", "expires", "status"),
    [
        ("max-age=0", [], 200),
        ("s-maxage=1, max-age=5", [], 200),
        ("", ["0"], 200),
        ("", [], 200),
        ("max-age=5", [], 500),
        ("public", [], 302),
    ],
)
def test_override_replaces_the_upstream_lifetime(cache_control, expires, status):
    """Operator override: the configured lifetime replaces whatever the upstream said."""
    assert lifetime(cache_control, expires=expires, status=status, override=True) == Lifetime(
        DEFAULT_TTL, "override"
    )


@pytest.mark.parametrize("status", [302, 403, 500, 503])
def test_override_never_makes_an_unstorable_response_storable(status):
    """RFC 9111 §3: a status that is not heuristically cacheable, without explicit freshness or
    ``public``, is not storable; override changes lifetimes, not what may be stored."""
    assert lifetime(status=status, override=True) is None


# ---- age (§4.2.3) ----


def initial_age(
    *, age: list[str] | None = None, date: float = NOW, request_time: float = NOW, response_time: float = NOW
) -> float:
    return corrected_initial_age(age or [], date, request_time, response_time)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({}, 0, id="generated now, received now"),
        pytest.param({"date": NOW - 10}, 10, id="apparent age"),
        pytest.param({"date": NOW + 300}, 0, id="upstream clock ahead: apparent age clamps to 0"),
        pytest.param({"age": ["30"]}, 30, id="upstream Age"),
        pytest.param({"age": ["30"], "request_time": NOW - 2}, 32, id="Age plus response delay"),
        pytest.param({"request_time": NOW - 2}, 2, id="response delay alone"),
        pytest.param({"age": ["30"], "date": NOW - 50}, 50, id="larger of apparent and corrected"),
        pytest.param({"age": ["30"], "date": NOW + 300}, 30, id="skewed Date does not hide Age"),
    ],
)
def test_corrected_initial_age(kwargs, expected):
    """RFC 9111 §4.2.3: corrected_initial_age = max(apparent_age, age_value + response_delay),
    apparent_age = max(0, response_time - date_value)."""
    assert initial_age(**kwargs) == expected


def test_a_lifetime_the_cache_assigned_counts_from_arrival():
    """Our default/override lifetime starts when the response arrives: the apparent age from a
    (whole-second or skewed) Date is left out, while Age and the response delay still count."""
    assert corrected_initial_age([], NOW - 0.9, NOW, NOW, use_date=False) == 0
    assert corrected_initial_age(["5"], NOW - 50, NOW - 1, NOW, use_date=False) == 6


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (["abc"], 0),
        (["-5"], 0),
        (["1.5"], 0),
        ([""], 0),
        (["7", "100"], 7),
        (["7, 100"], 7),
        ([" 7 "], 7),
        (["99999999999999999999"], DELTA_SECONDS_CAP),
        (["9" * 5000], DELTA_SECONDS_CAP),  # more digits than int() converts
    ],
)
def test_age_field_value(age, expected):
    """RFC 9111 §5.1: a list-valued Age uses its first member; an invalid Age is ignored;
    delta-seconds are capped at 2^31 (§1.2.2)."""
    assert initial_age(age=age) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [(NOW, 5), (NOW + 10, 15), (NOW - 10, 5)],
    ids=["at receipt", "resident 10s", "clock went back"],
)
def test_current_age_adds_resident_time(now, expected):
    """RFC 9111 §4.2.3: current_age = corrected_initial_age + (now - response_time)."""
    assert current_age(5, NOW, now) == expected


# ---- heuristic freshness (§4.2.2), pure RFC mode: no default lifetime ----


def heuristic(
    cache_control: str = "",
    *,
    status: int = 200,
    modified_ago: float | None = 86_400,
    expires: list[str] | None = None,
    percent: float = 10,
) -> Lifetime | None:
    """The lifetime in pure RFC mode (no default), Date = NOW, Last-Modified ``modified_ago``."""
    return freshness_lifetime(
        status,
        parse([cache_control]),
        expires or [],
        NOW,
        default_ttl=0,
        override=False,
        last_modified=None if modified_ago is None else NOW - modified_ago,
        heuristic_percent=percent,
    )


@pytest.mark.parametrize("status", sorted(HEURISTICALLY_CACHEABLE_STATUS_CODES))
def test_heuristic_is_a_tenth_of_the_time_since_last_modified(status):
    """RFC 9111 §4.2.2: "caches are encouraged to use a heuristic expiration value that is no more
    than some fraction of the interval since [Last-Modified] ... A typical setting of this fraction
    might be 10%" -- for heuristically cacheable statuses (RFC 9110 §15.1)."""
    assert heuristic(status=status, modified_ago=3600) == Lifetime(360, "heuristic")


@pytest.mark.parametrize("status", [201, 202, 403, 502, 503, 504, 599])
def test_no_heuristic_for_other_statuses(status):
    """RFC 9111 §4.2.2: heuristics apply only to heuristically cacheable statuses (or public)."""
    assert heuristic(status=status) is None


def test_public_allows_the_heuristic_for_any_status():
    """RFC 9111 §5.2.2.9: public makes a response cacheable with heuristic freshness whatever its
    status."""
    assert heuristic("public", status=599, modified_ago=1000) == Lifetime(100, "heuristic")


@pytest.mark.parametrize(
    ("cache_control", "expires", "expected"),
    [
        ("max-age=5", [], Lifetime(5, "max-age")),
        ("max-age=invalid", [], Lifetime(0, "max-age")),
        ("", ["0"], Lifetime(0, "expires")),
        ("", [format_http_date(NOW + 7)], Lifetime(7, "expires")),
    ],
)
def test_no_heuristic_where_explicit_freshness_exists(cache_control, expires, expected):
    """RFC 9111 §4.2.2: "a cache MUST NOT use heuristics to determine freshness when an explicit
    expiration time is present" -- even an invalid one, which means stale (§4.2.1)."""
    assert heuristic(cache_control, expires=expires) == expected


@pytest.mark.parametrize(
    ("modified_ago", "percent", "expected"),
    [
        pytest.param(None, 10, Lifetime(0, "default"), id="no Last-Modified"),
        pytest.param(-60, 10, Lifetime(0, "default"), id="Last-Modified after Date"),
        pytest.param(3600, 0, Lifetime(0, "default"), id="heuristic off"),
        pytest.param(3600, 25, Lifetime(900, "heuristic"), id="configured fraction"),
        pytest.param(10 * 365 * 86_400, 10, Lifetime(HEURISTIC_MAX_SECONDS, "heuristic"), id="bounded"),
    ],
)
def test_heuristic_bounds(modified_ago, percent, expected):
    """RFC 9111 §4.2.2 leaves the fraction and any upper bound to the cache; without a (valid)
    Last-Modified there is nothing to base it on, and the lifetime is 0."""
    assert heuristic(modified_ago=modified_ago, percent=percent) == expected


def test_a_configured_default_replaces_the_heuristic():
    """With a configured default lifetime (the seed's mode) that default is the fallback, not the
    heuristic."""
    result = freshness_lifetime(
        200, {}, [], NOW, default_ttl=60, override=False, last_modified=NOW - 3600, heuristic_percent=10
    )
    assert result == Lifetime(60, "default")
