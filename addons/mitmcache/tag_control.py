"""The control plane's operations by tag: purge (or soft purge), refresh, and the Clear-Cache-Tag
instruction, shared by the admin API (``purge?tag=``, ``refresh?tag=``), the ``Clear-Cache-Tag``
field (from a client with the admin key, or on any upstream response) and the commands
``cache.purge.tag``, ``cache.purge.tag.soft`` and ``cache.refresh.tag``. They call the engine.

* A purge drops every entry carrying one of the tags, inside the store (and, with a shared store,
  in every process's in-process tier).
* A soft purge marks them stale instead: served stale only by the usual rules (the refresh window,
  stale-while-revalidate, ...) while one refresh runs; others revalidate or miss.
* A refresh does for each tagged URL what ``refresh?url=`` does.
* Clear-Cache-Tag does for each tagged URL what ``Clear-Cache`` does: refreshes the variants a
  client asked for within the refresh window and drops the others.
"""

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from mitmproxy import command, exceptions

from . import summary
from .config import Settings
from .core import run_eagerly
from .counters import Count
from .engine import Engine
from .entry import Stored
from .policy.lifecycle import refreshable_in_background
from .policy.tags import parse_tag_list
from .tag_stats import TagAction, TagStats

log = logging.getLogger("mitmcache")


class TagControl:
    def __init__(self, engine: Engine, settings: Callable[[], Settings]) -> None:
        self.engine = engine
        self._settings = settings
        self.stats = TagStats()

    async def purge(self, tags: Sequence[str], *, soft: bool = False, by: str = "") -> dict[str, Any]:
        """Drop (or, ``soft``, mark stale) every entry carrying one of ``tags``."""
        engine, now, reached = self.engine, time.time(), 0
        for tag in tags:
            reached += await (engine.soft_purge_tag(tag, now) if soft else engine.purge_tag(tag))
        engine.counters.add(Count.PURGES)
        if not soft:
            engine.counters.add(Count.PURGED, reached)
        self.stats.record(TagAction.SOFT_PURGE if soft else TagAction.PURGE, reached)
        what = "marked stale" if soft else "dropped"
        log.info("control: purge of tags %s%s: %d entries %s", " ".join(tags), by, reached, what)
        return {"tags": list(tags), "purged": reached, "soft": soft}

    async def _tagged(self, tags: Sequence[str]) -> dict[str, list[Stored]]:
        """The entries carrying any of ``tags``, each once, by URL."""
        found: dict[str, dict[int, Stored]] = {}
        for tag in tags:
            for stored in await self.engine.tagged(tag):
                found.setdefault(stored.entry.key, {})[stored.entry.version] = stored
        return {key: list(variants.values()) for key, variants in sorted(found.items())}

    async def refresh(self, tags: Sequence[str], by: str = "") -> dict[str, Any]:
        """Refresh every entry carrying one of ``tags`` in the background, as ``refresh?url=`` does:
        the stored copies are served meanwhile; those that vary on credentials are dropped."""
        refreshing = cleared = 0
        tagged = await self._tagged(tags)
        for key, variants in tagged.items():
            refreshable = [s for s in variants if refreshable_in_background(s.entry)]
            for stored in variants:
                if stored not in refreshable:
                    cleared += await self.engine.discard(stored)
            refreshing += len(refreshable)
            self.engine.refresh(key, refreshable)
        self.stats.record(TagAction.REFRESH, refreshing + cleared)
        log.info(
            "control: refresh of tags %s%s: %d entries of %d URLs (%d dropped: they vary on credentials)",
            " ".join(tags),
            by,
            refreshing,
            len(tagged),
            cleared,
        )
        result = "refreshing" if refreshing else "cleared" if cleared else "not_cached"
        answer = {"tags": list(tags), "result": result, "refreshing": refreshing, "keys": len(tagged)}
        if cleared:
            answer["cleared"] = cleared
        return answer

    async def clear_cache(self, tags: Sequence[str], by: str = "") -> dict[str, Any]:
        """Clear-Cache-Tag: each entry carrying one of ``tags`` that a client asked for within the
        refresh window is refreshed in the background (its copy served meanwhile); the others --
        and those that vary on credentials -- are dropped."""
        now, window = time.time(), self._settings().refresh_window
        hot = cleared = 0
        tagged = await self._tagged(tags)
        for key, variants in tagged.items():
            refreshing = []
            for stored in variants:
                if now - stored.meta.last_access <= window and refreshable_in_background(stored.entry):
                    refreshing.append(stored)
                else:
                    cleared += await self.engine.discard(stored)
            self.engine.forget_unshareable(key)
            self.engine.refresh(key, refreshing)
            hot += len(refreshing)
        if cleared:
            self.engine.counters.add(Count.PURGES)
            self.engine.counters.add(Count.CLEAR_CACHE_DROPPED, cleared)
        self.stats.record(TagAction.CLEAR_CACHE, hot + cleared)
        result = "refreshing" if hot else "cleared" if cleared else "not_cached"
        log.info(
            "control: Clear-Cache-Tag %s%s: %s (%d refreshing, %d cleared)",
            " ".join(tags),
            by,
            result,
            hot,
            cleared,
        )
        return {
            "tags": list(tags),
            "result": result,
            "refreshing": hot,
            "cleared": cleared,
            "keys": len(tagged),
            "refresh_window": window,
        }

    # -- commands --------------------------------------------------------------------------------

    @staticmethod
    def _parse(tags: Sequence[str]) -> tuple[str, ...]:
        try:
            parsed = parse_tag_list(list(tags))
        except ValueError as e:
            raise exceptions.CommandError(str(e)) from None
        if not parsed:
            raise exceptions.CommandError("name at least one tag")
        return parsed

    @staticmethod
    def _line(tags: Sequence[str], result: dict[str, Any] | None) -> str:
        """``tags=a,b purged=3 soft=false`` (``scheduled=true`` while a networked store works)."""
        return f"tags={','.join(tags)} {summary.fields(result)}"

    @command.command("cache.purge.tag")
    def cmd_purge_tag(self, *tags: str) -> str:
        """Drop every entry carrying one of these tags (surrogate keys), e.g. cache.purge.tag item-42."""
        parsed = self._parse(tags)
        return self._line(parsed, run_eagerly(self.purge(parsed, by=" (by command)")))

    @command.command("cache.purge.tag.soft")
    def cmd_purge_tag_soft(self, *tags: str) -> str:
        """Mark every entry carrying one of these tags stale: served stale while one refresh runs."""
        parsed = self._parse(tags)
        return self._line(parsed, run_eagerly(self.purge(parsed, soft=True, by=" (by command)")))

    @command.command("cache.refresh.tag")
    def cmd_refresh_tag(self, *tags: str) -> str:
        """Refresh every entry carrying one of these tags in the background."""
        parsed = self._parse(tags)
        return self._line(parsed, run_eagerly(self.refresh(parsed, by=" (by command)")))
