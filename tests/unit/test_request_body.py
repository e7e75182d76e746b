"""Which request heads announce a body (RFC 9112 §6.3)."""

import pytest

from mitmcache.request_body import carries_body


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param([(b"Host", b"a")], False, id="no framing"),
        pytest.param([(b"Content-Length", b"0")], False, id="an empty body"),
        pytest.param([(b"content-length", b" 0 ")], False, id="an empty body, spaced"),
        pytest.param([(b"Content-Length", b"12")], True, id="a length"),
        pytest.param([(b"Transfer-Encoding", b"chunked")], True, id="chunked"),
        pytest.param([(b"TRANSFER-ENCODING", b"gzip, chunked")], True, id="any transfer coding"),
    ],
)
def test_a_body_is_announced_by_a_length_other_than_zero_or_any_transfer_coding(fields, expected):
    assert carries_body(tuple(fields)) is expected
