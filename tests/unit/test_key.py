"""Cache keys: the primary key (RFC 9111 §2) and the secondary key of Vary (§4.1)."""

import pytest

from mitmcache.policy.key import matches, normalise, primary_key, secondary_key, vary_names


def fields(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


def key(path: str, *, scheme: str = "http", authority: str = "example.com") -> str:
    return primary_key(scheme, authority, path)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/p", "/p", id="no query"),
        pytest.param("", "/", id="empty path"),
        pytest.param("/p?", "/p", id="empty query"),
        pytest.param("/p?b=2&a=1", "/p?a=1&b=2", id="sorted by name"),
        pytest.param("/p?tag=y&a=1&tag=x", "/p?a=1&tag=y&tag=x", id="repeated names keep their order"),
        pytest.param("/p?b&a=1", "/p?a=1&b", id="names without values"),
        pytest.param("/p?a=1&&b=2&", "/p?a=1&b=2", id="empty parameters dropped"),
        pytest.param("/p?q=a%20b", "/p?q=a%20b", id="percent-encoding kept"),
        pytest.param("/p?q=a+b", "/p?q=a+b", id="plus kept"),
        pytest.param("/Path/To?Q=1", "/Path/To?Q=1", id="path and query case kept"),
    ],
)
def test_primary_key_normalises_only_the_query_order(path, expected):
    """RFC 9111 §2: the primary cache key is the target URI; reordering parameters does not change
    what a query selects by name, but re-encoding it could merge distinct URIs."""
    assert key(path) == "http://example.com" + expected


def test_distinct_encodings_stay_distinct_keys():
    assert len({key("/p?q=a%20b"), key("/p?q=a+b"), key("/p?q=a b"), key("/p?q=a%2Fb"), key("/p?q=a/b")}) == 5


def test_repeated_names_in_another_order_are_another_resource():
    assert key("/p?tag=x&tag=y") != key("/p?tag=y&tag=x")


def test_scheme_and_host_are_case_insensitive():
    """RFC 3986 §6.2.2.1 (via RFC 9110 §4.2.3): scheme and host compare case-insensitively."""
    assert key("/a", scheme="HTTP", authority="Example.COM:8080") == "http://example.com:8080/a"
    assert key("/a", scheme="https") != key("/a", scheme="http")


@pytest.mark.parametrize(
    ("vary_lines", "expected"),
    [
        ([], ()),
        (["Accept-Encoding"], ("accept-encoding",)),
        (["Accept-Language, accept-encoding", "ACCEPT-ENCODING"], ("accept-encoding", "accept-language")),
        ([" , Origin ,"], ("origin",)),
        (["*"], None),
        (["Accept, *"], None),
        (["Accept", "*"], None),
    ],
)
def test_vary_names(vary_lines, expected):
    """RFC 9111 §4.1: Vary lists field names (case-insensitive) over all its lines; ``*`` means
    the response varies on something outside the request's fields (None: never matches)."""
    assert vary_names(vary_lines) == expected


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("accept-encoding", ["gzip, br"], ["br,gzip"]),
        ("accept-encoding", ["GZIP ,  br"], ["br", "gzip"]),
        ("accept-encoding", ["gzip;q=1.0, br"], ["br, gzip; q=1.0"]),
        ("accept-language", ["en-US, fr"], ["fr,en-us"]),
        ("accept", ["text/html, */*"], ["*/*,TEXT/HTML"]),
        ("via", ["1.1 a,  1.1  b"], ["1.1 a", "1.1 b"]),
        ("x-forwarded-for", ["10.0.0.1 ,10.0.0.2"], ["10.0.0.1", "10.0.0.2"]),
        ("x-custom", [" a b "], ["a b"]),
        ("cookie", ["a=1", "b=2"], ["a=1; b=2"]),
    ],
)
def test_equivalent_values_normalise_alike(name, a, b):
    """RFC 9111 §4.1: values may be normalised "by combining multiple field lines ... or normalizing
    both stored and presented values" in ways known to be semantically equivalent."""
    assert normalise(name, a) == normalise(name, b)


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("x-custom", ["A"], ["a"]),
        ("x-custom", ["a, b"], ["b, a"]),
        ("via", ["1.1 a, 1.1 b"], ["1.1 b, 1.1 a"]),
        ("accept-encoding", ["gzip"], ["br"]),
        ("accept-encoding", ["gzip;q=0"], ["gzip"]),
    ],
)
def test_different_values_stay_different(name, a, b):
    """RFC 9111 §4.1: only semantically equivalent values may be merged; other fields keep case
    and order."""
    assert normalise(name, a) != normalise(name, b)


VARY_LANGUAGE = ("accept-language",)


@pytest.mark.parametrize(
    ("stored_request", "new_request", "expected"),
    [
        pytest.param([("Accept-Language", "fr")], [("accept-language", "fr")], True, id="same value"),
        pytest.param([("Accept-Language", "en, fr")], [("accept-language", "fr,EN")], True, id="normalised"),
        pytest.param([("Accept-Language", "fr")], [("accept-language", "de")], False, id="other value"),
        pytest.param([], [], True, id="absent in both"),
        pytest.param([("Accept-Language", "fr")], [], False, id="absent now"),
        pytest.param([], [("accept-language", "fr")], False, id="absent before"),
        pytest.param([], [("accept-language", "")], False, id="absent is not empty"),
        pytest.param([("Accept-Language", "")], [], False, id="empty is not absent"),
        pytest.param([("x-other", "1")], [("x-other", "2")], True, id="unvaried fields ignored"),
    ],
)
def test_a_stored_variant_matches_only_the_same_selecting_values(stored_request, new_request, expected):
    """RFC 9111 §4.1: the selecting header fields must match; "If (after any normalization ...) a
    header field is absent from a request, it can only match another request if it is also absent
    there"."""
    vary = secondary_key(VARY_LANGUAGE, fields(*stored_request))
    assert matches(vary, fields(*new_request)) is expected


def test_without_vary_every_request_matches():
    """RFC 9111 §4.1: a response without Vary is selected by its primary key alone."""
    assert matches(secondary_key((), fields(("accept-language", "fr"))), fields()) is True


def test_absent_accept_encoding_differs_from_an_empty_one():
    """RFC 9110 §12.5.3: no Accept-Encoding accepts any coding, an empty one only identity, so a
    variant stored for one must not answer the other."""
    vary = secondary_key(("accept-encoding",), fields())
    assert not matches(vary, fields(("accept-encoding", "")))


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("origin", ["https://app.example,"], ["https://app.example"]),
        ("origin", ["https://app.example, https://evil.example"], ["https://app.example"]),
        ("user-agent", ["curl/8  (x)"], ["curl/8 (x)"]),
        ("x-custom", ["a, b"], ["a", "b"]),
    ],
)
def test_fields_that_are_not_lists_are_compared_as_sent(name, a, b):
    """A trailing comma or a second member does not make a non-list value equal to another one."""
    assert normalise(name, a) != normalise(name, b)
