"""scripts/hook_instructions.py, the instruction counter for the cache's hooks: its driver runs real
flows through the hooks (the counting itself needs valgrind and minutes, so it is run by hand)."""

import pytest

from tests.support.scripts import script_module


@pytest.fixture(scope="module")
def hook_instructions():
    with script_module("hook_instructions") as module:
        yield module


@pytest.mark.parametrize(
    ("hits", "gzip"),
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["misses", "hits", "gzip misses", "gzip hits"],
)
def test_the_driver_gets_the_answers_it_counts(hook_instructions, hits, gzip):
    """The driver raises when a flow is not answered as it should be (a MISS stored, a HIT), so a
    count is never taken over flows that went another way."""
    hook_instructions.drive(3, hooks=True, hits=hits, gzip=gzip)


def test_the_count_per_flow_leaves_out_building_the_flows(hook_instructions):
    # 1000 more flows cost 9,000,000 more instructions with the hooks, 4,000,000 without them
    assert hook_instructions.per_flow(10_000_000, 19_000_000, 6_000_000, 10_000_000, 1000) == 5000
