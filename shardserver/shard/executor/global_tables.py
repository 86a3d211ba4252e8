"""Global tables: the legacy (2017.11.29) operations ListGlobalTables, DescribeGlobalTable,
DescribeGlobalTableSettings, CreateGlobalTable, UpdateGlobalTable, UpdateGlobalTableSettings,
and the replica auto scaling of current ones, DescribeTableReplicaAutoScaling and
UpdateTableReplicaAutoScaling.

This server is one region: no table has a replica and none can get one.  So there is no
global table to list or describe, and the answers are DynamoDB's own for a table that is
not one: GlobalTableNotFoundException, ResourceNotFoundException for the auto scaling of
replicas, and the ValidationException with which DynamoDB now refuses every legacy create.
"""

from __future__ import annotations

import orjson

from shardserver.errors import GlobalTableNotFoundException, ResourceNotFoundException, ValidationException
from shardserver.shard.catalog import REGION
from shardserver.shard.executor import operation
from shardserver.shard.executor.control import table_named
from shardserver.shard.executor.tables import Constraints, constraint_error

LEGACY_REFUSED = ("One or more parameter values were invalid: DynamoDB global tables version 2017.11.29 is not "
                  "supported. We recommend using DynamoDB global tables version 2019.11.21, instead of version "
                  "2017.11.29 (Legacy).")


def _not_global(name: str) -> str:
    return f"Global table with name: '{name}' does not exist."


def _global_table_name(request: dict) -> str:
    name = request.get("GlobalTableName")
    if isinstance(name, str) and not 3 <= len(name) <= 255:
        # The legacy global table operations' own words, not the length rule's.
        raise ValidationException("TableName must be at least 3 characters long and at most 255 characters long")
    constraints = Constraints()
    constraints.required(name, "globalTableName")
    constraints.name(name, "globalTableName")
    constraints.check()
    return name


@operation("ListGlobalTables")
async def list_global_tables(svc, request: dict) -> bytes:
    constraints = Constraints()
    constraints.name(request.get("ExclusiveStartGlobalTableName"), "exclusiveStartGlobalTableName")
    constraints.value(request.get("Limit"), "limit", 1)
    constraints.check()
    return orjson.dumps({"GlobalTables": []})


@operation("DescribeGlobalTable")
async def describe_global_table(svc, request: dict) -> bytes:
    raise GlobalTableNotFoundException(_not_global(_global_table_name(request)))


@operation("DescribeGlobalTableSettings")
async def describe_global_table_settings(svc, request: dict) -> bytes:
    raise GlobalTableNotFoundException(_not_global(_global_table_name(request)))


@operation("UpdateGlobalTableSettings")
async def update_global_table_settings(svc, request: dict) -> bytes:
    name = _global_table_name(request)
    constraints = Constraints()
    constraints.enum(request.get("GlobalTableBillingMode"), "globalTableBillingMode",
                     ("PROVISIONED", "PAY_PER_REQUEST"))
    constraints.value(request.get("GlobalTableProvisionedWriteCapacityUnits"),
                      "globalTableProvisionedWriteCapacityUnits", 1)
    for i, update in enumerate(request.get("ReplicaSettingsUpdate") or (), 1):
        constraints.required(update.get("RegionName"), f"replicaSettingsUpdate.{i}.member.regionName")
    constraints.check()
    raise GlobalTableNotFoundException(_not_global(name))


@operation("CreateGlobalTable")
async def create_global_table(svc, request: dict) -> bytes:
    _global_table_name(request)
    if request.get("ReplicationGroup") is None:
        raise constraint_error(["Value null at 'replicationGroup' failed to satisfy constraint: "
                                "Member must not be null"])
    # DynamoDB refuses every legacy create, before it looks for the tables of the group.
    raise ValidationException(LEGACY_REFUSED)


@operation("UpdateGlobalTable")
async def update_global_table(svc, request: dict) -> bytes:
    name = _global_table_name(request)
    updates = request.get("ReplicaUpdates")
    if updates is None:
        raise constraint_error(["Value null at 'replicaUpdates' failed to satisfy constraint: "
                                "Member must not be null"])
    if not updates or any(not (isinstance(update, dict) and (update.get("Create") or update.get("Delete")))
                          for update in updates):
        # No action in an update, or none at all: DynamoDB's bare prefix, with no detail.
        raise ValidationException("One or more parameter values were invalid")
    if any(isinstance(update, dict) and update.get("Create") is not None for update in updates):
        raise ValidationException(LEGACY_REFUSED)
    raise GlobalTableNotFoundException(_not_global(name))


def refuse_replica_updates(updates: list) -> None:
    """UpdateTable's ReplicaUpdates (global tables version 2019.11.21): refused, since replicas
    live in other regions and this server is one region."""
    constraints = Constraints()
    for i, update in enumerate(updates, 1):
        for kind in ("Update", "Delete"):
            action = update.get(kind) if isinstance(update, dict) else None
            if isinstance(action, dict):
                constraints.required(action.get("RegionName"), f"replicaUpdates.{i}.member.{kind.lower()}.regionName")
    constraints.check()
    actions = [(kind, action.get("RegionName")) for update in updates if isinstance(update, dict)
               for kind, action in update.items() if isinstance(action, dict)]
    if not actions:
        raise ValidationException("There are no actions specified in the Replica Update Action of the request.")
    if any(kind == "Create" and region is None for kind, region in actions):
        raise ValidationException("One or more parameter values were invalid")      # DynamoDB's bare prefix
    if sum(1 for kind, _ in actions if kind in ("Create", "Delete")) > 1:
        raise ValidationException("Update table operation with more than one create or delete replica actions not "
                                  "allowed")
    kind, region = actions[0]
    raise ValidationException(f"One or more parameter values were invalid: replicas are not supported by this "
                              f"server, which is one region ({REGION}): cannot {kind.lower()} a replica in "
                              f"region {region}")


@operation("DescribeTableReplicaAutoScaling")
async def describe_table_replica_auto_scaling(svc, request: dict) -> bytes:
    name = _replica_table_name(svc, request)
    raise ResourceNotFoundException(_not_global(name))


@operation("UpdateTableReplicaAutoScaling")
async def update_table_replica_auto_scaling(svc, request: dict) -> bytes:
    name = _replica_table_name(svc, request)
    constraints = Constraints()
    for member in ("GlobalSecondaryIndexUpdates", "ReplicaUpdates"):
        value = request.get(member)
        if value is not None and not value:
            constraints.length(value, member[0].lower() + member[1:], 1)
    constraints.check()
    raise ResourceNotFoundException(_not_global(name))


def _replica_table_name(svc, request: dict) -> str:
    """The table name of a replica auto scaling request: DynamoDB says of a table that exists
    and of one that does not alike that no global table has that name."""
    name = request.get("TableName")
    try:
        return table_named(svc, name).name
    except ResourceNotFoundException:
        return name if not name.startswith("arn:") else name.rsplit("/", 1)[-1]
