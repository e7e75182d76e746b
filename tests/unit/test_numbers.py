"""Digit strings of any length read as capped whole numbers (RFC 9111 §1.2.2)."""

import sys

import pytest

from mitmcache.policy.numbers import capped


@pytest.mark.parametrize(
    ("digits", "cap", "expected"),
    [
        ("0", 100, 0),
        ("42", 100, 42),
        ("100", 100, 100),
        ("101", 100, 100),
        ("0000000042", 100, 42),
        ("", 100, 0),
    ],
)
def test_a_value_up_to_the_cap_is_itself_and_a_larger_one_is_the_cap(digits, cap, expected):
    assert capped(digits, cap) == expected


def test_more_digits_than_int_converts_is_the_cap_not_an_error():
    too_many = "9" * (sys.get_int_max_str_digits() + 1)
    with pytest.raises(ValueError):
        int(too_many)  # what the cache used to do
    assert capped(too_many, 2**31) == 2**31


def test_leading_zeros_of_any_length_do_not_count():
    assert capped("0" * 10_000 + "5", 2**31) == 5
