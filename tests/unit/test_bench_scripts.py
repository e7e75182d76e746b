"""The benchmark scripts are run by hand (scripts/bench.sh), not by the suite: what can be checked
without running them is checked here, so that a refactor of benchlib cannot leave a section calling
a helper that is gone (a full run once died 19 minutes in on one)."""

import ast
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
BENCH_MODULES = sorted(SCRIPTS.glob("bench*.py"))


@pytest.fixture(scope="module")
def benchlib():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import benchlib

        yield benchlib
    finally:
        sys.path.remove(str(SCRIPTS))


@pytest.mark.parametrize("script", BENCH_MODULES, ids=lambda p: p.name)
def test_every_benchlib_helper_a_bench_script_calls_exists(script, benchlib):
    tree = ast.parse(script.read_text(), str(script))
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "bl"
    }
    assert sorted(name for name in used if not hasattr(benchlib, name)) == []
