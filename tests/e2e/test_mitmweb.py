"""mitmweb with our addon (issue 3, SPEC §6): each flow carries its cache decision, and the cache's
commands run through mitmweb's API, as its command bar calls them."""

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.harness import Origin, Proxy, free_port

MITMWEB = Path(sys.executable).with_name("mitmweb")
PASSWORD = "web-secret"
KEY = "s3cret-key"
XSRF = "xsrf-token"


class Web:
    def __init__(self, proxy: Proxy, port: int) -> None:
        self.proxy = proxy
        self.api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {PASSWORD}", "X-XSRFToken": XSRF},
            cookies={"_mitmproxy_xsrf": XSRF},
            timeout=10,
            trust_env=False,
        )

    def flows(self) -> list[dict]:
        response = self.api.get("/flows")
        assert response.status_code == 200, response.text
        return response.json()

    def flow(self, method: str, path: str) -> dict:
        """The newest finished flow for ``method path`` (mitmweb updates a flow after its hooks)."""
        deadline = time.monotonic() + 5
        while True:
            found = [
                f
                for f in self.flows()
                if f["request"]["method"] == method and f["request"]["path"] == path and f.get("response")
            ]
            if found:
                return found[-1]
            assert time.monotonic() < deadline, f"no finished flow for {method} {path}"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def web(origin_process: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    tmp = tmp_path_factory.mktemp("mitmweb")
    port = free_port()
    command = [
        str(MITMWEB),
        "--set",
        "web_open_browser=false",
        "--set",
        f"web_password={PASSWORD}",
        "--set",
        f"web_port={port}",
    ]
    proxy = Proxy(
        origin_process,
        {"cache_admin_key": KEY, "async_routes": "POST /queued/*"},
        command=command,
        cwd=tmp / "cwd",
        log_path=tmp / "mitmweb.log",
    )
    with proxy:
        web = Web(proxy, port)
        deadline = time.monotonic() + 10
        while True:  # the web server may come up a moment after the proxy
            try:
                if web.api.get("/flows").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, proxy.log_text()
            time.sleep(0.05)
        yield web
        web.api.close()


def test_mitmweb_flows_carry_the_cache_decision(origin, web, http):
    origin.route("/decided", headers=[("Cache-Control", "max-age=60")], body="data")
    url = f"{web.proxy.url}/decided"
    http.get(url)
    http.get(url)
    http.post(url, content=b"x")
    web.flow("POST", "/decided")  # wait until mitmweb has the last one
    flows = [f for f in web.flows() if f["request"]["path"] == "/decided"]
    decisions = [(f["request"]["method"], f["comment"].split(" | ")[0], f["marked"]) for f in flows]
    assert decisions == [
        ("GET", "MISS stored", "🔴"),
        ("GET", "HIT", "🟢"),
        ("POST", "BYPASS invalidated", "⚪"),
    ]


def test_a_queued_write_says_so_in_mitmweb_and_the_queue_commands_answer_in_one_line(origin, web, http):
    origin.route("/queued/a", status=200)
    job_id = http.post(f"{web.proxy.url}/queued/a", content=b"x").json()["id"]
    assert web.flow("POST", "/queued/a")["comment"].split(" | ")[0] == f"QUEUED id={job_id}"
    stats = web.api.post("/commands/cache.queue.stats", json={"arguments": []})
    assert stats.status_code == 200, stats.text
    assert re.fullmatch(
        r"queued=\d+ delivering=\d+ delivered=\d+ dead=\d+ oldest_queued_age=\S+ delivery_rate=\S+",
        stats.json()["value"],
    )
    retried = web.api.post("/commands/cache.queue.retry", json={"arguments": [job_id]})
    assert retried.json()["value"] == f"id={job_id} retry=scheduled"


def test_cache_commands_run_through_the_mitmweb_api(origin, web, http):
    origin.route("/commanded", headers=[("Cache-Control", "max-age=60")], body="data")
    http.get(f"{web.proxy.url}/commanded")
    answer = web.api.post("/commands/cache.stats", json={"arguments": []})
    assert answer.status_code == 200, answer.text
    assert re.fullmatch(r"hit_ratio=\S+ hits=\d+ .* entries=[1-9]\d* .*", answer.json()["value"])
    purged = web.api.post("/commands/cache.purge", json={"arguments": ["/commanded"]})
    assert purged.json() == {"value": 1}


def test_a_command_without_the_xsrf_token_is_refused(web):
    answer = web.api.post("/commands/cache.stats", json={"arguments": []}, headers={"X-XSRFToken": "other"})
    assert answer.status_code == 403


def test_control_flows_show_without_the_admin_key(web, http):
    http.get(f"{web.proxy.url}/__cache/stats", headers={"Authorization": f"Bearer {KEY}"})
    flow = web.flow("GET", "/__cache/stats")
    assert flow["comment"].startswith("ADMIN stats 200")
    assert KEY not in json.dumps(flow["request"]["headers"])
