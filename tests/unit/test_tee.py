"""BodyTee: stream every chunk on, keep a copy only while it stays within the limit."""

import pytest

from mitmcache.tee import BodyTee


def run(limit: int, *chunks: bytes, finished: bool = True) -> tuple[BodyTee, list[bytes]]:
    """Feed ``chunks`` (and the final ``b""`` when ``finished``) the way mitmproxy does."""
    tee = BodyTee(limit)
    passed = [tee(chunk) for chunk in chunks]
    if finished:
        passed.append(tee(b""))
    return tee, passed


@pytest.mark.parametrize(
    ("limit", "chunks", "body"),
    [
        pytest.param(10, [b"abc", b"def"], b"abcdef", id="small body"),
        pytest.param(6, [b"abc", b"def"], b"abcdef", id="exactly the limit"),
        pytest.param(5, [b"abc", b"def"], None, id="past the limit"),
        pytest.param(5, [b"abcdef", b"g"], None, id="first chunk past the limit"),
        pytest.param(0, [], b"", id="empty body"),
    ],
)
def test_body_is_kept_only_within_the_limit(limit, chunks, body):
    tee, _ = run(limit, *chunks)
    assert tee.body() == body


def test_every_chunk_passes_through_unchanged_even_past_the_limit():
    chunks = [b"abc", b"defghij", b"k"]
    _, passed = run(4, *chunks)
    assert passed == [*chunks, b""]


def test_an_unfinished_body_is_not_kept():
    tee, _ = run(100, b"abc", finished=False)
    assert tee.complete is False
    assert tee.body() is None


def test_growing_past_the_limit_is_said_once_so_waiters_can_stop_waiting():
    overflows = []
    tee = BodyTee(4, lambda: overflows.append(True))
    for chunk in (b"abc", b"de", b"fgh", b""):
        tee(chunk)
    assert overflows == [True]
    assert tee.keeping is False


def test_a_body_within_the_limit_is_kept_and_never_overflows():
    tee = BodyTee(10, lambda: pytest.fail("overflowed"))
    tee(b"abc")
    assert tee.keeping is True


def test_the_end_of_the_body_is_reported_once_when_it_comes():
    ends = []
    tee = BodyTee(10, on_end=lambda: ends.append(True))
    tee(b"abc")
    assert ends == []
    tee(b"")
    assert ends == [True]
