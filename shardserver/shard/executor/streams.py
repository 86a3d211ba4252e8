"""The DynamoDB Streams API: ListStreams, DescribeStream, GetShardIterator, GetRecords.

Served at the DynamoDB endpoint under ``X-Amz-Target: DynamoDBStreams_20120810.<Op>``
(operation names ``Streams.<Op>``).  ListStreams and DescribeStream answer from
the acceptor's catalog.  A stream has one stream shard, merged from every
server shard's records: GetShardIterator (whose LATEST needs every shard's
read position) and GetRecords run on the acceptor and ask every server shard
over the fabric (``STREAM_POSITION``, ``STREAM_READ``).

A shard iterator is ``<stream arn>|1|<base64 of "shard:start:issued ms:crc">``:
the stream, the stream shard (0), the first sequence number to return and when
it was issued (iterators expire after 15 minutes); the CRC tells a damaged or
invented iterator from a real one.  Record storage, sequence numbers and the
merge are shardserver.shard.streams'.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import time
import zlib

import orjson

from shardserver.errors import (ExpiredIteratorException, ResourceNotFoundException,
                                TrimmedDataAccessException, ValidationException)
from shardserver.shard import streams
from shardserver.shard.executor import fabric_verb, operation
from shardserver.shard.executor.tables import check_table_name, constraint_error

ITERATOR_TYPES = ("TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")
ITERATOR_LIFETIME_MS = 15 * 60 * 1000
ITERATOR_VERSION = "1"
MAX_RECORDS = 1000
MAX_RECORDS_BYTES = 1 << 20
MAX_SEQUENCE_DIGITS = 40
STREAM_POSITION = b"stream-position"    # -> decimal text of this shard's streams.read_position
STREAM_READ = b"stream-read"            # orjson {"prefix", "start" (decimal text), "limit", "bytes"} -> a part
STREAM_ARN_RE = re.compile(r"arn:aws:dynamodb:[a-z0-9-]+:\d{12}:table/([a-zA-Z0-9_.-]{3,255})/stream/"
                           r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})\Z")


def _limit(request: dict, highest: int) -> int:
    limit = request.get("Limit")
    if limit is None:
        return highest
    if limit < 1:
        raise constraint_error([f"Value '{limit}' at 'limit' failed to satisfy constraint: "
                                "Member must have value greater than or equal to 1"])
    if limit > highest:
        raise constraint_error([f"Value '{limit}' at 'limit' failed to satisfy constraint: "
                                f"Member must have value less than or equal to {highest}"])
    return limit


def _parse_arn(arn, field: str = "StreamArn") -> tuple[str, str]:
    """(table name, stream label) of a well-formed stream ARN, or ValidationException."""
    if not isinstance(arn, str):
        raise constraint_error([f"Value null at '{field[0].lower() + field[1:]}' failed to satisfy constraint: "
                                "Member must not be null"])
    match = STREAM_ARN_RE.match(arn)
    if match is None:
        raise ValidationException(f"Invalid {field}: {arn}")
    return match.group(1), match.group(2)


def _stream_of(svc, arn, field: str = "StreamArn") -> tuple:
    """(table schema, stream definition) of a stream ARN, or ValidationException / ResourceNotFoundException."""
    name, label = _parse_arn(arn, field)
    for schema in streams.schemas_of(svc.catalog, name):      # the live table, and deleted ones
        if arn.startswith(schema.arn + "/"):
            for stream in schema.streams:
                if stream["label"] == label:
                    return schema, stream
    raise ResourceNotFoundException(f"Requested resource not found: Stream: {arn} not found")


def _starting_sequence(svc, stream: dict) -> int:
    """A stream shard's StartingSequenceNumber: its creation, or the trim horizon once that is later.

    Reported a little after the horizon (at most 5 minutes), so that an
    AT_SEQUENCE_NUMBER iterator asked for with it is not trimmed already.
    """
    retention = streams.retention_of(svc)
    start = max(streams.sequence_at(stream["created_ms"]),
                streams.horizon_sequence(retention - min(300.0, retention / 4)))
    ending = streams.ending_sequence(stream)
    return min(start, ending) if ending is not None else start


# ------------------------------------------------------------------ shard iterators

def encode_iterator(arn: str, shard: int, start: int) -> str:
    fields = f"{shard}:{start}:{int(time.time() * 1000)}"
    check = zlib.crc32(f"{arn}|{fields}".encode())
    return f"{arn}|{ITERATOR_VERSION}|" + base64.b64encode(f"{fields}:{check}".encode()).decode()


def decode_iterator(iterator) -> tuple[str, int, int, int]:
    """(stream arn, stream shard, first sequence number, issued ms) or ValidationException."""
    if not isinstance(iterator, str):
        raise constraint_error(["Value null at 'shardIterator' failed to satisfy constraint: "
                                "Member must not be null"])
    parts = iterator.split("|")
    try:
        if len(parts) != 3 or parts[1] != ITERATOR_VERSION:
            raise ValueError
        arn = parts[0]
        _parse_arn(arn)
        shard, start, issued, check = (int(f) for f in
                                       base64.b64decode(parts[2], validate=True).decode().split(":"))
        if check != zlib.crc32(f"{arn}|{shard}:{start}:{issued}".encode()) or shard < 0 or start < 0:
            raise ValueError
    except (ValueError, ValidationException, binascii.Error, UnicodeDecodeError):
        raise ValidationException(f"Invalid ShardIterator: {iterator}") from None
    return arn, shard, start, issued


def _check_not_trimmed(svc, seq: int) -> None:
    if seq < streams.horizon_sequence(streams.retention_of(svc)):
        raise TrimmedDataAccessException(
            "The operation attempted to read past the oldest stream record in a shard: sequence number "
            f"{streams.sequence_text(seq)} is older than the trim horizon")


# ------------------------------------------------------------------ operations

@operation("Streams.ListStreams")
async def list_streams(svc, request: dict) -> bytes:
    limit = _limit(request, 100)
    name = request.get("TableName")
    if name is not None:
        check_table_name(name)
    schemas = streams.schemas_of(svc.catalog, name)     # a deleted table's streams are listed for 24 h
    if name is not None and name not in svc.catalog.tables and not schemas:
        raise ResourceNotFoundException(f"Requested resource not found: Table: {name} not found")
    start = request.get("ExclusiveStartStreamArn")
    # Newest stream first (the label is the creation time), so that the streams
    # a reader cares about come before a day's worth of deleted tables' ones;
    # the position is the (label, ARN) pair, which never changes, so paging is
    # stable while streams are added or expire.
    entries = sorted(((stream["label"], streams.stream_arn(schema, stream), schema.name)
                      for schema in schemas for stream in schema.streams), reverse=True)
    if start is not None:
        position = (_parse_arn(start, "ExclusiveStartStreamArn")[1], start)
        entries = [e for e in entries if e[:2] < position]
    page = entries[:limit]
    response = {"Streams": [{"StreamArn": arn, "TableName": table, "StreamLabel": label}
                            for label, arn, table in page]}
    if len(entries) > limit:
        response["LastEvaluatedStreamArn"] = page[-1][1]
    return orjson.dumps(response)


@operation("Streams.DescribeStream")
async def describe_stream(svc, request: dict) -> bytes:
    schema, stream = _stream_of(svc, request.get("StreamArn"))
    limit = _limit(request, 100)
    start = request.get("ExclusiveStartShardId")
    ids = [streams.shard_id_of(stream)]     # one stream shard, as a new table's stream has in DynamoDB
    if start is not None:
        ids = [shard_id for shard_id in ids if shard_id > start]
    shard_filter = request.get("ShardFilter")
    if shard_filter is not None:
        if shard_filter.get("Type") != "CHILD_SHARDS":
            raise constraint_error([f"Value '{shard_filter.get('Type')}' at 'shardFilter.type' failed to satisfy "
                                    "constraint: Member must satisfy enum value set: [CHILD_SHARDS]"])
        ids = []        # stream shards here never split: none has a child
    page = ids[:limit]
    numbers = {"StartingSequenceNumber": streams.sequence_text(_starting_sequence(svc, stream))}
    ending = streams.ending_sequence(stream)
    if ending is not None:
        numbers["EndingSequenceNumber"] = streams.sequence_text(ending)
    description = {
        "StreamArn": streams.stream_arn(schema, stream),
        "StreamLabel": stream["label"],
        "StreamStatus": streams.stream_status(stream),
        "StreamViewType": stream["view_type"],
        "CreationRequestDateTime": stream["created_ms"] / 1000,
        "TableName": schema.name,
        "KeySchema": schema.key_schema,
        "Shards": [{"ShardId": shard_id, "SequenceNumberRange": numbers} for shard_id in page],
    }
    if len(ids) > limit:
        description["LastEvaluatedShardId"] = page[-1]
    return orjson.dumps({"StreamDescription": description})


@operation("Streams.GetShardIterator")
async def get_shard_iterator(svc, request: dict) -> bytes:
    kind = request.get("ShardIteratorType")
    if kind is None:
        raise constraint_error(["Value null at 'shardIteratorType' failed to satisfy constraint: "
                                "Member must not be null"])
    if kind not in ITERATOR_TYPES:
        raise constraint_error([f"Value '{kind}' at 'shardIteratorType' failed to satisfy constraint: "
                                "Member must satisfy enum value set: [TRIM_HORIZON, LATEST, "
                                "AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER]"])
    text = request.get("SequenceNumber")
    if kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        if text is None:
            raise ValidationException(f"SequenceNumber is required for ShardIteratorType {kind}")
    elif text is not None:
        raise ValidationException(f"SequenceNumber must not be given for ShardIteratorType {kind}")
    if text is not None and not (text.isdecimal() and text.isascii() and len(text) <= MAX_SEQUENCE_DIGITS):
        raise ValidationException(f"Invalid SequenceNumber: {text}")
    schema, stream = _stream_of(svc, request.get("StreamArn"))
    shard_id = request.get("ShardId")
    if shard_id is None:
        raise constraint_error(["Value null at 'shardId' failed to satisfy constraint: Member must not be null"])
    index = streams.shard_index_of(stream, shard_id) if isinstance(shard_id, str) else None
    if index is None:
        raise ResourceNotFoundException(f"Requested resource not found: Shard does not exist: {shard_id}")
    if kind == "TRIM_HORIZON":
        start = 0
    elif kind == "LATEST":
        # Just after the most recent record: where every server shard's next record will be numbered
        # from, the smallest of them, so that no record written once this answers is passed over.
        positions = await svc.broadcast(STREAM_POSITION, b"")
        start = min(int(p) for p in positions)
    else:
        seq = int(text)
        _check_not_trimmed(svc, seq)
        start = seq if kind == "AT_SEQUENCE_NUMBER" else seq + 1
    return orjson.dumps({"ShardIterator": encode_iterator(streams.stream_arn(schema, stream), index, start)})


@operation("Streams.GetRecords")
async def get_records(svc, request: dict) -> bytes:
    arn, index, start, issued = decode_iterator(request.get("ShardIterator"))
    limit = _limit(request, MAX_RECORDS)
    if time.time() * 1000 - issued > ITERATOR_LIFETIME_MS:
        raise ExpiredIteratorException("Iterator expired. The iterator was created more than 15 minutes ago")
    schema, stream = _stream_of(svc, arn, "ShardIterator")
    if index != 0:
        raise ResourceNotFoundException(f"Requested resource not found: Shard does not exist: "
                                        f"{streams.shard_id_of(stream, index)}")
    horizon = streams.horizon_sequence(streams.retention_of(svc))
    if start:
        _check_not_trimmed(svc, start)
    # Every server shard reads its part from the same position, each at most the whole page.
    part = orjson.dumps({"prefix": streams.storage_prefix(schema, stream), "start": str(max(start, horizon)),
                         "limit": limit, "bytes": MAX_RECORDS_BYTES})
    replies = await svc.broadcast(STREAM_READ, part)
    records, following, at_end = streams.merge_parts([_decode_part(r) for r in replies], limit,
                                                     MAX_RECORDS_BYTES)
    streams.state_of(svc).records_read_total += len(records)
    parts = [b'{"Records":[', b",".join(records), b"]"]
    if not (at_end and stream.get("disabled_ms") is not None):
        # A disabled stream's shard is closed: once read to the end there is no next iterator.
        parts += [b',"NextShardIterator":', orjson.dumps(encode_iterator(arn, index, following))]
    parts.append(b"}")
    return b"".join(parts)


# ------------------------------------------------------------------ fabric

_PART_HEADER = struct.Struct(">?I")     # at end, record count; then "covered" (decimal text), NUL
_PART_RECORD = struct.Struct(">QI")     # sequence number, JSON length; then the record's JSON


@fabric_verb(STREAM_POSITION)
async def stream_position(svc, src: int, payload: bytes) -> bytes:
    return str(streams.read_position(svc)).encode()


@fabric_verb(STREAM_READ)
async def stream_read(svc, src: int, payload: bytes) -> bytes:
    """This shard's part of a GetRecords page: its records from the position on (streams.read_records)."""
    part = orjson.loads(payload)
    records, covered, at_end = await streams.read_records(svc, part["prefix"], int(part["start"]),
                                                          part["limit"], part["bytes"])
    chunks = [_PART_HEADER.pack(at_end, len(records)), str(covered).encode(), b"\0"]
    for seq, value in records:
        chunks += [_PART_RECORD.pack(seq, len(value)), value]
    return b"".join(chunks)


def _decode_part(reply: bytes) -> tuple[list[tuple[int, bytes]], int, bool]:
    at_end, count = _PART_HEADER.unpack_from(reply)
    end = reply.index(b"\0", _PART_HEADER.size)
    covered = int(reply[_PART_HEADER.size:end])
    view = memoryview(reply)
    pos = end + 1
    records = []
    for _ in range(count):
        seq, length = _PART_RECORD.unpack_from(reply, pos)
        pos += _PART_RECORD.size
        records.append((seq, bytes(view[pos:pos + length])))
        pos += length
    return records, covered, at_end
