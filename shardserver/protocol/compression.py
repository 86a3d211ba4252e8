"""HTTP body compression and the x-amz-crc32 integrity header.

What it is: functions of bytes and header values.  `decode_body` undoes a
request's Content-Encoding (gzip, deflate, identity) with a hard bound on the
decompressed size; `encode_response` compresses a response body when the
client's Accept-Encoding allows it and the body is large enough to be worth
it; `crc32_header` computes DynamoDB's x-amz-crc32 value.

What it owns: the choice of encoding and the error a client gets for a body
that cannot be decoded.  Following DynamoDB (and Alternator, which copied it
after testing against DynamoDB): an unknown Content-Encoding or corrupt
compressed data is an InternalServerError (HTTP 500); a body that would
decompress past the size limit (a "gzip bomb") is refused with a
ValidationException (HTTP 400, not retried by SDKs) after at most
`max_size + 1` bytes were produced, so memory stays bounded.

What it must never do: decompress without a bound, touch sockets, or compute
the CRC over anything but the exact bytes sent on the wire.
"""

from __future__ import annotations

import zlib

from shardserver.errors import InternalServerError, ValidationException

MAX_REQUEST_BYTES = 16 * 1024 * 1024
# DynamoDB's 16 MB limit is on the request; the JSON envelope around the items
# (table names, expressions, whitespace a client may add) gets some slack.
DEFAULT_MAX_DECODED_BYTES = MAX_REQUEST_BYTES + 1024 * 1024
DEFAULT_COMPRESSION_THRESHOLD = 4096
DEFAULT_COMPRESSION_LEVEL = 6

# Compressed input is fed to zlib in slices of this size so that no single
# call can allocate much more than the remaining output budget.
_INPUT_SLICE = 64 * 1024
_OUTPUT_STEP = 256 * 1024

_RESPONSE_ENCODINGS = ("gzip", "deflate")


def decode_body(
    content_encoding: str | None,
    body: bytes,
    max_size: int = DEFAULT_MAX_DECODED_BYTES,
) -> bytes:
    """Return the body with its Content-Encoding undone.

    Several codings ("gzip, deflate") are undone last-applied first.  gzip
    bodies may hold several concatenated members (RFC 1952 allows it, DynamoDB
    accepts it); anything after the last member that is not another member is
    an error.  "deflate" accepts both the zlib format HTTP specifies and the
    raw deflate stream some clients send.
    """
    if not content_encoding:
        return body
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            body = _inflate_gzip(body, max_size)
        elif coding == "deflate":
            body = _inflate_deflate(body, max_size)
        else:
            raise InternalServerError(
                f"Unsupported Content-Encoding '{coding[:64]}': supported encodings are "
                "gzip, deflate and identity"
            )
    return body


def _too_large(max_size: int) -> ValidationException:
    return ValidationException(
        f"Request size exceeded the limit of {max_size} bytes after decompression"
    )


def _corrupt(coding: str, detail: str) -> InternalServerError:
    return InternalServerError(f"Could not decompress the {coding} request body: {detail}")


def _run(d, data: bytes, produced: list[bytes], total: int, max_size: int) -> tuple[int, bytes]:
    """Feed `data` to decompressor `d`, never letting output pass max_size + 1.

    Returns the new output total and the input left after the end of the
    compressed stream (empty when the stream did not end or nothing follows).
    """
    pos = 0
    while pos < len(data) or d.unconsumed_tail:
        if d.unconsumed_tail:
            chunk = d.unconsumed_tail
        else:
            chunk = data[pos:pos + _INPUT_SLICE]
            pos += len(chunk)
        budget = max_size + 1 - total
        out = d.decompress(chunk, min(budget, _OUTPUT_STEP))
        total += len(out)
        produced.append(out)
        if total > max_size:
            raise _too_large(max_size)
        if d.eof:
            return total, d.unused_data + data[pos:]
    return total, b""


def _inflate_gzip(body: bytes, max_size: int) -> bytes:
    if not body:
        raise _corrupt("gzip", "the body is empty")
    produced: list[bytes] = []
    total = 0
    rest = body
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            total, rest = _run(d, rest, produced, total, max_size)
        except zlib.error as e:
            raise _corrupt("gzip", str(e)) from None
        if not d.eof:
            raise _corrupt("gzip", "the compressed data is truncated")
    return b"".join(produced)


def _inflate_deflate(body: bytes, max_size: int) -> bytes:
    if not body:
        raise _corrupt("deflate", "the body is empty")
    # A zlib stream starts with a CMF/FLG pair whose 16-bit value is a
    # multiple of 31 and whose method is 8; raw deflate almost never does.
    is_zlib = len(body) >= 2 and body[0] & 0x0F == 8 and ((body[0] << 8) | body[1]) % 31 == 0
    d = zlib.decompressobj(zlib.MAX_WBITS if is_zlib else -zlib.MAX_WBITS)
    produced: list[bytes] = []
    try:
        _, rest = _run(d, body, produced, 0, max_size)
    except zlib.error as e:
        raise _corrupt("deflate", str(e)) from None
    if not d.eof:
        raise _corrupt("deflate", "the compressed data is truncated")
    if rest:
        raise _corrupt("deflate", "unexpected data after the end of the compressed stream")
    return b"".join(produced)


def choose_encoding(accept_encoding: str | None) -> str | None:
    """The response coding to use for an Accept-Encoding value, or None.

    Matches what DynamoDB does (as probed by Alternator's tests): gzip and
    deflate only; the highest q-value wins, ties go to the first listed;
    q > 1 counts as 1, an unparsable q is ignored (the entry counts as q=1),
    q=0 refuses; `*` stands for gzip (then deflate) unless listed otherwise;
    identity preferences are ignored; malformed entries are skipped.
    """
    if not accept_encoding:
        return None
    best: str | None = None
    best_q = 0.0
    explicit: dict[str, float] = {}
    star_q: float | None = None
    order: list[str] = []
    for entry in accept_encoding.split(","):
        name, *params = entry.split(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for param in params:
            key, eq, value = param.partition("=")
            if not (eq and key.strip().lower() == "q"):
                continue
            try:
                q = max(0.0, min(float(value.strip()), 1.0))
            except ValueError:
                pass
            # Only the first q counts, as in DynamoDB.
            break
        if name == "*":
            if star_q is None:
                star_q = q
            continue
        if name in _RESPONSE_ENCODINGS:
            if name not in explicit:
                explicit[name] = q
                order.append(name)
            elif explicit[name] == 0 and q > 0:
                explicit[name] = q
    for name in order:
        if explicit[name] > best_q:
            best, best_q = name, explicit[name]
    if star_q is not None and star_q > best_q:
        for name in _RESPONSE_ENCODINGS:
            if name not in explicit:
                return name
    return best


def encode_response(
    body: bytes,
    accept_encoding: str | None,
    threshold: int = DEFAULT_COMPRESSION_THRESHOLD,
    level: int = DEFAULT_COMPRESSION_LEVEL,
) -> tuple[bytes, str | None]:
    """(body to send, Content-Encoding value or None).

    Bodies shorter than `threshold` are sent as they are: compressing a small
    JSON answer costs more CPU than the bytes it saves.  threshold <= 0
    disables compression.
    """
    if threshold <= 0 or len(body) < threshold:
        return body, None
    coding = choose_encoding(accept_encoding)
    if coding == "gzip":
        c = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return c.compress(body) + c.flush(), "gzip"
    if coding == "deflate":
        return zlib.compress(body, level), "deflate"
    return body, None


def crc32_header(body: bytes) -> str:
    """DynamoDB's x-amz-crc32 value for the body exactly as sent.

    botocore reads the raw response bytes (urllib3 with decode_content=False)
    and checks `crc32(raw) & 0xffffffff` against this header, so for a
    compressed response the CRC is of the compressed bytes.
    """
    return str(zlib.crc32(body) & 0xFFFFFFFF)
