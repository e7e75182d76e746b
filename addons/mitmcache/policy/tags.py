"""Tags (surrogate keys): names an upstream gives a response so that one purge can reach every
response that mentions an item -- the item, the lists it appears in, the searches that found it.

Three conventions are in use, and ``CACHE_TAG_FIELDS`` names the fields this cache reads:

* ``Surrogate-Key`` (Fastly) and ``xkey`` (Varnish's xkey vmod): tags separated by spaces;
* ``Cache-Tag`` (Cloudflare, Akamai's ``Edge-Cache-Tag``): tags separated by commas.

Any other field name takes both separators. A tag never contains whitespace (a ``Cache-Tag``
member with inner spaces is ignored); a ``Surrogate-Key`` may contain commas. Tags are kept exactly
(case-sensitive), at most ``MAX_TAG_BYTES`` each and ``MAX_TAGS`` per response: a hostile upstream cannot grow the index
beyond what the stored entries' own bounds allow (each tag is counted in its entry's size).

``Clear-Cache-Tag`` (tags separated by spaces or commas) is an instruction, not content: from a client with the admin key, or on any
upstream response (trusted), it refreshes the hot entries of its tags and drops the cold ones.
It is never stored and never reaches a client. Pure functions, no I/O.
"""

import re
from dataclasses import dataclass, field

from .fields import Fields

DEFAULT_FIELDS = ("surrogate-key", "cache-tag", "xkey")
CLEAR_FIELD = "clear-cache-tag"
MAX_TAGS = 256  # per response; further tags are ignored
MAX_TAG_BYTES = 1024  # a longer tag is ignored (Fastly's limit for one surrogate key)

_SPACES = re.compile(r"[ \t]+")
_COMMAS = re.compile(r"[ \t]*,[ \t]*")
_EITHER = re.compile(r"[ \t,]+")
_SEPARATORS = {"surrogate-key": _SPACES, "xkey": _SPACES, "cache-tag": _COMMAS, "edge-cache-tag": _COMMAS}


@dataclass(frozen=True, slots=True)
class TagRules:
    """The settings tagging depends on (built once from ``config.Settings``)."""

    fields: tuple[str, ...] = DEFAULT_FIELDS  # lower-case field names
    keep: bool = False  # CACHE_TAG_FIELDS_KEEP: clients see the tag fields too
    # The fields clients never see: the clear instruction, and the tag fields unless kept. Built
    # once: every forwarded response is checked against it.
    withheld: frozenset[bytes] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        names = {CLEAR_FIELD} if self.keep else {CLEAR_FIELD, *self.fields}
        object.__setattr__(self, "withheld", frozenset(name.encode() for name in names))


DEFAULT_TAG_RULES = TagRules()


def split(field: str, value: str) -> list[str]:
    """The tags of one field value, by the convention of the field's name."""
    separator = _SEPARATORS.get(field, _EITHER)
    return [tag for tag in separator.split(value.strip()) if tag]


def _valid(tag: str) -> bool:
    return (
        len(tag.encode("utf-8", "surrogateescape")) <= MAX_TAG_BYTES
        and tag.isprintable()
        and not any(c.isspace() for c in tag)
    )


def _collect(fields: Fields, names: tuple[str, ...] | frozenset[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for raw_name, raw_value in fields:
        name = raw_name.decode("latin-1").lower()
        if name not in names:
            continue
        for tag in split(name, raw_value.decode("utf-8", "surrogateescape")):
            if _valid(tag):
                seen.setdefault(tag, None)
                if len(seen) >= MAX_TAGS:
                    return tuple(seen)
    return tuple(seen)


def response_tags(fields: Fields, rules: TagRules) -> tuple[str, ...]:
    """The tags a response carries in the fields ``rules`` names, each once, in order."""
    return _collect(fields, rules.fields) if rules.fields else ()


def clear_tags(fields: Fields) -> tuple[str, ...]:
    """The tags a ``Clear-Cache-Tag`` field names (separated by spaces or commas)."""
    return _collect(fields, (CLEAR_FIELD,))


def parse_tag_list(values: list[str]) -> tuple[str, ...]:
    """Tags an operator gave (``tag=a&tag=b``, ``tag=a b``, ``cache.purge.tag a b``: separated by
    spaces, as a Surrogate-Key may contain commas), each once, in order; ValueError for one that no
    response could carry."""
    tags: dict[str, None] = {}
    for value in values:
        for tag in value.split():
            if not tag:
                continue
            if not _valid(tag):
                raise ValueError(f"not a tag: {tag[:60]!r}")
            tags.setdefault(tag, None)
    return tuple(tags)


def split_withheld(
    fields: Fields, withheld: frozenset[bytes], dropped: frozenset[bytes] = frozenset()
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """``fields`` as (what clients see, what is withheld from them), in one pass; ``dropped``: names
    in neither (what a cache never stores, for ``storable``)."""
    shown: list[tuple[bytes, bytes]] = []
    kept_back: list[tuple[bytes, bytes]] = []
    for k, v in fields:
        name = k.lower()
        if name not in dropped:
            (kept_back if name in withheld else shown).append((k, v))
    return shown, kept_back
