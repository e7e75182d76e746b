"""The worker supervisor's pure parts: the --workers argument, which store more than one worker
needs, and which worker a process is (the supervisor itself runs in tests/e2e/test_workers.py)."""

import pytest

from mitmcache import workers
from mitmcache.store.selection import DISK, MEMORY, store_location


@pytest.mark.parametrize(
    ("argv", "count", "rest"),
    [
        (["--mode", "reverse:http://h"], None, ["--mode", "reverse:http://h"]),
        (["--workers", "4", "--mode", "m"], 4, ["--mode", "m"]),
        (["--mode", "m", "--workers=2"], 2, ["--mode", "m"]),
        (["--workers", "256"], 256, []),
    ],
)
def test_workers_is_taken_out_of_the_command_line(argv, count, rest):
    assert workers.split_workers(argv) == (count, rest)


@pytest.mark.parametrize("value", ["0", "257", "two", "-1", "", "1.5"])
def test_a_bad_workers_value_names_the_flag_and_the_range(value):
    with pytest.raises(workers.UsageError, match=r"--workers: expected a whole number from 1 to 256"):
        workers.split_workers(["--workers", value])


def test_a_process_started_alone_is_worker_1_of_1(monkeypatch):
    monkeypatch.delenv(workers.WORKER_VARIABLE, raising=False)
    assert (workers.identity().index, workers.identity().of) == (1, 1)
    assert not workers.supervised()


def test_a_supervised_process_knows_its_number(monkeypatch):
    monkeypatch.setenv(workers.WORKER_VARIABLE, "3/4")
    me = workers.identity()
    assert me.as_json() == {"worker": 3, "workers": 4, "pid": me.pid}


@pytest.mark.parametrize("store", [MEMORY, DISK])
def test_more_than_one_worker_refuses_a_store_that_cannot_be_shared_saying_why(monkeypatch, store):
    monkeypatch.setenv(workers.WORKER_VARIABLE, "1/2")
    with pytest.raises(ValueError, match=r"2 workers need a shared store \(CACHE_STORE=redis://...\)"):
        workers.check_store(store)


def test_workers_share_a_redis_store_and_one_worker_takes_any_store(monkeypatch):
    monkeypatch.setenv(workers.WORKER_VARIABLE, "1/2")
    workers.check_store(store_location("redis://127.0.0.1:6379/0"))
    monkeypatch.setenv(workers.WORKER_VARIABLE, "1/1")
    workers.check_store(MEMORY)
    workers.check_store(DISK)
