"""BatchWriteItem and BatchGetItem through boto3 against the real 2-shard server: several tables,
every key type, the 25/100/400 KB/16 MB limits, duplicates, unknown tables, UnprocessedKeys, and
writes while a shard restarts (never reported done when lost)."""

import os
import signal
import time

import pytest
from botocore.exceptions import ClientError

from conftest import create_table
from serverutil import ServerProcess
from test_query import error_of


@pytest.fixture
def two_tables(ddb, table_name):
    first = create_table(ddb, table_name + "_a", hash_key=("h", "N"), range_key=("r", "B"))
    second = create_table(ddb, table_name + "_b", hash_key=("id", "B"))
    yield first, second
    ddb.delete_table(TableName=first)
    ddb.delete_table(TableName=second)


def test_write_and_get_over_several_tables(ddb, two_tables):
    first, second = two_tables
    puts_a = [{"PutRequest": {"Item": {"h": {"N": str(i % 4)}, "r": {"B": bytes([i])}, "v": {"S": f"a{i}"}}}}
              for i in range(15)]
    puts_b = [{"PutRequest": {"Item": {"id": {"B": bytes([i, 0])}, "v": {"N": str(i)}}}} for i in range(10)]
    reply = ddb.batch_write_item(RequestItems={first: puts_a, second: puts_b}, ReturnConsumedCapacity="TOTAL")
    assert reply["UnprocessedItems"] == {}
    assert {c["TableName"]: c["CapacityUnits"] for c in reply["ConsumedCapacity"]} == {first: 15.0, second: 10.0}
    keys_a = [{"h": {"N": str(i % 4)}, "r": {"B": bytes([i])}} for i in range(15)]
    keys_b = [{"id": {"B": bytes([i, 0])}} for i in range(10)] + [{"id": {"B": b"missing"}}]
    reply = ddb.batch_get_item(RequestItems={first: {"Keys": keys_a, "ConsistentRead": True},
                                             second: {"Keys": keys_b, "ProjectionExpression": "v"}},
                               ReturnConsumedCapacity="TOTAL")
    assert reply["UnprocessedKeys"] == {}
    assert sorted(i["v"]["S"] for i in reply["Responses"][first]) == sorted(f"a{i}" for i in range(15))
    assert sorted(reply["Responses"][second], key=lambda i: int(i["v"]["N"])) == [{"v": {"N": str(i)}}
                                                                                 for i in range(10)]
    used = {c["TableName"]: c["CapacityUnits"] for c in reply["ConsumedCapacity"]}
    assert used[first] == 15.0 and used[second] == 5.5
    # deletes and puts in one batch
    reply = ddb.batch_write_item(RequestItems={
        first: [{"DeleteRequest": {"Key": k}} for k in keys_a[:10]],
        second: [{"PutRequest": {"Item": {"id": {"B": b"new"}}}}]})
    assert reply["UnprocessedItems"] == {}
    reply = ddb.batch_get_item(RequestItems={first: {"Keys": keys_a, "AttributesToGet": ["r"]},
                                             second: {"Keys": [{"id": {"B": b"new"}}]}})
    assert sorted(i["r"]["B"] for i in reply["Responses"][first]) == [bytes([i]) for i in range(10, 15)]
    assert reply["Responses"][second] == [{"id": {"B": b"new"}}]


def test_write_capacity_counts_the_larger_of_old_and_new_items(ddb, hash_table):
    big = {"S": "x" * 2500}                          # 3 write units
    keys = [{"pk": {"S": f"cap{i}"}} for i in range(8)]    # on both shards
    ddb.batch_write_item(RequestItems={hash_table: [{"PutRequest": {"Item": dict(k, v=big)}} for k in keys]})
    reply = ddb.batch_write_item(RequestItems={hash_table: [
        {"PutRequest": {"Item": dict(k, v={"S": "small"})}} for k in keys[:4]] + [
        {"DeleteRequest": {"Key": k}} for k in keys[4:]]}, ReturnConsumedCapacity="TOTAL")
    assert reply["ConsumedCapacity"] == [{"TableName": hash_table, "CapacityUnits": 24.0}]
    reply = ddb.batch_write_item(RequestItems={hash_table: [{"DeleteRequest": {"Key": k}} for k in keys]},
                                 ReturnConsumedCapacity="TOTAL")
    assert reply["ConsumedCapacity"] == [{"TableName": hash_table, "CapacityUnits": 8.0}]   # 4 small, 4 absent


def test_limits_duplicates_and_unknown_tables(ddb, two_tables, hash_table):
    first, second = two_tables

    def put(i, table=hash_table):
        return {"PutRequest": {"Item": {"pk": {"S": f"k{i}"}}}}

    assert ddb.batch_write_item(RequestItems={hash_table: [put(i) for i in range(25)]})["UnprocessedItems"] == {}
    with pytest.raises(ClientError) as e:
        ddb.batch_write_item(RequestItems={hash_table: [put(i) for i in range(26)]})
    code, message = error_of(e)
    assert code == "ValidationException" and message.startswith("1 validation error detected: Value '")
    assert message.endswith("at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: "
                            "[Member must have length less than or equal to 25, Member must have length greater "
                            "than or equal to 1]")
    with pytest.raises(ClientError) as e:
        ddb.batch_write_item(RequestItems={
            hash_table: [put(i) for i in range(20)],
            second: [{"PutRequest": {"Item": {"id": {"B": bytes([i])}}}} for i in range(6)]})
    assert error_of(e) == ("ValidationException", "Too many items requested for the BatchWriteItem call")
    keys = [{"pk": {"S": f"k{i}"}} for i in range(100)]
    assert len(ddb.batch_get_item(RequestItems={hash_table: {"Keys": keys}})["Responses"][hash_table]) == 25
    with pytest.raises(ClientError) as e:
        ddb.batch_get_item(RequestItems={hash_table: {"Keys": keys + [{"pk": {"S": "k100"}}]}})
    assert error_of(e)[0] == "ValidationException"
    assert "Member must have length less than or equal to 100" in error_of(e)[1]
    with pytest.raises(ClientError) as e:
        ddb.batch_get_item(RequestItems={hash_table: {"Keys": keys[:60]},
                                         second: {"Keys": [{"id": {"B": bytes([i])}} for i in range(41)]}})
    assert error_of(e) == ("ValidationException", "Too many items requested for the BatchGetItem call")
    duplicates = [
        {hash_table: [put(1), put(1)]},
        {hash_table: [put(1), {"DeleteRequest": {"Key": {"pk": {"S": "k1"}}}}]},
        {first: [{"DeleteRequest": {"Key": {"h": {"N": "1"}, "r": {"B": b"x"}}}},
                 {"DeleteRequest": {"Key": {"h": {"N": "1.0"}, "r": {"B": b"x"}}}}]},
    ]
    for items in duplicates:
        with pytest.raises(ClientError) as e:
            ddb.batch_write_item(RequestItems=items)
        assert error_of(e) == ("ValidationException", "Provided list of item keys contains duplicates")
    with pytest.raises(ClientError) as e:
        ddb.batch_get_item(RequestItems={hash_table: {"Keys": [{"pk": {"S": "a"}}, {"pk": {"S": "a"}}]}})
    assert error_of(e) == ("ValidationException", "Provided list of item keys contains duplicates")
    # the same key in two tables is not a duplicate
    ddb.batch_get_item(RequestItems={first: {"Keys": [{"h": {"N": "1"}, "r": {"B": b"x"}}]},
                                     second: {"Keys": [{"id": {"B": b"x"}}]}})
    # an unknown table fails the whole batch before anything is written
    with pytest.raises(ClientError) as e:
        ddb.batch_write_item(RequestItems={hash_table: [{"PutRequest": {"Item": {"pk": {"S": "ghost"}}}}],
                                           "no_such_table": [{"PutRequest": {"Item": {"pk": {"S": "x"}}}}]})
    assert error_of(e)[0] == "ResourceNotFoundException"
    assert "Item" not in ddb.get_item(TableName=hash_table, Key={"pk": {"S": "ghost"}})
    with pytest.raises(ClientError) as e:
        ddb.batch_get_item(RequestItems={"no_such_table": {"Keys": [{"pk": {"S": "x"}}]}})
    assert error_of(e)[0] == "ResourceNotFoundException"
    # a bad key type anywhere rejects the whole batch
    with pytest.raises(ClientError) as e:
        ddb.batch_write_item(RequestItems={hash_table: [{"PutRequest": {"Item": {"pk": {"S": "ok"}}}},
                                                        {"PutRequest": {"Item": {"pk": {"N": "1"}}}}]})
    assert error_of(e)[0] == "ValidationException"
    assert "Item" not in ddb.get_item(TableName=hash_table, Key={"pk": {"S": "ok"}})


def test_item_size_limit_rejects_the_whole_batch(ddb, hash_table):
    too_big = {"pk": {"S": "big"}, "v": {"S": "x" * (400 * 1024)}}
    with pytest.raises(ClientError) as e:
        ddb.batch_write_item(RequestItems={hash_table: [{"PutRequest": {"Item": {"pk": {"S": "small"}}}},
                                                        {"PutRequest": {"Item": too_big}}]})
    assert error_of(e) == ("ValidationException", "Item size has exceeded the maximum allowed size")
    assert "Item" not in ddb.get_item(TableName=hash_table, Key={"pk": {"S": "small"}})
    fits = {"pk": {"S": "fits"}, "v": {"S": "x" * (400 * 1024 - len("pk") - len("fits") - len("v"))}}
    assert ddb.batch_write_item(RequestItems={hash_table: [{"PutRequest": {"Item": fits}}]})["UnprocessedItems"] == {}


def test_batch_get_over_16_megabytes_returns_unprocessed_keys(ddb, hash_table):
    blob = "z" * 390_000
    count = 50
    for start in range(0, count, 10):
        ddb.batch_write_item(RequestItems={hash_table: [
            {"PutRequest": {"Item": {"pk": {"S": f"b{i}"}, "payload": {"S": blob}, "i": {"N": str(i)}}}}
            for i in range(start, start + 10)]})
    to_read = {hash_table: {"Keys": [{"pk": {"S": f"b{i}"}} for i in range(count)], "ConsistentRead": True,
                            "ProjectionExpression": "#p, payload, i", "ExpressionAttributeNames": {"#p": "pk"}}}
    got, rounds = [], 0
    while to_read:
        reply = ddb.batch_get_item(RequestItems=to_read)
        rounds += 1
        page = reply["Responses"][hash_table]
        assert sum(len(i["payload"]["S"]) for i in page) <= 16 * 1024 * 1024
        got += page
        to_read = reply["UnprocessedKeys"]
        for spec in to_read.values():
            assert spec["ConsistentRead"] is True and spec["ProjectionExpression"] == "#p, payload, i"
            assert spec["ExpressionAttributeNames"] == {"#p": "pk"}
    assert rounds >= 2
    assert sorted(int(i["i"]["N"]) for i in got) == list(range(count))


def test_writes_while_a_shard_restarts_are_never_lost(tmp_path):
    srv = ServerProcess(tmp_path / "data", smp=2, extra=["--commitlog-sync", "batch"]).start()
    try:
        ddb = srv.client(retries=1)
        create_table(ddb, "restarting")
        victim = srv.shard_pids()[1]
        os.kill(victim, signal.SIGKILL)
        acknowledged, unprocessed, failed = set(), 0, 0
        deadline = time.monotonic() + 30
        n = 0
        while time.monotonic() < deadline:
            batch = [f"w{n + i}" for i in range(10)]
            n += 10
            try:
                reply = ddb.batch_write_item(RequestItems={"restarting": [
                    {"PutRequest": {"Item": {"pk": {"S": k}}}} for k in batch]})
            except ClientError:
                failed += 1
                continue
            except Exception:     # the dead shard's connections are refused or reset
                failed += 1
                time.sleep(0.01)
                continue
            left = {r["PutRequest"]["Item"]["pk"]["S"] for r in reply["UnprocessedItems"].get("restarting", [])}
            unprocessed += len(left)
            acknowledged |= set(batch) - left
            try:
                got = ddb.batch_get_item(RequestItems={"restarting": {"Keys": [{"pk": {"S": k}} for k in batch]}})
            except Exception:
                continue
            # each key is answered or handed back, never silently dropped
            answered = {i["pk"]["S"] for i in got["Responses"].get("restarting", [])}
            handed_back = {k["pk"]["S"] for k in got["UnprocessedKeys"].get("restarting", {}).get("Keys", [])}
            assert answered | handed_back >= set(batch) - left and not answered & handed_back
            if srv.all_shards_up() and victim not in srv.shard_pids() and len(acknowledged) > 200:
                break
        srv.wait_healthy(30)
        ddb = srv.client()
        missing = [k for k in sorted(acknowledged)
                   if "Item" not in ddb.get_item(TableName="restarting", Key={"pk": {"S": k}}, ConsistentRead=True)]
        assert not missing
        assert len(acknowledged) > 200
    finally:
        assert srv.stop() == 0


def test_wrong_typed_index_key_rejects_the_whole_batch(ddb, table_name):
    ddb.create_table(
        TableName=table_name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "g", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "byg", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}])
    good = [{"PutRequest": {"Item": {"pk": {"S": f"ok{i}"}, "g": {"S": "x"}}}} for i in range(10)]
    bad = {"PutRequest": {"Item": {"pk": {"S": "bad"}, "g": {"N": "1"}}}}
    with pytest.raises(ClientError) as e:
        ddb.batch_write_item(RequestItems={table_name: good + [bad]})
    assert error_of(e)[0] == "ValidationException" and "Type mismatch for Index Key g" in error_of(e)[1]
    assert ddb.scan(TableName=table_name)["Count"] == 0
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=table_name, Key={"pk": {"S": "u"}}, UpdateExpression="SET g = :v",
                        ExpressionAttributeValues={":v": {"N": "1"}})
    assert error_of(e)[0] == "ValidationException"
    assert "Item" not in ddb.get_item(TableName=table_name, Key={"pk": {"S": "u"}})
    ddb.delete_table(TableName=table_name)


def test_batch_request_shape_errors_read_like_dynamodb(ddb, two_tables, hash_table):
    first, _ = two_tables
    for call, op in ((ddb.batch_get_item, "BatchGetItem"), (ddb.batch_write_item, "BatchWriteItem")):
        code, message = error_of(pytest.raises(ClientError, call, RequestItems={}))
        assert (code, message) == ("ValidationException", f"The requestItems parameter is required for {op}")
    keys = [{"pk": {"S": f"k{i}"}} for i in range(101)]
    assert error_of(pytest.raises(ClientError, ddb.batch_get_item, RequestItems={hash_table: {"Keys": keys}})) == (
        "ValidationException", f"1 validation error detected: Value at 'RequestItems.{hash_table}.member.Keys' "
                               "failed to satisfy constraint: Member must have length less than or equal to 100")
    # the 26 writes are echoed the way DynamoDB's Java model prints them
    puts = [{"PutRequest": {"Item": {"pk": {"S": f"k{i}"}}}} for i in range(26)]
    _, message = error_of(pytest.raises(ClientError, ddb.batch_write_item, RequestItems={hash_table: puts}))
    assert message.startswith(f"1 validation error detected: Value '{{{hash_table}=[WriteRequest(putRequest="
                              "PutRequest(item={pk=AttributeValue(s=k0, n=null, b=null, iNT=null, ")
    assert "bOOL=null)}, workloadProfileName=null), deleteRequest=null), WriteRequest(" in message
    puts[1] = {"DeleteRequest": {"Key": {"pk": {"S": "d"}}}}
    puts[2]["PutRequest"]["Item"]["m"] = {"M": {"x": {"L": [{"BOOL": True}]}}}
    _, message = error_of(pytest.raises(ClientError, ddb.batch_write_item, RequestItems={hash_table: puts}))
    assert ("WriteRequest(putRequest=null, deleteRequest=DeleteRequest(key={pk=AttributeValue(s=d, n=null, "
            in message)
    assert "m=AttributeValue(s=null, n=null, b=null, " in message
    assert "m={x=AttributeValue(s=null, " in message and "l=[AttributeValue(s=null, " in message
    assert "bOOL=true)]" in message
    # a wrong-typed or non-scalar key in a batch put does not match the schema (PutItem says more)
    for bad in ({"N": "5"}, {"L": [{"S": "x"}]}):
        assert error_of(pytest.raises(ClientError, ddb.batch_write_item, RequestItems={
            hash_table: [{"PutRequest": {"Item": {"pk": bad}}}]})) == (
            "ValidationException", "The provided key element does not match the schema")
    # and so does one without its key attributes (PutItem: "Missing the key ... in the item")
    for item in ({"other": {"S": "x"}},):
        assert error_of(pytest.raises(ClientError, ddb.batch_write_item, RequestItems={
            hash_table: [{"PutRequest": {"Item": item}}]})) == (
            "ValidationException", "The provided key element does not match the schema")
    # one table projected by expression, another by AttributesToGet: the batch is refused
    code, message = error_of(pytest.raises(ClientError, ddb.batch_get_item, RequestItems={
        hash_table: {"Keys": [{"pk": {"S": "a"}}], "ProjectionExpression": "pk"},
        first: {"Keys": [{"h": {"N": "1"}, "r": {"B": b"x"}}], "AttributesToGet": ["h"]}}))
    assert code == "ValidationException" and message.startswith("Can not use both expression and non-expression")
