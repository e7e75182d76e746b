"""Content codings the cache applies and negotiates (RFC 9110 §8.4, §12.5.3): which responses it
may compress, what a client's ``Accept-Encoding`` accepts, the normalised ``Accept-Encoding`` that
selects a variant, and the validators of a coded representation.

Pure functions: the compressing and decoding themselves are in ``compression.py``.
"""

from collections.abc import Sequence
from enum import StrEnum
from functools import lru_cache

from . import cache_control
from .fields import Fields, get_all, get_first, split_list


class Coding(StrEnum):
    """The content codings the cache can produce and undo (the ``cache_compress`` choices)."""

    GZIP = "gzip"
    BR = "br"
    ZSTD = "zstd"


# RFC 9110 §8.4.1.3: "x-gzip" is an alias of "gzip" that recipients SHOULD treat as equivalent.
_ALIASES = {"x-gzip": "gzip"}
# Media types that compress well beyond the text/* family: JSON, XML, JavaScript, SVG and the
# structured-syntax suffixes +json and +xml (RFC 6839), and a few text formats registered elsewhere.
_COMPRESSIBLE_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/ecmascript",
        "application/x-javascript",
        "application/x-ndjson",
        "application/ld+json",
        "application/graphql-response+json",
        "application/manifest+json",
        "image/svg+xml",
    }
)
_COMPRESSIBLE_SUFFIXES = ("+json", "+xml")


def compressible_type(content_type: str | None) -> bool:
    """Whether a media type is text-like enough to be worth compressing (``text/*``, JSON, XML,
    JavaScript, SVG and the ``+json``/``+xml`` families); parameters such as charset are ignored."""
    if content_type is None:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return (
        media_type.startswith("text/")
        or media_type in _COMPRESSIBLE_TYPES
        or media_type.endswith(_COMPRESSIBLE_SUFFIXES)
    )


def may_compress(fields: Fields, body_length: int, min_bytes: int) -> bool:
    """Whether the cache may store a response compressed: sent uncompressed (no Content-Encoding
    but ``identity``), of a compressible type, at least ``min_bytes`` long, and without
    ``Cache-Control: no-transform`` (RFC 9110 §7.7: an intermediary MUST NOT transform it)."""
    if body_length < min_bytes or body_length == 0:
        return False
    if not compressible_type(get_first(fields, "content-type")):  # first: one scan refuses binary bodies
        return False
    encodings = [e.lower() for e in split_list(get_all(fields, "content-encoding"))]
    if any(e != "identity" for e in encodings):
        return False
    if get_all(fields, "content-range"):
        return False
    return "no-transform" not in cache_control.parse(get_all(fields, "cache-control"))


def _quality(parameters: list[str]) -> float:
    """The ``q`` weight of an ``Accept-Encoding`` member (RFC 9110 §12.4.2); 1 when absent, 0 when
    malformed (a member that cannot be read is not taken as acceptance)."""
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


@lru_cache(maxsize=512)
def _weights(value: str) -> dict[str, float]:
    """Each coding of an ``Accept-Encoding`` value and its weight (lower case, aliases resolved).
    Cached by value: clients send a handful of distinct values, and a hit reads one."""
    weights: dict[str, float] = {}
    for member in split_list((value,)):
        coding, *parameters = member.split(";")
        coding = coding.strip().lower()
        coding = _ALIASES.get(coding, coding)
        if coding:
            weights[coding] = _quality(parameters)
    return weights


def accepts(accept_encoding: str, coding: str) -> bool:
    """Whether an ``Accept-Encoding`` value accepts ``coding`` (RFC 9110 §12.5.3): listed with a
    weight above 0, or covered by ``*`` and not refused by name."""
    weights = _weights(accept_encoding)
    weight = weights.get(coding)
    if weight is None:
        weight = weights.get("*", 0.0)
    return weight > 0.0


@lru_cache(maxsize=512)
def accepts_value(accept_encoding: bytes, coding: str) -> bool:
    """``accepts`` for one raw field value, cached: what a hit on a coded entry asks."""
    return accepts(accept_encoding.decode("latin-1"), coding)


def client_accepts(request_fields: Fields, coding: str) -> bool:
    """Whether a request accepts a response in ``coding``. A request without ``Accept-Encoding``
    gets identity: RFC 9110 §12.5.3 would allow any coding, but a client that says nothing may
    not be able to decode one."""
    values = get_all(request_fields, "accept-encoding")
    if not values:
        return False
    return accepts(values[0] if len(values) == 1 else ",".join(values), coding)


@lru_cache(maxsize=512)
def normalised(accept_encoding: str) -> str:
    """An ``Accept-Encoding`` value reduced to what the cache can serve: the codings of ``Coding``
    it accepts, sorted, and identity (``"br,gzip,identity"``; ``"identity"`` for none). Variants
    are selected by it, and the upstream is sent it, so that the upstream never chooses a coding
    outside it and clients that accept the same codings share one variant whatever else they
    list, in whatever order, case, spacing or weights."""
    servable = sorted(c.value for c in Coding if accepts(accept_encoding, c.value))
    return ",".join((*servable, "identity"))


def normalise_values(values: Sequence[str]) -> str:
    """``normalised`` for the lines of a request's ``Accept-Encoding`` field."""
    return normalised(",".join(values))


def upstream_accept_encoding(fields: Fields) -> list[tuple[bytes, bytes]]:
    """Request fields as the cache sends them upstream: ``Accept-Encoding`` (when present) as one
    normalised line, so that the upstream's choice of coding is one that selects this variant."""
    values = get_all(fields, "accept-encoding")
    if not values:
        return list(fields)
    kept = [(k, v) for k, v in fields if k.lower() != b"accept-encoding"]
    return [*kept, (b"accept-encoding", normalise_values(values).encode())]


def coded_etag(etag: str, coding: str) -> str:
    """The entity-tag of the representation the cache coded from the one tagged ``etag``: the same
    opaque-tag with ``-coding`` appended inside the quotes (``"abc"`` gives ``"abc-gzip"``), weak
    when ``etag`` is weak. Distinct from the identity one, as RFC 9110 §8.8.3 requires of
    representations whose bytes differ, and derived from it alone, so every process and every
    refresh that codes the same response names it the same."""
    weak = etag.startswith("W/")
    opaque = etag.removeprefix("W/")
    derived = (
        f'{opaque[:-1]}-{coding}"' if opaque.endswith('"') and len(opaque) >= 2 else f'"{opaque}-{coding}"'
    )
    return f"W/{derived}" if weak else derived
