"""May a stored response answer a request, and how (RFC 9111 §4, §4.2.4, §5.2.1; RFC 5861)."""

import math

import pytest

from mitmcache.entry import Entry, Meta
from mitmcache.policy.reuse import (
    NO_DIRECTIVES,
    Decision,
    RequestDirectives,
    Use,
    decide,
    may_serve_stale_on_error,
    request_directives,
    stale_on_error_limit,
)
from mitmcache.policy.storable import Rules, admit

STORED_AT = 1_700_000_000.0
WINDOW = 60.0


# Metadata of entries made here, by version: entries are immutable, their metadata the store's.
FAILURES: dict[int, int] = {}


def make_entry(
    cache_control: str = "max-age=60", *, etag: bool = True, refresh_failures: int = 0, **attributes
) -> Entry:
    """An entry stored at STORED_AT with age 0; ``attributes`` override Entry fields afterwards,
    ``refresh_failures`` is its metadata's."""
    response = [(b"cache-control", cache_control.encode())]
    if etag:
        response.append((b"etag", b'"v1"'))
    entry = admit(
        key="http://example.com/r",
        url="http://example.com/r",
        host="example.com",
        method="GET",
        request_fields=[],
        status=200,
        reason=b"OK",
        response_fields=response,
        body=b"body",
        request_time=STORED_AT,
        response_time=STORED_AT,
        rules=Rules(default_ttl=60.0, override=False),
    )
    assert isinstance(entry, Entry), entry
    entry = entry.changed(**attributes)
    FAILURES[entry.version] = refresh_failures
    return entry


def decision(
    entry: Entry,
    after: float,
    cache_control: str | None = None,
    *,
    pragma: str | None = None,
    serve_stale_in_window: bool = False,
    last_access: float | None = None,
    error_limit: float = 0.0,
) -> Decision:
    """decide() ``after`` seconds past storage, for a request with these directives."""
    meta = Meta(
        stored_at=STORED_AT,
        last_access=STORED_AT if last_access is None else last_access,
        refresh_failures=FAILURES.get(entry.version, 0),
    )
    request = request_directives(
        [cache_control] if cache_control is not None else [], [pragma] if pragma is not None else []
    )
    return decide(
        entry,
        meta,
        request,
        STORED_AT + after,
        refresh_window=WINDOW,
        serve_stale_in_window=serve_stale_in_window,
        error_limit=error_limit,
    )


def use(entry: Entry, after: float, cache_control: str | None = None, **kwargs) -> tuple[Use, str]:
    d = decision(entry, after, cache_control, **kwargs)
    return d.use, d.reason


# ---- request directives ----


@pytest.mark.parametrize(
    ("cache_control", "pragma", "expected"),
    [
        ([], [], NO_DIRECTIVES),
        (["no-cache"], [], RequestDirectives(no_cache=True)),
        (["No-Store, only-if-cached"], [], RequestDirectives(no_store=True, only_if_cached=True)),
        (["max-age=5, min-fresh=10"], [], RequestDirectives(max_age=5, min_fresh=10)),
        (["max-stale"], [], RequestDirectives(max_stale=math.inf)),
        (["max-stale=30"], [], RequestDirectives(max_stale=30)),
        (["max-stale=soon, max-age=-1"], [], NO_DIRECTIVES),
        ([], ["no-cache"], RequestDirectives(no_cache=True)),
        ([], ["NO-CACHE"], RequestDirectives(no_cache=True)),
        ([], ["x-other"], NO_DIRECTIVES),
        (["max-age=60"], ["no-cache"], RequestDirectives(max_age=60)),
    ],
)
def test_request_directives(cache_control, pragma, expected):
    """RFC 9111 §5.2.1; §5.4: Pragma: no-cache counts only "When the Cache-Control header field is
    not present in a request"; §5.2.1.2: a bare max-stale accepts any staleness."""
    assert request_directives(cache_control, pragma) == expected


# ---- fresh ----


def test_a_fresh_entry_is_served():
    """RFC 9111 §4.2: fresh when freshness_lifetime > current_age."""
    assert decision(make_entry(), 30) == Decision(Use.FRESH, "fresh", age=30, ttl=30)


def test_an_entry_is_stale_once_its_age_reaches_its_lifetime():
    """RFC 9111 §4.2: "response_is_fresh = (freshness_lifetime > current_age)"."""
    assert use(make_entry(), 60) == (Use.REVALIDATE, "stale")


def test_an_upstream_age_counts_against_freshness():
    """RFC 9111 §4.2.3: the age includes the time spent in upstream caches."""
    assert decision(make_entry(initial_age=50), 5) == Decision(Use.FRESH, "fresh", age=55, ttl=5)


@pytest.mark.parametrize("pragma", [None, "no-cache"])
def test_request_no_cache_revalidates_a_fresh_entry(pragma):
    """RFC 9111 §5.2.1.4: no-cache: "a cache MUST NOT use a stored response to satisfy the request
    without successful validation"; §5.4: Pragma: no-cache without Cache-Control means the same."""
    cache_control = "no-cache" if pragma is None else None
    assert use(make_entry(), 1, cache_control, pragma=pragma) == (Use.REVALIDATE, "request-no-cache")


def test_pragma_is_ignored_when_cache_control_is_present():
    """RFC 9111 §5.4: "When the Cache-Control header field is also present and understood in a
    request, Pragma is ignored"."""
    assert use(make_entry(), 1, "max-stale=10", pragma="no-cache") == (Use.FRESH, "fresh")


def test_response_no_cache_revalidates_every_reuse():
    """RFC 9111 §5.2.2.4: a no-cache response MUST NOT be reused without successful validation."""
    assert use(make_entry("max-age=60, no-cache"), 1) == (Use.REVALIDATE, "no-cache")


@pytest.mark.parametrize(
    ("cache_control", "after", "expected"),
    [
        ("max-age=10", 5, (Use.FRESH, "fresh")),
        ("max-age=10", 10, (Use.FRESH, "fresh")),
        ("max-age=10", 11, (Use.REVALIDATE, "request-max-age")),
        ("max-age=0", 1, (Use.REVALIDATE, "request-max-age")),
        ("min-fresh=20", 30, (Use.FRESH, "fresh")),
        ("min-fresh=20", 45, (Use.REVALIDATE, "request-min-fresh")),
    ],
)
def test_request_max_age_and_min_fresh(cache_control, after, expected):
    """RFC 9111 §5.2.1.1: max-age: the client wants an age <= the value; §5.2.1.3: min-fresh: it
    wants the response to stay fresh for at least that many more seconds."""
    assert use(make_entry(), after, cache_control) == expected


# ---- stale ----


@pytest.mark.parametrize(
    ("cache_control", "after", "expected"),
    [
        ("max-stale", 10_000, (Use.STALE, "max-stale")),
        ("max-stale=10", 70, (Use.STALE, "max-stale")),
        ("max-stale=10", 71, (Use.REVALIDATE, "stale")),
        ("max-stale=invalid", 61, (Use.REVALIDATE, "stale")),
    ],
)
def test_request_max_stale(cache_control, after, expected):
    """RFC 9111 §5.2.1.2: max-stale allows a response stale by up to the value, or by any amount
    without a value."""
    assert use(make_entry(), after, cache_control) == expected


@pytest.mark.parametrize(
    "cache_control",
    [
        "max-age=60, must-revalidate, stale-while-revalidate=100",
        "max-age=60, proxy-revalidate, stale-while-revalidate=100",
        "s-maxage=60, stale-while-revalidate=100",
    ],
)
def test_must_revalidate_forbids_every_stale_use(cache_control):
    """RFC 9111 §4.2.4: a cache MUST NOT generate a stale response if prohibited by must-revalidate,
    proxy-revalidate or s-maxage -- not for max-stale (§5.2.2.2), stale-while-revalidate or the
    operator's refresh window."""
    entry = make_entry(cache_control)
    assert use(entry, 61, "max-stale") == (Use.REVALIDATE, "must-revalidate")
    assert use(entry, 61, serve_stale_in_window=True, last_access=STORED_AT + 59) == (
        Use.REVALIDATE,
        "must-revalidate",
    )


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (61, (Use.STALE, "stale-while-revalidate")),
        (90, (Use.STALE, "stale-while-revalidate")),
        (91, (Use.REVALIDATE, "stale")),
    ],
)
def test_stale_while_revalidate_window(after, expected):
    """RFC 5861 §3: a stale response may be served for up to stale-while-revalidate seconds past
    its lifetime while it is revalidated in the background."""
    assert use(make_entry("max-age=60, stale-while-revalidate=30"), after) == expected


@pytest.mark.parametrize(
    ("serve_stale_in_window", "last_access", "expected"),
    [
        (True, STORED_AT + 61 - WINDOW, (Use.STALE, "refresh-window")),
        (True, STORED_AT + 30, (Use.STALE, "refresh-window")),
        (True, STORED_AT + 61 - WINDOW - 1, (Use.REVALIDATE, "stale")),
        (False, STORED_AT + 30, (Use.REVALIDATE, "stale")),
    ],
    ids=["at the window's edge", "inside", "outside", "window serves no stale copies"],
)
def test_refresh_window(serve_stale_in_window, last_access, expected):
    """RFC 9111 §4.2.4 allows stale responses by "configuration in accordance with an out-of-band
    contract": the operator's window covers entries a client asked for recently, unless off."""
    entry = make_entry()
    assert use(entry, 61, serve_stale_in_window=serve_stale_in_window, last_access=last_access) == expected


def test_while_refreshes_fail_stale_is_served_only_within_the_error_allowance():
    """RFC 5861 §4: once the upstream is failing, stale-if-error (or the operator's limit) bounds
    how stale a served copy may get."""
    entry = make_entry("max-age=60, stale-while-revalidate=600", refresh_failures=2)
    assert use(entry, 100, error_limit=60) == (Use.STALE, "stale-while-revalidate")
    assert use(entry, 130, error_limit=60) == (Use.REVALIDATE, "refresh-failing")
    upstream_allows = make_entry(
        "max-age=60, stale-while-revalidate=600, stale-if-error=300", refresh_failures=1
    )
    assert use(upstream_allows, 300) == (Use.STALE, "stale-while-revalidate")


# ---- stale on error ----


@pytest.mark.parametrize(
    ("cache_control", "after", "limit", "expected"),
    [
        pytest.param("max-age=60", 30, 0, True, id="fresh"),
        pytest.param("max-age=60, stale-if-error=100", 160, 0, True, id="within stale-if-error"),
        pytest.param("max-age=60, stale-if-error=100", 161, 0, False, id="past stale-if-error"),
        pytest.param("max-age=60", 160, 100, True, id="within the operator's limit"),
        pytest.param("max-age=60", 161, 100, False, id="past the operator's limit"),
        pytest.param("max-age=60, stale-if-error=10", 100, 100, True, id="the larger allowance"),
        pytest.param("max-age=60, must-revalidate", 61, 100, False, id="must-revalidate"),
        pytest.param("s-maxage=60", 61, 100, False, id="s-maxage"),
        pytest.param("max-age=60, no-cache", 61, 100, False, id="no-cache"),
        pytest.param(
            "max-age=60, must-revalidate, stale-if-error=100", 61, 0, True, id="explicit beats must"
        ),
    ],
)
def test_may_serve_stale_on_error(cache_control, after, limit, expected):
    """RFC 5861 §4: stale-if-error allows a stale response when the upstream fails "regardless of
    other freshness information"; RFC 9111 §4.2.4: otherwise a disconnected cache may serve stale
    unless must-revalidate, proxy-revalidate, s-maxage or no-cache prohibit it."""
    assert may_serve_stale_on_error(make_entry(cache_control), STORED_AT + after, limit) is expected


# ---- conformance additions ----


@pytest.mark.parametrize(
    ("cache_control", "expected"),
    [
        (["stale-if-error=30"], RequestDirectives(stale_if_error=30)),
        (["STALE-IF-ERROR=5, max-age=0"], RequestDirectives(stale_if_error=5, max_age=0)),
        (["stale-if-error=soon"], NO_DIRECTIVES),
    ],
)
def test_request_stale_if_error(cache_control, expected):
    """RFC 5861 §4: stale-if-error is also a request directive: the client accepts a stale response
    this many seconds past its freshness when the upstream fails."""
    assert request_directives(cache_control, []) == expected


@pytest.mark.parametrize(
    ("cache_control", "after", "request_limit", "expected"),
    [
        pytest.param("max-age=60", 100, 60, True, id="within the client's allowance"),
        pytest.param("max-age=60", 121, 60, False, id="past the client's allowance"),
        pytest.param("max-age=60, must-revalidate", 61, 3600, False, id="must-revalidate wins"),
        pytest.param("max-age=60, no-cache", 61, 3600, False, id="no-cache wins"),
        pytest.param("max-age=0, stale-if-error=1", 3, None, False, id="the upstream's allowance ran out"),
    ],
)
def test_the_clients_stale_if_error(cache_control, after, request_limit, expected):
    """RFC 5861 §4 with RFC 9111 §4.2.4: a stale response may answer an error within the client's
    stale-if-error, but never against must-revalidate or no-cache."""
    entry = make_entry(cache_control)
    assert may_serve_stale_on_error(entry, STORED_AT + after, 0, request_limit) is expected


@pytest.mark.parametrize(
    ("disconnected", "pure_rfc", "expected"),
    [(True, True, 300), (False, True, 0), (True, False, 300), (False, False, 300)],
)
def test_the_operators_stale_allowance(disconnected, pure_rfc, expected):
    """RFC 9111 §4.2.4: "A cache MUST NOT generate a stale response unless it is disconnected or
    doing so is explicitly permitted": in pure RFC mode an upstream that answers with an error is
    not "disconnected", so only its own or the client's stale-if-error allows stale then."""
    assert stale_on_error_limit(300, disconnected=disconnected, pure_rfc=pure_rfc) == expected


def test_request_max_age_zero_revalidates_a_fresh_entry():
    """RFC 9111 §5.2.1.1: max-age=0 asks for a response no older than 0 seconds."""
    assert use(make_entry(), 1, "max-age=0") == (Use.REVALIDATE, "request-max-age")


def test_request_min_fresh_needs_that_much_freshness_left():
    """RFC 9111 §5.2.1.3: min-fresh=N wants a response still fresh for N seconds."""
    assert use(make_entry(), 10, "min-fresh=49") == (Use.FRESH, "fresh")
    assert use(make_entry(), 10, "min-fresh=51") == (Use.REVALIDATE, "request-min-fresh")


def test_request_max_stale_allows_stale_within_it():
    """RFC 9111 §5.2.1.2: max-stale=N accepts a response stale by at most N seconds."""
    assert use(make_entry(), 100, "max-stale=50") == (Use.STALE, "max-stale")
    assert use(make_entry(), 120, "max-stale=50") == (Use.REVALIDATE, "stale")
