"""The HTTPS API port of a real server: boto3 and the AWS CLI trusting a test CA.

The server listens on both its plain port and --alternator-https-port with a
certificate signed by a throw-away CA (tests/tlsutil.py); both ports serve
the same shards and data.
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import warnings

import pytest
from botocore.exceptions import SSLError

from serverutil import ServerProcess, free_port, make_client
from tlsutil import make_test_certificates

TABLE = "https_items"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("https")
    certs = make_test_certificates(base)
    https_port = free_port()
    proc = ServerProcess(base / "data", smp=2, extra=[
        "--alternator-https-port", str(https_port), "--alternator-certificate", certs.server_cert,
        "--alternator-key", certs.server_key]).start()
    proc.https_endpoint = f"https://127.0.0.1:{https_port}"
    proc.https_port = https_port
    proc.certs = certs
    yield proc
    assert proc.stop() == 0, proc.log()


def test_boto3_with_the_test_ca(tls_server):
    client = make_client(tls_server.https_endpoint, verify=tls_server.certs.ca_cert)
    client.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    # Enough keys that both shards own some, over several TLS connections.
    for i in range(40):
        client.put_item(TableName=TABLE, Item={"pk": {"S": f"k{i}"}, "n": {"N": str(i)}})
    for i in range(40):
        assert client.get_item(TableName=TABLE, Key={"pk": {"S": f"k{i}"}})["Item"]["n"] == {"N": str(i)}
    # The plain port serves the same data.
    plain = make_client(tls_server.endpoint)
    assert plain.get_item(TableName=TABLE, Key={"pk": {"S": "k7"}})["Item"]["n"] == {"N": "7"}


def test_untrusted_certificate_is_refused_by_the_client(tls_server):
    client = make_client(tls_server.https_endpoint, retries=1)   # system CAs only
    with pytest.raises(SSLError):
        client.list_tables()


def test_tls_handshake_details(tls_server):
    context = ssl.create_default_context(cafile=tls_server.certs.ca_cert)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", tls_server.https_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert tls.selected_alpn_protocol() == "http/1.1"
            tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b"healthy" in data
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(tls_server.certs.ca_cert)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # old on purpose
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            old.minimum_version = ssl.TLSVersion.TLSv1
        except ValueError:
            pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", tls_server.https_port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError):
            old.wrap_socket(raw, server_hostname="127.0.0.1")


def test_garbage_on_the_tls_port_does_not_hurt(tls_server):
    with socket.create_connection(("127.0.0.1", tls_server.https_port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        try:
            sock.recv(100)
        except (ConnectionResetError, socket.timeout):
            pass
    client = make_client(tls_server.https_endpoint, verify=tls_server.certs.ca_cert)
    assert TABLE in client.list_tables()["TableNames"]
    assert tls_server.proc.poll() is None and len(tls_server.shard_pids()) == 2


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_aws_cli_over_https(tls_server, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="cli", AWS_SECRET_ACCESS_KEY="cli-secret", AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_PAGER="")
    common = ["--endpoint-url", tls_server.https_endpoint, "--ca-bundle", tls_server.certs.ca_cert,
              "--output", "json"]

    def aws(*args):
        done = subprocess.run(["aws", "dynamodb", *args, *common], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else {}

    assert TABLE in aws("list-tables")["TableNames"]
    aws("put-item", "--table-name", TABLE, "--item", '{"pk": {"S": "from-cli"}, "n": {"N": "42"}}')
    got = aws("get-item", "--table-name", TABLE, "--key", '{"pk": {"S": "from-cli"}}')
    assert got["Item"]["n"] == {"N": "42"}
    # Without the CA the CLI must refuse the certificate.
    done = subprocess.run(["aws", "dynamodb", "list-tables", "--endpoint-url", tls_server.https_endpoint,
                           "--cli-read-timeout", "5", "--cli-connect-timeout", "5"],
                          env={**env, "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "SSL" in done.stderr
