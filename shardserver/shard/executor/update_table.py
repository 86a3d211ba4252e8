"""UpdateTable: add or delete a global secondary index, billing mode, throughput, stream settings.

The acceptor validates the request against its catalog view and turns it
into one change; the catalog coordinator (shard 0) checks the change again
against the authoritative catalog (two UpdateTables may race) and applies
it atomically (``apply_catalog_change``, called from the coordinator's
catalog kinds).  A new GSI starts CREATING and is backfilled in the
background by shardserver.shard.indexes, which flips it to ACTIVE through the
"activate" change.  A deleted GSI leaves the catalog at once; its storage is
dropped on every shard when they reconcile.  This module never touches item
storage and never formats wire errors.
"""

from __future__ import annotations

import time

import orjson

from shardserver.errors import LimitExceededException, ResourceNotFoundException, ValidationException
from shardserver.shard import indexes, streams
from shardserver.shard.catalog import WARM_THROUGHPUT_BASELINE, TableSchema, now
from shardserver.shard.executor import operation
from shardserver.shard.executor.tables import (Constraints, check_capacity_bounds, check_on_demand,
                                               check_table_name, constraint_error, describe, existing_table,
                                               parse_attribute_definitions, table_not_found, table_settings)

ONE_ONLINE_INDEX = "Subscriber limit exceeded: Only 1 online index can be created or deleted simultaneously per table"
UPDATE_ACTIONS = ("Create", "Update", "Delete")


def _throughput(value, field: str, index: str | None = None) -> tuple[int, int]:
    if not isinstance(value, dict):
        raise constraint_error([f"Value null at '{field}' failed to satisfy constraint: Member must not be null"])
    read, write = value.get("ReadCapacityUnits"), value.get("WriteCapacityUnits")
    errors = []
    for number, name in ((read, "readCapacityUnits"), (write, "writeCapacityUnits")):
        if not isinstance(number, int) or isinstance(number, bool):
            errors.append(f"Value null at '{field}.{name}' failed to satisfy constraint: Member must not be null")
        elif number < 1:
            errors.append(f"Value '{number}' at '{field}.{name}' failed to satisfy constraint: "
                          "Member must have value greater than or equal to 1")
    if errors:
        raise constraint_error(errors)
    check_capacity_bounds(read, write, index)
    return read, write


def _attribute_types(request: dict) -> dict[str, str]:
    definitions = request.get("AttributeDefinitions")
    if definitions is None:
        return {}
    return parse_attribute_definitions(definitions)


def _check_redefinition(schema: TableSchema, definition: dict, types: dict) -> None:
    existing = {d["AttributeName"]: d["AttributeType"] for d in schema.attribute_definitions}
    for element in definition["KeySchema"]:
        name = element["AttributeName"]
        if name in existing and existing[name] != types[name]:
            raise ValidationException(
                "One or more parameter values were invalid: Attributes cannot be redefined. Please check that "
                "your attribute has the same type as previously defined. Existing schema: "
                f"Schema:[SchemaElement: key{{{name}:{existing[name]}}}] New schema: "
                f"Schema:[SchemaElement: key{{{name}:{types[name]}}}]")


def _check_new_gsi(schema: TableSchema, definition: dict) -> None:
    """Rules a GSI creation must pass against the current definition (acceptor and coordinator)."""
    name = definition["IndexName"]
    if any(i["IndexName"] == name for i in schema.local_indexes + schema.global_indexes):
        raise ValidationException("One or more parameter values were invalid: Attempting to create an index "
                                  f"which already exists. IndexName: {name}")
    if any(i.get("IndexStatus") == "CREATING" for i in schema.global_indexes):
        raise LimitExceededException(ONE_ONLINE_INDEX)
    if len(schema.global_indexes) >= indexes.MAX_GSIS:
        raise ValidationException("One or more parameter values were invalid: GlobalSecondaryIndex count "
                                  f"exceeds the per-table limit of {indexes.MAX_GSIS}")
    indexes.check_projected_total(schema.local_indexes, schema.global_indexes + [definition])


def _gsi_updates(schema: TableSchema, request: dict, billing_mode: str, read: int, write: int) -> dict:
    updates = request.get("GlobalSecondaryIndexUpdates")
    change: dict = {}
    if not updates:
        updates = []
    if not isinstance(updates, list):
        raise constraint_error(["Value null at 'globalSecondaryIndexUpdates' failed to satisfy constraint: "
                                "Member must not be null"])
    names: set[str] = set()
    actions = []
    for position, update in enumerate(updates, 1):
        present = [a for a in UPDATE_ACTIONS if isinstance(update, dict) and update.get(a) is not None]
        if not present:
            raise ValidationException("One or more parameter values were invalid: One of "
                                      "GlobalSecondaryIndexUpdate.Update, GlobalSecondaryIndexUpdate.Create, "
                                      "GlobalSecondaryIndexUpdate.Delete must not be null")
        if len(present) > 1 or any(k not in UPDATE_ACTIONS for k in update):
            raise ValidationException("One or more parameter values were invalid: Only one of "
                                      "GlobalSecondaryIndexUpdate.Update, GlobalSecondaryIndexUpdate.Create, "
                                      "GlobalSecondaryIndexUpdate.Delete can be specified per update")
        action = present[0]
        body = update[action]
        if not isinstance(body, dict):
            raise constraint_error([f"Value null at 'globalSecondaryIndexUpdates.{position}.member."
                                    f"{action.lower()}' failed to satisfy constraint: Member must not be null"])
        name = body.get("IndexName")
        if isinstance(name, str):
            if name in names:
                raise ValidationException("One or more parameter values were invalid: Only one global secondary "
                                          f"index update per index is allowed simultaneously. Index: {name}")
            names.add(name)
        actions.append((action, body, position))
    if sum(1 for action, _, _ in actions if action in ("Create", "Delete")) > 1:
        raise LimitExceededException(ONE_ONLINE_INDEX)
    types = _attribute_types(request)
    gsi_names = {i["IndexName"] for i in schema.global_indexes}
    lsi_names = {i["IndexName"] for i in schema.local_indexes}
    throughput_updates, setting_updates = {}, {}
    for action, body, position in actions:
        field = f"globalSecondaryIndexUpdates.{position}.member.{action.lower()}"
        if action == "Create":
            if isinstance(body.get("IndexName"), str):
                if request.get("AttributeDefinitions") is None:
                    raise ValidationException("One or more parameter values were invalid: AttributeDefinitions "
                                              f"is not specified for index: {body['IndexName']}")
                if billing_mode == "PAY_PER_REQUEST" and body.get("ProvisionedThroughput") is not None:
                    raise ValidationException("One or more parameter values were invalid: Neither "
                                              "ReadCapacityUnits nor WriteCapacityUnits can be specified for "
                                              f"index: {body['IndexName']} when BillingMode is PAY_PER_REQUEST")
            definition = indexes.parse_gsi(body, field, types, billing_mode, read, write, status="CREATING",
                                           by_update=True)
            _check_redefinition(schema, definition, types)
            _check_new_gsi(schema, definition)
            change["create_gsi"] = definition
            change["attribute_types"] = {e["AttributeName"]: types[e["AttributeName"]]
                                         for e in definition["KeySchema"]}
            continue
        name = indexes.check_index_name(body, field)
        warm = body.get("WarmThroughput")
        if action == "Update" and isinstance(warm, dict) and not any(
                warm.get(unit) is not None for unit in WARM_THROUGHPUT_BASELINE):
            raise ValidationException("One or more parameter values were invalid: WarmThroughput must have at least "
                                      f"one of ReadUnitsPerSecond or WriteUnitsPerSecond specified for index: {name}")
        if name in lsi_names:
            raise ValidationException(f"Cannot {action.lower()} an index that is not a GlobalSecondaryIndex: {name}")
        if name not in gsi_names:
            raise ResourceNotFoundException(f"Requested resource not found: Index {name} for table {schema.name}")
        if action == "Delete":
            change["delete_gsi"] = name
            continue
        # An Update changes the index's provisioned units, its on-demand caps or its warm throughput.
        index = next(i for i in schema.global_indexes if i["IndexName"] == name)
        settings = indexes.gsi_settings(body)
        if settings:
            settings = _merged_throughput_settings(index, settings, f"index {name}")
            setting_updates[name] = settings
        if body.get("ProvisionedThroughput") is not None or not settings:
            if billing_mode == "PAY_PER_REQUEST":
                raise ValidationException("One or more parameter values were invalid: The only Updates for index: "
                                          f"{name} when TableThroughputMode is PAY_PER_REQUEST can be to "
                                          "OnDemandThroughput, WarmThroughput")
            r, w = _throughput(body.get("ProvisionedThroughput"), f"{field}.provisionedThroughput", name)
            current = index.get("ProvisionedThroughput") or {}
            now_read, now_write = current.get("ReadCapacityUnits", 0), current.get("WriteCapacityUnits", 0)
            if schema.billing_mode == "PROVISIONED" and (r, w) == (now_read, now_write):
                raise ValidationException(
                    f"The provisioned throughput for the index {name} will not change. The requested value equals "
                    f"the current value. Current ReadCapacityUnits provisioned for index {name}: {now_read}. "
                    f"Requested ReadCapacityUnits: {r}. Current WriteCapacityUnits provisioned for index {name}: "
                    f"{now_write}. Requested WriteCapacityUnits: {w}. Refer to the Amazon DynamoDB Developer Guide "
                    "for current limits and how to request higher limits.")
            throughput_updates[name] = {"ReadCapacityUnits": r, "WriteCapacityUnits": w}
            dates = _throughput_dates(schema, index, r, w, now_read, now_write)
            if dates:
                change.setdefault("gsi_throughput_dates", {})[name] = dates
    if billing_mode == "PROVISIONED" and schema.billing_mode == "PAY_PER_REQUEST":
        # Leaving on demand, every index needs units of its own: none is given the table's.
        for definition in schema.global_indexes:
            if definition["IndexName"] not in throughput_updates:
                raise ValidationException("One or more parameter values were invalid: ProvisionedThroughput must "
                                          f"be specified for index: {definition['IndexName']}")
    if throughput_updates:
        change["gsi_throughput"] = throughput_updates
    if setting_updates:
        change["gsi_settings"] = setting_updates
    return change


def _merged_throughput_settings(definition: dict, settings: dict, owner: str = "table") -> dict:
    """A table's (its extra settings) or an index's ("index I") OnDemandThroughput and WarmThroughput
    after an update: a member left out keeps its value, and warm throughput never goes down."""
    merged = {}
    if "OnDemandThroughput" in settings:
        merged["OnDemandThroughput"] = {**definition.get("OnDemandThroughput", {}), **settings["OnDemandThroughput"]}
    if "WarmThroughput" in settings:
        current = {**WARM_THROUGHPUT_BASELINE, **definition.get("WarmThroughput", {})}
        for unit, value in settings["WarmThroughput"].items():
            if value < current[unit]:
                raise ValidationException(
                    f"One or more parameter values were invalid: Requested {unit} for WarmThroughput for {owner} "
                    "is lower than current WarmThroughput, decreasing WarmThroughput is not supported")
        merged["WarmThroughput"] = {**current, **settings["WarmThroughput"]}
    return merged


# What DynamoDB names as the changes an UpdateTable may ask for (some are not in the public API model).
CHANGE_MEMBERS = ("ProvisionedThroughput", "BillingMode", "UpdateStreamEnabled", "GlobalSecondaryIndexUpdates",
                  "SSESpecification", "ReplicaUpdates", "MultiAccountReplicaReady", "ReplicaTransitRoleArn",
                  "MultiRegionConsistency", "DeletionProtectionEnabled", "OnDemandThroughput", "WarmThroughput",
                  "TableClass")


def build_change(schema: TableSchema, request: dict) -> dict:
    """The validated change an UpdateTable request asks for."""
    updates = request.get("GlobalSecondaryIndexUpdates")
    asked = [f for f in ("ProvisionedThroughput", "BillingMode", "StreamSpecification", "SSESpecification",
                         "ReplicaUpdates", "TableClass", "DeletionProtectionEnabled", "OnDemandThroughput",
                         "WarmThroughput")
             if request.get(f) is not None]
    if len(asked) > 1:
        # An empty WarmThroughput or OnDemandThroughput beside another change is no change at all.
        asked = [f for f in asked if f not in ("OnDemandThroughput", "WarmThroughput") or request[f] != {}]
    if not asked and not updates:
        # DynamoDB's list leaves out a member the request has (MultiRegionConsistency, not a change here).
        members = [m for m in CHANGE_MEMBERS if m not in request]
        raise ValidationException(f"At least one of {', '.join(members[:-1])} or {members[-1]} is required")
    if request.get("ReplicaUpdates") is not None:
        from shardserver.shard.executor.global_tables import refuse_replica_updates
        refuse_replica_updates(request["ReplicaUpdates"])
    change: dict = {"action": "update", "table": schema.name, "table_id": schema.table_id}
    mode = request.get("BillingMode")
    if mode is not None and mode not in ("PROVISIONED", "PAY_PER_REQUEST"):
        raise constraint_error([f"Value '{mode}' at 'billingMode' failed to satisfy constraint: "
                                "Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]"])
    _check_combination(request, asked)
    billing = mode or schema.billing_mode
    read, write = schema.read_capacity, schema.write_capacity
    throughput = request.get("ProvisionedThroughput")
    if billing == "PAY_PER_REQUEST":
        if throughput is not None:
            raise ValidationException("One or more parameter values were invalid: Neither ReadCapacityUnits nor "
                                      "WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST")
        read = write = 0
    elif throughput is not None:
        read, write = _throughput(throughput, "provisionedThroughput")
        if (mode is None or mode == schema.billing_mode) and (read, write) == (schema.read_capacity,
                                                                           schema.write_capacity):
            # Restating the current BillingMode changes nothing either.
            if not updates and not [f for f in asked if f not in ("ProvisionedThroughput", "BillingMode")]:
                raise ValidationException(
                    "The provisioned throughput for the table will not change. The requested value equals the "
                    "current value. Current ReadCapacityUnits provisioned for the table: "
                    f"{schema.read_capacity}. Requested ReadCapacityUnits: {read}. Current WriteCapacityUnits "
                    f"provisioned for the table: {schema.write_capacity}. Requested WriteCapacityUnits: {write}. "
                    "Refer to the Amazon DynamoDB Developer Guide for current limits and how to request higher "
                    "limits.")
    elif mode == "PROVISIONED" or billing != schema.billing_mode:
        # Restating PROVISIONED without units is refused as switching to it is.
        raise ValidationException("One or more parameter values were invalid: ProvisionedThroughput must be "
                                  "specified when BillingMode is PROVISIONED")
    if mode is not None or throughput is not None:
        change["billing"] = {"mode": billing, "read": read, "write": write}
    if request.get("StreamSpecification") is not None:
        change["stream"] = streams.check_specification(request["StreamSpecification"])
        streams.check_change(schema, change["stream"])
    check_on_demand(request.get("OnDemandThroughput"), billing, "table")
    if isinstance(request.get("WarmThroughput"), dict) and request["WarmThroughput"]:
        asked_warm = {u: v for u, v in request["WarmThroughput"].items()
                      if u in WARM_THROUGHPUT_BASELINE and isinstance(v, int)}
        _merged_throughput_settings(schema.extra, {"WarmThroughput": asked_warm})
    settings = table_settings(request)
    if "SSEEnabled" in settings and not settings["SSEEnabled"] and not schema.extra.get("SSEEnabled"):
        # Asking for the AWS owned key a table already has.
        raise ValidationException("One or more parameter values were invalid: Table is already encrypted by "
                                  "default")
    sse = request.get("SSESpecification") or {}
    if schema.extra.get("SSEEnabled") and sse.get("KMSMasterKeyId") == schema.sse_description("ENABLED")[
            "KMSMasterKeyArn"]:
        # The key the table has, named by its ARN: DynamoDB refuses it (an alias or key id re-encrypts).
        raise ValidationException("One or more parameter values were invalid: Table is already encrypted with given "
                                  "KMSMasterKeyId. Use KMSMasterKeyId parameter if you want to change Master Key")
    if settings.get("TableClass") == "STANDARD" and "TableClass" not in schema.extra:
        # The class a table has by default: nothing to record, and no TableClassSummary appears.
        del settings["TableClass"]
    settings.update(_merged_throughput_settings(schema.extra, settings))
    if "billing" in change:
        # Warm throughput follows capacity up, never down: the most units ever provisioned, and
        # on demand's initial throughput once the table has been on demand.
        floor = WARM_THROUGHPUT_BASELINE if billing == "PAY_PER_REQUEST" else {
            "ReadUnitsPerSecond": read, "WriteUnitsPerSecond": write}
        warm = settings.get("WarmThroughput") or {**WARM_THROUGHPUT_BASELINE, **schema.extra.get("WarmThroughput", {})}
        raised = {unit: max(value, floor[unit]) for unit, value in warm.items()}
        if raised != schema.warm_throughput or "WarmThroughput" in settings:
            settings["WarmThroughput"] = raised
    if "billing" in change and billing == "PROVISIONED":
        settings.update(_throughput_dates(schema, schema.extra, read, write, schema.read_capacity,
                                          schema.write_capacity))
    if settings.get("TableClass", schema.table_class) != schema.table_class:
        # DynamoDB dates the last change of class in TableClassSummary.LastUpdateDateTime.
        settings["TableClassUpdated"] = now()
    if billing != schema.billing_mode:
        # Dated by BillingModeSummary.LastUpdateToPayPerRequestDateTime, kept after a switch back.
        settings["PayPerRequestSince"] = now() if billing == "PAY_PER_REQUEST" else schema.pay_per_request_since
    if settings:
        change["settings"] = settings
    change.update(_gsi_updates(schema, request, billing, read, write))
    return change


# Members that must be an UpdateTable's only change, and the words DynamoDB refuses company with.
ALONE = (("SSESpecification", "Server-Side Encryption"), ("TableClass", "TableClass"),
         ("DeletionProtectionEnabled", "DeletionProtection"))


def _check_combination(request: dict, asked: list[str]) -> None:
    """The changes DynamoDB will not make in one UpdateTable, refused before any is checked further."""
    updates = request.get("GlobalSecondaryIndexUpdates")
    if updates == []:
        # Counted as absent for "At least one of ...", refused once something else is asked.
        raise ValidationException("One or more parameter values were invalid: List of "
                                  "GlobalSecondaryIndexUpdates is empty")
    changes = len(asked) + (1 if updates else 0)
    for member, words in ALONE:
        if member in asked and changes > 1:
            raise ValidationException(f"One or more parameter values were invalid: {words} modification must be "
                                      "the only operation in the request")
    online_index = isinstance(updates, list) and any(
        isinstance(u, dict) and (u.get("Create") is not None or u.get("Delete") is not None) for u in updates)
    if "OnDemandThroughput" in asked and changes > 1 and (updates or [f for f in asked if f not in (
            "OnDemandThroughput", "BillingMode")]):
        raise ValidationException("One or more parameter values were invalid: OnDemandThroughput can only be "
                                  "combined with BillingMode in an UpdateTable request")
    if "WarmThroughput" in asked and changes > 1:
        creates = isinstance(updates, list) and any(isinstance(u, dict) and u.get("Create") is not None
                                                    for u in updates)
        raise ValidationException("One or more parameter values were invalid: " + (
            "Create global secondary index cannot be specified when updating WarmThroughput" if creates
            else "WarmThroughput must be the only operation in the request"))
    throughput, stream = "ProvisionedThroughput" in asked, "StreamSpecification" in asked
    if online_index and throughput:
        raise ValidationException("One or more parameter values were invalid: You cannot create or delete index "
                                  "while updating table IOPS")
    if online_index and stream:
        raise ValidationException("One or more parameter values were invalid: You cannot create or delete index "
                                  "while changing stream status")
    if stream and (throughput or request.get("BillingMode") == "PROVISIONED"):
        # BillingMode PROVISIONED counts as new table units, even without ProvisionedThroughput.
        raise ValidationException("One or more parameter values were invalid: You cannot modify stream status "
                                  "while updating table IOPS")


def _throughput_dates(schema: TableSchema, dated: dict, read: int, write: int, was_read: int,
                      was_write: int) -> dict:
    """ProvisionedThroughput's LastIncreaseDateTime, LastDecreaseDateTime and the UTC day's
    count of decreases, as this change of the units of the table (``dated`` its extra settings)
    or of an index (its definition) leaves them (a switch from on demand counts as an increase,
    as DynamoDB dates it)."""
    dates = {}
    old = (was_read, was_write) if schema.billing_mode == "PROVISIONED" else (0, 0)
    if read > old[0] or write > old[1]:
        dates["ThroughputIncreased"] = now()
    if schema.billing_mode == "PROVISIONED" and (read < old[0] or write < old[1]):
        day = time.strftime("%Y-%m-%d", time.gmtime())
        before = dated.get("ThroughputDecreases", [day, 0])
        dates["ThroughputDecreased"] = now()
        dates["ThroughputDecreases"] = [day, (before[1] if before[0] == day else 0) + 1]
    return dates


def apply_catalog_change(tables: dict, change: dict) -> None:
    """Applies one UpdateTable change on the catalog coordinator (raises on a lost race)."""
    schema = tables.get(change["table"])
    if schema is None or schema.table_id != change["table_id"]:
        raise table_not_found(change['table'])
    data = schema.to_json()
    if change["action"] == "activate":
        for definition in data["global_indexes"]:
            if definition["IndexId"] == change["index_id"]:
                definition["IndexStatus"] = "ACTIVE"
        tables[schema.name] = TableSchema.from_json(data)
        return
    billing = change.get("billing")
    if billing is not None:
        data["billing_mode"] = billing["mode"]
        data["read_capacity"], data["write_capacity"] = billing["read"], billing["write"]
        for definition in data["global_indexes"]:
            if billing["mode"] == "PAY_PER_REQUEST":
                definition["ProvisionedThroughput"] = {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0}
            elif not definition.get("ProvisionedThroughput", {}).get("ReadCapacityUnits"):
                definition["ProvisionedThroughput"] = {"ReadCapacityUnits": billing["read"],
                                                       "WriteCapacityUnits": billing["write"]}
    if "stream" in change:
        data["stream_specification"] = change["stream"]
        data["streams"] = streams.streams_after(schema, change["stream"], int(time.time() * 1000))
    if "settings" in change:
        data["extra"] = {**data.get("extra", {}), **change["settings"]}
    for name, throughput in change.get("gsi_throughput", {}).items():
        for definition in data["global_indexes"]:
            if definition["IndexName"] == name:
                definition["ProvisionedThroughput"] = throughput
                definition.update(change.get("gsi_throughput_dates", {}).get(name, {}))
    for name, settings in change.get("gsi_settings", {}).items():
        for definition in data["global_indexes"]:
            if definition["IndexName"] == name:
                definition.update(settings)
    if "delete_gsi" in change:
        name = change["delete_gsi"]
        if not any(d["IndexName"] == name for d in data["global_indexes"]):
            raise ResourceNotFoundException(f"Requested resource not found: Index {name} for table {schema.name}")
        data["global_indexes"] = [d for d in data["global_indexes"] if d["IndexName"] != name]
    types = {d["AttributeName"]: d["AttributeType"] for d in data["attribute_definitions"]}
    if "create_gsi" in change:
        definition = change["create_gsi"]
        _check_new_gsi(schema, definition)
        _check_redefinition(schema, definition, change["attribute_types"])
        data["global_indexes"].append(definition)
        types.update(change["attribute_types"])
    updated = TableSchema.from_json(data)
    # AttributeDefinitions list exactly the attributes some key is made of.
    used = indexes.key_attribute_names(updated)
    updated.attribute_definitions = [{"AttributeName": n, "AttributeType": t} for n, t in types.items() if n in used]
    tables[schema.name] = updated


def check_index_updates_alone(request: dict) -> None:
    """What DynamoDB finds wrong in the units and the global index updates before it looks for
    the table or weighs the changes against each other: the table's, an Update's and a Create's
    units members (write before read, as DynamoDB lists them), and a warm throughput that names no unit."""
    constraints = Constraints()
    throughput = request.get("ProvisionedThroughput")
    if isinstance(throughput, dict):
        for member in ("WriteCapacityUnits", "ReadCapacityUnits"):
            field = f"provisionedThroughput.{member[0].lower()}{member[1:]}"
            if constraints.required(throughput.get(member), field):
                constraints.value(throughput[member], field, low=1)
    updates = request.get("GlobalSecondaryIndexUpdates")
    if not isinstance(updates, list):
        constraints.check()
        return
    for i, update in enumerate(updates, 1):
        # A Create's units are judged here too: before the table's billing mode is known, so a
        # PAY_PER_REQUEST table hears about a half-filled throughput before that it takes none.
        for action in ("Update", "Create"):
            body = update.get(action) if isinstance(update, dict) else None
            throughput = body.get("ProvisionedThroughput") if isinstance(body, dict) else None
            if isinstance(throughput, dict):
                for member in ("WriteCapacityUnits", "ReadCapacityUnits"):
                    field = (f"globalSecondaryIndexUpdates.{i}.member.{action.lower()}.provisionedThroughput."
                             f"{member[0].lower()}{member[1:]}")
                    if constraints.required(throughput.get(member), field):
                        constraints.value(throughput[member], field, low=1)
    constraints.check()
    for update in updates:
        body = update.get("Update") if isinstance(update, dict) else None
        warm = body.get("WarmThroughput") if isinstance(body, dict) else None
        if isinstance(warm, dict) and isinstance(body.get("IndexName"), str) and not any(
                warm.get(unit) is not None for unit in WARM_THROUGHPUT_BASELINE):
            raise ValidationException("One or more parameter values were invalid: WarmThroughput must have at least "
                                      f"one of ReadUnitsPerSecond or WriteUnitsPerSecond specified for index: "
                                      f"{body['IndexName']}")


@operation("UpdateTable")
async def update_table(svc, request: dict) -> bytes:
    check_table_name(request.get("TableName"))
    check_index_updates_alone(request)
    schema = existing_table(svc, request)
    change = build_change(schema, request)
    await svc.change_catalog(b"update", orjson.dumps(change))
    updated = svc.catalog.tables.get(schema.name) or schema
    # Deletion protection and on-demand caps change at once in DynamoDB: its answer says ACTIVE.
    asked = {m for m in CHANGE_MEMBERS if request.get(m) is not None and request[m] != {}}
    synchronous = asked and asked <= {"DeletionProtectionEnabled", "OnDemandThroughput"}
    description = await describe(svc, updated, "ACTIVE" if synchronous else "UPDATING")
    if schema.extra.get("SSEEnabled") and not updated.extra.get("SSEEnabled"):
        # Going back to the AWS owned key: DynamoDB answers with the KMS key still described, UPDATING.
        description["SSEDescription"] = schema.sse_description("UPDATING")
    if "create_gsi" in change:
        # As DynamoDB answers (the AWS CLI's update-table example): the new index CREATING, its
        # backfill not begun yet; DescribeTable shows Backfilling true while it runs.
        for entry in description.get("GlobalSecondaryIndexes", ()):
            if entry["IndexName"] == change["create_gsi"]["IndexName"] and entry["IndexStatus"] == "CREATING":
                entry["Backfilling"] = False
    if "delete_gsi" in change:
        gone = next(i for i in schema.global_indexes if i["IndexName"] == change["delete_gsi"])
        entry = indexes.describe_index(schema, gone, True, None)
        entry["IndexStatus"] = "DELETING"
        entry.pop("Backfilling", None)
        description.setdefault("GlobalSecondaryIndexes", []).append(entry)
    return orjson.dumps({"TableDescription": description})
