"""Scan through boto3 against the real 2-shard server: paging, parallel segments, ScanFilter with
every ComparisonOperator, Select and projections, 1 MB pages, scans racing writes, bad input."""

import threading
from collections import Counter

import pytest
from botocore.exceptions import ClientError

from conftest import create_table
from test_query import error_of, raw_call

from shardserver.shard.values import TOKEN_BIAS, token_of

N_ITEMS = 300


def full_scan(ddb, **kwargs):
    items, pages = [], 0
    while True:
        page = ddb.scan(**kwargs)
        items += page["Items"]
        pages += 1
        if "LastEvaluatedKey" not in page:
            return items, pages
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def key_of(item):
    return (item["pk"]["S"], item["sk"]["N"])


@pytest.fixture(scope="module")
def filled(ddb):
    """A table of N_ITEMS items in 100 partitions with assorted attributes (read-only for the tests)."""
    name = "scan_filled"
    create_table(ddb, name, range_key=("sk", "N"))
    items = []
    for i in range(N_ITEMS):
        item = {"pk": {"S": f"p{i % 100}"}, "sk": {"N": str(i // 100)}, "n": {"N": str(i)},
                "s": {"S": f"str{i % 17}"}, "tags": {"SS": sorted({f"t{i % 3}", f"t{i % 5}"})}}
        if i % 4 == 0:
            item["maybe"] = {"NULL": True}
        if i % 7 == 0:
            item["l"] = {"L": [{"S": "x"}, {"N": str(i)}]}
        items.append(item)
    for start in range(0, len(items), 25):
        assert ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": i}} for i in items[start:start + 25]]}
                                    )["UnprocessedItems"] == {}
    yield name, items
    ddb.delete_table(TableName=name)


def test_full_scan_with_every_limit_returns_each_item_once(ddb, filled):
    name, items = filled
    want = sorted(key_of(i) for i in items)
    for limit in (None, 1, 7, 100, 1000):
        kwargs = {"Limit": limit} if limit else {}
        got, pages = full_scan(ddb, TableName=name, **kwargs)
        assert sorted(key_of(i) for i in got) == want, limit
        if limit:
            assert pages >= N_ITEMS // limit
    got, _ = full_scan(ddb, TableName=name)
    by_key = {key_of(i): i for i in items}
    assert all(by_key[key_of(g)] == g for g in got)
    # inside a partition, items come in sort-key order
    order = [key_of(i) for i in got]
    for p in {k[0] for k in order}:
        sks = [int(k[1]) for k in order if k[0] == p]
        assert sks == sorted(sks)
    pages = list(ddb.get_paginator("scan").paginate(TableName=name, PaginationConfig={"PageSize": 64}))
    assert sum(len(p["Items"]) for p in pages) == N_ITEMS


@pytest.mark.parametrize("total", [1, 2, 3, 17])
def test_parallel_scan_segments_are_disjoint_and_cover_the_table(ddb, filled, total):
    name, items = filled
    seen = Counter()
    for segment in range(total):
        got, _ = full_scan(ddb, TableName=name, Segment=segment, TotalSegments=total, Limit=40)
        for item in got:
            seen[key_of(item)] += 1
            token = token_of(item["pk"]) + TOKEN_BIAS
            assert token * total >> 64 == segment
    assert seen == Counter(key_of(i) for i in items)


def test_a_million_segments(ddb, filled):
    name, items = filled
    total = 1_000_000
    for item in items[:3]:
        segment = (token_of(item["pk"]) + TOKEN_BIAS) * total >> 64
        got = ddb.scan(TableName=name, Segment=segment, TotalSegments=total)["Items"]
        assert item in got
        assert all(i["pk"] == item["pk"] for i in got)
        neighbour = (segment + 1) % total
        assert item not in ddb.scan(TableName=name, Segment=neighbour, TotalSegments=total)["Items"]


def _expected(items, name, op, args):
    def matches(item):
        value = item.get(name)
        if op == "NULL":
            return value is None
        if op == "NOT_NULL":
            return value is not None
        if op == "NE":
            return value != args[0]
        if value is None:
            return False
        kind, raw = next(iter(value.items()))
        arg_kind = next(iter(args[0])) if args else None
        if op == "CONTAINS" or op == "NOT_CONTAINS":
            inside = (kind == "SS" and args[0]["S"] in raw) or (kind == "S" and args[0]["S"] in raw) or \
                (kind == "L" and args[0] in raw)
            return inside if op == "CONTAINS" else not inside
        if op == "IN":
            return value in args
        if kind != arg_kind:
            return False
        convert = int if kind == "N" else str
        v = convert(raw)
        a = [convert(next(iter(x.values()))) for x in args]
        return {"EQ": lambda: v == a[0], "LE": lambda: v <= a[0], "LT": lambda: v < a[0],
                "GE": lambda: v >= a[0], "GT": lambda: v > a[0], "BETWEEN": lambda: a[0] <= v <= a[1],
                "BEGINS_WITH": lambda: str(v).startswith(a[0])}[op]()
    return sorted(key_of(i) for i in items if matches(i))


@pytest.mark.parametrize("attribute, op, args", [
    ("n", "EQ", [{"N": "42"}]), ("n", "NE", [{"N": "42"}]), ("n", "LE", [{"N": "10"}]),
    ("n", "LT", [{"N": "10"}]), ("n", "GE", [{"N": "290"}]), ("n", "GT", [{"N": "290"}]),
    ("maybe", "NOT_NULL", []), ("maybe", "NULL", []), ("tags", "CONTAINS", [{"S": "t4"}]),
    ("tags", "NOT_CONTAINS", [{"S": "t0"}]), ("s", "BEGINS_WITH", [{"S": "str1"}]),
    ("n", "IN", [{"N": "1"}, {"N": "5"}, {"N": "299"}, {"N": "1000"}]),
    ("n", "BETWEEN", [{"N": "100"}, {"N": "120"}]), ("s", "CONTAINS", [{"S": "r1"}]),
    ("l", "CONTAINS", [{"S": "x"}]), ("s", "EQ", [{"N": "1"}]),
])
def test_scan_filter_every_comparison_operator(ddb, filled, attribute, op, args):
    name, items = filled
    condition = {"ComparisonOperator": op}
    if args:
        condition["AttributeValueList"] = args
    got, _ = full_scan(ddb, TableName=name, ScanFilter={attribute: condition}, Limit=50)
    want = _expected(items, attribute, op, args)
    assert sorted(key_of(i) for i in got) == want
    page = ddb.scan(TableName=name, ScanFilter={attribute: condition}, Select="COUNT")
    assert page["Count"] == len(want) and page["ScannedCount"] == N_ITEMS


def test_scan_filter_conditional_operator_and_filter_expression(ddb, filled):
    name, items = filled
    either = {"n": {"ComparisonOperator": "LT", "AttributeValueList": [{"N": "5"}]},
              "s": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "str3"}]}}
    got, _ = full_scan(ddb, TableName=name, ScanFilter=either, ConditionalOperator="OR")
    want = sorted(key_of(i) for i in items if int(i["n"]["N"]) < 5 or i["s"]["S"] == "str3")
    assert sorted(key_of(i) for i in got) == want
    got, _ = full_scan(ddb, TableName=name, FilterExpression="n < :five OR s = :s",
                       ExpressionAttributeValues={":five": {"N": "5"}, ":s": {"S": "str3"}}, Limit=33)
    assert sorted(key_of(i) for i in got) == want


def test_count_scanned_count_select_and_projection(ddb, filled):
    name, items = filled
    page = ddb.scan(TableName=name, Limit=20, FilterExpression="attribute_exists(maybe)")
    assert page["ScannedCount"] == 20 and page["Count"] == len(page["Items"]) < 20
    assert "LastEvaluatedKey" in page
    counted = ddb.scan(TableName=name, Select="COUNT")
    assert counted["Count"] == N_ITEMS and "Items" not in counted
    got, _ = full_scan(ddb, TableName=name, ProjectionExpression="n, l[1]", Limit=77)
    assert sorted(int(i["n"]["N"]) for i in got) == list(range(N_ITEMS))
    assert all(set(i) <= {"n", "l"} for i in got)
    assert {"n": {"N": "7"}, "l": {"L": [{"N": "7"}]}} in got
    got, _ = full_scan(ddb, TableName=name, AttributesToGet=["s"], Select="SPECIFIC_ATTRIBUTES")
    assert Counter(i["s"]["S"] for i in got) == Counter(i["s"]["S"] for i in items)
    used = ddb.scan(TableName=name, ReturnConsumedCapacity="TOTAL", ConsistentRead=True)["ConsumedCapacity"]
    assert used["TableName"] == name and used["CapacityUnits"] >= 1
    for kwargs, message in [
            (dict(Select="SPECIFIC_ATTRIBUTES"),
             "Must specify the AttributesToGet or ProjectionExpression when choosing to get SPECIFIC_ATTRIBUTES"),
            (dict(Select="COUNT", AttributesToGet=["n"]),
             "Cannot specify the AttributesToGet when choosing to get only the Count"),
            (dict(Select="ALL_PROJECTED_ATTRIBUTES"),
             "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName")]:
        with pytest.raises(ClientError) as e:
            ddb.scan(TableName=name, **kwargs)
        assert error_of(e) == ("ValidationException", message)


def test_one_megabyte_pages(ddb, hash_table):
    blob = "y" * 100_000
    for i in range(25):
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": f"big{i}"}, "b": {"S": blob}})
    first = ddb.scan(TableName=hash_table)
    assert 9 <= first["Count"] <= 12 and "LastEvaluatedKey" in first
    got, pages = full_scan(ddb, TableName=hash_table)
    assert sorted(i["pk"]["S"] for i in got) == sorted(f"big{i}" for i in range(25))
    assert pages == 3


def test_scan_paged_while_writes_go_on_returns_each_stable_item_once(server, ddb, table_name):
    create_table(ddb, table_name, hash_key=("pk", "N"))
    try:
        stable = 400
        for start in range(0, stable, 25):
            ddb.batch_write_item(RequestItems={table_name: [
                {"PutRequest": {"Item": {"pk": {"N": str(i)}, "v": {"N": "0"}}}} for i in range(start, start + 25)]})
        stop = threading.Event()
        errors = []

        def churn():
            writer = server.client()
            n = 0
            while not stop.is_set():
                try:
                    key = {"N": str(100_000 + n % 50)}
                    writer.put_item(TableName=table_name, Item={"pk": key, "v": {"N": str(n)}})
                    writer.update_item(TableName=table_name, Key={"pk": {"N": str(n % stable)}},
                                       UpdateExpression="SET v = :n", ExpressionAttributeValues={":n": {"N": str(n)}})
                    if n % 3 == 0:
                        writer.delete_item(TableName=table_name, Key={"pk": key})
                except Exception as exc:        # reported below
                    errors.append(exc)
                n += 1

        thread = threading.Thread(target=churn)
        thread.start()
        try:
            got, pages = full_scan(ddb, TableName=table_name, Limit=9)
        finally:
            stop.set()
            thread.join()
        assert not errors
        counts = Counter(i["pk"]["N"] for i in got)
        assert all(c == 1 for c in counts.values())
        assert {str(i) for i in range(stable)} <= set(counts)
        assert pages > stable // 9
    finally:
        ddb.delete_table(TableName=table_name)


def test_bad_input(server, ddb, filled):
    name, _ = filled
    for body, message in [
            ({"Limit": 0}, "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: "
                           "Member must have value greater than or equal to 1"),
            ({"Segment": 0, "TotalSegments": 1_000_001},
             "1 validation error detected: Value '1000001' at 'totalSegments' failed to satisfy constraint: "
             "Member must have value less than or equal to 1000000"),
            ({"Segment": 5, "TotalSegments": 5}, "The Segment parameter is zero-based and must be less than "
                                                 "parameter TotalSegments: Segment: 5 is not less than TotalSegments: 5"),
            ({"Segment": 1}, "The TotalSegments parameter is required but was not present in the request when "
                             "Segment parameter is present"),
            ({"TotalSegments": 2}, "The Segment parameter is required but was not present in the request when "
                                   "parameter TotalSegments is present")]:
        status, reply = raw_call(server, "Scan", {"TableName": name, **body})
        assert status == 400 and reply["__type"].endswith("ValidationException")
        assert reply["message"] == message
    # a start key must lie inside the segment
    pk = {"S": "p1"}
    segment = (token_of(pk) + TOKEN_BIAS) * 4 >> 64
    with pytest.raises(ClientError) as e:
        ddb.scan(TableName=name, Segment=(segment + 1) % 4, TotalSegments=4,
                 ExclusiveStartKey={"pk": pk, "sk": {"N": "0"}})
    assert error_of(e) == ("ValidationException", "The provided Exclusive start key does not map to the provided "
                                                  "segment and total segments")
    ddb.scan(TableName=name, Segment=segment, TotalSegments=4, ExclusiveStartKey={"pk": pk, "sk": {"N": "0"}})
    for start, message in [({"pk": pk}, "The provided starting key is invalid: The provided key element does not "
                                        "match the schema"),
                           ({"pk": pk, "sk": {"S": "0"}}, "The provided key element does not match the schema")]:
        with pytest.raises(ClientError) as e:
            ddb.scan(TableName=name, ExclusiveStartKey=start)
        assert error_of(e) == ("ValidationException", message)
    with pytest.raises(ClientError) as e:
        ddb.scan(TableName="no_such_table")
    assert error_of(e)[0] == "ResourceNotFoundException"


def test_empty_table(ddb, hash_table):
    page = ddb.scan(TableName=hash_table)
    assert page["Items"] == [] and page["Count"] == 0 and "LastEvaluatedKey" not in page
