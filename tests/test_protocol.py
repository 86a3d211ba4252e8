"""The wire protocol over raw sockets: framing, envelopes, errors, health endpoints."""

import json
import socket
import time
import zlib
from email.utils import parsedate_to_datetime

import pytest

from shardserver.protocol.http import HttpError, RequestParser, build_response, ok_response


def raw(server, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def post(target: str, body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.0\r\n"
            b"X-Amz-Target: " + target.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
            b"\r\n" + extra + b"\r\n" + body)


def split_responses(data: bytes) -> list[tuple[int, dict, bytes]]:
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.decode().partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        out.append((status, headers, rest[:length]))
        data = rest[length:]
    return out


def test_health_and_localnodes(server):
    (status, _, body), = split_responses(raw(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert status == 200 and body == f"healthy: 127.0.0.1:{server.port}".encode()
    (status, _, body), = split_responses(raw(server, b"GET /localnodes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert status == 200 and json.loads(body) == ["127.0.0.1"]


def test_malformed_json_is_serialization_exception(server):
    (status, headers, body), = split_responses(raw(server, post("DynamoDB_20120810.ListTables", b"{not json")))
    assert status == 400
    assert json.loads(body)["__type"].endswith("#SerializationException")
    assert headers["x-amz-crc32"] == str(zlib.crc32(body))


def test_unknown_operation(server):
    (status, _, body), = split_responses(raw(server, post("DynamoDB_20120810.NoSuchThing", b"{}")))
    assert status == 400 and json.loads(body)["__type"].endswith("#UnknownOperationException")
    (status, _, body), = split_responses(raw(server, post("Bogus.Target", b"{}")))
    assert status == 400 and json.loads(body)["__type"].endswith("#UnknownOperationException")


@pytest.mark.parametrize("body", [
    b'{"TableName": 5, "Key": {}}', b'{"TableName": "x", "Key": []}', b'[]', b'"str"', b'{"TableName": null}',
    b'{"TableName": "abc", "Key": {"id": {"S": 5}}}', b'{"TableName": "abc", "Item": {"a": {"Q": "x"}}}',
])
def test_wrong_types_get_validation_errors(server, body):
    for op in ("GetItem", "PutItem", "DeleteItem"):
        (status, _, reply), = split_responses(raw(server, post("DynamoDB_20120810." + op, body)))
        assert status == 400, reply
        assert json.loads(reply)["__type"].rsplit("#", 1)[1] in (
            "ValidationException", "SerializationException", "ResourceNotFoundException")


def test_keep_alive_and_pipelining(server):
    one = post("DynamoDB_20120810.ListTables", b"{}")
    data = raw(server, one * 5 + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    responses = split_responses(data)
    assert [r[0] for r in responses] == [200] * 6
    assert all("TableNames" in json.loads(r[2]) for r in responses[:5])
    assert responses[5][2].startswith(b"healthy")


def test_truncated_and_garbage_http(server):
    assert raw(server, b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"a\"") == b""
    reply = raw(server, b"\x00\x01\x02garbage\r\n\r\n")
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400")
    # the server still answers afterwards
    assert split_responses(raw(server, post("DynamoDB_20120810.ListTables", b"{}")))[0][0] == 200


def test_huge_content_length_refused(server):
    reply = raw(server, b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n"
                        b"Content-Length: 99999999999\r\n\r\n{}")
    assert reply.startswith(b"HTTP/1.1 413")


def test_parser_is_sans_io():
    parser = RequestParser()
    wire = post("DynamoDB_20120810.GetItem", b'{"a":1}')
    requests = []
    for i in range(len(wire)):
        requests += parser.feed(wire[i:i + 1])
    assert len(requests) == 1
    assert requests[0].headers["x-amz-target"] == "DynamoDB_20120810.GetItem"
    assert requests[0].body == b'{"a":1}'
    with pytest.raises(HttpError):
        RequestParser().feed(b"NOT HTTP AT ALL\r\n\r\n")


def test_build_response_crc():
    response = build_response(200, b'{"x":1}', request_id=b"abc")
    assert b"x-amz-crc32: " + str(zlib.crc32(b'{"x":1}')).encode() in response
    assert response.endswith(b'\r\n\r\n{"x":1}')


@pytest.mark.parametrize("body", [b"", b'{"x":1}', b'{"Item":{"a":{"S":"' + b"v" * 5000 + b'"}}}'])
def test_ok_response_is_build_response(body):
    for _ in range(3):      # a second may turn between the two: then try again
        fast, general = ok_response(body, b"00AB12"), build_response(200, body, request_id=b"00AB12")
        if fast == general:
            return
    assert fast == general


def test_responses_carry_date_and_server_headers(server):
    # DynamoDB sends both on every answer, errors included.
    for target in ("ListTables", "NoSuchThing"):
        (_, headers, _), = split_responses(raw(server, post("DynamoDB_20120810." + target, b"{}")))
        assert headers["server"] == "Server"
        assert abs(parsedate_to_datetime(headers["date"]).timestamp() - time.time()) < 60


def test_expect_100_continue(server):
    body = b'{}'
    head = (b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n"
            b"Expect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(head)
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 OK") and b"TableNames" in reply


def test_pipelined_answers_keep_their_order_across_shards(server, ddb, hash_table):
    # Answers are written out once per loop iteration; forwarded requests (keys owned
    # by the other shard) suspend. Whatever the mix, each connection's answers leave
    # in request order, and a closing request's answer is written before the close.
    for i in range(20):
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": f"k{i}"}, "n": {"N": str(i)}})
    gets = [post("DynamoDB_20120810.GetItem",
                 json.dumps({"TableName": hash_table, "Key": {"pk": {"S": f"k{i}"}}}).encode())
            for i in range(20)]
    data = b"".join(gets) + post("DynamoDB_20120810.ListTables", b"{}") + \
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    for _ in range(3):
        responses = split_responses(raw(server, data))
        assert [r[0] for r in responses] == [200] * 22
        assert [json.loads(r[2])["Item"]["n"]["N"] for r in responses[:20]] == [str(i) for i in range(20)]
        assert "TableNames" in json.loads(responses[20][2]) and responses[21][2].startswith(b"healthy")


def test_answers_made_before_a_framing_error_or_a_continue_are_sent_first(server):
    one = post("DynamoDB_20120810.ListTables", b"{}")
    responses = split_responses(raw(server, one * 3 + b"\x00garbage\r\n\r\n"))
    assert [r[0] for r in responses] == [200, 200, 200, 400]
    head = (b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n"
            b"Expect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(one * 2 + head)
        reply = b""
        while reply.count(b"HTTP/1.1 ") < 3:
            reply += s.recv(65536)
        first, continue_at = reply.index(b"HTTP/1.1 200"), reply.index(b"HTTP/1.1 100 Continue")
        assert first < continue_at and reply.count(b"HTTP/1.1 200") == 2
        s.sendall(b"{}")
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.count(b"TableNames") == 3


CORS_HEADERS = ("access-control-allow-origin", "access-control-expose-headers", "access-control-max-age",
                "access-control-allow-methods", "access-control-allow-headers")


def test_no_cors_headers_without_an_origin(server):
    requests = [b"OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                post("DynamoDB_20120810.ListTables", b"{}")]
    for status, headers, _ in split_responses(raw(server, b"".join(requests))):
        assert status == 200
        assert not any(name in headers for name in CORS_HEADERS)


def test_cors_for_browsers(server):
    """A page's script may call the server from any origin, as it may call DynamoDB."""
    origin = b"Origin: http://example.com\r\n"
    asked = b"Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type, x-amz-date\r\n"
    requests = [b"OPTIONS / HTTP/1.1\r\nHost: x\r\n" + origin + asked + b"\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\n" + origin + asked + b"\r\n",
                post("DynamoDB_20120810.ListTables", b"{}", origin),
                post("DynamoDB_20120810.DescribeTable", b'{"TableName": "nope"}', origin)]
    preflight, get, ok, error = split_responses(raw(server, b"".join(requests)))
    assert preflight[0] == 200 and preflight[2] == b""
    assert preflight[1]["access-control-allow-origin"] == "*"
    assert preflight[1]["access-control-allow-methods"] == "POST"
    assert preflight[1]["access-control-allow-headers"] == "content-type, x-amz-date"
    assert int(preflight[1]["access-control-max-age"]) > 0
    for status, headers, _ in (get, ok, error):
        assert headers["access-control-allow-origin"] == "*"
        assert "x-amzn-RequestId" in headers["access-control-expose-headers"]
        # the preflight's answers are for the preflight only
        assert not any(name in headers for name in CORS_HEADERS[2:])
    assert (get[0], ok[0], error[0]) == (200, 200, 400)
    assert b"ResourceNotFoundException" in error[2]


def test_answers_wait_for_the_barrier_and_fail_when_it_fails():
    """An answer may acknowledge a write: it is written only after before_send said the write is
    logged, and becomes a 500 when it was not (one per answer, so the framing stays right)."""
    import asyncio

    from shardserver.config import Config
    from shardserver.protocol.server import ApiFrontend, ApiProtocol

    class Service:
        shard_id = 0
        stats = None
        operations = {}

        async def handle(self, op, body):
            return 200, b'{"ok":1}'

    class Transport:
        def __init__(self):
            self.data = b""

        def write(self, data):
            self.data += data

        def is_closing(self):
            return False

        def get_extra_info(self, name):
            return None

    async def go(logged):
        front = ApiFrontend(Service(), Config())
        calls = []
        front.before_send = lambda: calls.append(1) or logged
        protocol = ApiProtocol(front)
        transport = Transport()
        protocol.connection_made(transport)
        protocol.data_received(post("DynamoDB_20120810.PutItem", b"{}") * 2)
        assert transport.data == b""            # held until the loop iteration ends
        await asyncio.sleep(0)
        assert calls
        return split_responses(transport.data)

    ok = asyncio.run(go(True))
    assert [(status, body) for status, _, body in ok] == [(200, b'{"ok":1}')] * 2
    failed = asyncio.run(go(False))
    assert [status for status, _, _ in failed] == [500, 500]
    assert all(b"commit log write failed" in body for _, _, body in failed)
