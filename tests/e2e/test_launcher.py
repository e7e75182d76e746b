"""What a caching reverse proxy needs from mitmproxy's built-in addons, proved through both launchers
(stock ``mitmdump -s addons/cache.py`` and the lean ``scripts/serve.sh``), and the lean launcher's own
command line, logging and shutdown (issue 6; docs/launcher.md).

Each parametrized test passes through both, so an addon the lean launcher leaves out that our cache
needed would show as a ``[lean]`` failure next to a ``[mitmdump]`` pass.
"""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ProxyFactory
from tests.support.h2client import h2_requests
from tests.support.harness import LEAN, REPO_ROOT, Origin, clean_env, free_port, spawn

CEILING_ADDON = REPO_ROOT / "scripts" / "ceiling_addon.py"


@pytest.fixture
def lean_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProxyFactory]:
    """``proxy_factory`` for tests about the lean launcher alone (not run twice)."""
    factory = ProxyFactory(request, tmp_path, "lean")
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def tls_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    """An HTTPS origin with a self-signed certificate (``certfile``), shared by the module."""
    with Origin(workdir=tmp_path_factory.mktemp("tls-origin"), tls=True) as origin:
        yield origin


@pytest.fixture
def https_origin(tls_origin: Origin) -> Origin:
    tls_origin.reset()
    return tls_origin


def fresh_route(origin: Origin, path: str, **kwargs) -> None:
    origin.route(path, headers=[("Cache-Control", "max-age=60"), *kwargs.pop("headers", [])], **kwargs)


# -- TLS to an https:// upstream (tlsconfig) -------------------------------------------------------------


def test_https_upstream_verified_against_a_trusted_ca(https_origin, proxy_factory, http):
    fresh_route(https_origin, "/tls", body="over tls")
    proxy = proxy_factory(
        {"ssl_verify_upstream_trusted_ca": str(https_origin.certfile)}, upstream=https_origin
    )
    first, second = http.get(f"{proxy.url}/tls"), http.get(f"{proxy.url}/tls")
    assert (first.status_code, first.text, first.headers["x-cache"]) == (200, "over tls", "MISS")
    assert (second.text, second.headers["x-cache"]) == ("over tls", "HIT")
    assert https_origin.count("/tls") == 1


def test_https_upstream_with_an_untrusted_certificate_gets_a_stamped_json_502(
    https_origin, proxy_factory, http
):
    fresh_route(https_origin, "/tls", body="over tls")
    proxy = proxy_factory(upstream=https_origin)
    response = http.get(f"{proxy.url}/tls")
    assert response.status_code == 502
    assert "certificate" in response.json()["detail"].lower()
    assert response.headers["x-cache"] == "MISS"
    assert "upstream-error" in response.headers["cache-status"]
    assert https_origin.count("/tls") == 0


def test_https_upstream_with_ssl_insecure_also_for_the_caches_own_revalidations(
    https_origin, proxy_factory, http
):
    """``-k`` reaches both the proxy's TLS (tlsconfig) and the cache's own upstream client."""
    https_origin.route(
        "/reval",
        sequence=[
            {"headers": [("Cache-Control", "no-cache"), ("ETag", '"r1"')], "body": "kept"},
            {"status": 304, "headers": [("ETag", '"r1"')], "body": ""},
        ],
    )
    proxy = proxy_factory(upstream=https_origin, args=["-k"])
    assert http.get(f"{proxy.url}/reval").headers["x-cache"] == "MISS"
    again = http.get(f"{proxy.url}/reval")
    assert (again.headers["x-cache"], again.text) == ("REVALIDATED", "kept")
    assert https_origin.count("/reval") == 2


def test_https_upstream_trusted_ca_also_for_the_caches_own_revalidations(https_origin, proxy_factory, http):
    https_origin.route(
        "/reval",
        sequence=[
            {"headers": [("Cache-Control", "no-cache"), ("ETag", '"r1"')], "body": "kept"},
            {"status": 304, "headers": [("ETag", '"r1"')], "body": ""},
        ],
    )
    proxy = proxy_factory(
        {"ssl_verify_upstream_trusted_ca": str(https_origin.certfile)}, upstream=https_origin
    )
    assert http.get(f"{proxy.url}/reval").headers["x-cache"] == "MISS"
    assert http.get(f"{proxy.url}/reval").headers["x-cache"] == "REVALIDATED"


def test_an_unreadable_upstream_ca_stops_startup_naming_the_option(proxy_factory, tmp_path):
    returncode, output = proxy_factory.run_expecting_failure(
        {"ssl_verify_upstream_trusted_ca": str(tmp_path / "missing.pem")}
    )
    assert returncode != 0
    assert "ssl_verify_upstream_trusted_ca" in output


# -- clients: HTTP/2 over TLS, h2c (nextlayer, tlsconfig, disable_h2c) ----------------------------------


def test_http2_clients_over_tls_get_hits(origin, proxy_factory):
    """TLS from the client on the plain-HTTP listener (nextlayer sees the ClientHello), a certificate
    from the proxy's own CA in confdir (tlsconfig), HTTP/2 by ALPN; HTTP/1.1 to the upstream."""
    fresh_route(origin, "/h2", body="multiplexed")
    proxy = proxy_factory()
    (s1, h1, b1), (s2, h2, b2) = h2_requests(
        proxy.port, proxy.confdir / "mitmproxy-ca-cert.pem", ["/h2", "/h2"]
    )
    assert (s1, h1["x-cache"], b1) == (200, "MISS", b"multiplexed")
    assert (s2, h2["x-cache"], b2) == (200, "HIT", b"multiplexed")
    assert origin.count("/h2") == 1


def test_cleartext_http2_with_prior_knowledge_is_refused(origin, proxy_factory):
    proxy = proxy_factory()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert not received.startswith(b"HTTP/1.1 200")
    assert origin.log() == []


def test_h2c_upgrade_headers_never_reach_the_upstream(origin, proxy_factory, http):
    origin.route("/echo", echo=True)
    proxy = proxy_factory()
    response = http.get(
        f"{proxy.url}/echo",
        headers={
            "Connection": "Upgrade, HTTP2-Settings",
            "Upgrade": "h2c",
            "HTTP2-Settings": "AAMAAABkAAQAAP__",
        },
    )
    assert response.status_code == 200
    names = {name.lower() for name, _ in origin.requests("/echo")[0]["headers"]}
    assert not names & {"upgrade", "http2-settings"}


# -- proxyserver options --------------------------------------------------------------------------------


@pytest.mark.parametrize(("strategy", "served"), [("lazy", True), ("eager", False)])
def test_connection_strategy_decides_whether_hits_survive_a_dead_upstream(
    proxy_factory, http, tmp_path, strategy, served
):
    with Origin(workdir=tmp_path / "short-lived") as short_lived:
        fresh_route(short_lived, "/warm", body="cached")
        proxy = proxy_factory({"connection_strategy": strategy}, upstream=short_lived)
        assert http.get(f"{proxy.url}/warm").text == "cached"
    try:  # the upstream is gone now; a new client connection (eager connects upstream per connection)
        with httpx.Client(trust_env=False, timeout=10) as fresh:
            hit = fresh.get(f"{proxy.url}/warm")
    except httpx.HTTPError:
        hit = None
    if served:
        assert hit is not None and (hit.status_code, hit.headers["x-cache"], hit.text) == (
            200,
            "HIT",
            "cached",
        )
    else:
        assert hit is None or hit.status_code != 200


@pytest.mark.parametrize("keep", [False, True])
def test_keep_host_header(origin, proxy_factory, http, keep):
    origin.route("/host", echo=True)
    proxy = proxy_factory({"keep_host_header": keep})
    http.get(f"{proxy.url}/host", headers={"Host": "shop.example:8443"})
    hosts = [value for name, value in origin.requests("/host")[0]["headers"] if name.lower() == "host"]
    assert hosts == (["shop.example:8443"] if keep else [f"127.0.0.1:{origin.port}"])


def test_an_unreachable_upstream_gets_the_caches_json_502(proxy_factory, http):
    proxy = proxy_factory(upstream=f"http://127.0.0.1:{free_port()}")
    response = http.get(f"{proxy.url}/nothing-there")
    assert response.status_code == 502
    detail = response.json()["detail"].lower()
    assert "connect" in detail or "refused" in detail
    assert response.headers["x-cache"] == "MISS"


def test_alt_svc_points_at_the_proxy_on_misses_and_hits(origin, proxy_factory, http):
    """update_alt_svc: an upstream's Alt-Svc would otherwise send clients around the proxy."""
    fresh_route(origin, "/alt", headers=[("Alt-Svc", 'h3="origin.example:443"; ma=60')], body="x")
    proxy = proxy_factory()
    for expected in ("MISS", "HIT"):
        response = http.get(f"{proxy.url}/alt")
        assert response.headers["x-cache"] == expected
        assert response.headers["alt-svc"] == f'h3=":{proxy.port}"; ma=60'


# -- logging (termlog, dumper, errorcheck) ----------------------------------------------------------------


def test_info_logging_shows_the_listener_and_connections(origin, proxy_factory, http):
    fresh_route(origin, "/log", body="x")
    proxy = proxy_factory({"termlog_verbosity": "info"})
    http.get(f"{proxy.url}/log")
    proxy.stop()
    log = proxy.log_text()
    assert f"listening at 127.0.0.1:{proxy.port}" in log
    assert "client connect" in log


def test_quiet_keeps_info_lines_out(origin, proxy_factory, http):
    fresh_route(origin, "/log", body="x")
    proxy = proxy_factory({"termlog_verbosity": "info"}, args=["-q"])
    http.get(f"{proxy.url}/log")
    proxy.stop()
    assert "listening at" not in proxy.log_text()
    assert "client connect" not in proxy.log_text()


def test_flow_detail_prints_mitmdumps_flow_lines(origin, proxy_factory, http):
    fresh_route(origin, "/flowline", body="x")
    proxy = proxy_factory({"flow_detail": 1})
    http.get(f"{proxy.url}/flowline")
    proxy.stop()
    assert "GET http://" in proxy.log_text() and "/flowline" in proxy.log_text()


def test_a_port_in_use_stops_startup(origin, proxy_factory):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        returncode, output = proxy_factory.run_expecting_failure(port=taken.getsockname()[1])
    assert returncode == 1
    assert "address already in use" in output.lower()


# -- shutdown ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_shut_down_cleanly(origin, proxy_factory, http, sig):
    fresh_route(origin, "/bye", body="x")
    proxy = proxy_factory()
    http.get(f"{proxy.url}/bye")
    os.kill(proxy.pid, sig)
    deadline = time.monotonic() + 10
    while proxy.returncode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.returncode == 0, proxy.log_text()


# -- the lean launcher alone: command line, -s, PYTHONOPTIMIZE, the wrapper ------------------------------------


def test_lean_runs_optimised_in_place_of_its_wrapper(lean_factory, http):
    """serve.sh execs Python (same PID: signals and exit code are the proxy's), with PYTHONOPTIMIZE=1."""
    proxy = lean_factory(env={"MITMCACHE_SKIP_SETUP": None})  # the wrapper's setup.sh runs too
    cmdline = Path(f"/proc/{proxy.pid}/cmdline").read_bytes().split(b"\0")
    environ = Path(f"/proc/{proxy.pid}/environ").read_bytes().split(b"\0")
    assert cmdline[1:3] == [b"-m", b"mitmcache"]
    assert b"PYTHONOPTIMIZE=1" in environ


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--anticache"], "--anticache"),
        (["--set", "anticache=true"], "anticache addon"),
        (["--set", "cache_tll=5"], "did you mean cache_ttl"),
        (["--set", "cache_ttl=abc"], "cache_ttl"),
    ],
)
def test_lean_refuses_what_it_does_not_support_naming_it(lean_factory, args, named):
    returncode, output = lean_factory.run_expecting_failure(args=args)
    assert returncode != 0
    assert named in output


def test_lean_loads_another_script_after_the_cache(origin, lean_factory, http, tmp_path):
    script = tmp_path / "tag.py"
    script.write_text(
        "class Tag:\n"
        "    def response(self, flow):\n"
        "        flow.response.headers['x-tag'] = 'tagged'\n"
        "addons = [Tag()]\n"
    )
    fresh_route(origin, "/tagged", body="x")
    proxy = lean_factory(args=["-s", str(script)])
    for expected in ("MISS", "HIT"):
        response = http.get(f"{proxy.url}/tagged")
        assert (response.headers["x-cache"], response.headers["x-tag"]) == (expected, "tagged")


def test_lean_without_the_cache_runs_the_ceiling_addon(tmp_path):
    """The benchmark's 'lean + ceiling' configuration: --no-cache -s scripts/ceiling_addon.py."""
    port = free_port()
    log_path = tmp_path / "ceiling.log"
    argv = [
        str(LEAN),
        "--mode",
        f"reverse:http://127.0.0.1:{free_port()}@127.0.0.1:{port}",
        "--set",
        "connection_strategy=lazy",
        "--no-cache",
        "-s",
        str(CEILING_ADDON),
    ]
    proc = spawn(argv, clean_env({"MITMCACHE_SKIP_SETUP": "1"}), tmp_path, log_path)
    try:
        deadline = time.monotonic() + 15
        with httpx.Client(timeout=2, trust_env=False) as client:
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    response = client.get(f"http://127.0.0.1:{port}/bench/hit-1k")
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.05)
            assert (response.status_code, len(response.content)) == (200, 1024)
            assert response.headers["cache-status"] == "ceiling; hit"
            assert (
                client.get(f"http://127.0.0.1:{port}/__cache/health").headers["cache-status"]
                == "ceiling; hit"
            )
    finally:
        proc.terminate()
        assert proc.wait(10) == 0, log_path.read_text()


def test_lean_prints_its_options_including_the_caches(tmp_path):
    result = subprocess.run(
        [str(LEAN), "--options"],
        check=False,
        env=clean_env({"MITMCACHE_SKIP_SETUP": "1"}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "cache_ttl:" in result.stdout and "connection_strategy:" in result.stdout
    assert "anticache" not in result.stdout


# -- scripts/run.sh: stock mitmdump by default, PRODUCTION=1 for the lean launcher ------------------------


@pytest.mark.parametrize(
    ("mode", "tool"),
    [
        ({}, ".venv/bin/mitmdump"),
        ({"MITMDUMP": "1"}, ".venv/bin/mitmdump"),  # the old switch, still accepted: the default
        ({"PRODUCTION": "1"}, "scripts/serve.sh"),
    ],
    ids=["default", "MITMDUMP=1", "PRODUCTION=1"],
)
def test_run_sh_runs_stock_mitmdump_unless_production_is_asked_for(origin, http, tmp_path, mode, tool):
    fresh_route(origin, "/run", body="via run.sh")
    port = free_port()
    log_path = tmp_path / "run.log"
    switches = {"MITMDUMP": None, "PRODUCTION": None, "MITMWEB": None}
    env = clean_env({"LISTEN_PORT": str(port), "TERMLOG": "warn", **switches, **mode})
    argv = [str(REPO_ROOT / "scripts" / "run.sh"), origin.url, "--set", f"confdir={tmp_path / 'confdir'}"]
    proc = spawn(argv, env, tmp_path, log_path)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if http.get(f"http://127.0.0.1:{port}/__cache/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        assert [http.get(f"http://127.0.0.1:{port}/run").headers["x-cache"] for _ in range(2)] == [
            "MISS",
            "HIT",
        ]
    finally:
        proc.terminate()  # run.sh execs the proxy (an upstream was given): the proxy gets the SIGTERM
        returncode = proc.wait(15)
    output = log_path.read_text()
    assert returncode == 0, output
    script = f" -s {REPO_ROOT / 'addons' / 'cache.py'}" if tool.endswith("mitmdump") else ""
    assert f"run: {REPO_ROOT / tool} --mode reverse:{origin.url}@127.0.0.1:{port}{script} --set" in output
