"""Compressed storage with Accept-Encoding negotiation, end to end through real proxies: what is
stored compressed, what each client gets (byte for byte), no-transform, 304s and ranges across
codings, HEAD, and variants selected by the normalised Accept-Encoding."""

import gzip
import json
import time
from collections.abc import Iterator

import httpx
import pytest

KEY = "compress-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY = json.dumps(
    [{"id": i, "name": f"item {i}", "price": i * 1.5, "tags": ["x", "y"]} for i in range(60)]
).encode()
JSON = [("Content-Type", "application/json"), ("Cache-Control", "max-age=60")]


@pytest.fixture
def clients() -> Iterator[tuple[httpx.Client, httpx.Client, httpx.Client]]:
    """A gzip-accepting client, an identity-only one, and one that sends no Accept-Encoding."""
    gzip_client = httpx.Client(timeout=10, trust_env=False, headers={"Accept-Encoding": "gzip"})
    identity_client = httpx.Client(timeout=10, trust_env=False, headers={"Accept-Encoding": "identity"})
    silent_client = httpx.Client(timeout=10, trust_env=False)
    del silent_client.headers["accept-encoding"]
    with gzip_client, identity_client, silent_client:
        yield gzip_client, identity_client, silent_client


def raw_get(client: httpx.Client, url: str, **kwargs) -> tuple[httpx.Response, bytes]:
    """The response and its body exactly as it came on the wire (not decoded by httpx)."""
    with client.stream("GET", url, **kwargs) as response:
        return response, b"".join(response.iter_raw())


def stats(proxy) -> dict:
    with httpx.Client(timeout=10, trust_env=False) as admin:
        return admin.get(f"{proxy.url}/__cache/stats", headers=AUTH).json()


def test_a_json_response_is_stored_compressed_and_counted_as_such(origin, proxy_factory, clients):
    origin.route("/items", headers=JSON, body=BODY)
    proxy = proxy_factory({"cache_admin_key": KEY})
    gzip_client, _, _ = clients
    gzip_client.get(f"{proxy.url}/items")
    numbers = stats(proxy)
    assert numbers["stored_compressed"] == 1
    assert numbers["bytes_as_sent"] - numbers["bytes"] > len(BODY) // 2
    assert numbers["compression_ratio"] > 1.5


def test_a_gzip_client_gets_the_stored_gzip_bytes_with_their_own_etag(origin, proxy_factory, clients):
    origin.route("/items", headers=[*JSON, ("ETag", '"v1"')], body=BODY)
    proxy = proxy_factory()
    gzip_client, _, _ = clients
    miss, miss_body = raw_get(gzip_client, f"{proxy.url}/items")
    hit, raw = raw_get(gzip_client, f"{proxy.url}/items")
    assert (miss.headers["x-cache"], miss_body) == ("MISS", BODY)  # passed on as the upstream sent it
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["content-encoding"] == "gzip" and gzip.decompress(raw) == BODY
    assert int(hit.headers["content-length"]) == len(raw) < len(BODY)
    assert hit.headers["vary"] == "Accept-Encoding"
    assert hit.headers["etag"] == '"v1-gzip"'


@pytest.mark.parametrize("which", ["identity", "no accept-encoding"])
def test_a_client_that_does_not_accept_gzip_gets_the_body_decoded(origin, proxy_factory, clients, which):
    origin.route("/items", headers=[*JSON, ("ETag", '"v1"')], body=BODY)
    proxy = proxy_factory({"cache_admin_key": KEY})
    gzip_client, identity_client, silent_client = clients
    gzip_client.get(f"{proxy.url}/items")
    client = identity_client if which == "identity" else silent_client
    hit, raw = raw_get(client, f"{proxy.url}/items")
    assert hit.headers["x-cache"] == "HIT" and raw == BODY
    assert "content-encoding" not in hit.headers
    assert int(hit.headers["content-length"]) == len(BODY)
    assert hit.headers["etag"] == '"v1"' and hit.headers["vary"] == "Accept-Encoding"
    assert stats(proxy)["decodes"] == 1
    assert origin.count("/items") == 1


def test_no_transform_keeps_the_body_as_the_upstream_sent_it(origin, proxy_factory, clients):
    origin.route(
        "/raw",
        headers=[("Content-Type", "application/json"), ("Cache-Control", "max-age=60, no-transform")],
        body=BODY,
    )
    proxy = proxy_factory({"cache_admin_key": KEY})
    gzip_client, _, _ = clients
    gzip_client.get(f"{proxy.url}/raw")
    hit, raw = raw_get(gzip_client, f"{proxy.url}/raw")
    assert hit.headers["x-cache"] == "HIT" and raw == BODY
    assert "content-encoding" not in hit.headers
    assert stats(proxy)["stored_compressed"] == 0


def test_compression_off_stores_and_serves_bodies_as_sent(origin, proxy_factory, clients):
    origin.route("/items", headers=JSON, body=BODY)
    proxy = proxy_factory({"cache_compress": "off"})
    gzip_client, _, _ = clients
    gzip_client.get(f"{proxy.url}/items")
    hit, raw = raw_get(gzip_client, f"{proxy.url}/items")
    assert hit.headers["x-cache"] == "HIT" and raw == BODY and "content-encoding" not in hit.headers


def test_a_binary_type_is_stored_as_sent(origin, proxy_factory, clients):
    origin.route("/img", headers=[("Content-Type", "image/png"), ("Cache-Control", "max-age=60")], body=BODY)
    proxy = proxy_factory()
    gzip_client, _, _ = clients
    gzip_client.get(f"{proxy.url}/img")
    hit, raw = raw_get(gzip_client, f"{proxy.url}/img")
    assert hit.headers["x-cache"] == "HIT" and raw == BODY and "content-encoding" not in hit.headers


@pytest.mark.parametrize("tag", ['"v1"', '"v1-gzip"', 'W/"v1-gzip"'])
def test_if_none_match_with_either_etag_gets_a_304_for_the_gzip_representation(
    origin, proxy_factory, clients, tag
):
    origin.route("/items", headers=[*JSON, ("ETag", '"v1"')], body=BODY)
    proxy = proxy_factory()
    gzip_client, _, _ = clients
    gzip_client.get(f"{proxy.url}/items")
    answer = gzip_client.get(f"{proxy.url}/items", headers={"If-None-Match": tag})
    assert (answer.status_code, answer.headers["etag"]) == (304, '"v1-gzip"')
    assert answer.headers["vary"] == "Accept-Encoding"


@pytest.mark.parametrize("tag", ['"v1"', '"v1-gzip"'])
def test_if_none_match_with_either_etag_gets_a_304_for_the_identity_representation(
    origin, proxy_factory, clients, tag
):
    origin.route("/items", headers=[*JSON, ("ETag", '"v1"')], body=BODY)
    proxy = proxy_factory()
    gzip_client, identity_client, _ = clients
    gzip_client.get(f"{proxy.url}/items")
    answer = identity_client.get(f"{proxy.url}/items", headers={"If-None-Match": tag})
    assert (answer.status_code, answer.headers["etag"]) == (304, '"v1"')


def test_an_other_etag_gets_the_full_response(origin, proxy_factory, clients):
    origin.route("/items", headers=[*JSON, ("ETag", '"v1"')], body=BODY)
    proxy = proxy_factory()
    gzip_client, _, _ = clients
    gzip_client.get(f"{proxy.url}/items")
    answer, raw = raw_get(gzip_client, f"{proxy.url}/items", headers={"If-None-Match": '"v2", "v1-br"'})
    assert answer.status_code == 200 and gzip.decompress(raw) == BODY


def test_a_generated_etag_is_derived_for_the_coded_representation_too(origin, proxy_factory, clients):
    origin.route("/items", headers=JSON, body=BODY)
    proxy = proxy_factory()
    gzip_client, identity_client, _ = clients
    miss = gzip_client.get(f"{proxy.url}/items")
    coded = gzip_client.get(f"{proxy.url}/items").headers["etag"]
    plain = identity_client.get(f"{proxy.url}/items").headers["etag"]
    assert miss.headers["etag"] == plain and coded == plain[:-1] + '-gzip"'
    assert identity_client.get(f"{proxy.url}/items", headers={"If-None-Match": coded}).status_code == 304


def test_a_miss_answers_if_none_match_with_the_coded_etag_too(origin, proxy_factory, clients):
    origin.route("/items", headers=[*JSON, ("ETag", '"v1"')], body=BODY)
    proxy = proxy_factory()
    gzip_client, _, _ = clients
    answer = gzip_client.get(f"{proxy.url}/items", headers={"If-None-Match": '"v1-gzip"'})
    assert (answer.status_code, answer.headers["x-cache"], answer.headers["etag"]) == (304, "MISS", '"v1"')


def test_a_range_for_a_gzip_client_is_a_range_of_the_gzip_bytes(origin, proxy_factory, clients):
    origin.route("/items", headers=[*JSON, ("ETag", '"v1"')], body=BODY)
    proxy = proxy_factory()
    gzip_client, _, _ = clients
    _, whole = (gzip_client.get(f"{proxy.url}/items"), raw_get(gzip_client, f"{proxy.url}/items")[1])
    part, raw = raw_get(gzip_client, f"{proxy.url}/items", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and raw == whole[:10]
    assert part.headers["content-range"] == f"bytes 0-9/{len(whole)}"
    assert part.headers["content-encoding"] == "gzip" and part.headers["etag"] == '"v1-gzip"'


def test_a_range_for_an_identity_client_is_a_range_of_the_decoded_body(origin, proxy_factory, clients):
    origin.route("/items", headers=[*JSON, ("ETag", '"v1"')], body=BODY)
    proxy = proxy_factory()
    gzip_client, identity_client, _ = clients
    gzip_client.get(f"{proxy.url}/items")
    part, raw = raw_get(identity_client, f"{proxy.url}/items", headers={"Range": "bytes=5-24"})
    assert part.status_code == 206 and raw == BODY[5:25]
    assert part.headers["content-range"] == f"bytes 5-24/{len(BODY)}"
    assert "content-encoding" not in part.headers


def test_if_range_with_the_identity_etag_does_not_select_a_range_of_the_gzip_bytes(
    origin, proxy_factory, clients
):
    origin.route("/items", headers=[*JSON, ("ETag", '"v1"')], body=BODY)
    proxy = proxy_factory()
    gzip_client, _, _ = clients
    gzip_client.get(f"{proxy.url}/items")
    answer, raw = raw_get(
        gzip_client, f"{proxy.url}/items", headers={"Range": "bytes=0-9", "If-Range": '"v1"'}
    )
    assert answer.status_code == 200 and gzip.decompress(raw) == BODY


def test_head_gives_the_length_of_the_representation_the_client_gets(origin, proxy_factory, clients):
    origin.route("/items", headers=JSON, body=BODY)
    proxy = proxy_factory()
    gzip_client, identity_client, _ = clients
    _, coded = raw_get(gzip_client, f"{proxy.url}/items")
    _, coded = raw_get(gzip_client, f"{proxy.url}/items")
    gzip_head = gzip_client.head(f"{proxy.url}/items")
    identity_head = identity_client.head(f"{proxy.url}/items")
    assert (gzip_head.headers["x-cache"], identity_head.headers["x-cache"]) == ("HIT", "HIT")
    assert gzip_head.headers["content-length"] == str(len(coded))
    assert gzip_head.headers["content-encoding"] == "gzip"
    assert identity_head.headers["content-length"] == str(len(BODY))
    assert "content-encoding" not in identity_head.headers


def test_variants_are_selected_by_the_codings_the_cache_can_serve(origin, proxy_factory):
    origin.route("/v", headers=[*JSON, ("Vary", "Accept-Encoding")], body=BODY)
    proxy = proxy_factory()
    with httpx.Client(timeout=10, trust_env=False) as http:
        first = http.get(f"{proxy.url}/v", headers={"Accept-Encoding": "gzip, deflate"})
        same = http.get(f"{proxy.url}/v", headers={"Accept-Encoding": "deflate;q=1, GZIP;q=0.8, compress"})
        other = http.get(f"{proxy.url}/v", headers={"Accept-Encoding": "br, gzip"})
    assert (first.headers["x-cache"], same.headers["x-cache"], other.headers["x-cache"]) == (
        "MISS",
        "HIT",
        "MISS",
    )
    assert same.content == BODY
    sent = [{k.lower(): v for k, v in r["headers"]}["accept-encoding"] for r in origin.requests("/v")]
    assert sent == ["gzip,identity", "br,gzip,identity"]


def test_an_upstream_gzip_body_is_still_stored_byte_exact(origin, proxy_factory, clients):
    compressed = gzip.compress(BODY, compresslevel=1)
    origin.route("/gz", headers=[*JSON, ("Content-Encoding", "gzip")], body=compressed)
    proxy = proxy_factory()
    gzip_client, identity_client, _ = clients
    gzip_client.get(f"{proxy.url}/gz")
    hit, raw = raw_get(gzip_client, f"{proxy.url}/gz")
    assert hit.headers["x-cache"] == "HIT" and raw == compressed
    assert identity_client.get(f"{proxy.url}/gz").headers["x-cache"] == "MISS"


@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_other_codings_serve_their_clients_and_decode_for_gzip_clients(origin, proxy_factory, coding):
    origin.route("/items", headers=JSON, body=BODY)
    proxy = proxy_factory({"cache_compress": coding})
    with httpx.Client(timeout=10, trust_env=False, headers={"Accept-Encoding": coding}) as coded_client:
        coded_client.get(f"{proxy.url}/items")
        coded_hit = coded_client.get(f"{proxy.url}/items")
    with httpx.Client(timeout=10, trust_env=False, headers={"Accept-Encoding": "gzip"}) as gzip_client:
        plain_hit, raw = raw_get(gzip_client, f"{proxy.url}/items")
    assert coded_hit.headers["content-encoding"] == coding and coded_hit.content == BODY
    assert plain_hit.headers["x-cache"] == "HIT" and raw == BODY


def test_a_revalidated_compressed_entry_stays_compressed_and_correct(origin, proxy_factory, clients):
    origin.route(
        "/items",
        sequence=[
            {
                "headers": [
                    ("Content-Type", "application/json"),
                    ("Cache-Control", "max-age=1"),
                    ("ETag", '"v1"'),
                ],
                "body": BODY,
            },
            {"status": 304, "headers": [("Cache-Control", "max-age=60"), ("ETag", '"v1"')], "body": b""},
        ],
    )
    proxy = proxy_factory({"cache_admin_key": KEY, "cache_ttl": "0"})
    gzip_client, identity_client, _ = clients
    gzip_client.get(f"{proxy.url}/items")
    time.sleep(1.2)
    revalidated, raw = raw_get(gzip_client, f"{proxy.url}/items")
    assert revalidated.headers["x-cache"] == "REVALIDATED"
    assert gzip.decompress(raw) == BODY and revalidated.headers["etag"] == '"v1-gzip"'
    hit, plain = raw_get(identity_client, f"{proxy.url}/items")
    assert hit.headers["x-cache"] == "HIT" and plain == BODY and hit.headers["etag"] == '"v1"'
    assert stats(proxy)["stored_compressed"] == 2
