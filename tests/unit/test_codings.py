"""Content codings: what may be compressed, what a client accepts, variant normalisation, derived
ETags (policy.codings)."""

import pytest

from mitmcache.policy.codings import (
    accepts,
    client_accepts,
    coded_etag,
    compressible_type,
    may_compress,
    normalised,
    upstream_accept_encoding,
)

JSON = [(b"content-type", b"application/json")]


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html; charset=utf-8",
        "text/plain",
        "application/json",
        "APPLICATION/JSON",
        "application/xml",
        "application/javascript",
        "image/svg+xml",
        "application/problem+json",
        "application/atom+xml",
        "application/vnd.api+json; charset=utf-8",
    ],
)
def test_text_like_types_are_compressible(content_type):
    assert compressible_type(content_type)


@pytest.mark.parametrize(
    "content_type", [None, "image/png", "application/octet-stream", "video/mp4", "font/woff2"]
)
def test_binary_and_unknown_types_are_not_compressible(content_type):
    assert not compressible_type(content_type)


def test_an_uncompressed_json_body_at_the_minimum_may_be_compressed():
    assert may_compress(JSON, 512, 512)


def test_a_body_below_the_minimum_is_not_compressed():
    assert not may_compress(JSON, 511, 512)


def test_an_empty_body_is_never_compressed():
    assert not may_compress(JSON, 0, 0)


def test_a_body_the_upstream_encoded_is_not_compressed_again():
    assert not may_compress([*JSON, (b"content-encoding", b"br")], 4096, 512)


def test_an_identity_content_encoding_still_counts_as_uncompressed():
    assert may_compress([*JSON, (b"Content-Encoding", b"identity")], 4096, 512)


def test_no_transform_forbids_compressing():
    assert not may_compress([*JSON, (b"cache-control", b"max-age=60, No-Transform")], 4096, 512)


def test_a_type_that_does_not_compress_is_left_alone():
    assert not may_compress([(b"content-type", b"image/jpeg")], 4096, 512)


@pytest.mark.parametrize(
    ("value", "coding", "expected"),
    [
        ("gzip", "gzip", True),
        ("gzip, deflate, br", "br", True),
        ("GZIP", "gzip", True),
        ("x-gzip", "gzip", True),
        ("gzip;q=0", "gzip", False),
        ("gzip; q=0.001", "gzip", True),
        ("br;q=1.0, gzip;q=0", "gzip", False),
        ("*", "zstd", True),
        ("*;q=0", "gzip", False),
        ("*, gzip;q=0", "gzip", False),
        ("identity", "gzip", False),
        ("", "gzip", False),
        ("gzip;q=abc", "gzip", False),
        ("deflate", "gzip", False),
    ],
)
def test_accept_encoding_accepts_a_coding_listed_with_a_positive_weight(value, coding, expected):
    assert accepts(value, coding) is expected


def test_a_request_without_accept_encoding_gets_identity():
    assert not client_accepts([(b"host", b"a")], "gzip")


def test_repeated_accept_encoding_lines_are_read_together():
    assert client_accepts([(b"accept-encoding", b"deflate"), (b"Accept-Encoding", b"gzip")], "gzip")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gzip", "gzip,identity"),
        ("gzip, deflate", "gzip,identity"),
        ("deflate, GZIP;q=0.5", "gzip,identity"),
        ("br, gzip, zstd", "br,gzip,zstd,identity"),
        ("zstd, br, gzip", "br,gzip,zstd,identity"),
        ("*", "br,gzip,zstd,identity"),
        ("deflate", "identity"),
        ("identity", "identity"),
        ("gzip;q=0", "identity"),
        ("", "identity"),
    ],
)
def test_accept_encoding_is_normalised_to_the_codings_the_cache_can_serve(value, expected):
    assert normalised(value) == expected


def test_the_upstream_is_sent_the_normalised_accept_encoding_once():
    fields = [(b"host", b"a"), (b"Accept-Encoding", b"gzip, deflate"), (b"accept-encoding", b"br")]
    assert upstream_accept_encoding(fields) == [(b"host", b"a"), (b"accept-encoding", b"br,gzip,identity")]


def test_a_request_without_accept_encoding_goes_upstream_without_one():
    assert upstream_accept_encoding([(b"host", b"a")]) == [(b"host", b"a")]


@pytest.mark.parametrize(
    ("etag", "coding", "expected"),
    [
        ('"abc"', "gzip", '"abc-gzip"'),
        ('W/"abc"', "br", 'W/"abc-br"'),
        ('""', "zstd", '"-zstd"'),
    ],
)
def test_a_coded_representation_has_an_etag_derived_from_the_identity_one(etag, coding, expected):
    assert coded_etag(etag, coding) == expected
