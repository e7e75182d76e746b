"""Which requests are queued: ``ASYNC_ROUTES``, a comma-separated list of ``METHOD /path-glob``.

Globs are matched with ``fnmatch`` against the path without its query, so ``*`` crosses ``/``
(``POST /events/*`` matches ``/events/a/b``). GET and HEAD are refused: a read answered with 202
would lose its answer, and a cache never queues what it could serve.
"""

import fnmatch
import re
from dataclasses import dataclass

_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*")
REFUSED_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class Route:
    method: str  # upper-case
    glob: str
    pattern: re.Pattern[str]

    def matches(self, method: str, path: str) -> bool:
        return method.upper() == self.method and self.pattern.match(path) is not None

    def __str__(self) -> str:
        return f"{self.method} {self.glob}"


def parse_routes(raw: str) -> tuple[Route, ...]:
    """``POST /events/*, PUT /items/*`` -> routes; empty -> none (the feature is off). Raises
    ValueError saying which item is wrong."""
    routes = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        method, _, glob = item.partition(" ")
        glob = glob.strip()
        if not _METHOD.fullmatch(method) or not glob.startswith("/") or " " in glob:
            raise ValueError(f"{item!r} is not METHOD /path-glob")
        if method.upper() in REFUSED_METHODS:
            raise ValueError(f"{item!r}: {method.upper()} requests are never queued")
        # fnmatch.translate anchors the pattern at the end; match() anchors the start.
        routes.append(Route(method.upper(), glob, re.compile(fnmatch.translate(glob))))
    return tuple(routes)


def route_for(routes: tuple[Route, ...], method: str, path: str) -> Route | None:
    """The first route that queues ``method`` on ``path`` (a target without its query)."""
    for route in routes:
        if route.matches(method, path):
            return route
    return None
