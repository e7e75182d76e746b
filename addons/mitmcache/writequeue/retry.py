"""What a delivery's outcome means for its job, and when to try again: pure functions.

2xx and 3xx are delivered (a redirect is the upstream's answer, not a failure to deliver); the
statuses that say "not now" (RFC 9110 408, 503, 429, RFC 8470 425) and gateway failures are retried
with exponential back-off and full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"),
honouring Retry-After; anything else is the upstream refusing the request itself, which no retry
would change: the job is dead (kept, visible, re-queueable).
"""

import enum
import random
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


def verdict(status: int | None, attempts: int, max_retries: int) -> Verdict:
    """``status`` None is a network error or timeout; ``attempts`` counts the one just made."""
    if status is not None and 200 <= status < 400:
        return Verdict.DELIVERED
    if (status is None or status in RETRYABLE_STATUSES) and attempts <= max_retries:
        return Verdict.RETRY
    return Verdict.DEAD


def backoff(attempts: int, retry_after: float | None = None, rand: random.Random | None = None) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: uniform in
    [0, min(cap, base * 2**(attempts-1))], but never sooner than Retry-After (itself capped)."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(attempts - 1, 0))
    delay = (rand or random).uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, BACKOFF_CAP))
    return delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(parsedate_to_datetime(value).timestamp() - now, 0.0)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
