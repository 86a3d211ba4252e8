"""TransactWriteItems and TransactGetItems: two-phase commit over the rings, coordinated by the acceptor.

TransactWriteItems: the acceptor validates every action, groups them by owner
shard and sends each owner PREPARE; an owner locks its items, checks their
conditions, computes the new images and logs a durable intent.  If every owner
agrees, the acceptor logs its commit decision and sends COMMIT; otherwise
ABORT, and the client gets TransactionCanceledException with one reason per
action.  TransactGetItems read-locks its items on every owner, reads them,
and cancels if any item has a pending intent or was written meanwhile.

The participant state and the recovery rule live in shardserver/shard/transactions.py;
this module only speaks the protocol.  It never writes an item itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import zlib

import orjson

from shardserver.errors import (DynamoDBError, IdempotentParameterMismatchException, InternalServerError,
                                ResourceNotFoundException, TransactionCanceledException,
                                TransactionInProgressException, ValidationException)
from shardserver.shard import values
from shardserver.shard.executor import capacity, fabric_verb, operation
from shardserver.shard.executor.tables import (check_expressions_alone, check_table_name, constraint_error,
                                               table_of)
from shardserver.shard.keys import EmptyKeyValue, key_of_item, key_of_request
from shardserver.shard.transactions import CONFLICT_REASON, NONE_REASON

MAX_ACTIONS = 100
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024
MAX_TOKEN_LENGTH = 36
WRITE_KINDS = ("ConditionCheck", "Put", "Delete", "Update")
_OP_OF_KIND = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "DeleteItem"}

# Error injection (as Scylla's): seconds a coordinator waits between a successful PREPARE
# round and its commit decision, so tests can kill shards at that point.  0 in production.
INJECT_DECISION_DELAY = float(os.environ.get("SHARDSERVER_INJECT_TX_DECISION_DELAY_S") or 0)
# the same, between the durable decision and telling the token shard "done"
INJECT_DECIDED_DELAY = float(os.environ.get("SHARDSERVER_INJECT_TX_DECIDED_DELAY_S") or 0)

TX_PREPARE = b"txprep"      # orjson {"tx", "c", "a": [[index, action]]} -> {"r": {index: reason}, "s": units}
TX_COMMIT = b"txcommit"     # tx id -> b""
TX_ABORT = b"txabort"       # tx id -> b""
TX_STATUS = b"txstatus"     # tx id -> b"c" | b"p" | b"a"
TX_READ = b"txread"         # orjson {"t": token or null, "g": [[index, get]]} -> {"i": items, "r": reasons}
TX_RELEASE = b"txrelease"   # token -> orjson [indexes whose read was overtaken by a write]
TX_TOKEN = b"txtoken"       # orjson {"o": "claim"|"done"|"fail", "t", "h"} -> state
TX_COLLECTIONS = b"txcolls" # orjson [[table name, partition key value]] -> orjson [ItemCollectionMetrics | null]


class Action:
    """One validated TransactItems entry.

    Validated in DynamoDB's order: first, action by action, the parameters, the attribute
    values and the expressions (none of which needs the table); then, once every action has
    passed that, the tables and the keys (``locate``)."""

    __slots__ = ("index", "kind", "body", "schema", "key_av", "key", "item", "prepared", "owner")

    def __init__(self, svc, index: int, kind: str, body: dict):
        if not isinstance(body, dict):
            raise ValidationException(f"1 validation error detected: Value null at 'transactItems.{index + 1}.member."
                                      f"{kind[0].lower() + kind[1:]}' failed to satisfy constraint: "
                                      "Member must not be null")
        self.index, self.kind, self.body = index, kind, body
        name = body.get("TableName")
        self.schema = svc.catalog.tables.get(name) if isinstance(name, str) else None
        self.item = None
        member = "item" if kind == "Put" else "key"
        given = body.get("Item" if kind == "Put" else "Key")
        if given is None:
            raise constraint_error([f"Value null at 'transactItems.{index + 1}.member.{kind[0].lower() + kind[1:]}."
                                    f"{member}' failed to satisfy constraint: Member must not be null"])
        # A malformed AttributeValue refuses the whole request; only what breaks the table's
        # schema (the key) or its limits (the item size) is a reason of this one action.
        if kind == "Put":
            self.item = given
            values.validate_item(given)
        else:
            self.key_av = given
            if isinstance(given, dict):
                for av in given.values():
                    values.validate_value(av)
        if kind == "Update" and not isinstance(body.get("UpdateExpression"), str):
            raise constraint_error([f"Value null at 'transactItems.{index + 1}.member.update.updateExpression' "
                                    "failed to satisfy constraint: Member must not be null"])
        if kind == "ConditionCheck" and not isinstance(body.get("ConditionExpression"), str):
            raise constraint_error([f"Value null at 'transactItems.{index + 1}.member.conditionCheck."
                                    "conditionExpression' failed to satisfy constraint: Member must not be null"])
        if self.schema is None:
            check_table_name(name)
            check_expressions_alone(body)
        else:
            self.prepared = svc.prepare_expressions(body, self.schema, _OP_OF_KIND[kind])

    def locate(self, svc) -> None:
        """The table, the key (as this action's own cancellation reason) and the owner shard."""
        schema = self.schema
        if schema is None:
            raise ResourceNotFoundException("Requested resource not found")
        with _action_data_check(self.index):
            if self.kind == "Put":
                pk, sk = key_of_item(schema, self.item)
                values.check_item_size(self.item)
                self.key_av = {name: self.item[name] for name in schema.key_names}
            else:
                pk, sk = key_of_request(schema, self.key_av)
        self.key = values.encode_key(pk, sk)
        self.owner = svc.owner_of(pk)


class ActionDataError(Exception):
    """An action's data breaks the table's rules (a key of the wrong type, an oversized item).
    DynamoDB cancels the transaction for it, with a ValidationError reason on that action,
    instead of refusing the whole request as it does for malformed parameters."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index, self.message = index, message


@contextlib.contextmanager
def _action_data_check(index: int):
    try:
        yield
    except EmptyKeyValue:
        raise
    except ValidationException as error:
        raise ActionDataError(index, error.message) from None


def _transact_items(request: dict) -> list:
    items = request.get("TransactItems")
    if not isinstance(items, list):
        raise constraint_error(["Value null at 'transactItems' failed to satisfy constraint: "
                                "Member must not be null"])
    if not items:
        raise constraint_error(["Value '[]' at 'transactItems' failed to satisfy constraint: "
                                "Member must have length greater than or equal to 1"])
    if len(items) > MAX_ACTIONS:
        raise constraint_error([f"Value '[{len(items)} items]' at 'transactItems' failed to satisfy constraint: "
                                f"Member must have length less than or equal to {MAX_ACTIONS}"])
    return items


def parse_write_actions(svc, items: list) -> list[Action]:
    actions = []
    for index, entry in enumerate(items):
        kinds = [k for k in WRITE_KINDS if isinstance(entry, dict) and entry.get(k) is not None]
        if len(kinds) != 1 or len(entry) != 1:
            raise ValidationException("TransactItems can only contain one of Check, Put, Update or Delete")
        actions.append(Action(svc, index, kinds[0], entry[kinds[0]]))
    try:
        for action in actions:
            action.locate(svc)
    except ActionDataError as error:
        raise _data_cancellation(len(items), error) from None
    return actions


def _data_cancellation(count: int, error: ActionDataError) -> TransactionCanceledException:
    # DynamoDB stops at the first such action: the others are reported as None.
    reasons = [NONE_REASON] * count
    reasons[error.index] = {"Code": "ValidationError", "Message": error.message}
    return cancellation(reasons)


def _check_distinct(entries) -> None:
    seen = set()
    for table_id, key in entries:
        if (table_id, key) in seen:
            raise ValidationException("Transaction request cannot include multiple operations on one item")
        seen.add((table_id, key))


def cancellation(reasons: list) -> TransactionCanceledException:
    codes = ", ".join(r["Code"] for r in reasons)
    return TransactionCanceledException(
        f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]", reasons)


# ------------------------------------------------------------------ TransactWriteItems

@operation("TransactWriteItems")
async def transact_write_items(svc, request: dict) -> bytes:
    items = _transact_items(request)
    token = request.get("ClientRequestToken")
    # Member constraints come first, every failing one in a single message (token first).
    problems = []
    if token is not None and not 1 <= len(token) <= MAX_TOKEN_LENGTH:
        bound = (f"less than or equal to {MAX_TOKEN_LENGTH}" if len(token) > MAX_TOKEN_LENGTH
                 else "greater than or equal to 1")
        problems.append(f"Value '{token}' at 'clientRequestToken' failed to satisfy constraint: "
                        f"Member must have length {bound}")
    mode = request.get("ReturnConsumedCapacity", "NONE")
    if mode not in capacity.MODES:
        problems.append(f"Value '{mode}' at 'returnConsumedCapacity' failed to satisfy constraint: "
                        "Member must satisfy enum value set: [INDEXES, TOTAL, NONE]")
    metrics = request.get("ReturnItemCollectionMetrics", "NONE")
    if metrics not in capacity.COLLECTION_METRICS:
        problems.append(f"Value '{metrics}' at 'returnItemCollectionMetrics' failed to satisfy constraint: "
                        "Member must satisfy enum value set: [SIZE, NONE]")
    if problems:
        raise constraint_error(problems)
    actions = parse_write_actions(svc, items)
    _check_distinct((a.schema.table_id, a.key) for a in actions)
    if len(orjson.dumps(items)) > MAX_TRANSACTION_BYTES:
        raise ValidationException("Transaction payload size cannot exceed 4 MB")
    if token is None:
        return await _run_write(svc, actions, mode, request)
    # ReturnConsumedCapacity only shapes the answer: a retry may ask differently (DynamoDB
    # answers a retry with the units of reading the items instead).
    digest = hashlib.sha256(orjson.dumps({k: v for k, v in request.items()
                                          if k not in ("ClientRequestToken", "ReturnConsumedCapacity")},
                                         option=orjson.OPT_SORT_KEYS)).hexdigest()
    token_shard = zlib.crc32(token.encode()) % svc.nshards
    table = svc.transactions
    tx = table.new_id()
    # Preparing before the claim: a retry that finds the token held asks this shard about
    # tx, and must hear "preparing" (not "abort") for as long as it may still commit.
    table.preparing.add(tx)
    try:
        state = await _token(svc, token_shard, "claim", token, digest, tx)
    except BaseException:
        table.preparing.discard(tx)
        raise
    if state != "new":
        table.preparing.discard(tx)
    if state == "done":
        # Already applied within the idempotency window: succeed without applying again.
        return await _response(svc, actions, {}, mode, request, set(), replay=True)
    if state == "progress":
        raise TransactionInProgressException("Transaction is in progress with the same client request token")
    if state == "mismatch":
        raise IdempotentParameterMismatchException(
            "Request parameters do not match a previous request with the same ClientRequestToken")
    told = False

    async def tell(outcome: str) -> bool:
        nonlocal told
        told = True
        try:
            await _token(svc, token_shard, outcome, token, digest, tx)
            return True
        except DynamoDBError:
            # The token shard is restarting. Its claim is in its commit log: a retry asks this
            # shard about tx, and a committed decision waits here for the sweep to tell "done".
            return False

    async def on_decided(decision) -> None:
        if await tell("done"):
            table.token_told(decision)

    succeeded = False
    try:
        # "done" goes out once the decision is durable, and the decision is not forgotten
        # before the token shard heard it, so "abort" about tx never hides a commit.
        result = await _run_write(svc, actions, mode, request, tx, token=[token, digest, token_shard],
                                  on_decided=on_decided)
        succeeded = True
        return result
    finally:
        if not told:
            await tell("done" if succeeded else "fail")


async def _token(svc, shard: int, op: str, token: str, digest: str, tx: str) -> str:
    reply = await svc.submit_to(shard, TX_TOKEN, orjson.dumps({"o": op, "t": token, "h": digest, "x": tx}))
    return reply.decode()


async def _run_write(svc, actions: list[Action], mode: str, request: dict, tx: str | None = None,
                     token: list | None = None, on_decided=None) -> bytes:
    table = svc.transactions
    if tx is None:
        tx = table.new_id()
    by_shard: dict[int, list[Action]] = {}
    for action in actions:
        by_shard.setdefault(action.owner, []).append(action)
    table.preparing.add(tx)
    try:
        return await _prepare_and_decide(svc, table, tx, actions, by_shard, mode, request, token, on_decided)
    finally:
        # Whatever way we leave (even cancelled), an undecided transaction is now presumed aborted.
        table.preparing.discard(tx)


async def _prepare_and_decide(svc, table, tx: str, actions: list[Action], by_shard: dict, mode: str,
                              request: dict, token: list | None = None, on_decided=None) -> bytes:
    replies = await asyncio.gather(*(_send_prepare(svc, shard, tx, part) for shard, part in by_shard.items()),
                                   return_exceptions=True)
    reasons: list[dict | None] = [None] * len(actions)
    spent: dict[int, list] = {}
    failure = None
    for reply in replies:
        if isinstance(reply, BaseException):
            failure = reply
            continue
        for index, reason in reply["r"].items():
            reasons[int(index)] = reason
        spent.update((int(i), s) for i, s in reply["s"].items())
    if failure is not None or any(reasons) or tx not in table.preparing:
        table.preparing.discard(tx)
        await asyncio.gather(*(_send(svc, shard, TX_ABORT, tx.encode()) for shard in by_shard),
                             return_exceptions=True)
        if any(reasons):
            refused = next((r for r in reasons if r and r.get("T")), None)
            if refused is not None:     # an empty index key value: input validation, not a reason
                raise ValidationException(refused["Message"])
            raise cancellation([r or NONE_REASON for r in reasons])
        if isinstance(failure, DynamoDBError):
            raise failure
        if failure is not None:
            raise InternalServerError("Internal server error") from failure
        raise InternalServerError("Internal server error")
    if INJECT_DECISION_DELAY:
        await asyncio.sleep(INJECT_DECISION_DELAY)
    decision = await table.decide_commit(tx, set(by_shard), token)
    if INJECT_DECIDED_DELAY:
        await asyncio.sleep(INJECT_DECIDED_DELAY)
    if on_decided is not None:
        await on_decided(decision)
    # The decision is durable: the transaction is committed even if a participant is down
    # now; it will learn the outcome when it is back (see transactions.py).
    await table.push_commit(svc, decision, lambda shard, t: send_commit(svc, shard, t),
                            lambda d: tell_token_done(svc, d))
    # A participant that has not acknowledged has not applied its writes yet: its item
    # collections are not measured (the transaction is committed all the same).
    return await _response(svc, actions, spent, mode, request, set(decision.participants))


async def _response(svc, actions: list[Action], spent: dict, mode: str, request: dict,
                    unapplied: set[int], replay: bool = False) -> bytes:
    """TransactWriteItems' answer: ConsumedCapacity and ItemCollectionMetrics, as asked for.
    A ``replay`` (a retry of an applied ClientRequestToken) writes nothing: as DynamoDB
    documents it, its capacity is the read capacity units of reading the items."""
    response = {}
    if mode != "NONE":
        response["ConsumedCapacity"] = _consumed(actions, spent, mode, read=replay)
    collections = await _collection_metrics(svc, actions, request, unapplied)
    if collections:
        response["ItemCollectionMetrics"] = collections
    return orjson.dumps(response) if response else b"{}"


async def _collection_metrics(svc, actions: list[Action], request: dict, unapplied: set[int]) -> dict:
    """Per table, the ItemCollectionMetrics of each item collection a Put, Update or Delete
    wrote to (a ConditionCheck writes none), measured by its owner after the commit."""
    wanted: dict[int, dict] = {}     # owner -> {(table, key JSON): (table, partition key value)}
    for action in actions:
        if action.kind == "ConditionCheck" or action.owner in unapplied or \
                not capacity.wants_collection_metrics(request, action.schema):
            continue
        pk = action.key_av[action.schema.hash_key]
        wanted.setdefault(action.owner, {})[(action.schema.name, orjson.dumps(pk))] = (action.schema.name, pk)
    if not wanted:
        return {}
    owners = list(wanted)
    replies = await asyncio.gather(*(svc.submit_to(owner, TX_COLLECTIONS, orjson.dumps(list(wanted[owner].values())))
                                     for owner in owners), return_exceptions=True)
    collections: dict[str, list] = {}
    for owner, reply in zip(owners, replies):
        if isinstance(reply, BaseException):
            continue        # the owner went away after committing: its collections go unmeasured
        for (name, _), metrics in zip(wanted[owner].values(), orjson.loads(reply)):
            if metrics is not None:
                collections.setdefault(name, []).append(metrics)
    return collections


@fabric_verb(TX_COLLECTIONS)
async def _on_collections(svc, src: int, payload: bytes) -> bytes:
    measured = []
    for name, pk in orjson.loads(payload):
        schema = svc.catalog.tables.get(name)
        measured.append(await capacity.collection_metrics(svc, schema, pk) if schema is not None else None)
    return orjson.dumps(measured)


def _consumed(actions: list[Action], spent: dict, mode: str, read: bool = False) -> list:
    """Per table: the units each participant reported for its actions ([table, {GSI: u},
    {LSI: u}]), doubled: a transactional write costs two units per KB (prepare and commit).
    ``read``: the transactional read of each item instead (two units), reported as reads."""
    tables: dict[str, list] = {}
    for action in actions:
        capacity.add_units(tables.setdefault(action.schema.name, [0.0, {}, {}]),
                           *((1.0, {}, {}) if read else spent.get(action.index, (1.0, {}, {}))), factor=2.0)
    return [capacity.consumed(mode, name, table, read=read, gsis=gsis, lsis=lsis)
            for name, (table, gsis, lsis) in tables.items()]


async def _send(svc, shard: int, verb: bytes, payload: bytes) -> bytes:
    return await svc.submit_to(shard, verb, payload)


async def _send_prepare(svc, shard: int, tx: str, part: list[Action]) -> dict:
    payload = orjson.dumps({"tx": tx, "c": svc.shard_id, "a": [[a.index, {a.kind: a.body}] for a in part]})
    return orjson.loads(await svc.submit_to(shard, TX_PREPARE, payload))


async def send_commit(svc, shard: int, tx: str) -> None:
    await svc.submit_to(shard, TX_COMMIT, tx.encode())


async def tell_token_done(svc, decision) -> None:
    """Tells a committed decision's token shard "done" (raises while that shard is down)."""
    token, digest, shard = decision.token
    await _token(svc, shard, "done", token, digest, decision.tx)


async def ask_status(svc, coordinator: int, tx: str) -> bytes:
    return await svc.submit_to(coordinator, TX_STATUS, tx.encode())


@fabric_verb(TX_PREPARE)
async def _on_prepare(svc, src: int, payload: bytes) -> bytes:
    request = orjson.loads(payload)
    actions = []
    reasons: dict[int, dict] = {}
    for index, entry in request["a"]:
        (kind, body), = entry.items()
        try:
            action = Action(svc, index, kind, body)
            action.locate(svc)
            actions.append(action)
        except (ActionDataError, DynamoDBError) as error:   # e.g. the table changed since the acceptor looked
            reasons[index] = {"Code": "ValidationError", "Message": error.message}
    if reasons:
        return orjson.dumps({"r": reasons, "s": {}}, option=orjson.OPT_NON_STR_KEYS)
    reasons, spent = await svc.transactions.prepare(svc, request["tx"], request["c"], actions)
    return orjson.dumps({"r": reasons, "s": spent}, option=orjson.OPT_NON_STR_KEYS)


@fabric_verb(TX_COMMIT)
async def _on_commit(svc, src: int, payload: bytes) -> bytes:
    await svc.transactions.commit(svc, payload.decode())
    return b""


@fabric_verb(TX_ABORT)
async def _on_abort(svc, src: int, payload: bytes) -> bytes:
    svc.transactions.abort(payload.decode())
    return b""


@fabric_verb(TX_STATUS)
async def _on_status(svc, src: int, payload: bytes) -> bytes:
    return svc.transactions.status(payload.decode())


@fabric_verb(TX_TOKEN)
async def _on_token(svc, src: int, payload: bytes) -> bytes:
    request = orjson.loads(payload)
    table = svc.transactions
    if request["o"] == "claim":
        state = table.claim_token(request["t"], request["h"], request.get("x"), src)
        if state == "progress":
            state = await _settle_claim(svc, table, request, src)
        return state.encode()
    table.finish_token(request["t"], request["h"], request["o"] == "done", request.get("x"))
    return b""


async def _settle_claim(svc, table, request: dict, src: int) -> str:
    """A claim of a token in progress: its coordinator says whether that transaction may still
    commit; one that died undecided frees the token instead of holding it for the whole window."""
    holder = table.token_holder(request["t"])
    if holder is None:
        return "progress"
    held_by, coordinator = holder
    try:
        outcome = await ask_status(svc, coordinator, held_by)
    except DynamoDBError:
        return "progress"       # the coordinator is restarting: the next retry asks again
    return table.settle_token(request["t"], request["h"], held_by, outcome, request.get("x"), src)


# ------------------------------------------------------------------ TransactGetItems

class Get:
    __slots__ = ("index", "body", "schema", "key", "projection", "owner")

    def __init__(self, svc, index: int, entry):
        body = entry.get("Get") if isinstance(entry, dict) else None
        if not isinstance(body, dict) or len(entry) != 1:
            raise constraint_error([f"Value null at 'transactItems.{index + 1}.member.get' failed to satisfy "
                                    "constraint: Member must not be null"])
        self.index, self.body = index, body
        schema = self.schema = table_of(svc, body)
        key = body.get("Key")
        if key is None:
            raise constraint_error([f"Value null at 'transactItems.{index + 1}.member.get.key' failed to satisfy "
                                    "constraint: Member must not be null"])
        for av in key.values() if isinstance(key, dict) else ():
            values.validate_value(av)
        with _action_data_check(index):
            pk, sk = key_of_request(schema, key)
        self.projection = svc.prepare_expressions(body, schema, "GetItem").projection
        self.key = values.encode_key(pk, sk)
        self.owner = svc.owner_of(pk)


@operation("TransactGetItems")
async def transact_get_items(svc, request: dict) -> bytes:
    items = _transact_items(request)
    mode = capacity.requested_mode(request)
    try:
        gets = [Get(svc, index, entry) for index, entry in enumerate(items)]
    except ActionDataError as error:
        raise _data_cancellation(len(items), error) from None
    _check_distinct((g.schema.table_id, g.key) for g in gets)
    by_shard: dict[int, list[Get]] = {}
    for get in gets:
        by_shard.setdefault(get.owner, []).append(get)
    single = len(by_shard) == 1
    token = None if single else svc.transactions.new_id()

    async def read(shard: int, part: list[Get]) -> dict:
        payload = orjson.dumps({"t": token, "g": [[g.index, g.body] for g in part]})
        return orjson.loads(await svc.submit_to(shard, TX_READ, payload))

    replies = await asyncio.gather(*(read(s, p) for s, p in by_shard.items()), return_exceptions=True)
    results: dict[int, dict | None] = {}
    conflicts: set[int] = set()
    failure = None
    for reply in replies:
        if isinstance(reply, BaseException):
            failure = reply
            continue
        results.update((int(i), item) for i, item in reply["i"].items())
        conflicts.update(int(i) for i in reply["r"])
    if token is not None:
        # Second round: release the read locks; a write that overtook one of them cancels us.
        shards = list(by_shard)
        released = await asyncio.gather(*(svc.submit_to(s, TX_RELEASE, token.encode()) for s in shards),
                                        return_exceptions=True)
        for shard, reply in zip(shards, released):
            if isinstance(reply, BaseException):
                failure = failure or reply
                continue
            broken = orjson.loads(reply)
            if broken == [-1]:
                # The owner no longer holds our locks (it expired them or restarted).
                broken = [g.index for g in by_shard[shard]]
            conflicts.update(broken)
    if conflicts:
        raise cancellation([CONFLICT_REASON if g.index in conflicts else NONE_REASON for g in gets])
    if failure is not None:
        if isinstance(failure, DynamoDBError):
            raise failure    # a shard restarting arrives as ServiceUnavailableException
        raise InternalServerError("Internal server error") from failure
    responses = []
    units: dict[str, float] = {}
    for get in gets:
        item = results.get(get.index)
        responses.append({"Item": item} if item is not None else {})
        if mode != "NONE":
            size = values.item_size(item) if item is not None else 0
            units[get.schema.name] = units.get(get.schema.name, 0.0) + 2 * capacity.read_units(size, True)
    response = {"Responses": responses}
    if mode != "NONE":
        response["ConsumedCapacity"] = [capacity.consumed(mode, n, u, read=True) for n, u in units.items()]
    return orjson.dumps(response)


@fabric_verb(TX_READ)
async def _on_read(svc, src: int, payload: bytes) -> bytes:
    request = orjson.loads(payload)
    gets = [Get(svc, index, {"Get": body}) for index, body in request["g"]]
    table = svc.transactions
    conflicts, held = table.lock_for_read([(g.schema.table_id, g.key) for g in gets])
    if conflicts:
        table.unlock_read(held)
        return orjson.dumps({"i": {}, "r": [gets[p].index for p in conflicts]})
    items = {}
    try:
        for get in gets:
            stored = await svc.storage.get(get.schema.table_id, get.key)
            if stored is None:
                items[get.index] = None
            else:
                item = orjson.loads(stored)
                items[get.index] = get.projection(item) if get.projection is not None else item
    except BaseException:
        table.unlock_read(held)
        raise
    token = request["t"]
    if token is None:
        broken = [gets[p].index for p in table.unlock_read(held)]
    else:
        table.hold_reads(token, [(lk, entry, get.index) for (lk, entry), get in zip(held, gets)])
        broken = []
    return orjson.dumps({"i": items, "r": broken}, option=orjson.OPT_NON_STR_KEYS)


@fabric_verb(TX_RELEASE)
async def _on_release(svc, src: int, payload: bytes) -> bytes:
    table = svc.transactions
    holds = table.take_reads(payload.decode())
    if holds is None:
        # Expired (or this shard restarted): the reads cannot be vouched for.
        return b"[-1]"
    broken = table.unlock_read([(lk, entry) for lk, entry, _ in holds])
    return orjson.dumps([holds[p][2] for p in broken])
