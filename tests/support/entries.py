"""A stored entry for unit tests, built directly (not through ``admit``): a fresh 200 for 60 s."""

from typing import Any

from mitmcache.entry import Entry


def stored_entry(key: str = "http://example.com/a", **fields: Any) -> Entry:
    """An entry for ``key`` with plain defaults; any ``Entry`` field can be given."""
    values: dict[str, Any] = {
        "key": key,
        "url": key,
        "host": "example.com",
        "vary": (),
        "status": 200,
        "reason": b"OK",
        "fields": (),
        "body": b"",
        "etag": '"e"',
        "upstream_etag": None,
        "last_modified": None,
        "date": 0.0,
        "response_time": 0.0,
        "initial_age": 0.0,
        "lifetime": 60.0,
        "lifetime_source": "max-age",
        "no_cache": False,
        "must_revalidate": False,
        "stale_while_revalidate": 0.0,
        "stale_if_error": 0.0,
    }
    values.update(fields)
    return Entry.new(**values)
