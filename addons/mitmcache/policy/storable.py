"""Whether a response may be stored, and the entry it becomes (RFC 9111 §3).

``admit`` is the one place that turns an upstream response into an ``Entry``: it applies the
shared-cache storage rules, computes freshness and age once, strips what must not be stored and
gives the entry an ETag. A refusal carries a short reason for ``Cache-Status: detail`` and logs.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..entry import Entry, new_version, size_of
from . import cache_control, targeted
from .dates import format_http_date, parse_http_date
from .fields import HOP_BY_HOP, Fields, by_name, connection_listed, pick, split_list
from .freshness import Lifetime, corrected_initial_age, freshness_lifetime
from .key import secondary_key, vary_names
from .numbers import capped
from .tags import CLEAR_FIELD, DEFAULT_TAG_RULES, TagRules, response_tags, split_withheld
from .validators import generate_etag

# Fields a cache owns on the way out, so never stored from upstream: Age is recomputed
# (RFC 9111 §5.1) and X-Cache is ours. Clear-Cache-Tag is an instruction to the cache (policy.tags).
_RECOMPUTED = frozenset({b"age", b"x-cache", b"content-length"})
_NEVER_STORED = HOP_BY_HOP | _RECOMPUTED | {CLEAR_FIELD.encode()}

# Directives that forbid serving the response stale (RFC 9111 §5.2.2.2, §5.2.2.8, §5.2.2.10).
_NEVER_STALE = frozenset({"must-revalidate", "proxy-revalidate", "s-maxage"})

# The request fields storing depends on: read in one pass (``pick``).
_REQUEST_FIELDS_READ = frozenset({b"cache-control", b"authorization", b"cookie"})

# The final status codes whose caching requirements we implement (RFC 9110 §15), for
# ``must-understand`` (RFC 9111 §5.2.2.3). 206 and 304 are never stored, so they are not in it.
UNDERSTOOD_STATUS_CODES = frozenset(
    {200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 305, 307, 308}
    | {400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417}
    | {421, 422, 426, 500, 501, 502, 503, 504, 505}
)


@dataclass(frozen=True, slots=True)
class Rules:
    """The settings storage depends on."""

    default_ttl: float
    override: bool
    heuristic_percent: float = 0.0  # RFC 9111 §4.2.2, used only without a default_ttl
    targeted_fields: tuple[str, ...] = ()  # RFC 9213 target list, in order of precedence
    tags: TagRules = DEFAULT_TAG_RULES  # which fields carry tags, and whether clients see them
    cookie_default_ttl: bool = False  # the default lifetime applies to responses to Cookie requests


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # e.g. "no-store", "private", "set-cookie", "authorization", "vary-star", ...


def refusal(
    method: str,
    status: int,
    request_cc: cache_control.Directives,
    response_cc: cache_control.Directives,
    has_authorization: bool,
    has_set_cookie: bool,
    vary_star: bool,
) -> Refusal | None:
    """Why a response must not be stored by a shared cache (RFC 9111 §3, §3.5), else None.

    §5.2.2.3: with ``must-understand`` a response is stored only by a cache that understands its
    status code, and such a cache "SHOULD ignore the no-store directive".
    """
    if method != "GET":
        return Refusal("method")
    if status == 206:
        return Refusal("partial")
    if status < 200 or status == 304:  # interim responses are never final (§3)
        return Refusal("status")
    if "no-store" in request_cc:
        return Refusal("request-no-store")
    if "must-understand" in response_cc:
        if status not in UNDERSTOOD_STATUS_CODES:
            return Refusal("must-understand")
    elif "no-store" in response_cc:
        return Refusal("no-store")
    if cache_control.field_names(response_cc, "private") == frozenset():
        return Refusal("private")
    # §3.5: a shared cache reuses a response to an authenticated request only when allowed.
    if has_authorization and not ({"public", "s-maxage", "must-revalidate"} & response_cc.keys()):
        return Refusal("authorization")
    if has_set_cookie:
        return Refusal("set-cookie")
    if vary_star:
        return Refusal("vary-star")
    return None


class Head(NamedTuple):
    """What a response's head says about storing it, parsed once: judged when the head arrives
    (``judge_head``) and reused by ``admit`` when the body is complete, if judged on the same
    fields and rules (the objects themselves: anything changed since is judged again). A named
    tuple: every miss builds one, and a frozen dataclass of twelve fields costs 1.5 us more."""

    request_fields: Fields
    response_fields: Fields
    rules: Rules
    response: dict[str, list[str]]
    response_cc: cache_control.Directives
    names: tuple[str, ...]
    date: float | None
    upstream_etag: str | None
    last_modified: str | None
    lifetime: Lifetime
    stale_while_revalidate: int
    stale_if_error: int


def _judge_head(
    method: str,
    status: int,
    request_fields: Fields,
    response_fields: Fields,
    rules: Rules,
    response_time: float,
) -> Head | Refusal:
    """The part of ``admit`` that needs no body: the refusals and the lifetime."""
    request = pick(request_fields, _REQUEST_FIELDS_READ)
    request_cc = cache_control.parse(request.get(b"cache-control", ()))
    response = by_name(response_fields)
    response_cc = targeted.select(response, rules.targeted_fields)
    if response_cc is None:
        response_cc = cache_control.parse(response.get("cache-control", ()))
        expires = response.get("expires", [])
    else:
        expires = []  # RFC 9213 §2.2: "MUST ignore the Cache-Control and Expires header fields"
    names = vary_names(response.get("vary", ()))
    refused = refusal(
        method,
        status,
        request_cc,
        response_cc,
        has_authorization=b"authorization" in request,
        has_set_cookie="set-cookie" in response,
        vary_star=names is None,
    )
    if refused or names is None:
        return refused or Refusal("vary-star")
    date = parse_http_date(_first(response, "date"))
    upstream_etag = _first(response, "etag")
    last_modified = _first(response, "last-modified")
    lifetime = freshness_lifetime(
        status,
        response_cc,
        expires,
        date if date is not None else response_time,
        default_ttl=rules.default_ttl,
        override=rules.override,
        last_modified=parse_http_date(last_modified),
        heuristic_percent=rules.heuristic_percent,
    )
    if lifetime is None:
        return Refusal("no-freshness")
    if lifetime.source in ("default", "override") and _personal_without_permission(
        b"cookie" in request, response_cc, expires, rules
    ):
        return Refusal("cookie")
    revalidatable = upstream_etag is not None or last_modified is not None
    # A response stale on arrival is worth keeping only if it can be validated, or served stale
    # within the upstream's own allowances (RFC 5861).
    stale_while_revalidate = cache_control.delta_seconds(response_cc, "stale-while-revalidate") or 0
    stale_if_error = cache_control.delta_seconds(response_cc, "stale-if-error") or 0
    if lifetime.seconds <= 0 and not revalidatable and not (stale_while_revalidate or stale_if_error):
        return Refusal("stale-on-arrival")
    if "no-cache" in response_cc and not response_cc["no-cache"] and not revalidatable:
        return Refusal("no-cache")
    return Head(
        request_fields,
        response_fields,
        rules,
        response,
        response_cc,
        names,
        date,
        upstream_etag,
        last_modified,
        lifetime,
        stale_while_revalidate,
        stale_if_error,
    )


def judge_head(
    status: int, request_fields: Fields, response_fields: Fields, rules: Rules, now: float
) -> Head | Refusal | None:
    """What a GET response's head says about storing it, before its body arrives: why it cannot
    be stored (so that clients waiting for it need not wait for a body that will not be stored),
    or the judgement ``admit`` reuses; None when only the complete response can tell (a 5xx)."""
    if status >= 500:
        return None
    return _judge_head("GET", status, request_fields, response_fields, rules, now)


def admit(
    *,
    key: str,
    url: str,
    host: str,
    method: str,
    request_fields: Fields,
    status: int,
    reason: bytes,
    response_fields: Fields,
    body: bytes,
    request_time: float,
    response_time: float,
    rules: Rules,
    head: Head | None = None,
) -> Entry | Refusal:
    """Turn a complete upstream response into an Entry, or say why it may not be stored (``head``:
    what ``judge_head`` said when its head arrived, reused if judged on these very fields).

    The response's directives come from the first valid targeted field (RFC 9213), else from
    ``Cache-Control`` and ``Expires``. A body shorter or longer than its ``Content-Length`` is
    incomplete and never stored (§3.3); an invalid ``Date`` is replaced by the time of receipt
    (RFC 9110 §6.6.1).
    """
    if (
        head is None
        or head.response_fields is not response_fields
        or head.request_fields is not request_fields
        or head.rules is not rules
    ):
        head = _judge_head(method, status, request_fields, response_fields, rules, response_time)
    if isinstance(head, Refusal):
        return head
    response, response_cc, names = head.response, head.response_cc, head.names
    if not complete(response.get("content-length", ()), body):
        return Refusal("incomplete")
    date, upstream_etag, last_modified = head.date, head.upstream_etag, head.last_modified
    lifetime, stale_while_revalidate, stale_if_error = (
        head.lifetime,
        head.stale_while_revalidate,
        head.stale_if_error,
    )

    # An encoded body must not reach a client that did not ask for that encoding, even when the
    # upstream forgot to say Vary: Accept-Encoding.
    if "content-encoding" in response and "accept-encoding" not in names:
        names = tuple(sorted((*names, "accept-encoding")))

    fields, withheld = _stored_fields(response_fields, response_cc, response, rules.tags.withheld)
    etag = upstream_etag or generate_etag(body)
    if upstream_etag is None:
        fields.append((b"etag", etag.encode()))
    if date is None:  # RFC 9110 §6.6.1: a recipient with a clock adds (or fixes) Date
        date = response_time
        fields = [(k, v) for k, v in fields if k.lower() != b"date"]
        fields.append((b"date", format_http_date(date).encode()))
    # Most responses carry no tag field: theirs need no second pass.
    tags = () if response.keys().isdisjoint(rules.tags.fields) else response_tags(response_fields, rules.tags)
    if status != 204:  # RFC 9110 §8.6: no Content-Length in a 204
        fields.append((b"content-length", str(len(body)).encode()))
    vary = secondary_key(names, request_fields)
    stored, kept_back = tuple(fields), tuple(withheld)
    return Entry(
        key=key,
        url=url,
        host=host,
        vary=vary,
        status=status,
        reason=reason,
        fields=stored,
        body=body,
        etag=etag,
        upstream_etag=upstream_etag,
        last_modified=last_modified,
        date=date,
        response_time=response_time,
        initial_age=corrected_initial_age(
            response.get("age", []),
            date,
            request_time,
            response_time,
            use_date=lifetime.source not in ("default", "override"),
        ),
        lifetime=lifetime.seconds,
        lifetime_source=lifetime.source,
        no_cache="no-cache" in response_cc and not response_cc["no-cache"],
        must_revalidate=not _NEVER_STALE.isdisjoint(response_cc),
        stale_while_revalidate=float(stale_while_revalidate),
        stale_if_error=float(stale_if_error),
        sent_length=len(body),
        size=size_of(body, (key, url, host, etag, last_modified or ""), (stored, kept_back), vary, tags),
        version=new_version(),
        tags=tags,
        withheld=kept_back,
    )


def _first(index: dict[str, list[str]], name: str) -> str | None:
    values = index.get(name)
    return values[0] if values else None


def _personal_without_permission(
    has_cookie: bool, response_cc: cache_control.Directives, expires: Sequence[str], rules: Rules
) -> bool:
    """A response to a request with ``Cookie`` that the origin gave no lifetime of its own and did
    not mark ``public``: likely a page for that user (an account page, or one lured to a path that
    looks static), which the operator's default lifetime must not share with everyone."""
    if rules.cookie_default_ttl or not has_cookie:
        return False
    return not ({"s-maxage", "max-age", "public"} & response_cc.keys() or expires)


def complete(content_length: Sequence[str], body: bytes) -> bool:
    """Whether ``body`` is all the response said it would be (RFC 9111 §3.3: "A cache MUST NOT use
    an incomplete response to answer requests"): it matches the ``Content-Length`` lines, if any."""
    if len(content_length) == 1 and content_length[0] == str(len(body)):  # the usual one exact line
        return True
    lengths = split_list(content_length)
    if not lengths:
        return True
    return (
        len(set(lengths)) == 1
        and lengths[0].isascii()
        and lengths[0].isdigit()
        and capped(lengths[0], len(body) + 1) == len(body)
    )


def _stored_fields(
    response_fields: Fields,
    response_cc: cache_control.Directives,
    index: dict[str, list[str]],
    tag_fields: frozenset[bytes],
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """The fields stored, as (what clients see, what is withheld from them: ``tag_fields``), in one
    pass: end-to-end fields only (RFC 9110 §7.6.1: hop-by-hop and ``Connection``-listed ones
    removed), minus the ones the cache recomputes and the ones a qualified ``private``/``no-cache``
    names (RFC 9111 §5.2.2.4, §5.2.2.7: not to be reused unvalidated). ``index`` is
    ``by_name(response_fields)``, so the usual response, with none of those, costs no more."""
    connection = index.get("connection")
    listed = connection_listed(connection) if connection else None
    dropped = _NEVER_STORED | listed if listed else _NEVER_STORED
    for directive in ("private", "no-cache"):
        qualified = cache_control.field_names(response_cc, directive)
        if qualified:
            dropped = dropped.union(name.encode() for name in qualified)
    return split_withheld(response_fields, tag_fields, dropped)
