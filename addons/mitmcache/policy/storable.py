"""Whether a response may be stored, and the entry it becomes (RFC 9111 §3).

``admit`` is the one place that turns an upstream response into an ``Entry``: it applies the
shared-cache storage rules, computes freshness and age once, strips what must not be stored and
gives the entry an ETag. A refusal carries a short reason for ``Cache-Status: detail`` and logs.
"""

from dataclasses import dataclass

from ..entry import Entry
from . import cache_control
from .dates import format_http_date, parse_http_date
from .fields import Fields, get_all, get_first, without_hop_by_hop
from .freshness import corrected_initial_age, freshness_lifetime
from .key import secondary_key, vary_names
from .validators import generate_etag

# Fields a cache owns on the way out, so never stored from upstream: Age is recomputed
# (RFC 9111 §5.1) and X-Cache is ours.
_RECOMPUTED = frozenset({b"age", b"x-cache", b"content-length"})


@dataclass(frozen=True, slots=True)
class Rules:
    """The settings storage depends on."""

    default_ttl: float
    override: bool


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
    """Why a response must not be stored by a shared cache (RFC 9111 §3, §3.5), else None."""
    if method != "GET":
        return Refusal("method")
    if status == 206:
        return Refusal("partial")
    if status < 200 or status == 304:
        return Refusal("status")
    if "no-store" in request_cc:
        return Refusal("request-no-store")
    if "no-store" in response_cc:
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
) -> Entry | Refusal:
    """Turn a complete upstream response into an Entry, or say why it may not be stored."""
    request_cc = cache_control.parse(get_all(request_fields, "cache-control"))
    response_cc = cache_control.parse(get_all(response_fields, "cache-control"))
    names = vary_names(response_fields)
    refused = refusal(
        method,
        status,
        request_cc,
        response_cc,
        has_authorization=bool(get_all(request_fields, "authorization")),
        has_set_cookie=bool(get_all(response_fields, "set-cookie")),
        vary_star=names is None,
    )
    if refused or names is None:
        return refused or Refusal("vary-star")
    date = parse_http_date(get_first(response_fields, "date"))
    lifetime = freshness_lifetime(
        status,
        response_cc,
        get_all(response_fields, "expires"),
        date if date is not None else response_time,
        default_ttl=rules.default_ttl,
        override=rules.override,
    )
    if lifetime is None:
        return Refusal("no-freshness")
    upstream_etag = get_first(response_fields, "etag")
    last_modified = get_first(response_fields, "last-modified")
    revalidatable = upstream_etag is not None or last_modified is not None
    if lifetime.seconds <= 0 and not revalidatable:
        return Refusal("stale-on-arrival")
    if "no-cache" in response_cc and not response_cc["no-cache"] and not revalidatable:
        return Refusal("no-cache")

    # An encoded body must not reach a client that did not ask for that encoding, even when the
    # upstream forgot to say Vary: Accept-Encoding.
    if get_all(response_fields, "content-encoding") and "accept-encoding" not in names:
        names = tuple(sorted((*names, "accept-encoding")))

    fields = _stored_fields(response_fields, response_cc)
    etag = upstream_etag or generate_etag(body)
    if upstream_etag is None:
        fields.append((b"etag", etag.encode()))
    if date is None:  # RFC 9110 §6.6.1: a recipient with a clock adds Date to what it stores
        date = response_time
        fields.append((b"date", format_http_date(date).encode()))
    fields.append((b"content-length", str(len(body)).encode()))
    return Entry(
        key=key,
        url=url,
        host=host,
        vary=secondary_key(names, request_fields),
        status=status,
        reason=reason,
        fields=tuple(fields),
        body=body,
        etag=etag,
        upstream_etag=upstream_etag,
        last_modified=last_modified,
        date=date,
        response_time=response_time,
        initial_age=corrected_initial_age(
            get_all(response_fields, "age"),
            date,
            request_time,
            response_time,
            use_date=lifetime.source not in ("default", "override"),
        ),
        lifetime=lifetime.seconds,
        lifetime_source=lifetime.source,
        no_cache="no-cache" in response_cc and not response_cc["no-cache"],
        must_revalidate=bool({"must-revalidate", "proxy-revalidate", "s-maxage"} & response_cc.keys()),
        stale_while_revalidate=float(cache_control.delta_seconds(response_cc, "stale-while-revalidate") or 0),
        stale_if_error=float(cache_control.delta_seconds(response_cc, "stale-if-error") or 0),
        last_access=response_time,
    )


def _stored_fields(
    response_fields: Fields, response_cc: cache_control.Directives
) -> list[tuple[bytes, bytes]]:
    """End-to-end fields minus the ones the cache recomputes and the ones a qualified
    ``private``/``no-cache`` names (RFC 9111 §5.2.2.4, §5.2.2.7: not to be reused unvalidated)."""
    withheld = set(_RECOMPUTED)
    for directive in ("private", "no-cache"):
        withheld.update(name.encode() for name in cache_control.field_names(response_cc, directive) or ())
    return [(k, v) for k, v in without_hop_by_hop(response_fields) if k.lower() not in withheld]
