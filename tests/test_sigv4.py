"""SigV4 verification against botocore's own signer, and what it refuses."""

import re
import time
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardserver.errors import (
    DynamoDBError,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)
from shardserver.protocol import sigv4

CREDS = {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "OTHERKEY": "other-secret"}
BODY = b'{"TableName": "t", "Key": {"pk": {"S": "a"}}}'


def sign(body=BODY, key="AKIDEXAMPLE", secret=None, region="us-east-1", service="dynamodb",
         url="http://127.0.0.1:8000/", extra_headers=None):
    """A request signed by botocore, as (method, path, query, headers list, body)."""
    secret = secret if secret is not None else CREDS.get(key, "whatever")
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.GetItem",
    }
    headers.update(extra_headers or {})
    req = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(Credentials(key, secret), service, region).add_auth(req)
    parts = urlsplit(url)
    # What an HTTP client puts on the wire: urllib3 adds Host from the URL.
    wire = [(k.encode(), v.encode() if isinstance(v, str) else v) for k, v in req.headers.items()]
    if not any(k.lower() == b"host" for k, _ in wire):
        wire.append((b"Host", parts.netloc.encode()))
    return "POST", parts.path or "/", parts.query, wire, body


def header(wire, name):
    for k, v in wire:
        if k.lower() == name.lower().encode():
            return v.decode()
    raise KeyError(name)


def replace_header(wire, name, value):
    out = [(k, v) for k, v in wire if k.lower() != name.lower().encode()]
    if value is not None:
        out.append((name.encode(), value.encode() if isinstance(value, str) else value))
    return out


def test_botocore_signature_accepted():
    m, p, q, h, b = sign()
    assert sigv4.verify(m, p, q, h, b, CREDS) == "AKIDEXAMPLE"


def test_second_key_and_dict_headers():
    m, p, q, h, b = sign(key="OTHERKEY")
    as_dict = {k.decode(): v.decode() for k, v in h}
    assert sigv4.verify(m, p, q, as_dict, b, CREDS) == "OTHERKEY"


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-3", "local"])
def test_any_region_accepted(region):
    m, p, q, h, b = sign(region=region)
    assert sigv4.verify(m, p, q, h, b, CREDS) == "AKIDEXAMPLE"


def test_query_and_path_canonicalization():
    url = "http://127.0.0.1:8000/a/./b/../c%20d/?z=1&a=%2F&a=0&empty="
    m, p, q, h, b = sign(url=url)
    assert sigv4.verify(m, p, q, h, b, CREDS) == "AKIDEXAMPLE"


def test_empty_body_and_header_whitespace():
    m, p, q, h, b = sign(body=b"", extra_headers={"X-Custom": "  a   b  "})
    assert sigv4.verify(m, p, q, h, b, CREDS) == "AKIDEXAMPLE"


def test_security_token_header_is_signed_and_accepted():
    m, p, q, h, b = sign(extra_headers={"X-Amz-Security-Token": "session-token"})
    assert sigv4.verify(m, p, q, h, b, CREDS) == "AKIDEXAMPLE"


def test_tampered_body_refused():
    m, p, q, h, b = sign()
    with pytest.raises(InvalidSignatureException) as e:
        sigv4.verify(m, p, q, h, b.replace(b'"a"', b'"b"'), CREDS)
    assert e.value.message == sigv4.MSG_BAD_SIGNATURE


def test_content_sha256_header_is_not_trusted():
    # A client-declared payload hash must not replace hashing the body.
    m, p, q, h, b = sign(extra_headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    with pytest.raises(InvalidSignatureException):
        sigv4.verify(m, p, q, h, b, CREDS)


def test_tampered_signed_header_refused():
    m, p, q, h, b = sign()
    h = replace_header(h, "X-Amz-Target", "DynamoDB_20120810.DeleteItem")
    with pytest.raises(InvalidSignatureException):
        sigv4.verify(m, p, q, h, b, CREDS)


def test_tampered_method_path_query_refused():
    m, p, q, h, b = sign()
    for args in (("GET", p, q), (m, "/other", q), (m, p, "x=1")):
        with pytest.raises(InvalidSignatureException):
            sigv4.verify(*args, h, b, CREDS)


def test_wrong_secret_refused():
    m, p, q, h, b = sign(secret="not-the-secret")
    with pytest.raises(InvalidSignatureException) as e:
        sigv4.verify(m, p, q, h, b, CREDS)
    assert "does not match the signature you provided" in e.value.message


def test_unknown_key_refused():
    m, p, q, h, b = sign(key="NOSUCHKEY", secret="x")
    with pytest.raises(UnrecognizedClientException) as e:
        sigv4.verify(m, p, q, h, b, CREDS)
    assert e.value.message == "The security token included in the request is invalid."


def test_missing_authorization():
    m, p, q, h, b = sign()
    h = replace_header(h, "Authorization", None)
    with pytest.raises(MissingAuthenticationTokenException) as e:
        sigv4.verify(m, p, q, h, b, CREDS)
    assert e.value.message == "Request is missing Authentication Token"


def test_missing_date_header():
    m, p, q, h, b = sign()
    h = replace_header(h, "X-Amz-Date", None)
    with pytest.raises(InvalidSignatureException) as e:
        sigv4.verify(m, p, q, h, b, CREDS)
    assert "requires existence of either a 'X-Amz-Date' or a 'Date' header" in e.value.message


def test_malformed_date_header():
    m, p, q, h, b = sign()
    h = replace_header(h, "X-Amz-Date", "2024-01-01T00:00:00Z")
    with pytest.raises(InvalidSignatureException) as e:
        sigv4.verify(m, p, q, h, b, CREDS)
    assert "Date must be in ISO-8601 'basic format'" in e.value.message


def test_wrong_service_refused():
    m, p, q, h, b = sign(service="s3")
    with pytest.raises(InvalidSignatureException) as e:
        sigv4.verify(m, p, q, h, b, CREDS)
    assert e.value.message == "Credential should be scoped to correct service: 'dynamodb'. "


def test_scope_date_must_match_request_date():
    m, p, q, h, b = sign()
    auth = header(h, "Authorization")
    date = header(h, "X-Amz-Date")[:8]
    other = "19990101" if date != "19990101" else "19990102"
    h = replace_header(h, "Authorization", auth.replace(f"/{date}/", f"/{other}/"))
    with pytest.raises(InvalidSignatureException) as e:
        sigv4.verify(m, p, q, h, b, CREDS)
    assert e.value.message.startswith("Date in Credential scope does not match")


def test_skew_past_and_future():
    m, p, q, h, b = sign()
    now = time.time()
    # Inside the window both ways.
    assert sigv4.verify(m, p, q, h, b, CREDS, now=now + 14 * 60)
    assert sigv4.verify(m, p, q, h, b, CREDS, now=now - 14 * 60)
    with pytest.raises(InvalidSignatureException) as e:
        sigv4.verify(m, p, q, h, b, CREDS, now=now + 16 * 60)
    assert e.value.message.startswith("Signature expired: ")
    assert e.value.message.endswith(" - 15 min.)")
    with pytest.raises(InvalidSignatureException) as e:
        sigv4.verify(m, p, q, h, b, CREDS, now=now - 16 * 60)
    assert e.value.message.startswith("Signature not yet current: ")
    with pytest.raises(InvalidSignatureException):
        sigv4.verify(m, p, q, h, b, CREDS, now=now + 61, max_skew_s=60)


@pytest.mark.parametrize("separator", [",", " ", " , "])
def test_components_separated_by_commas_or_spaces(separator):
    m, p, q, h, b = sign()
    auth = header(h, "Authorization")
    algorithm, _, rest = auth.partition(" ")
    parts = [part.strip() for part in rest.split(",")]
    h = replace_header(h, "Authorization", algorithm + " " + separator.join(parts))
    assert sigv4.verify(m, p, q, h, b, CREDS) == "AKIDEXAMPLE"


def test_the_clock_is_checked_before_scope_and_signature():
    """A stale request with a bogus scope and signature says it expired, as AWS does."""
    bogus = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2/3/4/aws4_request SignedHeaders=x-amz-date;host Signature=123"
    for date, start in (("20170101T010101Z", "Signature expired: "),
                        ("30200101T010101Z", "Signature not yet current: ")):
        h = [(b"Host", b"127.0.0.1:8000"), (b"X-Amz-Date", date.encode()), (b"Authorization", bogus.encode())]
        with pytest.raises(InvalidSignatureException) as e:
            sigv4.verify("POST", "/", "", h, b"{}", CREDS)
        assert e.value.message.startswith(start + date)


def test_host_must_be_signed():
    m, p, q, h, b = sign()
    auth = header(h, "Authorization").replace("host;", "")
    h = replace_header(h, "Authorization", auth)
    with pytest.raises(InvalidSignatureException) as e:
        sigv4.verify(m, p, q, h, b, CREDS)
    assert "'Host'" in e.value.message


def test_incomplete_authorization_header():
    m, p, q, h, b = sign()
    h = replace_header(h, "Authorization", "Basic dXNlcjpwYXNz")
    with pytest.raises(InvalidSignatureException) as e:
        sigv4.verify(m, p, q, h, b, CREDS)
    assert "Authorization header requires 'Credential' parameter." in e.value.message
    assert e.value.message.endswith("Authorization=Basic dXNlcjpwYXNz")


@pytest.mark.parametrize("edit", [",,Signature=", ",, Signature=", ", bare, Signature="])
def test_parts_without_an_equal_sign_are_refused(edit):
    """A comma where a space was (found by the fuzz test below) must not verify."""
    m, p, q, h, b = sign()
    auth = header(h, "Authorization")
    assert ", Signature=" in auth
    h = replace_header(h, "Authorization", auth.replace(", Signature=", edit))
    with pytest.raises(InvalidSignatureException) as e:
        sigv4.verify(m, p, q, h, b, CREDS)
    assert "not a valid key=value pair (missing equal-sign) in Authorization header" in e.value.message


def test_unsupported_algorithm():
    m, p, q, h, b = sign()
    auth = header(h, "Authorization").replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512")
    h = replace_header(h, "Authorization", auth)
    with pytest.raises(InvalidSignatureException) as e:
        sigv4.verify(m, p, q, h, b, CREDS)
    assert e.value.message == "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512'"


def test_secret_never_in_messages():
    secret = CREDS["AKIDEXAMPLE"]
    cases = [sign(secret="bad"), sign(service="sts"), sign(key="NOSUCHKEY")]
    for m, p, q, h, b in cases:
        with pytest.raises(DynamoDBError) as e:
            sigv4.verify(m, p, q, h, b, CREDS, now=time.time() + 3600)
        assert secret not in e.value.message


def test_signing_key_cache_is_bounded_and_keyed_by_secret():
    sigv4._SIGNING_KEYS.clear()
    k1 = sigv4._signing_key("s1", "20240101", "r")
    k2 = sigv4._signing_key("s2", "20240101", "r")
    assert k1 != k2
    assert sigv4._signing_key("s1", "20240101", "r") is k1
    for i in range(sigv4._SIGNING_KEYS_MAX + 10):
        sigv4._signing_key("s", "20240101", f"region{i}")
    assert len(sigv4._SIGNING_KEYS) <= sigv4._SIGNING_KEYS_MAX


def test_load_credentials(tmp_path):
    f = tmp_path / "creds"
    f.write_text("# comment\n\nAKID1 secret1\n  AKID2\tsecret/2+x   # trailing note\n")
    assert sigv4.load_credentials(f) == {"AKID1": "secret1", "AKID2": "secret/2+x"}


@pytest.mark.parametrize("text", ["AKID\n", "AKID a b\n", "A s\nA t\n"])
def test_load_credentials_rejects_malformed_without_leaking(tmp_path, text):
    f = tmp_path / "creds"
    f.write_text(text)
    with pytest.raises(ValueError) as e:
        sigv4.load_credentials(f)
    assert "creds:" in str(e.value)
    assert " b" not in str(e.value) and "secret" not in str(e.value)


# --- fuzz: whatever the Authorization header says, only DynamoDB errors come out

_VALID = sign()

_auth_pieces = st.sampled_from([
    "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 ", "Credential=", "AKIDEXAMPLE", "/", "20240101",
    "us-east-1", "dynamodb", "aws4_request", ", ", ",", "SignedHeaders=", "host", ";",
    "x-amz-date", "Signature=", "0" * 64, "=", " ", "\t", "\x00", "\xff", "é", "Credential",
])
_auth_values = st.one_of(
    st.text(max_size=300),
    st.lists(_auth_pieces, max_size=30).map("".join),
    st.binary(max_size=200),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(auth=_auth_values, date=st.one_of(st.none(), st.text(max_size=20),
                                        st.just(header(_VALID[3], "X-Amz-Date"))))
def test_fuzz_authorization_header(auth, date):
    m, p, q, h, b = _VALID
    h = replace_header(h, "Authorization", auth)
    if date is not None:
        h = replace_header(h, "X-Amz-Date", date)
    with pytest.raises(DynamoDBError):
        sigv4.verify(m, p, q, h, b, CREDS)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_fuzz_mutated_valid_header(data):
    """Single-character edits of a valid header never pass and never crash."""
    m, p, q, h, b = _VALID
    auth = header(h, "Authorization")
    i = data.draw(st.integers(0, len(auth) - 1))
    c = data.draw(st.characters(codec="latin-1"))
    mutated = auth[:i] + c + auth[i + 1:]
    h2 = replace_header(h, "Authorization", mutated.encode("latin-1"))
    try:
        sigv4.verify(m, p, q, h2, b, CREDS)
    except DynamoDBError:
        return
    # Only edits that do not change meaning may pass: case of hex digits,
    # one kind of whitespace for another, or for the comma, between components.
    assert re.sub(r"[\s,]", "", mutated.lower()) == re.sub(r"[\s,]", "", auth.lower())


# --- end to end: a real boto3 client on the wire -------------------------------------

def test_real_boto3_request_verifies():
    """boto3 sends to a 127.0.0.1 socket that captures the raw request bytes;
    those bytes, parsed as the server would, must verify."""
    import socket
    import threading

    import boto3
    from botocore.config import Config

    from shardserver.protocol.compression import crc32_header

    captured = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(20)
    port = listener.getsockname()[1]

    def serve_one():
        conn, _ = listener.accept()
        conn.settimeout(20)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = [tuple(x.strip() for x in line.split(b":", 1)) for line in lines[1:]]
        length = int(next(v for k, v in headers if k.lower() == b"content-length"))
        while len(body) < length:
            body += conn.recv(65536)
        captured.append((lines[0], headers, body))
        answer = b'{"TableNames": []}'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
                     b"x-amz-crc32: " + crc32_header(answer).encode() +
                     b"\r\nContent-Length: " + str(len(answer)).encode() +
                     b"\r\nConnection: close\r\n\r\n" + answer)
        conn.close()

    t = threading.Thread(target=serve_one, daemon=True)
    t.start()
    client = boto3.client(
        "dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="eu-north-1",
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key=CREDS["AKIDEXAMPLE"],
        config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=10))
    try:
        assert client.list_tables(Limit=5)["TableNames"] == []
    finally:
        t.join(20)
        listener.close()
        client.close()
    request_line, headers, body = captured[0]
    method, target, _ = request_line.decode().split(" ")
    path, _, query = target.partition("?")
    assert sigv4.verify(method, path, query, headers, body, CREDS) == "AKIDEXAMPLE"
    with pytest.raises(InvalidSignatureException):
        sigv4.verify(method, path, query, headers, body + b" ", CREDS)
