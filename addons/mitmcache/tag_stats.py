"""What purging and refreshing by tag did: operations by action, the entries they reached, and how
many entries each operation reached (a histogram), as JSON for ``/__cache/stats`` and as
Prometheus metrics. How many tags the stored entries carry is the store's figure (``Usage.tags``).
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .metrics import PREFIX

BUCKETS = (1, 10, 100, 1000, 10_000, 100_000)  # entries reached by one operation (upper bounds)


class TagAction(StrEnum):
    PURGE = "purge"  # dropped
    SOFT_PURGE = "soft_purge"  # marked stale, served while one refresh runs
    REFRESH = "refresh"  # refreshed in the background
    CLEAR_CACHE = "clear_cache"  # Clear-Cache-Tag: hot entries refreshed, cold ones dropped


@dataclass
class TagStats:
    operations: dict[TagAction, int] = field(default_factory=lambda: dict.fromkeys(TagAction, 0))
    entries: dict[TagAction, int] = field(default_factory=lambda: dict.fromkeys(TagAction, 0))
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))  # not cumulative
    largest: int = 0

    def record(self, action: TagAction, entries: int) -> None:
        """One operation on one or more tags reached ``entries`` entries."""
        self.operations[action] += 1
        self.entries[action] += entries
        self.buckets[next((i for i, bound in enumerate(BUCKETS) if entries <= bound), len(BUCKETS))] += 1
        self.largest = max(self.largest, entries)

    @property
    def count(self) -> int:
        return sum(self.operations.values())

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, operations that reached at most that many entries), ``+Inf`` last."""
        total, out = 0, []
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), self.buckets, strict=True):
            total += n
            out.append((bound, total))
        return out

    def as_json(self, known: int) -> dict[str, Any]:
        return {
            "known": known,
            "operations": {a.value: n for a, n in self.operations.items()},
            "entries": {a.value: n for a, n in self.entries.items()},
            "entries_per_operation": {
                "count": self.count,
                "sum": sum(self.entries.values()),
                "max": self.largest,
                "buckets": dict(self.cumulative()),
            },
        }


class TagCollector:
    """Prometheus metrics of the tags, read at scrape time."""

    def __init__(self, stats: TagStats, known: Callable[[], int]) -> None:
        self._stats, self._known = stats, known

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        yield GaugeMetricFamily(
            f"{PREFIX}_tags", "Distinct tags the stored entries carry.", value=self._known()
        )
        operations = CounterMetricFamily(
            f"{PREFIX}_tag_operations",
            "Purges and refreshes by tag, by action: purge, soft_purge, refresh, clear_cache (Clear-Cache-Tag).",
            labels=["action"],
        )
        reached = CounterMetricFamily(
            f"{PREFIX}_tag_entries",
            "Entries purges and refreshes by tag reached, by action.",
            labels=["action"],
        )
        for action in TagAction:
            operations.add_metric([action.value], stats.operations[action])
            reached.add_metric([action.value], stats.entries[action])
        yield operations
        yield reached
        yield HistogramMetricFamily(
            f"{PREFIX}_tag_operation_entries",
            "Entries one purge or refresh by tag reached.",
            buckets=[(bound, float(n)) for bound, n in stats.cumulative()],
            sum_value=float(sum(stats.entries.values())),
        )
