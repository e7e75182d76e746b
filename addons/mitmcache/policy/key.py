"""Cache keys (RFC 9111 §2, §4.1).

The primary key is the target URI with the query's parameters sorted by name, so that
``?b=2&a=1`` and ``?a=1&b=2`` share an entry; values of a repeated name keep their order, since
``?tag=x&tag=y`` and ``?tag=y&tag=x`` can mean different things. Raw bytes are kept (no
re-encoding), so distinct URLs never collide. The secondary key is the request's values of the
fields the response's ``Vary`` names, normalised as §4.1 allows.
"""

from collections.abc import Iterable, Sequence

from .codings import normalise_values
from .fields import Fields, get_all, split_list


def primary_key(scheme: str, authority: str, path: str) -> str:
    """``scheme://authority/path?sorted-query``: one key per resource, whatever the query order."""
    base, sep, query = path.partition("?")
    if not (sep and query):
        path = base
    elif "&" in query:  # a single parameter has nothing to sort
        params = [p for p in query.split("&") if p]
        params.sort(key=lambda p: p.partition("=")[0])  # stable: repeated names keep their order
        path = base + "?" + "&".join(params) if params else base
    return f"{scheme.lower()}://{authority.lower()}{path or '/'}"


def vary_names(vary: Iterable[str]) -> tuple[str, ...] | None:
    """Lower-cased field names from the ``Vary`` lines, sorted and deduplicated; None for ``Vary: *``."""
    names = {name.lower() for name in split_list(vary)}
    if "*" in names:
        return None
    return tuple(sorted(names))


# Content negotiation fields: lists of case-insensitive members whose order carries no meaning once
# the q-values are kept (RFC 9110 §12.5).
_NEGOTIATION_LISTS = frozenset({"accept", "accept-charset", "accept-encoding", "accept-language"})
# Other request fields defined as comma-separated lists (RFC 9110 §5.6.1 ``#rule``), whose member
# order may matter: their lines combine, and whitespace around members goes.
_ORDERED_LISTS = frozenset(
    {
        "cache-control",
        "connection",
        "expect",
        "forwarded",
        "if-match",
        "if-none-match",
        "pragma",
        "prefer",
        "te",
        "upgrade",
        "via",
        "x-forwarded-for",
    }
)


def normalise(name: str, values: Sequence[str]) -> str:
    """One comparable value for a request field (RFC 9111 §4.1 allows normalising).

    Only fields known to be lists are treated as lists: their repeated lines are combined and
    whitespace around members is dropped; for the content-negotiation fields, case and member
    order are ignored too. Any other field is compared as sent, less the whitespace around each
    line: reading ``Origin: https://app.example,`` as a list would give it the real origin's
    variant. Cookie lines (split by HTTP/2, RFC 9113 §8.2.3) are joined as one cookie string.
    ``Accept-Encoding`` is reduced further, to the codings the cache can serve
    (``codings.normalised``): the upstream is sent that value, so it cannot choose another.
    """
    if name == "accept-encoding":
        return normalise_values(values)  # reduced to the codings the cache can serve
    if name in _NEGOTIATION_LISTS:
        return ",".join(sorted(m.replace(" ", "").lower() for m in split_list(values)))
    if name in _ORDERED_LISTS:
        return ",".join(" ".join(m.split()) for m in split_list(values))
    return ("; " if name == "cookie" else "\n").join(value.strip(" \t") for value in values)


def secondary_key(names: Iterable[str], request_fields: Fields) -> tuple[tuple[str, str | None], ...]:
    """The request's normalised values of ``names``; None for an absent field."""
    return tuple((name, _selecting_value(name, request_fields)) for name in names)


def matches(vary: tuple[tuple[str, str | None], ...], request_fields: Fields) -> bool:
    """Whether a stored variant may answer this request (RFC 9111 §4.1)."""
    return all(_selecting_value(name, request_fields) == value for name, value in vary)


def _selecting_value(name: str, request_fields: Fields) -> str | None:
    """§4.1: "If ... a header field is absent from a request, it can only match another request if
    it is also absent there" -- so absent (None) is not the same as present but empty (``""``)."""
    values = get_all(request_fields, name)
    return normalise(name, values) if values else None
