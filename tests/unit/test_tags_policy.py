"""policy.tags: which response fields carry tags, how each convention separates them, what clients
never see, and the bounds a hostile upstream cannot pass."""

import pytest

from mitmcache.policy.storable import Refusal, Rules, admit
from mitmcache.policy.tags import (
    MAX_TAG_BYTES,
    MAX_TAGS,
    TagRules,
    clear_tags,
    parse_tag_list,
    response_tags,
    split_withheld,
)

RULES = TagRules()


def fields(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


@pytest.mark.parametrize(
    ("name", "value", "tags"),
    [
        ("Surrogate-Key", " a  b\tc ", ("a", "b", "c")),
        ("Surrogate-Key", "a,b c", ("a,b", "c")),  # Fastly: a comma is part of a key
        ("xkey", "a b", ("a", "b")),
        ("Cache-Tag", "a, b,c ,", ("a", "b", "c")),
        ("Cache-Tag", "a, two words", ("a",)),  # a tag never contains whitespace
    ],
)
def test_each_convention_separates_tags_its_own_way(name, value, tags):
    assert response_tags(fields((name, value)), RULES) == tags


def test_tags_of_several_fields_and_lines_are_collected_once_in_order():
    found = response_tags(fields(("Surrogate-Key", "a b"), ("Cache-Tag", "b,c"), ("xkey", "d a")), RULES)
    assert found == ("a", "b", "c", "d")


def test_an_unconfigured_field_carries_no_tags_and_another_takes_both_separators():
    rules = TagRules(fields=("x-tags",))
    assert response_tags(fields(("Surrogate-Key", "a"), ("X-Tags", "b,c d")), rules) == ("b", "c", "d")
    assert response_tags(fields(("Surrogate-Key", "a")), TagRules(fields=())) == ()


def test_tags_are_bounded_in_length_and_number():
    too_long = "x" * (MAX_TAG_BYTES + 1)
    many = " ".join(f"t{i}" for i in range(MAX_TAGS + 50))
    assert response_tags(fields(("Surrogate-Key", f"{too_long} ok")), RULES) == ("ok",)
    assert len(response_tags(fields(("Surrogate-Key", many)), RULES)) == MAX_TAGS


def test_clear_cache_tag_takes_spaces_and_commas():
    assert clear_tags(fields(("Clear-Cache-Tag", "a b,c"), ("Clear-Cache-Tag", "d"))) == ("a", "b", "c", "d")


def test_clients_never_see_clear_cache_tag_and_see_tag_fields_only_when_kept():
    response = fields(("Content-Type", "text/plain"), ("Surrogate-Key", "a"), ("Clear-Cache-Tag", "b"))
    shown, withheld = split_withheld(response, RULES.withheld)
    assert shown == fields(("Content-Type", "text/plain"))
    assert withheld == fields(("Surrogate-Key", "a"), ("Clear-Cache-Tag", "b"))
    shown, _ = split_withheld(response, TagRules(keep=True).withheld)
    assert shown == fields(("Content-Type", "text/plain"), ("Surrogate-Key", "a"))


def test_an_operator_names_tags_separated_by_spaces():
    assert parse_tag_list(["a b", "b,c", ""]) == ("a", "b", "b,c")
    with pytest.raises(ValueError):
        parse_tag_list(["x" * (MAX_TAG_BYTES + 1)])


def admitted(tag_rules: TagRules):
    entry = admit(
        key="http://h/a",
        url="http://h/a",
        host="h",
        method="GET",
        request_fields=[],
        status=200,
        reason=b"OK",
        response_fields=fields(
            ("Cache-Control", "max-age=60"), ("Surrogate-Key", "a b"), ("Clear-Cache-Tag", "c")
        ),
        body=b"x",
        request_time=1000.0,
        response_time=1000.0,
        rules=Rules(default_ttl=60, override=False, tags=tag_rules),
    )
    assert not isinstance(entry, Refusal)
    return entry


def test_a_stored_entry_carries_its_tags_and_withholds_the_tag_fields_from_what_it_serves():
    entry = admitted(RULES)
    names = {k.lower() for k, _ in entry.fields}
    assert entry.tags == ("a", "b")
    assert b"surrogate-key" not in names and b"clear-cache-tag" not in names
    assert entry.withheld == ((b"Surrogate-Key", b"a b"),)  # a 304 re-admits them


def test_kept_tag_fields_are_served_and_the_clear_instruction_never_stored():
    entry = admitted(TagRules(keep=True))
    names = {k.lower() for k, _ in entry.fields}
    assert b"surrogate-key" in names and b"clear-cache-tag" not in names and entry.withheld == ()


def test_tags_count_in_an_entry_size():
    plain = admitted(TagRules(fields=()))
    assert admitted(RULES).size > plain.size


def test_a_304_keeps_the_tags_of_the_entry_it_renews():
    from mitmcache.policy.revalidation import freshened_fields

    entry = admitted(RULES)
    renewed = admit(
        key=entry.key,
        url=entry.url,
        host=entry.host,
        method="GET",
        request_fields=[],
        status=entry.status,
        reason=entry.reason,
        response_fields=freshened_fields(entry, fields(("Cache-Control", "max-age=120"))),
        body=entry.body,
        request_time=2000.0,
        response_time=2000.0,
        rules=Rules(default_ttl=60, override=False, tags=RULES),
    )
    assert not isinstance(renewed, Refusal)
    assert renewed.tags == ("a", "b") and renewed.lifetime == 120
    assert b"surrogate-key" not in {k.lower() for k, _ in renewed.fields}
