"""Control characters from requests never reach a log line raw."""

import logging

from mitmcache.log_safety import EscapeControlCharacters, escape, escaping


def test_control_characters_are_written_as_hex_escapes():
    assert escape("/a\x1b[2J\r\n\x07\x7f\x9b/b") == "/a\\x1b[2J\\x0d\\x0a\\x07\\x7f\\x9b/b"
    assert escape("/caf\u00e9?q=1") == "/caf\u00e9?q=1"


def test_the_filter_escapes_arguments_and_the_message(caplog):
    logger = logging.getLogger("mitmcache.test-log-safety")
    logger.addFilter(EscapeControlCharacters())
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("cache MISS %s %d", "/x\x1b[31m", 3)
        logger.info("raw \r message")
    assert caplog.messages == ["cache MISS /x\\x1b[31m 3", "raw \\x0d message"]


def test_the_filter_is_attached_once():
    logger = logging.getLogger("mitmcache.test-log-safety-once")
    escaping(logger)
    escaping(logger)
    assert len(logger.filters) == 1
