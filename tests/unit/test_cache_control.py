"""Cache-Control parsing (RFC 9111 §5.2, §1.2.2)."""

import pytest

from mitmcache.policy.cache_control import (
    DELTA_SECONDS_CAP,
    REMEMBERED_LENGTH,
    delta_seconds,
    field_names,
    parse,
)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param([], {}, id="no field"),
        pytest.param([""], {}, id="empty value"),
        pytest.param(["max-age=60"], {"max-age": "60"}, id="token argument"),
        pytest.param(
            ["Max-Age=60, NO-STORE"], {"max-age": "60", "no-store": None}, id="names case-insensitive"
        ),
        pytest.param(["private=X-Mixed"], {"private": "X-Mixed"}, id="arguments keep their case"),
        pytest.param(
            ["max-age=60 ,  public "], {"max-age": "60", "public": None}, id="whitespace around members"
        ),
        pytest.param([",, public ,"], {"public": None}, id="empty list members"),
        pytest.param(['max-age="60"'], {"max-age": "60"}, id="quoted argument"),
        pytest.param(
            ['private="Set-Cookie, X-Secret", max-age=5'],
            {"private": "Set-Cookie, X-Secret", "max-age": "5"},
            id="comma inside quotes",
        ),
        pytest.param(
            [r'x-ext="a\"b\\c", public'], {"x-ext": 'a"b\\c', "public": None}, id="quoted-pair escapes"
        ),
        pytest.param(['x-ext="a=b,c"'], {"x-ext": "a=b,c"}, id="equals sign inside quotes"),
        pytest.param(["community=UCI, max-age=5"], {"community": "UCI", "max-age": "5"}, id="unknown kept"),
        pytest.param(["max-age=5, max-age=10"], {"max-age": "5"}, id="duplicate in one line"),
        pytest.param(["max-age=5", "MAX-AGE=10"], {"max-age": "5"}, id="duplicate across lines"),
        pytest.param(["no-cache", "no-store"], {"no-cache": None, "no-store": None}, id="lines combined"),
        pytest.param(['x-ext="unterminated'], {"x-ext": "unterminated"}, id="unterminated quote"),
    ],
)
def test_parse(lines, expected):
    """RFC 9111 §5.2: directive names compare case-insensitively, arguments are tokens or quoted
    strings (RFC 9110 §5.6.4), unknown directives are kept; §4.2.1: a repeated directive's first
    occurrence is used."""
    assert parse(lines) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("max-age=60", 60),
        ("max-age=0", 0),
        ("max-age=007", 7),
        ('max-age="30"', 30),
        ("max-age=-1", None),
        ("max-age=1.5", None),
        ("max-age=+5", None),
        ("max-age=1e3", None),
        ("max-age=abc", None),
        ("max-age=", None),
        ("max-age", None),
        ("max-age=\u0663", None),  # ARABIC-INDIC DIGIT THREE: str.isdigit() says yes, DIGIT says no
        ("max-age=2147483648", DELTA_SECONDS_CAP),
        ("max-age=99999999999999999999999", DELTA_SECONDS_CAP),
        ("max-age=" + "9" * 5000, DELTA_SECONDS_CAP),  # more digits than int() converts
        ("max-age=" + "0" * 5000 + "7", 7),
        ("no-store", None),
    ],
)
def test_delta_seconds_accepts_only_digits_and_caps_at_2_to_the_31(value, expected):
    """RFC 9111 §1.2.2: delta-seconds = 1*DIGIT; a value too large is taken as 2147483648."""
    assert delta_seconds(parse([value]), "max-age") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("public", None),
        ("private", frozenset()),
        ('private="Set-Cookie, X-Secret"', frozenset({"set-cookie", "x-secret"})),
        ('private=" X-A ,, x-b "', frozenset({"x-a", "x-b"})),
        ("private=X-Token", frozenset({"x-token"})),
    ],
)
def test_field_names_of_qualified_private(value, expected):
    """RFC 9111 §5.2.2.7: ``private`` with a quoted list of field names restricts only those fields;
    unqualified, it covers the whole response."""
    assert field_names(parse([value]), "private") == expected


def test_field_names_of_qualified_no_cache():
    """RFC 9111 §5.2.2.4: ``no-cache="name"`` names the fields that need revalidation."""
    assert field_names(parse(['no-cache="Set-Cookie"']), "no-cache") == {"set-cookie"}
    assert field_names(parse(["no-cache"]), "no-cache") == frozenset()


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param(["max-age =100"], {}, id="space before equals: not a directive"),
        pytest.param(["max-age =100, public"], {"public": None}, id="the rest still counts"),
        pytest.param(["max-age= 100"], {"max-age": " 100"}, id="space after equals: argument kept"),
        pytest.param(['extension="max-age=100", max-age=1'], {"extension": "max-age=100", "max-age": "1"}),
        pytest.param(['max-age=1, extension="max-age=100"'], {"max-age": "1", "extension": "max-age=100"}),
        pytest.param(["max-age='3600'"], {"max-age": "'3600'"}, id="single quotes are not quotes"),
    ],
)
def test_no_whitespace_around_equals(lines, expected):
    """RFC 9111 §5.2: cache-directive = token [ "=" ( token / quoted-string ) ] -- no whitespace
    around "="; and a directive name inside a quoted string is no directive (RFC 9110 §5.6.4)."""
    assert parse(lines) == expected


@pytest.mark.parametrize("value", ["max-age= 100", "max-age='3600'", "max-age=3600.0", "max-age=a100"])
def test_malformed_delta_seconds_are_invalid(value):
    """RFC 9111 §1.2.2: delta-seconds = 1*DIGIT, so these max-age values are invalid, which §4.2.1
    says makes the response stale."""
    assert delta_seconds(parse([value]), "max-age") is None


def test_parsed_directives_are_read_only():
    """A value parsed once is remembered and handed to the next response that sends it: nobody may
    change what another response will read."""
    directives = parse(["max-age=60"])
    with pytest.raises(TypeError):
        directives["max-age"] = "0"  # type: ignore[index]
    assert parse(["max-age=60"]) == {"max-age": "60"}


def test_same_value_is_parsed_once():
    assert parse(["max-age=61, public"]) is parse(("max-age=61, public",))


def test_long_values_are_not_remembered():
    """A client or an upstream controls the value's length: only short ones are kept."""
    value = "max-age=1, " + "x" * REMEMBERED_LENGTH
    assert parse([value]) == {"max-age": "1", "x" * REMEMBERED_LENGTH: None}
    assert parse([value]) is not parse([value])
