"""The cache_store option in the addon: its password never shown, decided at startup."""

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from mitmcache.addon import Cache
from mitmcache.store.selection import Backend
from mitmcache.store.tiered import TieredStore

SECRET_URL = "redis://user:s3cret@127.0.0.1:1/0"
SHOWN_URL = "redis://user:[redacted]@127.0.0.1:1/0"


def test_a_store_url_set_with_a_password_is_shown_redacted_and_used_with_it():
    cache = Cache()
    with taddons.context(cache) as tctx:
        tctx.configure(cache, cache_store=SECRET_URL)
        assert tctx.options.cache_store == SHOWN_URL  # what mitmweb's options editor shows
        assert cache.settings.store.backend is Backend.REDIS
        assert cache.settings.store.url == SECRET_URL
        assert isinstance(cache.engine.core.store, TieredStore)


def test_a_store_url_from_the_environment_is_registered_redacted(monkeypatch):
    monkeypatch.setenv("CACHE_STORE", SECRET_URL)
    cache = Cache()
    with taddons.context() as tctx:
        tctx.master.addons.add(cache)
        assert tctx.options.cache_store == SHOWN_URL
        tctx.configure(cache, cache_ttl="30")  # another option: the store keeps its secret
        assert cache.settings.store.url == SECRET_URL


def test_the_store_cannot_change_while_the_proxy_runs():
    cache = Cache()
    with taddons.context(cache) as tctx:
        cache._running = True
        with pytest.raises(exceptions.OptionsError, match="cache_store: changes take effect at startup only"):
            tctx.configure(cache, cache_store=SECRET_URL)
