"""HTTP/1.1 framing for the DynamoDB API, sans I/O.

``RequestParser`` is fed raw bytes and hands back complete ``Request``
objects (keep-alive and pipelining: several may come out of one feed);
``build_response`` turns a status and body into response bytes.  Nothing
here owns a socket: ``protocol.server`` is the thin asyncio glue.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import httptools

MAX_BODY_BYTES = 16 * 1024 * 1024 + 64 * 1024   # DynamoDB's 16 MB request limit, plus envelope
MAX_HEADER_BYTES = 64 * 1024

STATUS_TEXT = {
    200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 408: b"Request Timeout", 413: b"Payload Too Large",
    431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
    503: b"Service Unavailable",
}


class HttpError(Exception):
    """Framing error: answer with ``status`` (if any) and close the connection."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Request:
    method: bytes
    path: bytes
    headers: dict = field(default_factory=dict)    # lower-cased name -> value (both str)
    raw_headers: list = field(default_factory=list)
    body: bytes = b""
    keep_alive: bool = True


class RequestParser:
    """Feeds bytes to httptools and collects complete requests."""

    __slots__ = ("_parser", "_current", "_url", "_body", "_header_bytes", "_done", "_name")

    def __init__(self):
        self._parser = httptools.HttpRequestParser(self)
        self._done: list[Request] = []
        self._reset()

    def _reset(self):
        self._current = None
        self._url = b""
        self._body = []
        self._header_bytes = 0
        self._name = b""

    def feed(self, data: bytes) -> list[Request]:
        """Returns the requests completed by ``data``; raises HttpError on bad framing."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise HttpError(400, "Protocol upgrade is not supported") from None
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, HttpError):
                raise exc.__context__ from None
            raise HttpError(400, f"Malformed HTTP request: {exc}") from None
        done, self._done = self._done, []
        return done

    # httptools callbacks ------------------------------------------------
    def on_message_begin(self):
        self._reset()
        self._current = Request(b"", b"")

    def on_url(self, url: bytes):
        self._url += url
        if len(self._url) > MAX_HEADER_BYTES:
            raise HttpError(414, "URL too long")

    def on_header(self, name: bytes, value: bytes):
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise HttpError(431, "Request headers too large")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._current.raw_headers.append((key, text))
        if key in self._current.headers:
            self._current.headers[key] += "," + text
        else:
            self._current.headers[key] = text

    def on_headers_complete(self):
        length = self._current.headers.get("content-length")
        if length is not None:
            try:
                if int(length) > MAX_BODY_BYTES:
                    raise HttpError(413, "Request size exceeds the 16 MB limit")
            except ValueError:
                raise HttpError(400, "Invalid Content-Length") from None

    def on_body(self, body: bytes):
        self._body.append(body)
        if len(self._body) > 1 and sum(map(len, self._body)) > MAX_BODY_BYTES:
            raise HttpError(413, "Request size exceeds the 16 MB limit")

    def on_message_complete(self):
        request = self._current
        request.method = self._parser.get_method()
        request.path = self._url
        request.body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request.keep_alive = self._parser.should_keep_alive()
        self._done.append(request)
        self._reset()


def build_response(status: int, body: bytes, *, content_type: bytes = b"application/x-amz-json-1.0",
                   request_id: bytes = b"", keep_alive: bool = True,
                   content_encoding: bytes | None = None, crc32: bool = True) -> bytes:
    """Full response bytes; ``x-amz-crc32`` covers the body as sent (botocore checks it)."""
    head = [b"HTTP/1.1 ", str(status).encode(), b" ", STATUS_TEXT.get(status, b"Unknown"),
            b"\r\nContent-Type: ", content_type,
            b"\r\nContent-Length: ", str(len(body)).encode()]
    if request_id:
        head += [b"\r\nx-amzn-RequestId: ", request_id]
    if crc32:
        head += [b"\r\nx-amz-crc32: ", str(zlib.crc32(body)).encode()]
    if content_encoding:
        head += [b"\r\nContent-Encoding: ", content_encoding]
    if not keep_alive:
        head.append(b"\r\nConnection: close")
    head.append(b"\r\n\r\n")
    head.append(body)
    return b"".join(head)
