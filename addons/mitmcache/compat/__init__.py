"""Patches of mitmproxy's internals, in one package, each checked against the version it was written for.

mitmproxy 12.2 gives an addon no say over what happens before a request reaches it, nor over some
of what happens on the way to and from the upstream; the patches, by what they patch:

* ``requests.py``: request head size and time limits; dropping a refused request body as it arrives.
* ``listeners.py``: the listen backlog; workers sharing one port (``SO_REUSEPORT``).
* ``connections.py``: a connection mitmproxy closes while data it has not consumed is pending.
* ``upstream.py``: interim (1xx) responses; the cache's own answer where mitmproxy would send its
  error page; closing a hung upstream connection.
* ``dispatch.py``: the production launcher's addon manager; children that stock mitmdump walks only
  when there are any.

Each ``install_*`` first checks that mitmproxy is the version it was written for
(``SUPPORTED_VERSION``) and has the shape it patches; otherwise it logs one warning saying which
version it found and what is not enforced, and leaves mitmproxy as it is. Callers import every
patch from here.
"""

import logging
from typing import Any

from mitmproxy import version

log = logging.getLogger("mitmcache")

SUPPORTED_VERSION = "12.2"  # the mitmproxy minor version these patches were written against
_MARKER = "_mitmcache_patched"  # on a patched function: the limits it reads
_INSTALLED = "_mitmcache_installed"  # on a function patched by upstream.py, requests.py, connections.py


def supported(mitmproxy_version: str | None = None) -> bool:
    """Whether the running mitmproxy (or ``mitmproxy_version``) is the one the patches were written for."""
    found = version.VERSION if mitmproxy_version is None else mitmproxy_version
    return found == SUPPORTED_VERSION or found.startswith(SUPPORTED_VERSION + ".")


def _check(what: str, *attributes: tuple[Any, str]) -> bool:
    """Whether mitmproxy is the version (and has the attributes) a patch was written for; says so
    once in the log when it is not."""
    if not supported():
        log.warning(
            "mitmproxy %s is not the %s.x these patches were written for: %s not enforced",
            version.VERSION,
            SUPPORTED_VERSION,
            what,
        )
        return False
    missing = [name for owner, name in attributes if not hasattr(owner, name)]
    if missing:
        log.warning("mitmproxy %s lacks %s: %s not enforced", version.VERSION, ", ".join(missing), what)
        return False
    return True


_warned = False


def check_version() -> bool:
    """Whether the running mitmproxy is the one the patches were written for; if not, say so once
    (each patch still checks the shape of what it touches and stays out of the way if that changed)."""
    global _warned
    if supported():
        return True
    if not _warned:
        _warned = True
        log.warning(
            "mitmcache patches mitmproxy internals written for mitmproxy %s.x, but this is mitmproxy %s: "
            "see addons/mitmcache/compat/ for what may not work",
            SUPPORTED_VERSION,
            version.VERSION,
        )
    return False


# The patches import the version check above, so they are imported after it.
from . import listeners, requests
from .connections import install_connection_close
from .dispatch import DispatchTable, children, set_children
from .listeners import apply_listen_backlog, install_listen_backlog, install_reuse_port, relisten
from .requests import (
    discard_request_body,
    head_too_large,
    install_request_body_discard,
    install_request_head_limits,
    refusal,
)
from .upstream import (
    abort_upstream,
    answer_failure_with,
    install_failure_answers,
    install_interim_reader,
    last_activity,
    skip_interim_heads,
    upstream_reset,
)

__all__ = [
    "SUPPORTED_VERSION",
    "DispatchTable",
    "abort_upstream",
    "answer_failure_with",
    "apply_listen_backlog",
    "check_version",
    "children",
    "discard_request_body",
    "head_too_large",
    "install_connection_close",
    "install_failure_answers",
    "install_interim_reader",
    "install_listen_backlog",
    "install_request_body_discard",
    "install_request_head_limits",
    "install_reuse_port",
    "last_activity",
    "refusal",
    "relisten",
    "set_children",
    "skip_interim_heads",
    "supported",
    "upstream_reset",
]


def __getattr__(name: str) -> Any:
    """``HEAD_LIMITS`` and ``BACKLOG`` as their patches hold them now: after a hot reload, installing
    a patch again rebinds them to the objects the patch already in place reads."""
    if name == "HEAD_LIMITS":
        return requests.HEAD_LIMITS
    if name == "BACKLOG":
        return listeners.BACKLOG
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
