"""The settings' value parsers: each turns an option's string into its value or raises ValueError,
which ``config`` turns into one line naming the setting, where its value came from and what a valid
value looks like (``Setting.expected``)."""

import re
from collections.abc import Callable


def seconds(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError
    return value


def positive_seconds(raw: str) -> float:
    value = seconds(raw)
    if value == 0:
        raise ValueError
    return value


# Longer than any upstream fetch or request head a person would wait for: a larger value is a typo
# (REQ_TIMEOUT=1e9 would hold coalesced clients for 30 years).
MAX_TIMEOUT_SECONDS = 3600.0


def timeout_seconds(raw: str) -> float:
    value = positive_seconds(raw)
    if value > MAX_TIMEOUT_SECONDS:
        raise ValueError
    return value


def count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError
    return value


_BYTE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


def byte_size(raw: str) -> int:
    """``1048576``, ``512k``, ``64MB``, ``1g`` (binary units, case-insensitive)."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", raw)
    if not match or match.group(2).lower() not in _BYTE_UNITS:
        raise ValueError
    return int(match.group(1)) * _BYTE_UNITS[match.group(2).lower()]


def positive_byte_size(raw: str) -> int:
    """A size that must leave room for something: 0 would quietly store nothing."""
    value = byte_size(raw)
    if value == 0:
        raise ValueError
    return value


MIN_REQUEST_HEAD_BYTES = 1024  # a request line and a Host field fit; less refuses ordinary clients
MAX_REQUEST_HEAD_BYTES = 16 * 1024**2


def request_head_size(raw: str) -> int:
    value = byte_size(raw)
    if not MIN_REQUEST_HEAD_BYTES <= value <= MAX_REQUEST_HEAD_BYTES:
        raise ValueError
    return value


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.strip().lower() not in allowed:
            raise ValueError
        return raw.strip().lower()

    parse.__doc__ = "one of " + ", ".join(allowed)
    return parse


def path_prefix(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith("/") or len(value) < 2 or any(c in value for c in "?# "):
        raise ValueError
    return value


def text(raw: str) -> str:
    return raw.strip()


def percent(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 100:
        raise ValueError
    return value


def field_names(raw: str) -> tuple[str, ...]:
    """``CDN-Cache-Control, Fastly-Cache-Control``: header field names (tokens), lower-cased, in
    order; empty for none."""
    names = tuple(name.strip().lower() for name in raw.split(",") if name.strip())
    if not all(re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name) for name in names):
        raise ValueError
    return names


def on_off(raw: str) -> bool:
    """``on`` or ``off`` (also true/false, yes/no, 1/0)."""
    value = raw.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise ValueError


def token(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", value):
        raise ValueError
    return value


def at_least_one(raw: str) -> int:
    value = count(raw)
    if value < 1:
        raise ValueError
    return value


def rate(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError
    return value


def success_status(raw: str) -> int:
    value = int(raw)
    if not 200 <= value <= 299:
        raise ValueError
    return value


def optional_positive_seconds(raw: str) -> float | None:
    """Empty: inherit (None)."""
    return positive_seconds(raw) if raw.strip() else None
