"""The cache's settings table: each setting's option, environment variable, built-in default, parser
and help, in one place (``.env.example`` documents each row, and a unit test checks it does).
``config`` reads the options through it; the write queue's own rows are in
``writequeue/settings_table.py``."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .front_settings import listen_backlog
from .parsers import (
    byte_size,
    choice,
    count,
    field_names,
    on_off,
    path_prefix,
    percent,
    positive_byte_size,
    positive_seconds,
    request_head_size,
    seconds,
    text,
    timeout_seconds,
    token,
)
from .store.selection import redacted, store_location


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
        timeout_seconds,
        "a number of seconds > 0 and at most 3600",
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
        positive_byte_size,
        "a size > 0 such as 268435456, 512k, 64MB, 1g",
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
        positive_byte_size,
        "a size > 0 such as 1048576, 512k, 8MB",
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
        "memory, disk, sqlite:///absolute/path, or redis://[[user]:password@]host:port/db (rediss:// for TLS)",
        "Where entries are kept: memory (this process only), or a Redis (or Valkey) shared by every "
        "proxy that names it, with a bounded in-process tier in front (cache_max_bytes and "
        "cache_max_entries bound that tier; Redis bounds itself with maxmemory). The password is "
        "shown redacted. disk (cache.db in cache_data_dir) or sqlite:///absolute/path: a file on "
        "this machine that survives restarts, with the same in-process tier in front, bounded by "
        "cache_store_max_bytes.",
        shown=redacted,
    ),
    Setting(
        "cache_compress",
        "CACHE_COMPRESS",
        "gzip",
        choice("gzip", "br", "zstd", "off"),
        "gzip, br, zstd or off",
        "Store uncompressed text-like responses (text, JSON, XML, JavaScript, SVG) compressed with this "
        "coding: served as stored to clients that accept it, decoded for the others. off: store bodies "
        "as sent. Responses the upstream encoded, or marked no-transform, are always stored as sent.",
    ),
    Setting(
        "cache_compress_min_bytes",
        "CACHE_COMPRESS_MIN_BYTES",
        "512",
        byte_size,
        "a size such as 512, 1k",
        "Smallest body stored compressed (cache_compress): below it the saving is smaller than an "
        "entry's own bookkeeping.",
    ),
    Setting(
        "cache_body_idle_timeout",
        "CACHE_BODY_IDLE_TIMEOUT_SECS",
        "30",
        positive_seconds,
        "a number of seconds > 0",
        "Longest pause in an upstream response body that is being stored or that other clients wait "
        "for; past it the upstream connection is closed and the waiters get a 504. A stream nobody "
        "waits for and that is not stored is left alone.",
    ),
    Setting(
        "cache_get_body",
        "CACHE_GET_BODY",
        "refuse",
        choice("refuse", "pass"),
        "refuse or pass",
        "GET and HEAD requests with a body: refuse answers 400 (a body is not part of the cache key, so "
        "one client's body would decide what others get); pass streams them upstream, never cached.",
    ),
    Setting(
        "cache_store_max_bytes",
        "CACHE_STORE_MAX_BYTES",
        "1g",
        byte_size,
        "a size such as 268435456, 512k, 64MB, 1g",
        "Upper bound of the disk store (CACHE_STORE=disk or sqlite://...) on disk; least recently "
        "used entries are evicted.",
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
    Setting(
        "cache_cookie_default_ttl",
        "CACHE_COOKIE_DEFAULT_TTL",
        "off",
        choice("on", "off"),
        "on or off",
        "off: the default lifetime (cache_ttl) does not apply to responses to requests that carry "
        "Cookie; they are stored only when the upstream says so (s-maxage, max-age, Expires or public). "
        "on: they get it like any other response.",
    ),
    Setting(
        "cache_max_request_head_bytes",
        "CACHE_MAX_REQUEST_HEAD_BYTES",
        "64KB",
        request_head_size,
        "a size from 1k to 16MB such as 65536 or 64KB",
        "Largest request head (request line and fields) read from a client; a larger one is answered "
        "431 and its connection closed (HTTP/1).",
    ),
    Setting(
        "cache_request_head_timeout",
        "CACHE_REQUEST_HEAD_TIMEOUT_SECS",
        "30",
        timeout_seconds,
        "a number of seconds > 0 and at most 3600",
        "Longest wait for a complete request head once a connection is ready for one: a partial head "
        "is answered 408, an idle connection is closed (HTTP/1).",
    ),
    Setting(
        "cache_listen_backlog",
        "CACHE_LISTEN_BACKLOG",
        "system",
        listen_backlog,
        "system, or a whole number from 1 to 65535",
        "Connections the kernel queues before the proxy accepts them; system: the system's limit "
        "(/proc/sys/net/core/somaxconn, else 4096). asyncio's default of 100 drops a burst.",
    ),
)

BY_OPTION = {s.option: s for s in SETTINGS}
