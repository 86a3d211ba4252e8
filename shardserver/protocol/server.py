"""The thin asyncio glue between sockets and the shard service.

One ``ApiProtocol`` per client connection: feeds bytes to the sans-I/O
``RequestParser``, runs requests in arrival order (pipelining keeps
responses ordered), and writes response bytes.  Health endpoints, auth,
compression and the error envelope are applied here; DynamoDB semantics
live in the shard.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque

import orjson

from shardserver.errors import DynamoDBError, SerializationException, UnknownOperationException
from shardserver.protocol import wire
from shardserver.protocol.http import HttpError, Request, RequestParser, build_response

log = logging.getLogger("shardserver.http")

MAX_PIPELINED = 64       # pause reading while this many requests of a connection wait


class ApiFrontend:
    """Per-shard HTTP front: what each connection calls to answer a request."""

    def __init__(self, service, config, authenticator=None, codec=None):
        self.service = service
        self.config = config
        self.authenticator = authenticator      # callable(Request) -> None, raises DynamoDBError
        self.codec = codec                      # compression module, or None
        self.health = f"healthy: {config.alternator_address}:{config.alternator_port}".encode()
        self._ids = itertools.count(1)
        self._id_prefix = f"{service.shard_id:02X}{id(self) & 0xFFFF:04X}".encode()
        self.open_connections = 0

    def next_request_id(self) -> bytes:
        return self._id_prefix + b"%016X" % next(self._ids)

    async def respond(self, request: Request) -> bytes:
        method = request.method
        request_id = self.next_request_id()
        if method == b"GET" or method == b"HEAD":
            return self._get(request, request_id)
        if method != b"POST":
            return build_response(405, b"", content_type=b"text/plain", keep_alive=request.keep_alive)
        headers = request.headers
        try:
            if self.authenticator is not None:
                self.authenticator(request)
            body = request.body
            encoding = headers.get("content-encoding")
            if encoding and encoding.lower() != "identity":
                if self.codec is None:
                    raise SerializationException(f"Unsupported Content-Encoding: {encoding}")
                body = self.codec.decode_body(encoding, body)
            op = wire.operation_of(headers.get("x-amz-target"))
        except DynamoDBError as error:
            status, payload = wire.error_response(error)
            return build_response(status, payload, request_id=request_id, keep_alive=request.keep_alive)
        status, payload = await self.service.handle(op, body)
        content_encoding = None
        accept = headers.get("accept-encoding")
        if accept and self.codec is not None:
            payload, content_encoding = self.codec.encode_response(
                payload, accept, self.config.response_compression_threshold)
            content_encoding = content_encoding.encode() if content_encoding else None
        return build_response(status, payload, request_id=request_id, keep_alive=request.keep_alive,
                              content_encoding=content_encoding)

    def _get(self, request: Request, request_id: bytes) -> bytes:
        path = request.path.split(b"?", 1)[0]
        if path == b"/":
            body, kind = self.health, b"text/plain"
        elif path == b"/localnodes":
            body, kind = orjson.dumps([self.config.alternator_address]), b"application/json"
        else:
            return build_response(404, b"Not Found", content_type=b"text/plain", keep_alive=request.keep_alive)
        return build_response(200, body, content_type=kind, request_id=request_id, keep_alive=request.keep_alive)


class ApiProtocol(asyncio.Protocol):
    __slots__ = ("front", "transport", "parser", "queue", "busy", "paused", "closing")

    def __init__(self, front: ApiFrontend):
        self.front = front
        self.transport = None
        self.parser = RequestParser()
        self.queue: deque[Request] = deque()
        self.busy = False
        self.paused = False
        self.closing = False

    def connection_made(self, transport):
        self.transport = transport
        self.front.open_connections += 1
        stats = self.front.service.stats
        if stats is not None:
            stats.connection_opened()

    def connection_lost(self, exc):
        self.front.open_connections -= 1
        stats = self.front.service.stats
        if stats is not None:
            stats.connection_closed()
        self.closing = True
        self.queue.clear()

    def data_received(self, data: bytes):
        if self.closing:
            return
        try:
            requests = self.parser.feed(data)
        except HttpError as error:
            self._fail(error)
            return
        if not requests:
            return
        self.queue.extend(requests)
        if not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self._drain())
        if len(self.queue) > MAX_PIPELINED and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def _fail(self, error: HttpError):
        self.closing = True
        body = orjson.dumps({"__type": "com.amazon.coral.service#SerializationException",
                             "message": error.message})
        if not self.busy:
            self.transport.write(build_response(error.status, body, keep_alive=False))
        self.transport.close()

    async def _drain(self):
        front = self.front
        transport = self.transport
        try:
            while self.queue and not self.closing:
                request = self.queue.popleft()
                try:
                    response = await front.respond(request)
                except Exception:
                    log.exception("error answering a request")
                    status, payload = wire.error_response(Exception())
                    response = build_response(status, payload, keep_alive=False)
                    request.keep_alive = False
                if transport.is_closing():
                    return
                transport.write(response)
                if not request.keep_alive:
                    self.closing = True
                    transport.close()
                    return
                if self.paused and len(self.queue) <= MAX_PIPELINED // 2:
                    self.paused = False
                    transport.resume_reading()
        finally:
            self.busy = False


__all__ = ["ApiFrontend", "ApiProtocol", "UnknownOperationException"]
