"""Whether a response may be stored, and the entry it becomes (RFC 9111 §3)."""

import pytest

from mitmcache.entry import Entry
from mitmcache.policy.dates import format_http_date
from mitmcache.policy.fields import get_all
from mitmcache.policy.storable import Head, Refusal, Rules, admit, judge_head
from mitmcache.policy.validators import generate_etag

NOW = 1_700_000_000.0
BODY = b"hello, cache"
DATE = format_http_date(NOW)
RULES = Rules(default_ttl=60.0, override=False)


def fields(pairs) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


def admitted(
    response=(("Cache-Control", "max-age=60"),),
    *,
    request=(),
    status: int = 200,
    method: str = "GET",
    body: bytes = BODY,
    request_time: float = NOW,
    response_time: float = NOW,
    default_ttl: float = 60.0,
    override: bool = False,
    cookie_default_ttl: bool = False,
) -> Entry | Refusal:
    """``admit`` for a response to ``GET http://example.com/r``, received at NOW."""
    return admit_fields(
        fields(request),
        fields(response),
        Rules(default_ttl=default_ttl, override=override, cookie_default_ttl=cookie_default_ttl),
        status=status,
        method=method,
        body=body,
        request_time=request_time,
        response_time=response_time,
    )


def admit_fields(
    request_fields,
    response_fields,
    rules: Rules,
    *,
    status: int = 200,
    method: str = "GET",
    body: bytes = BODY,
    request_time: float = NOW,
    response_time: float = NOW,
    head: Head | None = None,
) -> Entry | Refusal:
    """``admit`` for a response to ``GET http://example.com/r`` with these very field objects."""
    return admit(
        key="http://example.com/r",
        url="http://example.com/r",
        host="example.com",
        method=method,
        request_fields=request_fields,
        status=status,
        reason=b"OK",
        response_fields=response_fields,
        body=body,
        request_time=request_time,
        response_time=response_time,
        rules=rules,
        head=head,
    )


def make_entry(response=(("Cache-Control", "max-age=60"),), **kwargs) -> Entry:
    result = admitted(response, **kwargs)
    assert isinstance(result, Entry), result
    return result


def refusal_reason(response=(("Cache-Control", "max-age=60"),), **kwargs) -> str:
    result = admitted(response, **kwargs)
    assert isinstance(result, Refusal), result
    return result.reason


def stored(entry: Entry, name: str) -> list[str]:
    return get_all(entry.fields, name)


# ---- what may not be stored ----


@pytest.mark.parametrize(
    ("response", "kwargs", "reason"),
    [
        pytest.param([("Cache-Control", "max-age=60, no-store")], {}, "no-store", id="response no-store"),
        pytest.param(
            [("Cache-Control", "max-age=60")],
            {"request": [("Cache-Control", "no-store")]},
            "request-no-store",
            id="request no-store",
        ),
        pytest.param([("Cache-Control", "max-age=60, private")], {}, "private", id="private"),
        pytest.param([("Cache-Control", "PRIVATE, max-age=60")], {}, "private", id="private, any case"),
        pytest.param(
            [("Cache-Control", "max-age=60")],
            {"request": [("Authorization", "Bearer x")]},
            "authorization",
            id="authorization",
        ),
        pytest.param(
            [("Cache-Control", "max-age=60"), ("Set-Cookie", "id=1")], {}, "set-cookie", id="set-cookie"
        ),
        pytest.param([("Cache-Control", "max-age=60"), ("Vary", "*")], {}, "vary-star", id="vary star"),
        pytest.param(
            [("Cache-Control", "max-age=60"), ("Vary", "Accept, *")],
            {},
            "vary-star",
            id="vary list with star",
        ),
        pytest.param([("Cache-Control", "max-age=60")], {"status": 206}, "partial", id="206"),
        pytest.param([("Cache-Control", "max-age=60")], {"status": 100}, "status", id="1xx"),
        pytest.param([("Cache-Control", "max-age=60")], {"status": 304}, "status", id="304"),
        pytest.param([("Cache-Control", "max-age=60")], {"method": "POST"}, "method", id="POST"),
        pytest.param([], {"status": 302}, "no-freshness", id="302 without explicit freshness"),
        pytest.param([], {"status": 500}, "no-freshness", id="500 without explicit freshness"),
        pytest.param([], {"status": 500, "override": True}, "no-freshness", id="500 in override mode"),
    ],
)
def test_refused(response, kwargs, reason):
    """RFC 9111 §3: a shared cache stores a final response to an understood method only without
    no-store (§5.2.1.5, §5.2.2.5) or unqualified private (§5.2.2.7), with an Authorization request
    only when allowed (§3.5), and only with explicit freshness, ``public`` or a heuristically
    cacheable status. §3.3: a 206 is not stored as a complete response; §4.1: ``Vary: *`` never
    matches. Set-Cookie responses are not shared by policy: they are per-user."""
    assert refusal_reason(response, **kwargs) == reason


@pytest.mark.parametrize("directive", ["public", "s-maxage=60", "must-revalidate"])
def test_authorization_is_allowed_by_explicit_directives(directive):
    """RFC 9111 §3.5: with Authorization in the request, a shared cache stores the response only
    if it has must-revalidate, public or s-maxage."""
    entry = make_entry(
        [("Cache-Control", f"max-age=60, {directive}")], request=[("Authorization", "Basic x")]
    )
    assert entry.status == 200


@pytest.mark.parametrize(
    "response",
    [
        [("Cache-Control", "max-age=0")],
        [("Expires", format_http_date(NOW - 60)), ("Date", DATE)],
        [("Expires", "0")],
        [("Cache-Control", "max-age=invalid")],
    ],
    ids=["max-age=0", "Expires in the past", "Expires: 0", "invalid max-age"],
)
def test_stale_on_arrival_is_stored_only_with_validators(response):
    """RFC 9111 §4.3: a stale response is only worth keeping if it can be validated (ETag or
    Last-Modified); without validators every reuse would be a full fetch."""
    assert refusal_reason(response) == "stale-on-arrival"
    assert make_entry([*response, ("ETag", '"v1"')]).lifetime == 0
    assert make_entry([*response, ("Last-Modified", DATE)]).lifetime == 0


def test_a_zero_default_lifetime_stores_only_revalidatable_responses():
    """Pure RFC mode (default 0): no heuristic freshness, so only validators make storing useful."""
    assert refusal_reason([], default_ttl=0) == "stale-on-arrival"
    assert make_entry([("ETag", '"v1"')], default_ttl=0).lifetime == 0


def test_response_no_cache_is_stored_only_with_validators():
    """RFC 9111 §5.2.2.4: no-cache allows storing but every reuse needs validation."""
    assert refusal_reason([("Cache-Control", "max-age=60, no-cache")]) == "no-cache"
    entry = make_entry([("Cache-Control", "max-age=60, no-cache"), ("ETag", '"v1"')])
    assert entry.no_cache is True


@pytest.mark.parametrize(
    ("response", "status", "lifetime", "source"),
    [
        ([("Cache-Control", "max-age=30")], 302, 30, "max-age"),
        ([("Cache-Control", "s-maxage=30")], 500, 30, "s-maxage"),
        ([("Expires", format_http_date(NOW + 90))], 307, 90, "expires"),
        ([("Cache-Control", "public")], 302, 60, "default"),
        ([], 200, 60, "default"),
        ([], 404, 60, "default"),
    ],
)
def test_storable_statuses(response, status, lifetime, source):
    """RFC 9111 §3: any final status with explicit freshness or ``public``; heuristically cacheable
    statuses (RFC 9110 §15.1) with the heuristic (our default lifetime)."""
    entry = make_entry(response, status=status)
    assert (entry.lifetime, entry.lifetime_source) == (lifetime, source)


def test_expires_without_date_counts_from_the_time_of_receipt():
    """RFC 9111 §4.2.1: Expires minus Date, "using the time the message was received if it is not
    present"."""
    entry = make_entry([("Expires", format_http_date(NOW + 100))], response_time=NOW + 40)
    assert entry.lifetime == 60


# ---- what is stored ----


def test_qualified_private_withholds_only_the_named_fields():
    """RFC 9111 §5.2.2.7: with field names, "only the listed header fields are limited to a single
    user": a shared cache may store the response without them."""
    entry = make_entry(
        [
            ("Cache-Control", 'max-age=60, private="X-User, X-Token"'),
            ("X-User", "alice"),
            ("x-token", "t"),
            ("X-Public", "p"),
        ]
    )
    assert stored(entry, "x-user") == stored(entry, "x-token") == []
    assert stored(entry, "x-public") == ["p"]


def test_qualified_no_cache_withholds_the_named_fields():
    """RFC 9111 §5.2.2.4: fields named by no-cache "MUST NOT be sent in the response to a subsequent
    request without successful revalidation"; the rest may be reused."""
    entry = make_entry(
        [("Cache-Control", 'max-age=60, no-cache="X-Trace"'), ("X-Trace", "1"), ("X-Keep", "2")]
    )
    assert stored(entry, "x-trace") == []
    assert stored(entry, "x-keep") == ["2"]
    assert entry.no_cache is False


def test_hop_by_hop_fields_are_not_stored():
    """RFC 9111 §3.1: a cache MUST NOT store the Connection field, the fields it lists, or other
    hop-by-hop fields (RFC 9110 §7.6.1)."""
    entry = make_entry(
        [
            ("Cache-Control", "max-age=60"),
            ("Connection", "keep-alive, X-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("X-Hop", "1"),
            ("Proxy-Connection", "keep-alive"),
            ("X-End", "2"),
        ]
    )
    names = {k.decode().lower() for k, _ in entry.fields}
    assert names == {"cache-control", "x-end", "etag", "date", "content-length"}


def test_fields_the_cache_recomputes_are_not_stored_from_upstream():
    """RFC 9111 §5.1: Age is recomputed on every reuse; Content-Length describes the stored body
    (one value, even where the upstream repeated it); X-Cache is ours."""
    entry = make_entry(
        [
            ("Cache-Control", "max-age=60"),
            ("Age", "10"),
            ("X-Cache", "HIT"),
            ("Content-Length", f"{len(BODY)}, {len(BODY)}"),
        ]
    )
    assert stored(entry, "age") == stored(entry, "x-cache") == []
    assert stored(entry, "content-length") == [str(len(BODY))]
    assert entry.initial_age == 10


def test_repeated_fields_are_stored_in_order():
    """RFC 9110 §5.3: every line of a repeated field is kept, in order."""
    entry = make_entry([("Cache-Control", "max-age=60"), ("Link", "<a>"), ("X-Other", "x"), ("Link", "<b>")])
    assert stored(entry, "link") == ["<a>", "<b>"]


def test_an_etag_is_generated_only_when_the_upstream_sent_none():
    """RFC 9110 §8.8.3: a strong validator lets clients revalidate with If-None-Match; the
    upstream's own ETag is kept as it is and is the one sent back upstream."""
    generated = make_entry()
    assert generated.upstream_etag is None
    assert generated.etag == generate_etag(BODY)
    assert stored(generated, "etag") == [generated.etag]

    upstream = make_entry([("Cache-Control", "max-age=60"), ("ETag", 'W/"up"')])
    assert upstream.upstream_etag == upstream.etag == 'W/"up"'
    assert stored(upstream, "etag") == ['W/"up"']


def test_date_is_added_when_missing_and_kept_when_present():
    """RFC 9110 §6.6.1: "A recipient with a clock that receives a response message without a Date
    header field MUST record the time it was received and append a corresponding Date header field
    to the message's header section if it is cached"."""
    added = make_entry(response_time=NOW + 5)
    assert (added.date, stored(added, "date")) == (NOW + 5, [format_http_date(NOW + 5)])
    kept = make_entry([("Cache-Control", "max-age=60"), ("Date", format_http_date(NOW - 3))])
    assert (kept.date, stored(kept, "date")) == (NOW - 3, [format_http_date(NOW - 3)])
    assert kept.initial_age == 3


def test_an_invalid_date_is_replaced_by_the_time_of_receipt():
    entry = make_entry([("Cache-Control", "max-age=60"), ("Date", "yesterday")])
    assert entry.date == NOW
    assert entry.initial_age == 0


def test_the_secondary_key_holds_the_request_values_vary_names():
    """RFC 9111 §4.1: the stored response is selected by the request's values of the Vary fields."""
    entry = make_entry(
        [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language, Origin")],
        request=[("Accept-Language", "fr"), ("Accept", "text/html")],
    )
    assert entry.vary == (("accept-language", "fr"), ("origin", None))


def test_an_encoded_body_varies_on_accept_encoding_even_without_vary():
    """RFC 9110 §12.5.3: a coded body must not reach a client that did not accept that coding."""
    entry = make_entry(
        [("Cache-Control", "max-age=60"), ("Content-Encoding", "gzip"), ("Vary", "Accept-Language")],
        request=[("Accept-Encoding", "gzip, br"), ("Accept-Language", "en")],
    )
    assert entry.vary == (("accept-encoding", "br,gzip,identity"), ("accept-language", "en"))
    assert make_entry(request=[("Accept-Encoding", "gzip")]).vary == ()


@pytest.mark.parametrize(
    ("cache_control", "stale_while_revalidate", "stale_if_error"),
    [
        ("max-age=60", 0, 0),
        ("max-age=60, stale-while-revalidate=30, stale-if-error=300", 30, 300),
        ("max-age=60, stale-while-revalidate=-1, stale-if-error=soon", 0, 0),
    ],
)
def test_stale_extensions_are_captured(cache_control, stale_while_revalidate, stale_if_error):
    """RFC 5861 §3, §4: delta-seconds windows in which a stale response may still be used."""
    entry = make_entry([("Cache-Control", cache_control)])
    assert (entry.stale_while_revalidate, entry.stale_if_error) == (stale_while_revalidate, stale_if_error)


@pytest.mark.parametrize(
    ("cache_control", "expected"),
    [
        ("max-age=60", False),
        ("max-age=60, must-revalidate", True),
        ("max-age=60, proxy-revalidate", True),
        ("s-maxage=60", True),
        ("public, max-age=60, stale-while-revalidate=10", False),
    ],
)
def test_must_revalidate_flag(cache_control, expected):
    """RFC 9111 §5.2.2.2 must-revalidate, §5.2.2.8 proxy-revalidate (shared caches), and §5.2.2.10
    s-maxage, which "incorporates the semantics of the proxy-revalidate response directive"."""
    assert make_entry([("Cache-Control", cache_control)]).must_revalidate is expected


def test_the_entry_records_its_times_and_body():
    entry = make_entry(
        [("Cache-Control", "max-age=60"), ("Age", "4")], request_time=NOW - 1, response_time=NOW
    )
    assert (entry.response_time, entry.initial_age) == (NOW, 5)
    assert (entry.body, entry.status, entry.reason) == (BODY, 200, b"OK")
    assert (entry.key, entry.url, entry.host) == (
        "http://example.com/r",
        "http://example.com/r",
        "example.com",
    )


# ---- conformance additions: must-understand, targeted fields, heuristic, completeness ----


def pure(response, **kwargs) -> Entry | Refusal:
    """``admit`` in pure RFC mode (no default lifetime, 10% heuristic, CDN-Cache-Control targeted)."""
    return admit(
        key="http://example.com/r",
        url="http://example.com/r",
        host="example.com",
        method="GET",
        request_fields=fields(kwargs.pop("request", ())),
        status=kwargs.pop("status", 200),
        reason=b"OK",
        response_fields=fields(response),
        body=kwargs.pop("body", BODY),
        request_time=NOW,
        response_time=NOW,
        rules=Rules(
            default_ttl=0, override=False, heuristic_percent=10, targeted_fields=("cdn-cache-control",)
        ),
    )


@pytest.mark.parametrize(
    ("status", "stored"),
    [(200, True), (404, True), (500, True), (599, False), (299, False)],
)
def test_must_understand_overrides_no_store_for_understood_statuses(status, stored):
    """RFC 9111 §5.2.2.3: "a cache that ... understands and conforms to the requirements for that
    response's status code ... SHOULD ignore the no-store directive"; other caches must not store."""
    result = pure([("Cache-Control", "max-age=3600, no-store, must-understand")], status=status)
    assert isinstance(result, Entry) is stored
    if not stored:
        assert result == Refusal("must-understand")


def test_must_understand_alone_keeps_an_unknown_status_out():
    """RFC 9111 §5.2.2.3: must-understand "limits caching of the response to a cache that
    understands and conforms to the requirements for that response's status code"."""
    assert pure([("Cache-Control", "max-age=60, must-understand")], status=599) == Refusal("must-understand")


@pytest.mark.parametrize(
    ("response", "outcome"),
    [
        pytest.param([("CDN-Cache-Control", "max-age=600")], 600, id="targeted lifetime"),
        pytest.param(
            [("Cache-Control", "max-age=1"), ("CDN-Cache-Control", "max-age=600")],
            600,
            id="beats Cache-Control",
        ),
        pytest.param(
            [("Cache-Control", "max-age=600"), ("CDN-Cache-Control", "max-age=1")], 1, id="even when shorter"
        ),
        pytest.param(
            [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=600")], 600, id="beats no-store"
        ),
        pytest.param(
            [("CDN-Cache-Control", "max-age=600"), ("Expires", "0"), ("Date", DATE)],
            600,
            id="ignores Expires",
        ),
        pytest.param(
            [("Cache-Control", "max-age=600"), ("CDN-Cache-Control", "no-store")],
            "no-store",
            id="targeted no-store",
        ),
        pytest.param(
            [("Cache-Control", "max-age=600"), ("CDN-Cache-Control", "private")],
            "private",
            id="targeted private",
        ),
        pytest.param(
            [("Cache-Control", "no-store"), ("CDN-Cache-Control", 'max-age="600"')],
            "no-store",
            id="wrong type",
        ),
        pytest.param(
            [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=600, &&")],
            "no-store",
            id="invalid",
        ),
    ],
)
def test_a_targeted_field_replaces_cache_control_and_expires(response, outcome):
    """RFC 9213 §2.2: a cache "MUST ignore the Cache-Control and Expires header fields" when a
    targeted field on its list has a valid, non-empty value -- and only then."""
    result = pure(response)
    if isinstance(outcome, str):
        assert result == Refusal(outcome)
    else:
        assert isinstance(result, Entry) and result.lifetime == outcome


def test_the_targeted_field_is_stored_and_served():
    """RFC 9213 §2.2 does not ask the cache to remove the field: it is kept for clients."""
    entry = pure([("CDN-Cache-Control", "max-age=600")])
    assert isinstance(entry, Entry)
    assert stored(entry, "cdn-cache-control") == ["max-age=600"]


def test_heuristic_freshness_in_pure_rfc_mode():
    """RFC 9111 §4.2.2: without explicit freshness, 10% of the time since Last-Modified."""
    entry = pure([("Last-Modified", format_http_date(NOW - 86_400)), ("Date", DATE)])
    assert isinstance(entry, Entry)
    assert (entry.lifetime, entry.lifetime_source) == (8640, "heuristic")


def test_no_heuristic_without_last_modified_and_nothing_stored_without_validators():
    """RFC 9111 §4.2.2: the heuristic needs Last-Modified; a response that is stale on arrival and
    cannot be validated is not worth storing."""
    assert pure([("Date", DATE)]) == Refusal("stale-on-arrival")


@pytest.mark.parametrize(
    ("content_length", "complete"),
    [
        (str(len(BODY)), True),
        (str(len(BODY) + 5), False),
        (str(len(BODY) - 1), False),
        (f"{len(BODY)}, {len(BODY) + 1}", False),
        ("twelve", False),
        ("9" * 5000, False),  # more digits than int() converts
    ],
)
def test_an_incomplete_response_is_not_stored(content_length, complete):
    """RFC 9111 §3.3: "A cache MUST NOT use an incomplete response to answer requests unless the
    response has been made complete": a body that is not the length Content-Length announced."""
    result = pure([("Cache-Control", "max-age=60"), ("Content-Length", content_length)])
    assert isinstance(result, Entry) is complete
    if not complete:
        assert result == Refusal("incomplete")


def test_a_204_is_stored_without_content_length():
    """RFC 9110 §8.6: "A server MUST NOT send a Content-Length header field in any response with a
    status code of ... 204 (No Content)"."""
    entry = pure([("Cache-Control", "max-age=60")], status=204, body=b"")
    assert isinstance(entry, Entry)
    assert stored(entry, "content-length") == []


@pytest.mark.parametrize(
    "name", ["Proxy-Authenticate", "Proxy-Authentication-Info", "Proxy-Authorization", "Proxy-Connection"]
)
def test_proxy_specific_fields_are_not_stored(name):
    """RFC 9111 §3.1: fields "specific to the proxy that a cache uses when forwarding a request MUST
    NOT be stored" -- Proxy-Authenticate, Proxy-Authentication-Info, Proxy-Authorization."""
    entry = pure([("Cache-Control", "max-age=60"), (name, "x")])
    assert isinstance(entry, Entry)
    assert stored(entry, name) == []


def test_an_interim_response_is_never_stored():
    """RFC 9111 §3: a cache stores only a final response; 1xx are interim (RFC 9110 §15.2)."""
    for status in (100, 102, 103):
        assert pure([("Cache-Control", "max-age=60")], status=status) == Refusal("status")


def test_an_invalid_date_field_is_replaced_not_duplicated():
    """RFC 9110 §6.6.1: a recipient with a clock "MAY replace" an invalid Date with the time of
    receipt; the stored response then carries that one Date."""
    entry = pure([("Cache-Control", "max-age=60"), ("Date", "foo")])
    assert isinstance(entry, Entry)
    assert stored(entry, "date") == [DATE]


def test_expires_counts_from_receipt_when_date_is_invalid():
    """RFC 9111 §4.2.1: Expires minus Date, "using the time the message was received" when Date is
    not (validly) present."""
    entry = pure([("Date", "foo"), ("Expires", format_http_date(NOW + 10))])
    assert isinstance(entry, Entry) and entry.lifetime == 10


@pytest.mark.parametrize("directive", ["stale-if-error=60", "stale-while-revalidate=60"])
def test_stale_on_arrival_is_stored_when_it_may_be_served_stale(directive):
    """RFC 5861 §3, §4: a response the upstream allows to be served stale is of use even when it
    is stale on arrival and has no validators."""
    entry = pure([("Cache-Control", f"max-age=0, {directive}")])
    assert isinstance(entry, Entry) and entry.lifetime == 0


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ((("Cache-Control", "no-store"),), "no-store"),
        ((("Cache-Control", "private"),), "private"),
        ((("Cache-Control", "max-age=60"), ("Set-Cookie", "a=1")), "set-cookie"),
        ((("Cache-Control", "max-age=60"), ("Vary", "*")), "vary-star"),
    ],
)
def test_a_head_that_cannot_be_stored_is_known_before_its_body(response, reason):
    refused = judge_head(200, [], fields(response), Rules(default_ttl=60.0, override=False), NOW)
    assert refused == Refusal(reason)


def test_a_5xx_head_is_left_for_the_complete_response():
    assert judge_head(503, [], fields((("Cache-Control", "no-store"),)), RULES, NOW) is None


def admit_after(
    head: Head | Refusal | None, request_fields, response_fields, rules: Rules
) -> Entry | Refusal:
    assert isinstance(head, Head)
    return admit_fields(request_fields, response_fields, rules, response_time=NOW + 1, head=head)


def test_admit_reuses_the_judgement_of_the_head_it_was_made_on():
    """Judged when its head arrived; the body's arrival stamps the missing Date."""
    request, response = fields(()), fields((("Cache-Control", "max-age=60"), ("Expires", DATE)))
    head = judge_head(200, request, response, RULES, NOW)
    entry = admit_after(head, request, response, RULES)
    assert isinstance(entry, Entry) and entry.lifetime == 60.0 and entry.date == NOW + 1


def test_admit_judges_again_fields_changed_since_their_head_was_judged():
    request, response = fields(()), fields((("Cache-Control", "max-age=60"),))
    head = judge_head(200, request, response, RULES, NOW)
    changed = fields((("Cache-Control", "no-store"),))  # another addon rewrote the response
    assert admit_after(head, request, changed, RULES) == Refusal("no-store")


def test_admit_judges_again_under_rules_changed_since_the_head():
    request, response = fields(()), fields(())  # no lifetime of its own: the default TTL's
    head = judge_head(200, request, response, RULES, NOW)
    assert admit_after(head, request, response, Rules(default_ttl=0.0, override=False)) == Refusal(
        "stale-on-arrival"
    )


@pytest.mark.parametrize("field", ["Cache-Control", "Age"])
def test_a_number_of_thousands_of_digits_is_the_largest_value_not_an_error(field):
    """RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31; Python's int()
    refuses more than 4,300 digits, which used to raise inside the store path."""
    huge = "9" * 5000
    value = f"max-age={huge}" if field == "Cache-Control" else huge
    result = pure([("Cache-Control", "max-age=60"), (field, value)] if field == "Age" else [(field, value)])
    assert isinstance(result, Entry)
    if field == "Cache-Control":
        assert result.lifetime == 2**31
    else:
        assert result.initial_age >= 2**31


# ---- responses to requests that carry Cookie ----

COOKIE = [("Cookie", "session=alice")]


@pytest.mark.parametrize("override", [False, True])
def test_the_default_lifetime_does_not_apply_to_a_cookie_requests_response(override):
    """An account page without freshness information, fetched with a session cookie, is not given
    the operator's lifetime and shared with everyone."""
    assert refusal_reason([("Date", DATE)], request=COOKIE, override=override) == "cookie"


@pytest.mark.parametrize(
    "response",
    [
        [("Cache-Control", "max-age=60")],
        [("Cache-Control", "s-maxage=60")],
        [("Cache-Control", "public")],
        [("Expires", format_http_date(NOW + 60)), ("Date", DATE)],
    ],
)
def test_the_origins_explicit_freshness_still_counts_with_a_cookie(response):
    assert isinstance(admitted(response, request=COOKIE), Entry)
    assert isinstance(admitted(response, request=COOKIE, override=True), Entry)


def test_without_a_cookie_the_default_lifetime_applies_as_before():
    entry = make_entry([("Date", DATE)])
    assert (entry.lifetime, entry.lifetime_source) == (60, "default")


def test_cookie_default_ttl_on_gives_cookie_requests_the_default_lifetime():
    entry = make_entry([("Date", DATE)], request=COOKIE, cookie_default_ttl=True)
    assert (entry.lifetime, entry.lifetime_source) == (60, "default")
