"""Validating a stored response with the upstream (RFC 9111 §4.3).

A refresh asks the upstream with the entry's validators; a ``304`` then freshens the stored
responses it selects instead of replacing them (§4.3.4), and a ``200`` to a ``HEAD`` freshens or
invalidates the stored ``GET`` responses it describes (§4.3.5).
"""

from collections.abc import Sequence

from ..entry import Entry
from .codings import upstream_accept_encoding
from .dates import parse_http_date
from .fields import Fields, get_all, get_first, split_list, without_hop_by_hop

# What a 304 must not overwrite in the stored response (§3.2): Content-Length ("the Content-Length
# header field" is excepted by name), the fields the stored body depends on (we keep it encoded)
# and those "automatically processed" such as Content-Range; X-Cache is ours. (Its Age is kept:
# it is the age of the validation, which ``admit`` counts from.)
_NOT_FRESHENED = frozenset({b"content-length", b"content-encoding", b"content-range", b"x-cache"})


# A client's request fields that a revalidation made on its behalf does not pass on: its own
# preconditions (the cache evaluates If-None-Match/If-Modified-Since itself, and the others are
# for the origin's current state, not the stored one), Range (a revalidation fetches the whole
# response), and framing, since the revalidation is a GET without a body.
_NOT_REVALIDATION_FIELDS = frozenset(
    {
        b"if-none-match",
        b"if-modified-since",
        b"if-match",
        b"if-unmodified-since",
        b"if-range",
        b"range",
        b"content-length",
        b"expect",
    }
)


def revalidation_request_fields(client_fields: Fields) -> list[tuple[bytes, bytes]]:
    """The request a revalidation sends for a client that waits for it (§4.3.1: "a cache ... starts
    with a request it is attempting to satisfy"): the client's end-to-end fields, without its
    preconditions, Range and body framing, and with its Accept-Encoding normalised (as on every
    request the cache sends upstream); the entry's validators are added to it."""
    fields = [
        (k, v) for k, v in without_hop_by_hop(client_fields) if k.lower() not in _NOT_REVALIDATION_FIELDS
    ]
    return upstream_accept_encoding(fields)


def kept_against_forced_answer(stored: Entry, now: float) -> bool:
    """Whether a stored response stays, rather than being replaced by the upstream's new answer to
    a request whose own directives (``no-cache``, ``Pragma: no-cache``, ``max-age=0``) forced the
    fetch: while it is fresh and needs no validation, it is the entry every client shares, and
    the forcing request carried its client's unkeyed fields (``X-Forwarded-Host``, ``Cookie``...)
    to the upstream. That client gets the upstream's answer; the others keep the shared entry."""
    return not stored.no_cache and stored.expires_at > now


def conditional_fields(entry: Entry) -> list[tuple[bytes, bytes]]:
    """``If-None-Match``/``If-Modified-Since`` from the upstream's own validators (§4.3.1).

    A generated ETag is ours alone and never sent upstream.
    """
    fields: list[tuple[bytes, bytes]] = []
    if entry.upstream_etag is not None:
        fields.append((b"if-none-match", entry.upstream_etag.encode("latin-1")))
    if entry.last_modified is not None:
        fields.append((b"if-modified-since", entry.last_modified.encode("latin-1")))
    return fields


def upstream_fields(entry: Entry) -> list[tuple[bytes, bytes]]:
    """The stored fields as the upstream sent them: without the ETag we generated, with the fields
    withheld from clients (its tags)."""
    if entry.upstream_etag is not None:
        return [*entry.fields, *entry.withheld]
    return [(k, v) for k, v in entry.fields if k.lower() != b"etag"] + list(entry.withheld)


def freshened_fields(entry: Entry, not_modified_fields: Fields) -> list[tuple[bytes, bytes]]:
    """The stored fields updated with a 304's (§4.3.4): "replace all stored header fields with
    corresponding header fields provided in the 304 response"; the body stays.

    The stored Date always goes: the response was just validated, so a 304 without Date is dated
    on receipt by ``admit`` (RFC 9110 §6.6.1) rather than aged from the original response.
    """
    update = [(k, v) for k, v in without_hop_by_hop(not_modified_fields) if k.lower() not in _NOT_FRESHENED]
    replaced = {k.lower() for k, _ in update} | {b"date"}
    return [(k, v) for k, v in upstream_fields(entry) if k.lower() not in replaced] + update


def select_for_update(asked: Entry, variants: Sequence[Entry], not_modified_fields: Fields) -> list[Entry]:
    """The stored responses a 304 freshens (RFC 9111 §4.3.4), among ``variants`` of the URL and the
    response ``asked`` about:

    * "If the new response contains one or more strong validators ..., then each of those strong
      validators identifies a selected representation for update. All the stored responses that
      have one of those same strong validators are identified for update."
    * "If the new response contains no strong validators but does contain one or more weak
      validators, and those validators correspond to one of the cache's stored responses, then the
      most recent of those matching stored responses is identified for update." (A Last-Modified
      date is a weak validator unless shown to be strong, RFC 9110 §8.8.2.2.)
    * A 304 without any validator answers the conditional request we made for ``asked``, with
      ``asked``'s validators, so it selects ``asked`` (the RFC's own rule for this case, "only one
      stored response, and that stored response also lacks a validator", is for caches that cannot
      tell which stored response a validation was about).
    """
    candidates = list(variants) if any(v.version == asked.version for v in variants) else [asked, *variants]
    etag = get_first(not_modified_fields, "etag")
    if etag is not None:
        etag = etag.strip()
        if not etag.startswith("W/"):
            return [e for e in candidates if e.upstream_etag is not None and e.upstream_etag.strip() == etag]
        weak = [
            e for e in candidates if e.upstream_etag is not None and _opaque(e.upstream_etag) == _opaque(etag)
        ]
        return [max(weak, key=lambda e: e.response_time)] if weak else []
    last_modified = parse_http_date(get_first(not_modified_fields, "last-modified"))
    if last_modified is not None:
        dated = [e for e in candidates if parse_http_date(e.last_modified) == last_modified]
        return [max(dated, key=lambda e: e.response_time)] if dated else []
    return [asked]


def head_freshens(entry: Entry, head_fields: Fields) -> bool:
    """Whether a 200 to a HEAD request may freshen the stored GET response ``entry`` (RFC 9111
    §4.3.5); if not, the stored response no longer describes the resource and is invalidated.

    "If the received response contains a Content-Length, ETag, or Last-Modified header field whose
    value differs from the stored response's, the cache SHOULD mark the stored response as stale"
    -- we go one step further and drop it, since it is then known to be out of date.
    """
    etag = get_first(head_fields, "etag")
    if etag is not None and (entry.upstream_etag is None or etag.strip() != entry.upstream_etag.strip()):
        return False
    last_modified = get_first(head_fields, "last-modified")
    if last_modified is not None and parse_http_date(last_modified) != parse_http_date(entry.last_modified):
        return False
    lengths = split_list(get_all(head_fields, "content-length"))
    return not lengths or lengths[0] == str(entry.sent_length)


def _opaque(etag: str) -> str:
    return etag.strip().removeprefix("W/")


def validator_matches(entry: Entry, not_modified_fields: Fields) -> bool:
    """Whether a 304 is about this stored response (§4.3.4): a strong ETag in the 304 must equal
    the stored one; without an ETag it applies to the entry we asked about."""
    etags = [v.decode("latin-1") for k, v in not_modified_fields if k.lower() == b"etag"]
    if not etags:
        return True
    return entry.upstream_etag is not None and etags[0].removeprefix(
        "W/"
    ) == entry.upstream_etag.removeprefix("W/")
