"""Command results on one line, as mitmweb's command bar and the console show them."""

from mitmcache.summary import entries, fields, stats


def test_a_result_reads_as_key_value_pairs_in_order():
    assert fields({"url": "/time", "result": "refreshing", "refreshing": 1, "keys": 1}) == (
        "url=/time result=refreshing refreshing=1 keys=1"
    )


def test_nested_counts_read_as_reason_count_pairs_and_nothing_as_a_dash():
    assert fields({"miss_reasons": {"none": 2, "private": 1}, "hit_ratio": None, "empty": {}}) == (
        "miss_reasons=none:2,private:1 hit_ratio=- empty=-"
    )


def test_text_with_spaces_is_quoted_so_the_pairs_stay_apart():
    assert fields({"message": "cache cleared", "flag": True}) == "message='cache cleared' flag=true"


def test_a_result_still_being_computed_says_it_is_scheduled():
    assert fields(None) == entries(None) == "scheduled=true"


def test_stats_keep_what_a_person_checks_first_in_a_fixed_order():
    full = {"service": "mitmcache", "misses": 1, "hits": 3, "hit_ratio": 0.75, "uptime": 12.5, "entries": 2}
    assert stats(full) == "hit_ratio=0.75 hits=3 misses=1 entries=2"


def test_entries_list_each_key_with_its_state():
    page = {
        "total": 3,
        "count": 2,
        "offset": 0,
        "limit": 2,
        "next_cursor": "abc",
        "entries": [
            {"key": "http://h/a?x=1", "state": "fresh", "ttl": 59, "hits": 3},
            {"key": "http://h/b", "state": "stale", "ttl": -2, "hits": 0},
        ],
    }
    assert entries(page) == (
        "total=3 count=2 next_cursor=abc: http://h/a?x=1 fresh ttl=59s hits=3; http://h/b stale ttl=-2s hits=0"
    )


def test_an_empty_page_is_its_counts():
    assert entries({"total": 0, "count": 0, "next_cursor": None, "entries": []}) == "total=0 count=0"
