"""Validating a stored response with the upstream (RFC 9111 §4.3).

A refresh asks the upstream with the entry's validators; a ``304`` then freshens the stored
response instead of replacing it (§4.3.4).
"""

from ..entry import Entry
from .fields import Fields, without_hop_by_hop

# What a 304 must not overwrite in the stored response: its framing describes no body (§3.2), and
# X-Cache is ours. (Its Age is kept: it is the age of the validation, which ``admit`` counts from.)
_NOT_FRESHENED = frozenset({b"content-length", b"content-encoding", b"x-cache"})


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
    """The stored fields as the upstream sent them: without the ETag we generated."""
    if entry.upstream_etag is not None:
        return list(entry.fields)
    return [(k, v) for k, v in entry.fields if k.lower() != b"etag"]


def freshened_fields(entry: Entry, not_modified_fields: Fields) -> list[tuple[bytes, bytes]]:
    """The stored fields updated with a 304's (§4.3.4): "replace all stored header fields with
    corresponding header fields provided in the 304 response"; the body stays.

    The stored Date always goes: the response was just validated, so a 304 without Date is dated
    on receipt by ``admit`` (RFC 9110 §6.6.1) rather than aged from the original response.
    """
    update = [(k, v) for k, v in without_hop_by_hop(not_modified_fields) if k.lower() not in _NOT_FRESHENED]
    replaced = {k.lower() for k, _ in update} | {b"date"}
    return [(k, v) for k, v in upstream_fields(entry) if k.lower() not in replaced] + update


def validator_matches(entry: Entry, not_modified_fields: Fields) -> bool:
    """Whether a 304 is about this stored response (§4.3.4): a strong ETag in the 304 must equal
    the stored one; without an ETag it applies to the entry we asked about."""
    etags = [v.decode("latin-1") for k, v in not_modified_fields if k.lower() == b"etag"]
    if not etags:
        return True
    return entry.upstream_etag is not None and etags[0].removeprefix(
        "W/"
    ) == entry.upstream_etag.removeprefix("W/")
