"""The compatibility module says clearly when mitmproxy is not the release its patches were written for."""

import logging

from mitmproxy.version import VERSION

from mitmcache import compat


def test_the_installed_mitmproxy_is_the_one_the_patches_were_written_for():
    assert compat.version_matches(VERSION)


def test_another_mitmproxy_release_is_named_in_one_warning(caplog, monkeypatch):
    monkeypatch.setattr(compat, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="mitmcache"):
        assert not compat.check_version("13.0.1")
        assert not compat.check_version("13.0.1")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "written for mitmproxy 12.2.x, but this is mitmproxy 13.0.1" in warnings[0]


def test_a_patch_release_of_the_same_line_matches():
    assert compat.version_matches("12.2.9") and not compat.version_matches("12.20.0")
