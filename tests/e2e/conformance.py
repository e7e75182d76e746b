"""Shared pieces of the conformance tests (``test_conformance_*.py``).

Each conformance module runs one pure RFC 9111 proxy (``cache_ttl=0``) for all its tests, so that
the whole suite stays fast; every test uses its own URL (the ``path`` fixture), so no test sees
another's stored responses. Tests that need other settings start their own proxy with
``proxy_factory``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mitmcache.policy.dates import format_http_date
from tests.support.harness import Origin, Proxy

PURE_RFC = {"cache_ttl": "0"}


@pytest.fixture(scope="module")
def rfc_proxy(origin_process: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """A pure RFC 9111 proxy shared by the tests of one module."""
    tmp = tmp_path_factory.mktemp("rfc-proxy")
    proxy = Proxy(origin_process, PURE_RFC, cwd=tmp / "cwd", log_path=tmp / "mitmdump.log")
    proxy.start()
    yield proxy
    if proxy.stop() not in (0, -15, None):
        print(proxy.log_text())


@pytest.fixture
def path(request: pytest.FixtureRequest) -> str:
    """A URL path of this test's own."""
    return "/" + re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)


def http_date(offset: float = 0) -> str:
    """An IMF-fixdate ``offset`` seconds from now."""
    return format_http_date(time.time() + offset)


def request_header(entry: dict[str, Any], name: str) -> str | None:
    """The value of a header in one of the origin's logged requests (case-insensitive)."""
    for key, value in entry["headers"]:
        if key.lower() == name.lower():
            return str(value)
    return None


def cache_status(response: Any) -> str:
    """Our member of the Cache-Status field (the last one)."""
    return str(response.headers.get_list("cache-status")[-1])
