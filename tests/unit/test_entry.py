"""What one stored response costs, and what it can be validated with."""

from dataclasses import fields

import pytest

from mitmcache.entry import ENTRY_OVERHEAD, FIELD_OVERHEAD, Meta
from tests.support.entries import stored_entry


def test_the_size_counts_the_body_the_fields_and_the_python_overhead():
    """cache_max_bytes bounds the process, not only the bytes: every entry and field has a cost."""
    entry = stored_entry(body=b"x" * 1000, fields=((b"etag", b'"e"'), (b"content-type", b"text/plain")))
    fields = len(b"etag") + len(b'"e"') + len(b"content-type") + len(b"text/plain")
    strings = (
        len(entry.key) + len(entry.url) + len(entry.host) + len(entry.etag) + len(entry.last_modified or "")
    )
    varied = sum(len(n) + len(v or "") + FIELD_OVERHEAD for n, v in entry.vary)
    assert entry.size == 1000 + fields + 2 * FIELD_OVERHEAD + strings + varied + ENTRY_OVERHEAD


def test_the_size_counts_a_long_url_and_long_vary_values():
    """Random long URLs (and varied-on values) must not grow the process past cache_max_bytes."""
    short = stored_entry()
    long_url = "http://example/" + "u" * 10_000
    long = stored_entry(long_url, vary=(("accept-language", "x" * 5000),))
    assert long.size - short.size >= 2 * 10_000 + 5000


def test_a_given_size_is_kept():
    assert stored_entry(size=42).size == 42


@pytest.mark.parametrize(
    ("upstream_etag", "last_modified", "validators"),
    [
        (None, None, False),  # our generated ETag means nothing to the upstream
        ('"v1"', None, True),
        (None, "Mon, 01 Jan 2024 00:00:00 GMT", True),
    ],
)
def test_validators_are_the_upstreams_own(upstream_etag, last_modified, validators):
    """RFC 9111 §4.3.1: a conditional request needs a validator the origin issued."""
    entry = stored_entry(upstream_etag=upstream_etag, last_modified=last_modified)
    assert entry.has_validators is validators


def test_an_entry_cannot_be_changed_in_place():
    """Stores hand out the entries they hold: nobody may change one under them."""
    entry = stored_entry(body=b"old")
    with pytest.raises(AttributeError):
        entry.body = b"new"  # type: ignore[misc]
    assert entry.body == b"old"


def test_every_new_entry_gets_a_version_of_its_own():
    assert stored_entry().version != stored_entry().version


def test_a_changed_entry_keeps_its_version_and_counts_its_size_again_when_asked():
    entry = stored_entry(body=b"x" * 100)
    resized = entry.changed(body=b"x" * 10, size=0)
    kept = entry.changed(lifetime=5.0)
    assert (resized.version, kept.version) == (entry.version, entry.version)
    assert entry.size - resized.size == 90
    assert (kept.size, kept.lifetime) == (entry.size, 5.0)


def test_a_copy_of_the_metadata_has_every_field_and_is_its_own():
    meta = Meta(stored_at=1.0, last_access=2.0, hits=3, refresh_failures=4, retry_at=5.0, stale_at=6.0)
    copy = meta.copy()
    assert copy == meta and copy is not meta
    assert [getattr(copy, f.name) for f in fields(Meta)] == [
        1.0,
        2.0,
        3,
        4,
        5.0,
        6.0,
    ]  # a new field fails here
