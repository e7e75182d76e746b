"""Log lines carry request paths and keys verbatim, so their control characters are escaped.

A client chooses its request target: raw escape sequences in it (``\\x1b[2J``, a carriage return
that rewrites the line) were written as they were to the terminal and the log files an operator
reads. The filter escapes C0 and C1 control characters (and DEL) as ``\\xNN`` in the message and in
its string arguments, for every line of the cache's logger, whichever module logs it.
"""

import logging
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape(text: str) -> str:
    """``text`` with each control character written as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _safe(value: object) -> object:
    return escape(value) if isinstance(value, str) else value


class EscapeControlCharacters(logging.Filter):
    """Escapes control characters in a record's message and string arguments; drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = escape(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_safe(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _safe(value) for key, value in record.args.items()}
        return True


def escaping(logger: logging.Logger) -> logging.Logger:
    """``logger`` with the filter attached once (a hot reload re-imports this module: the filter is
    recognised by name, not by class identity)."""
    if not any(type(f).__name__ == EscapeControlCharacters.__name__ for f in logger.filters):
        logger.addFilter(EscapeControlCharacters())
    return logger
