"""What a proxy loads at startup: the clients of the optional backends only when a setting names them.

Every start (and every restart of a worker) pays for what is imported: redis-py and asyncpg take about
45 ms together, close to a tenth of a proxy's start, for a cache on the default memory store and SQLite
queue.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ADDONS = Path(__file__).resolve().parents[2] / "addons"


def loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter holds after running ``statement`` with addons/ on its path."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(m for m in {modules!r} if m in sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ADDONS)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_the_entry_script_and_the_launcher_load_neither_redis_nor_asyncpg():
    assert loaded_after("import cache, mitmcache.launcher", ("redis", "asyncpg")) == []


def test_the_shared_tier_still_loads_redis_when_it_is_chosen():
    assert loaded_after("import mitmcache.shared_tier", ("redis",)) == ["redis"]


def test_the_postgresql_queue_still_loads_asyncpg_when_it_is_chosen():
    assert loaded_after("import mitmcache.writequeue.postgres_store", ("asyncpg",)) == ["asyncpg"]
