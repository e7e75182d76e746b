"""Header-field helpers over raw byte pairs (RFC 9110 §5.3, §5.6.1, §7.6.1)."""

import pytest

from mitmcache.policy.fields import HOP_BY_HOP, get_all, get_first, has_any, split_list, without_hop_by_hop


def fields(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


def test_get_all_is_case_insensitive_and_keeps_every_line_in_order():
    """RFC 9110 §5.3: repeated field lines are kept; Set-Cookie lines must never be joined."""
    message = fields(("Set-Cookie", "a=1; Path=/"), ("x-other", "x"), ("set-cookie", "b=2, c"))
    assert get_all(message, "SET-COOKIE") == ["a=1; Path=/", "b=2, c"]
    assert get_first(message, "set-cookie") == "a=1; Path=/"
    assert get_first(message, "missing") is None


def test_values_are_decoded_as_latin_1():
    assert get_all([(b"x-name", b"caf\xe9")], "x-name") == ["caf\u00e9"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], []),
        (["a"], ["a"]),
        (["a, b", "c"], ["a", "b", "c"]),
        ([" a ,, b ,"], ["a", "b"]),
    ],
)
def test_split_list_ignores_empty_members(values, expected):
    """RFC 9110 §5.6.1: recipients accept and ignore empty list elements."""
    assert split_list(values) == expected


@pytest.mark.parametrize("name", sorted(n.decode() for n in HOP_BY_HOP))
def test_each_hop_by_hop_field_is_removed(name):
    """RFC 9110 §7.6.1: hop-by-hop fields describe one connection and are not stored (RFC 9111 §3.1)."""
    assert without_hop_by_hop(fields((name.title(), "x"), ("content-type", "text/plain"))) == fields(
        ("content-type", "text/plain")
    )


def test_fields_listed_in_connection_are_removed():
    """RFC 9110 §7.6.1: "Connection" names further hop-by-hop fields, case-insensitively, over every line."""
    message = fields(
        ("Connection", "X-Trace, close"),
        ("connection", "X-HOP"),
        ("x-trace", "1"),
        ("X-Hop", "2"),
        ("x-kept", "3"),
    )
    assert without_hop_by_hop(message) == fields(("x-kept", "3"))


def test_end_to_end_fields_keep_their_repeats_order_and_case():
    message = fields(("Set-Cookie", "a=1"), ("Link", "<a>"), ("set-cookie", "b=2"), ("Keep-Alive", "5"))
    assert without_hop_by_hop(message) == fields(
        ("Set-Cookie", "a=1"), ("Link", "<a>"), ("set-cookie", "b=2")
    )


@pytest.mark.parametrize(
    ("names", "expected"),
    [({b"range"}, True), ({b"if-match", b"accept"}, True), ({b"if-match"}, False), (set(), False)],
)
def test_has_any(names, expected):
    """A one-pass presence check over raw fields, names compared case-insensitively (RFC 9110 §5.1)."""
    assert has_any([(b"Range", b"bytes=0-1"), (b"ACCEPT", b"*/*")], frozenset(names)) is expected
