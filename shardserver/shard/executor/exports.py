"""Exports to and imports from Amazon S3: ListExports, DescribeExport, ExportTableToPointInTime,
ListImports, DescribeImport, ImportTable.

This server has no S3 to write to or read from, so no export or import ever exists: the lists
are empty, Describe names none (DynamoDB's not-found errors), and a new export or import is
refused once its request has been checked as DynamoDB checks it.
"""

from __future__ import annotations

import re

import orjson

from shardserver.errors import (ExportNotFoundException, ImportNotFoundException, ResourceInUseException,
                                TableNotFoundException, ValidationException)
from shardserver.shard.catalog import ACCOUNT, REGION
from shardserver.shard.executor import operation
from shardserver.shard.executor.backups import require_pitr
from shardserver.shard.executor.control import split_arn
from shardserver.shard.executor.tables import Constraints, schema_from_create_request

S3_BUCKET = re.compile(r"[a-z0-9A-Z]+[.\-\w]*[a-z0-9A-Z]+\Z")
IMPORT_TOKEN = re.compile(r"([0-9a-f]{16})+\Z")
EXPORT_FORMATS = ("DYNAMODB_JSON", "ION")
EXPORT_TYPES = ("FULL_EXPORT", "INCREMENTAL_EXPORT")
SSE_ALGORITHMS = ("AES256", "KMS")
INPUT_FORMATS = ("DYNAMODB_JSON", "ION", "CSV")
COMPRESSION_TYPES = ("ZSTD", "NONE", "GZIP")        # in the order DynamoDB's message lists them
CSV_DELIMITER = re.compile(r"[,;:|\t ]\Z")
_NO_S3 = "this server has no Amazon S3 to {} (it stores every table on its own disks)"


def _job_arn(request: dict, member: str, kind: str) -> str:
    """The ExportArn or ImportArn of a request, refused unless it has the shape of this
    server's export or import ARNs (``arn:aws:dynamodb:<region>:<account>:table/<name>/<kind>/<id>``)."""
    arn = request.get(member)
    field = member[0].lower() + member[1:]
    constraints = Constraints()
    if constraints.required(arn, field):
        constraints.length(arn, field, 37, 1024)
    constraints.check()
    parts = split_arn(arn)
    path = parts[4].split("/") if parts is not None else []
    if parts is None or parts[:4] != ("aws", "dynamodb", REGION, ACCOUNT) or len(path) != 4 or \
            path[0] != "table" or path[2] != kind or not path[1] or not path[3]:
        raise ValidationException(f"Invalid {kind.capitalize()} ARN")
    return arn


def _table_arn(svc, arn):
    """The table an export's TableArn names (it takes an ARN only), or DynamoDB's error."""
    parts = split_arn(arn)
    if parts is None:
        raise ValidationException("One or more parameter values were invalid: tableArn is not a valid ARN")
    resource = parts[4]
    name = resource[len("table/"):] if resource.startswith("table/") else ""
    schema = svc.catalog.tables.get(name)
    if schema is None or schema.arn != arn:
        raise TableNotFoundException(f"Table not found: {arn}")
    return schema


def _s3_bucket(constraints: Constraints, bucket, field: str) -> None:
    if constraints.required(bucket, field):
        constraints.length(bucket, field, 0, 255)
        constraints.pattern(bucket, field, S3_BUCKET, r"^[a-z0-9A-Z]+[\.\-\w]*[a-z0-9A-Z]+$")


def _empty_page(request: dict, size_member: str, answer: str, imports: bool = False) -> bytes:
    """ListExports' or ListImports' answer: its members checked, and no job listed."""
    token = request.get("NextToken")
    constraints = Constraints()
    constraints.length(request.get("TableArn"), "tableArn", 1, 1024)
    constraints.value(request.get(size_member), size_member[0].lower() + size_member[1:], 1, 25)
    if imports:
        constraints.length(token, "nextToken", 112, 1024)
        constraints.pattern(token, "nextToken", IMPORT_TOKEN, "([0-9a-f]{16})+")
    constraints.check()
    if token is not None:
        # No list here ever has a second page, so no token this server could have given.
        raise ValidationException(f"Invalid Request: Provided nextToken is invalid: {token}")
    return orjson.dumps({answer: []})


@operation("ListExports")
async def list_exports(svc, request: dict) -> bytes:
    return _empty_page(request, "MaxResults", "ExportSummaries")


@operation("DescribeExport")
async def describe_export(svc, request: dict) -> bytes:
    arn = _job_arn(request, "ExportArn", "export")
    raise ExportNotFoundException(f"Export not found: Export not found: {arn}")


@operation("ExportTableToPointInTime")
async def export_table_to_point_in_time(svc, request: dict) -> bytes:
    if request.get("TableArn") == "":
        raise ValidationException("Invalid TableArn: Invalid Table ARN")     # not the length rule's words
    constraints = Constraints()
    if constraints.required(request.get("TableArn"), "tableArn"):
        constraints.length(request["TableArn"], "tableArn", 1, 1024)
    _s3_bucket(constraints, request.get("S3Bucket"), "s3Bucket")
    constraints.length(request.get("S3Prefix"), "s3Prefix", 0, 1024)
    constraints.enum(request.get("S3SseAlgorithm"), "s3SseAlgorithm", SSE_ALGORITHMS)
    constraints.enum(request.get("ExportFormat"), "exportFormat", EXPORT_FORMATS)
    constraints.enum(request.get("ExportType"), "exportType", EXPORT_TYPES)
    constraints.check()
    incremental = request.get("IncrementalExportSpecification")
    if request.get("ExportType") == "INCREMENTAL_EXPORT" and (incremental or {}).get("ExportFromTime") is None:
        raise ValidationException("Invalid Request: ExportFromTime must be provided in IncrementalExportSpecification")
    schema = _table_arn(svc, request["TableArn"])
    require_pitr(schema)        # an export reads the table's continuous backups
    raise ValidationException(f"Invalid Request: table {schema.name} cannot be exported: "
                              + _NO_S3.format("export to"))


@operation("ListImports")
async def list_imports(svc, request: dict) -> bytes:
    return _empty_page(request, "PageSize", "ImportSummaryList", imports=True)


@operation("DescribeImport")
async def describe_import(svc, request: dict) -> bytes:
    arn = _job_arn(request, "ImportArn", "import")
    raise ImportNotFoundException(f"Import not found: {arn}")


@operation("ImportTable")
async def import_table(svc, request: dict) -> bytes:
    source, parameters = request.get("S3BucketSource"), request.get("TableCreationParameters")
    constraints = Constraints()
    if constraints.required(source, "s3BucketSource"):
        _s3_bucket(constraints, source.get("S3Bucket"), "s3BucketSource.s3Bucket")
    if constraints.required(request.get("InputFormat"), "inputFormat"):
        constraints.enum(request["InputFormat"], "inputFormat", INPUT_FORMATS)
    constraints.enum(request.get("InputCompressionType"), "inputCompressionType", COMPRESSION_TYPES)
    options = request.get("InputFormatOptions") or {}
    delimiter = (options.get("Csv") or {}).get("Delimiter")
    constraints.pattern(delimiter, "inputFormatOptions.csv.delimiter", CSV_DELIMITER, r"[,;:|\t ]")
    constraints.length(delimiter, "inputFormatOptions.csv.delimiter", 1, 1)
    if constraints.required(parameters, "tableCreationParameters"):
        name = parameters.get("TableName")
        if constraints.required(name, "tableCreationParameters.tableName"):
            constraints.name(name, "tableCreationParameters.tableName")
        constraints.required(parameters.get("AttributeDefinitions"), "tableCreationParameters.attributeDefinitions")
        constraints.required(parameters.get("KeySchema"), "tableCreationParameters.keySchema")
    constraints.check()
    if options.get("Csv") is not None and request["InputFormat"] != "CSV":
        raise ValidationException("Invalid Request: Unsupported InputFormatOptions for the given input format: "
                                  f"{request['InputFormat']}.")
    schema_from_create_request(parameters)      # the new table is checked as CreateTable checks it
    name = parameters["TableName"]
    if name in svc.catalog.tables:
        raise ResourceInUseException(f"Table already exists: {name}")
    raise ValidationException(f"Invalid Request: table {name} cannot be imported: " + _NO_S3.format("import from"))
