"""DynamoDB Streams through boto3's dynamodbstreams client, against a real 2-shard server."""

import base64
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
import zlib

import boto3
import orjson
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from conftest import create_table
from serverutil import ServerProcess

VIEW_TYPES = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")


def streams_client(server, validate=True):
    return boto3.client("dynamodbstreams", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="y",
                        config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"},
                                          parameter_validation=validate))


@pytest.fixture(scope="module")
def streams(server):
    return streams_client(server)


@pytest.fixture(scope="module")
def raw_streams(server):
    """No client-side checks: what the server itself says of bad input."""
    return streams_client(server, validate=False)


def stream_table(ddb, name, view="NEW_AND_OLD_IMAGES", range_key=None, **extra):
    create_table(ddb, name, range_key=range_key,
                 StreamSpecification={"StreamEnabled": True, "StreamViewType": view}, **extra)
    return ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]


def shard_ids(streams, arn):
    return [s["ShardId"] for s in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]]


def the_shard(streams, arn):
    """The stream's one shard: what most programs written for DynamoDB read (``Shards[0]``)."""
    ids = shard_ids(streams, arn)
    assert len(ids) == 1, ids
    return ids[0]


def iterator(streams, arn, kind="TRIM_HORIZON", **extra):
    return streams.get_shard_iterator(StreamArn=arn, ShardId=the_shard(streams, arn), ShardIteratorType=kind,
                                      **extra)["ShardIterator"]


def read_all(streams, it, limit=None):
    """The records read from ``it`` to the end of what is written, and the iterator to go on with
    (None once a closed shard is read to its end)."""
    records = []
    while it:
        reply = streams.get_records(ShardIterator=it, **({"Limit": limit} if limit else {}))
        assert len(reply["Records"]) <= (limit or 1000)
        records += reply["Records"]
        it = reply.get("NextShardIterator")
        if not reply["Records"]:
            break
    return records, it


def all_records(streams, arn):
    return read_all(streams, iterator(streams, arn))[0]


def numbers_of(records):
    return [int(r["dynamodb"]["SequenceNumber"]) for r in records]


def error_of(call, *args, **kwargs):
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


# ------------------------------------------------------------------ streams on tables

def test_create_table_describes_its_stream(ddb, streams, table_name):
    reply = ddb.create_table(
        TableName=table_name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})["TableDescription"]
    try:
        arn, label = reply["LatestStreamArn"], reply["LatestStreamLabel"]
        assert arn == f"{reply['TableArn']}/stream/{label}"
        assert time.strptime(label, "%Y-%m-%dT%H:%M:%S.%f")
        assert reply["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
        table = ddb.describe_table(TableName=table_name)["Table"]
        assert (table["LatestStreamArn"], table["LatestStreamLabel"]) == (arn, label)
        assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
        assert ddb.update_table(TableName=table_name, BillingMode="PAY_PER_REQUEST")["TableDescription"][
            "LatestStreamArn"] == arn
        assert streams.list_streams(TableName=table_name)["Streams"] == [
            {"StreamArn": arn, "TableName": table_name, "StreamLabel": label}]
        # a tag changes the catalog entry, not the stream
        ddb.tag_resource(ResourceArn=reply["TableArn"], Tags=[{"Key": "k", "Value": "v"}])
        assert [s["StreamArn"] for s in streams.list_streams(TableName=table_name)["Streams"]] == [arn]
    finally:
        ddb.delete_table(TableName=table_name)


def test_stream_specification_errors(ddb, hash_table, table_name):
    code, message = error_of(ddb.update_table, TableName=hash_table,
                             StreamSpecification={"StreamEnabled": True, "StreamViewType": "Fisk"})
    assert (code, message) == ("ValidationException", "1 validation error detected: Value 'Fisk' at "
                               "'streamSpecification.streamViewType' failed to satisfy constraint: Member must "
                               "satisfy enum value set: [OLD_IMAGE, KEYS_ONLY, NEW_AND_OLD_IMAGES, NEW_IMAGE]")
    # UpdateTable's own wording (CreateTable's, below, differs)
    code, message = error_of(ddb.update_table, TableName=hash_table, StreamSpecification={"StreamEnabled": False})
    assert (code, message) == ("ValidationException", f"Table has no stream to disable: TableName: {hash_table}")
    code, message = error_of(ddb.update_table, TableName=hash_table, StreamSpecification={"StreamEnabled": True})
    assert (code, message) == ("ValidationException", "One or more parameter values were invalid: If stream is "
                               "being enabled then UpdateViewType is required")
    code, message = error_of(ddb.update_table, TableName=hash_table,
                             StreamSpecification={"StreamEnabled": False, "StreamViewType": "KEYS_ONLY"})
    assert (code, message) == ("ValidationException", "One or more parameter values were invalid: If stream is "
                               "being disabled, then UpdateViewType must not be specified")
    code, message = error_of(ddb.create_table, TableName=table_name,
                             KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                             AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                             BillingMode="PAY_PER_REQUEST", StreamSpecification={"StreamEnabled": True})
    assert (code, message) == ("ValidationException", "One or more parameter values were invalid: Table is being "
                               "created with a stream enabled, UpdateViewType is required")
    code, message = error_of(ddb.create_table, TableName=table_name,
                             KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                             AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                             BillingMode="PAY_PER_REQUEST",
                             StreamSpecification={"StreamEnabled": False, "StreamViewType": "NEW_IMAGE"})
    assert (code, message) == ("ValidationException", "One or more parameter values were invalid: Table is being "
                               "created with a stream disabled, UpdateViewType should not be specified")
    ddb.update_table(TableName=hash_table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
    for view in ("KEYS_ONLY", "NEW_IMAGE"):
        code, message = error_of(ddb.update_table, TableName=hash_table,
                                 StreamSpecification={"StreamEnabled": True, "StreamViewType": view})
        assert code == "ValidationException"
        assert message == f"Table already has an enabled stream: TableName: {hash_table}"


def test_list_streams_pages_and_checks(ddb, streams, raw_streams, table_name):
    names = [table_name + suffix for suffix in ("_a", "_b", "_c")]
    arns = [stream_table(ddb, n, "KEYS_ONLY") for n in names]
    try:
        seen, start = [], None
        while True:
            page = streams.list_streams(Limit=1, **({"ExclusiveStartStreamArn": start} if start else {}))
            assert len(page["Streams"]) <= 1
            seen += [s["StreamArn"] for s in page["Streams"]]
            start = page.get("LastEvaluatedStreamArn")
            if not start:
                break
        assert all(seen.count(a) == 1 for a in arns)
        assert streams.list_streams(TableName=names[1])["Streams"][0]["StreamArn"] == arns[1]
        assert error_of(streams.list_streams, TableName="no_such_table")[0] == "ResourceNotFoundException"
        for limit in (0, 101):
            assert error_of(raw_streams.list_streams, Limit=limit)[0] == "ValidationException"
        assert error_of(streams.list_streams, ExclusiveStartStreamArn="x" * 40)[0] == "ValidationException"
    finally:
        for n in names:
            ddb.delete_table(TableName=n)
    # A deleted table's streams are disabled, and listed until the retention passes.
    listed = [s["StreamArn"] for s in streams.list_streams()["Streams"] if s["TableName"] in names]
    assert sorted(listed) == sorted(arns)
    assert {streams.describe_stream(StreamArn=a)["StreamDescription"]["StreamStatus"] for a in arns} == {"DISABLED"}


def test_list_streams_lists_the_newest_first(ddb, streams, table_name):
    # Deleted tables' streams stay listed for a day; listing the newest first
    # keeps a reader's streams in the first page however many of those linger,
    # and a cursor taken before a stream was added still reaches the older ones.
    names = [table_name + suffix for suffix in ("_a", "_b", "_c")]
    older, newer = stream_table(ddb, names[0], "KEYS_ONLY"), stream_table(ddb, names[1], "KEYS_ONLY")
    try:
        listed = [s["StreamArn"] for s in streams.list_streams()["Streams"]]
        assert listed.index(newer) < listed.index(older)
        first = streams.list_streams(Limit=1)
        assert [s["StreamArn"] for s in first["Streams"]] == [newer]
        added = stream_table(ddb, names[2], "KEYS_ONLY")
        rest = [s["StreamArn"] for s in
                streams.list_streams(ExclusiveStartStreamArn=first["LastEvaluatedStreamArn"])["Streams"]]
        assert older in rest and newer not in rest and added not in rest
    finally:
        for name in names:
            ddb.delete_table(TableName=name)


def test_table_without_stream_has_none(ddb, streams, hash_table):
    assert streams.list_streams(TableName=hash_table)["Streams"] == []
    assert "LatestStreamArn" not in ddb.describe_table(TableName=hash_table)["Table"]


def raw_error(server, operation: str, body: bytes) -> str:
    """The error type the server answers a raw Streams request with."""
    request = urllib.request.Request(server.endpoint + "/", data=body, method="POST", headers={
        "X-Amz-Target": f"DynamoDBStreams_20120810.{operation}", "Content-Type": "application/x-amz-json-1.0"})
    try:
        with urllib.request.urlopen(request, timeout=5):
            return "no error"
    except urllib.error.HTTPError as error:
        return orjson.loads(error.read())["__type"].rsplit("#", 1)[-1]


def test_describe_stream_lists_one_shard(server, ddb, streams, raw_streams, table_name):
    # One open shard, as DynamoDB gives a new table's stream, however many server shards hold its records.
    arn = stream_table(ddb, table_name, "NEW_IMAGE", range_key=("sk", "N"))
    try:
        d = streams.describe_stream(StreamArn=arn)["StreamDescription"]
        assert (d["StreamArn"], d["StreamStatus"], d["StreamViewType"], d["TableName"]) == (
            arn, "ENABLED", "NEW_IMAGE", table_name)
        assert d["StreamLabel"] == arn.rsplit("/", 1)[1]
        assert d["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                  {"AttributeName": "sk", "KeyType": "RANGE"}]
        assert "CreationRequestDateTime" in d and "LastEvaluatedShardId" not in d
        assert len(d["Shards"]) == 1
        shard = d["Shards"][0]
        assert re.fullmatch(r"shardId-\d{20}-00000000", shard["ShardId"]) and "ParentShardId" not in shard
        assert shard["SequenceNumberRange"]["StartingSequenceNumber"].isdecimal()
        assert "EndingSequenceNumber" not in shard["SequenceNumberRange"]
        first = streams.describe_stream(StreamArn=arn, Limit=1)["StreamDescription"]
        assert first["Shards"] == d["Shards"] and "LastEvaluatedShardId" not in first
        assert streams.describe_stream(StreamArn=arn, ExclusiveStartShardId=shard["ShardId"])["StreamDescription"][
            "Shards"] == []
        before = shard["ShardId"][:-1] + "/"        # sorts just before the shard's id
        assert streams.describe_stream(StreamArn=arn, ExclusiveStartShardId=before)["StreamDescription"][
            "Shards"] == d["Shards"]
        assert streams.describe_stream(StreamArn=arn, ShardFilter={"Type": "CHILD_SHARDS",
                                                                   "ShardId": shard["ShardId"]})[
            "StreamDescription"]["Shards"] == []
        assert error_of(streams.describe_stream, StreamArn="sdfadfsdfnlfkajakfgjalksfgklasjklasdjfkla")[0] == \
            "ValidationException"
        assert error_of(streams.describe_stream, StreamArn=arn[:-3] + ("000" if arn.endswith("999") else "999"))[0] == "ResourceNotFoundException"
        assert error_of(raw_streams.describe_stream, StreamArn=arn, Limit=0)[0] == "ValidationException"
        # Raw HTTP: newer botocore resolves the endpoint from StreamArn, and refuses a number itself.
        assert raw_error(server, "DescribeStream", b'{"StreamArn": 7}') == "SerializationException"
    finally:
        ddb.delete_table(TableName=table_name)


# ------------------------------------------------------------------ records

def _writes(ddb, name):
    """Every kind of event on one item (so on one shard, in order), as (event, old, new) expected."""
    key = {"pk": {"S": "item"}}
    ddb.put_item(TableName=name, Item={**key, "x": {"N": "1"}, "s": {"SS": ["a", "b"]}})
    ddb.put_item(TableName=name, Item={**key, "x": {"N": "1"}, "s": {"SS": ["b", "a"]}})   # the same item
    ddb.put_item(TableName=name, Item={**key, "y": {"S": "two"}})
    ddb.update_item(TableName=name, Key=key, UpdateExpression="SET z = :z", ExpressionAttributeValues={
        ":z": {"BOOL": True}})
    ddb.update_item(TableName=name, Key=key, UpdateExpression="REMOVE y, z")
    ddb.delete_item(TableName=name, Key=key)
    ddb.delete_item(TableName=name, Key=key)                # nothing to delete: no record
    ddb.update_item(TableName=name, Key=key, UpdateExpression="REMOVE nothing")   # creates no item
    ddb.update_item(TableName=name, Key=key, UpdateExpression="SET b = :b", ExpressionAttributeValues={
        ":b": {"N": "4"}})
    first = {**key, "x": {"N": "1"}, "s": {"SS": ["a", "b"]}}
    second = {**key, "y": {"S": "two"}}
    third = {**key, "y": {"S": "two"}, "z": {"BOOL": True}}
    return [("INSERT", None, first), ("MODIFY", first, second), ("MODIFY", second, third),
            ("MODIFY", third, key), ("REMOVE", key, None), ("INSERT", None, {**key, "b": {"N": "4"}})]


@pytest.mark.parametrize("view", VIEW_TYPES)
def test_every_event_kind_in_every_view_type(ddb, streams, table_name, view):
    arn = stream_table(ddb, table_name, view)
    try:
        started = time.time()
        expected = _writes(ddb, table_name)
        records = all_records(streams, arn)
        assert [r["eventName"] for r in records] == [e[0] for e in expected]
        numbers = numbers_of(records)
        assert numbers == sorted(set(numbers))
        for record, (_, old, new) in zip(records, expected):
            assert record["eventSource"] == "aws:dynamodb" and record["eventVersion"] == "1.1"
            assert record["awsRegion"] == "us-east-1" and len(record["eventID"]) == 32
            assert "userIdentity" not in record
            body = record["dynamodb"]
            assert body["Keys"] == {"pk": {"S": "item"}} and body["StreamViewType"] == view
            assert body["SequenceNumber"].isdecimal() and body["SizeBytes"] > 0
            assert abs(body["ApproximateCreationDateTime"].timestamp() - started) < 60
            if view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES") and new is not None:
                assert body["NewImage"] == new
            else:
                assert "NewImage" not in body
            if view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES") and old is not None:
                assert body["OldImage"] == old
            else:
                assert "OldImage" not in body
    finally:
        ddb.delete_table(TableName=table_name)


def test_batch_write_and_transactions_reach_the_stream(ddb, streams, table_name):
    arn = stream_table(ddb, table_name, "NEW_AND_OLD_IMAGES")
    try:
        ddb.batch_write_item(RequestItems={table_name: [
            {"PutRequest": {"Item": {"pk": {"S": f"b{i}"}, "v": {"N": str(i)}}}} for i in range(20)]})
        ddb.batch_write_item(RequestItems={table_name: [
            {"DeleteRequest": {"Key": {"pk": {"S": "b0"}}}}, {"DeleteRequest": {"Key": {"pk": {"S": "missing"}}}},
            {"PutRequest": {"Item": {"pk": {"S": "b1"}, "v": {"N": "1"}}}}]})     # unchanged: no record
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table_name, "Item": {"pk": {"S": "t1"}, "v": {"N": "1"}}}},
            {"Update": {"TableName": table_name, "Key": {"pk": {"S": "b2"}}, "UpdateExpression": "SET v = :v",
                        "ExpressionAttributeValues": {":v": {"N": "20"}}}},
            {"Delete": {"TableName": table_name, "Key": {"pk": {"S": "b3"}}}},
            {"ConditionCheck": {"TableName": table_name, "Key": {"pk": {"S": "b4"}},
                                "ConditionExpression": "attribute_exists(pk)"}}])
        with pytest.raises(ClientError):      # cancelled: nothing written, nothing streamed
            ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": table_name, "Item": {"pk": {"S": "t2"}}}},
                {"ConditionCheck": {"TableName": table_name, "Key": {"pk": {"S": "b5"}},
                                    "ConditionExpression": "attribute_not_exists(pk)"}}])
        records = all_records(streams, arn)
        numbers = numbers_of(records)
        assert numbers == sorted(set(numbers))
        assert {n % 2 for n in numbers} == {0, 1}, "both server shards' items are in the one stream shard"
        events = {}
        for r in records:
            events.setdefault(r["dynamodb"]["Keys"]["pk"]["S"], []).append(r["eventName"])
        assert events.pop("b0") == ["INSERT", "REMOVE"]
        assert events.pop("b2") == ["INSERT", "MODIFY"]
        assert events.pop("b3") == ["INSERT", "REMOVE"]
        assert events.pop("t1") == ["INSERT"]
        assert events == {f"b{i}": ["INSERT"] for i in range(20) if i not in (0, 2, 3)}
        modify = [r for r in records if r["dynamodb"]["Keys"]["pk"]["S"] == "b2" and r["eventName"] == "MODIFY"][0]
        assert modify["dynamodb"]["OldImage"]["v"] == {"N": "2"} and modify["dynamodb"]["NewImage"]["v"] == {"N": "20"}
    finally:
        ddb.delete_table(TableName=table_name)


# ------------------------------------------------------------------ iterators

def test_iterator_types_and_paging(ddb, streams, table_name):
    arn = stream_table(ddb, table_name, "KEYS_ONLY")
    try:
        key = {"pk": {"S": "one"}}
        for i in range(3):
            ddb.put_item(TableName=table_name, Item={**key, "n": {"N": str(i)}})
        shard = the_shard(streams, arn)
        latest = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
        reply = streams.get_records(ShardIterator=latest)
        assert reply["Records"] == [] and "NextShardIterator" in reply
        ddb.put_item(TableName=table_name, Item={**key, "n": {"N": "3"}})
        reply = streams.get_records(ShardIterator=reply["NextShardIterator"])
        assert [r["eventName"] for r in reply["Records"]] == ["MODIFY"]
        assert streams.get_records(ShardIterator=reply["NextShardIterator"])["Records"] == []
        # an iterator can be read again: it names a position
        assert len(streams.get_records(ShardIterator=latest)["Records"]) == 1

        horizon = streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        page = streams.get_records(ShardIterator=horizon, Limit=3)
        numbers = [r["dynamodb"]["SequenceNumber"] for r in page["Records"]]
        assert len(numbers) == 3
        rest = streams.get_records(ShardIterator=page["NextShardIterator"], Limit=3)
        assert len(rest["Records"]) == 1 and int(rest["Records"][0]["dynamodb"]["SequenceNumber"]) > int(numbers[-1])
        at = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="AT_SEQUENCE_NUMBER",
                                        SequenceNumber=numbers[1])["ShardIterator"]
        assert [r["dynamodb"]["SequenceNumber"] for r in streams.get_records(ShardIterator=at)["Records"]][:2] == \
            numbers[1:]
        after = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                                           SequenceNumber=numbers[1])["ShardIterator"]
        assert streams.get_records(ShardIterator=after)["Records"][0]["dynamodb"]["SequenceNumber"] == numbers[2]
        start = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["SequenceNumberRange"][
            "StartingSequenceNumber"]
        it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="AT_SEQUENCE_NUMBER",
                                        SequenceNumber=start)["ShardIterator"]
        assert len(streams.get_records(ShardIterator=it)["Records"]) == 4
    finally:
        ddb.delete_table(TableName=table_name)


def _put_round(ddb, name, items, n):
    """Puts ``n`` into each of ``items`` items (on both server shards), in one batch."""
    ddb.batch_write_item(RequestItems={name: [
        {"PutRequest": {"Item": {"pk": {"S": f"i{i}"}, "n": {"N": str(n)}}}} for i in range(items)]})


def _write_rounds(ddb, name, items, rounds):
    for n in range(rounds):
        _put_round(ddb, name, items, n)


def _per_item(records):
    """{item: [its "n" in stream order]}"""
    seen = {}
    for r in records:
        seen.setdefault(r["dynamodb"]["Keys"]["pk"]["S"], []).append(int(r["dynamodb"]["NewImage"]["n"]["N"]))
    return seen


def test_shards_0_alone_sees_every_write_of_every_server_shard(ddb, streams, table_name):
    # What very many programs do: read Shards[0] only, from TRIM_HORIZON.
    arn = stream_table(ddb, table_name, "NEW_IMAGE")
    try:
        _write_rounds(ddb, table_name, 25, 4)
        shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        it = streams.get_shard_iterator(StreamArn=arn, ShardId=shards[0]["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records, following = read_all(streams, it)
        assert following is not None                    # open: more may come
        assert _per_item(records) == {f"i{i}": [0, 1, 2, 3] for i in range(25)}
        numbers = numbers_of(records)
        assert numbers == sorted(set(numbers)) and len(numbers) == 100
        assert {n % 2 for n in numbers} == {0, 1}       # each server shard numbers with its own residue
        assert [r["eventName"] for r in records].count("INSERT") == 25
    finally:
        ddb.delete_table(TableName=table_name)


def test_small_pages_lose_and_repeat_nothing(ddb, streams, table_name):
    arn = stream_table(ddb, table_name, "NEW_IMAGE")
    try:
        _write_rounds(ddb, table_name, 8, 3)
        whole = numbers_of(all_records(streams, arn))
        assert len(whole) == 24 and whole == sorted(set(whole))
        for limit in (1, 2, 3):
            records, _ = read_all(streams, iterator(streams, arn), limit=limit)
            assert numbers_of(records) == whole, limit
        # AT and AFTER a number from the other server shard's residue than the one before it
        at = next(i for i in range(1, 24) if whole[i] % 2 != whole[i - 1] % 2)
        text = str(whole[at]).zfill(21)
        assert numbers_of(read_all(streams, iterator(streams, arn, "AT_SEQUENCE_NUMBER",
                                                     SequenceNumber=text), limit=2)[0]) == whole[at:]
        assert numbers_of(read_all(streams, iterator(streams, arn, "AFTER_SEQUENCE_NUMBER",
                                                     SequenceNumber=text), limit=2)[0]) == whole[at + 1:]
    finally:
        ddb.delete_table(TableName=table_name)


def test_writes_made_while_a_consumer_pages_are_each_seen_once(server, ddb, streams, table_name):
    arn = stream_table(ddb, table_name, "NEW_IMAGE")
    try:
        it = iterator(streams, arn, "LATEST")
        writer_ddb = server.client()
        done = threading.Event()

        def write():
            try:
                _write_rounds(writer_ddb, table_name, 10, 6)
            finally:
                done.set()

        writer = threading.Thread(target=write)
        writer.start()
        records = []
        while True:
            finished = done.is_set()
            reply = streams.get_records(ShardIterator=it, Limit=2)
            records += reply["Records"]
            it = reply["NextShardIterator"]
            if finished and not reply["Records"]:
                break
        writer.join()
        assert _per_item(records) == {f"i{i}": list(range(6)) for i in range(10)}
        assert numbers_of(records) == sorted(set(numbers_of(records)))
    finally:
        ddb.delete_table(TableName=table_name)


def test_latest_then_a_write_sees_that_write(ddb, streams, table_name):
    arn = stream_table(ddb, table_name, "NEW_IMAGE")
    try:
        _write_rounds(ddb, table_name, 10, 1)
        for n in range(1, 4):
            latest = iterator(streams, arn, "LATEST")
            _put_round(ddb, table_name, 10, n)
            records, _ = read_all(streams, latest)
            assert _per_item(records) == {f"i{i}": [n] for i in range(10)}
    finally:
        ddb.delete_table(TableName=table_name)


def test_merging_server_shards_parts():
    # Numbers written before they were unique across server shards may tie: a page never ends
    # between equal numbers, and the bound is the smallest number a shard has not answered for.
    from shardserver.shard.streams import merge_parts

    def part(*numbers, covered, end=True):
        return [(n, b"%d" % n) for n in numbers], covered, end

    assert merge_parts([part(1, 4, covered=10), part(2, 3, covered=10)], 10, 1 << 20) == (
        [b"1", b"2", b"3", b"4"], 10, True)
    # shard 1 stopped at its limit after 3: shard 0's 4 waits for the next page
    assert merge_parts([part(1, 4, covered=10), part(2, 3, covered=4, end=False)], 10, 1 << 20) == (
        [b"1", b"2", b"3"], 4, False)
    # a record above the bound is left for later: not at the end
    assert merge_parts([part(5, covered=10), part(covered=4)], 10, 1 << 20) == ([], 4, False)
    assert merge_parts([part(1, 4, covered=10), part(2, 3, covered=10)], 2, 1 << 20) == ([b"1", b"2"], 3, False)
    assert merge_parts([part(1, 4, covered=10), part(2, 3, covered=10)], 10, 2) == ([b"1", b"2"], 3, False)
    ties = [part(5, 7, covered=10), part(5, 7, covered=10)]
    assert merge_parts(ties, 1, 1 << 20) == ([b"5", b"5"], 6, False)
    assert merge_parts(ties, 3, 1 << 20) == ([b"5", b"5"], 6, False)
    assert merge_parts(ties, 4, 1 << 20) == ([b"5", b"5", b"7", b"7"], 10, True)


def test_shard_iterator_bad_input(ddb, streams, raw_streams, table_name):
    arn = stream_table(ddb, table_name, "KEYS_ONLY")
    try:
        shard = the_shard(streams, arn)
        seq = "1" + "0" * 20
        # What was the second server shard's stream shard is no shard now.
        assert error_of(streams.get_shard_iterator, StreamArn=arn, ShardId=shard[:-1] + "1",
                        ShardIteratorType="LATEST") == (
            "ResourceNotFoundException", f"Requested resource not found: Shard does not exist: {shard[:-1]}1")
        for kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            assert error_of(streams.get_shard_iterator, StreamArn=arn, ShardId=shard,
                            ShardIteratorType=kind)[0] == "ValidationException"
        for kind in ("TRIM_HORIZON", "LATEST"):
            assert error_of(streams.get_shard_iterator, StreamArn=arn, ShardId=shard, ShardIteratorType=kind,
                            SequenceNumber=seq)[0] == "ValidationException"
        assert error_of(raw_streams.get_shard_iterator, StreamArn=arn, ShardId=shard,
                        ShardIteratorType="bulle")[0] == "ValidationException"
        for bad in ("12ab", "1234567890abcdefghijk"):
            assert error_of(raw_streams.get_shard_iterator, StreamArn=arn, ShardId=shard,
                            ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=bad)[0] == "ValidationException"
        assert error_of(streams.get_shard_iterator, StreamArn="sdfadsfsdfsdgdfsgsfdabadfbabdadsfsdfsdf", ShardId=shard,
                        ShardIteratorType="LATEST")[0] == "ValidationException"
        assert error_of(streams.get_shard_iterator, StreamArn=arn, ShardId="shardId-semprinidfaasdasfsdvacsd",
                        ShardIteratorType="LATEST")[0] == "ResourceNotFoundException"
        other_label = arn[:-3] + ("000" if arn.endswith("999") else "999")   # another millisecond
        assert error_of(streams.get_shard_iterator, StreamArn=other_label, ShardId=shard,
                        ShardIteratorType="LATEST")[0] == "ResourceNotFoundException"
        # a day and more ago: past the trim horizon
        code, _ = error_of(streams.get_shard_iterator, StreamArn=arn, ShardId=shard,
                           ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber="1000".zfill(21))
        assert code == "TrimmedDataAccessException"
        assert error_of(raw_streams.get_shard_iterator, StreamArn=arn, ShardId=shard,
                        ShardIteratorType=["LATEST"])[0] == "SerializationException"
    finally:
        ddb.delete_table(TableName=table_name)


def _forged(iterator, **changes):
    arn, version, payload = iterator.split("|")
    fields = dict(zip(("shard", "start", "issued"), base64.b64decode(payload).decode().split(":")[:3]))
    fields.update({k: str(v) for k, v in changes.items()})
    text = ":".join(fields[k] for k in ("shard", "start", "issued"))
    check = zlib.crc32(f"{arn}|{text}".encode())
    return f"{arn}|{version}|" + base64.b64encode(f"{text}:{check}".encode()).decode()


def test_get_records_bad_input(ddb, streams, raw_streams, table_name):
    arn = stream_table(ddb, table_name, "KEYS_ONLY")
    try:
        it = iterator(streams, arn)
        assert streams.get_records(ShardIterator=_forged(it))["Records"] == []   # the forgery is faithful
        assert error_of(streams.get_records, ShardIterator="sdfsdfsgagaddafgagasgasgasdfasdfasdfasdfasdgasdasdgasdg"
                        )[0] == "ValidationException"
        assert error_of(streams.get_records, ShardIterator=it[:-4] + "AAAA")[0] == "ValidationException"
        assert error_of(streams.get_records, ShardIterator=it.replace("|1|", "|2|"))[0] == "ValidationException"
        code, message = error_of(streams.get_records,
                                 ShardIterator=_forged(it, issued=int((time.time() - 16 * 60) * 1000)))
        assert code == "ExpiredIteratorException"
        for shard in (1, 7):
            assert error_of(streams.get_records, ShardIterator=_forged(it, shard=shard))[0] == \
                "ResourceNotFoundException"
        for limit in (0, 1001):
            assert error_of(raw_streams.get_records, ShardIterator=it, Limit=limit)[0] == "ValidationException"
        assert error_of(raw_streams.get_records, ShardIterator=it, Limit="many")[0] == "SerializationException"
        assert error_of(raw_streams.get_records)[0] == "ValidationException"
    finally:
        ddb.delete_table(TableName=table_name)


def test_disabled_stream_stays_readable_and_a_new_one_starts(ddb, streams, table_name):
    arn = stream_table(ddb, table_name, "NEW_IMAGE")
    try:
        ddb.put_item(TableName=table_name, Item={"pk": {"S": "before"}})
        old_iterator = iterator(streams, arn)
        _write_rounds(ddb, table_name, 6, 2)
        ddb.update_table(TableName=table_name, StreamSpecification={"StreamEnabled": False})
        table = ddb.describe_table(TableName=table_name)["Table"]
        assert "StreamSpecification" not in table and table["LatestStreamArn"] == arn
        ddb.put_item(TableName=table_name, Item={"pk": {"S": "while disabled"}})
        d = streams.describe_stream(StreamArn=arn)["StreamDescription"]
        assert d["StreamStatus"] == "DISABLED" and d["StreamViewType"] == "NEW_IMAGE"
        assert len(d["Shards"]) == 1
        numbers = d["Shards"][0]["SequenceNumberRange"]
        assert numbers["EndingSequenceNumber"].isdecimal()
        assert int(numbers["EndingSequenceNumber"]) >= int(numbers["StartingSequenceNumber"])
        # The closed shard ends where the stream was disabled: read to its end, no NextShardIterator.
        for limit in (None, 1, 5):
            records, following = read_all(streams, old_iterator, limit=limit)
            assert following is None
            keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in records]
            assert keys[0] == "before" and sorted(keys[1:]) == sorted([f"i{i}" for i in range(6)] * 2)
        page = streams.get_records(ShardIterator=old_iterator, Limit=12)
        assert len(page["Records"]) == 12 and "NextShardIterator" in page
        last = streams.get_records(ShardIterator=page["NextShardIterator"])
        assert len(last["Records"]) == 1 and "NextShardIterator" not in last
        ddb.update_table(TableName=table_name, StreamSpecification={"StreamEnabled": True,
                                                                     "StreamViewType": "KEYS_ONLY"})
        table = ddb.describe_table(TableName=table_name)["Table"]
        new_arn = table["LatestStreamArn"]
        assert new_arn != arn and table["StreamSpecification"]["StreamViewType"] == "KEYS_ONLY"
        assert sorted(s["StreamArn"] for s in streams.list_streams(TableName=table_name)["Streams"]) == \
            sorted([arn, new_arn])
        assert set(shard_ids(streams, new_arn)).isdisjoint(shard_ids(streams, arn))
        ddb.put_item(TableName=table_name, Item={"pk": {"S": "after"}})
        assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in all_records(streams, new_arn)] == ["after"]
        assert len(all_records(streams, arn)) == 13
    finally:
        ddb.delete_table(TableName=table_name)


def test_deleting_a_table_disables_its_stream(ddb, streams, table_name):
    arn = stream_table(ddb, table_name, "NEW_AND_OLD_IMAGES")
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    it = iterator(streams, arn)
    ddb.delete_table(TableName=table_name)
    # As DynamoDB's DeleteTable says: the stream is DISABLED, still readable, deleted after 24 hours.
    d = streams.describe_stream(StreamArn=arn)["StreamDescription"]
    assert d["StreamStatus"] == "DISABLED" and d["TableName"] == table_name
    assert all("EndingSequenceNumber" in s["SequenceNumberRange"] for s in d["Shards"])
    assert [s["StreamArn"] for s in streams.list_streams(TableName=table_name)["Streams"]] == [arn]
    records, following = read_all(streams, it)
    assert [r["dynamodb"]["NewImage"] for r in records] == [{"pk": {"S": "a"}, "v": {"N": "1"}}]
    assert following is None        # the closed shard, read to its end
    # A table of the same name starts afresh, its own stream listed beside the old one.
    new_arn = stream_table(ddb, table_name, "KEYS_ONLY")
    try:
        assert new_arn != arn
        assert sorted(s["StreamArn"] for s in streams.list_streams(TableName=table_name)["Streams"]) == \
            sorted([arn, new_arn])
        assert all_records(streams, new_arn) == []
    finally:
        ddb.delete_table(TableName=table_name)


# ------------------------------------------------------------------ TTL, restarts, trimming

@pytest.fixture(scope="module")
def lonely(tmp_path_factory):
    """A server of our own: fast TTL scans, group commit, restarted and reconfigured by the tests."""
    data = tmp_path_factory.mktemp("streams")
    proc = ServerProcess(data, smp=2, extra=["--ttl-scan-interval-in-s", "1", "--commitlog-sync", "batch"]).start()
    state = {"server": proc, "data": data}
    yield state
    state["server"].stop()


def test_ttl_expiry_is_a_service_remove(lonely):
    server = lonely["server"]
    ddb, streams = server.client(), streams_client(server)
    arn = stream_table(ddb, "ttl", "OLD_IMAGE")
    ddb.update_time_to_live(TableName="ttl", TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
    ddb.put_item(TableName="ttl", Item={"pk": {"S": "old"}, "exp": {"N": str(int(time.time()) - 10)}})
    deadline = time.monotonic() + 15
    while True:
        records = all_records(streams, arn)
        if len(records) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [r["eventName"] for r in records] == ["INSERT", "REMOVE"]
    assert "userIdentity" not in records[0]
    assert records[1]["userIdentity"] == {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    assert records[1]["dynamodb"]["OldImage"]["pk"] == {"S": "old"}


def test_records_survive_shard_restarts_and_are_trimmed_after_retention(lonely):
    server = lonely["server"]
    ddb, streams = server.client(), streams_client(server)
    arn = stream_table(ddb, "durable", "NEW_IMAGE")
    for i in range(20):
        ddb.put_item(TableName="durable", Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
    before = numbers_of(all_records(streams, arn))
    assert len(before) == 20
    # A consumer part-way through (a page of 7), and one at the end, go on across the restarts.
    midway = streams.get_records(ShardIterator=iterator(streams, arn), Limit=7)
    consumed = numbers_of(midway["Records"])
    midway = midway["NextShardIterator"]
    at_end = read_all(streams, iterator(streams, arn))[1]
    victims = server.shard_pids()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not (server.all_shards_up() and not set(victims) & set(server.shard_pids())):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    ddb, streams = server.client(), streams_client(server)
    assert numbers_of(all_records(streams, arn)) == before
    for i in range(20, 30):
        ddb.put_item(TableName="durable", Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
    grown = numbers_of(all_records(streams, arn))
    assert grown[:20] == before and grown == sorted(set(grown)) and len(grown) == 30    # increasing across it
    records, at_end = read_all(streams, at_end, limit=3)
    assert numbers_of(records) == grown[20:]
    records, midway = read_all(streams, midway, limit=4)
    consumed += numbers_of(records)
    assert consumed == grown
    oldest = str(grown[0]).zfill(21)
    # A clean stop flushes the memtables: the records come back from SSTables.  With a retention of
    # 48 s a generation table takes 2 s of records: reads go on across generations.
    assert server.stop() == 0
    server = lonely["server"] = ServerProcess(lonely["data"], smp=2, port=server.port,
                                              extra=["--streams-retention-in-s", "48"]).start()
    ddb, streams = server.client(), streams_client(server)
    assert numbers_of(all_records(streams, arn)) == grown
    for i in range(30, 36):
        ddb.put_item(TableName="durable", Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
        time.sleep(0.5)
    records = all_records(streams, arn)
    assert numbers_of(records) == sorted(set(numbers_of(records)))
    assert [int(r["dynamodb"]["NewImage"]["v"]["N"]) for r in records] == list(range(36))
    records, _ = read_all(streams, at_end, limit=2)
    assert [int(r["dynamodb"]["NewImage"]["v"]["N"]) for r in records] == list(range(30, 36))
    table_id = ddb.describe_table(TableName="durable")["Table"]["TableId"]
    generation_dirs = [d for shard in range(2) for d in os.listdir(lonely["data"] / f"shard-{shard}" / "tables")
                       if d.startswith(table_id + ".s")]
    assert len(generation_dirs) >= 4

    # The same data with a retention of 2 seconds: everything above is past it.
    assert server.stop() == 0
    server = lonely["server"] = ServerProcess(lonely["data"], smp=2, port=server.port,
                                              extra=["--streams-retention-in-s", "2"]).start()
    ddb, streams = server.client(), streams_client(server)
    time.sleep(2.5)
    code, _ = error_of(streams.get_shard_iterator, StreamArn=arn, ShardId=the_shard(streams, arn),
                       ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=oldest)
    assert code == "TrimmedDataAccessException"
    assert all_records(streams, arn) == []
    ddb.update_table(TableName="durable", StreamSpecification={"StreamEnabled": False})
    deadline = time.monotonic() + 15
    while [s for s in streams.list_streams(TableName="durable")["Streams"]]:
        assert time.monotonic() < deadline, "a stream disabled longer than the retention is forgotten"
        time.sleep(0.2)
    assert error_of(streams.describe_stream, StreamArn=arn)[0] == "ResourceNotFoundException"
    ddb.update_table(TableName="durable", StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
    fresh = ddb.describe_table(TableName="durable")["Table"]["LatestStreamArn"]
    ddb.put_item(TableName="durable", Item={"pk": {"S": "new"}})
    assert len(all_records(streams, fresh)) == 1
    time.sleep(2.6)
    assert all_records(streams, fresh) == []            # past the retention: trimmed (or hidden until then)
    ddb.delete_table(TableName="durable")
    deadline = time.monotonic() + 15
    while [s for s in streams.list_streams()["Streams"] if s["TableName"] == "durable"]:
        assert time.monotonic() < deadline, "a deleted table's streams are forgotten after the retention"
        time.sleep(0.2)
    assert error_of(streams.list_streams, TableName="durable")[0] == "ResourceNotFoundException"
    time.sleep(0.5)     # every shard drops the storage with the catalog change
    assert not [d for shard in range(2) for d in os.listdir(lonely["data"] / f"shard-{shard}" / "tables")
                if d.startswith(table_id)]
    deadline = time.monotonic() + 10
    while True:
        metrics = _metrics(server)
        if metrics.get("stream_records_trimmed_total", 0) >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert metrics["stream_records_trimmed_total"] >= 1 and metrics["stream_records_written_total"] >= 1


def _metrics(server) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.prometheus_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    totals = {}
    for line in text.splitlines():
        if line.startswith("shardserver_stream_records_"):
            name = line.split("{", 1)[0][len("shardserver_"):]
            totals[name] = totals.get(name, 0) + float(line.rsplit(" ", 1)[1])
    return totals


def test_streams_operations_only_under_their_own_target(server):
    for target, status in (("DynamoDB_20120810.Streams.ListStreams", 400),
                           ("DynamoDBStreams_20120810.ListStreams", 200),
                           ("DynamoDBStreams_20120810.PutItem", 400)):
        request = urllib.request.Request(server.endpoint + "/", data=b"{}", method="POST", headers={
            "X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0"})
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                assert (reply.status, target) == (status, target)
        except urllib.error.HTTPError as error:
            assert (error.code, target) == (status, target)
            assert b"UnknownOperationException" in error.read()
