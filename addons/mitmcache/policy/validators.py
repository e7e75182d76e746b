"""Validators and conditional requests answered from the cache (RFC 9110 §8.8, §13).

A stored response without an ETag gets a strong one made from its body, so that every cached
response can be revalidated by clients with ``If-None-Match``.
"""

import binascii
import hashlib
import re
from collections.abc import Sequence

from .dates import parse_http_date

_ENTITY_TAG = re.compile(r'(W/)?("[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|$)')
_SEPARATORS = re.compile(r"[ \t,]*")
_URLSAFE = bytes.maketrans(b"+/", b"-_")  # base64's URL- and filename-safe alphabet (RFC 4648 §5)
# More entity-tags than anyone sends for one resource; the rest of a longer list is not read.
MAX_ENTITY_TAGS = 128


def generate_etag(body: bytes) -> str:
    """A strong entity-tag (RFC 9110 §8.8.3) that changes whenever the body's bytes change."""
    digest = hashlib.blake2b(body, digest_size=16).digest()
    # base64.urlsafe_b64encode's bytes, without its two Python-level calls: every stored miss
    # without an upstream ETag makes one.
    return '"' + binascii.b2a_base64(digest, newline=False).translate(_URLSAFE).rstrip(b"=").decode() + '"'


def parse_entity_tags(value: str, limit: int = MAX_ENTITY_TAGS) -> list[str] | None:
    """The opaque-tags (quotes kept, ``W/`` dropped) of an ``If-None-Match`` list, ``["*"]``
    for ``*``, or None when the field is malformed and must be ignored (RFC 9110 §13.1.2).

    One pass over the value, which is never copied (a field of a million empty tags used to be
    copied once per tag), and at most ``limit`` tags are read: a client that lists more is
    answered as if its tag were not among them, with the full response."""
    stripped = value.strip()
    if stripped == "*":
        return ["*"]
    tags: list[str] = []
    pos, end = 0, len(value)
    while len(tags) < limit:
        pos = _SEPARATORS.match(value, pos).end()  # empty list elements are ignored (RFC 9110 §5.6.1)
        if pos == end:
            break
        match = _ENTITY_TAG.match(value, pos)
        if match is None:
            return None
        tags.append(match.group(2))
        pos = match.end()
    return tags or None


def opaque_tag(etag: str) -> str:
    """The tag without its weakness indicator, for weak comparison (RFC 9110 §8.8.3.2)."""
    return etag.removeprefix("W/")


def none_match(if_none_match: list[str], etag: str) -> bool | None:
    """Evaluate ``If-None-Match`` (RFC 9110 §13.1.2) against the stored ETag.

    Returns True when the condition holds (serve the full response), False when it fails (304),
    None when the field is malformed (ignore it). Comparison is weak: ``W/"a"`` matches ``"a"``.
    """
    tags: list[str] = []
    for line in if_none_match:
        parsed = parse_entity_tags(line, MAX_ENTITY_TAGS - len(tags))
        if parsed is None:
            return None
        tags.extend(parsed)
        if len(tags) >= MAX_ENTITY_TAGS:
            break
    if "*" in tags:
        return False
    return opaque_tag(etag) not in tags


def modified_since(if_modified_since: str, last_modified: float) -> bool | None:
    """Evaluate ``If-Modified-Since`` (RFC 9110 §13.1.3): True when modified after the date,
    None when the date is invalid (ignore the field)."""
    since = parse_http_date(if_modified_since)
    if since is None:
        return None
    return last_modified > since


def answer_not_modified(
    if_none_match: Sequence[str],
    if_modified_since: str | None,
    etag: str,
    last_modified: float,
) -> bool:
    """Whether a GET/HEAD may be answered with 304 (RFC 9110 §13.2.2 precedence).

    If-None-Match, when present and well-formed, decides alone; only without it is
    If-Modified-Since evaluated. An unconditional request never gets a 304.
    """
    if if_none_match:
        result = none_match(if_none_match, etag)
        if result is not None:
            return not result
    if if_modified_since:
        result = modified_since(if_modified_since, last_modified)
        if result is not None:
            return not result
    return False


# Request fields a cache does not evaluate (RFC 9111 §4.3.2): they are for the origin.
ORIGIN_PRECONDITIONS = frozenset({b"if-match", b"if-unmodified-since"})


def stored_not_modified(
    if_none_match: Sequence[str],
    if_modified_since: str | None,
    etag: str,
    last_modified: str | None,
    date: float,
) -> bool:
    """Whether a client's own conditions let a cache answer 304 from a stored response (RFC 9110
    §13.2.2); If-Modified-Since compares with Last-Modified, else the stored Date (RFC 9111 §4.3.2)."""
    if not if_none_match and not if_modified_since:
        return False
    modified = parse_http_date(last_modified)
    return answer_not_modified(
        list(if_none_match), if_modified_since, etag, modified if modified is not None else date
    )
