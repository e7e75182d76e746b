"""The lean launcher's command line, option handling and addon chain (in-process; the e2e tests in
tests/e2e/test_launcher.py run it as a real process)."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy import addonmanager, exceptions, master, options
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHook
from mitmproxy.test import tflow

from mitmcache import compat, launcher
from mitmcache.launcher import ENTRY_SCRIPT, LeanMaster, UsageError, apply_options, parse_args


def parse(*argv: str):
    return parse_args(list(argv), options.Options())


# -- the command line ---------------------------------------------------------------------------------


def test_supported_flags_are_spelled_and_typed_as_in_mitmdump():
    args = parse(
        "--mode",
        "reverse:http://a:1@127.0.0.1:8080",
        "-m",
        "reverse:https://b",
        "-p",
        "8081",
        "--listen-host",
        "0.0.0.0",
        "--set",
        "cache_ttl=5",
        "--set",
        "flow_detail=1",
        "-q",
        "-k",
        "--certs",
        "*=cert.pem",
        "--no-http2",
        "-s",
        "extra.py",
    )
    assert args.mode == ["reverse:http://a:1@127.0.0.1:8080", "reverse:https://b"]
    assert args.listen_port == 8081
    assert args.listen_host == "0.0.0.0"
    assert args.setoptions == ["cache_ttl=5", "flow_detail=1"]
    assert args.quiet and args.ssl_insecure
    assert args.certs == ["*=cert.pem"]
    assert args.http2 is False
    assert args.lean_scripts == ["extra.py"]
    assert not args.no_cache


def test_flags_not_given_leave_options_alone():
    args = parse("--mode", "reverse:http://a:1")
    assert args.listen_port is None and args.listen_host is None and args.http2 is None
    assert args.setoptions == [] and args.lean_scripts == []


@pytest.mark.parametrize(
    "flag", [["--anticache"], ["-w", "flows.out"], ["--map-remote", "|a|b"], ["~u /api"]]
)
def test_a_mitmdump_flag_we_do_not_support_is_refused_naming_mitmdump(flag):
    with pytest.raises(UsageError, match="mitmdump argument.*does not support") as info:
        parse("--mode", "reverse:http://a:1", *flag)
    assert flag[0] in str(info.value)
    assert "mitmdump -s addons/cache.py" in str(info.value)


def test_an_unknown_flag_is_refused():
    with pytest.raises(UsageError, match="unknown argument.*--frobnicate"):
        parse("--frobnicate")


def test_abbreviated_flags_are_not_guessed():
    """mitmdump's argparse accepts prefixes; here a prefix could silently map a flag we lack onto one
    we have, so none are accepted."""
    with pytest.raises(UsageError, match="--listen"):
        parse("--listen", "0.0.0.0")


def test_a_malformed_value_of_a_supported_flag_exits_like_argparse():
    with pytest.raises(SystemExit) as info:
        parse("-p", "eighty")
    assert info.value.code == 2


def test_mitmdump_options_names_each_options_addon():
    _, owners = launcher.mitmdump_options()
    assert owners["flow_detail"] == "dumper"
    assert owners["anticache"] == "anticache"
    assert owners["block_global"] == "block"
    assert owners["connection_strategy"] == "proxyserver"
    assert owners["mode"] == ""  # a core option
    assert owners["termlog_verbosity"] == "termlog"


# -- the master ---------------------------------------------------------------------------------------


@pytest.fixture
async def lean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LeanMaster]:
    """A LeanMaster as ``serve`` builds it, with no confdir/.env/environment of the developer's."""
    monkeypatch.chdir(tmp_path)
    for name in ("DEFAULT_CACHE_EXPIRY_TIME_SECS", "DEFAULT_REFRESH_WINDOW_SECS", "REQ_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    master = LeanMaster(options.Options(confdir=str(tmp_path / "confdir")))
    yield master
    # Master installs log handlers on the root logger: take them off again.
    master.addons.get("errorcheck").finish()
    master._legacy_log_events.uninstall()
    if master._termlog_addon is not None:
        master._termlog_addon.uninstall()


def start(master: LeanMaster, *argv: str) -> None:
    """What ``serve`` does before running: options, the cache and scripts, the leftovers check."""
    args = parse("--mode", "reverse:http://127.0.0.1:1", *argv)
    apply_options(master.options, args)
    master.load(cache=not args.no_cache, scripts=args.lean_scripts)
    launcher.check_no_leftovers(master.options)


async def test_the_chain_is_mitmdumps_order_with_only_what_the_cache_needs(lean):
    start(lean)
    assert [launcher.addonmanager._get_name(a) for a in lean.slot.addons] == ["cache", "writequeue"]
    assert [launcher.addonmanager._get_name(a) for a in lean.addons.chain] == [
        "termlog",
        "core",
        "ondemand:block",
        "disableh2c",
        "proxyserver",
        "lean-slot",  # where mitmdump's script loader sits: the cache, then -s scripts
        "nextlayer",
        "tlsconfig",
        "updatealtsvc",
        "ondemand:dumper",
        "errorcheck",
    ]


async def test_defaults_cost_nothing_per_flow_blocking_and_flow_lines_are_off(lean):
    start(lean)
    assert lean.options.flow_detail == 0
    assert lean.options.block_global is False
    assert not lean.addons.get("ondemand:dumper").active
    assert not lean.addons.get("ondemand:block").active


@pytest.mark.parametrize(
    ("argv", "addon"),
    [
        (["--set", "flow_detail=1"], "ondemand:dumper"),
        (["-v"], "ondemand:dumper"),
        (["--set", "block_global=true"], "ondemand:block"),
        (["--set", "block_private"], "ondemand:block"),
    ],
)
async def test_options_that_need_a_left_out_addon_bring_it_in(lean, argv, addon):
    start(lean, *argv)
    assert lean.addons.get(addon).active


async def test_the_dumper_joins_with_options_set_before_it_was_wanted(lean):
    start(lean, "--set", "dumper_filter=~u /api")
    dumper = lean.addons.get("ondemand:dumper")
    assert dumper.inner.filter is None
    lean.options.update(flow_detail=1)
    assert dumper.active
    assert dumper.inner.filter is not None  # parsed when it joined


async def test_quiet_wins_over_set_as_in_mitmdump(lean):
    start(lean, "--set", "termlog_verbosity=info", "--set", "flow_detail=3", "-q")
    assert lean.options.termlog_verbosity == "error"
    assert lean.options.flow_detail == 0


async def test_the_cache_gets_its_environment_defaults(lean, monkeypatch):
    monkeypatch.setenv("DEFAULT_CACHE_EXPIRY_TIME_SECS", "30")
    start(lean)
    assert lean.cache is not None
    assert lean.cache.settings.ttl == 30


async def test_a_bad_environment_value_stops_startup_naming_it(lean, monkeypatch):
    monkeypatch.setenv("DEFAULT_CACHE_EXPIRY_TIME_SECS", "soon")
    with pytest.raises(exceptions.OptionsError, match="DEFAULT_CACHE_EXPIRY_TIME_SECS"):
        start(lean)


async def test_a_missing_env_file_stops_startup_naming_it(lean, monkeypatch):
    monkeypatch.setenv("CACHE_ENV_FILE", "/nonexistent/.env")
    with pytest.raises(ValueError, match="CACHE_ENV_FILE"):  # from the cache's load()
        start(lean)


async def test_no_cache_leaves_only_the_scripts(lean, tmp_path):
    script = tmp_path / "other.py"
    script.write_text("def request(flow):\n    pass\n")
    start(lean, "--no-cache", "-s", str(script))
    assert lean.cache is None
    assert [launcher.addonmanager._get_name(a) for a in lean.slot.addons] == [str(script)]


async def test_set_beats_the_environment(lean, monkeypatch):
    start(lean, "--set", "cache_ttl=7")
    assert lean.cache is not None
    assert lean.cache.settings.ttl == 7


async def test_a_bad_cache_setting_is_an_options_error_naming_it(lean):
    with pytest.raises(exceptions.OptionsError, match="cache_ttl"):
        start(lean, "--set", "cache_ttl=abc")


async def test_an_option_of_an_addon_we_leave_out_is_refused_naming_the_addon(lean):
    with pytest.raises(UsageError, match="anticache .*anticache addon.*does not load"):
        start(lean, "--set", "anticache=true")


async def test_a_misspelt_option_is_refused_with_a_suggestion(lean):
    """mitmdump ignores it silently; a production launcher must not."""
    with pytest.raises(UsageError, match="cache_tll .*did you mean cache_ttl"):
        start(lean, "--set", "cache_tll=5")


async def test_a_script_loads_after_the_cache_and_the_entry_script_is_the_built_in(lean, tmp_path):
    script = tmp_path / "tag.py"
    script.write_text("class Tag:\n    def response(self, flow):\n        pass\naddons = [Tag()]\n")
    start(lean, "-s", str(script), "--set", "cache_ttl=9")
    assert [launcher.addonmanager._get_name(a) for a in lean.slot.addons] == [
        "cache",
        "writequeue",
        str(script),
    ]
    assert lean.addons.get("tag") is not None
    assert lean.cache is not None and lean.cache.settings.ttl == 9  # set before the cache was loaded
    with pytest.raises(UsageError, match="no such script"):
        lean.slot.add_script(str(tmp_path / "missing.py"))
    assert launcher._same_file(str(ENTRY_SCRIPT), ENTRY_SCRIPT)
    assert launcher._same_file(f"{ENTRY_SCRIPT.parent}/../addons/cache.py", ENTRY_SCRIPT)
    assert not launcher._same_file(str(script), ENTRY_SCRIPT)


# -- the dispatch table -----------------------------------------------------------------------------------


class Recorder:
    """An addon that records its hook calls (and its children's) in a shared list."""

    def __init__(self, name: str, calls: list[str], *, fail: bool = False, halt: bool = False, children=()):
        self.name = name
        self._calls = calls
        self._fail = fail
        self._halt = halt
        self.addons = list(children)

    async def request(self, flow) -> None:
        await asyncio.sleep(0)  # an async hook is awaited before the next one runs
        self._calls.append(f"{self.name}.request")
        if self._fail:
            raise RuntimeError(f"{self.name} broke")
        if self._halt:
            raise exceptions.AddonHalt

    def update(self, flows) -> None:
        self._calls.append(f"{self.name}.update")


class SyncRecorder:
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self._calls = calls

    def request(self, flow) -> None:
        self._calls.append(f"{self.name}.request")


def bare_master(manager: type) -> master.Master:
    m = master.Master(options.Options())
    m.addons = manager(m)
    return m


def chain(calls: list[str], *, fail: str = "", halt: str = "") -> list:
    return [
        Recorder("a", calls, children=[SyncRecorder("a-child", calls)], fail=fail == "a"),
        SyncRecorder("b", calls),
        Recorder("c", calls, children=[Recorder("c-child", calls, fail=fail == "c-child")], halt=halt == "c"),
        Recorder("d", calls),
    ]


@pytest.mark.parametrize(("fail", "halt"), [("", ""), ("a", ""), ("c-child", ""), ("", "c")])
async def test_the_dispatch_table_calls_what_mitmproxys_manager_calls(fail, halt, caplog):
    """Same order (chain, then each subtree), an error skips the rest of that top-level addon's
    hooks and is logged as mitmproxy logs it, AddonHalt stops the event; update follows flow events."""
    seen: dict[type, list[str]] = {}
    for manager in (addonmanager.AddonManager, compat.DispatchTable):
        calls: list[str] = []
        m = bare_master(manager)
        m.addons.add(*chain(calls, fail=fail, halt=halt))
        caplog.clear()
        await m.addons.handle_lifecycle(HttpRequestHook(tflow.tflow()))
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        seen[manager] = [*calls, *errors]
    assert seen[compat.DispatchTable] == seen[addonmanager.AddonManager]
    if fail == "a":
        assert "a-child.request" not in seen[compat.DispatchTable]
        assert "Addon error: a broke" in seen[compat.DispatchTable]
    if halt == "c":
        requests = [c for c in seen[compat.DispatchTable] if c.endswith(".request")]
        assert requests == ["a.request", "a-child.request", "b.request", "c.request"]


async def test_the_table_follows_addons_added_removed_and_switched_on():
    calls: list[str] = []
    m = bare_master(compat.DispatchTable)
    first = SyncRecorder("first", calls)
    m.addons.add(first)
    event = HttpRequestHook(tflow.tflow())
    await m.addons.trigger_event(event)
    second = SyncRecorder("second", calls)
    m.addons.add(second)
    await m.addons.trigger_event(event)
    m.addons.remove(first)
    await m.addons.trigger_event(event)
    assert calls == ["first.request", "first.request", "second.request", "second.request"]


async def test_an_on_demand_addon_joins_the_table_when_its_option_asks(lean):
    start(lean)
    response = HttpResponseHook(tflow.tflow(resp=True))
    assert all("Dumper" not in f.__qualname__ for g in lean.addons._hooks(response) for f in g)
    lean.options.update(flow_detail=1)
    assert any("Dumper" in f.__qualname__ for g in lean.addons._hooks(response) for f in g)


async def test_no_update_event_is_built_when_nobody_handles_it():
    calls: list[str] = []
    m = bare_master(compat.DispatchTable)
    m.addons.add(SyncRecorder("only-request", calls))
    await m.addons.handle_lifecycle(HttpRequestHook(tflow.tflow()))
    assert m.addons._table["update"] == []
    m.addons.add(Recorder("updates", calls))
    await m.addons.handle_lifecycle(HttpRequestHook(tflow.tflow()))
    assert calls[-1] == "updates.update"
