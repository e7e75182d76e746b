"""The write queue's rows of the settings table (docs/write-queue.md): declared with the cache's
so that one ``.env`` and one error format serve both, parsed by the write queue's own addon
(``writequeue/settings.py``)."""

from ..parsers import (
    at_least_one,
    byte_size,
    choice,
    count,
    optional_positive_seconds,
    rate,
    seconds,
    success_status,
    text,
)
from ..settings_table import Setting
from .queue_url import parse_queue_url
from .routes import parse_routes

# The write queue's settings (addons/mitmcache/writequeue, docs/write-queue.md), parsed by its own
# addon: the cache's Settings never see them.
WRITE_QUEUE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "cache_data_dir",
        "CACHE_DATA_DIR",
        "data",
        text,
        "a directory path",
        "Directory of the proxy's own files (the disk store's cache.db, the write queue's SQLite "
        "file), relative to the working directory; created with mode 0700 at start.",
    ),
    Setting(
        "async_routes",
        "ASYNC_ROUTES",
        "",
        parse_routes,
        "comma-separated METHOD /path-glob items such as POST /events/*, PUT /items/* (not GET or HEAD)",
        "Writes answered at once and delivered to the upstream in the background: comma-separated "
        "METHOD /path-glob (fnmatch on the path without the query; * crosses /). Empty: off.",
    ),
    Setting(
        "async_response_status",
        "ASYNC_RESPONSE_STATUS",
        "202",
        success_status,
        "a status from 200 to 299",
        "Status of the answer to a queued write.",
    ),
    Setting(
        "async_queue_url",
        "ASYNC_QUEUE_URL",
        "",
        parse_queue_url,
        "sqlite:///absolute/path or postgresql://user[:password]@host:port/db",
        "Where queued writes are kept: sqlite:///absolute/path, or postgresql://user[:password]@host:port/db "
        "to share one queue between proxies. Empty: queue.db in CACHE_DATA_DIR.",
    ),
    Setting(
        "async_enqueue_rate",
        "ASYNC_ENQUEUE_RATE",
        "0",
        rate,
        "a number of requests per second >= 0",
        "Below this many routed requests in the last second (per process), forward them synchronously "
        "(the client gets the upstream's answer); above it, queue them. 0: always queue.",
    ),
    Setting(
        "async_workers",
        "ASYNC_WORKERS",
        "8",
        at_least_one,
        "a whole number >= 1",
        "Queued writes being delivered at once (per process).",
    ),
    Setting(
        "async_rate",
        "ASYNC_RATE",
        "0",
        rate,
        "a number of deliveries per second >= 0",
        "Most deliveries started per second (per process; a token bucket holding one second's worth). "
        "0: no limit.",
    ),
    Setting(
        "async_max_retries",
        "ASYNC_MAX_RETRIES",
        "10",
        count,
        "a whole number >= 0",
        "Attempts after the first before a queued write is dead (kept and re-queueable). 0: no retries.",
    ),
    Setting(
        "async_request_timeout",
        "ASYNC_REQUEST_TIMEOUT",
        "",
        optional_positive_seconds,
        "a number of seconds > 0, or nothing for REQ_TIMEOUT",
        "Seconds one delivery may take. Empty: REQ_TIMEOUT.",
    ),
    Setting(
        "async_shutdown_timeout",
        "ASYNC_SHUTDOWN_TIMEOUT",
        "10",
        seconds,
        "a number of seconds >= 0",
        "On SIGTERM/SIGINT, seconds the deliveries in flight may take to finish; the rest are released "
        "for the next start.",
    ),
    Setting(
        "async_ordered",
        "ASYNC_ORDERED",
        "none",
        choice("none", "url"),
        "none or url",
        "url: deliveries to the same URL keep the order they were accepted in (a later one waits while "
        "an earlier one is retried; a dead one no longer blocks). none: no order.",
    ),
    Setting(
        "async_max_body_bytes",
        "ASYNC_MAX_BODY_BYTES",
        "1MB",
        byte_size,
        "a size such as 1048576, 512k, 1MB",
        "Largest body of a queued write; a larger one gets 413.",
    ),
    Setting(
        "async_max_queued",
        "ASYNC_MAX_QUEUED",
        "100000",
        at_least_one,
        "a whole number >= 1",
        "Most writes waiting or being delivered; when full, new writes get 503 with Retry-After.",
    ),
    Setting(
        "async_keep_secs",
        "ASYNC_KEEP_SECS",
        "86400",
        seconds,
        "a number of seconds >= 0",
        "How long delivered and dead writes (and their Idempotency-Keys) are kept before they are pruned.",
    ),
)
