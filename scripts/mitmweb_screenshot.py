#!/usr/bin/env python3
"""Take a screenshot of mitmweb's flow list with the cache's decision on every flow (docs/mitmweb.png).

Starts the demo upstream (scripts/demo_upstream.py) and a real mitmweb running our addon, sends traffic
that shows each decision -- a miss, hits, a 304 answered from the cache, coalesced requests, a flow
the cache may not store, a bypass, and control-plane requests -- and photographs mitmweb's flow list
with headless Chromium (Debian's ``chromium`` package) as a user sees it: the columns
``MITMWEB=1 scripts/run.sh`` switches on (the comment column among them), mitmweb's own styles.

    .venv/bin/python scripts/mitmweb_screenshot.py [--output docs/mitmweb.png] [--keep]

``--keep`` leaves mitmweb running afterwards (Ctrl-C stops it) and prints its URL, to look around.
Every process it starts is stopped by its own PID.

How the browser gets in: mitmweb accepts its password as ``?token=`` on the index page and sets an
auth cookie, so Chromium needs no login form. ``--virtual-time-budget`` lets the page's JavaScript
load the flows over mitmweb's websocket before the picture is taken.
"""

import argparse
import asyncio
import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)
MITMWEB = PYTHON.with_name("mitmweb")
WEB_PASSWORD = "screenshot"
ADMIN_KEY = "demo-admin-key"
COLUMNS = [
    "tls",
    "icon",
    "path",
    "method",
    "status",
    "size",
    "time",
    "comment",
]  # as scripts/run.sh sets them


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, check, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with code {proc.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.HTTPError, OSError):
            if check():
                return
        if time.monotonic() > deadline:
            sys.exit(f"{what} not ready within {timeout} s:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def drive(proxy: str) -> None:
    """Traffic showing each cache decision, in an order that reads well top to bottom."""
    async with httpx.AsyncClient(base_url=proxy, timeout=15, trust_env=False) as client:
        await client.get("/time")  # MISS, stored
        etag = (await client.get("/time")).headers["etag"]  # HIT
        await client.get("/time", headers={"If-None-Match": etag})  # HIT answered 304
        await client.get("/items?page=2")  # MISS
        await client.get("/items?page=2")  # HIT
        # Five clients at once for a slow key: one goes upstream, four wait for its answer.
        limits = httpx.Limits(max_connections=5, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=proxy, timeout=15, limits=limits, trust_env=False) as burst:
            await asyncio.gather(*(burst.get("/slow") for _ in range(5)))
        await client.get("/private")  # MISS, not stored: private
        await client.post("/items", content=b"{}")  # BYPASS: not a GET
        await client.get("/time", headers={"Clear-Cache": "1", "Clear-Cache-Key": ADMIN_KEY})  # refresh
        await client.get("/__cache/stats", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        await client.get("/__cache/stats", headers={"Authorization": "Bearer wrong"})  # 401
        await asyncio.sleep(0.3)


class DevTools:
    """Chromium's DevTools protocol over ``--remote-debugging-pipe``: JSON messages separated by NUL
    bytes, read by the browser on fd 3 and written on fd 4. No debugging port is opened."""

    def __init__(self, chromium: str, flags: list[str]) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_pipes() -> None:
            # In the child, before exec: our pipe ends become fds 3 and 4, by way of fds >= 10 so
            # that one cannot overwrite the other. dup2 makes them inheritable; Python's other fds
            # are close-on-exec.
            reader, writer = (
                fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10),
                fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10),
            )
            os.dup2(reader, 3)
            os.dup2(writer, 4)

        self.proc = subprocess.Popen(
            [chromium, *flags, "--remote-debugging-pipe", "about:blank"],
            preexec_fn=wire_pipes,  # noqa: PLW1509 -- no threads are running here
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None

    def call(self, method: str, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:  # events and other answers are skipped
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"chromium closed the DevTools pipe during {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.session = None
            self.call("Browser.close")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        stop(self.proc)
        os.close(self._to_browser)
        os.close(self._from_browser)


def screenshot(url: str, output: Path, width: int, height: int, rows: int) -> None:
    """Open mitmweb's flow list, wait for ``rows`` flows and save a PNG of the page as it is."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium not found: install Debian's chromium package (apt-get install chromium)")
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ]
    browser = DevTools(chromium, flags)
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        browser.session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        browser.call("Page.navigate", url=url)
        deadline = time.monotonic() + 20
        while (browser.evaluate("document.querySelectorAll('.flow-table tbody tr').length") or 0) < rows:
            if time.monotonic() > deadline:
                sys.exit("mitmweb's flow list did not show the flows within 20 s")
            time.sleep(0.2)
        time.sleep(0.5)  # let the last rows lay out
        png = browser.call("Page.captureScreenshot", format="png")["data"]
        output.write_bytes(base64.b64decode(png))
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "mitmweb.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=680)
    parser.add_argument("--keep", action="store_true", help="leave mitmweb running afterwards")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mitmweb-screenshot-"))
    upstream_log, web_log = work / "upstream.log", work / "mitmweb.log"
    upstream_port, proxy_port, web_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    proxy = f"http://127.0.0.1:{proxy_port}"
    web = f"http://127.0.0.1:{web_port}"
    procs: list[subprocess.Popen] = []
    try:
        with open(upstream_log, "wb") as log:
            procs.append(
                subprocess.Popen(
                    [PYTHON, ROOT / "scripts" / "demo_upstream.py", "--port", str(upstream_port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        wait_until(
            "demo upstream", lambda: httpx.get(f"{upstream}/time").status_code == 200, procs[0], upstream_log
        )

        command = [
            MITMWEB,
            "--mode",
            f"reverse:{upstream}@127.0.0.1:{proxy_port}",
            "-s",
            ROOT / "addons" / "cache.py",
            "--set",
            "connection_strategy=lazy",
            "--set",
            "termlog_verbosity=warn",
            "--set",
            f"confdir={work / 'confdir'}",
            "--set",
            "web_open_browser=false",
            "--set",
            f"web_password={WEB_PASSWORD}",
            "--set",
            f"web_port={web_port}",
            "--set",
            f"cache_admin_key={ADMIN_KEY}",
        ]
        for column in COLUMNS:
            command += ["--set", f"web_columns={column}"]
        with open(web_log, "wb") as log:
            procs.append(
                subprocess.Popen(
                    command,
                    cwd=work,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )

        def ready() -> bool:
            health = httpx.get(f"{proxy}/__cache/health", trust_env=False)
            flows = httpx.get(
                f"{web}/flows", headers={"Authorization": f"Bearer {WEB_PASSWORD}"}, trust_env=False
            )
            return (
                health.status_code == 200 and health.json().get("service") == "mitmcache" and flows.is_success
            )

        wait_until("mitmweb", ready, procs[1], web_log)
        httpx.post(
            f"{web}/clear",
            headers={"Authorization": f"Bearer {WEB_PASSWORD}", "X-XSRFToken": "x"},
            cookies={"_mitmproxy_xsrf": "x"},
            trust_env=False,
        )  # forget the readiness probes
        asyncio.run(drive(proxy))

        flows = httpx.get(
            f"{web}/flows", headers={"Authorization": f"Bearer {WEB_PASSWORD}"}, trust_env=False
        )
        for flow in flows.json():
            print(f"{flow['request']['method']:5} {flow['request']['path']:16} {flow['comment']}")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        screenshot(
            f"{web}/?token={WEB_PASSWORD}#/flows", args.output, args.width, args.height, len(flows.json())
        )
        print(f"wrote {args.output}")
        if args.keep:
            print(f"mitmweb: {web}/?token={WEB_PASSWORD}  proxy: {proxy}  (Ctrl-C stops)")
            with contextlib.suppress(KeyboardInterrupt):
                procs[1].wait()
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
