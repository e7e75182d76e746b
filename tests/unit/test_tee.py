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
