"""ExecuteStatement, BatchExecuteStatement, ExecuteTransaction: PartiQL run as the ordinary operations.

Each statement is parsed and translated (shardserver.shard.partiql) into the
GetItem, Query, Scan, PutItem, UpdateItem or DeleteItem request DynamoDB's
documentation describes it as, and that request runs exactly as if a client
had sent it: routed to the owner shard, with its conditions, limits,
capacity, index and stream maintenance.  A transaction becomes one
TransactGetItems or TransactWriteItems.  This module only shapes requests
and responses; it never reads or writes an item itself.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib

import orjson

from shardserver.errors import (ConditionalCheckFailedException, DuplicateItemException, DynamoDBError,
                                ResourceNotFoundException, TransactionCanceledException, ValidationException)
from shardserver.shard import values
from shardserver.shard.executor import capacity, operation
from shardserver.shard.executor.query import limit_of
from shardserver.shard.pages import PAGE_BYTES
from shardserver.shard.executor.tables import constraint_error
from shardserver.shard.executor.transactions import cancellation
from shardserver.shard.partiql import ast, translate
from shardserver.shard.partiql.parser import parse

MAX_STATEMENT_LENGTH = 8192
MAX_BATCH_STATEMENTS = 25
MAX_TRANSACTION_STATEMENTS = 100
DUPLICATE_ITEM = "Duplicate primary key exists in table"
RETURN_ON_FAILURE = ("NONE", "ALL_OLD")
_WRITE_KINDS = {"PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete",
                "ConditionCheck": "ConditionCheck"}
# DynamoDB's BatchStatementError codes, by exception type.
_BATCH_CODES = {"ConditionalCheckFailedException": "ConditionalCheckFailed",
                "DuplicateItemException": "DuplicateItem", "ValidationException": "ValidationError",
                "ResourceNotFoundException": "ResourceNotFound",
                "TransactionConflictException": "TransactionConflict",
                "ItemCollectionSizeLimitExceededException": "ItemCollectionSizeLimitExceeded",
                "ProvisionedThroughputExceededException": "ProvisionedThroughputExceeded",
                "RequestLimitExceeded": "RequestLimitExceeded", "AccessDeniedException": "AccessDenied"}


async def _run(svc, op: str, request: dict) -> dict:
    """Runs API operation ``op`` as a client's request would run: on its owner shard."""
    body = orjson.dumps(request)
    entry = svc.operations[op]
    if entry.route is not None:
        owner = entry.route(svc, request)
        if owner != svc.shard_id:
            return await svc.submit_to_owner(owner, op, body)
    return orjson.loads(await entry.execute(svc, request))


# ------------------------------------------------------------------ request members

def _statement(value, field: str) -> str:
    if not isinstance(value, str):
        raise constraint_error([f"Value null at '{field}' failed to satisfy constraint: Member must not be null"])
    if not 1 <= len(value) <= MAX_STATEMENT_LENGTH:
        bound = ("less than or equal to 8192" if value else "greater than or equal to 1")
        raise constraint_error([f"Value '{value}' at '{field}' failed to satisfy constraint: "
                                f"Member must have length {bound}"])
    return value


def _parameters(value, field: str) -> list:
    if value is None:
        return []
    if not value:
        raise constraint_error([f"Value '[]' at '{field}' failed to satisfy constraint: "
                                "Member must have length greater than or equal to 1"])
    for av in value:
        values.validate_value(av)
    return value


def _return_on_failure(value, field: str) -> str:
    value = value or "NONE"
    if value not in RETURN_ON_FAILURE:
        raise constraint_error([f"Value '{value}' at '{field}' failed to satisfy constraint: "
                                "Member must satisfy enum value set: [ALL_OLD, NONE]"])
    return value


def _statements(value, field: str, most: int) -> list:
    if not isinstance(value, list):
        raise constraint_error([f"Value null at '{field}' failed to satisfy constraint: Member must not be null"])
    if not value:
        raise constraint_error([f"Value '[]' at '{field}' failed to satisfy constraint: "
                                "Member must have length greater than or equal to 1"])
    if len(value) > most:
        raise constraint_error([f"Value '[{len(value)} items]' at '{field}' failed to satisfy constraint: "
                                f"Member must have length less than or equal to {most}"])
    return value


class _Prepared:
    """One statement parsed, its table looked up and translated into the request that runs it."""

    __slots__ = ("parsed", "plan")

    def __init__(self, svc, text: str, parameters: list):
        self.parsed = parse(text)
        schema = svc.catalog.tables.get(translate.table_name_of(self.parsed))
        if schema is None:
            raise ResourceNotFoundException("Requested resource not found")
        self.plan = translate.plan(self.parsed, schema, parameters)

    @property
    def is_insert(self) -> bool:
        return isinstance(self.parsed.body, ast.Insert)


async def _run_write(svc, prepared: _Prepared, extra: dict) -> dict:
    plan = prepared.plan
    if plan.op == "ConditionCheck":
        raise ValidationException("EXISTS can only be used in ExecuteTransaction write requests.")
    request = dict(plan.request, **extra)
    if prepared.is_insert:
        request.pop("ReturnValuesOnConditionCheckFailure", None)
    try:
        return await _run(svc, plan.op, request)
    except ConditionalCheckFailedException:
        if prepared.is_insert:
            raise DuplicateItemException(DUPLICATE_ITEM) from None
        raise


def _items_of(plan, response: dict) -> list:
    if plan.op == "GetItem":
        items = [response["Item"]] if "Item" in response else []
    elif plan.is_read:
        items = response.get("Items", [])
    else:
        items = [response["Attributes"]] if "Attributes" in response else []
    if plan.is_read and plan.projection is not None:
        items = [translate.shape_item(item, plan.projection) for item in items]
    return items


# ------------------------------------------------------------------ paging tokens

def _fingerprint(text: str, parameters: list) -> str:
    return hashlib.sha256(orjson.dumps([text, parameters])).hexdigest()[:24]


def _next_token(text: str, parameters: list, part: int, last_key: dict | None) -> str:
    """NextToken: the statement's fingerprint, which of its reads goes on, and from which key."""
    payload = orjson.dumps({"h": _fingerprint(text, parameters), "q": part, "k": last_key})
    return base64.urlsafe_b64encode(payload).decode()


def _resume_point(token, text: str, parameters: list, parts: int) -> tuple[int, dict | None]:
    if not isinstance(token, str) or not 1 <= len(token) <= 32768:
        raise ValidationException("Invalid NextToken")
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise ValidationException("Invalid NextToken") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("k"), (dict, type(None))) or \
            type(payload.get("q")) is not int:
        raise ValidationException("Invalid NextToken")
    if payload.get("h") != _fingerprint(text, parameters) or not 0 <= payload["q"] < parts:
        raise ValidationException("The provided starting key is invalid")
    return payload["q"], payload["k"]


# ------------------------------------------------------------------ ExecuteStatement

@operation("ExecuteStatement")
async def execute_statement(svc, request: dict) -> bytes:
    text = _statement(request.get("Statement"), "statement")
    parameters = _parameters(request.get("Parameters"), "parameters")
    limit = limit_of(request)
    mode = capacity.requested_mode(request)
    on_failure = _return_on_failure(request.get("ReturnValuesOnConditionCheckFailure"),
                                    "returnValuesOnConditionCheckFailure")
    prepared = _Prepared(svc, text, parameters)
    plan = prepared.plan
    extra = {"ReturnConsumedCapacity": mode} if mode != "NONE" else {}
    if not plan.is_read:
        if on_failure != "NONE":
            extra["ReturnValuesOnConditionCheckFailure"] = on_failure
        response = await _run_write(svc, prepared, extra)
        return _statement_response(_items_of(plan, response), response.get("ConsumedCapacity"))
    if request.get("ConsistentRead") is not None:
        extra["ConsistentRead"] = request["ConsistentRead"]
    parts = plan.parts or [plan]
    position, start = 0, None
    if request.get("NextToken") is not None:
        position, start = _resume_point(request["NextToken"], text, parameters, len(parts))
    items, spent, fields = [], [], {}
    remaining, page_json, page_size = limit, 0, None
    for index in range(position, len(parts)):
        part = parts[index]
        own = dict(extra)
        if part.op != "GetItem":
            if remaining is not None:
                own["Limit"] = remaining
            if start is not None and index == position:
                own["ExclusiveStartKey"] = start
        response = await _run(svc, part.op, dict(part.request, **own))
        found = _items_of(part, response)
        items += found
        if "ConsumedCapacity" in response:
            spent.append(response["ConsumedCapacity"])
        last_key = response.get("LastEvaluatedKey")
        if last_key is not None:
            fields["NextToken"] = _next_token(text, parameters, index, last_key)
            fields["LastEvaluatedKey"] = last_key
            break
        # Limit counts the items read, as Query's ScannedCount does; a GetItem reads one.
        if remaining is not None:
            remaining -= 1 if part.op == "GetItem" else response.get("ScannedCount", 0)
        # The page's DynamoDB size, counted only once its JSON (never shorter) reaches the 1 MB.
        page_json += len(orjson.dumps(found))
        if page_json >= PAGE_BYTES:
            page_size = sum(values.item_size(item) for item in (items if page_size is None else found)) + (
                page_size or 0)
        if index + 1 < len(parts) and ((remaining is not None and remaining <= 0)
                                       or (page_size or 0) >= PAGE_BYTES):
            fields["NextToken"] = _next_token(text, parameters, index + 1, None)
            break
    used = (spent[0] if len(spent) == 1 else _summed_capacity(mode, spent)[0]) if spent else None
    return _statement_response(items, used, fields)


def _statement_response(items: list, used: dict | None, fields: dict | None = None) -> bytes:
    result = {"Items": items, **(fields or {})}
    if used is not None:
        result["ConsumedCapacity"] = used
    return orjson.dumps(result)


# ------------------------------------------------------------------ BatchExecuteStatement

@operation("BatchExecuteStatement")
async def batch_execute_statement(svc, request: dict) -> bytes:
    entries = _statements(request.get("Statements"), "statements", MAX_BATCH_STATEMENTS)
    mode = capacity.requested_mode(request)
    prepared: list = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise constraint_error([f"Value null at 'statements.{position + 1}.member' failed to satisfy "
                                    "constraint: Member must not be null"])
        text = _statement(entry.get("Statement"), f"statements.{position + 1}.member.statement")
        parameters = _parameters(entry.get("Parameters"), f"statements.{position + 1}.member.parameters")
        on_failure = _return_on_failure(entry.get("ReturnValuesOnConditionCheckFailure"),
                                        f"statements.{position + 1}.member.returnValuesOnConditionCheckFailure")
        try:
            prepared.append((_Prepared(svc, text, parameters), entry, on_failure))
        except DynamoDBError as error:
            prepared.append((error, entry, on_failure))
    kinds = {p.plan.is_read for p, _, _ in prepared if isinstance(p, _Prepared)}
    if len(kinds) > 1:
        raise ValidationException("BatchExecuteStatement does not support both read and write statements in "
                                  "the same request")

    async def one(statement, entry: dict, on_failure: str) -> tuple[dict, dict | None]:
        """(the statement's BatchStatementResponse, its ConsumedCapacity)."""
        if isinstance(statement, DynamoDBError):
            return _batch_error(statement), None
        plan = statement.plan
        extra = {"ReturnConsumedCapacity": mode} if mode != "NONE" else {}
        try:
            if plan.is_read:
                if not plan.full_key:
                    raise ValidationException(translate.INCOMPLETE_KEY)
                if entry.get("ConsistentRead") is not None:
                    extra["ConsistentRead"] = entry["ConsistentRead"]
                response = await _run(svc, plan.op, dict(plan.request, **extra))
            else:
                if on_failure != "NONE":
                    extra["ReturnValuesOnConditionCheckFailure"] = on_failure
                response = await _run_write(svc, statement, extra)
        except DynamoDBError as error:
            return {"TableName": plan.table, **_batch_error(error)}, None
        result = {"TableName": plan.table}
        if plan.is_read:
            items = _items_of(plan, response)
            if items:
                result["Item"] = items[0]
        return result, response.get("ConsumedCapacity")

    answers = await asyncio.gather(*(one(*p) for p in prepared))
    result: dict = {"Responses": [response for response, _ in answers]}
    if mode != "NONE":
        result["ConsumedCapacity"] = _summed_capacity(mode, [spent for _, spent in answers if spent])
    return orjson.dumps(result)


def _batch_error(error: DynamoDBError) -> dict:
    code = _BATCH_CODES.get(error.type_name, "InternalServerError")
    body = {"Code": code, "Message": error.message}
    if getattr(error, "item", None) is not None:
        body["Item"] = error.item
    return {"Error": body}


def _summed_capacity(mode: str, parts: list) -> list:
    """One ConsumedCapacity per table, summed over the statements that read or wrote it."""
    tables: dict[str, list] = {}
    for part in parts:
        own = part["Table"]["CapacityUnits"] if "Table" in part else part["CapacityUnits"]
        gsis, lsis = ({name: spent["CapacityUnits"] for name, spent in part.get(member, {}).items()}
                      for member in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"))
        capacity.add_units(tables.setdefault(part["TableName"], [0.0, {}, {}]), own, gsis, lsis)
    return [capacity.consumed(mode, name, own, gsis=gsis, lsis=lsis) for name, (own, gsis, lsis) in tables.items()]


# ------------------------------------------------------------------ ExecuteTransaction

@operation("ExecuteTransaction")
async def execute_transaction(svc, request: dict) -> bytes:
    entries = _statements(request.get("TransactStatements"), "transactStatements", MAX_TRANSACTION_STATEMENTS)
    mode = capacity.requested_mode(request)
    prepared = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise constraint_error([f"Value null at 'transactStatements.{position + 1}.member' failed to satisfy "
                                    "constraint: Member must not be null"])
        field = f"transactStatements.{position + 1}.member"
        text = _statement(entry.get("Statement"), field + ".statement")
        parameters = _parameters(entry.get("Parameters"), field + ".parameters")
        on_failure = _return_on_failure(entry.get("ReturnValuesOnConditionCheckFailure"),
                                        field + ".returnValuesOnConditionCheckFailure")
        prepared.append((_Prepared(svc, text, parameters), on_failure))
    reads = {p.plan.is_read for p, _ in prepared}
    if len(reads) > 1:
        raise ValidationException("ExecuteTransaction API does not support both read and write operations in the "
                                  "same request.")
    extra = {"ReturnConsumedCapacity": mode} if mode != "NONE" else {}
    if reads == {True}:
        return await _transact_reads(svc, [p for p, _ in prepared], extra)
    items = []
    for statement, on_failure in prepared:
        body = statement.parsed.body
        if getattr(body, "returning", None) is not None:
            raise ValidationException("RETURNING is not supported in ExecuteTransaction statements")
        action = dict(statement.plan.request)
        if on_failure != "NONE":
            action["ReturnValuesOnConditionCheckFailure"] = on_failure
        items.append({_WRITE_KINDS[statement.plan.op]: action})
    transact = {"TransactItems": items, **extra}
    if request.get("ClientRequestToken") is not None:
        transact["ClientRequestToken"] = request["ClientRequestToken"]
    try:
        response = await _run(svc, "TransactWriteItems", transact)
    except TransactionCanceledException as error:
        raise _with_duplicates(error, [p for p, _ in prepared]) from None
    # DynamoDB answers a transaction of writes with an empty Responses list, not without one.
    return orjson.dumps({"Responses": [], **response})


async def _transact_reads(svc, prepared: list, extra: dict) -> bytes:
    gets = []
    for statement in prepared:
        plan = statement.plan
        if plan.request.get("IndexName") is not None:
            raise ValidationException("Reads on indices are not supported within transactions.")
        if plan.op != "GetItem":
            raise ValidationException("Select statements within ExecuteTransaction must specify the primary key "
                                      "in the where clause.")
        gets.append({"Get": plan.request})
    response = await _run(svc, "TransactGetItems", {"TransactItems": gets, **extra})
    responses = []
    for statement, answer in zip(prepared, response.get("Responses", [])):
        if "Item" in answer:
            answer = {"Item": translate.shape_item(answer["Item"], statement.plan.projection)}
        responses.append(answer)
    result = {"Responses": responses}
    if "ConsumedCapacity" in response:
        result["ConsumedCapacity"] = response["ConsumedCapacity"]
    return orjson.dumps(result)


def _with_duplicates(error: TransactionCanceledException, prepared: list) -> TransactionCanceledException:
    """An INSERT's failed existence check is reported as DynamoDB reports it: DuplicateItem."""
    reasons = list(error.reasons)
    for position, statement in enumerate(prepared):
        if statement.is_insert and position < len(reasons) and reasons[position].get("Code") == \
                "ConditionalCheckFailed":
            reasons[position] = {"Code": "DuplicateItem", "Message": DUPLICATE_ITEM}
    return cancellation(reasons)
