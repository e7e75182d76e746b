"""Settings through a real mitmdump: precedence, and bad values stopping startup loudly."""

import re
import sys
from pathlib import Path

import pytest

from tests.support.harness import Proxy, free_port

MITMWEB = Path(sys.executable).with_name("mitmweb")
PROGRAM = {"mitmdump": "mitmdump", "lean": "mitmcache"}  # what each prefixes its startup errors with


def assert_stopped_with_one_line(returncode: int, output: str, line: str) -> None:
    """Exit code 1, the one line, and nothing a user would have to read past: no traceback, and no
    "listening at" (the proxy never listened)."""
    assert returncode == 1, output
    assert line in output.splitlines(), output
    assert "Traceback" not in output and "listening at" not in output, output


def ttl_of(proxy, http, origin, path="/s"):
    """The remaining lifetime of a response without freshness information, as first stored: the
    configured lifetime less the response's age on arrival (under a second; RFC 9111 §4.2.3)."""
    origin.route(path, body="x")
    return int(http.get(f"{proxy.url}{path}").headers["cache-status"].rsplit("ttl=", 1)[1])


def test_dotenv_sets_defaults(origin, proxy_factory, http, tmp_path):
    cwd = tmp_path / "app"
    cwd.mkdir()
    (cwd / ".env").write_text("DEFAULT_CACHE_EXPIRY_TIME_SECS=120\n")
    proxy = proxy_factory(cwd=cwd)
    assert ttl_of(proxy, http, origin) in (119, 120)


def test_environment_overrides_dotenv(origin, proxy_factory, http, tmp_path):
    cwd = tmp_path / "app"
    cwd.mkdir()
    (cwd / ".env").write_text("DEFAULT_CACHE_EXPIRY_TIME_SECS=120\n")
    proxy = proxy_factory(env={"DEFAULT_CACHE_EXPIRY_TIME_SECS": "30"}, cwd=cwd)
    assert ttl_of(proxy, http, origin) in (29, 30)


def test_set_overrides_the_environment(origin, proxy_factory, http):
    proxy = proxy_factory({"cache_ttl": "7"}, env={"DEFAULT_CACHE_EXPIRY_TIME_SECS": "30"})
    assert ttl_of(proxy, http, origin) in (6, 7)


@pytest.mark.parametrize(
    ("settings", "env", "named"),
    [
        ({"cache_ttl": "abc"}, {}, "cache_ttl"),
        ({"cache_ttl": "-5"}, {}, "cache_ttl"),
        ({}, {"DEFAULT_REFRESH_WINDOW_SECS": "soon"}, "DEFAULT_REFRESH_WINDOW_SECS"),
        ({}, {"REQ_TIMEOUT": "0"}, "REQ_TIMEOUT"),
        ({"cache_ttl_mode": "forever"}, {}, "cache_ttl_mode"),
        ({"cache_max_bytes": "lots"}, {}, "cache_max_bytes"),
        ({}, {"CACHE_ENV_FILE": "/nonexistent/.env"}, "CACHE_ENV_FILE"),
    ],
)
def test_a_bad_setting_stops_startup_naming_the_setting(proxy_factory, settings, env, named):
    returncode, output = proxy_factory.run_expecting_failure(settings, env)
    assert returncode != 0
    assert named in output


def test_a_bad_dotenv_value_stops_startup(proxy_factory, tmp_path):
    cwd = tmp_path / "app"
    cwd.mkdir()
    (cwd / ".env").write_text("CACHE_MAX_ENTRIES=many\n")
    returncode, output = proxy_factory.run_expecting_failure(cwd=cwd)
    assert returncode != 0
    assert "CACHE_MAX_ENTRIES" in output


def test_a_bad_set_value_is_blamed_on_set(proxy_factory):
    returncode, output = proxy_factory.run_expecting_failure(
        {"cache_ttl": "abc"}, {"DEFAULT_CACHE_EXPIRY_TIME_SECS": "30"}
    )
    assert_stopped_with_one_line(
        returncode,
        output,
        f"{PROGRAM[proxy_factory.launcher]}: invalid value 'abc' for cache_ttl (from --set): "
        "expected a number of seconds >= 0",
    )


def test_a_bad_environment_value_is_blamed_on_its_variable(proxy_factory):
    returncode, output = proxy_factory.run_expecting_failure(env={"REQ_TIMEOUT": "0"})
    assert_stopped_with_one_line(
        returncode,
        output,
        f"{PROGRAM[proxy_factory.launcher]}: invalid value '0' for cache_upstream_timeout "
        "(from environment variable REQ_TIMEOUT): expected a number of seconds > 0 and at most 3600",
    )


def test_a_bad_dotenv_value_is_blamed_on_the_file(proxy_factory, tmp_path):
    cwd = tmp_path / "app"
    cwd.mkdir()
    (cwd / ".env").write_text("CACHE_MAX_ENTRIES=many\n")
    returncode, output = proxy_factory.run_expecting_failure(cwd=cwd)
    assert_stopped_with_one_line(
        returncode,
        output,
        f"{PROGRAM[proxy_factory.launcher]}: invalid value 'many' for cache_max_entries "
        f"(from CACHE_MAX_ENTRIES in {(cwd / '.env').resolve()}): expected a whole number >= 0",
    )


def test_a_missing_env_file_is_named_in_one_line(proxy_factory, tmp_path):
    returncode, output = proxy_factory.run_expecting_failure(
        env={"CACHE_ENV_FILE": str(tmp_path / "none.env")}
    )
    assert_stopped_with_one_line(
        returncode,
        output,
        f"{PROGRAM[proxy_factory.launcher]}: CACHE_ENV_FILE: no such file: {tmp_path / 'none.env'}",
    )


def test_an_unreadable_upstream_ca_stops_startup_with_one_line(proxy_factory, tmp_path):
    missing = tmp_path / "ca.pem"
    returncode, output = proxy_factory.run_expecting_failure({"ssl_verify_upstream_trusted_ca": str(missing)})
    assert_stopped_with_one_line(
        returncode,
        output,
        f"{PROGRAM[proxy_factory.launcher]}: ssl_verify_upstream_trusted_ca/ssl_verify_upstream_trusted_confdir: "
        "cannot load the upstream's trusted CA: [Errno 2] No such file or directory",
    )


@pytest.mark.parametrize("source", ["--set", "environment", ".env"])
def test_mitmweb_stops_on_a_bad_setting_with_one_line(origin, tmp_path, source):
    env_file = tmp_path / ".env"
    named = {
        "--set": "--set",
        "environment": "environment variable CACHE_MAX_BYTES",
        ".env": f"CACHE_MAX_BYTES in {env_file.resolve()}",
    }[source]
    if source == ".env":
        env_file.write_text("CACHE_MAX_BYTES=lots\n")
    command = [str(MITMWEB), "--set", "web_open_browser=false", "--set", f"web_port={free_port()}"]
    returncode, output = Proxy.run_expecting_failure(
        origin,
        {"cache_max_bytes": "lots"} if source == "--set" else {},
        {"CACHE_MAX_BYTES": "lots"} if source == "environment" else {},
        command=command,
        cwd=tmp_path,
        log_path=tmp_path / "web.log",
    )
    assert_stopped_with_one_line(
        returncode,
        output,
        f"mitmweb: invalid value 'lots' for cache_max_bytes (from {named}): "
        "expected a size > 0 such as 268435456, 512k, 64MB, 1g",
    )


def test_a_misspelt_cache_option_is_named_with_the_closest_real_one(origin, tmp_path):
    """Stock mitmdump ignores an option nobody registered; the cache warns (the production launcher
    refuses it: tests/e2e/test_launcher.py)."""
    with Proxy(origin, {"cache_tll": "5"}, cwd=tmp_path, log_path=tmp_path / "proxy.log") as proxy:
        assert "unknown option cache_tll (did you mean cache_ttl?): ignored" in proxy.log_text()


def test_debug_cache_logging_with_a_quieter_terminal_log_says_how_to_see_it(proxy_factory):
    """mitmproxy's terminal log drops debug lines at its default verbosity: say so, not nothing."""
    proxy = proxy_factory({"cache_log_level": "debug"})
    assert "--set termlog_verbosity=debug" in proxy.log_text()


def test_debug_cache_logging_logs_one_line_per_decision(origin, proxy_factory, http):
    origin.route("/logged", headers=[("Cache-Control", "max-age=60")], body="x")
    proxy = proxy_factory({"cache_log_level": "debug", "termlog_verbosity": "debug"})
    http.get(f"{proxy.url}/logged")
    http.get(f"{proxy.url}/logged")
    log = proxy.log_text()
    # whole seconds from the upstream's Date: a slow machine may be a second or two later
    assert re.search(r"cache MISS stored \| fwd=uri-miss ttl=5[7-9]s GET", log)
    assert re.search(r"cache HIT \| age=[0-2]s ttl=5[7-9]s GET", log)
