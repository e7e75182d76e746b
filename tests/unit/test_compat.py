"""The patches of mitmproxy internals: their pure parts, and their refusal of another mitmproxy."""

import logging

import pytest
from mitmproxy.addonmanager import traverse

from mitmcache import compat


@pytest.mark.parametrize(
    ("buffer", "limit", "too_large"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n", 1024, False),  # incomplete but within the limit
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"b" * 5000, 1024, False),  # a body after the head
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 2000, 1024, True),  # no end within the limit
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 2000 + b"\r\n\r\n", 1024, True),  # ends past the limit
        (b"GET / HTTP/1.1\nHost: x\n\n" + b"b" * 5000, 1024, False),  # bare LF line ends
    ],
)
def test_head_too_large_counts_the_head_not_what_follows_it(buffer, limit, too_large):
    assert compat.head_too_large(bytearray(buffer), limit) is too_large


@pytest.mark.parametrize(
    ("code", "reason"), [(431, b"request header fields too large"), (408, b"request timeout")]
)
def test_a_refusal_is_a_complete_json_answer_that_closes_the_connection(code, reason):
    raw = compat.refusal(code, "why")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {code} ".encode())
    assert b"\r\nconnection: close" in head.lower()
    assert reason in body and b"why" in body


@pytest.mark.parametrize(
    ("version", "supported"), [("12.2.3", True), ("12.2", True), ("12.3.0", False), ("11.2.3", False)]
)
def test_only_the_mitmproxy_version_the_patches_were_written_for_is_supported(version, supported):
    assert compat.supported(version) is supported


def test_another_mitmproxy_is_left_untouched_and_the_log_says_so(monkeypatch, caplog):
    from mitmproxy.proxy import server
    from mitmproxy.proxy.layers.http import _http1

    before = _http1.Http1Server.read_headers, server.ConnectionHandler.handle_connection
    monkeypatch.setattr(compat.version, "VERSION", "13.0.0")
    with caplog.at_level(logging.WARNING, logger="mitmcache"):
        assert compat.install_request_head_limits() is False
        assert compat.install_listen_backlog() is False
        assert compat.install_connection_close() is False
    assert (_http1.Http1Server.read_headers, server.ConnectionHandler.handle_connection) == before
    assert "mitmproxy 13.0.0 is not the 12.2.x these patches were written for" in caplog.text
    assert "request head size and timeout limits not enforced" in caplog.text
    assert "the listen backlog not enforced" in caplog.text
    assert "closing connections with data pending not enforced" in caplog.text


def test_a_reloaded_module_shares_the_installed_patchs_limits(monkeypatch):
    """mitmdump's hot reload re-imports the package: its settings must reach the patch in place."""
    import importlib
    import sys

    assert compat.install_request_head_limits() is True
    assert compat.install_listen_backlog() is True
    limits, backlog = compat.HEAD_LIMITS, compat.BACKLOG
    for name in [m for m in sys.modules if m == "mitmcache.compat" or m.startswith("mitmcache.compat.")]:
        monkeypatch.delitem(sys.modules, name)
    fresh = importlib.import_module("mitmcache.compat")
    assert fresh is not compat
    assert fresh.install_request_head_limits() is True
    assert fresh.install_listen_backlog() is True
    assert fresh.HEAD_LIMITS is limits and fresh.BACKLOG is backlog


class _Addon:
    pass


def test_an_addon_given_children_has_them_walked_by_mitmproxy():
    addon, child = _Addon(), _Addon()
    compat.set_children(addon, [child])
    assert list(traverse([addon])) == [addon, child]
    assert compat.children(addon) == [child]


def test_an_addon_left_without_children_has_no_addons_attribute_for_mitmproxy_to_descend_into():
    """mitmproxy's traverse descends into an empty ``addons`` list too, on every event of every flow."""
    addon = _Addon()
    compat.set_children(addon, [_Addon()])
    compat.set_children(addon, [])
    assert not hasattr(addon, "addons")
    compat.set_children(addon, [])  # already without: nothing to delete
    assert list(traverse([addon])) == [addon]
    assert compat.children(addon) == []
