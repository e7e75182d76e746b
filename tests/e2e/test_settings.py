"""Settings through a real mitmdump: precedence, and bad values stopping startup loudly."""

import pytest


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
    assert "cache MISS uri-miss ttl=59s stored GET" in log
    assert "cache HIT age=0s ttl=59s GET" in log
