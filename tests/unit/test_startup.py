"""Startup: options that look like ours but that nobody registered are named, with the closest real one."""

from mitmcache.startup import unknown_options

KNOWN = ["cache_ttl", "cache_name", "async_queue_size", "connection_strategy"]


def test_a_misspelt_cache_option_is_named_with_the_closest_real_one():
    assert unknown_options(["cache_tll"], KNOWN) == [
        "unknown option cache_tll (did you mean cache_ttl?): ignored"
    ]


def test_a_misspelt_async_option_is_named_with_the_closest_real_one():
    assert unknown_options(["async_queue_sise"], KNOWN) == [
        "unknown option async_queue_sise (did you mean async_queue_size?): ignored"
    ]


def test_an_unknown_option_with_nothing_close_is_named_without_a_suggestion():
    assert unknown_options(["cache_zzzzzzzzzzzz"], KNOWN) == ["unknown option cache_zzzzzzzzzzzz: ignored"]


def test_options_that_are_not_ours_are_left_to_mitmproxy():
    """Another addon loaded later may register them; mitmproxy's own are not ours to police."""
    assert unknown_options(["upstream_cert_x", "my_addon_option"], KNOWN) == []
