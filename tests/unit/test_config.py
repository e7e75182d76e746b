"""Settings: defaults from environment, .env and built-ins; validation of every option."""

from pathlib import Path

import pytest

from mitmcache.config import (
    ALL_SETTINGS,
    BY_OPTION,
    ENV_FILE_VARIABLE,
    SETTINGS,
    Default,
    defaults,
    env_file_values,
    parse_one,
    parse_settings,
    resolve_defaults,
    value_sources,
)
from mitmcache.store.selection import MEMORY, Backend, StoreLocation

TTL = BY_OPTION["cache_ttl"]  # the setting the precedence tests use


def write_env(directory: Path, text: str, name: str = ".env") -> Path:
    path = directory / name
    path.write_text(text)
    return path


# ---- where defaults come from ----


def test_built_in_defaults_without_environment_or_env_file(tmp_path):
    assert defaults({}, tmp_path) == {s.option: s.default for s in ALL_SETTINGS}


def test_env_file_overrides_the_built_in_default(tmp_path):
    write_env(tmp_path, f"{TTL.env}=120\n")
    assert defaults({}, tmp_path)["cache_ttl"] == "120"


def test_environment_overrides_the_env_file(tmp_path):
    write_env(tmp_path, f"{TTL.env}=120\n")
    assert defaults({TTL.env: "5"}, tmp_path)["cache_ttl"] == "5"


def test_an_empty_environment_variable_still_overrides(tmp_path):
    write_env(tmp_path, "CLEAR_CACHE_KEY=from-file\n")
    assert defaults({"CLEAR_CACHE_KEY": ""}, tmp_path)["cache_admin_key"] == ""


def test_only_the_settings_own_variables_are_read(tmp_path):
    write_env(tmp_path, "cache_ttl=1\nUNRELATED=2\n")
    assert defaults({"cache_ttl": "3"}, tmp_path)["cache_ttl"] == TTL.default


def test_cache_env_file_names_another_env_file(tmp_path):
    write_env(tmp_path, f"{TTL.env}=120\n")
    other = write_env(tmp_path, f"{TTL.env}=7\n", "other.env")
    assert defaults({ENV_FILE_VARIABLE: str(other)}, tmp_path)["cache_ttl"] == "7"


def test_a_relative_cache_env_file_is_relative_to_the_working_directory(tmp_path):
    write_env(tmp_path, f"{TTL.env}=9\n", "conf.env")
    assert env_file_values({ENV_FILE_VARIABLE: "conf.env"}, tmp_path) == {TTL.env: "9"}


def test_a_missing_cache_env_file_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=ENV_FILE_VARIABLE):
        defaults({ENV_FILE_VARIABLE: str(tmp_path / "missing.env")}, tmp_path)


def test_env_file_syntax(tmp_path):
    write_env(tmp_path, "# comment\nexport A=1\nB='two words'\nC=\"q\" # trailing\nNO_VALUE\n")
    assert env_file_values({}, tmp_path) == {"A": "1", "B": "two words", "C": "q"}


def test_the_built_in_defaults_parse():
    settings = parse_settings({s.option: s.default for s in SETTINGS})
    assert (settings.ttl, settings.ttl_mode, settings.upstream_timeout) == (60, "fallback", 10)
    assert (settings.max_bytes, settings.max_object_bytes) == (256 * 2**20, 8 * 2**20)
    assert (settings.admin_prefix, settings.name, settings.refresh_concurrency) == (
        "/__cache",
        "mitmcache",
        8,
    )
    assert settings.serve_stale_in_window is True
    assert (settings.rules.default_ttl, settings.rules.override) == (60, False)


def test_pure_rfc_mode_serves_no_stale_copies_in_the_refresh_window():
    settings = parse_settings({s.option: s.default for s in SETTINGS} | {"cache_ttl": "0"})
    assert settings.serve_stale_in_window is False


def test_override_mode_reaches_the_storage_rules():
    settings = parse_settings({s.option: s.default for s in SETTINGS} | {"cache_ttl_mode": "override"})
    assert settings.rules.override is True


# ---- parsing every option ----

SECONDS_VALID = [("0", 0), ("60", 60), ("1.5", 1.5), (" 30 ", 30), ("1e2", 100)]
SECONDS_INVALID = ["-1", "abc", "", "inf", "nan", "1s"]
SIZES_VALID = [
    ("1048576", 1048576),
    ("512k", 512 * 1024),
    ("64MB", 64 * 2**20),
    ("1g", 2**30),
    ("2 Gb", 2 * 2**30),
]
SIZES_INVALID = ["", "-1", "1.5MB", "10XB", "MB", "64 M B"]
COUNT_VALID = [("0", 0), ("100000", 100000)]
COUNT_INVALID = ["-1", "1.5", "many", ""]

VALID: dict[str, list[tuple[str, object]]] = {
    "cache_ttl": SECONDS_VALID,
    "cache_ttl_mode": [("fallback", "fallback"), (" Override ", "override")],
    "cache_heuristic_percent": [("10", 10), ("0", 0), ("100", 100), ("2.5", 2.5)],
    "cache_targeted_fields": [
        ("CDN-Cache-Control", ("cdn-cache-control",)),
        (" Acme-CDN-Cache-Control , CDN-Cache-Control ", ("acme-cdn-cache-control", "cdn-cache-control")),
        ("", ()),
    ],
    "cache_refresh_window": SECONDS_VALID,
    "cache_upstream_timeout": [("10", 10), ("0.25", 0.25)],
    "cache_admin_key": [("s3cret", "s3cret"), (" padded ", "padded"), ("", "")],
    "cache_admin_prefix": [("/__cache", "/__cache"), ("/admin/", "/admin"), ("/a/b", "/a/b")],
    "cache_max_bytes": SIZES_VALID,
    "cache_max_entries": COUNT_VALID,
    "cache_max_object_bytes": SIZES_VALID,
    "cache_stale_if_error": SECONDS_VALID,
    "cache_hit_for_miss": SECONDS_VALID,
    "cache_refresh_ahead": SECONDS_VALID,
    "cache_refresh_mode": [("on-request", "on-request"), (" Continuous ", "continuous")],
    "cache_keep_stale": SECONDS_VALID,
    "cache_refresh_concurrency": [("1", 1), ("64", 64)],
    "cache_web_max_flows": COUNT_VALID,
    "cache_name": [("mitmcache", "mitmcache"), ("edge-1.example_a", "edge-1.example_a")],
    "cache_log_level": [("debug", "debug"), ("WARNING", "warning")],
    "cache_store": [
        ("memory", MEMORY),
        (" Memory ", MEMORY),
        (
            "redis://127.0.0.1:6379/0",
            StoreLocation(Backend.REDIS, "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ),
        (
            "rediss://cache.example:6380",
            StoreLocation(Backend.REDIS, "rediss://cache.example:6380", "rediss://cache.example:6380"),
        ),
        (
            "redis://user:s3cret@h:6379/2",
            StoreLocation(Backend.REDIS, "redis://user:s3cret@h:6379/2", "redis://user:[redacted]@h:6379/2"),
        ),
    ],
    "cache_tag_fields": [
        ("Surrogate-Key, Cache-Tag, xkey", ("surrogate-key", "cache-tag", "xkey")),
        ("Edge-Cache-Tag", ("edge-cache-tag",)),
        ("", ()),
    ],
    "cache_tag_fields_keep": [("on", True), ("OFF", False), ("true", True), ("0", False)],
}
INVALID: dict[str, list[str]] = {
    "cache_ttl": SECONDS_INVALID,
    "cache_ttl_mode": ["", "sometimes"],
    "cache_heuristic_percent": ["-1", "101", "nan", "ten", ""],
    "cache_targeted_fields": ["CDN Cache Control", "a;b", "x:y"],
    "cache_refresh_window": SECONDS_INVALID,
    "cache_upstream_timeout": ["0", "-1", "never", "inf"],
    "cache_admin_key": [],  # any string is a valid key
    "cache_admin_prefix": ["", "/", "admin", "/a?b", "/a#b", "/a b"],
    "cache_max_bytes": SIZES_INVALID,
    "cache_max_entries": COUNT_INVALID,
    "cache_max_object_bytes": SIZES_INVALID,
    "cache_stale_if_error": SECONDS_INVALID,
    "cache_hit_for_miss": SECONDS_INVALID,
    "cache_refresh_ahead": SECONDS_INVALID,
    "cache_refresh_mode": ["", "sometimes", "on_request"],
    "cache_keep_stale": SECONDS_INVALID,
    "cache_refresh_concurrency": ["0", "-1", "1.5", ""],
    "cache_web_max_flows": COUNT_INVALID,
    "cache_name": ["", "1cache", "my cache", "cache;x"],
    "cache_log_level": ["", "verbose"],
    "cache_store": [
        "",
        "disk",
        "http://h:6379",
        "redis://",
        "redis://h:port",
        "redis://h:6379/x",
        "redis://h/0?db=1",
    ],
    "cache_tag_fields": ["Surrogate Key", "a;b"],
    "cache_tag_fields_keep": ["", "maybe", "2"],
}


def test_every_setting_has_parsing_cases():
    assert set(VALID) == set(INVALID) == set(BY_OPTION)


@pytest.mark.parametrize(
    ("option", "raw", "expected"), [(o, raw, value) for o, cases in VALID.items() for raw, value in cases]
)
def test_valid_values(option, raw, expected):
    assert parse_one(option, raw) == expected


@pytest.mark.parametrize(("option", "raw"), [(o, raw) for o, cases in INVALID.items() for raw in cases])
def test_invalid_values_name_the_option_where_the_value_came_from_and_what_is_expected(option, raw):
    setting = BY_OPTION[option]
    with pytest.raises(ValueError) as error:
        parse_one(option, raw, f"environment variable {setting.env}")
    assert str(error.value) == (
        f"invalid value {raw!r} for {setting.option} (from environment variable {setting.env}): "
        f"expected {setting.expected}"
    )


def test_an_invalid_value_of_unknown_origin_names_no_source():
    with pytest.raises(ValueError) as error:
        parse_one("cache_ttl", "abc")
    assert str(error.value) == "invalid value 'abc' for cache_ttl: expected a number of seconds >= 0"


def test_parse_settings_reports_the_first_bad_option_with_its_source():
    raw = {s.option: s.default for s in SETTINGS} | {"cache_max_bytes": "lots"}
    with pytest.raises(ValueError, match=r"cache_max_bytes \(from --set\)"):
        parse_settings(raw, {"cache_max_bytes": "--set"})


# ---- where each value came from, for error messages ----


def test_each_default_says_whether_it_came_from_the_environment_the_env_file_or_the_built_ins(tmp_path):
    env_file = write_env(tmp_path, "CACHE_MAX_ENTRIES=5\nREQ_TIMEOUT=3\n")
    resolved = resolve_defaults({"REQ_TIMEOUT": "4"}, tmp_path)
    assert resolved["cache_upstream_timeout"] == Default("4", "environment variable REQ_TIMEOUT")
    assert resolved["cache_max_entries"] == Default("5", f"CACHE_MAX_ENTRIES in {env_file.resolve()}")
    assert resolved["cache_ttl"] == Default(TTL.default, "the built-in default")


def test_the_env_file_named_by_cache_env_file_is_named_in_the_source(tmp_path):
    other = write_env(tmp_path, "DEFAULT_CACHE_EXPIRY_TIME_SECS=7\n", name="other.env")
    resolved = resolve_defaults({ENV_FILE_VARIABLE: "other.env"}, tmp_path)
    assert resolved["cache_ttl"].source == f"DEFAULT_CACHE_EXPIRY_TIME_SECS in {other.resolve()}"


def test_a_value_equal_to_its_default_comes_from_the_default_s_source_any_other_from_the_change():
    registered = {
        "cache_ttl": Default("30", "environment variable X"),
        "cache_name": Default("a", "the built-in default"),
    }
    assert value_sources({"cache_ttl": "30", "cache_name": "b"}, registered, "--set") == {
        "cache_ttl": "environment variable X",
        "cache_name": "--set",
    }


def test_a_store_password_never_appears_in_an_error_message():
    with pytest.raises(ValueError) as raised:
        parse_one("cache_store", "redis://:s3cret@h:99999/0")
    assert "s3cret" not in str(raised.value) and "[redacted]" in str(raised.value)


def test_a_store_location_never_shows_its_password_in_its_repr():
    location = parse_one("cache_store", "redis://user:s3cret@h:6379/0")
    assert "s3cret" not in repr(location) and location.shown == "redis://user:[redacted]@h:6379/0"
