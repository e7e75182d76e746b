"""Parsers of the settings about the proxy's front door: how many connections the kernel queues for
it, and which upstream ``--mode reverse:URL`` names.

Like the parsers in ``config``, each raises ``ValueError`` for a value that makes no sense;
``config`` names the setting and what was expected.
"""

import ipaddress
import re
from pathlib import Path

SOMAXCONN_PATH = Path("/proc/sys/net/core/somaxconn")
FALLBACK_BACKLOG = 4096
MAX_BACKLOG = 65535  # the kernel's listen() takes at most this much (and caps it at somaxconn)


def system_backlog(path: Path = SOMAXCONN_PATH) -> int:
    """The system's limit on a listen queue (Linux: net.core.somaxconn), else 4096."""
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        return FALLBACK_BACKLOG
    return min(max(value, 1), MAX_BACKLOG)


def listen_backlog(raw: str) -> int:
    """``system`` (the system's limit) or a whole number from 1 to 65535."""
    if raw.strip().lower() == "system":
        return system_backlog()
    value = int(raw)
    if not 1 <= value <= MAX_BACKLOG:
        raise ValueError
    return value


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def valid_host(host: str) -> bool:
    """A DNS name of letters, digits and hyphens (RFC 1123 §2.1; underscores too, as container
    service names have them), or an IPv4 or bracketed IPv6 address."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    # RFC 3696 §2: a top-level domain is not all-numeric, so 999.1.1.1 is neither name nor address.
    return (
        0 < len(host) <= 254
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def reverse_upstream(raw: str) -> str:
    """The upstream of ``--mode reverse:URL``: an explicit ``http://`` or ``https://`` and a valid
    host, with an optional port. mitmproxy itself would take ``reverse:example.com`` as https and
    ``reverse:not-a-url`` as a host named ``not-a-url``."""
    expected = (
        f"expected http://host[:port] or https://host[:port] with a host name or IP address, got {raw!r}"
    )
    match = re.fullmatch(r"(https?)://(\[[^\]/]*\]|[^:/\[\]]*)(?::(\d{1,5}))?/?", raw.strip(), re.IGNORECASE)
    if match is None or not valid_host(match.group(2)):
        raise ValueError(expected)
    if match.group(3) is not None and not 1 <= int(match.group(3)) <= 65535:
        raise ValueError(expected)
    return raw.strip()
