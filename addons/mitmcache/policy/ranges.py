"""Range requests answered from a complete stored response (RFC 9110 §14, §13.1.5).

The cache stores complete responses only (a 206 is never stored, RFC 9111 §3.3), and answers a
``Range`` request for a stored ``200`` itself: one satisfiable range gives a ``206`` with
``Content-Range``, several give a ``multipart/byteranges`` 206 (§14.6), none a ``416``. What it
does not want to serve as ranges it serves whole, which §14.2 allows ("A server MAY ignore the
Range header field"): ranges in another unit, a malformed range set, overlapping or too many
ranges (§14.2 warns about them), several ranges of a content-coded body, and a failed
``If-Range``.
"""

from dataclasses import dataclass
from enum import Enum
from itertools import pairwise

from .dates import parse_http_date
from .numbers import capped
from .validators import parse_entity_tags

MAX_RANGES = 16  # more ranges than this in one request are answered with the whole response
# Larger than any body: a position beyond it means the same as this one (past the end).
MAX_POSITION = 2**63 - 1
LAST_MODIFIED_STRONG_AFTER = 60.0  # RFC 9110 §8.8.2.2: a Date this long after Last-Modified


class Kind(Enum):
    FULL = "full"  # ignore Range: the whole response (200)
    PARTIAL = "partial"  # 206 with the ranges
    UNSATISFIABLE = "unsatisfiable"  # 416


@dataclass(frozen=True, slots=True)
class ByteRange:
    first: int
    last: int  # inclusive

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, complete_length: int) -> str:
        return f"bytes {self.first}-{self.last}/{complete_length}"


@dataclass(frozen=True, slots=True)
class Plan:
    kind: Kind
    ranges: tuple[ByteRange, ...] = ()


FULL = Plan(Kind.FULL)


def plan(
    range_values: list[str],
    if_range: str | None,
    *,
    length: int,
    etag: str,
    last_modified: str | None,
    date: float,
    multipart_allowed: bool = True,
) -> Plan:
    """How to answer a GET with ``Range`` from a stored 200 of ``length`` bytes."""
    if not range_values:
        return FULL
    if if_range is not None and not if_range_holds(if_range, etag, last_modified, date):
        return FULL  # §13.1.5: "the recipient ... MUST ignore the Range header field"
    specs = parse_range(", ".join(range_values) if len(range_values) > 1 else range_values[0])
    if specs is None:
        return FULL
    ranges = satisfiable(specs, length)
    if not ranges:
        return Plan(Kind.UNSATISFIABLE)  # §15.5.17
    if len(ranges) == 1:
        return Plan(Kind.PARTIAL, tuple(ranges))
    if not multipart_allowed or len(ranges) > MAX_RANGES or _overlapping(ranges):
        return FULL
    return Plan(Kind.PARTIAL, tuple(ranges))


def parse_range(value: str) -> list[tuple[int | None, int | None]] | None:
    """``Range: bytes=0-1, 5-, -3`` as ``[(0, 1), (5, None), (None, 3)]``; None when the field is
    not a valid bytes range set (RFC 9110 §14.1.1, §14.2: another unit, bad syntax, or a
    last-pos before its first-pos), so that it is ignored."""
    unit, sep, range_set = value.strip().partition("=")
    if not sep or unit.lower() != "bytes":
        return None
    specs: list[tuple[int | None, int | None]] = []
    for member in range_set.split(","):
        spec = member.strip(" \t")
        if not spec:
            continue  # empty list elements are allowed (RFC 9110 §5.6.1)
        first, dash, last = spec.partition("-")
        if not dash or not (_digits(first) or _digits(last)) or (first and not _digits(first)):
            return None
        if last and not _digits(last):
            return None
        if not first:
            specs.append((None, _position(last)))  # suffix-range
        elif not last:
            specs.append((_position(first), None))
        elif _position(last) < _position(first):
            return None
        else:
            specs.append((_position(first), _position(last)))
    return specs or None


def satisfiable(specs: list[tuple[int | None, int | None]], length: int) -> list[ByteRange]:
    """The satisfiable ranges, clipped to the representation (§14.1.1): a first-pos beyond the end,
    or a zero-length suffix, is unsatisfiable."""
    ranges: list[ByteRange] = []
    for first, last in specs:
        if first is None:
            assert last is not None
            if last > 0 and length > 0:
                ranges.append(ByteRange(max(0, length - last), length - 1))
        elif first < length:
            ranges.append(ByteRange(first, length - 1 if last is None else min(last, length - 1)))
    return ranges


def if_range_holds(if_range: str, etag: str, last_modified: str | None, date: float) -> bool:
    """RFC 9110 §13.1.5: an entity-tag must match the current one by strong comparison; a date must
    equal a strong Last-Modified exactly. Anything else (a weak tag, a malformed value) fails."""
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        tags = parse_entity_tags(value)
        if tags is None or len(tags) != 1 or value.startswith("W/") or etag.startswith("W/"):
            return False
        return tags[0] == etag
    since = parse_http_date(value)
    modified = parse_http_date(last_modified)
    if since is None or modified is None:
        return False
    return since == modified and date - modified >= LAST_MODIFIED_STRONG_AFTER


def _position(digits: str) -> int:
    return capped(digits, MAX_POSITION)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _overlapping(ranges: list[ByteRange]) -> bool:
    ordered = sorted(ranges, key=lambda r: r.first)
    return any(b.first <= a.last for a, b in pairwise(ordered))
