"""Range requests (RFC 9110 §14, §13.1.5; RFC 9111 §3.3), end to end in pure RFC mode.

A Range request for a complete stored 200 is answered from the cache; one that finds nothing
stored goes to the origin as it is, and a 206 is never stored.
"""

import re

import pytest

from tests.e2e import conformance
from tests.e2e.conformance import request_header

# Fixtures shared by the conformance modules.
path = conformance.path
rfc_proxy = conformance.rfc_proxy

BODY = "0123456789A"
LM = "Wed, 01 Jan 2020 00:00:00 GMT"
FRESH = [("Cache-Control", "max-age=3600"), ("ETag", '"v1"'), ("Last-Modified", LM), ("A", "1")]


@pytest.fixture
def stored(origin, rfc_proxy, http, path):
    origin.route(path, headers=[*FRESH, ("Content-Type", "text/plain")], body=BODY)
    http.get(f"{rfc_proxy.url}{path}")
    return f"{rfc_proxy.url}{path}"


@pytest.mark.parametrize(
    ("value", "text", "content_range"),
    [
        pytest.param("bytes=0-1", "01", "bytes 0-1/11", id="first-last"),
        pytest.param("bytes=1-", "123456789A", "bytes 1-10/11", id="open"),
        pytest.param("bytes=-1", "A", "bytes 10-10/11", id="suffix"),
        pytest.param("bytes=5-100", "56789A", "bytes 5-10/11", id="past the end"),
        pytest.param("bytes=-100", BODY, "bytes 0-10/11", id="suffix longer than the body"),
    ],
)
def test_one_range_is_a_206_from_the_stored_response(origin, http, path, stored, value, text, content_range):
    """RFC 9110 §14.2: a satisfiable range gets a 206 (§15.3.7) with "a Content-Range header field
    ... indicating the range enclosed"; the stored fields come with it."""
    answer = http.get(stored, headers={"Range": value})
    assert (answer.status_code, answer.text, answer.headers["content-range"]) == (206, text, content_range)
    assert answer.headers["content-length"] == str(len(text))
    assert (answer.headers["a"], answer.headers["etag"], answer.headers["x-cache"]) == ("1", '"v1"', "HIT")
    assert origin.count(path) == 1


def test_several_ranges_are_a_multipart_206(http, stored):
    """RFC 9110 §14.6: several ranges are sent as multipart/byteranges, one part per range with its
    own Content-Range."""
    answer = http.get(stored, headers={"Range": "bytes=0-1, 5-6"})
    assert answer.status_code == 206
    boundary = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", answer.headers["content-type"]).group(1)
    parts = answer.content.split(f"--{boundary}".encode())
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    heads, bodies = zip(*(part.strip(b"\r\n").split(b"\r\n\r\n") for part in parts[1:-1]), strict=True)
    assert bodies == (b"01", b"56")
    assert [h for h in heads[0].split(b"\r\n")] == [
        b"Content-Type: text/plain",
        b"Content-Range: bytes 0-1/11",
    ]
    assert b"Content-Range: bytes 5-6/11" in heads[1]


def test_an_unsatisfiable_range_is_a_416(http, stored):
    """RFC 9110 §15.5.17: no satisfiable range: 416, with "Content-Range: bytes */<length>"."""
    answer = http.get(stored, headers={"Range": "bytes=20-30"})
    assert (answer.status_code, answer.headers["content-range"], answer.content) == (416, "bytes */11", b"")


@pytest.mark.parametrize("value", ["items=0-1", "bytes=3-1", "bytes=x-y", "bytes=0-1, 1-2"])
def test_ranges_we_do_not_serve_get_the_whole_response(http, stored, value):
    """RFC 9110 §14.2: "A server MAY ignore the Range header field" -- another unit, an invalid
    range set, overlapping ranges: the whole 200."""
    answer = http.get(stored, headers={"Range": value})
    assert (answer.status_code, answer.text) == (200, BODY)


@pytest.mark.parametrize(
    ("if_range", "status"),
    [('"v1"', 206), ('"v0"', 200), ('W/"v1"', 200), (LM, 206), ("Thu, 02 Jan 2020 00:00:00 GMT", 200)],
)
def test_if_range(http, stored, if_range, status):
    """RFC 9110 §13.1.5: the range is sent only when If-Range matches the current representation
    (strong comparison for entity-tags, an exact strong Last-Modified for dates); else all of it."""
    answer = http.get(stored, headers={"Range": "bytes=0-1", "If-Range": if_range})
    assert answer.status_code == status
    assert answer.text == ("01" if status == 206 else BODY)


def test_range_applies_to_get_only(http, stored):
    """RFC 9110 §14.2: "A server MUST ignore a Range header field received with a request method
    that is unrecognized or for which range handling is not defined" -- HEAD is answered whole."""
    answer = http.head(stored, headers={"Range": "bytes=0-1"})
    assert (answer.status_code, answer.headers["content-length"]) == (200, "11")


def test_a_304_takes_precedence_over_a_range(http, stored):
    """RFC 9110 §13.2.2: If-None-Match is evaluated before Range."""
    assert http.get(stored, headers={"Range": "bytes=0-1", "If-None-Match": '"v1"'}).status_code == 304


def test_a_range_request_on_a_miss_goes_to_the_origin_as_it_is(origin, rfc_proxy, http, path):
    """RFC 9111 §3.3: the origin's 206 is passed on and not stored as a complete response; the
    Range reached the origin."""
    origin.route(path, status=206, headers=[*FRESH, ("Content-Range", "bytes 4-9/10")], body="01234")
    partial = http.get(f"{rfc_proxy.url}{path}", headers={"Range": "bytes=-5"})
    assert (partial.status_code, partial.text) == (206, "01234")
    assert request_header(origin.requests(path)[0], "range") == "bytes=-5"
    origin.route(path, headers=FRESH, body=BODY)
    assert http.get(f"{rfc_proxy.url}{path}").headers["x-cache"] == "MISS"


def test_a_whole_response_to_a_range_request_is_stored(origin, rfc_proxy, http, path):
    """RFC 9110 §14.2: an origin may ignore Range and send the whole 200, which is then stored like
    any other, and later ranges are served from it."""
    origin.route(path, headers=FRESH, body=BODY)
    whole = http.get(f"{rfc_proxy.url}{path}", headers={"Range": "bytes=0-1"})
    assert (whole.status_code, whole.text) == (200, BODY)
    assert http.get(f"{rfc_proxy.url}{path}", headers={"Range": "bytes=0-1"}).status_code == 206


def test_ranges_of_other_statuses_are_not_served(origin, rfc_proxy, http, path):
    """RFC 9110 §14.2: range handling is defined for the selected representation of a 200; a stored
    404 is sent whole."""
    origin.route(path, status=404, headers=[("Cache-Control", "max-age=3600")], body="not here")
    http.get(f"{rfc_proxy.url}{path}")
    answer = http.get(f"{rfc_proxy.url}{path}", headers={"Range": "bytes=0-1"})
    assert (answer.status_code, answer.text) == (404, "not here")
