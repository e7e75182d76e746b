"""A real ``redis-server`` of the tests' own, on a free port of 127.0.0.1.

Tests that kill, restart or configure Redis need one they own (the machine's Redis at 6379 is
shared). Without a ``redis-server`` binary the tests that need it skip -- except under ``CI=true``,
where they fail: CI must prove the shared tier. The server keeps its data in its own temporary
directory; with ``persist=True`` it writes an append-only file there, so a restart finds it again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Self

import pytest

from tests.support.harness import free_port

BINARY = shutil.which("redis-server")


def require_redis_server() -> str:
    """The ``redis-server`` binary; skips the test without one (fails under CI=true)."""
    if BINARY is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return BINARY


class RedisServer:
    def __init__(self, *, persist: bool = False, workdir: Path | None = None) -> None:
        self.binary = require_redis_server()
        self.persist = persist
        self.port = free_port()
        self._owns_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="redis-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "redis-server not running"
        return self._proc.pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> Self:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"]
        )
        self._proc = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.workdir),
                "--save",
                "",
                "--logfile",
                str(self.log_path),
                *persistence,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            time.sleep(0.05)
        return self

    def ping(self) -> bool:
        """True once the server answers; a restarted server with persistence answers ``LOADING``
        while it reads its append-only file back, which is not ready either."""
        try:
            return self.command("PING") == "PONG"
        except OSError:
            return False
        except RedisReplyError as e:
            if str(e).startswith("LOADING"):
                return False
            raise

    def command(self, *words: str | bytes) -> Any:
        """One command over a plain socket, its reply parsed (RESP2): text for simple strings,
        bytes for bulk strings, int, list, None; an error reply raises ``RedisReplyError``."""
        parts = [w.encode() if isinstance(w, str) else w for w in words]
        payload = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(payload)
            return _Reply(sock.makefile("rb")).read()

    def keys(self, pattern: str = "*") -> list[str]:
        """Every key matching ``pattern`` (SCAN: tests may, the cache never needs to)."""
        found, cursor = [], b"0"
        while True:
            cursor, names = self.command("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
            found += [n.decode() for n in names]
            if cursor == b"0":
                return sorted(found)

    def kill(self) -> None:
        """SIGKILL: Redis gone at once, as in a crash."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def pause(self) -> None:
        """SIGSTOP: Redis still accepts connections but answers nothing, as a stalled server."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def remove(self) -> None:
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()


class RedisReplyError(Exception):
    pass


class _Reply:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def read(self) -> Any:
        line = self._stream.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisReplyError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            if int(rest) < 0:
                return None
            data = self._stream.read(int(rest) + 2)
            return data[:-2]
        if kind == b"*":
            return None if int(rest) < 0 else [self.read() for _ in range(int(rest))]
        raise RedisReplyError(f"unexpected reply {line!r}")
