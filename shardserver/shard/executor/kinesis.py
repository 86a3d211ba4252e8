"""Kinesis Data Streams destinations: DescribeKinesisStreamingDestination and the
Enable/Disable/UpdateKinesisStreamingDestination operations.

This server has no Kinesis to write to: no table has a destination, Describe lists none,
Enable is refused, and Disable and Update answer what DynamoDB answers for a destination
that was never enabled.  Changes reach consumers through DynamoDB Streams instead.
"""

from __future__ import annotations

import orjson

from shardserver.errors import ValidationException
from shardserver.shard.executor import operation
from shardserver.shard.executor.control import table_named
from shardserver.shard.executor.tables import Constraints

PRECISIONS = ("MILLISECOND", "MICROSECOND")
_NOT_VALID = "Table is not in a valid state to enable Kinesis Streaming Destination: "


@operation("DescribeKinesisStreamingDestination")
async def describe_kinesis_streaming_destination(svc, request: dict) -> bytes:
    schema = table_named(svc, request.get("TableName"))
    return orjson.dumps({"TableName": schema.name, "KinesisDataStreamDestinations": []})


def _destination_request(svc, request: dict, configuration: str):
    """The table of an Enable/Disable/Update request, its members checked first."""
    constraints = Constraints()
    constraints.required(request.get("TableName"), "tableName")
    if constraints.required(request.get("StreamArn"), "streamArn"):
        constraints.length(request["StreamArn"], "streamArn", 37, 1024)
    member = configuration[0].lower() + configuration[1:]
    precision = (request.get(configuration) or {}).get("ApproximateCreationDateTimePrecision")
    constraints.enum(precision, f"{member}.approximateCreationDateTimePrecision", PRECISIONS)
    constraints.check()
    return table_named(svc, request["TableName"])


@operation("EnableKinesisStreamingDestination")
async def enable_kinesis_streaming_destination(svc, request: dict) -> bytes:
    schema = _destination_request(svc, request, "EnableKinesisStreamingConfiguration")
    raise ValidationException(f"Kinesis Data Streams destinations are not supported by this server: table "
                              f"{schema.name} cannot stream to {request['StreamArn']}. Its changes are "
                              "available through DynamoDB Streams (StreamSpecification).")


@operation("DisableKinesisStreamingDestination")
async def disable_kinesis_streaming_destination(svc, request: dict) -> bytes:
    _destination_request(svc, request, "EnableKinesisStreamingConfiguration")
    raise ValidationException(f"{_NOT_VALID}KinesisStreamingDestination must be ACTIVE to perform DISABLE "
                              "operation.")


@operation("UpdateKinesisStreamingDestination")
async def update_kinesis_streaming_destination(svc, request: dict) -> bytes:
    schema = _destination_request(svc, request, "UpdateKinesisStreamingConfiguration")
    if not any(v is not None for v in (request.get("UpdateKinesisStreamingConfiguration") or {}).values()):
        raise ValidationException("Streaming destination cannot be updated with given parameters: "
                                  "UpdateKinesisStreamingConfiguration cannot be null or contain only null values")
    raise ValidationException(f"{_NOT_VALID}Kinesis streaming is not in ACTIVE state. Updates are only allowed "
                              f"in ACTIVE state. TableName: {schema.name}, kdsArn: {request['StreamArn']}")
