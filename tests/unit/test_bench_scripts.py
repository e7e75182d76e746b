"""The benchmark scripts are run by hand (scripts/bench.sh), not by the suite: what can be checked
without running them is checked here, so that a refactor of benchlib cannot leave a section calling
a helper that is gone (a full run once died 19 minutes in on one)."""

import ast
import http.server
import threading

import pytest

from tests.support.scripts import SCRIPTS, script_module

BENCH_MODULES = sorted(SCRIPTS.glob("bench*.py"))


@pytest.fixture(scope="module")
def benchlib():
    with script_module("benchlib") as module:
        yield module


@pytest.mark.parametrize("script", BENCH_MODULES, ids=lambda p: p.name)
def test_every_benchlib_helper_a_bench_script_calls_exists(script, benchlib):
    tree = ast.parse(script.read_text(), str(script))
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "bl"
    }
    assert sorted(name for name in used if not hasattr(benchlib, name)) == []


def test_herds_run_three_rounds_one_when_quick_and_as_many_as_asked(benchlib):
    assert (benchlib.herd_rounds(False), benchlib.herd_rounds(True), benchlib.herd_rounds(True, 20)) == (
        3,
        1,
        20,
    )


@pytest.fixture(scope="module")
def bench():
    with script_module("bench") as module:
        yield module


def test_every_budgeted_ratio_of_two_processes_is_also_measured_side_by_side_once(bench):
    pairs = bench._budget_pairs(bench.RATIOS, list(bench.CONFIGS))
    assert pairs == [
        ("hit-1k", "ceiling-1k"),
        ("miss-1k", "passthrough"),  # both of its budgets (16 connections, 1 connection): one pair
        ("lean-hit-1k", "ceiling-1k"),
        ("lean-hit-1k", "lean-ceiling-1k"),
    ]


def test_ratios_without_a_budget_or_within_one_process_are_not_paired(bench):
    hit, miss = (next(c for c in bench.CONFIGS if c.name == name) for name in ("hit-1k", "miss-1k"))
    assert hit.proxy == miss.proxy
    ratios = (
        ("same process", "miss-1k", "hit-1k", "p50", ("<=", 2.0)),
        ("no budget", "hit-1k", "ceiling-1k", "rps", None),
    )
    assert bench._budget_pairs(ratios, list(bench.CONFIGS)) == []


def test_core_busy_is_the_two_processes_cpu_over_the_runs_wall_time(bench):
    side = [{"loaded": {"cpu_s": 1.4, "seconds": 3.0}}, {"loaded": {"cpu_s": 1.5, "seconds": 2.9}}]
    assert bench._busy(side) == pytest.approx(2.9 / 3.0)


def test_a_side_by_side_run_is_read_as_if_the_process_had_had_the_core_to_itself(bench):
    run = {
        "loaded": {
            "requests": 600,
            "seconds": 3.0,
            "rps": 200.0,
            "cpu_s": 1.2,
            "p50_ms": 40.0,
            "p99_ms": 80.0,
            "cpu_ms_per_request": 2.0,
        },
        "single": {"p50_ms": 1.5},
    }
    assert bench._paired_metric(run, "rps") == pytest.approx(500.0)  # 600 requests in 1.2 CPU-seconds
    assert bench._paired_metric(run, "p50") == pytest.approx(16.0)  # 40 ms with 0.4 of the core
    assert bench._paired_metric(run, "cpu") == 2.0


def test_the_one_connection_latency_is_read_off_the_alternating_run(bench):
    run = {"loaded": {"requests": 600, "seconds": 3.0, "cpu_s": 1.2}, "single": {"p50_ms": 1.5}}
    assert bench._paired_metric(run, "p50_1") == 1.5


def test_a_loaded_side_by_side_run_has_no_one_connection_latency(bench):
    """Loaded side by side, each of the two single requests would mostly wait for the other's: the
    ratio of those latencies would tend to 1 whatever the costs."""
    run = {"loaded": {"requests": 600, "seconds": 3.0, "cpu_s": 1.2}}
    assert bench._paired_metric(run, "p50_1") is None
    assert bench._per_round([(run, run)], "p50_1", bench._paired_metric) == []


@pytest.fixture
def answering_server():
    """Two loopback HTTP/1.1 servers answering every GET with 1 KiB, keep-alive; the paths they saw."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # head and body are two writes: no 40 ms wait between them

        def do_GET(self):
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "1024")
            self.end_headers()
            self.wfile.write(b"x" * 1024)

        def log_message(self, *args):
            pass

    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield [f"http://127.0.0.1:{server.server_address[1]}" for server in servers], seen
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_alternating_sends_to_each_proxy_in_turn_on_one_connection_each(bench, answering_server):
    urls, seen = answering_server
    miss = next(c for c in bench.CONFIGS if c.name == "miss-1k")
    passthrough = next(c for c in bench.CONFIGS if c.name == "passthrough")
    first, second = bench._alternating((miss, passthrough), urls, 0.3)
    assert first["requests"] == second["requests"] > 10
    assert 0 < first["p50_ms"] < 1000 and 0 < second["p50_ms"] < 1000
    assert len(set(seen)) == len(seen)  # a new URL every time: each request of a miss configuration is a miss


def test_every_round_starts_at_its_own_turn(bench):
    assert [bench._rotated([1, 2, 3], r) for r in range(4)] == [[1, 2, 3], [2, 3, 1], [3, 1, 2], [1, 2, 3]]
    assert bench._rotated([], 3) == []
