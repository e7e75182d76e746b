"""Compressed storage: an admitted response coded once, its identity view, and what refreshes
re-admit (compression.py), through the engine's one write path."""

import gzip
import json
import os
import time

import pytest

from mitmcache import config
from mitmcache.compression import as_sent, compress, decode, decompress, encode_now, identity_view
from mitmcache.counters import Count, Counters
from mitmcache.engine import Engine
from mitmcache.entry import Entry
from mitmcache.lookup import Forward
from mitmcache.policy.codings import Coding
from mitmcache.policy.reuse import NO_DIRECTIVES
from mitmcache.policy.storable import Rules, admit
from mitmcache.store import codec
from tests.support.serialising_store import SerialisingStore

BODY = json.dumps([{"id": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(100)]).encode()
JSON_RESPONSE = [(b"Content-Type", b"application/json"), (b"Cache-Control", b"max-age=60")]


def admitted(response=JSON_RESPONSE, body=BODY, request=()):
    entry = admit(
        key="http://example.com/a",
        url="http://example.com/a",
        host="example.com",
        method="GET",
        request_fields=list(request),
        status=200,
        reason=b"OK",
        response_fields=list(response),
        body=body,
        request_time=time.time(),
        response_time=time.time(),
        rules=Rules(default_ttl=60, override=False),
    )
    assert isinstance(entry, Entry)
    return entry


def lowered(fields):
    return sorted((k.lower(), v) for k, v in fields)


def field(entry, name):
    return [v for k, v in entry.fields if k.lower() == name]


@pytest.mark.parametrize("coding", list(Coding))
def test_every_coding_round_trips(coding):
    assert decompress(compress(BODY, coding), coding.value) == BODY


def test_gzip_output_is_deterministic_so_its_strong_etag_holds():
    assert compress(BODY, Coding.GZIP) == compress(BODY, Coding.GZIP)


def test_a_coded_entry_carries_the_fields_of_its_coded_representation():
    entry = admitted()
    coded = encode_now(entry, Coding.GZIP)
    assert coded.coding == "gzip" and gzip.decompress(coded.body) == BODY
    assert field(coded, b"content-encoding") == [b"gzip"]
    assert field(coded, b"content-length") == [str(len(coded.body)).encode()]
    assert field(coded, b"vary") == [b"Accept-Encoding"]
    assert field(coded, b"etag") == [coded.etag.encode()]
    assert coded.etag == entry.etag[:-1] + '-gzip"' and coded.identity_etag == entry.etag


def test_the_memory_budget_counts_the_coded_bytes_and_knows_what_they_stand_for():
    entry = admitted()
    coded = encode_now(entry, Coding.GZIP)
    assert coded.size < entry.size - len(BODY) // 2
    assert coded.sent_length == len(BODY)
    assert coded.sent_size == coded.size - len(coded.body) + len(BODY)


def test_a_body_that_does_not_shrink_is_stored_as_sent():
    entry = admitted(body=os.urandom(2048))
    assert encode_now(entry, Coding.GZIP) is entry


def test_the_identity_view_is_the_response_as_sent_with_the_coded_etag_as_its_other_validator():
    entry = admitted()
    coded = encode_now(entry, Coding.BR)
    view = identity_view(coded, BODY)
    assert view.body == BODY and view.coding is None and view.etag == entry.etag
    assert field(view, b"content-encoding") == []
    assert field(view, b"content-length") == [str(len(BODY)).encode()]
    assert field(view, b"vary") == [b"Accept-Encoding"]
    assert view.identity_etag == coded.etag


def test_decoding_is_counted_with_its_time():
    counters = Counters()
    coded = encode_now(admitted(), Coding.ZSTD)
    assert decode(coded, counters) == BODY
    assert counters[Count.DECODES] == 1 and Count.DECODE_MICROSECONDS in counters


def test_what_a_refresh_re_admits_is_the_response_as_the_upstream_sent_it():
    entry = admitted(response=[*JSON_RESPONSE, (b"ETag", b'"v1"')])
    sent = as_sent(encode_now(entry, Coding.GZIP))
    assert sent.body == BODY and sent.coding is None and sent.etag == '"v1"'
    assert lowered(sent.fields) == lowered(entry.fields)


def test_an_upstream_vary_on_accept_encoding_is_kept_once_and_not_removed_on_refresh():
    entry = admitted(
        response=[*JSON_RESPONSE, (b"Vary", b"Accept-Encoding")], request=[(b"Accept-Encoding", b"gzip")]
    )
    coded = encode_now(entry, Coding.GZIP)
    assert field(coded, b"vary") == [b"Accept-Encoding"]
    assert lowered(as_sent(coded).fields) == lowered(entry.fields)


def test_a_coded_entry_survives_serialisation():
    coded = encode_now(admitted(), Coding.GZIP)
    assert codec.decode_entry(codec.encode_entry(coded)) == coded


def test_an_entry_of_the_previous_format_is_unreadable_not_misread():
    data = codec.encode_entry(admitted()).replace(codec.FORMAT, b"mitmcache/1\n", 1)
    with pytest.raises(codec.Unreadable):
        codec.decode_entry(data)


def engine_with(**options):
    raw = {s.option: s.default for s in config.SETTINGS} | options
    settings = config.parse_settings(raw)
    return Engine(lambda: settings, store=SerialisingStore())


async def test_the_engine_stores_a_compressible_response_compressed_once():
    e = engine_with()
    coded = await e.core.write(admitted(), e.core.meta_after(None, time.time()))
    assert coded is not None and coded.coding == "gzip"
    (stored,) = await e.core.store.peek(coded.key)
    assert stored.entry == coded and e.counters[Count.STORED_COMPRESSED] == 1


async def test_compression_off_stores_bodies_as_sent():
    e = engine_with(cache_compress="off")
    stored = await e.core.write(admitted(), e.core.meta_after(None, time.time()))
    assert stored is not None and stored.coding is None and stored.body == BODY


async def test_a_body_below_the_minimum_is_stored_as_sent():
    e = engine_with(cache_compress_min_bytes=str(len(BODY) + 1))
    stored = await e.core.write(admitted(), e.core.meta_after(None, time.time()))
    assert stored is not None and stored.coding is None


async def test_a_large_body_is_compressed_off_the_event_loop_with_the_same_result():
    big = BODY * 100
    e = engine_with()
    stored = await e.core.write(admitted(body=big), e.core.meta_after(None, time.time()))
    assert stored is not None and stored.coding == "gzip" and gzip.decompress(stored.body) == big


async def test_an_invalidation_while_a_body_is_compressed_keeps_the_answer_out():
    """Compressing a large body awaits a worker thread: a POST that invalidates the URL meanwhile
    must still keep the older answer out of the store."""
    e = engine_with()
    key = "http://example.com/a"
    forward = await e.lookup(
        "GET", key, [(b"host", b"example.com")], True, NO_DIRECTIVES, time.monotonic() + 5
    )
    assert isinstance(forward, Forward)
    encode = e.core.encode

    async def encode_while_invalidated(entry):
        coded = await encode(entry)
        await e.invalidate(key)
        return coded

    e.core.encode = encode_while_invalidated  # type: ignore[method-assign]
    admission = await e.store_response(
        key=key,
        url=key,
        host="example.com",
        request_fields=[(b"host", b"example.com")],
        status=200,
        reason=b"OK",
        response_fields=JSON_RESPONSE,
        body=BODY * 100,
        request_time=time.time(),
        generation=forward.generation,
        leader=forward.leader,
    )
    assert (admission.stored, admission.detail) == (False, "invalidated")
    assert await e.core.store.peek(key) == []
