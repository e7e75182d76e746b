"""Entry script: ``mitmdump --mode reverse:URL -s addons/cache.py``.

mitmproxy runs this file as a module outside ``sys.modules`` and adds its folder to ``sys.path``;
the real code lives in the ``mitmcache`` package beside it. A hot reload re-executes only this
file (``mitmproxy/addons/script.py``, ``load_script``), so the package is purged first to reload it
too.
"""

import sys

for _name in [m for m in sys.modules if m == "mitmcache" or m.startswith("mitmcache.")]:
    del sys.modules[_name]

from mitmcache.addon import Cache
from mitmcache.writequeue.addon import WriteQueue

cache = Cache()
addons = [cache, WriteQueue(cache)]  # the write queue after the cache: control requests are the cache's
