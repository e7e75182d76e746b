"""What a hostile client or a careless upstream must not do to the cache, through real proxies.

Each test here was an attack that worked once: a number too long for ``int()``, a quadratic
``If-None-Match``, an admin request that crashed and was then forwarded, a head that never ends,
a burst of connections. Each runs through both launchers (see conftest).
"""

import base64
import contextlib
import socket
import subprocess
import time
from http.client import HTTPConnection

import pytest

from mitmcache.front_settings import system_backlog
from tests.support.harness import REPO_ROOT

HUGE = "9" * 5000  # more digits than Python's int() converts (sys.get_int_max_str_digits)


def _addon_errors(proxy) -> list[str]:
    return [line for line in proxy.log_text().splitlines() if "Addon error" in line or "Traceback" in line]


# -- numbers too long for int() (items 2 and 15) ---------------------------------------------------


def test_an_upstream_max_age_of_thousands_of_digits_is_stored_as_the_largest_lifetime(
    origin, proxy_factory, http
):
    origin.route("/huge-max-age", headers=[("Cache-Control", f"max-age={HUGE}")], body="long-lived")
    proxy = proxy_factory({"cache_upstream_timeout": 5})
    first = http.get(f"{proxy.url}/huge-max-age")
    started = time.monotonic()
    second = http.get(f"{proxy.url}/huge-max-age")
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.headers["x-cache"] == "HIT"
    assert time.monotonic() - started < 4  # not a wait for a fetch that never resolves
    assert origin.count("/huge-max-age") == 1
    assert _addon_errors(proxy) == []


def test_an_upstream_age_of_thousands_of_digits_does_not_wedge_the_url(origin, proxy_factory, http):
    origin.route("/huge-age", headers=[("Cache-Control", "max-age=60"), ("Age", HUGE)], body="old")
    proxy = proxy_factory({"cache_upstream_timeout": 2})
    answers = [http.get(f"{proxy.url}/huge-age") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(a.text == "old" for a in answers)
    assert _addon_errors(proxy) == []


def test_a_request_cache_control_of_thousands_of_digits_is_honoured_not_a_traceback(
    origin, proxy_factory, http
):
    origin.route("/cc", headers=[("Cache-Control", "max-age=60")], body="cached")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/cc")
    hit = http.get(f"{proxy.url}/cc", headers={"Cache-Control": f"max-age={HUGE}, min-fresh=1"})
    assert hit.headers["x-cache"] == "HIT"
    assert origin.count("/cc") == 1
    assert _addon_errors(proxy) == []


def test_a_range_of_thousands_of_digits_is_answered_from_the_cache(origin, proxy_factory, http):
    origin.route("/r", headers=[("Cache-Control", "max-age=60")], body="0123456789")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/r")
    whole = http.get(f"{proxy.url}/r", headers={"Range": f"bytes=2-{HUGE}"})
    past_the_end = http.get(f"{proxy.url}/r", headers={"Range": f"bytes={HUGE}-"})
    assert (whole.status_code, whole.content) == (206, b"23456789")
    assert whole.headers["content-range"] == "bytes 2-9/10"
    assert past_the_end.status_code == 416
    assert origin.count("/r") == 1
    assert _addon_errors(proxy) == []


# -- Vary: only list fields are normalised as lists (item 14) ----------------------------------------


def test_a_trailing_comma_does_not_select_another_origins_variant(origin, proxy_factory, http):
    origin.route(
        "/cors",
        headers=[("Cache-Control", "max-age=60"), ("Vary", "Origin")],
        sequence=[{"body": "for app"}, {"body": "for the other one"}],
    )
    proxy = proxy_factory()
    real = http.get(f"{proxy.url}/cors", headers={"Origin": "https://app.example"})
    forged = http.get(f"{proxy.url}/cors", headers={"Origin": "https://app.example,"})
    assert real.text == "for app"
    assert forged.headers["x-cache"] == "MISS"
    assert forged.text == "for the other one"
    again = http.get(f"{proxy.url}/cors", headers={"Origin": "https://app.example"})
    assert (again.headers["x-cache"], again.text) == ("HIT", "for app")


def test_list_fields_still_share_a_variant_when_spelled_differently(origin, proxy_factory, http):
    origin.route("/lang", headers=[("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")], body="x")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/lang", headers={"Accept-Language": "en, fr"})
    same = http.get(f"{proxy.url}/lang", headers={"Accept-Language": "fr,EN"})
    assert same.headers["x-cache"] == "HIT"


# -- responses to Cookie requests and the default lifetime (item 12) ---------------------------------


def test_a_cookie_requests_page_without_freshness_is_not_served_to_others(origin, proxy_factory, http):
    origin.route("/account/x.css", sequence=[{"body": "alice's account"}, {"body": "anonymous"}])
    proxy = proxy_factory()
    victim = http.get(f"{proxy.url}/account/x.css", headers={"Cookie": "session=alice"})
    attacker = http.get(f"{proxy.url}/account/x.css")
    assert victim.text == "alice's account"
    assert "detail=cookie" in victim.headers["cache-status"]
    assert (attacker.headers["x-cache"], attacker.text) == ("MISS", "anonymous")
    assert origin.count("/account/x.css") == 2


def test_the_origins_max_age_still_makes_a_cookie_requests_response_shared(origin, proxy_factory, http):
    origin.route("/styles.css", headers=[("Cache-Control", "max-age=60")], body="body{}")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/styles.css", headers={"Cookie": "session=alice"})
    assert http.get(f"{proxy.url}/styles.css").headers["x-cache"] == "HIT"


def test_cookie_default_ttl_on_restores_the_default_lifetime_for_cookie_requests(origin, proxy_factory, http):
    origin.route("/page", body="page")
    proxy = proxy_factory({"cache_cookie_default_ttl": "on"})
    http.get(f"{proxy.url}/page", headers={"Cookie": "session=alice"})
    assert http.get(f"{proxy.url}/page").headers["x-cache"] == "HIT"


# -- settings that make no sense stop startup (item 21) ----------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("cache_max_bytes", "0"),
        ("cache_max_object_bytes", "0"),
        ("cache_upstream_timeout", "1e9"),
        ("cache_max_request_head_bytes", "10"),
        ("cache_listen_backlog", "0"),
    ],
)
def test_a_setting_that_would_disable_the_cache_or_makes_no_sense_stops_startup(proxy_factory, option, value):
    returncode, output = proxy_factory.run_expecting_failure({option: value})
    assert returncode != 0
    assert f"invalid value '{value}' for {option} (from --set): expected " in output


@pytest.mark.parametrize(
    "upstream",
    ["not-a-url", "example.com:8080", "tcp://x.example:80", "http://-bad-.example", "http://999.1.1.1"],
)
def test_a_reverse_upstream_without_http_or_https_or_a_valid_host_stops_startup(proxy_factory, upstream):
    returncode, output = proxy_factory.run_expecting_failure(upstream=upstream)
    assert returncode != 0
    assert "expected http://host[:port] or https://host[:port]" in output
    assert f"reverse:{upstream}" in output


# -- request heads: size and time limits (item 11) ---------------------------------------------------


def _raw_exchange(proxy, data: bytes, *, wait: float = 10.0) -> tuple[bytes, bool]:
    """Send ``data`` on a fresh connection and read until the proxy closes it: the answer, and
    whether the proxy closed the connection (end of file or reset) within ``wait`` seconds."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=wait) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)  # the proxy may answer and close before it has read everything
        chunks = []
        closed = True
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            closed = False
        except OSError:  # reset: closed with the rest of the data unread
            pass
        return b"".join(chunks), closed


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /big HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 200_000, b"431"),
        (b"NOT AN HTTP REQUEST\r\n\r\n" + b"a" * 200_000, b"400"),  # mitmproxy's own answer
    ],
    ids=["head-too-large", "malformed"],
)
def test_a_refused_request_with_more_data_behind_it_has_its_connection_closed(
    origin, proxy_factory, head, status
):
    """mitmproxy left such a connection open for as long as the client liked (compat/connections.py)."""
    proxy = proxy_factory({"cache_max_request_head_bytes": "16KB"})
    answer, closed = _raw_exchange(proxy, head, wait=3.0)
    assert answer.startswith(b"HTTP/1.1 " + status) and closed


def test_a_request_head_larger_than_the_limit_gets_431_and_is_not_buffered(origin, proxy_factory):
    proxy = proxy_factory({"cache_max_request_head_bytes": "16KB"})
    head = b"GET /big HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 200_000
    answer, _ = _raw_exchange(proxy, head)  # never ends: the proxy must not wait for the rest
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"larger than 16384 bytes" in answer
    assert origin.count("/big") == 0


def test_a_request_head_within_the_limit_is_served(origin, proxy_factory, http):
    origin.route("/fine", headers=[("Cache-Control", "max-age=60")], body="fine")
    proxy = proxy_factory({"cache_max_request_head_bytes": "16KB"})
    answer = http.get(f"{proxy.url}/fine", headers={"X-Filler": "a" * 15_000})
    assert (answer.status_code, answer.text) == (200, "fine")


def test_the_default_head_limit_is_64kb(origin, proxy_factory, http):
    origin.route("/d", body="d")
    proxy = proxy_factory()
    assert http.get(f"{proxy.url}/d", headers={"X-Filler": "a" * 60_000}).status_code == 200
    assert http.get(f"{proxy.url}/d", headers={"X-Filler": "a" * 70_000}).status_code == 431


def test_a_request_head_that_never_completes_gets_408(origin, proxy_factory):
    proxy = proxy_factory({"cache_request_head_timeout": 1})
    started = time.monotonic()
    answer, _ = _raw_exchange(proxy, b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.9 <= time.monotonic() - started < 5
    assert origin.count("/slow") == 0


def test_an_idle_connection_is_closed_after_the_head_timeout(origin, proxy_factory):
    origin.route("/k", body="k")
    proxy = proxy_factory({"cache_request_head_timeout": 1})
    connection = HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    connection.request("GET", "/k")
    assert connection.getresponse().read() == b"k"
    started = time.monotonic()
    assert connection.sock.recv(65536) == b""  # closed, with nothing sent: no request was pending
    assert time.monotonic() - started < 5
    connection.close()


def test_a_slow_but_steady_client_is_served_within_the_head_timeout(origin, proxy_factory):
    origin.route("/steady", body="steady")
    proxy = proxy_factory({"cache_request_head_timeout": 3})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        for part in (b"GET /steady HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            sock.sendall(part)
            time.sleep(0.5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_a_keep_alive_connection_gets_a_fresh_head_timeout_per_request(origin, proxy_factory):
    """The clock starts when the connection is ready for a head, not when it was accepted."""
    origin.route("/again", body="again")
    proxy = proxy_factory({"cache_request_head_timeout": 1.5})
    connection = HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    connection.connect()
    sock = connection.sock
    for _ in range(3):
        time.sleep(1)
        connection.request("GET", "/again")
        assert connection.getresponse().read() == b"again"
    assert connection.sock is sock  # one connection throughout
    connection.close()


def test_a_megabyte_if_none_match_does_not_stall_other_clients(origin, proxy_factory, http):
    """Item 3: 1.8 MB of empty entity-tags used to hold the event loop for ~13 s."""
    origin.route("/etag", headers=[("Cache-Control", "max-age=60"), ("ETag", '"v1"')], body="tagged")
    proxy = proxy_factory({"cache_max_request_head_bytes": "4MB"})
    http.get(f"{proxy.url}/etag")
    started = time.monotonic()
    hostile = http.get(f"{proxy.url}/etag", headers={"If-None-Match": '"",' * 600_000})
    assert hostile.status_code == 200  # its tag is not among the first ones looked at
    assert time.monotonic() - started < 6
    assert http.get(f"{proxy.url}/etag", headers={"If-None-Match": '"v1"'}).status_code == 304


# -- the listen backlog (item 22) --------------------------------------------------------------------


def _listen_backlog(port: int) -> int:
    """The queue length of the socket listening on ``port`` (``ss`` shows it as Send-Q)."""
    lines = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert lines, f"nothing listens on port {port}"
    return int(lines[0].split()[2])


def test_the_proxy_listens_with_the_systems_backlog_by_default(proxy_factory):
    proxy = proxy_factory()
    assert _listen_backlog(proxy.port) == system_backlog() != 100


def test_cache_listen_backlog_sets_the_listen_queue(proxy_factory):
    proxy = proxy_factory({"cache_listen_backlog": 777})
    assert _listen_backlog(proxy.port) == 777


# -- control requests are answered here, whatever fails (item 13) ------------------------------------

KEY = "s3cret-admin-key"
BROKEN_CONTROL = REPO_ROOT / "tests" / "support" / "broken_control.py"


def test_entries_lists_variants_with_and_without_the_varied_field(origin, proxy_factory, http):
    origin.route("/v", headers=[("Cache-Control", "max-age=60"), ("Vary", "X-Tenant")], body="v")
    proxy = proxy_factory({"cache_admin_key": KEY})
    http.get(f"{proxy.url}/v", headers={"X-Tenant": "a"})
    http.get(f"{proxy.url}/v")  # X-Tenant absent: sorted next to "a", None used to crash the sort
    listing = http.get(f"{proxy.url}/__cache/entries", headers={"Clear-Cache-Key": KEY})
    assert listing.status_code == 200
    assert [e["vary"] for e in listing.json()["entries"]] == [{"x-tenant": None}, {"x-tenant": "a"}]
    first = http.get(f"{proxy.url}/__cache/entries?limit=1", headers={"Clear-Cache-Key": KEY}).json()
    rest = http.get(
        f"{proxy.url}/__cache/entries?cursor={first['next_cursor']}", headers={"Clear-Cache-Key": KEY}
    ).json()
    assert [e["vary"] for e in rest["entries"]] == [{"x-tenant": "a"}]
    assert origin.count("/__cache/entries") == 0


def test_a_limit_that_is_a_digit_but_not_a_number_is_a_bad_request(origin, proxy_factory, http):
    proxy = proxy_factory({"cache_admin_key": KEY})
    answer = http.get(f"{proxy.url}/__cache/entries?limit=\u00b2", headers={"Clear-Cache-Key": KEY})
    assert answer.status_code == 400
    assert "limit must be a whole number" in answer.json()["detail"]
    assert origin.count("/__cache/entries") == 0


def test_a_failing_admin_endpoint_answers_500_and_is_never_forwarded(origin, proxy_factory, http):
    origin.route("/__cache/stats", body="the upstream must never see this")
    proxy = proxy_factory({"cache_admin_key": KEY}, args=["-s", str(BROKEN_CONTROL)])
    answer = http.get(f"{proxy.url}/__cache/stats", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 500
    assert answer.json()["error"] == "internal error"
    assert origin.count("/__cache/stats") == 0
    assert "control: admin failed" in proxy.log_text()


def test_a_failing_clear_cache_request_answers_500_and_is_never_forwarded(origin, proxy_factory, http):
    origin.route("/page", headers=[("Cache-Control", "max-age=60")], body="page")
    proxy = proxy_factory({"cache_admin_key": KEY}, args=["-s", str(BROKEN_CONTROL)])
    http.get(f"{proxy.url}/page")
    answer = http.get(f"{proxy.url}/page", headers={"Clear-Cache": "1", "Clear-Cache-Key": KEY})
    assert answer.status_code == 500
    assert answer.json()["error"] == "internal error"
    assert origin.count("/page") == 1


# -- the admin key never reaches the upstream (item 16) ----------------------------------------------


def _received(origin, path: str) -> dict[str, str]:
    [request] = origin.requests(path)
    return {name.lower(): value for name, value in request["headers"]}


def test_clear_cache_key_without_clear_cache_is_dropped_before_the_upstream(origin, proxy_factory, http):
    origin.route("/k", headers=[("Cache-Control", "max-age=60")], body="k")
    proxy = proxy_factory({"cache_admin_key": KEY})
    http.get(f"{proxy.url}/k", headers={"Clear-Cache-Key": KEY})
    assert "clear-cache-key" not in _received(origin, "/k")


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {KEY}", "Basic " + base64.b64encode(f"admin:{KEY}".encode()).decode()],
)
def test_authorization_carrying_the_admin_key_is_dropped_before_the_upstream(
    origin, proxy_factory, http, authorization
):
    origin.route("/a", body="a")
    proxy = proxy_factory({"cache_admin_key": KEY})
    http.get(f"{proxy.url}/a", headers={"Authorization": authorization})
    assert "authorization" not in _received(origin, "/a")


def test_other_credentials_still_reach_the_upstream(origin, proxy_factory, http):
    origin.route("/u", body="u")
    proxy = proxy_factory({"cache_admin_key": KEY})
    http.get(f"{proxy.url}/u", headers={"Authorization": "Bearer a-users-token"})
    assert _received(origin, "/u")["authorization"] == "Bearer a-users-token"


# -- control characters in request paths are escaped in log lines (item 17) --------------------------


def test_control_characters_of_a_request_path_are_escaped_in_the_log(origin, proxy_factory):
    origin.route("/", body="any")
    proxy = proxy_factory({"cache_admin_key": KEY, "termlog_verbosity": "debug", "cache_log_level": "debug"})
    target = b"/x\x1b[2J\x1b[31mred\x07"
    answer, _ = _raw_exchange(
        proxy,
        b"GET "
        + target
        + b" HTTP/1.1\r\nHost: x\r\nClear-Cache: 1\r\nClear-Cache-Key: "
        + KEY.encode()
        + b"\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 ")
    log = proxy.log_path.read_bytes()
    assert b"/x\\x1b[2J\\x1b[31mred\\x07" in log
    assert b"\x1b[2J" not in log
