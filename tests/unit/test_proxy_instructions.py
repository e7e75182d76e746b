"""scripts/proxy_instructions.py, the instruction counter for whole proxy processes: the command lines
it counts and the exchanges it counts over (the counting itself needs valgrind and minutes, so it is
run by hand)."""

from urllib.parse import urlsplit

import pytest

from tests.support.harness import Origin
from tests.support.scripts import script_module


@pytest.fixture(scope="module")
def proxy_instructions():
    with script_module("proxy_instructions") as module:
        yield module


@pytest.fixture(scope="module")
def origin():
    with Origin() as server:
        server.route("/plain", headers=[("Content-Type", "text/plain")], size=10)
        yield server


def test_the_cache_is_counted_as_the_benchmark_runs_it(proxy_instructions):
    argv = proxy_instructions.command("cache", lean=False)
    assert argv[0].endswith("mitmdump") and "addons/cache.py" in " ".join(argv)


def test_the_ceiling_and_the_pass_through_are_counted_without_the_cache(proxy_instructions):
    ceiling = " ".join(proxy_instructions.command("ceiling", lean=False))
    passthrough = " ".join(proxy_instructions.command("passthrough", lean=False))
    assert "ceiling_addon.py" in ceiling and "addons/cache.py" not in ceiling
    assert "-s" not in passthrough.split()


@pytest.mark.parametrize("name", ["cache", "ceiling", "passthrough"])
def test_the_production_launcher_is_counted_as_the_python_module_its_script_starts(proxy_instructions, name):
    """valgrind counts the process it starts: serve.sh would be the shell, not the proxy."""
    argv = proxy_instructions.command(name, lean=True)
    assert argv[1:4] == ["-O", "-m", "mitmcache"] and argv[0].endswith("python")
    assert ("--no-cache" in argv) == (name != "cache")


def test_the_totals_are_read_from_callgrinds_dump_by_event(proxy_instructions):
    dump = "events: Ir I1mr D1mr\nsummary: 3665487526 1200 3400\n\nfn=(1) main\n"
    assert proxy_instructions.totals(dump) == {"Ir": 3665487526, "I1mr": 1200, "D1mr": 3400}


def test_the_table_gives_per_request_figures_and_the_caches_ratio(proxy_instructions):
    counted = proxy_instructions.Counted
    base = counted("ceiling", {"Ir": 4_000_000}, 400)
    cache = counted("cache", {"Ir": 4_400_000}, 400)
    assert base.per_request() == 10_000
    assert "| k instructions | 10.0 | 11.0 | 1.100 |" in proxy_instructions.table(base, cache, "ceiling")


def test_the_table_adds_the_cache_misses_when_they_were_counted(proxy_instructions):
    events = {"Ir": 1000, "I1mr": 10, "D1mr": 20, "D1mw": 4, "ILmr": 0, "DLmr": 1, "DLmw": 0}
    base = proxy_instructions.Counted("passthrough", events, 1)
    cache = proxy_instructions.Counted("cache", dict(events, I1mr=12), 1)
    table = proxy_instructions.table(base, cache, "passthrough")
    assert "| I1 misses | 10.0 | 12.0 | 1.200 |" in table and "| D1 misses | 24.0 | 24.0 | 1.000 |" in table


def test_an_exchange_over_answers_the_cache_did_not_give_stops_the_count(proxy_instructions, origin):
    port = urlsplit(origin.url).port
    proxy_instructions.exchange(port, "/plain?u={i}", 3)  # nothing expected: answered, counted
    with pytest.raises(RuntimeError, match="not HIT"):
        proxy_instructions.exchange(port, "/plain?u={i}", 3, expect="HIT")


def test_exchanges_over_several_connections_send_every_request_once_each_on_its_own_url(
    proxy_instructions, origin
):
    origin.reset()
    origin.route("/plain", headers=[("Content-Type", "text/plain")], size=10)
    proxy_instructions.exchanges(urlsplit(origin.url).port, "/plain?u={i}", 12, 4)
    log = origin.requests("/plain")
    assert len(log) == 12 and len({entry["path"] for entry in log}) == 12
    assert len({entry["conn"] for entry in log}) == 4
