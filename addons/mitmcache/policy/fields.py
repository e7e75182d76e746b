"""Header-field helpers over raw ``(name, value)`` byte pairs, the form mitmproxy keeps on the wire.

Policy code reads headers through these so that it needs no mitmproxy type and keeps every value of
a repeated field (RFC 9110 §5.3): joining ``Set-Cookie`` lines with commas corrupts them.
"""

from collections.abc import Iterable, Sequence

Fields = Sequence[tuple[bytes, bytes]]

# RFC 9110 §7.6.1: hop-by-hop fields, never stored or forwarded from a cache (RFC 9111 §3.1), and
# the fields specific to the proxy a cache talks through, which RFC 9111 §3.1 says are "limited to
# Proxy-Authenticate, Proxy-Authentication-Info, and Proxy-Authorization".
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authentication-info",
        b"proxy-authorization",
    }
)


def get_all(fields: Fields, name: str) -> list[str]:
    """Every value of field ``name`` (case-insensitive), in order, decoded as latin-1."""
    wanted = name.lower().encode()
    return [v.decode("latin-1") for k, v in fields if k.lower() == wanted]


def by_name(fields: Fields) -> dict[str, list[str]]:
    """Every field's values by lower-cased name, in order, decoded as latin-1: one pass for code
    that reads many fields of one message (``admit`` reads a dozen of every response it stores)."""
    index: dict[str, list[str]] = {}
    for k, v in fields:
        index.setdefault(k.decode("latin-1").lower(), []).append(v.decode("latin-1"))
    return index


def pick(fields: Fields, names: frozenset[bytes]) -> dict[bytes, list[str]]:
    """The values of the (lower-case) ``names`` present, by name, decoded as latin-1: one pass for
    code that reads a few fields of one message, deciding nothing about the rest."""
    found: dict[bytes, list[str]] = {}
    for k, v in fields:
        k = k.lower()
        if k in names:
            found.setdefault(k, []).append(v.decode("latin-1"))
    return found


def get_first(fields: Fields, name: str) -> str | None:
    wanted = name.lower().encode()
    for k, v in fields:
        if k.lower() == wanted:
            return v.decode("latin-1")
    return None


def has_any(fields: Fields, names: frozenset[bytes]) -> bool:
    """Whether any of the (lower-case) ``names`` is present: one pass, nothing decoded, cheap
    enough for every request (a loop, not ``any()`` over a generator)."""
    for k, _ in fields:
        if k.lower() in names:
            return True
    return False


def split_list(values: Iterable[str]) -> list[str]:
    """Split comma-separated list fields (RFC 9110 §5.6.1) into stripped, non-empty members."""
    return [member.strip() for value in values for member in value.split(",") if member.strip()]


def connection_listed(connection: Iterable[str]) -> frozenset[bytes]:
    """Field names that the ``Connection`` values declare hop-by-hop for their message (RFC 9110
    §7.6.1)."""
    return frozenset(name.lower().encode() for name in split_list(connection))


def without_hop_by_hop(fields: Fields) -> list[tuple[bytes, bytes]]:
    """The end-to-end fields of a message: hop-by-hop and ``Connection``-listed ones removed."""
    dropped = HOP_BY_HOP | connection_listed(get_all(fields, "connection"))
    return [(k, v) for k, v in fields if k.lower() not in dropped]
