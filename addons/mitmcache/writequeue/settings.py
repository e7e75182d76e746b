"""The write queue's settings, parsed from its options (``config.WRITE_QUEUE_SETTINGS``)."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import config
from .queue_url import QueueURL, default_queue_url
from .routes import Route

# Settings whose parser says what is wrong with the value (the others only that it is wrong).
_EXPLAINED = frozenset({"async_routes", "async_queue_url"})
BY_OPTION = {s.option: s for s in config.WRITE_QUEUE_SETTINGS}
OPTIONS = tuple(BY_OPTION)
LEASE_MARGIN = 10.0  # a lease outlives the longest delivery by this much


@dataclass(frozen=True, slots=True)
class QueueSettings:
    data_dir: Path
    routes: tuple[Route, ...]
    response_status: int
    queue_url: QueueURL
    enqueue_rate: float
    workers: int
    rate: float
    max_retries: int
    request_timeout: float
    shutdown_timeout: float
    ordered: bool
    max_body_bytes: int
    max_queued: int
    keep_secs: float

    @property
    def enabled(self) -> bool:
        return bool(self.routes)

    @property
    def lease_secs(self) -> float:
        return self.request_timeout + LEASE_MARGIN


def parse_option(option: str, raw: str, source: str | None = None) -> object:
    setting = BY_OPTION[option]
    try:
        return setting.parse(raw)
    except ValueError as e:
        raise config.invalid(setting, raw, source, str(e) if option in _EXPLAINED else "") from None


def parse_queue_settings(
    raw: Mapping[str, str], upstream_timeout: float, cwd: Path, sources: Mapping[str, str] | None = None
) -> QueueSettings:
    """Every option of the write queue; the first bad one raises ValueError naming it and, given
    ``sources``, where its value came from. An empty ASYNC_REQUEST_TIMEOUT inherits REQ_TIMEOUT
    (``upstream_timeout``)."""
    sources = sources or {}
    values = {option: parse_option(option, raw[option], sources.get(option)) for option in OPTIONS}
    data_dir = cwd / str(values["cache_data_dir"] or "data")
    queue_url = values["async_queue_url"] or default_queue_url(data_dir)
    timeout = values["async_request_timeout"]
    return QueueSettings(
        data_dir=data_dir,
        routes=values["async_routes"],  # type: ignore[arg-type]
        response_status=values["async_response_status"],  # type: ignore[arg-type]
        queue_url=queue_url,  # type: ignore[arg-type]
        enqueue_rate=values["async_enqueue_rate"],  # type: ignore[arg-type]
        workers=values["async_workers"],  # type: ignore[arg-type]
        rate=values["async_rate"],  # type: ignore[arg-type]
        max_retries=values["async_max_retries"],  # type: ignore[arg-type]
        request_timeout=upstream_timeout if timeout is None else timeout,  # type: ignore[arg-type]
        shutdown_timeout=values["async_shutdown_timeout"],  # type: ignore[arg-type]
        ordered=values["async_ordered"] == "url",
        max_body_bytes=values["async_max_body_bytes"],  # type: ignore[arg-type]
        max_queued=values["async_max_queued"],  # type: ignore[arg-type]
        keep_secs=values["async_keep_secs"],  # type: ignore[arg-type]
    )
