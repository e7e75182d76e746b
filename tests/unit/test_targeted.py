"""Targeted cache control (RFC 9213) and the Structured Field Dictionaries it is written in (RFC 8941)."""

import pytest

from mitmcache.policy.fields import by_name
from mitmcache.policy.targeted import InvalidField, directives_of, parse_dictionary, select

CDN = ("cdn-cache-control",)


def fields(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("max-age=60", {"max-age": 60}, id="integer"),
        pytest.param("no-store", {"no-store": True}, id="bare key is true"),
        pytest.param("a=1, b, c=?0", {"a": 1, "b": True, "c": False}, id="members"),
        pytest.param('private="x-a, x-b"', {"private": "x-a, x-b"}, id="string"),
        pytest.param("a=tok/en:1", {"a": "tok/en:1"}, id="token"),
        pytest.param("a=1.5", {"a": 1.5}, id="decimal"),
        pytest.param("a=-7", {"a": -7}, id="negative integer"),
        pytest.param("a=:aGk=:", {"a": b"aGk="}, id="byte sequence"),
        pytest.param("a=(1 2);p=x", {"a": (1, 2)}, id="inner list with parameters"),
        pytest.param("max-age=60;x=1, public", {"max-age": 60, "public": True}, id="parameters dropped"),
        pytest.param("a=1, a=2", {"a": 2}, id="a later duplicate wins"),
        pytest.param("  a=1 ,\tb=2", {"a": 1, "b": 2}, id="whitespace around members"),
        pytest.param("*x=1", {"*x": 1}, id="key may start with *"),
    ],
)
def test_dictionary(value, expected):
    """RFC 8941 §4.2.2: a Dictionary is key[=item] members separated by commas; items are
    integers, decimals, strings, tokens, byte sequences, booleans or inner lists, with parameters."""
    assert parse_dictionary(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "max-age =100",
        "max-age= 100",
        "MaX-AgE=100",
        "max-age=10000, &&&&&",
        "a=1,",
        "a=1 b=2",
        'a="unterminated',
        'a="bad \\x escape"',
        "a=1234567890123456",
        "a=1.2345",
        "a=?2",
        "a=(1 2",
        "a=é",
    ],
    ids=[
        "space before =",
        "space after =",
        "upper-case key",
        "garbage member",
        "trailing comma",
        "missing comma",
        "unterminated string",
        "bad escape",
        "integer of 16 digits",
        "four fractional digits",
        "bad boolean",
        "unterminated inner list",
        "non-ASCII",
    ],
)
def test_invalid_dictionaries(value):
    """RFC 8941 §4.2.2: anything that does not parse fails the whole field."""
    with pytest.raises(InvalidField):
        parse_dictionary(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("max-age=3600", {"max-age": "3600"}),
        ("max-age=99999999999", {"max-age": "99999999999"}),
        ("s-maxage=10, must-revalidate", {"s-maxage": "10", "must-revalidate": None}),
        ("no-cache", {"no-cache": None}),
        ('no-cache="set-cookie"', {"no-cache": "set-cookie"}),
        ("private, foobar=1", {"private": None, "foobar": "1"}),
        ("public=?0, max-age=5", {"max-age": "5"}),
        ("max-age=-1", {"max-age": "-1"}),
    ],
)
def test_directives_of_a_targeted_field(value, expected):
    """RFC 9213 §2.1: the directives keep their Cache-Control meaning, written as a Dictionary;
    unknown ones are kept (and ignored), a false one is as if absent."""
    assert directives_of(value) == expected


@pytest.mark.parametrize("value", ['max-age="10000"', "max-age=1.5", "no-store=1", "private=1", "max-age=a"])
def test_a_known_directive_of_the_wrong_type_invalidates_the_field(value):
    """RFC 9213 §2.1: a targeted field that does not parse as intended is ignored as a whole, so it
    can never widen what the Cache-Control it would replace allows."""
    with pytest.raises(InvalidField):
        directives_of(value)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param([("CDN-Cache-Control", "max-age=60")], {"max-age": "60"}, id="targeted field"),
        pytest.param([("Cache-Control", "max-age=5")], None, id="none: Cache-Control applies"),
        pytest.param([("CDN-Cache-Control", "max-age =60")], None, id="invalid: ignored"),
        pytest.param([("CDN-Cache-Control", "")], None, id="empty: ignored"),
        pytest.param(
            [("CDN-Cache-Control", "max-age=60"), ("CDN-Cache-Control", "no-store")],
            {"max-age": "60", "no-store": None},
            id="lines combined",
        ),
        pytest.param([("Other-CDN-Cache-Control", "max-age=60")], None, id="not ours"),
    ],
)
def test_select(response, expected):
    """RFC 9213 §2.2: the first targeted field on the target list "with a valid, non-empty value"
    is used; without one, Cache-Control and Expires apply."""
    assert select(by_name(fields(*response)), CDN) == expected


def test_the_target_list_order_decides():
    """RFC 9213 §2.2: "the first (in target list order) field with a valid, non-empty value"."""
    response = fields(("CDN-Cache-Control", "max-age=1"), ("Acme-Cache-Control", "max-age=2"))
    assert select(by_name(response), ("acme-cache-control", "cdn-cache-control")) == {"max-age": "2"}
    broken = fields(("CDN-Cache-Control", "max-age=1"), ("Acme-Cache-Control", "max-age=x y"))
    assert select(by_name(broken), ("acme-cache-control", "cdn-cache-control")) == {"max-age": "1"}


def test_no_target_list_means_no_targeted_field():
    assert select(by_name(fields(("CDN-Cache-Control", "max-age=60"))), ()) is None
