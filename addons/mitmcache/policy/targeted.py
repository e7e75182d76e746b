"""Targeted cache control (RFC 9213): fields such as ``CDN-Cache-Control`` that speak to one class of
caches and, for the caches they target, take the place of ``Cache-Control`` and ``Expires``.

RFC 9213 §2.2: a cache "MUST select the first (in target list order) field with a valid, non-empty
value and use its value to determine the caching policy for the response, and MUST ignore the
Cache-Control and Expires header fields in that response, unless no valid, non-empty value is
available from the listed header fields". §2.1: targeted fields are Structured Field Dictionaries
(RFC 8941); "if a targeted field in a given response is empty, or a parsing error is encountered,
that field SHOULD be ignored by the cache". A known directive whose value has the wrong type (a
String for ``max-age``) makes the field invalid too, so that a malformed field never widens what a
``Cache-Control`` it replaces allowed.

The fields are only read here, never removed: they still reach the client.
"""

import string
from collections.abc import Mapping, Sequence

from .cache_control import Directives

# Directives whose value is delta-seconds (an sf-integer), and those that take no value (true).
_INTEGER_DIRECTIVES = frozenset({"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"})
_FLAG_DIRECTIVES = frozenset(
    {"no-store", "public", "must-revalidate", "proxy-revalidate", "immutable", "must-understand"}
)
# Directives that are true, or carry a String of field names (RFC 9111 §5.2.2.4, §5.2.2.7).
_FIELD_LIST_DIRECTIVES = frozenset({"no-cache", "private"})


class InvalidField(ValueError):
    """Not a Structured Field Dictionary (RFC 8941 §4.2.2), or a known directive of the wrong type."""


def select(response: Mapping[str, Sequence[str]], targets: Sequence[str]) -> Directives | None:
    """The directives of the first targeted field (in ``targets`` order) with a valid, non-empty
    value; None when there is none, so that ``Cache-Control`` and ``Expires`` apply. ``response``:
    the response's field values by lower-case name (``fields.by_name``), which its caller has
    already built, so that no target costs another pass over the fields."""
    for name in targets:
        lines = response.get(name)
        if not lines:
            continue
        try:
            directives = directives_of(", ".join(lines))
        except InvalidField:
            continue
        if directives:
            return directives
    return None


def directives_of(value: str) -> Directives:
    """A targeted field value as cache directives, in the form ``cache_control.parse`` gives."""
    directives: dict[str, str | None] = {}
    for name, item in parse_dictionary(value).items():
        if item is False:  # ?0: as if absent
            continue
        if name in _INTEGER_DIRECTIVES:
            if not isinstance(item, int) or isinstance(item, bool):
                raise InvalidField(f"{name} must be an Integer")
            directives[name] = str(item)
        elif name in _FLAG_DIRECTIVES:
            if item is not True:
                raise InvalidField(f"{name} takes no value")
            directives[name] = None
        elif name in _FIELD_LIST_DIRECTIVES:
            if item is True:
                directives[name] = None
            elif isinstance(item, _String):
                directives[name] = str(item)
            else:
                raise InvalidField(f"{name} takes a String of field names")
        elif item is True:
            directives[name] = None
        elif isinstance(item, int | float | str):  # unknown directives are kept, as in Cache-Control
            directives[name] = str(item)
    return directives


# ---- RFC 8941 Dictionary parsing (§4.2.2), values only: parameters are read and dropped ----


class _String(str):
    """An sf-string, told apart from an sf-token (plain ``str``)."""


class _Bytes(bytes):
    pass


class _InnerList(tuple):
    pass


Item = bool | int | float | str | bytes | tuple

_LCALPHA = frozenset(string.ascii_lowercase)
_KEY_CHARS = _LCALPHA | frozenset(string.digits + "_-.*")
_TCHAR = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
_TOKEN_CHARS = _TCHAR | frozenset(":/")
_BASE64 = frozenset(string.ascii_letters + string.digits + "+/=")


def parse_dictionary(value: str) -> dict[str, Item]:
    """RFC 8941 §4.2.2: member values (True for a bare key); a later duplicate key wins."""
    parser = _Parser(value)
    parser.skip(" ")
    members: dict[str, Item] = {}
    while not parser.done():
        key = parser.key()
        if parser.peek() == "=":
            parser.pos += 1
            members[key] = parser.item_or_inner_list()
        else:
            members[key] = True
            parser.parameters()
        parser.skip(" \t")
        if parser.done():
            break
        if parser.take() != ",":
            raise InvalidField("expected a comma between members")
        parser.skip(" \t")
        if parser.done():
            raise InvalidField("trailing comma")
    return members


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text.rstrip(" ")
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        char = self.peek()
        self.pos += 1
        return char

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.pos += 1

    def key(self) -> str:
        start = self.pos
        if self.peek() not in _LCALPHA and self.peek() != "*":
            raise InvalidField("a key starts with a lowercase letter or *")
        while self.peek() and self.peek() in _KEY_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def item_or_inner_list(self) -> Item:
        if self.peek() == "(":
            return self.inner_list()
        return self.item()

    def inner_list(self) -> _InnerList:
        self.pos += 1
        items: list[Item] = []
        while not self.done():
            self.skip(" ")
            if self.peek() == ")":
                self.pos += 1
                self.parameters()
                return _InnerList(items)
            items.append(self.item())
            if self.peek() not in (" ", ")"):
                raise InvalidField("inner list items are separated by spaces")
        raise InvalidField("unterminated inner list")

    def item(self) -> Item:
        value = self.bare_item()
        self.parameters()
        return value

    def parameters(self) -> None:
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            self.key()
            if self.peek() == "=":
                self.pos += 1
                self.bare_item()

    def bare_item(self) -> Item:
        char = self.peek()
        if char == "-" or char.isdigit():
            return self.number()
        if char == '"':
            return self.string()
        if char == "*" or (char.isascii() and char.isalpha()):
            return self.token()
        if char == ":":
            return self.byte_sequence()
        if char == "?":
            return self.boolean()
        raise InvalidField(f"unexpected {char!r}")

    def number(self) -> int | float:
        start = self.pos
        if self.peek() == "-":
            self.pos += 1
        digits_start = self.pos
        while self.peek().isascii() and self.peek().isdigit():
            self.pos += 1
        integer = self.text[digits_start : self.pos]
        if not integer:
            raise InvalidField("a number needs digits")
        if self.peek() != ".":
            if len(integer) > 15:
                raise InvalidField("integer too long")
            return int(self.text[start : self.pos])
        if len(integer) > 12:
            raise InvalidField("decimal too long")
        self.pos += 1
        fraction_start = self.pos
        while self.peek().isascii() and self.peek().isdigit():
            self.pos += 1
        if not 1 <= self.pos - fraction_start <= 3:
            raise InvalidField("a decimal has one to three fractional digits")
        return float(self.text[start : self.pos])

    def string(self) -> _String:
        self.pos += 1
        out: list[str] = []
        while not self.done():
            char = self.take()
            if char == "\\":
                escaped = self.take()
                if escaped not in ('"', "\\"):
                    raise InvalidField("bad escape in string")
                out.append(escaped)
            elif char == '"':
                return _String("".join(out))
            elif not " " <= char <= "~":
                raise InvalidField("strings hold printable ASCII only")
            else:
                out.append(char)
        raise InvalidField("unterminated string")

    def token(self) -> str:
        start = self.pos
        self.pos += 1
        while self.peek() and self.peek() in _TOKEN_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def byte_sequence(self) -> _Bytes:
        self.pos += 1
        start = self.pos
        while self.peek() and self.peek() in _BASE64:
            self.pos += 1
        if self.take() != ":":
            raise InvalidField("unterminated byte sequence")
        return _Bytes(self.text[start : self.pos - 1].encode())

    def boolean(self) -> bool:
        self.pos += 1
        char = self.take()
        if char not in ("0", "1"):
            raise InvalidField("a boolean is ?0 or ?1")
        return char == "1"
