"""The write queue's counters and its Prometheus metrics (``mitmcache_queue_*``), registered in
the control plane's registry next to the cache's. Counters are this process's; the depth by state
and the oldest queued write are the queue's (every proxy on it), read at most once a second."""

import bisect
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from ..metrics import PREFIX
from .store import Counts

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
RATE_WINDOW = 10.0  # seconds over which delivery_rate is measured


@dataclass
class QueueMetrics:
    counts: Counter[str] = field(
        default_factory=Counter
    )  # accepted, delivered, retried, dead, rejected:<why>
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    snapshot: Counts | None = None  # the last read of the queue
    snapshot_at: float = 0.0
    reachable: bool = True  # the last store operation of the watcher worked

    def observe_latency(self, seconds: float) -> None:
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def summary(self, now: float | None = None) -> dict[str, object]:
        """``GET {prefix}/queue``'s answer, from the last snapshot."""
        now = time.time() if now is None else now
        s = self.snapshot
        if s is None:
            return {"jobs": None, "oldest_queued_age": None, "delivery_rate": None}
        return {
            "jobs": {
                "queued": s.queued,
                "delivering": s.delivering,
                "delivered": s.delivered,
                "dead": s.dead,
            },
            "oldest_queued_age": None
            if s.oldest_queued_at is None
            else round(max(now - s.oldest_queued_at, 0), 3),
            "delivery_rate": round(s.delivered_recently / RATE_WINDOW, 3),
        }


class QueueCollector:
    def __init__(self, metrics: QueueMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        for name, doc in (
            ("accepted", "Writes accepted into the queue by this process."),
            ("delivered", "Queued writes this process delivered (2xx or 3xx from the upstream)."),
            ("retried", "Delivery attempts of this process that will be retried."),
            ("dead", "Queued writes this process gave up on (refused, or out of retries)."),
        ):
            yield CounterMetricFamily(f"{PREFIX}_queue_{name}", doc, value=m.counts[name])
        rejected = CounterMetricFamily(
            f"{PREFIX}_queue_rejected", "Routed writes not accepted, by reason.", labels=["reason"]
        )
        for key, value in sorted(m.counts.items()):
            if key.startswith("rejected:"):
                rejected.add_metric([key.partition(":")[2]], value)
        yield rejected
        if m.snapshot is not None:
            depth = GaugeMetricFamily(f"{PREFIX}_queue_jobs", "Jobs in the queue by state.", labels=["state"])
            for state in ("queued", "delivering", "delivered", "dead"):
                depth.add_metric([state], getattr(m.snapshot, state))
            yield depth
            oldest = m.snapshot.oldest_queued_at
            yield GaugeMetricFamily(
                f"{PREFIX}_queue_oldest_queued_age_seconds",
                "Age of the oldest write waiting for delivery (0: none).",
                value=0 if oldest is None else max(time.time() - oldest, 0),
            )
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_reachable",
            "Whether the queue's store answered its last read.",
            value=int(m.reachable),
        )
        cumulative, buckets = 0, []
        for bound, n in zip((*map(str, LATENCY_BUCKETS), "+Inf"), m.latency_buckets, strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            f"{PREFIX}_queue_delivery_latency_seconds",
            "From acceptance to delivery, of the writes this process delivered.",
            buckets=buckets,
            sum_value=m.latency_sum,
        )
