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
from functools import partial

import orjson

from shardserver.errors import (DynamoDBError, InternalServerError, SerializationException,
                                UnknownOperationException)
from shardserver.protocol import api20111205, wire
from shardserver.protocol.http import CONTINUE, HttpError, Request, RequestParser, build_response, ok_response

log = logging.getLogger("shardserver.http")

MAX_PIPELINED = 64       # pause reading while this many requests of a connection wait

# CORS, as DynamoDB answers browsers: any origin, and the headers an SDK
# reads from a response exposed (DynamoDB does not expose x-amz-crc32, so
# browser SDKs skip that check).  Only requests with an Origin get them.
_CORS_ALLOWED = (b"\r\nAccess-Control-Allow-Origin: *"
                 b"\r\nAccess-Control-Expose-Headers: x-amzn-RequestId,x-amzn-ErrorType,x-amzn-ErrorMessage,Date")
_CORS_MAX_AGE = b"\r\nAccess-Control-Max-Age: 172800"    # preflight answers only


class _TargetCache(dict):
    """X-Amz-Target header bytes -> operation name, remembered for valid targets only."""

    def __missing__(self, target: bytes):
        try:
            op = wire.operation_of(target.decode("latin-1"))
        except DynamoDBError:
            return None
        if len(self) < 256:
            self[target] = op
        return op


_OPERATIONS = _TargetCache()


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
        self.connections: set[ApiProtocol] = set()    # open client connections
        self.in_flight = 0                      # requests started and not yet answered
        self.stopping = False                   # shutdown: no connection is kept alive any more
        self._loop = None
        self._unwritten: list[ApiProtocol] = []     # connections with answers to write out
        # Called before answers are written, returns False if the writes they
        # may acknowledge could not be logged (set by the shard: the commit
        # log's write_pending); the answers then become 500s.
        self.before_send = None

    # Answers are written out once per loop iteration, after every connection
    # readable in it was served, instead of one write as each is made: the
    # kernel then wakes a sleeping client once per burst of responses rather
    # than once per response (on a VM that wake-up, an inter-processor
    # interrupt, cost ~15% of a shard's CPU), and pipelined answers of one
    # connection leave in one write.  The wait is the rest of the iteration.
    def defer_write(self, protocol: "ApiProtocol") -> None:
        unwritten = self._unwritten
        unwritten.append(protocol)
        if len(unwritten) == 1:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        unwritten = self._unwritten
        self._unwritten = []
        for protocol in unwritten:
            protocol.write_out()

    def stop_serving(self) -> None:
        """Shutdown's first step: idle connections close now, busy ones after the answer they make.

        A keep-alive connection must not bring in requests once the shard has
        started to stop: they would reach storage after it is closed.
        """
        self.stopping = True
        for protocol in list(self.connections):
            protocol.close_when_idle()

    async def respond(self, request: Request) -> bytes:
        method = request.method
        request_id = self._id_prefix + b"%016X" % next(self._ids)     # unique per shard and front
        fields = request.fields
        cors = b"" if b"origin" not in fields else _CORS_ALLOWED
        if method != b"POST":
            return self._not_post(request, request_id, cors)
        try:
            if self.authenticator is not None:
                self.authenticator(request)
            body = request.body
            encoding = fields.get(b"content-encoding")
            if encoding and encoding.lower() != b"identity":
                if self.codec is None:
                    raise SerializationException(f"Unsupported Content-Encoding: {encoding.decode('latin-1')}")
                body = self.codec.decode_body(encoding.decode("latin-1"), body)
            target = fields.get(b"x-amz-target")
            op = _OPERATIONS[target] if target is not None else None
            if op is None:
                op = wire.operation_of(target.decode("latin-1") if target is not None else None)
        except DynamoDBError as error:
            self._count_refusal(request.text_header(b"x-amz-target"), error)
            status, payload = wire.error_response(error)
            return build_response(status, payload, request_id=request_id, keep_alive=request.keep_alive,
                                  extra_headers=cors)
        if op.startswith(api20111205.OP_PREFIX):
            status, payload = await self._handle_20111205(op[len(api20111205.OP_PREFIX):], body)
        else:
            status, payload = await self.service.handle(op, body)
        if self.stopping:
            request.keep_alive = False      # the last answer of this connection: the shard is stopping
        content_encoding = None
        accept = fields.get(b"accept-encoding")
        # "identity" (what Python's http.client, under boto3, sends) chooses no coding
        if (accept and accept != b"identity" and self.codec is not None
                and len(payload) >= self.config.response_compression_threshold):
            payload, content_encoding = self.codec.encode_response(
                payload, accept.decode("latin-1"), self.config.response_compression_threshold)
            content_encoding = content_encoding.encode() if content_encoding else None
        elif status == 200 and request.keep_alive and not cors:
            return ok_response(payload, request_id)
        return build_response(status, payload, request_id=request_id, keep_alive=request.keep_alive,
                              content_encoding=content_encoding, extra_headers=cors)

    def _not_post(self, request: Request, request_id: bytes, cors: bytes) -> bytes:
        """GET and HEAD (health, local nodes), OPTIONS (CORS preflight), or 405."""
        method = request.method
        if method == b"GET":
            return self._get(request, request_id, cors)
        if method == b"HEAD":
            # Same head as GET, no body: a body here would be read as the
            # start of the next response on a keep-alive connection.
            response, body_length = self._get(request, request_id, cors, head=True)
            return response[:len(response) - body_length]
        if method == b"OPTIONS":
            return self._preflight(request, request_id, cors)
        return build_response(405, b"", content_type=b"text/plain", keep_alive=request.keep_alive,
                              extra_headers=cors)

    async def _handle_20111205(self, op: str, body: bytes) -> tuple[int, bytes]:
        """A request of the 2011-12-05 API, run as the current operation it stands for."""
        tables = self.service.catalog.tables

        def key_names(name):
            schema = tables.get(name)
            return None if schema is None else (schema.hash_key, schema.range_key)

        try:
            request = wire.parse_body(body)
            current_op, current = api20111205.to_current(op, request, key_names)
        except DynamoDBError as error:
            status, payload = wire.error_response(error)
            return status, api20111205.error_body(payload)
        status, payload = await self.service.handle(current_op, orjson.dumps(current))
        if status != 200:
            return status, api20111205.error_body(payload)
        return status, orjson.dumps(api20111205.from_current(op, request, orjson.loads(payload), key_names))

    def _preflight(self, request: Request, request_id: bytes, cors: bytes) -> bytes:
        """A CORS preflight (OPTIONS): any origin may send what it asks to send, as DynamoDB allows."""
        if cors:
            cors += _CORS_MAX_AGE
            for asked, allowed in ((b"access-control-request-method", b"Access-Control-Allow-Methods"),
                                   (b"access-control-request-headers", b"Access-Control-Allow-Headers")):
                value = request.header(asked)
                if value is not None:
                    cors += b"\r\n" + allowed + b": " + value
        return build_response(200, b"", content_type=b"text/plain", request_id=request_id,
                              keep_alive=request.keep_alive, extra_headers=cors)

    def _count_refusal(self, target: str | None, error: DynamoDBError) -> None:
        """Counts a request refused before it reached the shard service (auth, encoding).

        Operators watch these (a client with a stale key, a scan of the port);
        the op label is only taken from known operations so that a stranger
        cannot create series at will.
        """
        stats = self.service.stats
        if stats is None:
            return
        op = "unknown"
        if target and target.startswith(wire.TARGET_PREFIX):
            name = target[len(wire.TARGET_PREFIX):]
            if name in self.service.operations:
                op = name
        stats.error(op, error.type_name)

    def _get(self, request: Request, request_id: bytes, cors: bytes, head: bool = False):
        path = request.path.split(b"?", 1)[0]
        if path == b"/":
            body, kind, status = self.health, b"text/plain", 200
        elif path == b"/localnodes":
            body, kind, status = orjson.dumps([self.config.alternator_address]), b"application/json", 200
        else:
            body, kind, status, request_id = b"Not Found", b"text/plain", 404, b""
        response = build_response(status, body, content_type=kind, request_id=request_id,
                                  keep_alive=request.keep_alive, extra_headers=cors)
        return (response, len(body)) if head else response


def _unlogged_answer() -> bytes:
    """What replaces answers whose writes the commit log could not take (one per answer, in order)."""
    status, payload = wire.error_response(InternalServerError("Internal server error: commit log write failed"))
    return build_response(status, payload)


class ApiProtocol(asyncio.Protocol):
    __slots__ = ("front", "transport", "parser", "queue", "busy", "paused", "closing", "out", "eof",
                 "failure")

    def __init__(self, front: ApiFrontend):
        self.front = front
        self.transport = None
        # the raw header pairs only for a signature to verify
        self.parser = RequestParser(keep_raw_headers=front.authenticator is not None)
        self.queue: deque[Request] = deque()
        self.busy = False
        self.paused = False
        self.closing = False
        self.out: list[bytes] | None = None      # answers made, not yet given to the transport
        self.eof = False                         # the client half-closed: answer, then close
        self.failure: HttpError | None = None    # bad framing after the queued requests

    def connection_made(self, transport):
        self.transport = transport
        self.front.connections.add(self)
        stats = self.front.service.stats
        if stats is not None:
            stats.connection_opened()

    def connection_lost(self, exc):
        self.front.connections.discard(self)
        stats = self.front.service.stats
        if stats is not None:
            stats.connection_closed()
        self.closing = True
        self.queue.clear()
        self.out = None

    def data_received(self, data: bytes):
        if self.closing or self.failure is not None:
            return
        try:
            requests = self.parser.feed(data)
        except HttpError as error:
            # the requests complete before the bad bytes are answered first
            if error.requests and not self.closing:
                self.failure = error
                self.queue.extend(error.requests)
                if not self.busy:
                    self._next()
            else:
                self._fail(error)
            return
        if requests:
            self.queue.extend(requests)
            if len(self.queue) > MAX_PIPELINED and not self.paused:
                self.paused = True
                self.transport.pause_reading()
        elif not self.parser.expect_continue:
            return
        if not self.busy:
            self._next()

    def _fail(self, error: HttpError):
        self.write_out()             # earlier answers first
        if self.transport.is_closing():
            return
        self.closing = True
        body = orjson.dumps({"__type": "com.amazon.coral.service#SerializationException",
                             "message": error.message})
        if not self.busy:
            self.transport.write(build_response(error.status, body, keep_alive=False))
        self.transport.close()

    # Requests are driven eagerly: a request whose handler never waits (a
    # GetItem from the memtable, a PutItem in periodic mode) is answered
    # inside data_received with no Task created; one that waits (a forward
    # to another shard, a group commit) is resumed by its future's callback.
    # Responses stay in request order because a connection runs one request
    # at a time.

    def _next(self) -> None:
        self.busy = True
        while self.queue and not self.closing:
            request = self.queue.popleft()
            self.front.in_flight += 1
            if not self._step(self.front.respond(request), request, None):
                return      # suspended; _resume continues the queue
        self.busy = False
        if self.closing:
            return
        if self.failure is not None:
            self._fail(self.failure)
        elif self.eof:
            self._finish()
        elif self.parser.expect_continue:
            # a request waits for "100 Continue" to send its body: after the
            # answers to the requests before it
            self.parser.expect_continue = False
            self.write_out()
            self.transport.write(CONTINUE)

    def eof_received(self):
        """The client half-closed its side: answer what it sent, then close."""
        self.eof = True
        if self.transport.get_extra_info("sslcontext") is not None:
            return None     # TLS cannot keep a half-closed connection: asyncio closes it
        if not self.busy and self.failure is None:
            self._finish()
        return True

    def close_when_idle(self) -> None:
        """Close now if no request runs, else after its answer (``respond`` sees the front stopping)."""
        if not self.busy and not self.closing:
            self._finish()

    def _finish(self) -> None:
        self.closing = True
        if self.out is None:
            self.transport.close()
        # else write_out closes the connection after the last answers

    def _step(self, coro, request, _future) -> bool:
        """Runs ``coro`` until it waits (False) or finishes and is answered (True)."""
        try:
            waiting = coro.send(None)
        except StopIteration as done:
            self._answer(request, done.value)
            return True
        except Exception:
            log.exception("error answering a request")
            status, payload = wire.error_response(Exception())
            request.keep_alive = False
            self._answer(request, build_response(status, payload, keep_alive=False))
            return True
        if waiting is None:         # a bare yield (asyncio.sleep(0)): run again soon
            asyncio.get_running_loop().call_soon(self._resume, coro, request, None)
        else:
            waiting._asyncio_future_blocking = False
            waiting.add_done_callback(partial(self._resume, coro, request))
        return False

    def _resume(self, coro, request, future) -> None:
        if self._step(coro, request, future):
            self._next()

    def _answer(self, request, response: bytes) -> None:
        self.front.in_flight -= 1
        transport = self.transport
        if self.closing or transport.is_closing():
            return
        out = self.out
        if out is None:
            self.out = [response]
            self.front.defer_write(self)
        else:
            out.append(response)
        if not request.keep_alive:
            self.closing = True      # write_out closes the connection after the answer
        elif self.paused and len(self.queue) <= MAX_PIPELINED // 2:
            self.paused = False
            transport.resume_reading()

    def write_out(self) -> None:
        """Give the answers made so far to the transport (and close after a last one)."""
        out = self.out
        if out is None:
            return
        self.out = None
        transport = self.transport
        if transport.is_closing():
            return
        before_send = self.front.before_send
        if before_send is not None and not before_send():
            out = [_unlogged_answer()] * len(out)
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.closing:
            transport.close()


__all__ = ["ApiFrontend", "ApiProtocol", "UnknownOperationException"]
