"""Settings: their names, defaults, environment variables, and validation.

Each setting is a mitmproxy option (visible in mitmweb's options editor, settable with ``--set``)
whose default comes from the environment, then from a ``.env`` file, then from the table below:
``--set`` > environment > ``.env`` > built-in default. Options are declared as strings and parsed
here, because mitmproxy silently drops an addon whose ``int`` option gets a bad ``--set`` value
(``OptManager.process_deferred`` fails to parse it while the script registers its options, and
mitmproxy's script loader logs that and leaves the script unloaded). A ``ValueError`` from here
becomes an ``OptionsError`` in ``configure``, which stops startup with one line naming the setting
and where its value came from.
"""

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from .policy.lifecycle import Lifecycle, RefreshMode
from .policy.storable import Rules
from .policy.tags import TagRules
from .store.selection import StoreLocation, redacted, store_location
from .writequeue.queue_url import parse_queue_url
from .writequeue.routes import parse_routes

ENV_FILE_VARIABLE = "CACHE_ENV_FILE"


def seconds(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError
    return value


def positive_seconds(raw: str) -> float:
    value = seconds(raw)
    if value == 0:
        raise ValueError
    return value


def count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError
    return value


_BYTE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


def byte_size(raw: str) -> int:
    """``1048576``, ``512k``, ``64MB``, ``1g`` (binary units, case-insensitive)."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", raw)
    if not match or match.group(2).lower() not in _BYTE_UNITS:
        raise ValueError
    return int(match.group(1)) * _BYTE_UNITS[match.group(2).lower()]


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.strip().lower() not in allowed:
            raise ValueError
        return raw.strip().lower()

    parse.__doc__ = "one of " + ", ".join(allowed)
    return parse


def path_prefix(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith("/") or len(value) < 2 or any(c in value for c in "?# "):
        raise ValueError
    return value


def text(raw: str) -> str:
    return raw.strip()


def percent(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 100:
        raise ValueError
    return value


def field_names(raw: str) -> tuple[str, ...]:
    """``CDN-Cache-Control, Fastly-Cache-Control``: header field names (tokens), lower-cased, in
    order; empty for none."""
    names = tuple(name.strip().lower() for name in raw.split(",") if name.strip())
    if not all(re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name) for name in names):
        raise ValueError
    return names


def on_off(raw: str) -> bool:
    """``on`` or ``off`` (also true/false, yes/no, 1/0)."""
    value = raw.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise ValueError


def token(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", value):
        raise ValueError
    return value


def at_least_one(raw: str) -> int:
    value = count(raw)
    if value < 1:
        raise ValueError
    return value


def rate(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError
    return value


def success_status(raw: str) -> int:
    value = int(raw)
    if not 200 <= value <= 299:
        raise ValueError
    return value


def optional_positive_seconds(raw: str) -> float | None:
    """Empty: inherit (None)."""
    return positive_seconds(raw) if raw.strip() else None


@dataclass(frozen=True)
class Setting:
    option: str
    env: str
    default: str
    parse: Callable[[str], Any]
    expected: str  # what a valid value looks like, for error messages
    help: str
    shown: Callable[[str], str] = str  # how a value appears in messages (secrets redacted)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "cache_ttl",
        "DEFAULT_CACHE_EXPIRY_TIME_SECS",
        "60",
        seconds,
        "a number of seconds >= 0",
        "Freshness lifetime, in seconds, of responses that carry none (no max-age, s-maxage or "
        "Expires). 0 makes the proxy a pure RFC 9111 shared cache.",
    ),
    Setting(
        "cache_ttl_mode",
        "CACHE_TTL_MODE",
        "fallback",
        choice("fallback", "override"),
        "fallback or override",
        "fallback: cache_ttl applies only where the upstream gives no lifetime. override: cache_ttl "
        "applies to every storable response, ignoring the upstream's lifetimes.",
    ),
    Setting(
        "cache_heuristic_percent",
        "CACHE_HEURISTIC_PERCENT",
        "10",
        percent,
        "a percentage from 0 to 100",
        "Pure RFC 9111 mode only (cache_ttl 0): a response without explicit freshness but with "
        "Last-Modified stays fresh for this percentage of the time since it was last modified (RFC 9111 "
        "§4.2.2), at most a day. 0: off. With a cache_ttl, cache_ttl is the fallback instead.",
    ),
    Setting(
        "cache_targeted_fields",
        "CACHE_TARGETED_FIELDS",
        "CDN-Cache-Control",
        field_names,
        "comma-separated header field names, or nothing",
        "Targeted cache-control fields this cache obeys (RFC 9213), the first valid one winning: it "
        "replaces Cache-Control and Expires for storing and freshness, and still reaches clients. "
        "Empty: none.",
    ),
    Setting(
        "cache_refresh_window",
        "DEFAULT_REFRESH_WINDOW_SECS",
        "60",
        seconds,
        "a number of seconds >= 0",
        "An entry a client asked for within this many seconds is kept past its expiry and refreshed in "
        "the background (clients get the stale copy meanwhile; see cache_refresh_mode); one nobody "
        "asked for is dropped once its stale allowances (this window, cache_stale_if_error, "
        "cache_keep_stale for entries with validators) run out.",
    ),
    Setting(
        "cache_upstream_timeout",
        "REQ_TIMEOUT",
        "10",
        positive_seconds,
        "a number of seconds > 0",
        "Upstream fetch timeout, in seconds; also the longest a held (coalesced) client waits.",
    ),
    Setting(
        "cache_admin_key",
        "CLEAR_CACHE_KEY",
        "",
        text,
        "any string",
        "Password of the control endpoints (Clear-Cache header, admin API). Empty: they refuse.",
    ),
    Setting(
        "cache_admin_prefix",
        "CACHE_ADMIN_PREFIX",
        "/__cache",
        path_prefix,
        "a path such as /__cache",
        "Path prefix reserved for the admin API (health, stats, ...); never forwarded upstream.",
    ),
    Setting(
        "cache_max_bytes",
        "CACHE_MAX_BYTES",
        "256MB",
        byte_size,
        "a size such as 268435456, 512k, 64MB, 1g",
        "Upper bound of the memory the stored entries use; least recently used entries are evicted.",
    ),
    Setting(
        "cache_max_entries",
        "CACHE_MAX_ENTRIES",
        "100000",
        count,
        "a whole number >= 0",
        "Upper bound of the number of stored entries (0: no bound beyond cache_max_bytes).",
    ),
    Setting(
        "cache_max_object_bytes",
        "CACHE_MAX_OBJECT_BYTES",
        "8MB",
        byte_size,
        "a size such as 1048576, 512k, 8MB",
        "Largest body stored. Larger bodies, and bodies of unknown length that grow past it, are "
        "streamed to the client and not stored.",
    ),
    Setting(
        "cache_stale_if_error",
        "CACHE_STALE_IF_ERROR_SECS",
        "300",
        seconds,
        "a number of seconds >= 0",
        "How long past its expiry a stale copy may stand in for a failing upstream, where the upstream "
        "gave no stale-if-error of its own and did not forbid stale (must-revalidate, ...).",
    ),
    Setting(
        "cache_hit_for_miss",
        "CACHE_HIT_FOR_MISS_SECS",
        "30",
        seconds,
        "a number of seconds >= 0",
        "How long a URL whose response could not be shared (private, Set-Cookie, too large, ...) goes "
        "straight upstream instead of waiting behind another request for it.",
    ),
    Setting(
        "cache_refresh_ahead",
        "CACHE_REFRESH_AHEAD_SECS",
        "0",
        seconds,
        "a number of seconds >= 0",
        "Refresh an entry a client asked for this many seconds before it expires (jittered), so that "
        "hot keys are never even served stale. 0: off. Costs upstream requests for keys that cool down.",
    ),
    Setting(
        "cache_refresh_mode",
        "CACHE_REFRESH_MODE",
        "on-request",
        choice("on-request", "continuous"),
        "on-request or continuous",
        "on-request: at expiry an entry is refreshed in the background only if a client asked for it "
        "since it was last stored (otherwise the next request within the refresh window gets the stale "
        "copy at once and starts one refresh), so background fetches never outnumber client requests. "
        "continuous: refreshed at every expiry while a client asked for it within the refresh window.",
    ),
    Setting(
        "cache_keep_stale",
        "CACHE_KEEP_STALE_SECS",
        "3600",
        seconds,
        "a number of seconds >= 0",
        "How long past its expiry a copy with an ETag or Last-Modified is kept, so that a request can "
        "still revalidate it (a 304 renews it) or have it stand in for an unreachable upstream.",
    ),
    Setting(
        "cache_refresh_concurrency",
        "CACHE_REFRESH_CONCURRENCY",
        "8",
        count,
        "a whole number >= 1",
        "Most background refreshes and revalidations running against the upstream at once.",
    ),
    Setting(
        "cache_web_max_flows",
        "CACHE_WEB_MAX_FLOWS",
        "10000",
        count,
        "a whole number >= 0",
        "In mitmweb and the mitmproxy console, which keep every flow in memory: keep only the newest this "
        "many finished flows, so a long debugging session does not grow without bound. 0: keep all.",
    ),
    Setting(
        "cache_name",
        "CACHE_NAME",
        "mitmcache",
        token,
        "a token such as mitmcache",
        "This cache's name in the Cache-Status response field (RFC 9211).",
    ),
    Setting(
        "cache_log_level",
        "CACHE_LOG_LEVEL",
        "info",
        choice("debug", "info", "warning", "error"),
        "debug, info, warning or error",
        "Level of the cache's own log lines; debug logs one line per cache decision.",
    ),
    Setting(
        "cache_store",
        "CACHE_STORE",
        "memory",
        store_location,
        "memory, or redis://[[user]:password@]host:port/db (rediss:// for TLS)",
        "Where entries are kept: memory (this process only), or a Redis (or Valkey) shared by every "
        "proxy that names it, with a bounded in-process tier in front (cache_max_bytes and "
        "cache_max_entries bound that tier; Redis bounds itself with maxmemory). The password is "
        "shown redacted.",
        shown=redacted,
    ),
    Setting(
        "cache_tag_fields",
        "CACHE_TAG_FIELDS",
        "Surrogate-Key, Cache-Tag, xkey",
        field_names,
        "comma-separated header field names, or nothing",
        "Response fields that tag a response for purge and refresh by tag: Surrogate-Key and xkey "
        "separate tags with spaces, Cache-Tag with commas (any other field: either). Empty: no tags.",
    ),
    Setting(
        "cache_tag_fields_keep",
        "CACHE_TAG_FIELDS_KEEP",
        "off",
        on_off,
        "on or off",
        "on: clients see the tag fields too. off: they are removed from what clients see (the cache "
        "keeps them).",
    ),
)

BY_OPTION = {s.option: s for s in SETTINGS}

# The write queue's settings (addons/mitmcache/writequeue, docs/write-queue.md), parsed by its own
# addon: the cache's Settings never see them.
WRITE_QUEUE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "cache_data_dir",
        "CACHE_DATA_DIR",
        "data",
        text,
        "a directory path",
        "Directory of the proxy's own files (the write queue's SQLite file), relative to the working "
        "directory; created with mode 0700 at start.",
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

ALL_SETTINGS = SETTINGS + WRITE_QUEUE_SETTINGS


@dataclass(frozen=True, slots=True)
class Settings:
    """The parsed settings, read once per option change rather than on every request."""

    ttl: float
    ttl_mode: str
    heuristic_percent: float
    targeted_fields: tuple[str, ...]
    refresh_window: float
    upstream_timeout: float
    admin_key: str
    admin_prefix: str
    max_bytes: int
    max_entries: int
    max_object_bytes: int
    stale_if_error: float
    hit_for_miss: float
    refresh_ahead: float
    refresh_mode: str
    keep_stale: float
    refresh_concurrency: int
    web_max_flows: int
    name: str
    log_level: str
    store: StoreLocation
    tag_fields: tuple[str, ...]
    tag_fields_keep: bool
    rules: Rules = field(init=False, compare=False)  # what storing needs, built once, not per response
    lifecycle: Lifecycle = field(init=False, compare=False)  # what an entry's life needs, likewise

    def __post_init__(self) -> None:
        rules = Rules(
            default_ttl=self.ttl,
            override=self.ttl_mode == "override",
            heuristic_percent=self.heuristic_percent if self.pure_rfc else 0.0,
            targeted_fields=self.targeted_fields,
            tags=TagRules(self.tag_fields, self.tag_fields_keep),
        )
        object.__setattr__(self, "rules", rules)  # a frozen dataclass's own derived field
        lifecycle = Lifecycle(
            refresh_window=self.refresh_window,
            refresh_ahead=self.refresh_ahead,
            refresh_mode=RefreshMode(self.refresh_mode),
            stale_if_error=self.stale_if_error,
            keep_stale=self.keep_stale,
            pure_rfc=self.pure_rfc,
        )
        object.__setattr__(self, "lifecycle", lifecycle)

    @property
    def serve_stale_in_window(self) -> bool:
        """The refresh window may serve stale copies, except in pure RFC 9111 mode (ttl 0), where
        only the upstream (stale-while-revalidate) or the client (max-stale) may allow it."""
        return self.ttl > 0

    @property
    def pure_rfc(self) -> bool:
        """No configured default lifetime: the proxy is a plain RFC 9111 shared cache, which never
        serves stale without permission and never fetches what no client asked for."""
        return self.ttl == 0


def env_file_values(environ: Mapping[str, str], cwd: Path) -> dict[str, str]:
    """The ``.env`` file's values: ``$CACHE_ENV_FILE`` if set, else ``.env`` in the working directory
    (a relative ``$CACHE_ENV_FILE`` is relative to it too)."""
    path = cwd / (environ.get(ENV_FILE_VARIABLE) or ".env")
    if not path.is_file():
        if environ.get(ENV_FILE_VARIABLE):
            raise ValueError(f"{ENV_FILE_VARIABLE}: no such file: {path}")
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


@dataclass(frozen=True, slots=True)
class Default:
    """An option's default and where it came from, so that an error can say which one to fix."""

    value: str
    source: str  # "environment variable X", "X in /path/.env", "the built-in default"


def resolve_defaults(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> dict[str, Default]:
    """Each option's default: its environment variable, else ``.env``, else the built-in value."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    dotenv = env_file_values(environ, cwd)
    dotenv_path = (cwd / (environ.get(ENV_FILE_VARIABLE) or ".env")).resolve()
    resolved = {}
    for s in ALL_SETTINGS:
        if s.env in environ:
            resolved[s.option] = Default(environ[s.env], f"environment variable {s.env}")
        elif s.env in dotenv:
            resolved[s.option] = Default(dotenv[s.env], f"{s.env} in {dotenv_path}")
        else:
            resolved[s.option] = Default(s.default, "the built-in default")
    return resolved


def defaults(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> dict[str, str]:
    """Each option's default value (see ``resolve_defaults``)."""
    return {option: d.value for option, d in resolve_defaults(environ, cwd).items()}


def value_sources(
    values: Mapping[str, str], registered: Mapping[str, Default], changed: str
) -> dict[str, str]:
    """Where each option's value came from: its default's source while it still has its default
    value, else ``changed`` (``--set`` at startup; an option change while running)."""
    return {
        option: registered[option].source
        if option in registered and value == registered[option].value
        else changed
        for option, value in values.items()
    }


def parse_one(option: str, raw: str, source: str | None = None) -> Any:
    """The option's value; a bad one raises ValueError naming the option, where its value came from
    (``source``) and what a valid value looks like."""
    setting = BY_OPTION[option]
    try:
        value = setting.parse(raw)
        if option == "cache_refresh_concurrency" and value < 1:
            raise ValueError
    except ValueError:
        raise invalid(setting, raw, source) from None
    return value


def invalid(setting: Setting, raw: str, source: str | None = None, why: str = "") -> ValueError:
    """The one-line error naming a setting, where its value came from (``source``) and what a valid
    value looks like; a value that may hold a password (a queue URL) is not shown."""
    shown = "" if setting.env == "ASYNC_QUEUE_URL" else f" {setting.shown(raw)!r}"
    origin = f" (from {source})" if source else ""
    because = f"{why}; " if why else ""
    return ValueError(
        f"invalid value{shown} for {setting.option}{origin}: {because}expected {setting.expected}"
    )


def parse_settings(raw: Mapping[str, str], sources: Mapping[str, str] | None = None) -> Settings:
    """Validate every option; the first bad one raises ValueError naming the option and, given
    ``sources``, where its value came from."""
    sources = sources or {}
    values = {s.option: parse_one(s.option, raw[s.option], sources.get(s.option)) for s in SETTINGS}
    return Settings(**{option.removeprefix("cache_"): value for option, value in values.items()})
