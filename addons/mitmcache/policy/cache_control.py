"""Cache-Control parsing (RFC 9111 §5.2).

Directive names are case-insensitive; arguments may be tokens or quoted strings; unknown directives
are kept but mean nothing to us. Whitespace around ``=`` is not allowed by the grammar: such a
directive is ignored (before ``=``) or has an invalid argument (after ``=``). §4.2.1: "When there is more than one value present for a given
directive ... either the first occurrence should be used or the response should be considered
stale" -- we use the first occurrence.
"""

from collections.abc import Iterable, Mapping
from functools import lru_cache
from types import MappingProxyType

from .numbers import capped

Directives = Mapping[str, str | None]

# RFC 9111 §1.2.2: a delta-seconds value too large to represent is treated as 2^31.
DELTA_SECONDS_CAP = 2**31

# Field values parsed lately, remembered: an upstream sends the same few Cache-Control values
# with every response, and every stored miss reads one. Longer values (a client or an upstream
# can send 64 KiB of them) are parsed each time, so that what is remembered stays small.
REMEMBERED = 512
REMEMBERED_LENGTH = 256


def parse(values: Iterable[str]) -> Directives:
    """Parse every ``Cache-Control`` field line into ``{name: argument or None}``, read-only (it
    may be shared with the next response that sends the same lines)."""
    lines = tuple(values)
    if sum(map(len, lines)) > REMEMBERED_LENGTH:
        return _parse(lines)
    return _remembered(lines)


def _parse(lines: tuple[str, ...]) -> Directives:
    directives: dict[str, str | None] = {}
    for value in lines:
        for name, argument in _members(value):
            directives.setdefault(name, argument)
    return MappingProxyType(directives)


_remembered = lru_cache(maxsize=REMEMBERED)(_parse)


def _members(value: str) -> Iterable[tuple[str, str | None]]:
    """Split one field value on commas outside quoted strings."""
    i, n = 0, len(value)
    while i < n:
        j = i
        while j < n and value[j] not in ",=":
            j += 1
        raw_name = value[i:j]
        name = raw_name.strip().lower()
        argument: str | None = None
        if j < n and value[j] == "=":
            # cache-directive = token [ "=" ( token / quoted-string ) ]: no whitespace around "=".
            # A name followed by whitespace is not a directive; an argument that starts with
            # whitespace is kept as it is, so that a numeric one is invalid.
            if raw_name != raw_name.rstrip():
                name = ""
            j += 1
            if j < n and value[j] == '"':
                j, argument = _quoted(value, j)
                while j < n and value[j] != ",":
                    j += 1
            else:
                k = j
                while j < n and value[j] != ",":
                    j += 1
                argument = value[k:j].rstrip()
        if name:
            yield name, argument
        i = j + 1


def _quoted(value: str, start: int) -> tuple[int, str]:
    """Read the quoted-string at ``value[start]`` (RFC 9110 §5.6.4); return (end index, content)."""
    out: list[str] = []
    i = start + 1
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
            continue
        if c == '"':
            return i + 1, "".join(out)
        out.append(c)
        i += 1
    return i, "".join(out)


def delta_seconds(directives: Directives, name: str) -> int | None:
    """The directive's delta-seconds argument (RFC 9111 §1.2.2), or None when absent or invalid.

    Only ``1*DIGIT`` is valid: negative and fractional values are invalid. The quoted form is
    accepted ("max-age=\"5\"" is sent by some origins) since recipients are not told to reject it.
    """
    if name not in directives:
        return None
    argument = directives[name]
    if argument is None or not argument.isascii() or not argument.isdigit():
        return None
    return capped(argument, DELTA_SECONDS_CAP)


def field_names(directives: Directives, name: str) -> frozenset[str] | None:
    """The field-name list of a qualified ``no-cache``/``private`` (RFC 9111 §5.2.2.4, §5.2.2.7).

    Returns None when the directive is absent, an empty set when it is unqualified.
    """
    if name not in directives:
        return None
    argument = directives[name]
    if not argument:
        return frozenset()
    return frozenset(part.strip().lower() for part in argument.split(",") if part.strip())
