"""Settings: their names, defaults, environment variables, and validation.

Each setting is a mitmproxy option (visible in mitmweb's options editor, settable with ``--set``)
whose default comes from the environment, then from a ``.env`` file, then from the settings table
(``settings_table.py``): ``--set`` > environment > ``.env`` > built-in default. Options are declared
as strings and parsed here (with ``parsers.py``), because mitmproxy silently drops an addon whose
``int`` option gets a bad ``--set`` value (``OptManager.process_deferred`` fails to parse it while the
script registers its options, and mitmproxy's script loader logs that and leaves the script
unloaded). A ``ValueError`` from here becomes an ``OptionsError`` in ``configure``, which stops
startup with one line naming the setting and where its value came from.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from .front_settings import FALLBACK_BACKLOG
from .policy.codings import Coding
from .policy.lifecycle import Lifecycle, RefreshMode
from .policy.storable import Rules
from .policy.tags import TagRules
from .settings_table import BY_OPTION, SETTINGS, Setting
from .store.selection import StoreLocation
from .writequeue.settings_table import WRITE_QUEUE_SETTINGS

ENV_FILE_VARIABLE = "CACHE_ENV_FILE"

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
    compress: str
    compress_min_bytes: int
    body_idle_timeout: float
    get_body: str
    store_max_bytes: int
    tag_fields: tuple[str, ...]
    tag_fields_keep: bool
    cookie_default_ttl: str = "off"
    max_request_head_bytes: int = 64 * 1024
    request_head_timeout: float = 30.0
    listen_backlog: int = FALLBACK_BACKLOG
    rules: Rules = field(init=False, compare=False)  # what storing needs, built once, not per response
    lifecycle: Lifecycle = field(init=False, compare=False)  # what an entry's life needs, likewise
    # The coding stored bodies are compressed with (None: off): read by every stored miss.
    coding: Coding | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        rules = Rules(
            default_ttl=self.ttl,
            override=self.ttl_mode == "override",
            heuristic_percent=self.heuristic_percent if self.pure_rfc else 0.0,
            targeted_fields=self.targeted_fields,
            tags=TagRules(self.tag_fields, self.tag_fields_keep),
            cookie_default_ttl=self.cookie_default_ttl == "on",
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
        object.__setattr__(self, "coding", None if self.compress == "off" else Coding(self.compress))

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


def data_dir(raw: str) -> Path:
    """``CACHE_DATA_DIR`` (option ``cache_data_dir``): the proxy's own files (the disk store, the write
    queue's SQLite file); ``data`` when empty, relative to the working directory."""
    return Path.cwd() / (raw.strip() or "data")


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
