"""The benchmark scripts are run by hand (scripts/bench.sh), not by the suite: what can be checked
without running them is checked here, so that a refactor of benchlib cannot leave a section calling
a helper that is gone (a full run once died 19 minutes in on one)."""

import ast

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
