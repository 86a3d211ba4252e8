"""Secondary indexes through boto3 against a real server: LSI and GSI, projections, Query/Scan, bad input.

GSI entries are maintained asynchronously (eventually consistent, as in
DynamoDB), so GSI reads are retried for a bounded time before comparing.
"""

import os
import random
import re
import signal
import threading
import time

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from serverutil import ServerProcess


def S(v):
    return {"S": v}


def N(v):
    return {"N": str(v)}


def key_schema(hash_key, range_key=None):
    schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return schema


def defs(**types):
    return [{"AttributeName": n, "AttributeType": t} for n, t in types.items()]


def full_query(client, **kwargs):
    items, start = [], None
    while True:
        page = client.query(**kwargs, **({"ExclusiveStartKey": start} if start else {}))
        items.extend(page.get("Items", []))
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def full_scan(client, **kwargs):
    items, start = [], None
    while True:
        page = client.scan(**kwargs, **({"ExclusiveStartKey": start} if start else {}))
        items.extend(page.get("Items", []))
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def canon(items):
    return sorted(repr(sorted((k, repr(v)) for k, v in i.items())) for i in items)


def eventually(fetch, expected, timeout=10.0):
    """GSIs converge; retries ``fetch`` until it equals ``expected`` (as multisets) or time runs out."""
    deadline = time.monotonic() + timeout
    want = canon(expected)
    while True:
        got = canon(fetch())
        if got == want or time.monotonic() > deadline:
            assert got == want
            return
        time.sleep(0.05)


def error_of(call, **kwargs):
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def project(item, names):
    return {k: v for k, v in item.items() if k in names}


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def lsi_table(ddb):
    name = "idx_lsi_table"
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=key_schema("p", "c"), AttributeDefinitions=defs(p="S", c="S", n="N", s="S", b="B"),
        LocalSecondaryIndexes=[
            {"IndexName": "by_n_all", "KeySchema": key_schema("p", "n"), "Projection": {"ProjectionType": "ALL"}},
            {"IndexName": "by_s_keys", "KeySchema": key_schema("p", "s"),
             "Projection": {"ProjectionType": "KEYS_ONLY"}},
            {"IndexName": "by_b_incl", "KeySchema": key_schema("p", "b"),
             "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["a"]}},
        ])
    items = []
    for i in range(40):
        item = {"p": S(f"p{i % 2}"), "c": S(f"c{i:03d}"), "a": S(f"a{i}"), "z": S(f"z{i}")}
        if i % 5:
            item["n"] = N(random.Random(i).randint(-50, 50))
        if i % 7:
            item["s"] = S(random.Random(i + 1).choice(["apple", "apricot", "banana", "cherry", "", "x"]) or "q")
        if i % 3:
            item["b"] = {"B": bytes([i % 4, 0, i]).hex().encode()}
        ddb.put_item(TableName=name, Item=item)
        items.append(item)
    yield name, items
    ddb.delete_table(TableName=name)


@pytest.fixture(scope="module")
def gsi_table(ddb):
    name = "idx_gsi_table"
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=key_schema("p", "c"), AttributeDefinitions=defs(p="S", c="S", g="S", r="N", h="N"),
        GlobalSecondaryIndexes=[
            {"IndexName": "g_all", "KeySchema": key_schema("g", "r"), "Projection": {"ProjectionType": "ALL"}},
            {"IndexName": "g_keys", "KeySchema": key_schema("g"), "Projection": {"ProjectionType": "KEYS_ONLY"}},
            {"IndexName": "h_incl", "KeySchema": key_schema("h", "c"),
             "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["v", "w"]}},
        ])
    items = []
    for i in range(60):
        item = {"p": S(f"p{i % 6}"), "c": S(f"c{i:03d}"), "v": S(f"v{i}"), "w": N(i), "y": S("y")}
        if i % 4:
            item["g"] = S(f"g{i % 3}")
            item["r"] = N(i * 7 % 23 - 11)
        if i % 5:
            item["h"] = N(i % 4)
        ddb.put_item(TableName=name, Item=item)
        items.append(item)
    yield name, items
    ddb.delete_table(TableName=name)


# ------------------------------------------------------------------ LSI

def test_lsi_query_default_select_returns_projection(ddb, lsi_table):
    name, items = lsi_table
    got = full_query(ddb, TableName=name, IndexName="by_s_keys", KeyConditionExpression="p = :p",
                     ExpressionAttributeValues={":p": S("p1")}, Limit=3)
    want = [project(i, {"p", "c", "s"}) for i in items if i["p"] == S("p1") and "s" in i]
    assert canon(got) == canon(want)
    got = full_query(ddb, TableName=name, IndexName="by_b_incl", KeyConditionExpression="p = :p",
                     ExpressionAttributeValues={":p": S("p0")})
    want = [project(i, {"p", "c", "b", "a"}) for i in items if i["p"] == S("p0") and "b" in i]
    assert canon(got) == canon(want)


def test_lsi_orders_by_index_sort_key_both_directions(ddb, lsi_table):
    name, items = lsi_table
    for forward in (True, False):
        got = full_query(ddb, TableName=name, IndexName="by_n_all", KeyConditionExpression="p = :p",
                         ExpressionAttributeValues={":p": S("p0")}, ScanIndexForward=forward, Limit=2)
        numbers = [int(i["n"]["N"]) for i in got]
        assert numbers == sorted(numbers, reverse=not forward)
        assert canon(got) == canon([i for i in items if i["p"] == S("p0") and "n" in i])


def test_lsi_select_all_attributes_fetches_base_items(ddb, lsi_table):
    name, items = lsi_table
    got = full_query(ddb, TableName=name, IndexName="by_s_keys", Select="ALL_ATTRIBUTES",
                     KeyConditionExpression="p = :p AND begins_with(s, :a)",
                     ExpressionAttributeValues={":p": S("p1"), ":a": S("ap")})
    want = [i for i in items if i["p"] == S("p1") and i.get("s", S(""))["S"].startswith("ap")]
    assert want and canon(got) == canon(want)
    # Unprojected attributes may be asked for by name, and filtered on.
    got = full_query(ddb, TableName=name, IndexName="by_s_keys", ProjectionExpression="z, s",
                     KeyConditionExpression="p = :p", FilterExpression="z <> :z",
                     ExpressionAttributeValues={":p": S("p0"), ":z": S("z0")})
    want = [project(i, {"z", "s"}) for i in items if i["p"] == S("p0") and "s" in i and i["z"] != S("z0")]
    assert canon(got) == canon(want)


def test_lsi_filter_on_unprojected_attribute_still_returns_the_projection(ddb, lsi_table):
    # The filter may read the base item, but the default Select still answers with the index's attributes.
    name, items = lsi_table
    want = [project(i, {"p", "c", "b", "a"}) for i in items if i["p"] == S("p0") and "b" in i and i["z"] != S("z0")]
    got = full_query(ddb, TableName=name, IndexName="by_b_incl", KeyConditionExpression="p = :p",
                     FilterExpression="z <> :z", ExpressionAttributeValues={":p": S("p0"), ":z": S("z0")})
    assert want and canon(got) == canon(want)
    got = full_scan(ddb, TableName=name, IndexName="by_b_incl", FilterExpression="p = :p AND z <> :z",
                    ExpressionAttributeValues={":p": S("p0"), ":z": S("z0")}, ConsistentRead=True)
    assert canon(got) == canon(want)


def test_lsi_range_conditions_match_client_side(ddb, lsi_table):
    name, items = lsi_table
    cases = [("n < :v", N(0), lambda n: n < 0), ("n <= :v", N(7), lambda n: n <= 7),
             ("n > :v", N(-3), lambda n: n > -3), ("n >= :v", N(12), lambda n: n >= 12),
             ("n = :v", N(int(items[1]["n"]["N"])), lambda n: n == int(items[1]["n"]["N"]))]
    for text, value, keep in cases:
        got = full_query(ddb, TableName=name, IndexName="by_n_all", KeyConditionExpression=f"p = :p AND {text}",
                         ExpressionAttributeValues={":p": S("p1"), ":v": value})
        want = [i for i in items if i["p"] == S("p1") and "n" in i and keep(int(i["n"]["N"]))]
        assert canon(got) == canon(want), text
    got = full_query(ddb, TableName=name, IndexName="by_n_all",
                     KeyConditionExpression="p = :p AND n BETWEEN :lo AND :hi",
                     ExpressionAttributeValues={":p": S("p0"), ":lo": N(-10), ":hi": N(10)})
    assert canon(got) == canon([i for i in items if i["p"] == S("p0") and "n" in i
                                and -10 <= int(i["n"]["N"]) <= 10])
    count = ddb.query(TableName=name, IndexName="by_b_incl", Select="COUNT", KeyConditionExpression="p = :p",
                      ExpressionAttributeValues={":p": S("p1")})
    assert "Items" not in count and count["Count"] == len([i for i in items if i["p"] == S("p1") and "b" in i])


def test_lsi_follows_updates_and_deletes(ddb, lsi_table):
    name, _ = lsi_table
    key = {"p": S("p9"), "c": S("c1")}
    ddb.put_item(TableName=name, Item={**key, "n": N(5), "a": S("one")})
    ddb.update_item(TableName=name, Key=key, UpdateExpression="SET n = :n", ExpressionAttributeValues={":n": N(6)})

    def q():
        return full_query(ddb, TableName=name, IndexName="by_n_all", ConsistentRead=True,
                          KeyConditionExpression="p = :p", ExpressionAttributeValues={":p": S("p9")})
    assert q() == [{**key, "n": N(6), "a": S("one")}]
    ddb.update_item(TableName=name, Key=key, UpdateExpression="REMOVE n")
    assert q() == []
    ddb.put_item(TableName=name, Item={**key, "n": N(1)})
    # A counter on the index key, stored last: the index must follow it too.
    ddb.update_item(TableName=name, Key=key, UpdateExpression="SET n = n + :one",
                    ExpressionAttributeValues={":one": N(1)})
    assert q() == [{**key, "n": N(2)}]
    ddb.delete_item(TableName=name, Key=key)
    assert q() == []


# ------------------------------------------------------------------ GSI

def test_gsi_query_projections_and_paging(ddb, gsi_table):
    name, items = gsi_table
    for g in ("g0", "g1", "g2"):
        want = [i for i in items if i.get("g") == S(g)]
        eventually(lambda: full_query(ddb, TableName=name, IndexName="g_all", KeyConditionExpression="g = :g",
                                      ExpressionAttributeValues={":g": S(g)}, Limit=2), want)
        got = full_query(ddb, TableName=name, IndexName="g_all", KeyConditionExpression="g = :g",
                         ExpressionAttributeValues={":g": S(g)}, ScanIndexForward=False)
        numbers = [float(i["r"]["N"]) for i in got]
        assert numbers == sorted(numbers, reverse=True)
        eventually(lambda: full_query(ddb, TableName=name, IndexName="g_keys", KeyConditionExpression="g = :g",
                                      ExpressionAttributeValues={":g": S(g)}, Limit=3),
                   [project(i, {"p", "c", "g"}) for i in want])
    want = [project(i, {"p", "c", "h", "v", "w"}) for i in items if i.get("h") == N(2) and i["c"]["S"] >= "c020"]
    eventually(lambda: full_query(ddb, TableName=name, IndexName="h_incl", KeyConditionExpression="h = :h AND c >= :c",
                                  ExpressionAttributeValues={":h": N(2), ":c": S("c020")}, Limit=1), want)


def test_gsi_last_evaluated_key_has_index_and_base_keys(ddb, gsi_table):
    name, items = gsi_table
    want = [i for i in items if i.get("g") == S("g1")]
    eventually(lambda: full_query(ddb, TableName=name, IndexName="g_all", KeyConditionExpression="g = :g",
                                  ExpressionAttributeValues={":g": S("g1")}), want)
    page = ddb.query(TableName=name, IndexName="g_all", KeyConditionExpression="g = :g",
                     ExpressionAttributeValues={":g": S("g1")}, Limit=1)
    assert set(page["LastEvaluatedKey"]) == {"p", "c", "g", "r"}


def test_gsi_filter_and_projection_expression(ddb, gsi_table):
    name, items = gsi_table
    want = [{"v": i["v"]} for i in items if i.get("g") == S("g2") and int(i["w"]["N"]) % 2 == 0]
    eventually(lambda: full_query(ddb, TableName=name, IndexName="g_all", KeyConditionExpression="g = :g",
                                  FilterExpression="w IN (" + ",".join(f":w{k}" for k in range(0, 60, 2)) + ")",
                                  ProjectionExpression="v",
                                  ExpressionAttributeValues={":g": S("g2"),
                                                             **{f":w{k}": N(k) for k in range(0, 60, 2)}}),
               want)


def test_gsi_scan_matches_filtered_table_scan_and_parallel_segments(ddb, gsi_table):
    name, items = gsi_table
    want = [project(i, {"p", "c", "h", "v", "w"}) for i in items if "h" in i]
    eventually(lambda: full_scan(ddb, TableName=name, IndexName="h_incl", Limit=7), want)
    union = []
    for segment in range(3):
        union += full_scan(ddb, TableName=name, IndexName="h_incl", Segment=segment, TotalSegments=3, Limit=5)
    assert canon(union) == canon(want)
    count = ddb.scan(TableName=name, IndexName="g_keys", Select="COUNT")
    assert count["Count"] == len([i for i in items if "g" in i])


def test_gsi_items_moving_between_partitions_under_concurrent_updates(ddb, server, gsi_table):
    name, _ = gsi_table
    keys = [{"p": S("m"), "c": S(f"m{i:02d}")} for i in range(24)]
    for k in keys:
        ddb.put_item(TableName=name, Item={**k, "g": S("g0"), "r": N(0), "v": S("start")})
    errors = []

    def worker(seed):
        client = server.client()
        rng = random.Random(seed)
        try:
            for step in range(40):
                k = rng.choice(keys)
                choice = rng.random()
                if choice < 0.7:
                    client.update_item(TableName=name, Key=k, UpdateExpression="SET g = :g, r = :r, v = :v",
                                       ExpressionAttributeValues={":g": S(f"g{rng.randrange(3)}"),
                                                                  ":r": N(rng.randrange(-5, 5)),
                                                                  ":v": S(f"{seed}-{step}")})
                elif choice < 0.85:
                    client.update_item(TableName=name, Key=k, UpdateExpression="REMOVE g")
                else:
                    client.delete_item(TableName=name, Key=k)
        except Exception as exc:     # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    base = [i for i in full_scan(ddb, TableName=name, ConsistentRead=True) if i["p"] == S("m")]
    for g in ("g0", "g1", "g2"):
        eventually(lambda: [i for i in full_query(ddb, TableName=name, IndexName="g_all",
                                                  KeyConditionExpression="g = :g",
                                                  ExpressionAttributeValues={":g": S(g)}) if i["p"] == S("m")],
                   [i for i in base if i.get("g") == S(g)])
        eventually(lambda: [i for i in full_query(ddb, TableName=name, IndexName="g_keys",
                                                  KeyConditionExpression="g = :g",
                                                  ExpressionAttributeValues={":g": S(g)}) if i["p"] == S("m")],
                   [project(i, {"p", "c", "g"}) for i in base if i.get("g") == S(g)])


def test_gsi_skips_items_without_index_keys(ddb, table_name):
    ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema("p"),
                     AttributeDefinitions=defs(p="S", a="S", b="N"),
                     GlobalSecondaryIndexes=[{"IndexName": "a_b", "KeySchema": key_schema("a", "b"),
                                              "Projection": {"ProjectionType": "ALL"}}])
    try:
        ddb.put_item(TableName=table_name, Item={"p": S("1"), "a": S("x"), "b": N(1)})
        ddb.put_item(TableName=table_name, Item={"p": S("2"), "a": S("x")})
        ddb.put_item(TableName=table_name, Item={"p": S("3"), "b": N(3)})
        eventually(lambda: full_scan(ddb, TableName=table_name, IndexName="a_b"),
                   [{"p": S("1"), "a": S("x"), "b": N(1)}])
        ddb.update_item(TableName=table_name, Key={"p": S("2")}, UpdateExpression="SET b = :b",
                        ExpressionAttributeValues={":b": N(2)})
        eventually(lambda: full_query(ddb, TableName=table_name, IndexName="a_b", KeyConditionExpression="a = :a",
                                      ExpressionAttributeValues={":a": S("x")}),
                   [{"p": S("1"), "a": S("x"), "b": N(1)}, {"p": S("2"), "a": S("x"), "b": N(2)}])
    finally:
        ddb.delete_table(TableName=table_name)


def test_bad_index_key_messages_name_the_first_index_and_the_value_kind(ddb, table_name):
    # DynamoDB names the alphabetically first index keyed by the attribute (here the GSI, even
    # though an LSI keys it too), says "binary" for an empty B value, and words an empty value
    # produced by an UpdateExpression differently.  In a transaction an empty index key value
    # is input validation (a plain ValidationException); a wrong type is the action's reason.
    ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema("p", "c"),
                     AttributeDefinitions=defs(p="S", c="S", x="S", b="B"),
                     GlobalSecondaryIndexes=[{"IndexName": "a_g", "KeySchema": key_schema("x"),
                                              "Projection": {"ProjectionType": "ALL"}},
                                             {"IndexName": "g_b", "KeySchema": key_schema("b"),
                                              "Projection": {"ProjectionType": "ALL"}}],
                     LocalSecondaryIndexes=[{"IndexName": "b_l", "KeySchema": key_schema("p", "x"),
                                             "Projection": {"ProjectionType": "ALL"}}])
    try:
        key = {"p": S("k"), "c": S("c")}
        _, message = error_of(ddb.put_item, TableName=table_name, Item={**key, "x": N(3)})
        assert message.endswith("Type mismatch for Index Key x Expected: S Actual: N IndexName: a_g")
        _, message = error_of(ddb.put_item, TableName=table_name, Item={**key, "b": {"B": b""}})
        assert message == ("One or more parameter values are not valid. A value specified for a secondary index "
                           "key is not supported. The AttributeValue for a key attribute cannot contain an empty "
                           "binary value. IndexName: g_b, IndexKey: b")
        updated = ("One or more parameter values are not valid. The update expression attempted to update a "
                   "secondary index key to a value that is not supported. The AttributeValue for a key "
                   "attribute cannot contain an empty string value.")
        _, message = error_of(ddb.update_item, TableName=table_name, Key=key, UpdateExpression="SET x = :v",
                              ExpressionAttributeValues={":v": S("")})
        assert message == updated
        code, message = error_of(ddb.transact_write_items, TransactItems=[
            {"Update": {"TableName": table_name, "Key": key, "UpdateExpression": "SET x = :v",
                        "ExpressionAttributeValues": {":v": S("")}}}])
        assert (code, message) == ("ValidationException", updated)
        code, message = error_of(ddb.transact_write_items, TransactItems=[
            {"Put": {"TableName": table_name, "Item": {**key, "x": S("")}}}])
        assert code == "ValidationException"
        assert message.endswith("empty string value. IndexName: a_g, IndexKey: x")
        with pytest.raises(ClientError) as e:
            ddb.transact_write_items(TransactItems=[{"Put": {"TableName": table_name, "Item": {**key, "x": N(1)}}}])
        assert e.value.response["Error"]["Code"] == "TransactionCanceledException"
        assert e.value.response["CancellationReasons"][0]["Message"].endswith("IndexName: a_g")
        assert "Item" not in ddb.get_item(TableName=table_name, Key=key, ConsistentRead=True)
    finally:
        ddb.delete_table(TableName=table_name)


def test_writes_with_bad_index_keys_are_rejected_and_change_nothing(ddb, table_name):
    ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema("p", "c"),
                     AttributeDefinitions=defs(p="S", c="S", x="S", l="N"),
                     GlobalSecondaryIndexes=[{"IndexName": "g_x", "KeySchema": key_schema("x"),
                                              "Projection": {"ProjectionType": "ALL"}}],
                     LocalSecondaryIndexes=[{"IndexName": "l_l", "KeySchema": key_schema("p", "l"),
                                             "Projection": {"ProjectionType": "ALL"}}])
    try:
        key = {"p": S("k"), "c": S("c")}
        code, message = error_of(ddb.put_item, TableName=table_name, Item={**key, "x": N(3)})
        assert code == "ValidationException"
        assert message == ("One or more parameter values were invalid: Type mismatch for Index Key x Expected: S "
                           "Actual: N IndexName: g_x")
        assert "Item" not in ddb.get_item(TableName=table_name, Key=key, ConsistentRead=True)
        code, message = error_of(ddb.put_item, TableName=table_name, Item={**key, "x": S("")})
        assert "cannot contain an empty string value. IndexName: g_x, IndexKey: x" in message
        code, message = error_of(ddb.put_item, TableName=table_name, Item={**key, "l": S("1")})
        assert "Type mismatch for Index Key l Expected: N Actual: S IndexName: l_l" in message
        ddb.put_item(TableName=table_name, Item={**key, "x": S("good"), "l": N(1)})
        code, _ = error_of(ddb.update_item, TableName=table_name, Key=key, UpdateExpression="SET x = :x",
                           ExpressionAttributeValues={":x": {"BOOL": True}})
        assert code == "ValidationException"
        assert ddb.get_item(TableName=table_name, Key=key, ConsistentRead=True)["Item"]["x"] == S("good")
        eventually(lambda: full_scan(ddb, TableName=table_name, IndexName="g_x"),
                   [{**key, "x": S("good"), "l": N(1)}])
        assert full_scan(ddb, TableName=table_name, IndexName="l_l", ConsistentRead=True) == [
            {**key, "x": S("good"), "l": N(1)}]
    finally:
        ddb.delete_table(TableName=table_name)


def test_index_read_errors(ddb, gsi_table, lsi_table):
    name, _ = gsi_table
    kc = {"KeyConditionExpression": "g = :g", "ExpressionAttributeValues": {":g": S("g0")}}
    assert error_of(ddb.query, TableName=name, IndexName="g_all", ConsistentRead=True, **kc) == (
        "ValidationException", "Consistent reads are not supported on global secondary indexes")
    assert error_of(ddb.scan, TableName=name, IndexName="g_keys", ConsistentRead=True)[1] == (
        "Consistent reads are not supported on global secondary indexes")
    assert error_of(ddb.query, TableName=name, IndexName="g_keys", Select="ALL_ATTRIBUTES", **kc)[1] == (
        "One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not supported for global "
        "secondary index g_keys because its projection type is not ALL")
    # A projection with another Select: Query words it as a model error, Scan does not.
    for call, extra, prefix in ((ddb.query, kc, "1 validation error detected: "), (ddb.scan, {}, "")):
        for select, named in (("COUNT", "only the Count"), ("ALL_PROJECTED_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES")):
            assert error_of(call, TableName=name, IndexName="g_all", Select=select, ProjectionExpression="g",
                            **extra) == ("ValidationException", f"{prefix}Cannot specify the ProjectionExpression "
                                                                f"when choosing to get {named}")
    assert error_of(ddb.scan, TableName=name, IndexName="g_all", Select="COUNT", AttributesToGet=["g"])[1] == (
        "Cannot specify the AttributesToGet when choosing to get only the Count")
    for call, extra in ((ddb.query, kc), (ddb.scan, {})):
        assert error_of(call, TableName=name, IndexName="nonexistent", **extra) == (
            "ValidationException", "The table does not have the specified index: nonexistent")
        assert error_of(call, TableName="no_such_table", IndexName="g_all", **extra)[0] == (
            "ResourceNotFoundException")
    assert error_of(ddb.query, TableName=name, IndexName="g_all", ExclusiveStartKey={"g": S("g0")}, **kc)[1] == (
        "The provided starting key is invalid")
    lsi_name, _ = lsi_table
    # LSIs allow strongly consistent reads.
    ddb.query(TableName=lsi_name, IndexName="by_n_all", ConsistentRead=True, KeyConditionExpression="p = :p",
              ExpressionAttributeValues={":p": S("p0")})


def test_create_table_answers_its_global_indexes_creating(ddb, table_name):
    # As DynamoDB answers CreateTable (the AWS CLI's create-table examples): the table and each of its
    # global indexes CREATING, without Backfilling (that is for an index added to a live table).
    created = ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema("p"),
                               AttributeDefinitions=defs(p="S", g="S"), GlobalSecondaryIndexes=[gsi("by_g", "g")])
    entry, = created["TableDescription"]["GlobalSecondaryIndexes"]
    assert created["TableDescription"]["TableStatus"] == "CREATING"
    assert entry["IndexStatus"] == "CREATING" and "Backfilling" not in entry
    ddb.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 0.1})
    assert ddb.describe_table(TableName=table_name)["Table"]["GlobalSecondaryIndexes"][0]["IndexStatus"] == "ACTIVE"
    ddb.delete_table(TableName=table_name)


def test_describe_table_lists_every_index(ddb, gsi_table, lsi_table):
    name, items = gsi_table
    eventually(lambda: [i for i in full_scan(ddb, TableName=name, IndexName="g_keys") if i["p"] != S("m")],
               [project(i, {"p", "c", "g"}) for i in items if "g" in i])
    table = ddb.describe_table(TableName=name)["Table"]
    gsis = {g["IndexName"]: g for g in table["GlobalSecondaryIndexes"]}
    assert set(gsis) == {"g_all", "g_keys", "h_incl"}
    g = gsis["h_incl"]
    assert g["KeySchema"] == key_schema("h", "c")
    assert g["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["v", "w"]}
    assert g["IndexStatus"] == "ACTIVE" and g["IndexArn"] == table["TableArn"] + "/index/h_incl"
    assert "ProvisionedThroughput" in g and g["ItemCount"] >= len([i for i in items if "h" in i])
    assert gsis["g_keys"]["ItemCount"] >= len([i for i in items if "g" in i]) and gsis["g_keys"]["IndexSizeBytes"] > 0
    lsis = ddb.describe_table(TableName=lsi_table[0])["Table"]["LocalSecondaryIndexes"]
    assert {i["IndexName"] for i in lsis} == {"by_n_all", "by_s_keys", "by_b_incl"}
    assert all("IndexStatus" not in i and i["IndexArn"].endswith("/index/" + i["IndexName"]) for i in lsis)


# ------------------------------------------------------------------ bad index definitions

def test_definitions_and_projected_attributes_are_described_sorted(ddb, table_name):
    """DynamoDB answers AttributeDefinitions and an INCLUDE projection's NonKeyAttributes sorted by
    name; the index lists keep the order they were given in.  An INCLUDE lists at most 20."""
    created = ddb.create_table(
        TableName=table_name, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema("pk", "sk"),
        AttributeDefinitions=defs(z="S", a="S", m="S", sk="S", pk="S"),
        GlobalSecondaryIndexes=[gsi("g-z", "z", projection={"ProjectionType": "INCLUDE",
                                                            "NonKeyAttributes": ["zz", "aa", "mm", "sk"]}),
                                gsi("g-a", "a", "m")])["TableDescription"]
    try:
        for description in (created, ddb.describe_table(TableName=table_name)["Table"]):
            assert [d["AttributeName"] for d in description["AttributeDefinitions"]] == ["a", "m", "pk", "sk", "z"]
            assert [g["IndexName"] for g in description["GlobalSecondaryIndexes"]] == ["g-z", "g-a"]
            assert description["GlobalSecondaryIndexes"][0]["Projection"] == {
                "ProjectionType": "INCLUDE", "NonKeyAttributes": ["aa", "mm", "sk", "zz"]}
    finally:
        ddb.delete_table(TableName=table_name)
    many = [f"n{i:02d}" for i in range(21)]
    assert _create_error(ddb, table_name, KeySchema=key_schema("pk"), AttributeDefinitions=defs(pk="S", g="S"),
                         GlobalSecondaryIndexes=[gsi("gix", "g", projection={"ProjectionType": "INCLUDE",
                                                                             "NonKeyAttributes": many})]) == (
        "ValidationException", f"1 validation error detected: Value '[{', '.join(many)}]' at "
        "'globalSecondaryIndexes.1.member.projection.nonKeyAttributes' failed to satisfy constraint: Member must "
        "have length less than or equal to 20")


def _create_error(ddb, name, **kwargs):
    base = {"TableName": name, "BillingMode": "PAY_PER_REQUEST"}
    base.update(kwargs)
    code, message = error_of(ddb.create_table, **base)
    assert name not in ddb.list_tables()["TableNames"]
    return code, message


def gsi(name, *keys, projection=None):
    return {"IndexName": name, "KeySchema": key_schema(*keys), "Projection": projection if projection is not None else {"ProjectionType": "ALL"}}


def test_create_table_rejects_bad_index_definitions(ddb, server, table_name):
    ks, ad = key_schema("p", "c"), defs(p="S", c="S", x="S")
    cases = [
        (dict(KeySchema=ks, AttributeDefinitions=ad, GlobalSecondaryIndexes=[gsi("dup", "x"), gsi("dup", "x")]),
         "One or more parameter values were invalid: Duplicate index name: dup"),
        (dict(KeySchema=ks, AttributeDefinitions=ad, GlobalSecondaryIndexes=[gsi("dup", "x")],
              LocalSecondaryIndexes=[gsi("dup", "p", "x")]),
         "One or more parameter values were invalid: Duplicate index name: dup"),
        (dict(KeySchema=ks, AttributeDefinitions=defs(p="S", c="S"), GlobalSecondaryIndexes=[gsi("gix", "y")]),
         "One or more parameter values were invalid: Some index key attributes are not defined in "
         "AttributeDefinitions. Keys: [y], AttributeDefinitions: [p, c]"),
        (dict(KeySchema=ks, AttributeDefinitions=defs(p="S", c="S", x="S", y="S"),
              GlobalSecondaryIndexes=[gsi("gix", "x")]),
         "One or more parameter values were invalid: Some AttributeDefinitions are not used. "
         "AttributeDefinitions: [p, c, x, y], keys used: [p, c, x]"),
        (dict(KeySchema=ks, AttributeDefinitions=ad, LocalSecondaryIndexes=[gsi("lix", "p")]),
         "One or more parameter values were invalid: Index KeySchema does not have a range key for index: lix"),
        (dict(KeySchema=key_schema("p"), AttributeDefinitions=defs(p="S", x="S"),
              LocalSecondaryIndexes=[gsi("lix", "p", "x")]),
         "One or more parameter values were invalid: Table KeySchema does not have a range key, which is "
         "required when specifying a LocalSecondaryIndex"),
        (dict(KeySchema=ks, AttributeDefinitions=ad, LocalSecondaryIndexes=[gsi("lix", "x", "c")]),
         "One or more parameter values were invalid: Index KeySchema does not have the same leading hash key as "
         "table KeySchema for index: lix. index hash key: x, table hash key: p"),
        (dict(KeySchema=ks, AttributeDefinitions=ad, LocalSecondaryIndexes=[gsi("lix", "p", "p")]),
         "Both the Hash Key and the Range Key element in the KeySchema have the same name"),
        (dict(KeySchema=ks, AttributeDefinitions=ad,
              GlobalSecondaryIndexes=[gsi("gix", "x", projection={"ProjectionType": "ALL",
                                                                  "NonKeyAttributes": ["a"]})]),
         "One or more parameter values were invalid: ProjectionType is ALL, but NonKeyAttributes is specified"),
        (dict(KeySchema=ks, AttributeDefinitions=ad,
              GlobalSecondaryIndexes=[gsi("gix", "x", projection={"ProjectionType": "INCLUDE"})]),
         "One or more parameter values were invalid: ProjectionType is INCLUDE, but NonKeyAttributes is not "
         "specified"),
        (dict(KeySchema=ks, AttributeDefinitions=ad, GlobalSecondaryIndexes=[gsi("gix", "x", projection={})]),
         "One or more parameter values were invalid: Unknown ProjectionType: null"),
        (dict(KeySchema=ks, AttributeDefinitions=ad,
              GlobalSecondaryIndexes=[gsi("gix", "x", projection={"ProjectionType": "INCLUDE",
                                                                  "NonKeyAttributes": ["n", "n"]})]),
         "One or more parameter values were invalid: Duplicate element in NonKeyAttributes: n"),
        (dict(KeySchema=ks, AttributeDefinitions=ad,
              LocalSecondaryIndexes=[gsi(f"l{i}x", "p", "x") for i in range(6)]),
         "One or more parameter values were invalid: Number of LocalSecondaryIndexes exceeds per-table limit of 5"),
        (dict(KeySchema=ks, AttributeDefinitions=ad, GlobalSecondaryIndexes=[gsi(f"g{i:02d}", "x") for i in range(21)]),
         "One or more parameter values were invalid: GlobalSecondaryIndex count exceeds the per-table limit of 20"),
        (dict(KeySchema=ks, AttributeDefinitions=ad, GlobalSecondaryIndexes=[
            gsi(f"g{i}x", "x", projection={"ProjectionType": "INCLUDE",
                                           "NonKeyAttributes": [f"a{j}" for j in range(20)]}) for i in range(6)]),
         "One or more parameter values were invalid: Number of projected attributes in all secondary indexes "
         "exceeds the per-table limit of 100"),
    ]
    for kwargs, message in cases:
        assert _create_error(ddb, table_name, **kwargs) == ("ValidationException", message), message
    code, message = _create_error(ddb, table_name, KeySchema=ks, AttributeDefinitions=ad,
                                  GlobalSecondaryIndexes=[gsi("a@b", "x")])
    assert code == "ValidationException" and "Member must satisfy regular expression pattern" in message
    unchecked = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                             aws_access_key_id="x", aws_secret_access_key="y",
                             config=BotoConfig(parameter_validation=False))
    for bad, text in (("n" * 256, "Member must have length less than or equal to 255"),
                      ("nn", "Member must have length greater than or equal to 3")):
        code, message = _create_error(unchecked, table_name, KeySchema=ks, AttributeDefinitions=ad,
                                      GlobalSecondaryIndexes=[gsi(bad, "x")])
        assert code == "ValidationException" and text in message
    code, message = _create_error(ddb, table_name, BillingMode="PROVISIONED", KeySchema=ks, AttributeDefinitions=ad,
                                  ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
                                  GlobalSecondaryIndexes=[gsi("gix", "x")])
    # live DynamoDB's words at CreateTable (UpdateTable's Create says "must be specified")
    assert message == "One or more parameter values were invalid: ProvisionedThroughput is not specified for index: gix"



def test_create_table_unused_definition_with_indexes(ddb, table_name):
    # PynamoDB's own integration tests define an attribute no key uses; with indexes DynamoDB names the
    # definitions in request order and the keys used in its hash-set order, as in this answer it gave.
    code, message = _create_error(ddb, table_name, KeySchema=key_schema("hash"),
                                  AttributeDefinitions=defs(index="S", hash="S", extra="S"),
                                  GlobalSecondaryIndexes=[gsi("by_index", "index")])
    assert (code, message) == ("ValidationException",
                               "One or more parameter values were invalid: Some AttributeDefinitions are not used. "
                               "AttributeDefinitions: [index, hash, extra], keys used: [index, hash]")
    code, message = _create_error(ddb, table_name, KeySchema=key_schema("ProductId", "CreatedTime"),
                                  AttributeDefinitions=defs(ProductId="S", CreatedTime="S", ProductDescription="S",
                                                            ProductName="S"),
                                  LocalSecondaryIndexes=[gsi("by_name", "ProductId", "ProductName")])
    assert message == ("One or more parameter values were invalid: Some AttributeDefinitions are not used. "
                       "AttributeDefinitions: [ProductId, CreatedTime, ProductDescription, ProductName], "
                       "keys used: [CreatedTime, ProductName, ProductId]")

def test_numeric_and_binary_index_keys(ddb, table_name):
    ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema("p"),
                     AttributeDefinitions=defs(p="S", n="N", b="B"),
                     GlobalSecondaryIndexes=[gsi("by_n_b", "n", "b")])
    try:
        items = []
        for i in range(20):
            item = {"p": S(f"p{i}"), "n": N(i % 3 - 1), "b": {"B": bytes([i * 13 % 256, 0, 255 - i])}}
            ddb.put_item(TableName=table_name, Item=item)
            items.append(item)
        for n in (-1, 0, 1):
            want = sorted((i for i in items if i["n"] == N(n)), key=lambda i: i["b"]["B"])
            eventually(lambda: full_query(ddb, TableName=table_name, IndexName="by_n_b",
                                          KeyConditionExpression="n = :n", ExpressionAttributeValues={":n": N(n)}),
                       want)
            got = full_query(ddb, TableName=table_name, IndexName="by_n_b", KeyConditionExpression="n = :n",
                             ExpressionAttributeValues={":n": N(n)}, Limit=2)
            assert [i["b"]["B"] for i in got] == [i["b"]["B"] for i in want]
    finally:
        ddb.delete_table(TableName=table_name)


# ------------------------------------------------------------------ durability

def test_gsi_updates_survive_shard_kills(tmp_path):
    """Writes go on while shards are SIGKILLed; after restarts the GSI converges to the base table."""
    server = ServerProcess(tmp_path / "data", smp=2).start()
    try:
        client = server.client(retries=20)
        name = "durable_gsi"
        client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema("p"),
                            AttributeDefinitions=defs(p="S", g="S"), GlobalSecondaryIndexes=[gsi("by_g", "g")])
        stop = threading.Event()
        errors = []

        def writer(seed):
            c = server.client(retries=30)
            rng = random.Random(seed)
            while not stop.is_set():
                try:
                    c.put_item(TableName=name, Item={"p": S(f"k{rng.randrange(300)}"),
                                                    "g": S(f"g{rng.randrange(12)}"), "s": N(seed)})
                except ClientError as exc:
                    if exc.response["Error"]["Code"] not in ("ServiceUnavailableException", "InternalServerError"):
                        errors.append(exc)
                except Exception:   # a connection reset while the shard died: retried by the loop
                    time.sleep(0.01)

        threads = [threading.Thread(target=writer, args=(s,)) for s in range(3)]
        for t in threads:
            t.start()
        for _ in range(2):
            time.sleep(0.7)
            victim = random.choice(server.shard_pids())
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 20
            while not (server.all_shards_up() and victim not in server.shard_pids()):
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.05)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        assert not errors
        base = full_scan(client, TableName=name, ConsistentRead=True)
        assert base
        eventually(lambda: full_scan(client, TableName=name, IndexName="by_g"), base, timeout=20)
        # And the whole server restarting keeps the index.
        assert server.stop() == 0
        server = ServerProcess(tmp_path / "data", smp=2, port=server.port).start()
        client = server.client()
        assert canon(full_scan(client, TableName=name, IndexName="by_g")) == canon(base)
    finally:
        server.stop()


def _pid_of_shard(server, shard):
    """The current pid of ``shard``, from the server's own log lines (pinning or restart)."""
    found = None
    for line in server.log().splitlines():
        match = (re.search(rf"shard {shard}: \[shard\] pinned to cpu \d+ \(pid (\d+)\)", line)
                 or re.search(rf"shard {shard} is back \(pid (\d+)\)", line))
        if match:
            found = int(match.group(1))
    assert found in server.shard_pids(), server.log()
    return found


def _wait_restarted(server, victim):
    deadline = time.monotonic() + 20
    while not (server.all_shards_up() and victim not in server.shard_pids()):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.02)


def test_unacknowledged_gsi_updates_are_resent_after_the_sender_restarts(tmp_path):
    """The GSI owner is down, so updates wait in the base owner's outbox; then the base owner is killed too."""
    from shardserver.shard.routing import shard_of_key
    server = ServerProcess(tmp_path / "data", smp=2).start()
    try:
        client = server.client(retries=30)
        name = "resend_gsi"
        client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema("p"),
                            AttributeDefinitions=defs(p="S", g="S"), GlobalSecondaryIndexes=[gsi("by_g", "g")])
        bases = [f"b{i}" for i in range(400) if shard_of_key(S(f"b{i}"), 2)[0] == 0][:40]
        groups = [f"g{i}" for i in range(100) if shard_of_key(S(f"g{i}"), 2)[0] == 1][:5]
        client.put_item(TableName=name, Item={"p": S("warm"), "g": S(groups[0])})
        items = [{"p": S(b), "g": S(groups[i % len(groups)])} for i, b in enumerate(bases)]
        # The window (the GSI owner forked again but not yet serving) is short: a loaded machine
        # can miss it a few times, so there are several tries; the loop stops at the first hit.
        for attempt in range(8):
            # Kill the GSI owner, write while it is away, then kill the base owner before it comes back.
            pids = [_pid_of_shard(server, 0), _pid_of_shard(server, 1)]
            os.kill(pids[1], signal.SIGKILL)
            for item in items[attempt % 4::4]:
                client.put_item(TableName=name, Item=item)
            # Once the replacement is forked the survivors have acknowledged the restart; it needs a
            # moment more to open its storage, during which the updates still wait in the outbox.
            deadline = time.monotonic() + 10
            while len(server.shard_pids()) < 2 or pids[1] in server.shard_pids():
                assert time.monotonic() < deadline
                time.sleep(0.005)
            receiver_back = server.all_shards_up()
            os.kill(pids[0], signal.SIGKILL)
            _wait_restarted(server, pids[0])
            _wait_restarted(server, pids[1])
            if not receiver_back and "re-sending" in server.log():
                break
        for item in items:
            client.put_item(TableName=name, Item=item)
        base = full_scan(client, TableName=name, ConsistentRead=True)
        assert len(base) == len(items) + 1
        eventually(lambda: full_scan(client, TableName=name, IndexName="by_g"), base, timeout=20)
        assert "re-sending" in server.log()
    finally:
        server.stop()


def test_writes_are_charged_for_the_indexes_they_touch(ddb, table_name):
    ddb.create_table(
        TableName=table_name, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema("pk", "sk"),
        AttributeDefinitions=defs(pk="S", sk="S", g="S", l="S"),
        GlobalSecondaryIndexes=[{"IndexName": "by_g", "KeySchema": key_schema("g"),
                                 "Projection": {"ProjectionType": "KEYS_ONLY"}}],
        LocalSecondaryIndexes=[{"IndexName": "by_l", "KeySchema": key_schema("pk", "l"),
                                "Projection": {"ProjectionType": "ALL"}}])
    try:
        def spent(reply):
            used = reply["ConsumedCapacity"]
            return (used["CapacityUnits"], used["Table"]["CapacityUnits"],
                    {n: u["CapacityUnits"] for n, u in used.get("GlobalSecondaryIndexes", {}).items()},
                    {n: u["CapacityUnits"] for n, u in used.get("LocalSecondaryIndexes", {}).items()})
        key = {"pk": S("p"), "sk": S("s")}
        # a new item in both indexes: one write each
        reply = ddb.put_item(TableName=table_name, Item=dict(key, g=S("g1"), l=S("l1"), x=S("x")),
                             ReturnConsumedCapacity="INDEXES")
        assert spent(reply) == (3.0, 1.0, {"by_g": 1.0}, {"by_l": 1.0})
        total = ddb.put_item(TableName=table_name, Item=dict(key, g=S("g1"), l=S("l1"), x=S("y")),
                             ReturnConsumedCapacity="TOTAL")["ConsumedCapacity"]
        # x is not projected into the KEYS_ONLY GSI: only the table and the ALL LSI change
        assert total == {"TableName": table_name, "CapacityUnits": 2.0}
        # a new GSI key: delete and put in the GSI; a 2.5 KB attribute: 3 units in the table and the LSI
        reply = ddb.update_item(TableName=table_name, Key=key, UpdateExpression="SET g = :g, big = :b",
                                ExpressionAttributeValues={":g": S("g2"), ":b": S("b" * 2500)},
                                ReturnConsumedCapacity="INDEXES")
        assert spent(reply) == (8.0, 3.0, {"by_g": 2.0}, {"by_l": 3.0})
        # out of both indexes
        reply = ddb.delete_item(TableName=table_name, Key=key, ReturnConsumedCapacity="INDEXES")
        assert spent(reply) == (7.0, 3.0, {"by_g": 1.0}, {"by_l": 3.0})
        # a batch over both shards, summed per index
        reply = ddb.batch_write_item(RequestItems={table_name: [
            {"PutRequest": {"Item": {"pk": S(f"b{i}"), "sk": S("s"), "g": S("g")}}} for i in range(6)]},
            ReturnConsumedCapacity="INDEXES")
        (used,) = reply["ConsumedCapacity"]
        assert used["CapacityUnits"] == 12.0 and used["Table"] == {"CapacityUnits": 6.0}
        assert used["GlobalSecondaryIndexes"] == {"by_g": {"CapacityUnits": 6.0}}
        assert "LocalSecondaryIndexes" not in used
    finally:
        ddb.delete_table(TableName=table_name)


def test_index_reads_are_charged_to_the_index(ddb, gsi_table, lsi_table):
    # Query and Scan with IndexName read the index alone: INDEXES reports the units under the index and
    # none under the table (as the AWS CLI's query example on a local index shows).
    for table, index, field, condition, values in (
            (gsi_table[0], "g_all", "GlobalSecondaryIndexes", "g = :v", {":v": S("g0")}),
            (lsi_table[0], "by_n_all", "LocalSecondaryIndexes", "p = :v", {":v": S("p0")})):
        for call, extra in ((ddb.query, {"KeyConditionExpression": condition, "ExpressionAttributeValues": values}),
                            (ddb.scan, {})):
            used = call(TableName=table, IndexName=index, ReturnConsumedCapacity="INDEXES", **extra)["ConsumedCapacity"]
            assert used["Table"] == {"CapacityUnits": 0.0}, (call, index)
            assert used[field] == {index: {"CapacityUnits": used["CapacityUnits"]}} and used["CapacityUnits"] > 0
            total = call(TableName=table, IndexName=index, ReturnConsumedCapacity="TOTAL", **extra)["ConsumedCapacity"]
            assert total == {"TableName": table, "CapacityUnits": used["CapacityUnits"]}


def test_lsi_query_fetches_are_charged_to_the_table(ddb, lsi_table):
    # A local index query that needs attributes the index does not hold fetches each whole item from the
    # table, and DynamoDB charges the table a read for every item fetched (1 KB items: half a unit each
    # when eventually consistent); attributes the index holds cost the index alone.
    name, _ = lsi_table
    base = dict(TableName=name, IndexName="by_s_keys", KeyConditionExpression="p = :p",
                ExpressionAttributeValues={":p": S("p0")}, ReturnConsumedCapacity="INDEXES")
    for extra, fetches in (({"Select": "ALL_ATTRIBUTES"}, True), ({"ProjectionExpression": "z"}, True),
                           ({"ProjectionExpression": "s, c"}, False), ({}, False)):
        reply = ddb.query(**base, **extra)
        used = reply["ConsumedCapacity"]
        index_units = used["LocalSecondaryIndexes"]["by_s_keys"]["CapacityUnits"]
        table_units = used["Table"]["CapacityUnits"]
        assert table_units == (0.5 * reply["Count"] if fetches else 0.0), extra
        assert used["CapacityUnits"] == index_units + table_units and reply["Count"] > 0
    consistent = ddb.query(**base, Select="ALL_ATTRIBUTES", ConsistentRead=True)
    assert consistent["ConsumedCapacity"]["Table"]["CapacityUnits"] == 1.0 * consistent["Count"]


def test_item_collection_metrics_on_a_table_with_an_lsi(ddb, table_name):
    ddb.create_table(
        TableName=table_name, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema("pk", "sk"),
        AttributeDefinitions=defs(pk="S", sk="S", l="S"),
        LocalSecondaryIndexes=[{"IndexName": "by_l", "KeySchema": key_schema("pk", "l"),
                                "Projection": {"ProjectionType": "ALL"}}])
    plain = table_name + "_plain"
    ddb.create_table(TableName=plain, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema("pk", "sk"),
                     AttributeDefinitions=defs(pk="S", sk="S"))
    try:
        expected = {"ItemCollectionKey": {"pk": S("p")}, "SizeEstimateRangeGB": [0.0, 1.0]}
        reply = ddb.put_item(TableName=table_name, Item={"pk": S("p"), "sk": S("1"), "l": S("x")},
                             ReturnItemCollectionMetrics="SIZE")
        assert reply["ItemCollectionMetrics"] == expected
        reply = ddb.update_item(TableName=table_name, Key={"pk": S("p"), "sk": S("1")},
                                UpdateExpression="SET a = :a", ExpressionAttributeValues={":a": N(1)},
                                ReturnItemCollectionMetrics="SIZE")
        assert reply["ItemCollectionMetrics"] == expected
        reply = ddb.delete_item(TableName=table_name, Key={"pk": S("p"), "sk": S("1")},
                                ReturnItemCollectionMetrics="SIZE")
        assert reply["ItemCollectionMetrics"] == expected
        assert "ItemCollectionMetrics" not in ddb.put_item(TableName=table_name, Item={"pk": S("p"), "sk": S("2")})
        # a table without an LSI has no item collections to report
        assert "ItemCollectionMetrics" not in ddb.put_item(TableName=plain, Item={"pk": S("p"), "sk": S("1")},
                                                           ReturnItemCollectionMetrics="SIZE")
        reply = ddb.batch_write_item(RequestItems={
            table_name: [{"PutRequest": {"Item": {"pk": S(f"b{i % 3}"), "sk": S(str(i))}}} for i in range(9)],
            plain: [{"PutRequest": {"Item": {"pk": S("b"), "sk": S("1")}}}]}, ReturnItemCollectionMetrics="SIZE")
        collections = reply["ItemCollectionMetrics"]
        assert list(collections) == [table_name]
        assert sorted(e["ItemCollectionKey"]["pk"]["S"] for e in collections[table_name]) == ["b0", "b1", "b2"]
        assert all(e["SizeEstimateRangeGB"] == [0.0, 1.0] for e in collections[table_name])
        with pytest.raises(ClientError) as e:
            ddb.put_item(TableName=table_name, Item={"pk": S("p"), "sk": S("3")}, ReturnItemCollectionMetrics="ALL")
        assert "returnItemCollectionMetrics" in e.value.response["Error"]["Message"]
    finally:
        ddb.delete_table(TableName=table_name)
        ddb.delete_table(TableName=plain)
