"""How mitmproxy finds an addon's hooks: the production launcher's addon manager (``DispatchTable``),
events dispatched through a table of the hooks that exist (see its docstring); and, for stock
mitmdump's own walk, an addon's children set so that an addon without any costs no walk
(``set_children``)."""

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from mitmproxy import addonmanager, exceptions, flow, hooks, master


def set_children(addon: Any, children: list[Any]) -> None:
    """Give ``addon`` these child addons (mitmproxy's ``addons`` attribute); none: no attribute.

    Stock mitmproxy walks the whole chain on every event of every flow, and again for the ``update``
    event that follows each (``AddonManager._iter_hooks`` and ``traverse``, addonmanager.py):
    ``traverse`` descends into every ``addons`` attribute it finds, an empty list included, one
    generator more per level, and looks the event's name up on every child. In a loop, the cache's
    part of that walk took 1.6-2.0 us per event with a child under the cache and an empty list on
    the write queue, and 1.2-1.4 us with neither: on stock mitmdump, where a flow makes about eight
    such events, a childless addon has the attribute deleted, not emptied."""
    if children:
        addon.addons = children
    elif "addons" in vars(addon):
        del addon.addons


def children(addon: Any) -> list[Any]:
    """The child addons ``set_children`` gave ``addon`` (none: an empty list)."""
    return vars(addon).get("addons", [])


# -- the production launcher's addon manager ------------------------------------------------------------


_HOOK_FIELDS: dict[type, tuple[str, ...]] = {}


def _hook_args(event: hooks.Hook) -> list[Any]:
    """``event.args()`` without ``dataclasses.fields()`` on every call (a hook class's fields are fixed)."""
    names = _HOOK_FIELDS.get(type(event))
    if names is None:
        names = _HOOK_FIELDS[type(event)] = tuple(f.name for f in dataclasses.fields(event))
    return [getattr(event, name) for name in names]


class DispatchTable(addonmanager.AddonManager):
    """mitmproxy's addon manager, with events dispatched through a table of the hooks that exist.

    mitmproxy's ``trigger_event`` walks the whole chain for every event: for each top-level addon a
    coroutine, a ``safecall`` context manager and a generator over the addon's subtree, whether it has
    a hook for the event or not; and every flow event is followed by an ``update`` event nobody here
    handles. With the lean chain that walk was still about half of a cache hit's CPU (py-spy). Here
    each event name maps to the hook callables found in the chain, grouped by top-level addon, built
    on first use and rebuilt after anything that can change the chain: ``add``/``register``/
    ``remove``, and option changes (``OnDemand`` attaches or detaches its addon in ``configure``).

    Semantics are ``trigger_event``'s: chain order, then each addon's subtree in order; an exception
    is logged as "Addon error" and skips the rest of that top-level addon's hooks for the event;
    ``AddonHalt`` stops the event; ``OptionsError`` propagates. Addons must not change their
    ``addons`` list outside ``configure`` (none of the lean chain's do; ``-s`` scripts are read once).
    Synchronous ``trigger`` (configure, commands) is mitmproxy's own.
    """

    def __init__(self, master: master.Master) -> None:
        super().__init__(master)
        self._table: dict[str, list[list[Callable]]] = {}

    def invalidate(self) -> None:
        self._table = {}

    def register(self, addon: Any) -> Any:
        self.invalidate()
        return super().register(addon)

    def add(self, *addons: Any) -> None:
        super().add(*addons)
        self.invalidate()

    def remove(self, addon: Any) -> None:
        super().remove(addon)
        self.invalidate()

    def _configure_all(self, updated: set[str]) -> None:
        super()._configure_all(updated)
        self.invalidate()

    def _hooks(self, event: hooks.Hook) -> list[list[Callable]]:
        groups = self._table.get(event.name)
        if groups is None:
            groups = []
            for top in self.chain:
                with addonmanager.safecall():  # a hook attribute that is not callable: logged, skipped
                    if funcs := [func for _, func in self._iter_hooks(top, event)]:  # mitmproxy's own walk
                        groups.append(funcs)
            self._table[event.name] = groups
        return groups

    async def trigger_event(self, event: hooks.Hook) -> None:
        groups = self._hooks(event)
        if not groups:
            return
        args = _hook_args(event)
        for funcs in groups:
            try:
                for func in funcs:
                    result = func(*args)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception:
                with addonmanager.safecall():  # logs it exactly as mitmproxy does ("Addon error: ...")
                    raise

    async def handle_lifecycle(self, event: hooks.Hook) -> None:
        await self.trigger_event(event)
        if "update" in self._table and not self._table["update"]:
            return  # nobody handles update: skip building the event
        message = _hook_args(event)[0]
        if isinstance(message, flow.Flow):
            await self.trigger_event(hooks.UpdateHook([message]))
