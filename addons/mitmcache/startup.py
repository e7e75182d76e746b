"""What the cache says and does at startup that stock mitmproxy would not: stop on a bad setting
with one line, warn about options nobody registered or that work against the cache, and check the
upstream's trusted CA at once.

mitmproxy's script loader (``mitmproxy/addons/script.py``, ``Script.loadscript``) logs an exception
from a script's ``load`` or ``configure`` with its traceback and carries on: the proxy opens its
listening socket, prints "listening at ...", and only then exits, because its ``errorcheck`` addon
looks at the log after the servers are up (``Master.run``). And ``--set`` values for options no
addon registers stay in ``OptManager.deferred``, silently ignored.
"""

import difflib
import functools
import logging
import os
import ssl
import sys
from collections.abc import Callable, Iterable
from typing import NoReturn

from mitmproxy import ctx, exceptions

from .config import Settings
from .upstream import tls_verification

log = logging.getLogger("mitmcache")

# Option prefixes of this project's settings: a misspelt one would otherwise be ignored silently.
OUR_PREFIXES = ("cache_", "async_")


def loaded_by_mitmproxys_script_loader_before_running() -> bool:
    """True while mitmproxy's own script loader is starting us up: an error now would become a
    traceback followed by "listening at ..." (see the module docstring). The production launcher
    has no script loader and reports errors itself; after startup (a hot reload, an option change
    in mitmweb) an error must not stop a running proxy."""
    loader = ctx.master.addons.get("scriptloader")
    return loader is not None and not loader.is_running


def stop(message: str) -> NoReturn:
    """Print one line and exit 1 before anything listens, as mitmproxy's ``tools/main.py`` does for
    a bad built-in option (``mitmdump: ...``)."""
    print(f"{os.path.basename(sys.argv[0])}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)  # raised in the script loader's task, asyncio re-raises it out of the loop


def one_line_at_startup[**P, R](hook: Callable[P, R]) -> Callable[P, R]:
    """For an addon's ``load`` and ``configure``: while mitmproxy's script loader starts the proxy,
    a bad setting (``OptionsError``, or ``ValueError`` from reading the settings) stops it with one
    line; otherwise (the production launcher, a running proxy) the error goes to the caller."""

    @functools.wraps(hook)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return hook(*args, **kwargs)
        except (exceptions.OptionsError, ValueError) as e:
            if loaded_by_mitmproxys_script_loader_before_running():
                stop(str(e))
            raise

    return guarded


def unknown_options(deferred: Iterable[str], known: Iterable[str]) -> list[str]:
    """One warning per option that looks like ours but that no addon registered, naming the
    closest registered option, e.g. ``unknown option cache_tll (did you mean cache_ttl?)``."""
    known = sorted(known)
    warnings = []
    for name in sorted(deferred):
        if not name.startswith(OUR_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"unknown option {name}{hint}: ignored")
    return warnings


def warn_about_unknown_options() -> None:
    """At ``running``, every addon has registered its options: what is still deferred is unknown."""
    for warning in unknown_options(ctx.options.deferred, ctx.options.keys()):
        log.warning(warning)


def warn_about_options(settings: Settings) -> None:
    """Warns about mitmproxy options that quietly undo a setting: debug lines the terminal would
    not show, and an eager upstream connection that makes hits depend on the upstream."""
    options = ctx.options
    if (
        settings.log_level == "debug"
        and "termlog_verbosity" in options
        and options.termlog_verbosity != "debug"
    ):
        log.warning(
            "cache_log_level is debug, but the terminal log shows debug lines only with "
            "--set termlog_verbosity=debug (mitmweb's event log: its own level filter)"
        )
    if "connection_strategy" in options and options.connection_strategy != "lazy":
        log.warning(
            "connection_strategy is %r: every client connection opens an upstream connection, even for "
            "cache hits, and hits fail while the upstream is down. Run with --set connection_strategy=lazy.",
            options.connection_strategy,
        )


def upstream_tls_verification() -> bool | ssl.SSLContext:
    """mitmproxy reports an unreadable CA only when a connection fails; the cache's own client
    needs it now, so it stops startup instead, naming the option."""
    options = ctx.options
    try:
        return tls_verification(
            options.ssl_insecure,
            options.ssl_verify_upstream_trusted_ca,
            options.ssl_verify_upstream_trusted_confdir,
        )
    except (OSError, ssl.SSLError) as e:
        raise exceptions.OptionsError(
            "ssl_verify_upstream_trusted_ca/ssl_verify_upstream_trusted_confdir: "
            f"cannot load the upstream's trusted CA: {e}"
        ) from None
