"""The proxy's front door: which upstream a reverse mode names, and what the listeners accept.

Called from the cache's own hooks (so stock ``mitmdump -s addons/cache.py`` and the production
launcher get it alike, and mitmproxy has no child addon to walk on every event): at ``load`` it
installs the patches of mitmproxy that bound request heads, raise the listen backlog and close a
refused connection with data pending (``compat``); at ``configure`` it hands them the current settings, and checks
every ``--mode reverse:URL``, because mitmproxy takes ``reverse:example.com`` as
``https://example.com`` and ``reverse:not-a-url`` as a host: an operator's typo would start a
proxy that answers every request with a 502.
"""

from collections.abc import Callable, Sequence

from mitmproxy import ctx, exceptions
from mitmproxy.proxy import mode_specs

from . import compat
from .config import Settings
from .front_settings import reverse_upstream


def check_reverse_modes(modes: Sequence[str]) -> None:
    """Raise OptionsError naming the first ``--mode reverse:URL`` whose upstream is not an explicit
    http(s) URL with a valid host. Specs mitmproxy cannot parse are left to its own error."""
    for spec in modes:
        try:
            mode = mode_specs.ProxyMode.parse(spec)
        except ValueError:
            continue
        if not isinstance(mode, mode_specs.ReverseMode):
            continue
        try:
            reverse_upstream(mode.data)
        except ValueError as e:
            raise exceptions.OptionsError(f"invalid upstream in mode (--mode {spec}): {e}") from None


class Listening:
    def __init__(self, settings: Callable[[], Settings]) -> None:
        self._settings = settings
        self._running = False

    def install(self) -> None:
        compat.install_request_head_limits()
        compat.install_listen_backlog()
        compat.install_connection_close()  # a refused head with more data behind it is closed too

    def configure(self, updated: set[str]) -> None:
        settings = self._settings()
        compat.HEAD_LIMITS.max_bytes = settings.max_request_head_bytes
        compat.HEAD_LIMITS.timeout = settings.request_head_timeout
        if compat.BACKLOG.size != settings.listen_backlog:
            compat.BACKLOG.size = settings.listen_backlog
            if self._running:
                compat.apply_listen_backlog(ctx.master.addons.get("proxyserver"))
        if "mode" in updated and "mode" in ctx.options:
            check_reverse_modes(ctx.options.mode)

    def running(self) -> None:
        """The listeners are up (mitmproxy starts them before the running event): give them the
        backlog, whichever started first, them or this script."""
        self._running = True
        compat.apply_listen_backlog(ctx.master.addons.get("proxyserver"))
