"""Validation (RFC 9111 §4.3; RFC 9110 §13), end to end in pure RFC mode."""

import pytest

from tests.e2e import conformance
from tests.e2e.conformance import request_header

# Fixtures shared by the conformance modules.
path = conformance.path
rfc_proxy = conformance.rfc_proxy

LM = "Wed, 01 Jan 2020 00:00:00 GMT"
STALE = [("Cache-Control", "max-age=10"), ("Age", "20")]  # stale on arrival, stored when validatable
FRESH = [("Cache-Control", "max-age=3600")]


def get(http, proxy, path, **headers):
    return http.get(f"{proxy.url}{path}", headers={k.replace("_", "-"): v for k, v in headers.items()})


# ---- §4.3.1: conditional requests upstream ----


@pytest.mark.parametrize(
    ("validators", "expected"),
    [
        pytest.param([("ETag", '"abc"')], {"if-none-match": '"abc"'}, id="strong etag"),
        pytest.param([("ETag", 'W/"abc"')], {"if-none-match": 'W/"abc"'}, id="weak etag"),
        pytest.param([("Last-Modified", LM)], {"if-modified-since": LM}, id="last-modified"),
        pytest.param(
            [("ETag", '"abc"'), ("Last-Modified", LM)],
            {"if-none-match": '"abc"', "if-modified-since": LM},
            id="both",
        ),
    ],
)
def test_a_stale_response_is_validated_with_its_validators(
    origin, rfc_proxy, http, path, validators, expected
):
    """RFC 9111 §4.3.1: "When generating a conditional request for validation, a cache ... MUST send
    the relevant entity tag (using If-None-Match) if the entity tag was provided in the stored
    response", and "SHOULD send the Last-Modified value (using If-Modified-Since)"."""
    origin.route(path, sequence=[{"headers": [*STALE, *validators], "body": "stored"}, {"status": 304}])
    get(http, rfc_proxy, path)
    again = get(http, rfc_proxy, path)
    assert (again.status_code, again.text, again.headers["x-cache"]) == (200, "stored", "REVALIDATED")
    validation = origin.requests(path)[1]
    assert {name: request_header(validation, name) for name in expected} == expected


def test_the_validation_request_is_the_clients_request(origin, rfc_proxy, http, path):
    """RFC 9111 §4.3.1: the cache "starts with a request it is attempting to satisfy": the client's
    fields, including those the stored response varies on, go with the validators."""
    origin.route(
        path,
        sequence=[{"headers": [*STALE, ("ETag", '"a"'), ("Vary", "Abc")], "body": "stored"}, {"status": 304}],
    )
    get(http, rfc_proxy, path, Abc="123")
    get(http, rfc_proxy, path, Abc="123", X_Request_Id="r-2")
    validation = origin.requests(path)[1]
    assert (request_header(validation, "abc"), request_header(validation, "x-request-id")) == ("123", "r-2")
    assert request_header(validation, "if-none-match") == '"a"'


def test_no_validation_of_a_variant_the_request_does_not_select(origin, rfc_proxy, http, path):
    """RFC 9111 §4.1: a stored response for another variant is not the request's to validate."""
    origin.route(path, headers=[*STALE, ("ETag", '"a"'), ("Vary", "Abc")], body="x")
    get(http, rfc_proxy, path, Abc="123")
    get(http, rfc_proxy, path, Abc="456")
    assert request_header(origin.requests(path)[1], "if-none-match") is None


# ---- §4.3.3 / §4.3.4: handling the validation response, freshening ----


def test_a_304_updates_the_stored_fields_and_keeps_the_others(origin, rfc_proxy, http, path):
    """RFC 9111 §4.3.4: the cache "MUST ... replace all stored header fields with corresponding
    header fields provided in the 304"; fields the 304 omits are kept; Content-Length is not
    updated (§3.2)."""
    origin.route(
        path,
        sequence=[
            {
                "headers": [
                    *STALE,
                    ("ETag", '"a"'),
                    ("Test-Header", "A"),
                    ("Content-Foo", "A"),
                    ("Kept", "k"),
                ],
                "body": "stored body",
            },
            {
                "status": 304,
                "headers": [
                    ("Cache-Control", "max-age=3600"),
                    ("ETag", '"a"'),
                    ("Test-Header", "B"),
                    ("Content-Foo", "B"),
                ],
            },
        ],
    )
    get(http, rfc_proxy, path)
    revalidated = get(http, rfc_proxy, path)
    hit = get(http, rfc_proxy, path)
    for response in (revalidated, hit):
        assert (response.headers["test-header"], response.headers["content-foo"]) == ("B", "B")
        assert (response.headers["kept"], response.text) == ("k", "stored body")
        assert response.headers["content-length"] == str(len("stored body"))
        assert response.headers["cache-control"] == "max-age=3600"
    assert (revalidated.headers["x-cache"], hit.headers["x-cache"]) == ("REVALIDATED", "HIT")
    assert origin.count(path) == 2


def test_a_304_freshens_every_variant_with_its_strong_etag(origin, rfc_proxy, http, path):
    """RFC 9111 §4.3.4: "All the stored responses that have one of those same strong validators are
    identified for update"."""
    origin.route(
        path,
        sequence=[
            {"headers": [*STALE, ("ETag", '"same"'), ("Vary", "Foo")], "body": "one"},
            {"headers": [*STALE, ("ETag", '"same"'), ("Vary", "Foo")], "body": "two"},
            {"status": 304, "headers": [("ETag", '"same"'), ("Cache-Control", "max-age=3600"), ("X-V", "2")]},
        ],
    )
    get(http, rfc_proxy, path, Foo="1")
    get(http, rfc_proxy, path, Foo="2")
    assert get(http, rfc_proxy, path, Foo="1").headers["x-cache"] == "REVALIDATED"
    other = get(http, rfc_proxy, path, Foo="2")
    assert (other.headers["x-cache"], other.headers["x-v"], other.text) == ("HIT", "2", "two")
    assert origin.count(path) == 3


def test_a_304_for_another_representation_is_not_used(origin, rfc_proxy, http, path):
    """RFC 9111 §4.3.4: "If none of the stored responses contain at least one of the same strong
    validators, then the cache MUST NOT use the new response to update any stored responses" -- the
    client gets the full, current response instead."""
    origin.route(
        path,
        sequence=[
            {"headers": [*STALE, ("ETag", '"a"')], "body": "old"},
            {"status": 304, "headers": [("ETag", '"b"')]},
            {"headers": [*FRESH, ("ETag", '"b"')], "body": "new"},
        ],
    )
    get(http, rfc_proxy, path)
    answer = get(http, rfc_proxy, path)
    assert (answer.status_code, answer.text) == (200, "new")


def test_a_full_response_to_validation_replaces_the_stored_one(origin, rfc_proxy, http, path):
    """RFC 9111 §4.3.3: "A full response ... is used to satisfy the request and MAY replace the
    stored response"."""
    origin.route(
        path,
        sequence=[
            {"headers": [*STALE, ("ETag", '"a"')], "body": "old"},
            {"headers": [*FRESH, ("ETag", '"b"')], "body": "new"},
        ],
    )
    get(http, rfc_proxy, path)
    assert get(http, rfc_proxy, path).text == "new"
    hit = get(http, rfc_proxy, path)
    assert (hit.headers["x-cache"], hit.text, hit.headers["etag"]) == ("HIT", "new", '"b"')


# ---- §4.3.5: HEAD ----


def test_a_head_response_freshens_the_stored_get(origin, rfc_proxy, http, path):
    """RFC 9111 §4.3.5: a 200 to a HEAD "SHOULD update or invalidate each of its stored GET
    responses that could have been chosen for that request"; with matching validators: update."""
    origin.route(
        path,
        sequence=[
            {"headers": [*STALE, ("ETag", '"a"'), ("Template-A", "1")], "body": "get body"},
            {
                "headers": [("Cache-Control", "max-age=3600"), ("ETag", '"a"'), ("Template-A", "2")],
                "body": "get body",
            },
        ],
    )
    get(http, rfc_proxy, path)
    head = http.head(f"{rfc_proxy.url}{path}")
    assert (head.status_code, head.content, head.headers["template-a"]) == (200, b"", "2")
    assert origin.requests(path)[1]["method"] == "HEAD"
    hit = get(http, rfc_proxy, path)
    assert (hit.headers["x-cache"], hit.headers["template-a"], hit.text) == ("HIT", "2", "get body")


def test_a_head_response_with_another_etag_invalidates_the_stored_get(origin, rfc_proxy, http, path):
    """RFC 9111 §4.3.5: a HEAD response whose ETag differs from the stored response's shows that
    the stored response is out of date."""
    origin.route(
        path,
        sequence=[
            {"headers": [*STALE, ("ETag", '"a"')], "body": "old"},
            {"headers": [*FRESH, ("ETag", '"b"')], "body": "new"},
        ],
    )
    get(http, rfc_proxy, path)
    http.head(f"{rfc_proxy.url}{path}")
    after = get(http, rfc_proxy, path)
    assert (after.headers["x-cache"], after.text) == ("MISS", "new")


# ---- RFC 9110 §13.2 / RFC 9111 §4.3.2: the client's own conditional requests ----


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"If-None-Match": '"abc"'}, 304, id="matching tag"),
        pytest.param({"If-None-Match": '"x", "abc", "y"'}, 304, id="in a list"),
        pytest.param({"If-None-Match": '"x", "y"'}, 200, id="not in the list"),
        pytest.param({"If-None-Match": "*"}, 304, id="star"),
        pytest.param({"If-None-Match": 'W/"abc"'}, 304, id="weak comparison"),
        pytest.param({"If-Modified-Since": LM}, 304, id="not modified since Last-Modified"),
        pytest.param({"If-Modified-Since": "Thu, 02 Jan 2020 00:00:00 GMT"}, 304, id="later date"),
        pytest.param({"If-Modified-Since": "Tue, 31 Dec 2019 00:00:00 GMT"}, 200, id="earlier date"),
        pytest.param(
            {"If-None-Match": '"x"', "If-Modified-Since": LM}, 200, id="If-None-Match decides (200)"
        ),
        pytest.param(
            {"If-None-Match": '"abc"', "If-Modified-Since": "Tue, 31 Dec 2019 00:00:00 GMT"},
            304,
            id="If-None-Match decides (304)",
        ),
        pytest.param({"If-Modified-Since": "garbage"}, 200, id="invalid date ignored"),
    ],
)
def test_conditional_requests_are_answered_from_the_cache(origin, rfc_proxy, http, path, headers, status):
    """RFC 9110 §13.1.2, §13.1.3, §13.2.2: If-None-Match (weak comparison, lists, *) decides when
    present, If-Modified-Since only without it; RFC 9111 §4.3.2: a cache evaluates them against the
    stored response."""
    origin.route(path, headers=[*FRESH, ("ETag", '"abc"'), ("Last-Modified", LM)], body="body")
    get(http, rfc_proxy, path)
    answer = http.get(f"{rfc_proxy.url}{path}", headers=headers)
    assert answer.status_code == status
    assert answer.content == (b"" if status == 304 else b"body")
    assert origin.count(path) == 1


def test_a_304_from_the_cache_carries_the_fields_it_must(origin, rfc_proxy, http, path):
    """RFC 9110 §15.4.5: a 304 carries the Cache-Control, Content-Location, Date, ETag, Expires and
    Vary a 200 would have; RFC 9111 §5.1: and Age."""
    sent = [*FRESH, ("ETag", '"abc"'), ("Vary", "Foo"), ("Content-Location", "/c"), ("Expires", LM)]
    origin.route(path, headers=sent, body="body")
    get(http, rfc_proxy, path)
    answer = http.get(f"{rfc_proxy.url}{path}", headers={"If-None-Match": '"abc"'})
    assert answer.status_code == 304
    for name in ("cache-control", "content-location", "date", "etag", "expires", "vary", "age"):
        assert name in answer.headers, name


def test_an_obs_text_etag_is_compared_byte_for_byte(origin, rfc_proxy, http, path):
    """RFC 9110 §8.8.3: an entity-tag may hold obs-text; comparison is character by character."""
    tag = '"abcdef\xfc"'
    origin.route(path, headers=[*FRESH, ("ETag", tag)], body="body")
    get(http, rfc_proxy, path)
    answer = http.get(f"{rfc_proxy.url}{path}", headers=[("If-None-Match", tag.encode("latin-1"))])
    assert answer.status_code == 304


def test_a_stale_response_is_validated_before_answering_a_conditional_request(origin, rfc_proxy, http, path):
    """RFC 9111 §4.3.2 with §4.3.1: a stale stored response is validated first; the client's
    condition is then evaluated against the freshened response."""
    origin.route(path, sequence=[{"headers": [*STALE, ("Last-Modified", LM)], "body": "x"}, {"status": 304}])
    get(http, rfc_proxy, path)
    answer = http.get(f"{rfc_proxy.url}{path}", headers={"If-Modified-Since": LM})
    assert answer.status_code == 304
    assert request_header(origin.requests(path)[1], "if-modified-since") == LM


@pytest.mark.parametrize("precondition", ["If-Match", "If-Unmodified-Since"])
def test_origin_preconditions_go_to_the_origin(origin, rfc_proxy, http, path, precondition):
    """RFC 9111 §4.3.2: "the If-Match and If-Unmodified-Since conditional header fields are not
    applicable to a cache": the request is forwarded with them for the origin to evaluate."""
    origin.route(path, headers=[*FRESH, ("ETag", '"abc"')], body="body")
    get(http, rfc_proxy, path)
    value = '"abc"' if precondition == "If-Match" else LM
    forwarded = http.get(f"{rfc_proxy.url}{path}", headers={precondition: value})
    assert origin.count(path) == 2
    assert request_header(origin.requests(path)[1], precondition) == value
    assert "fwd=bypass" in forwarded.headers["cache-status"]
