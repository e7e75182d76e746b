"""Turning the engine's answers into responses on flows: a stored response (or a 304 or range of
it, as the client's own request asks), the cache's own error, or an upstream answer relayed."""

from collections.abc import Sequence

from mitmproxy import http

from . import responses
from .annotate import annotate
from .compression import decode, identity_view
from .counters import Counters
from .entry import Entry
from .lookup import Refuse, Relay, Serve
from .policy.cache_status import Status
from .policy.codings import accepts_value, client_accepts, normalise_values
from .policy.fields import Fields, get_all, get_first, has_any
from .policy.ranges import Kind as RangeKind
from .policy.ranges import plan as range_plan
from .policy.validators import stored_not_modified

CLIENT_VALIDATORS = frozenset({b"if-none-match", b"if-modified-since"})
RANGE = frozenset({b"range"})
CONDITIONAL_OR_RANGE = CLIENT_VALIDATORS | RANGE


def not_modified(if_none_match: Sequence[str], if_modified_since: str | None, entry: Entry) -> bool:
    """Whether the client's own conditions let us answer 304 from ``entry``: for a representation
    the cache coded, an ``If-None-Match`` naming either its ETag or the other representation's
    (``identity_etag``) will do, since both name the same stored response (docs/compression.md)."""
    if stored_not_modified(if_none_match, if_modified_since, entry.etag, entry.last_modified, entry.date):
        return True
    other = entry.identity_etag
    return (
        other is not None
        and bool(if_none_match)
        and stored_not_modified(if_none_match, None, other, entry.last_modified, entry.date)
    )


def accepts_coding(fields: Fields, names: set[bytes] | None, coding: str) -> bool:
    """Whether the request accepts a response in ``coding``: one pass over its fields and a cached
    verdict per distinct ``Accept-Encoding`` value, the only work a coded hit adds."""
    if names is not None and b"accept-encoding" not in names:
        return False
    values = [v for k, v in fields if k.lower() == b"accept-encoding"]
    if len(values) == 1:
        return accepts_value(values[0], coding)
    return client_accepts(fields, coding)


def normalise_accept_encoding(request: http.Request) -> None:
    """The request goes upstream with its ``Accept-Encoding`` reduced to what selects its variant."""
    values = request.headers.get_all("accept-encoding")
    if values:
        request.headers["accept-encoding"] = normalise_values(values)


def serve(
    flow: http.HTTPFlow,
    key: str,
    answer: Serve,
    cache_name: str,
    counters: Counters,
    names: set[bytes] | None = None,
    head: bool | None = None,
) -> None:
    """Answer from a stored entry: a 304 when the client's own conditions allow, a range when it
    asks for one, else the response. ``names``: the request's field names, lower case, where the
    caller has them: a plain GET (the common hit) then skips looking for validators and ranges;
    ``head``: whether it is a HEAD, where the caller knows."""
    request = flow.request
    entry, status, age = answer.entry, answer.status, answer.age
    fields = request.headers.fields  # raw, as the stored ETag is: obs-text compares byte for byte
    if head is None:
        head = request.method == "HEAD"
    if entry.coding is not None and not accepts_coding(fields, names, entry.coding):
        flow.response = _identity(entry, fields, head, age, status, cache_name, counters)
    elif names is not None and names.isdisjoint(CONDITIONAL_OR_RANGE):
        flow.response = responses.from_entry(entry, head=head, age=age, status=status, cache_name=cache_name)
    elif not_modified(get_all(fields, "if-none-match"), get_first(fields, "if-modified-since"), entry):
        flow.response = responses.not_modified(entry, age=age, status=status, cache_name=cache_name)
    elif not head and entry.status == 200 and has_any(fields, RANGE):
        flow.response = _ranges(entry, fields, age, status, cache_name)
    else:
        flow.response = responses.from_entry(entry, head=head, age=age, status=status, cache_name=cache_name)
    annotate(flow, key, status, counters, age)


def _identity(
    entry: Entry, fields: Fields, head: bool, age: float, status: Status, cache_name: str, counters: Counters
) -> http.Response:
    """A coded entry for a client that does not accept its coding: its identity representation,
    decoded only when a body goes out (not for a 304 or a HEAD)."""
    view = identity_view(entry, b"")
    if not_modified(get_all(fields, "if-none-match"), get_first(fields, "if-modified-since"), view):
        return responses.not_modified(view, age=age, status=status, cache_name=cache_name)
    if head:
        return responses.from_entry(view, head=True, age=age, status=status, cache_name=cache_name)
    view = identity_view(entry, decode(entry, counters))
    if view.status == 200 and has_any(fields, RANGE):
        return _ranges(view, fields, age, status, cache_name)
    return responses.from_entry(view, head=False, age=age, status=status, cache_name=cache_name)


def _ranges(entry: Entry, fields, age: float, status: Status, cache_name: str) -> http.Response:
    plan = range_plan(
        get_all(fields, "range"),
        get_first(fields, "if-range"),
        length=len(entry.body),
        etag=entry.etag,
        last_modified=entry.last_modified,
        date=entry.date,
        multipart_allowed=get_first(entry.fields, "content-encoding") is None,
    )
    if plan.kind is RangeKind.FULL:
        return responses.from_entry(entry, head=False, age=age, status=status, cache_name=cache_name)
    return responses.ranges(entry, plan, age=age, status=status, cache_name=cache_name)


def refuse(flow: http.HTTPFlow, key: str, answer: Refuse, cache_name: str, counters: Counters) -> None:
    flow.response = responses.error(answer.code, answer.message, answer.status, cache_name)
    annotate(flow, key, answer.status, counters)


def relay(flow: http.HTTPFlow, key: str, answer: Relay, cache_name: str, counters: Counters) -> None:
    head = flow.request.method == "HEAD"
    flow.response = responses.from_fetched(
        answer.fetched, head=head, status=answer.status, cache_name=cache_name
    )
    annotate(flow, key, answer.status, counters)


def client_conditions(request: http.Request) -> tuple[list[str], str | None]:
    """Take the client's validators off a GET going upstream: they may name our generated ETag,
    which the upstream never saw, and a 304 from upstream would leave nothing to store. They are
    answered when the response returns."""
    conditions = request.headers.get_all("if-none-match"), request.headers.get("if-modified-since")
    request.headers.pop("if-none-match", None)
    request.headers.pop("if-modified-since", None)
    return conditions


def has_client_conditions(request: http.Request, names: set[bytes] | None) -> bool:
    if names is None:
        return has_any(request.headers.fields, CLIENT_VALIDATORS)
    return not names.isdisjoint(CLIENT_VALIDATORS)


def stamp(response: http.Response, status: Status, cache_name: str, etag: str | None = None) -> None:
    """Our decision on a forwarded response, unless its head has gone out already (streamed)."""
    if not response.stream:
        responses.add_status(response, status, cache_name, etag=etag)
