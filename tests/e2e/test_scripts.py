"""The scripts a user runs first: ``scripts/setup.sh`` (finding a Python >= 3.12, or saying how to get
one) and ``scripts/run.sh`` (the README's one run command: stock ``mitmdump -s addons/cache.py`` by
default, in front of a demo upstream when no URL is given; ``PRODUCTION=1`` for the lean launcher, whose
dispatch is tested with the other launcher tests in ``test_launcher.py``).

run.sh is started in its own session with its output in a log file; only the PIDs it started (found in
``/proc``) are ever signalled.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dotenv import dotenv_values

from tests.support.harness import REPO_ROOT, clean_env, free_port, json_body, session_confdir, spawn

RUN_SH = REPO_ROOT / "scripts" / "run.sh"
SETUP_SH = REPO_ROOT / "scripts" / "setup.sh"
MITMDUMP_TOOL = REPO_ROOT / ".venv" / "bin" / "mitmdump"
CACHE_SCRIPT = REPO_ROOT / "addons" / "cache.py"

# run.sh's switches, unset unless a test sets one, so the caller's shell never picks the tool.
SWITCHES: dict[str, str | None] = {"MITMDUMP": None, "PRODUCTION": None, "MITMWEB": None, "TERMLOG": None}

# run.sh reads UPSTREAM_URL from <repo>/.env whatever CACHE_ENV_FILE says: a developer's would win.
REPO_ENV_UPSTREAM = (REPO_ROOT / ".env").is_file() and dotenv_values(REPO_ROOT / ".env").get("UPSTREAM_URL")
needs_no_upstream_in_repo_env = pytest.mark.skipif(
    bool(REPO_ENV_UPSTREAM),
    reason="<repo>/.env sets UPSTREAM_URL, so run.sh would not start the demo upstream",
)


# -- scripts/setup.sh ----------------------------------------------------------------------------------

FAKE_PYTHON_311 = """#!/bin/sh
# A Python 3.11 stand-in: runs, but fails setup.sh's version check (sys.version_info >= (3, 12)).
case "$1" in
    --version|-V) echo "Python 3.11.9" ;;
    *) exit 1 ;;
esac
"""


def setup_sh_sandbox(tmp_path: Path, requirements: str | None = None) -> tuple[Path, dict[str, str]]:
    """A copy of setup.sh laid out like the repository (``scripts/setup.sh``, ``requirements.txt``) and
    an environment whose PATH offers only a fake Python 3.11 and the tools setup.sh needs (symlinked one
    by one, so that no real python3.12/3.13 in /usr/bin can be found). HOME is ``tmp_path``; PYTHON and
    PYENV_ROOT are unset. Returns (the copied script, the environment)."""
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "setup.sh"
    shutil.copy2(SETUP_SH, script)
    if requirements is None:
        shutil.copy2(REPO_ROOT / "requirements.txt", tmp_path / "requirements.txt")
    else:
        (tmp_path / "requirements.txt").write_text(requirements)
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    (fake_bin / "python3").write_text(FAKE_PYTHON_311)
    (fake_bin / "python3").chmod(0o755)
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("bash", "dirname", "sed", "cat", "flock"):
        if found := shutil.which(name):
            (tools / name).symlink_to(found)
    assert (tools / "bash").exists() and (tools / "dirname").exists() and (tools / "sed").exists()
    return script, {"HOME": str(tmp_path), "PATH": f"{fake_bin}:{tools}", "LC_ALL": "C"}


def test_setup_sh_without_python_3_12_fails_saying_how_to_fix_it_and_creates_no_venv(tmp_path):
    script, env = setup_sh_sandbox(tmp_path)
    result = subprocess.run(
        [str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=15, check=False
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert "no Python >= 3.12 found" in result.stderr
    assert "pyenv install 3.12" in result.stderr and "PYTHON=/path/to/python3.12" in result.stderr
    assert str(tmp_path / "fake-bin" / "python3") in result.stderr  # found but unusable
    assert f"{tmp_path}/.pyenv/versions/3.1[2-9]*/bin/python" in result.stderr  # ~/.pyenv, not /root's
    assert "command not found" not in result.stderr
    assert not (tmp_path / ".venv").exists()


def test_setup_sh_finds_a_python_under_pyenv_root_when_pyenv_is_not_on_path(tmp_path):
    script, env = setup_sh_sandbox(tmp_path, requirements="")  # nothing to install: no network
    good = tmp_path / "pyenv" / "versions" / "3.12.99" / "bin" / "python"
    good.parent.mkdir(parents=True)
    good.symlink_to(Path(sys.executable).resolve())  # this interpreter (>= 3.12) as pyenv lays it out
    env["PYENV_ROOT"] = str(tmp_path / "pyenv")
    result = subprocess.run(
        [str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"setup: creating .venv with {good} (Python 3." in result.stdout
    assert (tmp_path / ".venv" / "bin" / "python").exists()


def test_setup_sh_leaves_the_addon_compiled_for_both_launchers(tmp_path):
    """A proxy started where PYTHONDONTWRITEBYTECODE is set reads bytecode but writes none: setup.sh
    compiles the package for mitmdump (plain) and for the production launcher (``-O``)."""
    script, env = setup_sh_sandbox(tmp_path, requirements="")
    package = tmp_path / "addons" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n")
    env["PYTHON"] = str(Path(sys.executable).resolve())
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    compiled = sorted(p.name for p in (package / "__pycache__").iterdir())
    tag = sys.implementation.cache_tag
    assert compiled == [f"__init__.{tag}.opt-1.pyc", f"__init__.{tag}.pyc"]


# -- scripts/run.sh ------------------------------------------------------------------------------------


def run_sh_env(tmp_path: Path, **extra: str | None) -> dict[str, str]:
    """A clean environment for run.sh: no cache settings or switches from the caller's shell, and an
    empty CACHE_ENV_FILE, so a developer's <repo>/.env changes neither the addon nor run.sh's log level."""
    env_file = tmp_path / "empty.env"
    env_file.touch()
    return clean_env({**SWITCHES, "LISTEN_PORT": str(free_port()), "CACHE_ENV_FILE": str(env_file), **extra})


def children_of(pid: int) -> list[int]:
    """The PIDs whose parent is ``pid`` (from /proc/*/stat)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@contextlib.contextmanager
def run_sh(argv: list[str], env: dict[str, str], cwd: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Start ``scripts/run.sh argv...``; yield (process, log file). Stopped at the end if still running:
    SIGTERM, then SIGKILL to it and the children it started."""
    log_path = cwd / "run.log"
    proc = spawn([str(RUN_SH), *argv], env, cwd, log_path)
    try:
        yield proc, log_path
    finally:
        if proc.poll() is None:
            started = children_of(proc.pid)
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                for pid in [*started, proc.pid]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                proc.wait()


def wait_serving(proc: subprocess.Popen[bytes], log_path: Path, port: int, timeout: float = 15) -> None:
    """Until the cache answers its health endpoint on ``port`` (run.sh sets up, maybe starts the demo,
    then the proxy)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1, trust_env=False) as client:
        while True:
            assert proc.poll() is None, f"run.sh exited with {proc.returncode}:\n{log_path.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                response = client.get(f"http://127.0.0.1:{port}/__cache/health")
                if response.status_code == 200 and json_body(response).get("service") == "mitmcache":
                    return
            assert time.monotonic() < deadline, f"not serving within {timeout} s:\n{log_path.read_text()}"
            time.sleep(0.05)


def confdir_args() -> list[str]:
    return ["--set", f"confdir={session_confdir()}"]  # not ~/.mitmproxy


@needs_no_upstream_in_repo_env
def test_run_sh_without_an_upstream_serves_the_demo_through_stock_mitmdump(tmp_path, http):
    env = run_sh_env(tmp_path, TERMLOG="warn")
    port = int(env["LISTEN_PORT"])
    with run_sh(confdir_args(), env, tmp_path) as (proc, log_path):
        wait_serving(proc, log_path, port)
        first, second = (http.get(f"http://127.0.0.1:{port}/time") for _ in range(2))
        assert (first.status_code, first.headers["x-cache"]) == (200, "MISS")
        assert (second.status_code, second.headers["x-cache"], second.text) == (200, "HIT", first.text)
        output = log_path.read_text()
    assert "run: no UPSTREAM_URL given: started the demo upstream at http://127.0.0.1:" in output
    demo_url = output.split("started the demo upstream at ", 1)[1].split()[0]
    assert f"run: {MITMDUMP_TOOL} --mode reverse:{demo_url}@127.0.0.1:{port} -s {CACHE_SCRIPT} " in output


@needs_no_upstream_in_repo_env
def test_sigterm_to_run_sh_stops_the_proxy_and_the_demo_upstream(tmp_path):
    env = run_sh_env(tmp_path, TERMLOG="warn")
    port = int(env["LISTEN_PORT"])
    with run_sh(confdir_args(), env, tmp_path) as (proc, log_path):
        wait_serving(proc, log_path, port)
        started = {pid: cmdline(pid) for pid in children_of(proc.pid)}
        demo = [pid for pid, line in started.items() if "demo_upstream.py" in line]
        proxy = [pid for pid, line in started.items() if str(MITMDUMP_TOOL) in line]
        assert len(demo) == 1 and len(proxy) == 1, started
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(15)
    assert returncode == 0, log_path.read_text()
    for pid in (*demo, *proxy):
        assert not Path(f"/proc/{pid}").exists(), f"{pid} ({started[pid]}) still running"


@pytest.mark.parametrize("given_by", ["environment", ".env", "--set"])
def test_run_sh_shows_the_per_decision_lines_when_the_cache_logs_at_debug(origin, tmp_path, http, given_by):
    """CACHE_LOG_LEVEL=debug alone (no TERMLOG) is enough: run.sh lowers termlog_verbosity to debug."""
    env = run_sh_env(tmp_path)
    args = confdir_args()
    if given_by == "environment":
        env["CACHE_LOG_LEVEL"] = "debug"
    elif given_by == ".env":
        Path(env["CACHE_ENV_FILE"]).write_text("CACHE_LOG_LEVEL=DEBUG  # upper case is fine too\n")
    else:
        args += ["--set", "cache_log_level=debug"]
    port = int(env["LISTEN_PORT"])
    origin.route("/decided", headers=[("Cache-Control", "max-age=60")], body="x")
    with run_sh([origin.url, *args], env, tmp_path) as (proc, log_path):
        wait_serving(proc, log_path, port)
        assert [http.get(f"http://127.0.0.1:{port}/decided").headers["x-cache"] for _ in range(2)] == [
            "MISS",
            "HIT",
        ]
        deadline = time.monotonic() + 5
        while not (hits := [line for line in log_path.read_text().splitlines() if "HIT" in line]):
            assert time.monotonic() < deadline, f"no debug line for the hit:\n{log_path.read_text()}"
            time.sleep(0.05)
    assert "--set termlog_verbosity=debug" in log_path.read_text()
    assert any(f"GET {origin.url}/decided" in line for line in hits), hits


def test_run_sh_refuses_production_together_with_mitmweb(tmp_path):
    env = run_sh_env(tmp_path, PRODUCTION="1", MITMWEB="1")
    result = subprocess.run(
        [str(RUN_SH)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=15, check=False
    )
    assert result.returncode == 2
    assert "PRODUCTION=1 and MITMWEB=1 exclude each other" in result.stderr


@pytest.mark.parametrize("upstream", ["127.0.0.1:8000", "api.internal", "ftp://api.internal", "http://"])
def test_run_sh_refuses_an_upstream_argument_without_http_or_https(tmp_path, upstream):
    """mitmdump would take it for a flow filter and proxy to the demo upstream instead."""
    result = subprocess.run(
        [str(RUN_SH), upstream],
        env=run_sh_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"run: invalid upstream '{upstream}' (the first argument): expected a URL with its scheme, "
        "such as http://127.0.0.1:8000 or https://api.example.com"
    )
    assert "demo upstream" not in result.stdout


def test_run_sh_refuses_an_upstream_url_from_the_environment_without_its_scheme(tmp_path):
    env = run_sh_env(tmp_path, UPSTREAM_URL="127.0.0.1:8000")
    result = subprocess.run(
        [str(RUN_SH)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert (
        "run: invalid upstream '127.0.0.1:8000' (environment variable UPSTREAM_URL): expected a URL"
        in result.stderr
    )


def test_run_sh_refuses_an_upstream_url_from_the_env_file_without_its_scheme(tmp_path):
    """mitmproxy would take 127.0.0.1:8000 for https and answer every request with a 502."""
    env_file = tmp_path / "app.env"
    env_file.write_text("UPSTREAM_URL=127.0.0.1:8000\n")
    env = run_sh_env(tmp_path, CACHE_ENV_FILE=str(env_file))
    result = subprocess.run(
        [str(RUN_SH)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert (
        f"run: invalid upstream '127.0.0.1:8000' (UPSTREAM_URL in {env_file}): expected a URL"
        in result.stderr
    )
