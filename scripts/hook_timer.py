"""A mitmproxy script that times the cache's hooks in a real proxy (a measuring tool, not product code).

``mitmdump -s scripts/hook_timer.py`` loads the cache with its hooks and main steps wrapped in
``perf_counter_ns`` timers, and counts the garbage collector's time per generation; with
``HOOK_TIMER_CACHE=0`` it loads no cache, only the collector's accounting (the pass-through's
baseline). At shutdown it writes the totals as JSON to ``$HOOK_TIMER_OUT``. Profilers that sample
(py-spy) mis-attribute lines inside coroutines and blame garbage collection on whatever allocated;
these are exact sums. ``scripts/hook_times.py`` runs it under load and prints the table.
"""

import gc
import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "addons"))

totals: dict[str, list[int]] = {}  # name -> [nanoseconds, calls]
collections: dict[str, list[int]] = {}  # gen0/gen1/gen2 -> [nanoseconds, collections]
_gc_started = 0


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def add(started: int) -> None:
        total = totals.setdefault(name, [0, 0])
        total[0] += time.perf_counter_ns() - started
        total[1] += 1

    if inspect.iscoroutinefunction(fn):

        async def timed_coroutine(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                return await fn(*args, **kwargs)
            finally:
                add(started)

        return timed_coroutine

    def timed_call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter_ns()
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            add(started)
            raise
        if not inspect.isawaitable(result):
            add(started)
            return result
        # A hook that hands mitmproxy a coroutine: its time is the call's and the coroutine's.
        before = time.perf_counter_ns() - started

        async def finish() -> Any:
            resumed = time.perf_counter_ns()
            try:
                return await result
            finally:
                add(resumed - before)

        return finish()

    return timed_call


def _on_gc(phase: str, info: dict[str, int]) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter_ns()
        return
    total = collections.setdefault(f"gen{info['generation']}", [0, 0])
    total[0] += time.perf_counter_ns() - _gc_started
    total[1] += 1


class HookTimerReport:
    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def done(self) -> None:
        report = {
            "hooks": totals,
            "gc": collections,
            "tracked_objects": len(gc.get_objects()),
            "entries": run_eagerly(self.cache.engine.read_usage()).entries if self.cache else 0,
        }
        Path(os.environ.get("HOOK_TIMER_OUT", "hook-times.json")).write_text(json.dumps(report))


gc.callbacks.append(_on_gc)
cache = None
if os.environ.get("HOOK_TIMER_CACHE", "1") != "0":
    from mitmcache import addon as cache_module
    from mitmcache import answers, engine, forwarding
    from mitmcache.core import run_eagerly

    cache = cache_module.Cache()
    for hook in ("requestheaders", "request", "responseheaders", "response", "error"):
        setattr(cache, hook, timed(hook, getattr(cache, hook)))
    engine.admit = timed("admit", engine.admit)
    annotate = timed("annotate", answers.annotate)
    answers.annotate = forwarding.annotate = cache_module.annotate = annotate
    cache_module.cache_key = timed("cache_key", cache_module.cache_key)
    cache_module.responses.add_status = timed("add_status", cache_module.responses.add_status)
    store = cache.engine.core.store
    store.put = timed("store.put", store.put)
    store.variants = timed("store.variants", store.variants)
    store.held = timed("store.held", store.held)
    cache.engine.lookup = timed("engine.lookup", cache.engine.lookup)
    cache.engine.lookup_held = timed("engine.lookup_held", cache.engine.lookup_held)

addons = [a for a in (cache, HookTimerReport(cache)) if a is not None]
