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


def test_the_count_is_read_from_callgrinds_dump(proxy_instructions):
    dump = "events: Ir\nsummary: 3665487526\n\nfn=(1) main\n"
    assert proxy_instructions.SUMMARY.search(dump).group(1) == "3665487526"
    assert proxy_instructions.Counted("cache", 4_000_000, 400).per_request == 10_000


def test_an_exchange_over_answers_the_cache_did_not_give_stops_the_count(proxy_instructions, origin):
    port = urlsplit(origin.url).port
    proxy_instructions.exchange(port, "/plain?u={i}", 3)  # nothing expected: answered, counted
    with pytest.raises(RuntimeError, match="not HIT"):
        proxy_instructions.exchange(port, "/plain?u={i}", 3, expect="HIT")
