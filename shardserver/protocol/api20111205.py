"""DynamoDB's previous low-level API, version 2011-12-05, as rewrites to and from 2012-08-10.

DynamoDB still answers the 2011-12-05 API (target prefix ``DynamoDB_20111205.``)
for the applications written against it, e.g. the JavaScript SDK v2 with
``apiVersion: '2011-12-05'``.  Its thirteen operations are current operations in
another shape: keys are positional (``HashKeyElement``, ``RangeKeyElement``)
instead of named, a key schema is one structure of typed elements, Query takes a
``HashKeyValue`` and one ``RangeKeyCondition``, ``Count: true`` is ``Select:
COUNT``, and every answer spends a bare ``ConsumedCapacityUnits``.

``to_current`` turns a 2011-12-05 request into the 2012-08-10 request it stands
for and ``from_current`` the answer back.  Both are functions of dicts and of
``key_names(table) -> (hash, range | None) | None``; this module never runs an
operation.  Only the members the 2011-12-05 model knows are carried over, as
DynamoDB's deserializer ignores unknown ones; the rewritten request then meets
every check of the current operation.
"""

from __future__ import annotations

from typing import Callable

TARGET_PREFIX = "DynamoDB_20111205."
OP_PREFIX = "20111205."         # operation names of this API, as wire.operation_of gives them

OPERATIONS = frozenset({
    "BatchGetItem", "BatchWriteItem", "CreateTable", "DeleteItem", "DeleteTable", "DescribeTable",
    "GetItem", "ListTables", "PutItem", "Query", "Scan", "UpdateItem", "UpdateTable",
})

# 2012-08-10's error types are in this namespace; 2011-12-05's in their own.
CURRENT_ERROR_NAMESPACE = b'{"__type":"com.amazonaws.dynamodb.v20120810#'
ERROR_NAMESPACE = b'{"__type":"com.amazonaws.dynamodb.v20111205#'

KeyNames = Callable[[str], "tuple[str, str | None] | None"]

_TABLE_OPERATIONS = frozenset({"CreateTable", "DeleteTable", "DescribeTable", "UpdateTable", "ListTables"})


def _pick(request: dict, *members: str) -> dict:
    return {m: request[m] for m in members if m in request}


def _names(key_names: KeyNames, table) -> tuple[str, str | None]:
    names = key_names(table) if isinstance(table, str) else None
    # A table this shard does not know keeps the positional names: the current
    # operation then refuses its name, or answers that it does not exist.
    return names if names is not None else ("HashKeyElement", "RangeKeyElement")


def _key(key, names: tuple[str, str | None]):
    """A positional key as a named one; what is not a key structure is left to the current checks."""
    if not isinstance(key, dict):
        return key
    hash_name, range_name = names
    named = {}
    if "HashKeyElement" in key:
        named[hash_name] = key["HashKeyElement"]
    if "RangeKeyElement" in key:
        # On a table without a range key the element is no key attribute: the
        # current checks answer that the key does not match the schema.
        named[range_name or "RangeKeyElement"] = key["RangeKeyElement"]
    return named


def _positional_key(key: dict, names: tuple[str, str | None]) -> dict:
    hash_name, range_name = names
    if hash_name not in key:        # the table was dropped meanwhile
        return key
    positional = {"HashKeyElement": key[hash_name]}
    if range_name is not None and range_name in key:
        positional["RangeKeyElement"] = key[range_name]
    return positional


# ------------------------------------------------------------ requests


def to_current(op: str, request: dict, key_names: KeyNames) -> tuple[str, dict]:
    """The 2012-08-10 (operation, request) for 2011-12-05 operation ``op``."""
    if op in _TABLE_OPERATIONS:
        return op, _table_request(op, request)
    if op == "BatchGetItem":
        return op, _batch_get_request(request, key_names)
    if op == "BatchWriteItem":
        return op, _batch_write_request(request, key_names)
    table = request.get("TableName")
    current = _pick(request, "TableName")
    current["ReturnConsumedCapacity"] = "TOTAL"
    if op == "PutItem":
        current.update(_pick(request, "Item", "Expected", "ReturnValues"))
        return op, current
    if op == "Scan":
        current.update(_pick(request, "AttributesToGet", "Limit", "ScanFilter"))
        if request.get("Count") is True:
            current["Select"] = "COUNT"
        if "ExclusiveStartKey" in request:
            current["ExclusiveStartKey"] = _key(request["ExclusiveStartKey"], _names(key_names, table))
        return op, current
    names = _names(key_names, table)
    if op == "Query":
        current.update(_pick(request, "AttributesToGet", "Limit", "ConsistentRead", "ScanIndexForward"))
        conditions = {}
        if "HashKeyValue" in request:
            conditions[names[0]] = {"AttributeValueList": [request["HashKeyValue"]], "ComparisonOperator": "EQ"}
        if "RangeKeyCondition" in request:
            conditions[names[1] or "RangeKeyElement"] = request["RangeKeyCondition"]
        current["KeyConditions"] = conditions
        if request.get("Count") is True:
            current["Select"] = "COUNT"
        if "ExclusiveStartKey" in request:
            current["ExclusiveStartKey"] = _key(request["ExclusiveStartKey"], names)
        return op, current
    if "Key" in request:
        current["Key"] = _key(request["Key"], names)
    if op == "GetItem":
        current.update(_pick(request, "AttributesToGet", "ConsistentRead"))
    elif op == "DeleteItem":
        current.update(_pick(request, "Expected", "ReturnValues"))
    elif op == "UpdateItem":
        current.update(_pick(request, "AttributeUpdates", "Expected", "ReturnValues"))
    return op, current


def _table_request(op: str, request: dict) -> dict:
    if op == "ListTables":
        return _pick(request, "ExclusiveStartTableName", "Limit")
    current = _pick(request, "TableName")
    if op in ("CreateTable", "UpdateTable"):
        current.update(_pick(request, "ProvisionedThroughput"))
    if op == "CreateTable" and "KeySchema" in request:
        schema, definitions = [], []
        elements = request["KeySchema"]
        if isinstance(elements, dict):
            for member, key_type in (("HashKeyElement", "HASH"), ("RangeKeyElement", "RANGE")):
                element = elements.get(member)
                if isinstance(element, dict):
                    schema.append({"AttributeName": element.get("AttributeName"), "KeyType": key_type})
                    definitions.append({"AttributeName": element.get("AttributeName"),
                                        "AttributeType": element.get("AttributeType")})
        current["KeySchema"] = schema
        current["AttributeDefinitions"] = definitions
    return current


def _batch_get_request(request: dict, key_names: KeyNames) -> dict:
    items = request.get("RequestItems")
    if not isinstance(items, dict):
        return _pick(request, "RequestItems")
    current = {}
    for table, spec in items.items():
        if isinstance(spec, dict):
            names = _names(key_names, table)
            spec = _pick(spec, "AttributesToGet", "ConsistentRead", "Keys")
            if isinstance(spec.get("Keys"), list):
                spec["Keys"] = [_key(key, names) for key in spec["Keys"]]
        current[table] = spec
    return {"RequestItems": current, "ReturnConsumedCapacity": "TOTAL"}


def _batch_write_request(request: dict, key_names: KeyNames) -> dict:
    items = request.get("RequestItems")
    if not isinstance(items, dict):
        return _pick(request, "RequestItems")
    current = {}
    for table, writes in items.items():
        if isinstance(writes, list):
            names = _names(key_names, table)
            writes = [_write_request(write, names) for write in writes]
        current[table] = writes
    return {"RequestItems": current, "ReturnConsumedCapacity": "TOTAL"}


def _write_request(write, names):
    if isinstance(write, dict) and isinstance(write.get("DeleteRequest"), dict) \
            and "Key" in write["DeleteRequest"]:
        return {**write, "DeleteRequest": {"Key": _key(write["DeleteRequest"]["Key"], names)}}
    return write


# ------------------------------------------------------------ answers


def from_current(op: str, request: dict, response: dict, key_names: KeyNames) -> dict:
    """The 2011-12-05 answer to ``request`` (a 2011-12-05 request) from its current answer."""
    if op == "ListTables":
        return response
    if op == "DescribeTable":
        return {"Table": _table_description(response["Table"])}
    if op in ("CreateTable", "DeleteTable", "UpdateTable"):
        return {"TableDescription": _table_description(response["TableDescription"])}
    if op == "BatchGetItem":
        return _batch_get_answer(request, response, key_names)
    if op == "BatchWriteItem":
        return _batch_write_answer(request, response, key_names)
    answer = {}
    for member in ("Item", "Attributes", "Items", "Count", "ScannedCount"):
        if member in response:
            answer[member] = response[member]
    if op == "Query":
        answer.pop("ScannedCount", None)
    if "LastEvaluatedKey" in response:
        answer["LastEvaluatedKey"] = _positional_key(response["LastEvaluatedKey"],
                                                     _names(key_names, request["TableName"]))
    answer["ConsumedCapacityUnits"] = response.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0)
    return answer


def _table_description(table: dict) -> dict:
    types = {d["AttributeName"]: d["AttributeType"] for d in table.get("AttributeDefinitions", ())}
    schema = {}
    for element in table.get("KeySchema", ()):
        member = "HashKeyElement" if element["KeyType"] == "HASH" else "RangeKeyElement"
        schema[member] = {"AttributeName": element["AttributeName"],
                          "AttributeType": types.get(element["AttributeName"])}
    description = {"TableName": table["TableName"]}
    if schema:      # a DeleteTable answer has none
        description["KeySchema"] = schema
    description["TableStatus"] = table["TableStatus"]
    description.update(_pick(table, "CreationDateTime"))
    throughput = table.get("ProvisionedThroughput")
    if throughput is not None:
        description["ProvisionedThroughput"] = _pick(
            throughput, "LastIncreaseDateTime", "LastDecreaseDateTime", "NumberOfDecreasesToday",
            "ReadCapacityUnits", "WriteCapacityUnits")
    description.update(_pick(table, "TableSizeBytes", "ItemCount"))
    return description


def _units_by_table(response: dict) -> dict:
    return {used["TableName"]: used.get("CapacityUnits", 0.0) for used in response.get("ConsumedCapacity", ())}


def _batch_get_answer(request: dict, response: dict, key_names: KeyNames) -> dict:
    units = _units_by_table(response)
    found = response.get("Responses", {})
    answer = {"Responses": {table: {"Items": found.get(table, []), "ConsumedCapacityUnits": units.get(table, 0.0)}
                            for table in request["RequestItems"]}}
    unprocessed = {}
    for table, spec in response.get("UnprocessedKeys", {}).items():
        names = _names(key_names, table)
        unprocessed[table] = {**spec, "Keys": [_positional_key(key, names) for key in spec["Keys"]]}
    answer["UnprocessedKeys"] = unprocessed
    return answer


def _batch_write_answer(request: dict, response: dict, key_names: KeyNames) -> dict:
    units = _units_by_table(response)
    answer = {"Responses": {table: {"ConsumedCapacityUnits": units.get(table, 0.0)}
                            for table in request["RequestItems"]}}
    unprocessed = {}
    for table, writes in response.get("UnprocessedItems", {}).items():
        names = _names(key_names, table)
        unprocessed[table] = [
            {"DeleteRequest": {"Key": _positional_key(w["DeleteRequest"]["Key"], names)}} if "DeleteRequest" in w
            else w for w in writes]
    answer["UnprocessedItems"] = unprocessed
    return answer


def error_body(payload: bytes) -> bytes:
    """A current error body with 2011-12-05's namespace for DynamoDB's own error types."""
    if payload.startswith(CURRENT_ERROR_NAMESPACE):
        return ERROR_NAMESPACE + payload[len(CURRENT_ERROR_NAMESPACE):]
    return payload
