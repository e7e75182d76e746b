"""The production launcher's addon chain: mitmproxy addons whose hooks run only when their options ask
for them (``OnDemand``), and the slot where mitmdump's script loader sits (``Slot``)."""

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from mitmproxy import addonmanager, ctx, hooks
from mitmproxy.addons import script

from .compat import DispatchTable


class UsageError(Exception):
    """A command line or option the launcher does not support; the message says what to do instead."""


class _DefaultsLoader:
    """A loader that registers an addon's options with some defaults replaced."""

    def __init__(self, loader: addonmanager.Loader, defaults: dict[str, Any]) -> None:
        self._loader = loader
        self._defaults = defaults

    def add_option(
        self, name: str, typespec: type, default: Any, help: str, choices: Sequence[str] | None = None
    ) -> None:
        self._loader.add_option(name, typespec, self._defaults.get(name, default), help, choices)

    def add_command(self, path: str, func: Callable) -> None:
        self._loader.add_command(path, func)


class OnDemand:
    """A built-in mitmproxy addon whose options always exist, but whose hooks run only when asked for.

    Its options are registered by its own ``load`` (so ``--set`` parses and checks them exactly as
    mitmdump does), with ``defaults`` replacing some defaults; while ``wanted(options)`` is false it is
    not among our children, so the addon manager never calls it.
    """

    def __init__(self, addon: Any, wanted: Callable[[Any], bool], defaults: dict[str, Any]) -> None:
        self.inner = addon
        self.name = f"ondemand:{addonmanager._get_name(addon)}"
        self._wanted = wanted
        self._defaults = defaults
        self.addons: list[Any] = []

    def load(self, loader: addonmanager.Loader) -> None:
        if hasattr(self.inner, "load"):
            self.inner.load(_DefaultsLoader(loader, self._defaults))

    def configure(self, updated: set[str]) -> None:
        wanted = bool(self._wanted(ctx.options))
        if wanted and not self.addons:
            # Joining late: it saw none of the earlier option changes. (The addon manager then calls
            # its configure again with ``updated``, as a child; mitmproxy's configure hooks are
            # idempotent.)
            if hasattr(self.inner, "configure"):
                self.inner.configure(ctx.options.keys())
            self.addons = [self.inner]
        elif not wanted:
            self.addons = []

    @property
    def active(self) -> bool:
        return bool(self.addons)


class Slot:
    """Where mitmdump's script loader sits in the chain: the cache, then any ``-s`` scripts.

    As with mitmdump, they are added once the command line's options are set (their ``--set`` values
    wait as deferred options until ``load`` registers the option) and then get ``configure`` with
    every option. Scripts are loaded with mitmproxy's own loader (same module naming, same
    ``sys.path`` handling), once: a production proxy does not watch its files for reloads.
    """

    name = "lean-slot"

    def __init__(self) -> None:
        self.addons: list[Any] = []

    def add(self, addon: Any) -> None:
        """Register ``addon`` (``load``, then the deferred options) and append it here."""
        ctx.master.addons.register(addon)
        self.addons.append(addon)
        if isinstance(ctx.master.addons, DispatchTable):
            ctx.master.addons.invalidate()

    def add_script(self, path: str) -> None:
        fullpath = os.path.expanduser(path.strip("'\" "))
        if not os.path.isfile(fullpath):
            raise UsageError(f"no such script: {fullpath}")
        logging.getLogger(__name__).info("Loading script %s", path)
        module = script.load_script(fullpath)
        if module is None:  # the loader logged the error with its traceback
            raise UsageError(f"could not load script {path} (error above)")
        self.add(module)

    def configure_all(self) -> None:
        """What the script loader does after loading: ``configure`` with every option. The cache's
        turns its options (which carry the .env/environment defaults) into settings, and raises
        ``OptionsError`` naming a bad one."""
        ctx.master.addons.invoke_addon_sync(self, hooks.ConfigureHook(ctx.options.keys()))
