"""End-to-end test harness: a real origin process and a real proxy running our addon.

The proxy is stock ``mitmdump -s addons/cache.py`` or the lean production launcher
(``scripts/serve.sh``, ``python -m mitmcache``; see ``LAUNCHERS``): every e2e test runs through both.

Why real processes: the behaviours that matter most (coalescing under concurrency, streaming large
bodies, keep-alive, startup failures on bad configuration) only show on real sockets and a real
mitmproxy event loop; in-process fakes would hide them.

Design choices, all for robustness and isolation:

* Child output goes to a log file, never a pipe (an unread pipe can fill up and block the child).
* Readiness is proven by *our addon* answering ``/__cache/health`` with ``"service": "mitmcache"``, not by
  the port being open (the origin would answer a forwarded request too), and from *this* process (the
  ``pid`` it reports, or its parent's for a worker): a free port can be taken by another test's proxy
  before this one binds it, and that proxy would answer in its place.
* A child that exits during startup fails the test at once, with its log in the message.
* The developer's cache settings never leak in: the cache's environment variables are removed, the
  proxy runs in a fresh temp directory (no ``.env`` found by accident), and mitmproxy's ``confdir`` is a
  per-test-session temp directory (no ``~/.mitmproxy/config.yaml``).
* Every process is stopped by its own PID; an ``atexit`` hook stops any a caller forgot.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, Self

import httpx

from tests.support.origin import pattern_bytes, pattern_chunks

__all__ = [
    "ADDON_SCRIPT",
    "CACHE_ENV_VARS",
    "LAUNCHERS",
    "LEAN",
    "MITMDUMP",
    "REPO_ROOT",
    "HarnessError",
    "Origin",
    "Proxy",
    "clean_env",
    "free_port",
    "json_body",
    "pattern_bytes",
    "pattern_chunks",
    "pattern_sha256",
    "tls_certificate",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
ADDON_SCRIPT = REPO_ROOT / "addons" / "cache.py"
ORIGIN_SCRIPT = Path(__file__).resolve().with_name("origin.py")
# Not resolved: the venv's python is a symlink, and the console script lives next to the link.
MITMDUMP = Path(sys.executable).with_name("mitmdump")
# The lean production launcher's wrapper (runs python -m mitmcache with PYTHONOPTIMIZE=1).
LEAN = REPO_ROOT / "scripts" / "serve.sh"
# The proxy command lines a test can run; each takes mitmdump's arguments.
LAUNCHERS: dict[str, tuple[str, ...]] = {"mitmdump": (str(MITMDUMP),), "lean": (str(LEAN),)}

# The cache's own settings, removed from the child's environment so a developer's shell never changes
# what a test sees. Any variable starting with CACHE_ or ASYNC_ is removed too.
CACHE_ENV_VARS = frozenset(
    {
        "DEFAULT_CACHE_EXPIRY_TIME_SECS",
        "DEFAULT_REFRESH_WINDOW_SECS",
        "REQ_TIMEOUT",
        "CLEAR_CACHE_KEY",
        "UPSTREAM_URL",
    }
)
CACHE_ENV_PREFIX = "CACHE_"
WRITE_QUEUE_ENV_PREFIX = "ASYNC_"

POLL_INTERVAL = 0.05
HEALTH_PATH = "/__cache/health"
HEALTH_SERVICE = "mitmcache"

type SettingValue = str | int | float | bool | Sequence[str]
type HeaderPairs = Iterable[tuple[str, str]] | Mapping[str, str]


class HarnessError(RuntimeError):
    """A harness process failed to start, stop or answer; the message carries its log."""


def _parent_pid(pid: int) -> int | None:
    """The parent of process ``pid`` (None when it is gone): a worker's is its supervisor."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm)": state, then ppid


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pattern_sha256(size: int) -> str:
    """Hex SHA-256 of the origin's ``size``-byte pattern body, computed without holding it whole."""
    digest = hashlib.sha256()
    for chunk in pattern_chunks(size):
        digest.update(chunk)
    return digest.hexdigest()


def clean_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """``os.environ`` without the cache's variables, then ``extra`` merged on top (None unsets)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in CACHE_ENV_VARS and not k.startswith((CACHE_ENV_PREFIX, WRITE_QUEUE_ENV_PREFIX))
    }
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _header_list(headers: HeaderPairs) -> list[list[str]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [[str(k), str(v)] for k, v in items]


def _route_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Translate Python-friendly route fields (bytes ``body``, header mappings) to the origin's JSON."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "body":
            data = value.encode() if isinstance(value, str) else bytes(value)
            out["body_b64"] = base64.b64encode(data).decode()
        elif key == "headers":
            out["headers"] = _header_list(value)
        else:
            out[key] = value
    return out


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _stop_process(proc: subprocess.Popen[bytes], grace: float) -> int:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL. Only ever the PID we started."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    return proc.returncode


_running: weakref.WeakSet[Origin | Proxy] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for item in list(_running):
        with contextlib.suppress(Exception):
            item.stop()


_session_confdir: Path | None = None


def session_confdir() -> Path:
    """One mitmproxy confdir per test process: isolated from ~/.mitmproxy, CA generated only once."""
    global _session_confdir
    if _session_confdir is None:
        _session_confdir = Path(tempfile.mkdtemp(prefix="mitmcache-confdir-"))
        atexit.register(shutil.rmtree, _session_confdir, True)
    return _session_confdir


_session_certificate: tuple[Path, Path] | None = None


def tls_certificate() -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (its own CA): ``(certfile, keyfile)``.

    One per test process, made with ``cryptography`` (a mitmproxy dependency). Trust it with
    ``--set ssl_verify_upstream_trusted_ca=<certfile>``.
    """
    global _session_certificate
    if _session_certificate is None:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mitmcache test origin")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        folder = Path(tempfile.mkdtemp(prefix="mitmcache-tls-"))
        atexit.register(shutil.rmtree, folder, True)
        certfile, keyfile = folder / "origin-cert.pem", folder / "origin-key.pem"
        certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        keyfile.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        _session_certificate = (certfile, keyfile)
    return _session_certificate


class Origin:
    """The programmable origin (``tests/support/origin.py``) as a child process.

    Use as a context manager or call ``start()``/``stop()``. Control calls go over HTTP to the
    origin's ``/__origin/`` API. ``tls=True`` makes it an HTTPS origin with ``tls_certificate()``
    (``url`` is then ``https://...``; ``certfile`` is the certificate to trust). ``port`` listens on that
    port (an upstream that comes back where a proxy expects it), rather than any free one.
    """

    def __init__(
        self, *, host: str = "127.0.0.1", workdir: Path | None = None, tls: bool = False, port: int = 0
    ) -> None:
        self.host = host
        self._listen_port = port  # 0: any free port
        self.certfile: Path | None = None
        self._keyfile: Path | None = None
        if tls:
            self.certfile, self._keyfile = tls_certificate()
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="origin-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "origin.log"
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None
        self._final_log: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Self:
        """Start the process and wait until it has written its port and answers its control API."""
        if self._proc is not None:
            raise HarnessError("origin already started")
        portfile = self.workdir / "origin.port"
        portfile.unlink(missing_ok=True)
        tls_args = []
        if self.certfile is not None and self._keyfile is not None:
            tls_args = ["--certfile", str(self.certfile), "--keyfile", str(self._keyfile)]
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    str(ORIGIN_SCRIPT),
                    "--host",
                    self.host,
                    "--port",
                    str(self._listen_port),
                    "--portfile",
                    str(portfile),
                    *tls_args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _running.add(self)
        deadline = time.monotonic() + timeout
        while not portfile.exists():
            if self._proc.poll() is not None:
                self._fail(f"origin exited with code {self._proc.returncode} during startup")
            if time.monotonic() > deadline:
                self._fail(f"origin did not write its port file within {timeout} s")
            time.sleep(POLL_INTERVAL)
        self.port = int(portfile.read_text())
        verify: ssl.SSLContext | bool = True
        if self.certfile is not None:
            verify = ssl.create_default_context(cafile=str(self.certfile))
        self._client = httpx.Client(base_url=self.url, timeout=10, trust_env=False, verify=verify)
        try:
            self._control("GET", "health")
        except (httpx.HTTPError, HarnessError) as exc:
            self._fail(f"origin does not answer its control API: {exc!r}")
        return self

    def stop(self) -> int | None:
        """Stop the process (SIGTERM, then SIGKILL after 5 s); return its exit code. Idempotent."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._proc is not None and self in _running:
            _stop_process(self._proc, grace=5)
            self._final_log = _read_text(self.log_path)
            _running.discard(self)
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return None if self._proc is None else self._proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _fail(self, message: str) -> NoReturn:
        proc = self._proc
        if proc is not None:
            _stop_process(proc, grace=2)
        _running.discard(self)
        self._final_log = _read_text(self.log_path)
        raise HarnessError(f"{message}\n--- origin log ({self.log_path}) ---\n{self._final_log}") from None

    # -- properties --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` or ``https://HOST:PORT`` (no trailing slash)."""
        if self.port is None:
            raise HarnessError("origin not started")
        return f"{'https' if self.certfile is not None else 'http'}://{self.host}:{self.port}"

    def log_text(self) -> str:
        """The origin process's own stdout/stderr (not the request log: see ``log()``)."""
        return self._final_log if self._final_log is not None else _read_text(self.log_path)

    # -- control API -------------------------------------------------------------------------------

    def _control(self, method: str, command: str, payload: Any = None) -> Any:
        if self._client is None:
            raise HarnessError("origin not started")
        response = self._client.request(method, f"/__origin/{command}", json=payload)
        if response.status_code != 200:
            raise HarnessError(
                f"origin control {method} {command} -> {response.status_code}: {response.text}"
            )
        return response.json()

    def route(
        self,
        path: str,
        status: int = 200,
        headers: HeaderPairs = (),
        body: bytes | str = b"",
        delay: float = 0,
        size: int | None = None,
        chunked: bool = False,
        sequence: Sequence[Mapping[str, Any]] | None = None,
        echo: bool = False,
        *,
        fail: str | None = None,
        chunk_delay: float = 0,
        close_delimited: bool = False,
    ) -> None:
        """Define (or replace) the route for ``path`` (matched without the query).

        ``size`` streams a deterministic pattern body (see ``pattern_sha256``) instead of ``body``.
        ``sequence`` items override any field for the 1st, 2nd, ... request (the last repeats); they
        accept ``body`` (bytes/str) and ``headers`` (pairs or mapping) like this method.
        ``fail`` is "close", "reset", "hang", "partial" or "partial-reset" (see origin.py).
        """
        spec = _route_fields(
            {
                "path": path,
                "status": status,
                "headers": headers,
                "body": body,
                "delay": delay,
                "size": size,
                "chunked": chunked,
                "echo": echo,
                "fail": fail,
                "chunk_delay": chunk_delay,
                "close_delimited": close_delimited,
            }
        )
        if sequence is not None:
            spec["sequence"] = [_route_fields(item) for item in sequence]
        self._control("POST", "routes", spec)

    def reset(self) -> None:
        """Forget all routes and the request log."""
        self._control("POST", "reset")

    def log(self) -> list[dict[str, Any]]:
        """Received non-control requests, oldest first: method, path (with query), headers (pairs),
        body_size, body_b64, time, conn (TCP connection serial number)."""
        return list(self._control("GET", "log"))

    def requests(self, path: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
        """The log filtered by ``path`` and ``method``.

        A ``path`` containing ``?`` is compared with the full request target; otherwise with the path
        without its query (so ``"/items"`` matches ``/items?page=2``).
        """

        def matches(entry: dict[str, Any]) -> bool:
            if method is not None and entry["method"] != method.upper():
                return False
            if path is None:
                return True
            target = entry["path"] if "?" in path else entry["path"].split("?", 1)[0]
            return bool(target == path)

        return [entry for entry in self.log() if matches(entry)]

    def count(self, path: str | None = None, method: str | None = None) -> int:
        """How many requests the origin received (see ``requests()`` for the filters)."""
        return len(self.requests(path, method))

    def wait_for_count(
        self, expected: int, path: str | None = None, method: str | None = None, timeout: float = 5.0
    ) -> int:
        """Poll until ``count(path, method) >= expected`` (for background fetches); return the count.

        Raises ``HarnessError`` on timeout.
        """
        deadline = time.monotonic() + timeout
        while (seen := self.count(path, method)) < expected:
            if time.monotonic() > deadline:
                raise HarnessError(f"origin saw {seen} requests for {path or '*'}, expected {expected}")
            time.sleep(POLL_INTERVAL)
        return seen


class Proxy:
    """A real proxy in reverse mode in front of ``upstream``, running ``addons/cache.py``.

    ``launcher`` names the command (``LAUNCHERS``): ``"mitmdump"`` (default) or ``"lean"`` (the
    production launcher, which has the cache built in and takes the same arguments, ``-s`` included).

    ``settings`` become ``--set key=value`` (bools as true/false; a list or tuple repeats ``--set`` for
    sequence options) and replace the harness defaults of the same name (connection_strategy=lazy,
    flow_detail=0, termlog_verbosity=warn, confdir=<per-session temp dir>). ``env`` is merged over a clean
    environment (see ``clean_env``; a None value unsets). ``command`` replaces the launcher's command,
    e.g. ``[".venv/bin/mitmweb", "--set", "web_open_browser=false"]``. ``args`` are appended last.
    """

    def __init__(
        self,
        upstream: Origin | str,
        settings: Mapping[str, SettingValue] | None = None,
        env: Mapping[str, str | None] | None = None,
        *,
        cwd: Path | str | None = None,
        command: Sequence[str] | None = None,
        launcher: str = "mitmdump",
        args: Sequence[str] = (),
        script: Path | str = ADDON_SCRIPT,
        port: int | None = None,
        log_path: Path | str | None = None,
        confdir: Path | str | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self.upstream = upstream.url if isinstance(upstream, Origin) else upstream.rstrip("/")
        self.settings = dict(settings or {})
        self.env = clean_env(env)
        if launcher not in LAUNCHERS:
            raise HarnessError(f"unknown launcher {launcher!r}; known: {', '.join(LAUNCHERS)}")
        self.launcher = launcher
        if launcher == "lean":
            # scripts/test.sh has just run setup.sh; each start would otherwise repeat it (~0.1 s).
            self.env.setdefault("MITMCACHE_SKIP_SETUP", "1")
        self._tmp = Path(tempfile.mkdtemp(prefix="proxy-"))
        self.cwd = Path(cwd) if cwd is not None else self._tmp / "cwd"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.command = list(command) if command is not None else list(LAUNCHERS[launcher])
        self.args = list(args)
        self.script = Path(script)
        self._fixed_port = port
        self.port: int = port if port is not None else free_port()
        self.log_path = Path(log_path) if log_path is not None else self._tmp / "proxy.log"
        self.confdir = Path(confdir) if confdir is not None else session_confdir()
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._final_log: str | None = None

    # -- command line ------------------------------------------------------------------------------

    def argv(self) -> list[str]:
        """The full command line the proxy is started with."""
        # mitmproxy refuses a scalar option given twice ("Received multiple values for flow_detail"),
        # so a setting from the caller replaces the harness default instead of being appended.
        settings: dict[str, SettingValue] = {
            "connection_strategy": "lazy",
            "flow_detail": 0,
            "termlog_verbosity": "warn",
            "confdir": str(self.confdir),
            **self.settings,
        }
        argv = [
            *self.command,
            "--mode",
            f"reverse:{self.upstream}@127.0.0.1:{self.port}",
            "-s",
            str(self.script),
        ]
        for key, value in settings.items():
            values = value if isinstance(value, list | tuple) else [value]
            for item in values:
                text = ("true" if item else "false") if isinstance(item, bool) else str(item)
                argv += ["--set", f"{key}={text}"]
        return argv + self.args

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the proxy and wait until our addon answers its health endpoint.

        A port lost to a race with another process is retried with a new free port (up to 3 times).
        """
        if self._proc is not None:
            raise HarnessError("proxy already started")
        for attempt in range(3):
            self._spawn()
            try:
                self._wait_ready()
                return self
            except HarnessError:
                if (
                    self._fixed_port is None
                    and attempt < 2
                    and "address already in use" in self.log_text().lower()
                ):
                    self._proc = None
                    self.port = free_port()
                    continue
                raise
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        self._final_log = None
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                self.argv(),
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _running.add(self)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer yet"
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while True:
                if self._proc.poll() is not None:
                    self._fail(f"proxy exited with code {self._proc.returncode} during startup")
                try:
                    response = client.get(self.url + HEALTH_PATH)
                    if self._is_our_health(response):
                        return
                    last = f"{response.status_code} {response.headers.get('content-type')!r} {response.text[:200]!r}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                if time.monotonic() > deadline:
                    self._fail(f"proxy not ready within {self.startup_timeout} s (GET {HEALTH_PATH}: {last})")
                time.sleep(POLL_INTERVAL)

    def _is_our_health(self, response: httpx.Response) -> bool:
        if response.status_code != 200:
            return False
        if not response.headers.get("content-type", "").startswith("application/json"):
            return False
        try:
            payload = response.json()
        except (ValueError, UnicodeDecodeError):
            return False
        if not isinstance(payload, dict) or payload.get("service") != HEALTH_SERVICE:
            return False
        assert self._proc is not None
        pid = payload.get("pid")
        return pid == self._proc.pid or (isinstance(pid, int) and _parent_pid(pid) == self._proc.pid)

    def _fail(self, message: str) -> NoReturn:
        if self._proc is not None:
            _stop_process(self._proc, grace=5)
        self._final_log = _read_text(self.log_path)
        _running.discard(self)
        raise HarnessError(
            f"{message}\n--- command ---\n{' '.join(self.argv())}\n"
            f"--- {self.launcher} log ({self.log_path}) ---\n{self._final_log}"
        ) from None

    def stop(self) -> int | None:
        """SIGTERM, wait 10 s, then SIGKILL; return the exit code (None if never started).

        Idempotent. The log stays readable through ``log_text()`` afterwards.
        """
        if self._proc is not None and self in _running:
            _stop_process(self._proc, grace=10)
            self._final_log = _read_text(self.log_path)
            _running.discard(self)
        shutil.rmtree(self._tmp, ignore_errors=True)
        return None if self._proc is None else self._proc.returncode

    @property
    def returncode(self) -> int | None:
        """None while running (or never started)."""
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int:
        """The proxy process's PID (the launcher's wrapper execs Python, so it is the proxy's own)."""
        if self._proc is None:
            raise HarnessError("proxy not started")
        return self._proc.pid

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- properties --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        """The proxy's combined stdout/stderr so far (or final, after ``stop()``)."""
        return self._final_log if self._final_log is not None else _read_text(self.log_path)

    # -- bad-configuration runs --------------------------------------------------------------------

    @classmethod
    def run_expecting_failure(
        cls,
        upstream: Origin | str,
        settings: Mapping[str, SettingValue] | None = None,
        env: Mapping[str, str | None] | None = None,
        *,
        timeout: float = 15.0,
        **kwargs: Any,
    ) -> tuple[int, str]:
        """Run the same command as ``start()`` and expect it to exit on its own within ``timeout``.

        Returns ``(returncode, output)``. Raises ``HarnessError`` (and kills it) if it is still running
        at the timeout: a bad configuration must stop startup, not be ignored. Accepts the
        constructor's keyword arguments.
        """
        proxy = cls(upstream, settings, env, **kwargs)
        try:
            proxy._spawn()
            assert proxy._proc is not None
            try:
                rc = proxy._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proxy._fail(f"proxy was expected to exit but was still running after {timeout} s")
            return rc, _read_text(proxy.log_path)
        finally:
            proxy.stop()


def json_body(response: httpx.Response) -> Any:
    """``response.json()`` with the body in the error message when it is not JSON."""
    try:
        return response.json()
    except json.JSONDecodeError as exc:
        raise AssertionError(f"not JSON ({exc}): {response.status_code} {response.text[:500]!r}") from None


def spawn(argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Start a proxy process in its own session, its output going to ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
