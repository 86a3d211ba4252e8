"""Request decompression (bounded), response compression choice, x-amz-crc32,
and the TLS context (a handshake over 127.0.0.1 with a test CA)."""

import asyncio
import gzip
import os
import ssl
import zlib

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ChecksumError
from botocore.retries.special import RetryDDBChecksumError
from hypothesis import given, settings
from hypothesis import strategies as st

from shardserver.errors import InternalServerError, ValidationException
from shardserver.protocol import compression
from shardserver.protocol.compression import (
    choose_encoding,
    crc32_header,
    decode_body,
    encode_response,
)
from shardserver.protocol.tls import make_server_context
from tlsutil import make_test_certificates

PAYLOAD = b'{"TableName": "t", "Item": {"pk": {"S": "abc"}, "v": {"S": "' + b"x" * 5000 + b'"}}}'


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


# --- decode_body -----------------------------------------------------------------

@pytest.mark.parametrize("encoding", [None, "", "identity", "IDENTITY"])
def test_identity(encoding):
    assert decode_body(encoding, PAYLOAD) == PAYLOAD


@pytest.mark.parametrize("encoding", ["gzip", "GZip", "x-gzip", " gzip "])
def test_gzip(encoding):
    assert decode_body(encoding, gzip.compress(PAYLOAD)) == PAYLOAD


def test_gzip_concatenated_members():
    body = gzip.compress(PAYLOAD[:10]) + gzip.compress(PAYLOAD[10:])
    assert decode_body("gzip", body) == PAYLOAD


def test_deflate_zlib_and_raw():
    assert decode_body("deflate", zlib.compress(PAYLOAD)) == PAYLOAD
    assert decode_body("deflate", raw_deflate(PAYLOAD)) == PAYLOAD


def test_stacked_encodings_undone_in_reverse():
    body = zlib.compress(gzip.compress(PAYLOAD))
    assert decode_body("gzip, deflate", body) == PAYLOAD
    assert decode_body("identity, gzip", gzip.compress(PAYLOAD)) == PAYLOAD


@pytest.mark.parametrize("encoding,body", [
    ("gzip", PAYLOAD),                              # not gzip at all
    ("gzip", b""),                                  # empty is not a gzip stream
    ("gzip", gzip.compress(PAYLOAD)[:-1]),          # truncated trailer
    ("gzip", gzip.compress(PAYLOAD)[:20]),          # truncated data
    ("gzip", gzip.compress(PAYLOAD) + b"junk"),     # garbage after the member
    ("deflate", b"\x00\x01garbage"),
    ("deflate", zlib.compress(PAYLOAD)[:-3]),
    ("deflate", zlib.compress(PAYLOAD) + b"junk"),
    ("deflate", b""),
])
def test_corrupt_bodies_are_internal_errors(encoding, body):
    # DynamoDB answers a body it cannot decompress with HTTP 500.
    with pytest.raises(InternalServerError) as e:
        decode_body(encoding, body)
    assert "decompress" in e.value.message
    assert e.value.status == 500


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "garbage"])
def test_unknown_encoding(encoding):
    with pytest.raises(InternalServerError) as e:
        decode_body(encoding, PAYLOAD)
    assert "Unsupported Content-Encoding" in e.value.message


def test_limit_is_exact():
    data = b"a" * 1000
    assert decode_body("gzip", gzip.compress(data), max_size=1000) == data
    with pytest.raises(ValidationException):
        decode_body("gzip", gzip.compress(data), max_size=999)
    with pytest.raises(ValidationException):
        decode_body("deflate", zlib.compress(data), max_size=999)
    # The limit applies to the sum of concatenated members too.
    with pytest.raises(ValidationException):
        decode_body("gzip", gzip.compress(data[:600]) + gzip.compress(data[600:]), max_size=999)


def test_gzip_bomb_refused_with_bounded_memory(monkeypatch):
    """64 MiB of zeros compresses to ~64 KB; decoding must stop at the limit
    having produced no more than limit + 1 bytes of output."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    bomb = b"".join(c.compress(chunk) for _ in range(64)) + c.flush()
    assert len(bomb) < 1 << 20

    produced = []
    real_run = compression._run

    def spying_run(d, data, out, total, max_size):
        try:
            return real_run(d, data, out, total, max_size)
        finally:
            produced.append(sum(len(x) for x in out))

    monkeypatch.setattr(compression, "_run", spying_run)
    with pytest.raises(ValidationException) as e:
        decode_body("gzip", bomb)
    assert "after decompression" in e.value.message
    assert max(produced) <= compression.DEFAULT_MAX_DECODED_BYTES + 1


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=2000), encoding=st.sampled_from(["gzip", "deflate"]))
def test_fuzz_garbage_only_raises_our_errors(body, encoding):
    try:
        decode_body(encoding, body, max_size=10_000)
    except (InternalServerError, ValidationException):
        pass


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=5000), encoding=st.sampled_from(["gzip", "deflate"]))
def test_roundtrip_with_encode_response(data, encoding):
    body, used = encode_response(data, encoding, threshold=1)
    if used is None:
        assert data == b"" and body == data
    else:
        assert used == encoding
        assert decode_body(used, body) == data


# --- response compression ---------------------------------------------------------

# Accept-Encoding cases with DynamoDB's observed answers (probed against
# DynamoDB by Alternator's test suite).
@pytest.mark.parametrize("accept,expected", [
    ("identity", None), ("", None), (None, None),
    ("br", None), ("zstd", None), ("compress", None), ("x-gzip", None),
    ("gzip, deflate", "gzip"),
    ("br, identity, deflate, gzip", "deflate"),
    ("GZIP, identity", "gzip"),
    ("dog, gzip ,, cat", "gzip"),
    ("gzip;q=0.8, deflate;q=0.5", "gzip"),
    ("br, gzip;q=0, deflate; q = 0.5 , identity;q=0", "deflate"),
    ("*", "gzip"),
    ("*, deflate;q=0.5", "gzip"),
    ("*, deflate", "deflate"),
    ("*, identity", "gzip"),
    ("*, gzip;q=0.5", "deflate"),
    ("gzip ;q=0", None),
    ("identity;q=0", None),
    ("*;q=0", None),
    ("*;q=0.5,identity", "gzip"),
    ("gzip;q=0.5,identity;q=0.8", "gzip"),
    ("br;q=0.8,identity;q=0.5,*;q=0", None),
    ('"gzip"', None),
    ("gzip br", None),
    ("gzip:q=1", None),
    ("deflate;q=0.5, gzip;q=31", "gzip"),
    ("gzip;q=31,deflate;q=51", "gzip"),
    ("deflate;q=0.5, gzip;q=0.2", "deflate"),
    ("deflate;q=0.5, gzip;q=1;q=0.2", "gzip"),
    ("deflate;q=0.5,gzip;q=0.", "deflate"),
    ("deflate;q=0.5,gzip;q=0.x", "gzip"),
    ("deflate;q=-0.5,gzip;q=0.2", "gzip"),
    ("gzip;nq=1;q=0 ", None),
    ("gzip;q=0, gzip;q=1, gzip;q=0", "gzip"),
    ("br,identity;q=0.5,gzip;q=0.0001", "gzip"),
])
def test_choose_encoding_matches_dynamodb(accept, expected):
    assert choose_encoding(accept) == expected


def test_threshold():
    small = b"x" * 4095
    assert encode_response(small, "gzip") == (small, None)
    body, used = encode_response(b"x" * 4096, "gzip")
    assert used == "gzip" and gzip.decompress(body) == b"x" * 4096
    body, used = encode_response(b"x" * 4096, "deflate")
    assert used == "deflate" and zlib.decompress(body) == b"x" * 4096
    assert encode_response(b"x" * 10000, "gzip", threshold=0) == (b"x" * 10000, None)
    assert encode_response(b"x" * 10000, None) == (b"x" * 10000, None)


# --- x-amz-crc32 ----------------------------------------------------------------

class _Raw:
    def __init__(self, data):
        self.data = data

    def stream(self):
        yield self.data


def _botocore_accepts(wire_body: bytes, header: str) -> bool:
    """Run botocore's own DynamoDB CRC32 retry checker on a response."""
    response = AWSResponse("http://127.0.0.1/", 200, {"x-amz-crc32": header}, _Raw(wire_body))
    checker = RetryDDBChecksumError()

    class ServiceModel:
        service_name = "dynamodb"

    class OperationModel:
        service_model = ServiceModel()

    class Ctx:
        http_response = response
        operation_model = OperationModel()

    return not checker.is_retryable(Ctx())


def test_crc32_known_values():
    assert crc32_header(b"") == "0"
    # CRC-32 (IEEE) check value of "123456789".
    assert crc32_header(b"123456789") == str(0xCBF43926)
    assert crc32_header(b"{}") == str(zlib.crc32(b"{}") & 0xFFFFFFFF)


def test_crc32_as_botocore_checks_it():
    body = b'{"Item": {"pk": {"S": "' + b"y" * 9000 + b'"}}}'
    assert _botocore_accepts(body, crc32_header(body))
    assert not _botocore_accepts(body + b" ", crc32_header(body))
    # Compressed response: botocore reads the raw (still compressed) bytes,
    # so the header is the CRC of what goes on the wire.
    wire, used = encode_response(body, "gzip")
    assert used == "gzip"
    assert _botocore_accepts(wire, crc32_header(wire))
    assert not _botocore_accepts(wire, crc32_header(body))


def test_crc32_legacy_checker_agrees():
    from botocore.retryhandler import CRC32Checker

    body = b'{"Count": 0}'
    response = AWSResponse("http://127.0.0.1/", 200, {"x-amz-crc32": crc32_header(body)},
                           _Raw(body))
    CRC32Checker("x-amz-crc32")._check_response(1, (response, {}))
    bad = AWSResponse("http://127.0.0.1/", 200, {"x-amz-crc32": "1"}, _Raw(body))
    with pytest.raises(ChecksumError):
        CRC32Checker("x-amz-crc32")._check_response(1, (bad, {}))


# --- TLS --------------------------------------------------------------------------

def test_tls_handshake_with_test_ca(tmp_path):
    certs = make_test_certificates(tmp_path)
    server_ctx = make_server_context(certs.server_cert, certs.server_key)
    client_ctx = ssl.create_default_context(cafile=certs.ca_cert)

    async def run():
        async def handle(reader, writer):
            data = await reader.readline()
            writer.write(b"echo " + data)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="127.0.0.1")
            writer.write(b"hello\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.readline(), 10)
            version = writer.get_extra_info("ssl_object").version()
            writer.close()
            return answer, version
        finally:
            server.close()
            await server.wait_closed()

    answer, version = asyncio.run(asyncio.wait_for(run(), 30))
    assert answer == b"echo hello\n"
    assert version in ("TLSv1.2", "TLSv1.3")


def test_tls_untrusted_client_refuses(tmp_path):
    certs = make_test_certificates(tmp_path)
    server_ctx = make_server_context(certs.server_cert, certs.server_key)
    client_ctx = ssl.create_default_context()  # system roots only: our CA is unknown

    async def run():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0,
                                            ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                              server_hostname="127.0.0.1")
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(run(), 30))


def test_tls_bad_files(tmp_path):
    certs = make_test_certificates(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        make_server_context(os.path.join(tmp_path, "missing.pem"), certs.server_key)
    (tmp_path / "other").mkdir()
    other = make_test_certificates(tmp_path / "other")
    with pytest.raises(ValueError, match="cannot load TLS certificate"):
        make_server_context(certs.server_cert, other.server_key)
