"""Whole numbers read from digit strings that a client or an upstream controls.

Python refuses to convert a string of more than 4,300 digits (``sys.get_int_max_str_digits``) and
raises ``ValueError``; RFC 9111 §1.2.2 asks a cache that receives a delta-seconds "greater than the
greatest integer it can represent" to "consider the value to be 2147483648 (2^31) or the greatest
positive integer it can conveniently represent". Counting the digits before converting gives that reading to
every field the cache parses numbers from: no value of any length raises, and none costs more than
a conversion of a few digits.
"""


def capped(digits: str, cap: int) -> int:
    """The value of ``digits`` (ASCII digits, checked by the caller), or ``cap`` when it is larger."""
    significant = digits.lstrip("0")
    if len(significant) > len(str(cap)):
        return cap
    return min(int(significant or "0"), cap)
