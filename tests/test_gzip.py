"""Compressed request bodies, compressed responses and x-amz-crc32 on a real server.

Request bodies are sent raw (boto3 never compresses DynamoDB requests) with
Content-Encoding gzip or deflate; compressed responses are asked for with
Accept-Encoding, decoded the way the Java SDK's gzip option does (a boto3
hook here), and botocore checks x-amz-crc32 over the bytes it received.
"""

import gzip
import http.client
import struct
import time
import zlib

import orjson
import psutil
import pytest
import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from serverutil import make_client

ONE_MB = 1 << 20


def post(server, op, body, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/", body=body, headers={
            "X-Amz-Target": f"DynamoDB_20120810.{op}", "Content-Type": "application/x-amz-json-1.0",
            **(headers or {})})
        r = conn.getresponse()
        raw = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, raw
    finally:
        conn.close()


def error_type(raw):
    return orjson.loads(raw)["__type"].rsplit("#", 1)[-1]


def get(server, table, pk):
    status, _, raw = post(server, "GetItem", orjson.dumps({"TableName": table, "Key": {"pk": {"S": pk}}}))
    assert status == 200, raw
    return orjson.loads(raw).get("Item")


def raw_deflate(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


ENCODERS = {
    "gzip": gzip.compress,
    "GZIP": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,                     # the zlib format HTTP specifies
    "deflate-raw": raw_deflate,                   # what some clients send as "deflate"
    "gzip-multi": lambda d: gzip.compress(d[:10]) + gzip.compress(d[10:]),
    "deflate, gzip": lambda d: gzip.compress(zlib.compress(d)),
}


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_compressed_request_bodies(server, hash_table, name):
    value = "compressible " * 500
    body = orjson.dumps({"TableName": hash_table, "Item": {"pk": {"S": name}, "v": {"S": value}}})
    encoded = ENCODERS[name](body)
    assert len(encoded) < len(body) / 5
    header = {"deflate-raw": "deflate", "gzip-multi": "gzip"}.get(name, name)
    status, headers, raw = post(server, "PutItem", encoded, {"Content-Encoding": header})
    assert status == 200, raw
    assert headers["x-amz-crc32"] == str(zlib.crc32(raw))
    assert get(server, hash_table, name)["v"]["S"] == value


@pytest.mark.parametrize("body,encoding,expected", [
    (b"not gzip at all", "gzip", "InternalServerError"),
    (gzip.compress(b'{"TableName": "x"}')[:-12], "gzip", "InternalServerError"),     # truncated
    (gzip.compress(b"{}") + b"trailing junk", "gzip", "InternalServerError"),
    (zlib.compress(b"{}") + b"x", "deflate", "InternalServerError"),
    (b"", "gzip", "InternalServerError"),
    (b"{}", "br", "InternalServerError"),
    (gzip.compress(b"this is not json"), "gzip", "SerializationException"),
])
def test_bad_compressed_bodies_are_refused(server, body, encoding, expected):
    status, headers, raw = post(server, "ListTables", body, {"Content-Encoding": encoding})
    assert error_type(raw) == expected
    assert status == (500 if expected == "InternalServerError" else 400)
    assert headers["x-amz-crc32"] == str(zlib.crc32(raw))
    assert post(server, "ListTables", b"{}")[0] == 200


def gzip_bomb(size: int) -> bytes:
    """One valid gzip member that inflates to `size` zero bytes, about size/1000 on the wire."""
    chunk = b"\0" * ONE_MB
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)   # a full flush makes every block identical
    crc = 0
    for _ in range(size // ONE_MB):
        crc = zlib.crc32(chunk, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + block * (size // ONE_MB) + c.flush() + struct.pack("<II", crc, size & 0xFFFFFFFF)


def deflate_bomb(size: int) -> bytes:
    chunk = b"\0" * ONE_MB
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    return block * (size // ONE_MB) + c.flush()


def test_the_bomb_generator_is_a_real_bomb():
    bomb = gzip_bomb(64 * ONE_MB)
    assert len(bomb) < 100_000
    assert len(gzip.decompress(bomb)) == 64 * ONE_MB


@pytest.mark.parametrize("encoding,make", [("gzip", gzip_bomb), ("deflate", deflate_bomb),
                                          ("gzip", lambda n: gzip.compress(b"\0" * ONE_MB, 9) * (n // ONE_MB))])
def test_bomb_is_refused_with_bounded_memory(server, encoding, make):
    bomb = make(1024 * ONE_MB)                       # 1 GiB once inflated, ~1 MB sent
    assert len(bomb) < 2 * ONE_MB
    shards = [psutil.Process(pid) for pid in server.shard_pids()]
    rss_before = max(p.memory_info().rss for p in shards)
    started = time.monotonic()
    for _ in range(3):
        status, _, raw = post(server, "PutItem", bomb, {"Content-Encoding": encoding})
        assert status == 400
        assert error_type(raw) == "ValidationException"
        assert "after decompression" in orjson.loads(raw)["message"]
    assert time.monotonic() - started < 10, "decompression must stop at the limit, not inflate 1 GiB"
    rss_after = max(p.memory_info().rss for p in shards)
    # The limit is ~17 MB of output; allow for allocator slack, far below 1 GiB.
    assert rss_after - rss_before < 120 * ONE_MB
    assert all(p.is_running() for p in shards)
    assert post(server, "ListTables", b"{}")[0] == 200


def test_compressed_responses_raw(server, hash_table):
    big = "r" * 6000
    status, _, _ = post(server, "PutItem", orjson.dumps({"TableName": hash_table,
                                                         "Item": {"pk": {"S": "big"}, "v": {"S": big}}}))
    assert status == 200
    request = orjson.dumps({"TableName": hash_table, "Key": {"pk": {"S": "big"}}})
    _, plain_headers, plain = post(server, "GetItem", request)
    assert "content-encoding" not in plain_headers
    for accept, coding, decode in (("gzip", "gzip", gzip.decompress),
                                   ("deflate", "deflate", zlib.decompress),
                                   ("br;q=1, deflate;q=0.5, gzip;q=0.8", "gzip", gzip.decompress),
                                   ("gzip;q=0, deflate", "deflate", zlib.decompress)):
        status, headers, raw = post(server, "GetItem", request, {"Accept-Encoding": accept})
        assert status == 200
        assert headers["content-encoding"] == coding, accept
        assert int(headers["content-length"]) == len(raw) < len(plain)
        # DynamoDB's x-amz-crc32 covers the bytes as sent: the compressed ones.
        assert headers["x-amz-crc32"] == str(zlib.crc32(raw))
        assert orjson.loads(decode(raw)) == orjson.loads(plain)
    for accept in ("identity", "IDENTITY", "identity, gzip;q=0", "br"):     # a big answer, sent plain
        status, headers, raw = post(server, "GetItem", request, {"Accept-Encoding": accept})
        assert status == 200 and "content-encoding" not in headers and raw == plain, accept
    # Small answers are not worth compressing; identity is always acceptable.
    for accept in ("gzip", "identity", "br"):
        status, headers, raw = post(server, "ListTables", b"{}", {"Accept-Encoding": accept})
        assert status == 200 and "content-encoding" not in headers


def gzip_client(server, retry_mode):
    """A boto3 client that asks for compressed answers and inflates them before parsing."""
    client = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="y",
                          config=BotoConfig(retries={"max_attempts": 3, "mode": retry_mode}))
    seen = []

    def ask(request, **_):
        request.headers["Accept-Encoding"] = "gzip"

    def inflate(response_dict, **_):
        coding = response_dict["headers"].get("content-encoding")
        seen.append(coding)
        if coding == "gzip":
            response_dict["body"] = gzip.decompress(response_dict["body"])

    client.meta.events.register("before-sign.dynamodb", ask)
    client.meta.events.register("before-parse.dynamodb", inflate)
    return client, seen


@pytest.mark.parametrize("retry_mode", ["standard", "legacy"])
def test_boto3_decodes_compressed_answers_and_checks_crc32(server, hash_table, retry_mode):
    client, seen = gzip_client(server, retry_mode)
    value = "payload-" * 400
    for i in range(20):
        client.put_item(TableName=hash_table, Item={"pk": {"S": f"k{i}"}, "v": {"S": value}})
    result = client.scan(TableName=hash_table)
    assert sorted(item["pk"]["S"] for item in result["Items"]) == sorted(f"k{i}" for i in range(20))
    assert all(item["v"]["S"] == value for item in result["Items"])
    assert "gzip" in seen, "the scan answer must have come compressed"
    # botocore checked crc32 over the compressed bytes: a mismatch would have
    # been retried (standard mode) or raised ChecksumError (legacy mode).
    assert result["ResponseMetadata"]["RetryAttempts"] == 0
    assert result["ResponseMetadata"]["HTTPHeaders"]["x-amz-crc32"]


def test_crc32_on_every_response_checked_by_botocore(server, hash_table):
    """A plain boto3 client: botocore recomputes x-amz-crc32 on every answer, errors included."""
    client = make_client(server.endpoint, retries=1)
    client.put_item(TableName=hash_table, Item={"pk": {"S": "crc"}, "v": {"S": "\u00e9\u4e2d" * 50}})
    got = client.get_item(TableName=hash_table, Key={"pk": {"S": "crc"}})
    assert got["ResponseMetadata"]["RetryAttempts"] == 0
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-amz-crc32"]
    with pytest.raises(ClientError) as info:
        client.get_item(TableName="no_such_table_crc", Key={"pk": {"S": "a"}})
    assert info.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-crc32"]
