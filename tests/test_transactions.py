"""TransactWriteItems / TransactGetItems through boto3 against real 2-shard servers.

Items are chosen so that every transaction spans both shards.  The crash
tests run their own server with an injected pause between the PREPARE round
and the commit decision, and SIGKILL shards (only pids this test started)
inside that window.
"""

import http.client
import json
import os
import re
import signal
import threading
import time
import zlib

import pytest
from botocore.exceptions import ClientError

from conftest import create_table
from serverutil import ServerProcess, make_client
from shardserver.shard import routing

DELAY_ENV = "SHARDSERVER_INJECT_TX_DECISION_DELAY_S"


def keys_on_each_shard(prefix="k", count=1):
    """``count`` partition keys owned by shard 0 and ``count`` by shard 1."""
    found = {0: [], 1: []}
    i = 0
    while len(found[0]) < count or len(found[1]) < count:
        key = f"{prefix}{i}"
        shard = routing.shard_of_key({"S": key}, 2)[0]
        if len(found[shard]) < count:
            found[shard].append(key)
        i += 1
    return found[0], found[1]


def key(k):
    return {"pk": {"S": k}}


def put(table, k, **attrs):
    item = {"pk": {"S": k}}
    item.update({name: {"N": str(v)} for name, v in attrs.items()})
    return {"Put": {"TableName": table, "Item": item}}


def increment(table, k):
    return {"Update": {"TableName": table, "Key": key(k), "UpdateExpression": "ADD v :one",
                       "ExpressionAttributeValues": {":one": {"N": "1"}}}}


def value(ddb, table, k):
    item = ddb.get_item(TableName=table, Key=key(k), ConsistentRead=True).get("Item")
    return None if item is None else int(item["v"]["N"])


def cancellation_codes(error):
    return [r["Code"] for r in error.value.response["CancellationReasons"]]


# ------------------------------------------------------------------ basic semantics (shared server)

def test_write_then_get_across_shards(ddb, hash_table):
    (a,), (b,) = keys_on_each_shard("w")
    result = ddb.transact_write_items(TransactItems=[put(hash_table, a, v=1), put(hash_table, b, v=2)],
                                      ReturnConsumedCapacity="TOTAL")
    assert result["ConsumedCapacity"] == [{"TableName": hash_table, "CapacityUnits": 4.0,
                                           "WriteCapacityUnits": 4.0}]
    got = ddb.transact_get_items(TransactItems=[
        {"Get": {"TableName": hash_table, "Key": key(b)}},
        {"Get": {"TableName": hash_table, "Key": key("absent")}},
        {"Get": {"TableName": hash_table, "Key": key(a), "ProjectionExpression": "v"}}])
    assert got["Responses"] == [{"Item": {"pk": {"S": b}, "v": {"N": "2"}}}, {}, {"Item": {"v": {"N": "1"}}}]


def test_update_delete_and_condition_check_apply_together(ddb, hash_table):
    range_table = create_table(ddb, hash_table + "_r", range_key=("sk", "S"))
    (a, c), (b, d) = keys_on_each_shard("m", 2)
    for k in (a, b, c):
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": k}, "v": {"N": "5"}})
    ddb.put_item(TableName=range_table, Item={"pk": {"S": d}, "sk": {"S": "x"}, "n": {"N": "1"}})
    ddb.transact_write_items(TransactItems=[
        increment(hash_table, a),
        {"Delete": {"TableName": hash_table, "Key": key(b), "ConditionExpression": "v = :five",
                    "ExpressionAttributeValues": {":five": {"N": "5"}}}},
        {"ConditionCheck": {"TableName": hash_table, "Key": key(c), "ConditionExpression": "attribute_exists(v)"}},
        {"Update": {"TableName": range_table, "Key": {"pk": {"S": d}, "sk": {"S": "x"}},
                    "UpdateExpression": "SET n = n + :one, tag = :t",
                    "ExpressionAttributeValues": {":one": {"N": "1"}, ":t": {"S": "done"}}}},
    ])
    assert value(ddb, hash_table, a) == 6
    assert value(ddb, hash_table, b) is None
    assert value(ddb, hash_table, c) == 5
    item = ddb.get_item(TableName=range_table, Key={"pk": {"S": d}, "sk": {"S": "x"}})["Item"]
    assert item["n"] == {"N": "2"} and item["tag"] == {"S": "done"}
    ddb.delete_table(TableName=range_table)


def test_failed_condition_on_one_shard_cancels_everything(ddb, hash_table):
    (a,), (b,) = keys_on_each_shard("c")
    ddb.put_item(TableName=hash_table, Item={"pk": {"S": a}, "v": {"N": "1"}})
    ddb.put_item(TableName=hash_table, Item={"pk": {"S": b}, "v": {"N": "1"}})
    with pytest.raises(ClientError) as error:
        ddb.transact_write_items(TransactItems=[
            increment(hash_table, a),
            {"Update": {"TableName": hash_table, "Key": key(b), "UpdateExpression": "SET v = :nine",
                        "ConditionExpression": "v = :two", "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        "ExpressionAttributeValues": {":two": {"N": "2"}, ":nine": {"N": "9"}}}}])
    assert error.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert error.value.response["Error"]["Message"] == (
        "Transaction cancelled, please refer cancellation reasons for specific reasons [None, ConditionalCheckFailed]")
    reasons = error.value.response["CancellationReasons"]
    assert reasons[0] == {"Code": "None"}
    assert reasons[1]["Code"] == "ConditionalCheckFailed"
    assert reasons[1]["Item"] == {"pk": {"S": b}, "v": {"N": "1"}}
    assert value(ddb, hash_table, a) == 1 and value(ddb, hash_table, b) == 1
    # Nothing stays locked after a cancellation.
    ddb.put_item(TableName=hash_table, Item={"pk": {"S": a}, "v": {"N": "3"}})
    ddb.put_item(TableName=hash_table, Item={"pk": {"S": b}, "v": {"N": "3"}})


def test_item_too_large_after_update_is_a_validation_reason(ddb, hash_table):
    (a,), (b,) = keys_on_each_shard("big")
    ddb.put_item(TableName=hash_table, Item={"pk": {"S": b}, "s": {"S": "x" * 300_000}})
    with pytest.raises(ClientError) as error:
        ddb.transact_write_items(TransactItems=[
            put(hash_table, a, v=1),
            {"Update": {"TableName": hash_table, "Key": key(b), "UpdateExpression": "SET t = :big",
                        "ExpressionAttributeValues": {":big": {"S": "y" * 200_000}}}}])
    assert cancellation_codes(error) == ["None", "ValidationError"]
    assert value(ddb, hash_table, a) is None


def test_wrong_key_is_a_validation_reason_of_its_action(ddb, hash_table):
    """A key that breaks the schema cancels the transaction with a ValidationError on that action;
    DynamoDB stops at the first one, so the later ones (even a failing condition) say None."""
    wrong_type = {"Put": {"TableName": hash_table, "Item": {"pk": {"N": "7"}}}}
    with pytest.raises(ClientError) as error:
        ddb.transact_write_items(TransactItems=[
            put(hash_table, "fine", v=1),
            wrong_type,
            {"Delete": {"TableName": hash_table, "Key": {"pk": {"N": "8"}}}},
            {"ConditionCheck": {"TableName": hash_table, "Key": key("absent"),
                                "ConditionExpression": "attribute_exists(pk)"}}])
    assert error.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert cancellation_codes(error) == ["None", "ValidationError", "None", "None"]
    reasons = error.value.response["CancellationReasons"]
    assert "Type mismatch" in reasons[1]["Message"]
    assert all("Message" not in reasons[i] for i in (0, 2, 3))
    assert value(ddb, hash_table, "fine") is None
    with pytest.raises(ClientError) as error:
        ddb.transact_write_items(TransactItems=[{"Update": {"TableName": hash_table, "Key": {"wrong": {"S": "x"}},
                                                            "UpdateExpression": "SET v = :one",
                                                            "ExpressionAttributeValues": {":one": {"N": "1"}}}}])
    assert cancellation_codes(error) == ["ValidationError"]
    assert error.value.response["CancellationReasons"][0]["Message"] == (
        "The provided key element does not match the schema")
    # Malformed parameters, attribute values and expressions still refuse the whole request.
    for action in ({"Put": {"TableName": hash_table, "Item": {"pk": {"S": "x"}},
                            "ConditionExpression": "attribute_exists(#nope)"}},
                   {"Put": {"TableName": hash_table, "Item": {"pk": {"S": "x"}, "n": {"N": "not a number"}}}},
                   {"Delete": {"TableName": hash_table, "Key": {"pk": {"N": "not a number"}}}},
                   {"Put": {"TableName": hash_table, "Item": {"pk": {"S": ""}}}},
                   {"Delete": {"TableName": hash_table, "Key": {"pk": {"S": ""}}}}):
        with pytest.raises(ClientError) as error:
            ddb.transact_write_items(TransactItems=[action])
        assert error.value.response["Error"]["Code"] == "ValidationException"


def test_transact_get_with_a_wrong_key_is_cancelled(ddb, hash_table):
    ddb.put_item(TableName=hash_table, Item={"pk": {"S": "there"}})
    for wrong in ({}, {"pk": {"N": "1"}}, {"other": {"S": "x"}}):
        with pytest.raises(ClientError) as error:
            ddb.transact_get_items(TransactItems=[{"Get": {"TableName": hash_table, "Key": key("there")}},
                                                  {"Get": {"TableName": hash_table, "Key": wrong}}])
        assert error.value.response["Error"]["Code"] == "TransactionCanceledException"
        assert cancellation_codes(error) == ["None", "ValidationError"]
        assert error.value.response["CancellationReasons"][1]["Message"] == (
            "The provided key element does not match the schema")
    with pytest.raises(ClientError) as error:
        ddb.transact_get_items(TransactItems=[{"Get": {"TableName": hash_table, "Key": {"pk": {"S": ""}}}}])
    assert error.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as error:
        ddb.transact_get_items(TransactItems=[{"Get": {"TableName": hash_table, "Key": key("there"),
                                                       "ProjectionExpression": "!!!"}}])
    assert error.value.response["Error"]["Code"] == "ValidationException"


def test_validation_order(ddb, hash_table):
    """DynamoDB's order: member constraints (all of them in one message), then, action by action,
    attribute values and expressions, and only then tables and keys."""
    def message(items, **extra):
        with pytest.raises(ClientError) as error:
            ddb.transact_write_items(TransactItems=items, **extra)
        assert error.value.response["Error"]["Code"] == "ValidationException"
        return error.value.response["Error"]["Message"]

    rcc = ("Value 'BOGUS' at 'returnConsumedCapacity' failed to satisfy constraint: Member must satisfy enum "
           "value set: [INDEXES, TOTAL, NONE]")
    ricm = ("Value 'BOGUS2' at 'returnItemCollectionMetrics' failed to satisfy constraint: Member must satisfy "
            "enum value set: [SIZE, NONE]")
    token = ("Value '" + "t" * 37 + "' at 'clientRequestToken' failed to satisfy constraint: Member must have "
             "length less than or equal to 36")
    assert message([put(hash_table, "o1", v=1)], ReturnConsumedCapacity="BOGUS",
                   ReturnItemCollectionMetrics="BOGUS2") == f"2 validation errors detected: {rcc}; {ricm}"
    assert message([put(hash_table, "o1", v=1)], ClientRequestToken="t" * 37,
                   ReturnConsumedCapacity="BOGUS") == f"2 validation errors detected: {token}; {rcc}"
    assert message([put("no_such_table", "o1", v=1), put(hash_table, "o1", v=1)],
                   ReturnConsumedCapacity="BOGUS") == f"1 validation error detected: {rcc}"
    bad_condition = {"ConditionCheck": {"TableName": hash_table, "Key": key("o2"),
                                        "ConditionExpression": "attribute_not_exists("}}
    unused_value = {"ConditionCheck": {"TableName": hash_table, "Key": key("o2"),
                                       "ConditionExpression": "attribute_not_exists(pk)",
                                       "ExpressionAttributeValues": {":v": {"S": "x"}}}}
    # A later action's expression is refused ahead of an earlier action's missing table...
    assert message([put("no_such_table", "o1"), bad_condition]).startswith("Invalid ConditionExpression: Syntax")
    assert message([put("no_such_table", "o1"), unused_value]) == (
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:v}")
    # ... and ahead of a key of the wrong type, but actions are still checked in order.
    wrong_key = {"Put": {"TableName": hash_table, "Item": {"pk": {"N": "1"}}}}
    assert message([wrong_key, bad_condition]).startswith("Invalid ConditionExpression: Syntax")
    bad_number = {"Put": {"TableName": hash_table, "Item": {"pk": {"S": "o3"}, "n": {"N": "x"}}}}
    assert "numeric" in message([bad_number, bad_condition])
    assert value(ddb, hash_table, "o1") is None


def test_transaction_payload_over_4_mb(ddb, hash_table):
    long = "x" * 100_000
    with pytest.raises(ClientError) as error:
        ddb.transact_write_items(TransactItems=[{"Put": {"TableName": hash_table,
                                                         "Item": {"pk": {"S": f"big{i}"}, "s": {"S": long}}}}
                                                for i in range(50)])
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "size cannot exceed 4 MB" in error.value.response["Error"]["Message"]


def test_request_validation(ddb, hash_table):
    def rejected(items, code="ValidationException"):
        with pytest.raises(ClientError) as error:
            ddb.transact_write_items(TransactItems=items)
        assert error.value.response["Error"]["Code"] == code
        return error.value.response["Error"]["Message"]

    assert rejected([put(hash_table, "same", v=1), increment(hash_table, "same")]) == (
        "Transaction request cannot include multiple operations on one item")
    assert "less than or equal to 100" in rejected([put(hash_table, f"n{i}", v=1) for i in range(101)])
    rejected([put("no_such_table", "x", v=1)], "ResourceNotFoundException")
    assert rejected([{"Put": {"TableName": hash_table, "Item": {"pk": {"S": "x"}}},
                      "Delete": {"TableName": hash_table, "Key": key("y")}}])
    with pytest.raises(ClientError) as error:
        ddb.transact_get_items(TransactItems=[{"Get": {"TableName": hash_table, "Key": key("d")}},
                                              {"Get": {"TableName": hash_table, "Key": key("d")}}])
    assert error.value.response["Error"]["Message"] == (
        "Transaction request cannot include multiple operations on one item")
    assert value(ddb, hash_table, "n0") is None


def test_client_request_token_is_idempotent(ddb, hash_table):
    (a,), (b,) = keys_on_each_shard("idem")
    items = [increment(hash_table, a), increment(hash_table, b)]
    for _ in range(3):
        ddb.transact_write_items(TransactItems=items, ClientRequestToken="token-1")
    assert value(ddb, hash_table, a) == 1 and value(ddb, hash_table, b) == 1
    with pytest.raises(ClientError) as error:
        ddb.transact_write_items(TransactItems=items[:1], ClientRequestToken="token-1")
    assert error.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"
    ddb.transact_write_items(TransactItems=items, ClientRequestToken="token-2")
    assert value(ddb, hash_table, a) == 2
    # ReturnConsumedCapacity only shapes the answer: a retry asking for it is the same request, and
    # (as the API reference says) it is answered with the read units of reading the items
    retry = ddb.transact_write_items(TransactItems=items, ClientRequestToken="token-2", ReturnConsumedCapacity="TOTAL")
    (used,) = retry["ConsumedCapacity"]
    assert used["TableName"] == hash_table and "WriteCapacityUnits" not in used
    assert used["ReadCapacityUnits"] == used["CapacityUnits"] > 0
    assert value(ddb, hash_table, a) == 2


def test_concurrent_transactions_never_interleave(server, hash_table):
    """Many clients move one unit between two items on different shards: the sum never changes."""
    (a,), (b,) = keys_on_each_shard("sum")
    ddb = make_client(server.endpoint, retries=1)
    ddb.transact_write_items(TransactItems=[put(hash_table, a, v=100), put(hash_table, b, v=100)])
    stop = time.monotonic() + 3.0
    seen_sums = []
    errors = []

    def mover(direction):
        client = make_client(server.endpoint, retries=1)
        src, dst = (a, b) if direction else (b, a)
        while time.monotonic() < stop:
            try:
                client.transact_write_items(TransactItems=[
                    {"Update": {"TableName": hash_table, "Key": key(src), "UpdateExpression": "ADD v :m",
                                "ConditionExpression": "v > :zero",
                                "ExpressionAttributeValues": {":m": {"N": "-1"}, ":zero": {"N": "0"}}}},
                    {"Update": {"TableName": hash_table, "Key": key(dst), "UpdateExpression": "ADD v :p",
                                "ExpressionAttributeValues": {":p": {"N": "1"}}}}])
            except ClientError as error:
                if error.response["Error"]["Code"] != "TransactionCanceledException":
                    errors.append(error)

    def reader():
        client = make_client(server.endpoint, retries=1)
        while time.monotonic() < stop:
            try:
                got = client.transact_get_items(TransactItems=[
                    {"Get": {"TableName": hash_table, "Key": key(a)}},
                    {"Get": {"TableName": hash_table, "Key": key(b)}}])
            except ClientError as error:
                assert error.response["Error"]["Code"] == "TransactionCanceledException"
                assert "TransactionConflict" in error.response["Error"]["Message"]
                continue
            seen_sums.append(sum(int(r["Item"]["v"]["N"]) for r in got["Responses"]))

    threads = [threading.Thread(target=mover, args=(d,)) for d in (True, False, True)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert seen_sums and set(seen_sums) == {200}
    assert value(ddb, hash_table, a) + value(ddb, hash_table, b) == 200


# ------------------------------------------------------------------ conflicts and crashes (own servers)

@pytest.fixture
def slow_server(tmp_path):
    """A server whose coordinators pause 1.5 s between PREPARE and the commit decision."""
    os.environ[DELAY_ENV] = "1.5"
    try:
        srv = ServerProcess(tmp_path / "data", smp=2).start()
    finally:
        del os.environ[DELAY_ENV]
    yield srv
    srv.stop()


def _in_background(fn):
    outcome = {}

    def run():
        try:
            outcome["result"] = fn()
        except Exception as exc:       # noqa: BLE001 - reported to the test
            outcome["error"] = exc
    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_pending_transaction_conflicts_with_single_writes(slow_server):
    ddb = make_client(slow_server.endpoint, retries=1)
    table = create_table(ddb, "conflicts")
    (a,), (b,) = keys_on_each_shard("p")
    ddb.put_item(TableName=table, Item={"pk": {"S": a}, "v": {"N": "0"}})
    thread, outcome = _in_background(lambda: make_client(slow_server.endpoint, retries=1).transact_write_items(
        TransactItems=[increment(table, a), increment(table, b)]))
    time.sleep(0.6)      # prepared on both shards, decision pending
    for call in (lambda: ddb.put_item(TableName=table, Item={"pk": {"S": a}, "v": {"N": "7"}}),
                 lambda: ddb.update_item(TableName=table, Key=key(b), UpdateExpression="SET w = :x",
                                         ExpressionAttributeValues={":x": {"N": "1"}}),
                 lambda: ddb.delete_item(TableName=table, Key=key(a))):
        with pytest.raises(ClientError) as error:
            call()
        assert error.value.response["Error"]["Code"] == "TransactionConflictException"
        assert error.value.response["Error"]["Message"] == "Transaction is ongoing for the item"
    with pytest.raises(ClientError) as error:
        ddb.transact_get_items(TransactItems=[{"Get": {"TableName": table, "Key": key(a)}}])
    assert cancellation_codes(error) == ["TransactionConflict"]
    with pytest.raises(ClientError) as error:
        ddb.transact_write_items(TransactItems=[put(table, "other", v=1), put(table, b, v=9)])
    assert cancellation_codes(error) == ["None", "TransactionConflict"]
    unprocessed = ddb.batch_write_item(RequestItems={table: [
        {"PutRequest": {"Item": {"pk": {"S": a}, "v": {"N": "8"}}}},
        {"PutRequest": {"Item": {"pk": {"S": "free"}, "v": {"N": "8"}}}}]})["UnprocessedItems"]
    assert unprocessed == {table: [{"PutRequest": {"Item": {"pk": {"S": a}, "v": {"N": "8"}}}}]}
    # Reads do not wait: they see the last committed value.
    assert value(ddb, table, a) == 0
    thread.join(10)
    assert "error" not in outcome, outcome
    assert value(ddb, table, a) == 1 and value(ddb, table, b) == 1
    ddb.put_item(TableName=table, Item={"pk": {"S": a}, "v": {"N": "7"}})
    assert value(ddb, table, "free") == 8


def _pid_of_shard(server, shard):
    pid = None
    for line in server.log().splitlines():
        match = (re.search(rf"shard {shard}: \[shard\] pinned to cpu \d+ \(pid (\d+)\)", line)
                 or re.search(rf"shard {shard} is back \(pid (\d+)\)", line))
        if match:
            pid = int(match.group(1))
    assert pid in server.shard_pids(), server.log()
    return pid


def _wait_restarted(server, victim, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = server.shard_pids()
        if len(pids) == 2 and victim not in pids and server.all_shards_up():
            return
        time.sleep(0.05)
    raise AssertionError("shard did not come back:\n" + server.log())


def _wait_unlocked(ddb, table, keys, timeout=15.0):
    """Waits until single writes to ``keys`` no longer conflict (the intents are resolved)."""
    deadline = time.monotonic() + timeout
    pending = list(keys)
    while pending:
        k = pending[0]
        try:
            ddb.update_item(TableName=table, Key=key(k), UpdateExpression="SET probe = :t",
                            ExpressionAttributeValues={":t": {"N": "1"}})
            pending.pop(0)
        except ClientError as error:
            assert error.response["Error"]["Code"] in ("TransactionConflictException", "ServiceUnavailable")
            assert time.monotonic() < deadline, "intent never resolved"
            time.sleep(0.1)


class _OneConnection:
    """DynamoDB requests over one TCP connection: the shard that accepted it coordinates them.

    boto3's pool may open a new connection for a request in another thread,
    which another shard can accept; the crash test must know its coordinator.
    """

    def __init__(self, endpoint: str):
        host, port = endpoint.rsplit("/", 1)[-1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(self, operation: str, request: dict) -> tuple[int, dict, str]:
        self.conn.request("POST", "/", json.dumps(request), {
            "X-Amz-Target": "DynamoDB_20120810." + operation,
            "Content-Type": "application/x-amz-json-1.0"})
        response = self.conn.getresponse()
        return response.status, json.loads(response.read() or b"{}"), response.getheader("x-amzn-RequestId")


def _counter_on_each_shard(ddb, name: str, prefix: str):
    """A new table with a counter v = 0 on each shard: (table, key on shard 0, key on shard 1)."""
    table = create_table(ddb, name)
    (a,), (b,) = keys_on_each_shard(prefix)
    ddb.transact_write_items(TransactItems=[put(table, a, v=0), put(table, b, v=0)])
    return table, a, b


def _whole_server_killed_during(srv, seconds: float, table, keys, **request):
    """Sends TransactWriteItems(**request), kills the whole server `seconds` later (the
    client sees an error), restarts it on the same data: (the new server, a retrying
    client), once the keys' locks are gone."""
    thread, outcome = _in_background(lambda: make_client(srv.endpoint, retries=1).transact_write_items(
        **request))
    time.sleep(seconds)
    srv.kill()
    thread.join(15)
    assert "error" in outcome
    srv = ServerProcess(srv.data_dir, smp=2).start()
    ddb = make_client(srv.endpoint, retries=10)
    try:
        _wait_unlocked(ddb, table, keys)
    except BaseException:
        srv.stop()      # the caller still holds the killed one
        raise
    return srv, ddb


def _two_shard_counters(server, name: str, prefix: str):
    """A table with a counter at 0 on each shard, and one kept-alive connection: (that
    connection, the table, the two keys, the shard accepting the connection, which
    coordinates its transactions; the request id names it)."""
    table, a, b = _counter_on_each_shard(make_client(server.endpoint, retries=1), name, prefix)
    client = _OneConnection(server.endpoint)
    status, _, request_id = client.call("DescribeTable", {"TableName": table})
    assert status == 200
    return client, table, a, b, int(request_id[:2], 16)


@pytest.mark.parametrize("victim", ["coordinator", "participant"])
def test_shard_killed_between_prepare_and_commit_is_never_half_applied(slow_server, victim):
    client, table, a, b, acceptor = _two_shard_counters(slow_server, "crash", "x")
    victim_shard = acceptor if victim == "coordinator" else 1 - acceptor
    pid = _pid_of_shard(slow_server, victim_shard)
    thread, outcome = _in_background(lambda: client.call(
        "TransactWriteItems", {"TransactItems": [increment(table, a), increment(table, b)]}))
    time.sleep(0.7)      # both shards hold a durable intent, no decision yet
    os.kill(pid, signal.SIGKILL)
    thread.join(15)
    _wait_restarted(slow_server, pid)
    ddb = make_client(slow_server.endpoint, retries=10)
    _wait_unlocked(ddb, table, [a, b])
    if victim == "coordinator":
        # It died before deciding: the connection is gone with it, and the survivor
        # learns "abort" (presumed) once it is back.
        assert "error" in outcome, outcome
        assert (value(ddb, table, a), value(ddb, table, b)) == (0, 0)
    else:
        # The decision was durable: the client heard success, recovery applied the lost half.
        assert "error" not in outcome and outcome["result"][0] == 200, outcome
        assert (value(ddb, table, a), value(ddb, table, b)) == (1, 1)


def test_token_of_a_transaction_whose_coordinator_died_is_not_in_progress_for_ever(slow_server):
    """boto3 retries a TransactWriteItems with the ClientRequestToken it generated; when the shard
    coordinating it died, the retry reaches the other shard, which holds the token's claim. It must
    learn the transaction's fate (aborted here: no decision) and run the retry, once, instead of
    answering TransactionInProgressException for the token's whole 10-minute window."""
    client, table, a, b, coordinator = _two_shard_counters(slow_server, "tokcrash", "tk")
    # the token belongs to the shard that survives (shardserver's token placement: crc32 % shards)
    token = next(t for t in (f"tok-{i}" for i in range(100)) if zlib.crc32(t.encode()) % 2 != coordinator)
    request = {"TransactItems": [increment(table, a), increment(table, b)], "ClientRequestToken": token}
    pid = _pid_of_shard(slow_server, coordinator)
    thread, outcome = _in_background(lambda: client.call("TransactWriteItems", request))
    time.sleep(0.7)      # claimed and prepared, not decided
    os.kill(pid, signal.SIGKILL)
    thread.join(15)
    assert "error" in outcome, outcome
    _wait_restarted(slow_server, pid)
    ddb = make_client(slow_server.endpoint, retries=10)
    _wait_unlocked(ddb, table, [a, b])
    ddb.transact_write_items(**request)
    ddb.transact_write_items(**request)      # and again: applied once
    assert (value(ddb, table, a), value(ddb, table, b)) == (1, 1)


def test_whole_server_killed_after_prepare_recovers_with_nothing_applied(tmp_path):
    os.environ[DELAY_ENV] = "3"
    try:
        srv = ServerProcess(tmp_path / "data", smp=2).start()
    finally:
        del os.environ[DELAY_ENV]
    try:
        table, a, b = _counter_on_each_shard(make_client(srv.endpoint, retries=1), "wholecrash", "z")
        srv, ddb = _whole_server_killed_during(srv, 0.8, table, [a, b], TransactItems=[
            increment(table, a), increment(table, b)])
        assert (value(ddb, table, a), value(ddb, table, b)) == (0, 0)
        ddb.transact_write_items(TransactItems=[increment(table, a), increment(table, b)])
        assert (value(ddb, table, a), value(ddb, table, b)) == (1, 1)
    finally:
        srv.stop()


def test_a_token_retry_after_a_whole_server_crash_between_decision_and_done_applies_once(tmp_path):
    """The decision is durable but the token's shard has not heard "done" when everything dies.
    After the restart boto3's retry (same ClientRequestToken) must find the committed transaction,
    not run it again: the claim is in the token shard's commit log, and the decision is kept
    until that shard has heard "done"."""
    os.environ["SHARDSERVER_INJECT_TX_DECIDED_DELAY_S"] = "3"
    try:
        srv = ServerProcess(tmp_path / "data", smp=2).start()
    finally:
        del os.environ["SHARDSERVER_INJECT_TX_DECIDED_DELAY_S"]
    try:
        table, a, b = _counter_on_each_shard(make_client(srv.endpoint, retries=1), "tokwhole", "w")
        request = {"TransactItems": [increment(table, a), increment(table, b)], "ClientRequestToken": "tok-whole"}
        # killed once decided and fsynced, before the token's shard is told "done"
        srv, ddb = _whole_server_killed_during(srv, 1.0, table, [a, b], **request)
        ddb.transact_write_items(**request)
        ddb.transact_write_items(**request)
        assert (value(ddb, table, a), value(ddb, table, b)) == (1, 1)
        # and the decision, once told, is forgotten: a new token runs
        ddb.transact_write_items(TransactItems=[increment(table, a), increment(table, b)],
                                 ClientRequestToken="tok-after")
        assert (value(ddb, table, a), value(ddb, table, b)) == (2, 2)
    finally:
        srv.stop()


def test_a_token_outlives_the_commit_log_segment_it_was_first_logged_in(tmp_path):
    """A token's outcome is kept for 10 minutes, though the segment it was logged in is
    deleted once its memtables are flushed: the sweep logs it again into the active segment,
    so a retry after a crash still finds it instead of applying the request a second time."""
    extra = ["--commitlog-segment-size-in-mb", "1", "--memtable-flush-threshold-in-mb", "1"]
    srv = ServerProcess(tmp_path / "data", smp=1, extra=extra).start()
    try:
        ddb = make_client(srv.endpoint, retries=1)
        table = create_table(ddb, "tokseg")
        ddb.put_item(TableName=table, Item={"pk": {"S": "c"}, "v": {"N": "0"}})
        request = {"TransactItems": [increment(table, "c")], "ClientRequestToken": "tok-segment"}
        ddb.transact_write_items(**request)
        log_dir = os.path.join(srv.data_dir, "shard-0", "commitlog")
        first = sorted(os.listdir(log_dir))[0]
        filler = "x" * 100_000
        deadline = time.monotonic() + 60
        while first in os.listdir(log_dir):      # until the token's first segment is gone
            assert time.monotonic() < deadline, os.listdir(log_dir)
            for i in range(10):
                ddb.put_item(TableName=table, Item={"pk": {"S": f"f{i}"}, "s": {"S": filler}})
            time.sleep(0.1)
        time.sleep(1.0)          # a sweep has run since
        srv.kill()
        srv = ServerProcess(srv.data_dir, smp=1, extra=extra).start()
        ddb = make_client(srv.endpoint, retries=10)
        ddb.transact_write_items(**request)
        assert value(ddb, table, "c") == 1
    finally:
        srv.stop()


def test_transactional_writes_are_charged_for_their_indexes(ddb, table_name):
    ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "g", "AttributeType": "S"}],
                     GlobalSecondaryIndexes=[{"IndexName": "by_g",
                                              "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                              "Projection": {"ProjectionType": "ALL"}}])
    try:
        (a,), (b,) = keys_on_each_shard("ix")
        result = ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table_name, "Item": {"pk": {"S": a}, "g": {"S": "x"}}}},
            {"Put": {"TableName": table_name, "Item": {"pk": {"S": b}}}}], ReturnConsumedCapacity="INDEXES")
        # two units per KB: 2 + 2 in the table, 2 in the index (only a is indexed)
        assert result["ConsumedCapacity"] == [{
            "TableName": table_name, "CapacityUnits": 6.0, "WriteCapacityUnits": 6.0,
            "Table": {"CapacityUnits": 4.0, "WriteCapacityUnits": 4.0},
            "GlobalSecondaryIndexes": {"by_g": {"CapacityUnits": 2.0}}}]
    finally:
        ddb.delete_table(TableName=table_name)


def test_item_collection_metrics_of_the_collections_written(ddb, table_name):
    """ReturnItemCollectionMetrics=SIZE: per table with an LSI, one entry per item collection
    a Put, Update or Delete wrote to, on whichever shard owns it; none for a ConditionCheck."""
    ks = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST", KeySchema=ks,
                     AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "l")],
                     LocalSecondaryIndexes=[{"IndexName": "by_l",
                                             "KeySchema": [ks[0], {"AttributeName": "l", "KeyType": "RANGE"}],
                                             "Projection": {"ProjectionType": "ALL"}}])
    plain = create_table(ddb, table_name + "_plain")
    try:
        (a, c), (b, d) = keys_on_each_shard("icm", count=2)

        def item(k, sk, **extra):
            return {"pk": {"S": k}, "sk": {"S": sk}, **{n: {"S": v} for n, v in extra.items()}}

        ddb.put_item(TableName=table_name, Item=item(c, "1"))
        ddb.put_item(TableName=table_name, Item=item(d, "1", l="x"))
        actions = [
            {"Put": {"TableName": table_name, "Item": item(a, "1", l="x")}},
            {"Put": {"TableName": table_name, "Item": item(a, "2")}},
            {"Update": {"TableName": table_name, "Key": item(b, "1"), "UpdateExpression": "SET l = :l",
                        "ExpressionAttributeValues": {":l": {"S": "y"}}}},
            {"Delete": {"TableName": table_name, "Key": item(d, "1")}},
            {"ConditionCheck": {"TableName": table_name, "Key": item(c, "1"),
                                "ConditionExpression": "attribute_exists(pk)"}},
            {"Put": {"TableName": plain, "Item": {"pk": {"S": a}}}}]
        result = ddb.transact_write_items(TransactItems=actions, ReturnItemCollectionMetrics="SIZE")
        collections = result["ItemCollectionMetrics"]
        assert list(collections) == [table_name]      # the table without an LSI has no collections
        assert sorted(e["ItemCollectionKey"]["pk"]["S"] for e in collections[table_name]) == sorted([a, b, d])
        assert all(e["SizeEstimateRangeGB"] == [0.0, 1.0] for e in collections[table_name])
        # not asked for: not given
        again = [{"Put": {"TableName": table_name, "Item": item(a, "3")}}]
        assert "ItemCollectionMetrics" not in ddb.transact_write_items(TransactItems=again)
        # a retry with the same token is answered as the first attempt was
        token_actions = [{"Put": {"TableName": table_name, "Item": item(b, "4")}}]
        first = ddb.transact_write_items(TransactItems=token_actions, ReturnItemCollectionMetrics="SIZE",
                                         ClientRequestToken="icm-token")
        retry = ddb.transact_write_items(TransactItems=token_actions, ReturnItemCollectionMetrics="SIZE",
                                         ClientRequestToken="icm-token")
        assert first["ItemCollectionMetrics"] == retry["ItemCollectionMetrics"] == {
            table_name: [{"ItemCollectionKey": {"pk": {"S": b}}, "SizeEstimateRangeGB": [0.0, 1.0]}]}
    finally:
        ddb.delete_table(TableName=table_name)
        ddb.delete_table(TableName=plain)
