"""SigV4 authorization on a real server, with boto3 and hand-made requests.

The server runs with --alternator-enforce-authorization and a credentials
file; every refusal must be the error DynamoDB sends, GET / must stay open,
SIGHUP to the supervisor must re-read the file, and no secret may ever reach
the server's log (which runs at debug level here to make that strict).
"""

import datetime
import gzip
import http.client
import os
import random
import signal
import socket
import time
import urllib.request

import botocore.auth
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from serverutil import ServerProcess, make_client

KEY, SECRET = "AKIDSHARDTEST01", "s3cr3t-Shard/Server+Value-0001"
KEY2, SECRET2 = "AKIDSHARDTEST02", "an0ther-s3cr3t-f0r-the-sec0nd-key"
NEW_KEY, NEW_SECRET = "AKIDADDEDLATER", "added-after-sighup-s3cr3t-value"
BAD_LINE_SECRET = "this-s3cr3t-sits-on-a-malformed-line"
SECRETS = (SECRET, SECRET2, NEW_SECRET, BAD_LINE_SECRET)
TABLE = "auth_items"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("auth")
    credentials = base / "credentials"
    credentials.write_text(f"# test keys\n{KEY} {SECRET}\n\n{KEY2} {SECRET2}  # second\n")
    proc = ServerProcess(base / "data", smp=2, extra=[
        "--alternator-enforce-authorization", "--alternator-credentials-file", str(credentials),
        "--log-level", "debug"]).start()
    proc.credentials = credentials
    client = make_client(proc.endpoint, key=KEY, secret=SECRET)
    client.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    yield proc
    assert proc.stop() == 0, proc.log()
    log = proc.log()
    for secret in SECRETS:
        assert secret not in log


def client_for(server, key, secret):
    return make_client(server.endpoint, key=key, secret=secret, retries=1)


def error_of(call):
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"], \
        info.value.response["ResponseMetadata"]["HTTPStatusCode"]


def signed(server, body: bytes, target="ListTables", key=KEY, secret=SECRET, headers=None):
    """A request signed by botocore's own SigV4 signer: (headers, body)."""
    request = AWSRequest(method="POST", url=server.endpoint + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": f"DynamoDB_20120810.{target}", **(headers or {})})
    SigV4Auth(Credentials(key, secret), "dynamodb", "us-east-1").add_auth(request)
    return dict(request.headers.items()), body


def send(server, headers, body, conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        r = conn.getresponse()
        return r.status, orjson.loads(r.read())
    finally:
        if own:
            conn.close()


def wire_type(payload):
    return payload["__type"].rsplit("#", 1)[-1]


def test_right_credentials_work(auth_server):
    for key, secret in ((KEY, SECRET), (KEY2, SECRET2)):
        client = client_for(auth_server, key, secret)
        client.put_item(TableName=TABLE, Item={"pk": {"S": key}, "v": {"N": "1"}})
        assert client.get_item(TableName=TABLE, Key={"pk": {"S": key}})["Item"]["v"] == {"N": "1"}
        assert TABLE in client.list_tables()["TableNames"]


def test_wrong_secret_is_invalid_signature(auth_server):
    code, message, status = error_of(lambda: client_for(auth_server, KEY, "not-the-secret").list_tables())
    assert (code, status) == ("InvalidSignatureException", 400)
    assert message.startswith("The request signature we calculated does not match the signature you provided.")
    # Each key signs with its own secret only.
    code, _, _ = error_of(lambda: client_for(auth_server, KEY2, SECRET).list_tables())
    assert code == "InvalidSignatureException"


def test_unknown_key_is_unrecognized_client(auth_server):
    code, message, status = error_of(lambda: client_for(auth_server, "AKIDNOBODY", SECRET).list_tables())
    assert (code, message, status) == ("UnrecognizedClientException",
                                       "The security token included in the request is invalid.", 400)


def test_unsigned_request_is_missing_token(auth_server):
    status, payload = send(auth_server, {"X-Amz-Target": "DynamoDB_20120810.ListTables",
                                         "Content-Type": "application/x-amz-json-1.0"}, b"{}")
    assert status == 400
    assert wire_type(payload) == "MissingAuthenticationTokenException"
    assert payload["message"] == "Request is missing Authentication Token"


@pytest.mark.parametrize("minutes,words", [(-20, "Signature expired"), (20, "Signature not yet current")])
def test_skewed_clock_is_refused(auth_server, monkeypatch, minutes, words):
    """A signature from 20 minutes ago (a replay) or ahead is refused; 15 is the limit."""
    skewed = datetime.datetime.utcnow() + datetime.timedelta(minutes=minutes)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: skewed)
    code, message, _ = error_of(lambda: client_for(auth_server, KEY, SECRET).list_tables())
    assert code == "InvalidSignatureException"
    assert message.startswith(words) and "15 min." in message


def test_small_skew_is_accepted(auth_server, monkeypatch):
    skewed = datetime.datetime.utcnow() - datetime.timedelta(minutes=10)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: skewed)
    assert "TableNames" in client_for(auth_server, KEY, SECRET).list_tables()


def test_replay_within_the_skew_window_is_accepted_like_aws(auth_server):
    headers, body = signed(auth_server, b"{}")
    assert send(auth_server, headers, body)[0] == 200
    assert send(auth_server, headers, body)[0] == 200   # SigV4 has no nonce, only the clock


def test_tampered_body_and_headers_are_refused(auth_server):
    body = orjson.dumps({"TableName": TABLE, "Item": {"pk": {"S": "tamper"}, "v": {"N": "1"}}})
    headers, body = signed(auth_server, body, target="PutItem")
    assert send(auth_server, headers, body)[0] == 200
    tampered = body.replace(b'"N":"1"', b'"N":"9"')
    status, payload = send(auth_server, headers, tampered)
    assert (status, wire_type(payload)) == (400, "InvalidSignatureException")
    # The client's own body hash claim must not be trusted either.
    import hashlib
    status, payload = send(auth_server, {**headers, "X-Amz-Content-SHA256": hashlib.sha256(tampered).hexdigest()},
                           tampered)
    assert wire_type(payload) == "InvalidSignatureException"
    # Signed header changed after signing: another operation with the same signature.
    status, payload = send(auth_server, {**headers, "X-Amz-Target": "DynamoDB_20120810.DeleteItem"}, body)
    assert wire_type(payload) == "InvalidSignatureException"
    client = client_for(auth_server, KEY, SECRET)
    assert client.get_item(TableName=TABLE, Key={"pk": {"S": "tamper"}})["Item"]["v"] == {"N": "1"}


def test_signature_covers_the_compressed_body(auth_server):
    """The client signs the bytes it sends: gzip first, then sign."""
    raw = orjson.dumps({"TableName": TABLE, "Item": {"pk": {"S": "gz"}, "v": {"S": "y" * 3000}}})
    headers, body = signed(auth_server, gzip.compress(raw), target="PutItem",
                           headers={"Content-Encoding": "gzip"})
    assert send(auth_server, headers, body) == (200, {})
    item = client_for(auth_server, KEY, SECRET).get_item(TableName=TABLE, Key={"pk": {"S": "gz"}})["Item"]
    assert item["v"]["S"] == "y" * 3000


def test_health_stays_open(auth_server):
    with urllib.request.urlopen(auth_server.endpoint + "/", timeout=5) as r:
        assert r.status == 200 and r.read().startswith(b"healthy")
    # HEAD answers without a body, so the keep-alive connection stays in step.
    with socket.create_connection(("127.0.0.1", auth_server.port), timeout=5) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200")
    assert rest.startswith(b"HTTP/1.1 200 OK"), data
    assert rest.endswith(b"healthy: 127.0.0.1:%d" % auth_server.port)


def test_fuzzed_authorization_headers_never_crash(auth_server):
    rng = random.Random(6)
    good, _ = signed(auth_server, b"{}")
    auth = good["Authorization"]
    pieces = ["AWS4-HMAC-SHA256", "Credential=", "SignedHeaders=", "Signature=", ",", " ", "/", ";",
              "=", KEY, "us-east-1", "dynamodb", "aws4_request", "20200101", "host", "x-amz-date",
              "\t", "\u00ff", "0" * 64, "%", "AWS4-", "\\", '"']
    allowed = {"InvalidSignatureException", "UnrecognizedClientException",
               "MissingAuthenticationTokenException"}
    conn = http.client.HTTPConnection("127.0.0.1", auth_server.port, timeout=10)
    for i in range(300):
        kind = i % 3
        if kind == 0:
            value = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 20)))
        elif kind == 1:
            chars = list(auth)
            for _ in range(rng.randint(1, 6)):
                # Visible ASCII and obs-text: DEL and controls are HTTP framing errors instead.
                chars[rng.randrange(len(chars))] = chr(rng.choice((rng.randint(32, 126), rng.randint(128, 255))))
            value = "".join(chars)
        else:
            value = auth[:rng.randrange(len(auth))]
        headers = {**good, "Authorization": value}
        if rng.random() < 0.2:
            headers["X-Amz-Date"] = rng.choice(["", "2020", "99999999T999999Z", "20200101T000000Z"])
        status, payload = send(auth_server, headers, b"{}", conn)
        assert status == 400 and wire_type(payload) in allowed, (value, payload)
    conn.close()
    assert "TableNames" in client_for(auth_server, KEY, SECRET).list_tables()


def test_refusals_are_counted_in_metrics(auth_server):
    error_of(lambda: client_for(auth_server, "AKIDNOBODY", SECRET).list_tables())
    url = f"http://127.0.0.1:{auth_server.prometheus_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    counts = {}
    for family in text_string_to_metric_families(text):
        if family.name == "shardserver_alternator_errors":
            for s in family.samples:
                counts[s.labels["type"]] = counts.get(s.labels["type"], 0) + s.value
    assert counts.get("UnrecognizedClientException", 0) >= 1
    assert counts.get("InvalidSignatureException", 0) >= 1
    assert counts.get("MissingAuthenticationTokenException", 0) >= 1


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def key_works(server, key, secret) -> bool:
    # A fresh client per try: connections land on either shard, and each shard
    # re-reads the file on its own SIGHUP.
    try:
        for _ in range(4):
            client_for(server, key, secret).list_tables()
        return True
    except ClientError:
        return False


def refused(server, key, secret) -> bool:
    """Whether a request signed with this key is refused as an unknown key."""
    try:
        client_for(server, key, secret).list_tables()
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "UnrecognizedClientException"
    return False


def test_sighup_rereads_the_credentials_file(auth_server):
    path = auth_server.credentials
    original = path.read_text()
    assert not key_works(auth_server, NEW_KEY, NEW_SECRET)
    try:
        path.write_text(original + f"{NEW_KEY} {NEW_SECRET}\n")
        os.kill(auth_server.proc.pid, signal.SIGHUP)
        assert wait_for(lambda: key_works(auth_server, NEW_KEY, NEW_SECRET)), auth_server.log()

        # A malformed file is refused as a whole: the previous keys stay, and
        # the log names the line, never its content.
        path.write_text(original + f"{NEW_KEY} {NEW_SECRET}\nAKIDBROKEN {BAD_LINE_SECRET} extra\n")
        os.kill(auth_server.proc.pid, signal.SIGHUP)
        assert wait_for(lambda: auth_server.log().count("keeping the previous credentials") >= 2)
        assert key_works(auth_server, NEW_KEY, NEW_SECRET)

        # Removing a key revokes it.
        path.write_text(original)
        os.kill(auth_server.proc.pid, signal.SIGHUP)
        # Until both shards have re-read the file a connection may land on one that has not:
        # poll without failing on the first answer that still succeeds.
        assert wait_for(lambda: refused(auth_server, NEW_KEY, NEW_SECRET) and
                        not key_works(auth_server, NEW_KEY, NEW_SECRET))
        assert key_works(auth_server, KEY, SECRET)
    finally:
        path.write_text(original)
    assert auth_server.shard_pids() and len(auth_server.shard_pids()) == 2, "SIGHUP must not stop shards"


def test_no_secret_in_the_log(auth_server):
    log = auth_server.log()
    assert "shard 0:" in log and "shard 1:" in log
    for secret in SECRETS:
        assert secret not in log
