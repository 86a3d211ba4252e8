"""What the control-plane operations share: the table a name or an ARN names, and the
settings they keep in a table's catalog entry (member constraints are tables.Constraints).

The ARNs this server issues are the ones DescribeTable gives (``TableSchema.arn``):
``arn:aws:dynamodb:<region>:<account>:table/<name>``, with ``/stream/<label>`` or
``/index/<name>`` after it for a table's streams and indexes.  Settings are written only
through ``change_table_extra``, a compare-and-set run on the catalog coordinator, so two
acceptors changing one table at once cannot undo each other.  Nothing here formats an error.
"""

from __future__ import annotations

import orjson

from shardserver.errors import ResourceInUseException, ValidationException
from shardserver.shard.catalog import ACCOUNT, REGION, TableSchema
from shardserver.shard.executor.tables import constraint_error, table_name_errors, table_not_found

EXTRA_CHANGE = b"extra"          # catalog change kind: {"table", "table_id", "key", "expected", "value"}
_CHANGE_ATTEMPTS = 5


def split_arn(arn: str) -> tuple[str, str, str, str, str] | None:
    """(partition, service, region, account, resource) of an ARN, or None if it has not six parts."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    return parts[1], parts[2], parts[3], parts[4], parts[5]


def table_named(svc, value, field: str = "tableName") -> TableSchema:
    """The table a TableName member names, by name or by its ARN (members of type TableArn
    take both), or DynamoDB's error for it."""
    if value is None:
        raise constraint_error([f"Value null at '{field}' failed to satisfy constraint: Member must not be null"])
    if value.startswith("arn:"):
        if len(value) > 1024:
            raise constraint_error([f"Value '{value}' at '{field}' failed to satisfy constraint: "
                                    "Member must have length less than or equal to 1024"])
        name = _table_of_arn(value)
    else:
        if value == "":
            raise constraint_error([f"Value '' at '{field}' failed to satisfy constraint: "
                                    "Member must have length greater than or equal to 1"])
        problems = table_name_errors(value, field)
        if problems:
            raise constraint_error(problems)
        name = value
    schema = svc.catalog.tables.get(name)
    if schema is None:
        raise table_not_found(name)
    return schema


def _table_of_arn(arn: str) -> str:
    parts = split_arn(arn)
    if parts is None:
        raise ValidationException(f"1 validation error detected: Valid ARN format is "
                                  f"arn:aws:dynamodb:<region>:<account>:table/<name>, not '{arn}'")
    partition, service, region, account, resource = parts
    if partition != "aws":
        raise ValidationException(f"1 validation error detected: Invalid AWS partition in '{arn}'")
    if region != REGION:
        raise ValidationException(f"1 validation error detected: Invalid AWS region in '{arn}'")
    kind, _, name = resource.partition("/")
    if service != "dynamodb" or kind != "table" or not name or "/" in name:
        raise ValidationException(f"1 validation error detected: Invalid resource type in '{arn}'")
    if account != ACCOUNT:
        raise table_not_found(name)     # no table of another account lives here
    return name


# Members that take a table's name or its ARN (shape TableArn in DynamoDB's model), besides
# every operation's top-level TableName: the tables of batches and of transaction items.
_TABLE_MAPS = ("BatchGetItem", "BatchWriteItem")
_TRANSACT_ACTIONS = ("Get", "Put", "Update", "Delete", "ConditionCheck")
# Response members keyed by table, answered under the name or ARN the request used.
_KEYED_BY_TABLE = ("Responses", "UnprocessedKeys", "UnprocessedItems", "ItemCollectionMetrics")
_NAMES_TABLES_INSIDE = frozenset(_TABLE_MAPS + ("TransactGetItems", "TransactWriteItems"))
_NONE: dict[str, str] = {}      # never written: answered when nothing was rewritten


def names_for_arns(op: str, request: dict) -> dict[str, str]:
    """Rewrites, in place, every table ARN a request names into the table's name, so handlers
    see names only; answers {name: ARN} of those rewritten (empty, the usual case, if none)."""
    if op == "CreateTable":
        return {}        # a new table is named by its name
    if op not in _NAMES_TABLES_INSIDE:
        # The usual request, on every request's path: one member to look at.
        table = request.get("TableName")
        if type(table) is not str or not table.startswith("arn:"):
            return _NONE
    arns: dict[str, str] = {}

    def name_of(value):
        if isinstance(value, str) and value.startswith("arn:"):
            name = _table_of_arn(value)
            arns[name] = value
            return name
        return value

    if "TableName" in request:
        request["TableName"] = name_of(request["TableName"])
    items = request.get("RequestItems")
    if op in _TABLE_MAPS and isinstance(items, dict) and any(k.startswith("arn:") for k in items):
        renamed = {}
        for table, entry in items.items():
            name = name_of(table)
            if name in renamed:
                raise ValidationException(f"Table {name} is named more than once in RequestItems "
                                          "(by its name and by its ARN)")
            renamed[name] = entry
        request["RequestItems"] = renamed
    if op in ("TransactGetItems", "TransactWriteItems") and isinstance(request.get("TransactItems"), list):
        for entry in request["TransactItems"]:
            for action in _TRANSACT_ACTIONS:
                member = entry.get(action) if isinstance(entry, dict) else None
                if isinstance(member, dict) and "TableName" in member:
                    member["TableName"] = name_of(member["TableName"])
    return arns


def answer_with_arns(response: bytes, arns: dict[str, str]) -> bytes:
    """A response whose per-table maps are keyed by the ARNs the request named those tables by."""
    answer = orjson.loads(response)
    for member in _KEYED_BY_TABLE:
        keyed = answer.get(member)
        if isinstance(keyed, dict):
            answer[member] = {arns.get(table, table): value for table, value in keyed.items()}
    return orjson.dumps(answer)


async def change_table_extra(svc, schema: TableSchema, key: str, compute) -> object:
    """Sets ``schema.extra[key]`` to ``compute(current)`` (None removes it) on the catalog
    coordinator, if nobody changed it meanwhile; otherwise computes again from the newer value.
    ``compute`` may raise (the request is then refused) and returns the new value; this returns it."""
    for attempt in range(_CHANGE_ATTEMPTS):
        current = svc.catalog.tables.get(schema.name)
        if current is None or current.table_id != schema.table_id:
            raise table_not_found(schema.name)
        expected = current.extra.get(key)
        value = compute(expected)
        if value == expected:
            return value            # nothing to change: no catalog write
        change = {"table": schema.name, "table_id": schema.table_id, "key": key,
                  "expected": expected, "value": value}
        try:
            await svc.change_catalog(EXTRA_CHANGE, orjson.dumps(change))
            return value
        except ResourceInUseException:
            if attempt == _CHANGE_ATTEMPTS - 1:
                raise
            # Another change won the race: the coordinator has written it to catalog.json
            # already, though its broadcast may not have reached this shard yet.
            svc.load_catalog()
    raise AssertionError("unreachable")


def apply_extra_change(tables: dict, change: dict) -> None:
    """On the catalog coordinator: applies one ``change_table_extra`` if its expectation holds."""
    schema = tables.get(change["table"])
    if schema is None or schema.table_id != change["table_id"]:
        raise table_not_found(change["table"])
    if schema.extra.get(change["key"]) != change["expected"]:
        raise ResourceInUseException(f"Attempt to change a resource which is still in use: "
                                     f"Table: {schema.name} is in the process of being updated.")
    if change["value"] is None:
        schema.extra.pop(change["key"], None)
    else:
        schema.extra[change["key"]] = change["value"]
