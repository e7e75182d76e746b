"""What a purge, refresh or entries listing names, and the control plane's parameters.

A path (``/api/items?page=2``) matches that URL under every host the cache holds it for (a
reverse proxy has one upstream, but ``keep_host_header`` keys by the client's Host); a full URL
(``http://127.0.0.1:8000/api/items``, as ``entries`` lists keys) matches under that host only.
Query parameters are sorted the way cache keys are.
"""

import base64
import binascii
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .entry import Entry
from .policy.key import primary_key
from .policy.numbers import capped
from .policy.tags import parse_tag_list

DEFAULT_PAGE = 100  # entries listed per page, unless asked otherwise
MAX_PAGE = 1000


class BadRequest(ValueError):
    """A control request that cannot be carried out as asked (answered 400)."""


def split_key(key: str) -> tuple[str, str]:
    """``http://host:80/a?x=1`` -> (``http://host:80``, ``/a?x=1``)."""
    start = key.find("://")
    slash = key.find("/", start + 3 if start >= 0 else 0)
    return (key, "/") if slash < 0 else (key[:slash], key[slash:])


@dataclass(frozen=True, slots=True)
class Target:
    """One URL with all its variants, or every URL starting with a prefix."""

    value: str  # a path (matched under every host) or a key / key prefix
    prefix: bool

    @property
    def any_host(self) -> bool:
        return self.value.startswith("/")

    @classmethod
    def parse(cls, raw: str, *, prefix: bool) -> "Target":
        raw = raw.strip()
        if raw.startswith("/"):
            return cls(raw if prefix else split_key(primary_key("", "", raw))[1], prefix)
        parts = urlsplit(raw)
        if parts.scheme in ("http", "https") and parts.netloc:
            path = raw[len(parts.scheme) + 3 + len(parts.netloc) :] or "/"
            if prefix:
                return cls(f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}", True)
            return cls(primary_key(parts.scheme, parts.netloc, path.partition("#")[0]), False)
        raise BadRequest(
            f"expected a path such as /api/items or a URL such as http://host/api/items, got {raw!r}"
        )

    def matches(self, key: str) -> bool:
        subject = split_key(key)[1] if self.any_host else key
        return subject.startswith(self.value) if self.prefix else subject == self.value

    def describe(self) -> dict[str, str]:
        return {"prefix" if self.prefix else "url": self.value}


type Position = tuple[str, tuple[tuple[str, bool, str], ...]]


def position(key: str, vary: Sequence[Sequence[str | None]]) -> Position:
    """Where an entry sorts in ``entries``: by key, then by its Vary values, an absent field
    (None) before any present one -- None and a string cannot be compared."""
    return key, tuple(
        (str(name), value is not None, "" if value is None else str(value)) for name, value in vary
    )


def cursor_of(entry: Entry) -> str:
    raw = json.dumps([entry.key, [list(pair) for pair in entry.vary]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def after_cursor(cursor: str) -> Position:
    try:
        key, vary = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return position(str(key), [(name, value) for name, value in vary])
    except (ValueError, TypeError, binascii.Error):
        raise BadRequest(f"invalid cursor {cursor!r}") from None


def count_param(params: Mapping[str, str], name: str, default: int, maximum: int | None = None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()):  # "²".isdigit() is true, and int() refuses it
        raise BadRequest(f"{name} must be a whole number >= 0, got {raw!r}")
    return capped(raw, maximum if maximum is not None else sys.maxsize)


def tags_param(query_tags: list[str], params: Mapping[str, str]) -> tuple[str, ...]:
    """The tags a purge or refresh names: ``tag=a&tag=b`` in the query, or ``"tag": "a b"`` in a
    JSON or form body (tags separated by spaces or commas); empty when it names none."""
    values = [*query_tags, *([params["tag"]] if params.get("tag") and not query_tags else [])]
    try:
        return parse_tag_list(values)
    except ValueError as e:
        raise BadRequest(str(e)) from None


def flag_param(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def target_param(params: Mapping[str, str]) -> Target:
    url, prefix = params.get("url"), params.get("prefix")
    if bool(url) == bool(prefix):
        raise BadRequest('give either "url" (one URL, every variant) or "prefix" (every URL under it)')
    return Target.parse(url or prefix or "", prefix=bool(prefix))
