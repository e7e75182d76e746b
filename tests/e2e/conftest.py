"""Fixtures for end-to-end tests: a real origin, real proxies, and a plain HTTP client.

The origin process is shared by the tests of one module (starting it costs ~0.1 s) and reset before
each test, so tests never see each other's routes or request log. Proxies are per test: each test
starts the proxies it needs with the settings it is about, and all are stopped at teardown. When a
test fails, the logs of its proxies are printed so the failure can be read without rerunning.

Every test that uses ``proxy_factory`` runs twice: through stock ``mitmdump -s addons/cache.py`` and
through the lean production launcher (``scripts/serve.sh``); the test ids end in ``[mitmdump]`` and
``[lean]`` (``-k lean`` selects one side). Tests about one tool (mitmweb) start their ``Proxy`` directly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.harness import LAUNCHERS, Origin, Proxy, SettingValue


@pytest.fixture(scope="module")
def origin_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    """The origin process for one test module (use ``origin`` in tests: it is reset per test)."""
    with Origin(workdir=tmp_path_factory.mktemp("origin")) as origin:
        yield origin


@pytest.fixture
def origin(origin_process: Origin) -> Origin:
    """A running origin with no routes and an empty request log."""
    origin_process.reset()
    return origin_process


class ProxyFactory:
    """Starts proxies for one test and stops them all at teardown.

    ``proxy_factory(settings, env, upstream=..., **Proxy kwargs)``: ``upstream`` defaults to the test's
    ``origin``; ``launcher`` defaults to this factory's (the fixture's parameter). Logs and working
    directories go under the test's ``tmp_path``.
    """

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path, launcher: str = "mitmdump") -> None:
        self._request = request
        self._tmp_path = tmp_path
        self.launcher = launcher
        self.proxies: list[Proxy] = []
        self._runs = 0

    def _kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        self._runs += 1
        n = self._runs
        kwargs.setdefault("cwd", self._tmp_path / f"proxy{n}-cwd")
        kwargs.setdefault("log_path", self._tmp_path / f"proxy{n}.log")
        if kwargs.get("command") is None:
            kwargs.setdefault("launcher", self.launcher)
        return kwargs

    def _upstream(self, upstream: Origin | str | None) -> Origin | str:
        if upstream is not None:
            return upstream
        origin: Origin = self._request.getfixturevalue("origin")
        return origin

    def __call__(
        self,
        settings: Mapping[str, SettingValue] | None = None,
        env: Mapping[str, str | None] | None = None,
        *,
        upstream: Origin | str | None = None,
        **kwargs: Any,
    ) -> Proxy:
        proxy = Proxy(self._upstream(upstream), settings, env, **self._kwargs(kwargs))
        self.proxies.append(proxy)
        return proxy.start()

    def run_expecting_failure(
        self,
        settings: Mapping[str, SettingValue] | None = None,
        env: Mapping[str, str | None] | None = None,
        *,
        upstream: Origin | str | None = None,
        timeout: float = 15.0,
        **kwargs: Any,
    ) -> tuple[int, str]:
        """``Proxy.run_expecting_failure`` with this factory's defaults: returns (returncode, output)."""
        return Proxy.run_expecting_failure(
            self._upstream(upstream), settings, env, timeout=timeout, **self._kwargs(kwargs)
        )

    def stop_all(self) -> list[tuple[Proxy, int | None]]:
        return [(proxy, proxy.stop()) for proxy in self.proxies]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's report on the item, so fixtures can tell at teardown if the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(params=list(LAUNCHERS))
def launcher(request: pytest.FixtureRequest) -> str:
    """The proxy command a test runs through: ``"mitmdump"`` or ``"lean"`` (each test runs with both)."""
    return str(request.param)


@pytest.fixture
def proxy_factory(request: pytest.FixtureRequest, tmp_path: Path, launcher: str) -> Iterator[ProxyFactory]:
    """Call it to get a started ``Proxy``; every proxy it started is stopped at teardown."""
    factory = ProxyFactory(request, tmp_path, launcher)
    yield factory
    results = factory.stop_all()
    call_report = getattr(request.node, "rep_call", None)
    if call_report is not None and call_report.failed:
        for proxy, rc in results:
            if rc is None:
                continue
            print(f"\n--- proxy {proxy.url} exit code {rc}; log {proxy.log_path} ---\n{proxy.log_text()}")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A synchronous HTTP client; ``trust_env=False`` so a developer's HTTP(S)_PROXY is not used."""
    with httpx.Client(timeout=10, trust_env=False) as client:
        yield client
