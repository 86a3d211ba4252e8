"""HTTP/1.1 framing for the DynamoDB API, sans I/O.

``RequestParser`` is fed raw bytes and hands back complete ``Request``
objects (keep-alive and pipelining: several may come out of one feed);
``build_response`` turns a status and body into response bytes.  Nothing
here owns a socket: ``protocol.server`` is the thin asyncio glue.
"""

from __future__ import annotations

import time
from email.utils import formatdate

import httptools

try:
    # zlib-ng's CRC-32 is the same function as zlib's, ~10x faster on the
    # multi-KB bodies of Query and Scan pages (folded SIMD).
    from zlib_ng.zlib_ng import crc32 as crc32_of
except ImportError:  # pragma: no cover - the dependency is declared; keep working without it
    from zlib import crc32 as crc32_of

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
        self.requests: list = []     # set by RequestParser.feed: requests complete before the error


class Request:
    """One complete HTTP request.

    Header names and values stay bytes as they arrived (``raw_headers``,
    what SigV4 signs); ``fields`` maps each lower-cased name to its value
    (repeated headers comma-joined; the parser fills it as headers arrive),
    ``header(b"name")`` looks one up, and ``headers`` is a decoded dict
    built only when asked for.
    """

    __slots__ = ("method", "path", "raw_headers", "body", "keep_alive", "fields", "_decoded")

    def __init__(self, method: bytes = b"", path: bytes = b"", raw_headers: list | None = None,
                 body: bytes = b"", keep_alive: bool = True, by_name: dict | None = None):
        self.method = method
        self.path = path
        self.raw_headers = raw_headers if raw_headers is not None else []
        self.body = body
        self.keep_alive = keep_alive
        if by_name is None:
            by_name = {}
            for key, value in self.raw_headers:
                _add_header(by_name, key.lower(), value)
        self.fields = by_name
        self._decoded = None

    def header(self, name: bytes) -> bytes | None:
        """The value of header ``name`` (lower-case bytes); repeated headers are comma-joined."""
        return self.fields.get(name)

    def text_header(self, name: bytes) -> str | None:
        """``header`` decoded as Latin-1, or None."""
        value = self.fields.get(name)
        return value.decode("latin-1") if value is not None else None

    @property
    def headers(self) -> dict:
        """Lower-cased name -> value, decoded as Latin-1 (HTTP's byte-transparent reading)."""
        if self._decoded is None:
            self._decoded = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.fields.items()}
        return self._decoded


def _add_header(by_name: dict, key: bytes, value: bytes) -> None:
    old = by_name.get(key)
    by_name[key] = value if old is None else old + b"," + value


class RequestParser:
    """Feeds bytes to httptools and collects complete requests.

    ``keep_raw_headers=False`` leaves ``Request.raw_headers`` empty: the list
    of pairs is only needed to verify a signature, and costs a tuple and an
    append per header.
    """

    __slots__ = ("_parser", "_url", "_body", "_raw", "_by_name", "_header_bytes", "_done",
                 "_keep_raw", "expect_continue")

    def __init__(self, keep_raw_headers: bool = True):
        self._keep_raw = keep_raw_headers
        self._parser = httptools.HttpRequestParser(self)
        self._done: list[Request] = []
        # Set when a request's headers asked "Expect: 100-continue" and its body has
        # not arrived yet: the caller should send CONTINUE (and clear the flag).
        self.expect_continue = False
        self._reset()

    def _reset(self):
        self._url = b""
        self._body = None
        self._raw = [] if self._keep_raw else None
        self._by_name = {}
        self._header_bytes = 0

    def feed(self, data: bytes) -> list[Request]:
        """Returns the requests completed by ``data``; raises HttpError on bad framing."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            error = HttpError(400, "Protocol upgrade is not supported")
            error.requests, self._done = self._done, []
            raise error from None
        except httptools.HttpParserError as exc:
            error = exc.__context__ if isinstance(exc.__context__, HttpError) else \
                HttpError(400, f"Malformed HTTP request: {exc}")
            error.requests, self._done = self._done, []    # complete before the bad bytes
            raise error from None
        done = self._done
        if done:
            self._done = []
        return done

    # httptools callbacks: kept minimal, they run for every header of every request.
    def on_url(self, url: bytes):
        self._url += url
        if len(self._url) > MAX_HEADER_BYTES:
            raise HttpError(414, "URL too long")

    def on_header(self, name: bytes, value: bytes):
        raw = self._raw
        if raw is not None:
            raw.append((name, value))
        by_name = self._by_name
        key = name.lower()
        if key in by_name:
            by_name[key] += b"," + value
        else:
            by_name[key] = value
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise HttpError(431, "Request headers too large")

    def on_headers_complete(self):
        # Refuse a huge body before it arrives.
        by_name = self._by_name
        expect = by_name.get(b"expect")
        if expect is not None and expect.strip().lower() == b"100-continue":
            self.expect_continue = True
        length = by_name.get(b"content-length")
        if length is not None:
            try:
                length = int(length)
            except ValueError:
                raise HttpError(400, "Invalid Content-Length") from None
            if length > MAX_BODY_BYTES:
                raise HttpError(413, "Request size exceeds the 16 MB limit")

    def on_body(self, body: bytes):
        parts = self._body
        if parts is None:
            self._body = [body]
            return
        parts.append(body)
        if sum(map(len, parts)) > MAX_BODY_BYTES:
            raise HttpError(413, "Request size exceeds the 16 MB limit")

    def on_message_complete(self):
        self.expect_continue = False
        body = self._body
        parser = self._parser
        self._done.append(Request(parser.get_method(), self._url, self._raw,
                                  b"" if body is None else body[0] if len(body) == 1 else b"".join(body),
                                  parser.should_keep_alive(), self._by_name))
        self._reset()


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


JSON_TYPE = b"application/x-amz-json-1.0"
_OK_JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: " + JSON_TYPE + b"\r\nContent-Length: "
# DynamoDB sends these two on every response, success or error.
_SERVER = b"\r\nServer: Server"
_REQUEST_ID = b"\r\nx-amzn-RequestId: "
_date_second = -1
_date_header = b""
_ok_middle = b""        # what ok_response puts between Content-Length and the request id


def _date() -> bytes:
    """The Date header (RFC 7231 IMF-fixdate), formatted once a second."""
    second = int(time.time())
    if second != _date_second:
        _new_second(second)
    return _date_header


def _new_second(second: int) -> None:
    global _date_second, _date_header, _ok_middle
    _date_second = second
    _date_header = b"\r\nDate: " + formatdate(second, usegmt=True).encode()
    _ok_middle = _date_header + _SERVER + _REQUEST_ID


_OK_TAIL = b"%d%b%b\r\nx-amz-crc32: %d\r\n\r\n"


def ok_response(body: bytes, request_id: bytes) -> bytes:
    """``build_response(200, body, request_id=request_id)``, byte for byte: the answer to
    nearly every request, made from one per-second header block in one step."""
    second = int(time.time())
    if second != _date_second:
        _new_second(second)
    return _OK_JSON_HEAD + _OK_TAIL % (len(body), _ok_middle, request_id, crc32_of(body)) + body


def build_response(status: int, body: bytes, *, content_type: bytes = JSON_TYPE,
                   request_id: bytes = b"", keep_alive: bool = True,
                   content_encoding: bytes | None = None, crc32: bool = True,
                   extra_headers: bytes = b"") -> bytes:
    """Full response bytes; ``x-amz-crc32`` covers the body as sent (botocore checks it).

    ``extra_headers`` are whole header lines, each starting with CRLF.
    """
    if status == 200 and content_type is JSON_TYPE:
        head = [_OK_JSON_HEAD, b"%d" % len(body)]
    else:
        head = [b"HTTP/1.1 %d " % status, STATUS_TEXT.get(status, b"Unknown"),
                b"\r\nContent-Type: ", content_type, b"\r\nContent-Length: ", b"%d" % len(body)]
    head += (_date(), _SERVER)
    if request_id:
        head += (_REQUEST_ID, request_id)
    if crc32:
        head += (b"\r\nx-amz-crc32: ", b"%d" % crc32_of(body))
    if content_encoding:
        head += (b"\r\nContent-Encoding: ", content_encoding)
    if not keep_alive:
        head.append(b"\r\nConnection: close")
    if extra_headers:
        head.append(extra_headers)
    head.append(b"\r\n\r\n")
    head.append(body)
    return b"".join(head)
