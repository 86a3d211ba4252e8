"""The "null" DynamoDB server: the ceiling for any Python server on uvloop + httptools.

Owns: an HTTP/1.1 keep-alive server that does the unavoidable per-request
work of a real server on this stack — parse HTTP with httptools, read the
X-Amz-Target header, decode the JSON body with orjson — and then answers
with a canned, DynamoDB-shaped reply per operation (GetItem returns one
~1 KB item, Query ten of them, writes return ``{}``).  ``--workers N`` runs N
processes sharing the port with SO_REUSEPORT, as the shards do.

It must never store anything or pretend to: its replies do not depend on
earlier requests.  It serves loopback by default and exists only as the
benchmark's baseline.

Run:  python bench/nullserver.py --port 8010 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import zlib

import httptools
import orjson
import uvloop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads  # noqa: E402

JSON_TYPE = b"application/x-amz-json-1.0"


def http_response(status: int, reason: str, body: bytes, content_type: bytes = JSON_TYPE,
                  keep_alive: bool = True) -> bytes:
    # x-amz-crc32 is what DynamoDB sends and SDKs verify; for canned bodies it is free.
    return (b"HTTP/1.1 %d %s\r\n" % (status, reason.encode())
            + b"Content-Type: " + content_type + b"\r\n"
            + b"x-amzn-RequestId: NULLSERVER0000000000000000000000000000000000000000000\r\n"
            + b"x-amz-crc32: %d\r\n" % zlib.crc32(body)
            + (b"" if keep_alive else b"Connection: close\r\n")
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def table_description(name: str, definition: dict | None) -> dict:
    definition = definition or {}
    return {
        "TableName": name,
        "TableStatus": "ACTIVE",
        "KeySchema": definition.get("KeySchema", [{"AttributeName": "pk", "KeyType": "HASH"}]),
        "AttributeDefinitions": definition.get(
            "AttributeDefinitions", [{"AttributeName": "pk", "AttributeType": "S"}]),
        "CreationDateTime": 1700000000.0,
        "ItemCount": 0,
        "TableSizeBytes": 0,
        "TableArn": "arn:aws:dynamodb:us-east-1:000000000000:table/" + name,
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0,
                                  "NumberOfDecreasesToday": 0},
    }


class CannedReplies:
    """The reply bytes of every operation, built once at start."""

    def __init__(self, item_size: int):
        payload = workloads.PayloadPool(item_size, variants=1)
        item = workloads.kv_item(0, payload)
        query_items = [workloads.query_item(0, s, payload) for s in range(workloads.PARTITION_SIZE)]
        bodies = {
            b"GetItem": {"Item": item},
            b"PutItem": {},
            b"UpdateItem": {},
            b"DeleteItem": {},
            b"Query": {"Items": query_items, "Count": len(query_items),
                       "ScannedCount": len(query_items)},
            b"Scan": {"Items": query_items, "Count": len(query_items),
                      "ScannedCount": len(query_items)},
            b"BatchWriteItem": {"UnprocessedItems": {}},
            b"BatchGetItem": {"Responses": {workloads.KV_TABLE: [item] * workloads.BATCH_GET_SIZE},
                              "UnprocessedKeys": {}},
            b"ListTables": {"TableNames": list(workloads.key_schema_definitions())},
        }
        self.by_operation = {op: http_response(200, "OK", orjson.dumps(body))
                             for op, body in bodies.items()}
        self.empty = http_response(200, "OK", b"{}")
        self.healthy = http_response(200, "OK", b"healthy: null", b"text/plain")
        self.bad_request = http_response(
            400, "Bad Request",
            orjson.dumps({"__type": "com.amazon.coral.service#SerializationException",
                          "message": "Start of structure or map found where not expected."}))

    def table_reply(self, operation: bytes, request: dict) -> bytes:
        # Table calls echo the table name so that clients waiting for ACTIVE see their table.
        name = request.get("TableName", "")
        if operation == b"DeleteTable":
            desc = table_description(name, None)
            desc["TableStatus"] = "DELETING"
            return http_response(200, "OK", orjson.dumps({"TableDescription": desc}))
        key = "Table" if operation == b"DescribeTable" else "TableDescription"
        definition = workloads.key_schema_definitions().get(name, request)
        return http_response(200, "OK", orjson.dumps({key: table_description(name, definition)}))


TABLE_OPERATIONS = (b"CreateTable", b"DescribeTable", b"DeleteTable", b"UpdateTable")


class NullProtocol(asyncio.Protocol):
    __slots__ = ("replies", "parser", "transport", "target", "body")

    def __init__(self, replies: CannedReplies):
        self.replies = replies
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.target = b""
        self.body: list[bytes] = []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(self.replies.bad_request)
            self.transport.close()

    def on_message_begin(self) -> None:
        self.target = b""
        self.body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 12 and name.lower() == b"x-amz-target":
            self.target = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        replies = self.replies
        if self.parser.get_method() == b"GET":
            self.transport.write(replies.healthy)
            return
        try:
            request = orjson.loads(b"".join(self.body)) if self.body else {}
        except orjson.JSONDecodeError:
            self.transport.write(replies.bad_request)
            return
        operation = self.target.rpartition(b".")[2]
        reply = replies.by_operation.get(operation)
        if reply is None:
            if operation in TABLE_OPERATIONS:
                reply = replies.table_reply(operation, request)
            else:
                reply = replies.empty
        self.transport.write(reply)
        if not self.parser.should_keep_alive():
            self.transport.close()


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def serve(host: str, port: int, item_size: int) -> None:
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    replies = CannedReplies(item_size)
    sock = listening_socket(host, port)
    server = loop.run_until_complete(
        loop.create_server(lambda: NullProtocol(replies), sock=sock))
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    loop.run_until_complete(stop)
    server.close()
    loop.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="canned-reply DynamoDB server (benchmark baseline)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8010)
    ap.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    ap.add_argument("--item-size", type=int, default=workloads.DEFAULT_ITEM_SIZE)
    args = ap.parse_args(argv)
    if args.workers <= 1:
        serve(args.host, args.port, args.item_size)
        return 0
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            try:
                serve(args.host, args.port, args.item_size)
            finally:
                os._exit(0)
        children.append(pid)

    def forward(signum, _frame):
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    alive = set(children)
    while alive:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        alive.discard(pid)
        status = status or os.waitstatus_to_exitcode(code)
        # One worker gone leaves the port half-served: stop the others too.
        forward(signal.SIGTERM, None)
    return status


if __name__ == "__main__":
    sys.exit(main())
