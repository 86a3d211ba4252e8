"""Backups: CreateBackup, DescribeBackup, ListBackups, DeleteBackup, RestoreTableFromBackup,
and point-in-time recovery: DescribeContinuousBackups, UpdateContinuousBackups,
RestoreTableToPointInTime.

A backup is taken by every shard at once (``svc.broadcast``), each copying its
own part of the table as of one instant (``ShardStorage.snapshot``); its record
lives in the catalog (shardserver.shard.backups), so it outlives its table and
the server.  A restore is a new table whose storage every shard builds from
its own snapshot.  This server keeps no history of old item versions: a
point-in-time restore copies the table as it is, and is refused for any time
after which the table was written (InvalidRestoreTimeException), so
EarliestRestorableDateTime is the table's last write, never earlier.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time

import orjson

from shardserver.errors import (BackupInUseException, BackupNotFoundException,
                                InvalidRestoreTimeException, LimitExceededException,
                                PointInTimeRecoveryUnavailableException,
                                TableAlreadyExistsException, TableInUseException, TableNotFoundException,
                                ValidationException)
from shardserver.shard import backups, indexes
from shardserver.shard.catalog import ACCOUNT, TableSchema, new_table_id, now
from shardserver.shard.executor import operation
from shardserver.shard.executor.control import split_arn
from shardserver.shard.executor.tables import (MAX_TABLES, Constraints, _parse_billing, _sse_enabled,
                                               check_table_name, constraint_error, table_name_errors,
                                               throughput_constraints)

DEFAULT_RECOVERY_DAYS = 35
MIN_ARN_LENGTH = 37
BACKUP_ARN_RE = re.compile(r"arn:aws:dynamodb:[a-z0-9-]+:\d{12}:table/([a-zA-Z0-9_.-]{3,255})/backup/(\d{14}-[0-9a-f]{8})\Z")
DAY = 86400


# ------------------------------------------------------------------ names and ARNs

def _source_table(svc, name, field: str = "tableName") -> TableSchema:
    """A table by name or ARN (as these operations take it), or TableNotFoundException."""
    if not isinstance(name, str):
        raise constraint_error([f"Value null at '{field}' failed to satisfy constraint: Member must not be null"])
    if name.startswith("arn:"):
        schema = svc.catalog.tables.get(name.partition(":table/")[2])
        if schema is None or schema.arn != name:
            raise TableNotFoundException(f"Table not found: {name}")
        return schema
    check_table_name(name, field)
    schema = svc.catalog.tables.get(name)
    if schema is None:
        raise TableNotFoundException(f"Table not found: {name}")
    return schema


def _backup_id_of(arn, field: str = "backupArn") -> str:
    if not isinstance(arn, str):
        raise constraint_error([f"Value null at '{field}' failed to satisfy constraint: Member must not be null"])
    if arn == "" and field == "backupArn":
        raise ValidationException("Invalid Backup ARN")      # DynamoDB's words, not the length rule's
    if len(arn) < MIN_ARN_LENGTH:
        raise constraint_error([f"Value '{arn}' at '{field}' failed to satisfy constraint: "
                                f"Member must have length greater than or equal to {MIN_ARN_LENGTH}"])
    match = BACKUP_ARN_RE.match(arn)
    if match is None:
        if field == "backupArn":
            raise ValidationException("Invalid Backup ARN")
        raise ValidationException(f"Invalid BackupArn provided as input: {arn}")
    return match.group(2)


def _backup(svc, arn, field: str = "backupArn", visible_only: bool = True) -> dict:
    record = svc.catalog.backups.get(_backup_id_of(arn, field))
    if record is None or record["arn"] != arn or (visible_only and record.get("hidden")):
        raise BackupNotFoundException(f"Backup not found: {arn}")
    return record


# ------------------------------------------------------------------ shapes

def _details(record: dict) -> dict:
    details = {"BackupArn": record["arn"], "BackupName": record["name"], "BackupStatus": record["status"],
               "BackupType": record["type"], "BackupCreationDateTime": record["created"]}
    if record["status"] == "AVAILABLE":
        details["BackupSizeBytes"] = record["size"]
    return details


def _summary(record: dict) -> dict:
    table = TableSchema.from_json(record["table"])
    return {"TableName": table.name, "TableId": table.table_id, "TableArn": table.arn, **_details(record)}


def _description(record: dict) -> dict:
    table = TableSchema.from_json(record["table"])
    source = {"TableName": table.name, "TableId": table.table_id, "TableArn": table.arn,
              "TableSizeBytes": record.get("size", 0), "KeySchema": table.key_schema,
              "TableCreationDateTime": table.creation_time,
              "ProvisionedThroughput": {"ReadCapacityUnits": table.read_capacity,
                                        "WriteCapacityUnits": table.write_capacity},
              "ItemCount": record.get("items", 0), "BillingMode": table.billing_mode}
    if table.extra.get("OnDemandThroughput"):
        source["OnDemandThroughput"] = dict(table.extra["OnDemandThroughput"])
    features = {}
    if table.local_indexes:
        features["LocalSecondaryIndexes"] = [{k: i[k] for k in ("IndexName", "KeySchema", "Projection")}
                                             for i in table.local_indexes]
    if table.global_indexes:
        features["GlobalSecondaryIndexes"] = [{**{k: i[k] for k in ("IndexName", "KeySchema", "Projection")},
                                               "ProvisionedThroughput": dict(i["ProvisionedThroughput"])}
                                              for i in table.global_indexes]
    if table.active_stream is not None:
        features["StreamDescription"] = {"StreamEnabled": True, "StreamViewType": table.active_stream["view_type"]}
    if table.ttl_attribute:
        # Recorded answers describe a table without Time to Live with no TimeToLiveDescription
        # (the AWS CLI's describe-backup example: SourceTableFeatureDetails {}).
        features["TimeToLiveDescription"] = {"TimeToLiveStatus": "ENABLED", "AttributeName": table.ttl_attribute}
    described = table.description()
    if "SSEDescription" in described:
        features["SSEDescription"] = described["SSEDescription"]
    return {"BackupDetails": _details(record), "SourceTableDetails": source, "SourceTableFeatureDetails": features}


# ------------------------------------------------------------------ taking a snapshot

async def _snapshot(svc, schema: TableSchema, record: dict, unchanged_before: float | None = None) -> dict:
    """Registers the backup (CREATING), snapshots every shard's part, marks it AVAILABLE.
    On failure the record goes, and with it (as every shard reconciles) each part."""
    await svc.change_catalog(b"backup", orjson.dumps({"action": "create", "record": record}))
    payload = orjson.dumps({"id": record["id"], "tables": backups.storage_ids(schema),
                            "unchanged_before": unchanged_before})
    try:
        replies = [orjson.loads(r) for r in await svc.broadcast(backups.SNAPSHOT, payload)]
        if any(r.get("missing") for r in replies):
            raise TableNotFoundException(f"Table not found: {schema.name}")
        if any(r.get("refused") for r in replies):
            raise InvalidRestoreTimeException(
                "The table was written after the requested RestoreDateTime: this server keeps no earlier "
                "versions, so only times from EarliestRestorableDateTime on can be restored")
        change = {"action": "available", "id": record["id"], "arn": record["arn"],
                  "size": sum(r["bytes"] for r in replies), "items": sum(r["items"] for r in replies)}
        await svc.change_catalog(b"backup", orjson.dumps(change))
    except BaseException:
        try:
            await svc.change_catalog(b"backup", orjson.dumps({"action": "forget", "id": record["id"],
                                                              "arn": record["arn"]}))
        except Exception:
            pass    # the record stays CREATING; DeleteBackup removes it
        raise
    return svc.catalog.backups.get(record["id"]) or {**record, **change, "status": "AVAILABLE"}


def _new_record(schema: TableSchema, name: str, hidden: bool = False) -> dict:
    created = now()
    backup_id = f"{int(created * 1000):014d}-{secrets.token_hex(4)}"
    record = {"id": backup_id, "arn": f"{schema.arn}/backup/{backup_id}", "name": name, "status": "CREATING",
              "type": "USER", "created": created, "size": 0, "items": 0, "table": schema.to_json()}
    if hidden:
        record["hidden"] = True
    return record


def _check_not_restoring(schema: TableSchema) -> None:
    if "RestoreSource" in schema.extra:
        raise TableInUseException(f"Table is being restored: {schema.name}")


@operation("CreateBackup")
async def create_backup(svc, request: dict) -> bytes:
    name = request.get("BackupName")
    errors = table_name_errors(name, "backupName", pattern_first=True)
    if errors:
        raise constraint_error(errors)
    schema = _source_table(svc, request.get("TableName"))
    _check_not_restoring(schema)
    record = await _snapshot(svc, schema, _new_record(schema, name))
    # The copy is complete already, but DynamoDB answers CreateBackup with the backup CREATING
    # (the AWS CLI's create-backup example and recorded answers): DescribeBackup tells AVAILABLE.
    return orjson.dumps({"BackupDetails": {**_details(record), "BackupStatus": "CREATING"}})


@operation("DescribeBackup")
async def describe_backup(svc, request: dict) -> bytes:
    return orjson.dumps({"BackupDescription": _description(_backup(svc, request.get("BackupArn")))})


@operation("DeleteBackup")
async def delete_backup(svc, request: dict) -> bytes:
    record = _backup(svc, request.get("BackupArn"))
    description = _description(record)
    await svc.change_catalog(b"backup", orjson.dumps({"action": "delete", "id": record["id"], "arn": record["arn"]}))
    description["BackupDetails"]["BackupStatus"] = "DELETED"
    return orjson.dumps({"BackupDescription": description})


BACKUP_TYPES = ("USER", "SYSTEM", "AWS_BACKUP", "ALL")


@operation("ListBackups")
async def list_backups(svc, request: dict) -> bytes:
    limit = request.get("Limit", 100)
    if not 1 <= limit <= 100:
        raise constraint_error([f"Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value "
                                + ("less than or equal to 100" if limit > 100 else "greater than or equal to 1")])
    kind = request.get("BackupType", "USER")
    if kind not in BACKUP_TYPES:
        raise constraint_error([f"Value '{kind}' at 'backupType' failed to satisfy constraint: "
                                "Member must satisfy enum value set: [USER, SYSTEM, AWS_BACKUP, ALL]"])
    table = request.get("TableName")
    if isinstance(table, str) and not table.startswith("arn:"):
        check_table_name(table)
    lower, upper = request.get("TimeRangeLowerBound"), request.get("TimeRangeUpperBound")
    if lower is not None and upper is not None and lower > upper:
        raise ValidationException("One or more parameter values were invalid: Time range lower bound must be less "
                                  "than or equal to upper bound")
    start = request.get("ExclusiveStartBackupArn")
    start_key = (_backup_id_of(start, "exclusiveStartBackupArn"), start) if start is not None else None
    chosen = []
    for record in svc.catalog.backups.values():
        source = record["table"]
        if record.get("hidden") or kind not in ("ALL", record["type"]):
            continue
        if table is not None and table not in (source["name"], TableSchema.from_json(source).arn):
            continue
        if (lower is not None and record["created"] < lower) or (upper is not None and record["created"] >= upper):
            continue
        if start_key is not None and (record["id"], record["arn"]) <= start_key:
            continue
        chosen.append(record)
    chosen.sort(key=lambda r: (r["id"], r["arn"]))
    response = {"BackupSummaries": [_summary(r) for r in chosen[:limit]]}
    if len(chosen) > limit:
        response["LastEvaluatedBackupArn"] = chosen[limit - 1]["arn"]
    return orjson.dumps(response)


# ------------------------------------------------------------------ restoring

def _overridden_indexes(source: TableSchema, request: dict, types: dict, mode: str, read: int, write: int):
    """The restored table's (local, global) indexes, and the local ones' source storage ids:
    every index of the backup, or those the overrides keep (they must match the backup's)."""
    def kept(field, definitions):
        overrides = request.get(field)
        if overrides is None:
            return [(d, d) for d in definitions]
        by_name = {d["IndexName"]: d for d in definitions}
        out = []
        for override in overrides:
            definition = by_name.get(override.get("IndexName"))
            if definition is None or override.get("KeySchema") != definition["KeySchema"] or \
                    indexes._projection_of(override, field) != definition["Projection"]:
                raise ValidationException(f"Invalid Request: Index {override.get('IndexName')} does not match a "
                                          "secondary index that existed in the source table and cannot be created "
                                          "during the restore operation")
            out.append((override, definition))
        return out

    local, local_sources = [], {}
    for override, definition in kept("LocalSecondaryIndexOverride", source.local_indexes):
        restored = indexes.parse_lsi(override, "localSecondaryIndexOverride", types, source.hash_key)
        local.append(restored)
        local_sources[restored["IndexId"]] = definition
    global_ = []
    for override, definition in kept("GlobalSecondaryIndexOverride", source.global_indexes):
        if override is not definition:
            name = override["IndexName"]
            if mode == "PAY_PER_REQUEST" and override.get("ProvisionedThroughput") is not None:
                raise ValidationException("Invalid Request: Cannot override ProvisionedThroughput if BillingMode is "
                                          f"overridden to PAY_PER_REQUEST for index {name}")
            if mode == "PROVISIONED" and override.get("ProvisionedThroughput") is None and \
                    not (definition.get("ProvisionedThroughput") or {}).get("ReadCapacityUnits"):
                raise ValidationException(f"Invalid Request: Must specify provisioned throughput for index {name}")
        if mode == "PAY_PER_REQUEST" and override is definition:
            override = {k: v for k, v in override.items() if k != "ProvisionedThroughput"}
        elif mode == "PROVISIONED" and (override is definition or "ProvisionedThroughput" not in override):
            # The backup's own capacity for the index, or the table's if it had none (on demand).
            throughput = definition.get("ProvisionedThroughput") or {}
            if not throughput.get("ReadCapacityUnits"):
                throughput = {"ReadCapacityUnits": read, "WriteCapacityUnits": write}
            override = {**override, "ProvisionedThroughput": throughput}
        global_.append(indexes.parse_gsi(override, "globalSecondaryIndexOverride", types, mode, read, write,
                                         status="CREATING"))    # rebuilt by the backfill
    return local, global_, local_sources


def _check_billing_overrides(request: dict, mode: str) -> None:
    """A restore's capacity overrides against the billing mode the restored table will have."""
    overridden = request.get("BillingModeOverride")
    if request.get("ProvisionedThroughputOverride") is not None and mode == "PAY_PER_REQUEST":
        if overridden == "PAY_PER_REQUEST":
            raise ValidationException("Invalid Request: Cannot override ProvisionedThroughput if BillingMode is "
                                      "overridden to PAY_PER_REQUEST")
        raise ValidationException("Invalid Request: Cannot override ProvisionedThroughput unless BillingMode is "
                                  "PROVISIONED")
    if request.get("ProvisionedThroughputOverride") is None and overridden == "PROVISIONED":
        raise ValidationException("Invalid Request: Must override ProvisionedThroughput if BillingMode is overridden "
                                  "to PROVISIONED")
    on_demand = request.get("OnDemandThroughputOverride") or {}
    for unit in ("MaxReadRequestUnits", "MaxWriteRequestUnits"):
        if on_demand.get(unit) is not None and mode == "PROVISIONED":
            raise ValidationException(f"Invalid Request: Cannot override {unit} for OnDemandThroughput unless "
                                      "BillingModeOverride is PAY_PER_REQUEST")


def _restored_schema(svc, source: TableSchema, request: dict, backup_id: str, summary: dict) -> TableSchema:
    name = check_table_name(request.get("TargetTableName"), "targetTableName")
    overridden = request.get("BillingModeOverride")
    billing = {"BillingMode": overridden or source.billing_mode}
    _check_billing_overrides(request, billing["BillingMode"])      # the request's shape before the target
    if name in svc.catalog.tables:
        raise TableAlreadyExistsException(f"Table already exists: {name}")
    if len(svc.catalog.tables) >= MAX_TABLES:
        raise LimitExceededException(f"Subscriber limit exceeded: Only {MAX_TABLES} tables are allowed")
    if request.get("ProvisionedThroughputOverride") is not None:
        billing["ProvisionedThroughput"] = request["ProvisionedThroughputOverride"]
    elif billing["BillingMode"] == "PROVISIONED" and source.billing_mode == "PROVISIONED":
        billing["ProvisionedThroughput"] = {"ReadCapacityUnits": source.read_capacity,
                                            "WriteCapacityUnits": source.write_capacity}
    mode, read, write = _parse_billing(billing)
    types = {d["AttributeName"]: d["AttributeType"] for d in source.attribute_definitions}
    local, global_, local_sources = _overridden_indexes(source, request, types, mode, read, write)
    used = set(source.key_names)
    for index in local + global_:
        used.update(e["AttributeName"] for e in index["KeySchema"])
    table_id = new_table_id()
    # What DynamoDB restores of the table's settings: its encryption and on-demand caps (its class,
    # deletion protection, stream, TTL, tags and policy stay behind).
    extra = {k: source.extra[k] for k in ("SSEEnabled", "OnDemandThroughput") if k in source.extra}
    on_demand = request.get("OnDemandThroughputOverride")
    if on_demand is not None:
        extra["OnDemandThroughput"] = {k: on_demand[k] for k in ("MaxReadRequestUnits", "MaxWriteRequestUnits")
                                       if isinstance(on_demand.get(k), int)}
    sse = request.get("SSESpecificationOverride")
    if sse is not None:
        extra["SSEEnabled"] = _sse_enabled(sse, "sSESpecificationOverride")
    restored_ids = {table_id: source.table_id}
    for definition in local:
        restored_ids[indexes.index_storage_id(table_id, definition, False)] = indexes.index_storage_id(
            source.table_id, local_sources[definition["IndexId"]], False)
    extra["RestoreSource"] = {"backup": backup_id, "tables": restored_ids}
    extra["RestoreSummary"] = {**summary, "RestoreInProgress": True}
    return TableSchema(name=name, table_id=table_id, hash_key=source.hash_key, hash_type=source.hash_type,
                       range_key=source.range_key, range_type=source.range_type,
                       attribute_definitions=[d for d in source.attribute_definitions if d["AttributeName"] in used],
                       creation_time=now(), billing_mode=mode, read_capacity=read, write_capacity=write,
                       local_indexes=local, global_indexes=global_, extra=extra)


RESTORE_WAIT_SECONDS = 60


async def _restore(svc, schema: TableSchema, record: dict) -> bytes:
    """Creates the restored table; every shard builds its storage from its snapshot in the
    background as it learns of the table.  Answers once all have (or after a minute: the
    table stays CREATING and the catalog coordinator ends the restore when they have)."""
    await svc.change_catalog(b"backup", orjson.dumps({"action": "restore", "schema": schema.to_json(),
                                                      "arn": record["arn"]}))
    description = schema.description(record.get("items", 0), record.get("size", 0), "CREATING")
    await backups.finish_restore(svc, schema.name, schema.table_id, RESTORE_WAIT_SECONDS)
    return orjson.dumps({"TableDescription": description})


def _check_restore_members(request: dict) -> None:
    """RestoreTableFromBackup's member constraints, reported together before the backup is
    looked for, in DynamoDB's order; a target name of the wrong length has its own words."""
    target = request.get("TargetTableName")
    if isinstance(target, str) and not 3 <= len(target) <= 255:
        raise ValidationException("TableName must be at least 3 characters long and at most 255 characters long")
    constraints = Constraints()
    constraints.problems = table_name_errors(target, "targetTableName")
    constraints.enum(request.get("BillingModeOverride"), "billingModeOverride", ("PROVISIONED", "PAY_PER_REQUEST"))
    throughput_constraints(constraints, request.get("ProvisionedThroughputOverride"),
                           "provisionedThroughputOverride", ("WriteCapacityUnits", "ReadCapacityUnits"))
    for member in ("GlobalSecondaryIndexOverride", "LocalSecondaryIndexOverride"):
        for i, index in enumerate(request.get(member) or (), 1):
            field = f"{member[0].lower()}{member[1:]}.{i}.member"
            if constraints.required(index.get("IndexName"), f"{field}.indexName"):
                constraints.name(index["IndexName"], f"{field}.indexName")
            constraints.required(index.get("KeySchema"), f"{field}.keySchema")
            constraints.required(index.get("Projection"), f"{field}.projection")
    sse = request.get("SSESpecificationOverride")
    if sse is not None:
        constraints.length(sse.get("KMSMasterKeyId"), "sSESpecificationOverride.kMSMasterKeyId", low=1)
    constraints.check()
    on_demand = request.get("OnDemandThroughputOverride") or {}
    for unit in ("MaxReadRequestUnits", "MaxWriteRequestUnits"):
        if on_demand.get(unit) is not None and on_demand[unit] < 1 and on_demand[unit] != -1:
            raise ValidationException(f"Invalid Request: Requested {unit} for OnDemandThroughput is outside of "
                                      "valid range")
    if sse is not None:
        _sse_enabled(sse, "sSESpecificationOverride")


@operation("RestoreTableFromBackup")
async def restore_table_from_backup(svc, request: dict) -> bytes:
    _check_restore_members(request)
    record = _backup(svc, request.get("BackupArn"))
    if record["status"] != "AVAILABLE":
        raise BackupInUseException(f"Backup is being created: {record['arn']}")
    source = TableSchema.from_json(record["table"])
    # RestoreDateTime is "point in time or source backup time": the moment the backup copied.
    summary = {"SourceBackupArn": record["arn"], "SourceTableArn": source.arn, "RestoreDateTime": record["created"]}
    return await _restore(svc, _restored_schema(svc, source, request, record["id"], summary), record)


# ------------------------------------------------------------------ point-in-time recovery

def _pitr_setting(schema: TableSchema) -> dict | None:
    setting = schema.extra.get("PointInTimeRecovery")
    return setting if setting and setting.get("Enabled") else None


def require_pitr(schema: TableSchema) -> dict:
    """The table's point-in-time recovery setting, or DynamoDB's error when it is not enabled."""
    setting = _pitr_setting(schema)
    if setting is None:
        raise PointInTimeRecoveryUnavailableException(f"Point in time recovery is not enabled for table '{schema.name}'")
    return setting


async def _continuous_backups(svc, schema: TableSchema) -> dict:
    setting = _pitr_setting(schema)
    if setting is None:
        pitr = {"PointInTimeRecoveryStatus": "DISABLED"}
    else:
        current = time.time()
        latest = math.floor(current)
        earliest = max(math.floor(await _unchanged_since(svc, schema)), math.floor(setting["EnabledAt"]),
                       math.floor(current - setting["RecoveryPeriodInDays"] * DAY))
        pitr = {"PointInTimeRecoveryStatus": "ENABLED", "RecoveryPeriodInDays": setting["RecoveryPeriodInDays"],
                "EarliestRestorableDateTime": min(earliest, latest), "LatestRestorableDateTime": latest}
    return {"ContinuousBackupsDescription": {"ContinuousBackupsStatus": "ENABLED",
                                             "PointInTimeRecoveryDescription": pitr}}


async def _unchanged_since(svc, schema: TableSchema) -> float:
    """A time after which no shard saw a write to the table (its latest write, or later)."""
    replies = await svc.broadcast(backups.UNCHANGED_SINCE, schema.table_id.encode())
    return max(orjson.loads(r) for r in replies)


@operation("DescribeContinuousBackups")
async def describe_continuous_backups(svc, request: dict) -> bytes:
    return orjson.dumps(await _continuous_backups(svc, _source_table(svc, request.get("TableName"))))


@operation("UpdateContinuousBackups")
async def update_continuous_backups(svc, request: dict) -> bytes:
    schema = _source_table(svc, request.get("TableName"))
    spec = request.get("PointInTimeRecoverySpecification")
    if spec is None:
        raise constraint_error(["Value null at 'pointInTimeRecoverySpecification' failed to satisfy constraint: "
                                "Member must not be null"])
    enabled = spec.get("PointInTimeRecoveryEnabled")
    if enabled is None:
        raise constraint_error(["Value null at 'pointInTimeRecoverySpecification.pointInTimeRecoveryEnabled' "
                                "failed to satisfy constraint: Member must not be null"])
    days = spec.get("RecoveryPeriodInDays")
    if days is not None and not 1 <= days <= DEFAULT_RECOVERY_DAYS:
        bound = ("less than or equal to 35" if days > DEFAULT_RECOVERY_DAYS else "greater than or equal to 1")
        raise constraint_error([f"Value '{days}' at 'pointInTimeRecoverySpecification.recoveryPeriodInDays' "
                                f"failed to satisfy constraint: Member must have value {bound}"])
    if days is not None and not enabled:
        raise ValidationException("Invalid Request: Cannot specify RecoveryPeriodInDays when disabling "
                                  "point-in-time recovery.")
    current = _pitr_setting(schema)
    if enabled:
        # Enabling again keeps the time it was enabled: what was restorable stays so.
        setting = {"Enabled": True, "RecoveryPeriodInDays": days or (current or {}).get(
            "RecoveryPeriodInDays", DEFAULT_RECOVERY_DAYS), "EnabledAt": (current or {}).get("EnabledAt", now())}
    else:
        setting = {"Enabled": False}
    await svc.change_catalog(b"backup", orjson.dumps({"action": "pitr", "name": schema.name, "setting": setting}))
    return orjson.dumps(await _continuous_backups(svc, svc.catalog.tables.get(schema.name) or schema))


@operation("RestoreTableToPointInTime")
async def restore_table_to_point_in_time(svc, request: dict) -> bytes:
    # The request's shape first (times, sources, names), then the source's recovery, its time, the target.
    errors = table_name_errors(request.get("TargetTableName"), "targetTableName")
    if errors:
        raise constraint_error(errors)
    use_latest = request.get("UseLatestRestorableTime", False)
    when = request.get("RestoreDateTime")
    if use_latest and when is not None:
        raise ValidationException("Invalid Request: Both RestoreDateTime and UseLatestRestorableTime cannot be set for "
                                  "point-in-time restore request. Please specify either RestoreDateTime time or "
                                  "UseLatestRestorableTime")
    if not use_latest and when is None:
        raise ValidationException("Invalid Request: Either one of RestoreDateTime or UseLatestRestorableTime must be "
                                  "specified, but not both")
    arn, name = request.get("SourceTableArn"), request.get("SourceTableName")
    if arn is None and name is None:
        raise ValidationException("The parameter 'TableName' is required but was not present in the request")
    if arn is not None and name is not None:
        raise ValidationException("Must provide exactly one of: sourceTableArn, sourceTableName")
    if arn is not None:
        if not arn.startswith("arn:"):
            raise ValidationException(f"One or more parameter values were invalid: ARNs must start with 'arn:': {arn}")
        parts = split_arn(arn)
        if parts is None:
            raise ValidationException("One or more parameter values were invalid: sourceTableArn is not a valid ARN")
        if parts[3] != ACCOUNT:
            raise ValidationException("This action is only supported by accounts that match the resource "
                                      "owner\u2019s account.")
        try:
            source = _source_table(svc, arn, "sourceTableArn")
        except TableNotFoundException:
            raise TableNotFoundException("Table not found") from None     # DynamoDB names no table here
    else:
        source = _source_table(svc, name, "sourceTableName")
    setting = require_pitr(source)
    _check_not_restoring(source)
    unchanged_before = None
    if when is not None:
        # Whole seconds, as the SDKs send them: restoring to second T keeps every write made
        # before T + 1.  This server has only the table's present state, so T is honoured
        # only if nothing was written since then, once second T is over.
        second = math.floor(when)
        current = time.time()
        earliest = max(math.floor(setting["EnabledAt"]), math.floor(current - setting["RecoveryPeriodInDays"] * DAY))
        if second < earliest or second > math.floor(current):
            raise InvalidRestoreTimeException(
                f"RestoreDateTime {second} is outside the restorable window of table {source.name}: see "
                "DescribeContinuousBackups' EarliestRestorableDateTime and LatestRestorableDateTime")
        unchanged_before = second + 1
        if current < unchanged_before:
            await asyncio.sleep(unchanged_before - current)
    _restored_schema(svc, source, request, "", {})    # bad overrides fail before any snapshot
    record = await _snapshot(svc, source, _new_record(source, "point-in-time", hidden=True), unchanged_before)
    summary = {"SourceTableArn": source.arn, "RestoreDateTime": record["created"] if when is None else when}
    try:
        return await _restore(svc, _restored_schema(svc, source, request, record["id"], summary), record)
    except BaseException:
        if backups.in_use_by(svc.catalog, record["id"]) is None:
            # no table took the snapshot: it goes (a restore that did take it ends with "restored")
            await svc.change_catalog(b"backup", orjson.dumps({"action": "forget", "id": record["id"],
                                                              "arn": record["arn"]}))
        raise
