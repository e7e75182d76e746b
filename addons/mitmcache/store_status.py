"""What the store's state adds to health, statistics and metrics.

Statistics stay per process (``"scope": "process"``: each proxy counts its own requests and its own
in-process tier); with a shared tier, its own figures as Redis gives them are added under
``"shared"``. Health stays 200 while the shared store is down -- ``"status": "degraded"`` with the
store's state says so -- and two metrics follow it: ``mitmcache_store_up`` and
``mitmcache_store_unreadable_total`` (values found that this cache cannot read).
"""

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .metrics import PREFIX

if TYPE_CHECKING:
    from .disk_tier import DiskTier
    from .shared_tier import SharedTier

    type Tier = SharedTier | DiskTier


def store_health(shared: "Tier | None") -> dict[str, Any]:
    if shared is None:
        return {"status": "ok", "store": {"backend": "memory", "state": "up"}}
    health = shared.health()
    return {"status": "ok" if health["state"] == "up" else "degraded", "store": health}


async def store_stats(shared: "Tier | None") -> dict[str, Any]:
    stats: dict[str, Any] = {
        "scope": "process",
        "store": "memory" if shared is None else shared.location.shown,
    }
    if shared is not None:  # Redis's figures, or the disk store's (store.selection.Backend)
        stats[
            shared.location.backend.value if shared.location.backend.value == "disk" else "shared"
        ] = await shared.figures()
    return stats


class StoreCollector:
    """A ``prometheus_client`` collector of the store's state, read at scrape time."""

    def __init__(self, shared: Callable[[], "Tier | None"]) -> None:
        self._shared = shared

    def collect(self) -> Iterator[Metric]:
        shared = self._shared()
        up = shared is None or shared.up
        yield GaugeMetricFamily(
            f"{PREFIX}_store_up",
            "1 while the cache's store can be used (always, for memory); 0 while the shared store is "
            "down and this process serves from its own tier.",
            value=1 if up else 0,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_store_unreadable",
            "Stored values this cache could not read (corrupt, foreign, or written by another "
            "version): each was a miss.",
            value=0 if shared is None else shared.unreadable,
        )
