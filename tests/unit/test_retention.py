"""FlowRetention: mitmweb keeps only the newest finished flows."""

from mitmproxy.addonmanager import traverse
from mitmproxy.addons.view import View
from mitmproxy.test import taddons, tflow

from mitmcache.addon import Cache


def finished_flows(view: View, n: int) -> list:
    flows = [tflow.tflow(resp=True) for _ in range(n)]
    for flow in flows:
        flow.live = False
    view.add(flows)
    return flows


async def test_the_oldest_finished_flows_beyond_the_limit_are_dropped():
    view, cache = View(), Cache()
    with taddons.context(view, cache) as tctx:
        tctx.configure(cache, cache_web_max_flows="3")
        flows = finished_flows(view, 5)
        assert cache.retention.trim() == 2
        assert list(view) == flows[2:]


async def test_live_flows_are_never_dropped():
    view, cache = View(), Cache()
    with taddons.context(view, cache) as tctx:
        tctx.configure(cache, cache_web_max_flows="1")
        held = tflow.tflow()  # live: a client still waiting
        view.add([held])
        finished_flows(view, 2)
        cache.retention.trim()
        assert held in list(view)


async def test_zero_keeps_every_flow():
    view, cache = View(), Cache()
    with taddons.context(view, cache) as tctx:
        tctx.configure(cache, cache_web_max_flows="0")
        finished_flows(view, 5)
        assert cache.retention.trim() == 0
        assert len(view) == 5


async def test_without_a_view_nothing_happens():
    cache = Cache()
    with taddons.context(cache) as tctx:
        tctx.configure(cache, cache_web_max_flows="1")
        assert cache.retention.trim() == 0


async def test_without_a_view_the_retention_leaves_the_addon_chain_when_running():
    """mitmdump keeps no flows: its hooks would only cost each request two more dispatches."""
    cache = Cache()
    with taddons.context(cache) as tctx:
        cache.running()
        assert list(traverse([cache])) == [cache]  # no child left for mitmproxy to walk
        assert tctx.master.addons.get("flowretention") is None
        cache.done()


async def test_with_a_view_the_retention_stays():
    view, cache = View(), Cache()
    with taddons.context(view, cache) as tctx:
        cache.running()
        assert tctx.master.addons.get("flowretention") is cache.retention
        cache.done()
