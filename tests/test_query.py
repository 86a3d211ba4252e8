"""Query through boto3 against the real 2-shard server: key conditions on every key type,
paging in both directions, filters, Select, projections, page sizes and DynamoDB's errors."""

import time
import urllib.error
import urllib.request
from decimal import Decimal

import orjson
import pytest
from botocore.exceptions import ClientError

from conftest import create_table
from serverutil import ServerProcess

SORT_VALUES = {
    "S": ["", "a", "a\x00", "ab", "abc", "b", "ba", "z", "é", "éa", "\U0001f600", "0", "10", "9"],
    "N": ["-1e10", "-12.5", "-12", "-1", "-0.001", "0", "0.001", "1", "1.5", "2", "10", "12.5", "100", "1e20"],
    "B": [b"\x00", b"\x00\x00", b"\x00\x01", b"\x01", b"a", b"ab", b"abc", b"b", b"\x7f", b"\x80", b"\xff",
          b"\xff\x00", b"\xff\xff", b"\xfe"],
}
PARTITIONS = {"S": ["p", "q", "pp"], "N": ["1", "-7.5", "1e5"], "B": [b"p", b"\x00", b"\xff\x01"]}


def error_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def raw_call(server, op: str, body: dict):
    """(HTTP status, decoded body) of a request boto3 would refuse to send."""
    request = urllib.request.Request(server.endpoint, data=orjson.dumps(body), method="POST", headers={
        "X-Amz-Target": f"DynamoDB_20120810.{op}", "Content-Type": "application/x-amz-json-1.0"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def typed(kind: str, value):
    if kind == "N":
        return {"N": str(value)}
    return {kind: value}


def order_key(kind: str, value):
    if kind == "N":
        return Decimal(value)
    if kind == "S":
        return value.encode()
    return value


def full_query(ddb, **kwargs):
    items, pages = [], 0
    while True:
        page = ddb.query(**kwargs)
        items += page["Items"]
        pages += 1
        if "LastEvaluatedKey" not in page:
            return items, pages
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _condition(kind: str, op: str, sorted_values: list):
    """(expression, values, python predicate) for one sort-key operator."""
    mid, low, high = sorted_values[6], sorted_values[3], sorted_values[9]
    k = lambda v: order_key(kind, v)   # noqa: E731
    if op == "BETWEEN":
        return "pk = :p AND sk BETWEEN :a AND :b", {":a": typed(kind, low), ":b": typed(kind, high)}, \
            lambda v: k(low) <= k(v) <= k(high)
    if op == "begins_with":
        prefix = "a" if kind == "S" else b"\xff"
        return "pk = :p AND begins_with(sk, :a)", {":a": typed(kind, prefix)}, \
            lambda v: (v.encode() if kind == "S" else v).startswith(prefix.encode() if kind == "S" else prefix)
    tests = {"=": lambda v: k(v) == k(mid), "<": lambda v: k(v) < k(mid), "<=": lambda v: k(v) <= k(mid),
             ">": lambda v: k(v) > k(mid), ">=": lambda v: k(v) >= k(mid)}
    return f"pk = :p AND sk {op} :a", {":a": typed(kind, mid)}, tests[op]


@pytest.mark.parametrize("hash_type", ["S", "N", "B"])
@pytest.mark.parametrize("sort_type", ["S", "N", "B"])
def test_every_key_type_orders_filters_and_pages(ddb, table_name, hash_type, sort_type):
    create_table(ddb, table_name, hash_key=("pk", hash_type), range_key=("sk", sort_type))
    try:
        sort_values = [v for v in SORT_VALUES[sort_type] if v != ""]
        writes = []
        for p in PARTITIONS[hash_type]:
            for i, v in enumerate(sort_values):
                writes.append({"PutRequest": {"Item": {"pk": typed(hash_type, p), "sk": typed(sort_type, v),
                                                       "i": {"N": str(i)}}}})
        for start in range(0, len(writes), 25):
            assert ddb.batch_write_item(RequestItems={table_name: writes[start:start + 25]})["UnprocessedItems"] == {}
        expected = sorted(sort_values, key=lambda v: order_key(sort_type, v))
        pk = typed(hash_type, PARTITIONS[hash_type][0])
        ops = ["=", "<", "<=", ">", ">=", "BETWEEN"] + (["begins_with"] if sort_type != "N" else [])
        for op in ops:
            text, values, predicate = _condition(sort_type, op, expected)
            wanted = [v for v in expected if predicate(v)]
            assert wanted, op
            for forward in (True, False):
                for limit in (None, 1, 4):
                    kwargs = dict(TableName=table_name, KeyConditionExpression=text, ScanIndexForward=forward,
                                  ExpressionAttributeValues={":p": pk, **values}, ConsistentRead=True)
                    if limit:
                        kwargs["Limit"] = limit
                    items, pages = full_query(ddb, **kwargs)
                    got = [canon(sort_type, i["sk"][sort_type]) for i in items]
                    want = [canon(sort_type, v) for v in wanted]
                    assert got == (want if forward else want[::-1]), (op, forward, limit)
                    assert {canon(hash_type, i["pk"][hash_type]) for i in items} == {canon(hash_type, pk[hash_type])}
                    if limit:
                        assert pages >= len(wanted) // limit
    finally:
        ddb.delete_table(TableName=table_name)


def canon(kind, value):
    return Decimal(value) if kind == "N" else value


def test_legacy_key_conditions_match_expressions(ddb, range_table):
    for i in range(20):
        ddb.put_item(TableName=range_table, Item={"pk": {"S": "k"}, "sk": {"S": f"{i:02d}"}, "v": {"N": str(i)}})
    for op, args, want in [("EQ", ["05"], ["05"]), ("LT", ["03"], ["00", "01", "02"]),
                           ("LE", ["01"], ["00", "01"]), ("GT", ["17"], ["18", "19"]),
                           ("GE", ["18"], ["18", "19"]), ("BETWEEN", ["04", "06"], ["04", "05", "06"]),
                           ("BEGINS_WITH", ["1"], [f"1{i}" for i in range(10)])]:
        items, _ = full_query(ddb, TableName=range_table, Limit=2, KeyConditions={
            "pk": {"AttributeValueList": [{"S": "k"}], "ComparisonOperator": "EQ"},
            "sk": {"AttributeValueList": [{"S": a} for a in args], "ComparisonOperator": op}})
        assert [i["sk"]["S"] for i in items] == want, op


def test_filter_applies_after_limit_count_and_scanned_count(ddb, range_table):
    for i in range(10):
        ddb.put_item(TableName=range_table, Item={"pk": {"S": "f"}, "sk": {"S": f"{i}"}, "v": {"N": str(i)},
                                                  **({"even": {"BOOL": True}} if i % 2 == 0 else {})})
    page = ddb.query(TableName=range_table, KeyConditionExpression="pk = :p", Limit=4,
                     FilterExpression="attribute_exists(even) AND v > :one",
                     ExpressionAttributeValues={":p": {"S": "f"}, ":one": {"N": "1"}})
    assert page["ScannedCount"] == 4 and page["Count"] == 1
    assert [i["sk"]["S"] for i in page["Items"]] == ["2"]
    assert page["LastEvaluatedKey"] == {"pk": {"S": "f"}, "sk": {"S": "3"}}
    items, _ = full_query(ddb, TableName=range_table, KeyConditionExpression="pk = :p", Limit=3,
                          FilterExpression="attribute_exists(even)", ExpressionAttributeValues={":p": {"S": "f"}})
    assert [i["sk"]["S"] for i in items] == ["0", "2", "4", "6", "8"]
    legacy = ddb.query(TableName=range_table, KeyConditions={
        "pk": {"AttributeValueList": [{"S": "f"}], "ComparisonOperator": "EQ"}},
        QueryFilter={"v": {"AttributeValueList": [{"N": "3"}, {"N": "6"}], "ComparisonOperator": "BETWEEN"},
                     "even": {"ComparisonOperator": "NOT_NULL"}})
    assert [i["sk"]["S"] for i in legacy["Items"]] == ["4", "6"]
    assert legacy["ScannedCount"] == 10
    counted = ddb.query(TableName=range_table, KeyConditionExpression="pk = :p", Select="COUNT",
                        FilterExpression="attribute_exists(even)", ExpressionAttributeValues={":p": {"S": "f"}})
    assert counted["Count"] == 5 and counted["ScannedCount"] == 10 and "Items" not in counted


def test_filters_on_key_attributes_are_rejected(ddb, range_table):
    for expr, names in [("sk > :a", None), ("#k = :a", {"#k": "pk"}), ("v = :a OR size(sk) > :a", None)]:
        kwargs = {"ExpressionAttributeNames": names} if names else {}
        with pytest.raises(ClientError) as e:
            ddb.query(TableName=range_table, KeyConditionExpression="pk = :p", FilterExpression=expr,
                      ExpressionAttributeValues={":p": {"S": "x"}, ":a": {"S": "1"}}, **kwargs)
        key = "pk" if names else "sk"
        assert error_of(e) == ("ValidationException", "Filter Expression can only contain non-primary key "
                                                      f"attributes: Primary key attribute: {key}")
    with pytest.raises(ClientError) as e:
        ddb.query(TableName=range_table, KeyConditions={"pk": {"AttributeValueList": [{"S": "x"}],
                                                               "ComparisonOperator": "EQ"}},
                  QueryFilter={"sk": {"AttributeValueList": [{"S": "x"}], "ComparisonOperator": "EQ"}})
    assert error_of(e) == ("ValidationException", "QueryFilter can only contain non-primary key attributes: "
                                                  "Primary key attribute: sk")


def test_select_projection_consistency_and_capacity(ddb, range_table):
    for i in range(5):
        ddb.put_item(TableName=range_table, Item={"pk": {"S": "s"}, "sk": {"S": str(i)}, "a": {"N": str(i)},
                                                  "m": {"M": {"x": {"S": "deep"}, "y": {"N": "1"}}}})
    base = dict(TableName=range_table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "s"}})
    page = ddb.query(**base, ProjectionExpression="a, m.x", ConsistentRead=True)
    assert page["Items"][0] == {"a": {"N": "0"}, "m": {"M": {"x": {"S": "deep"}}}}
    page = ddb.query(**base, Select="SPECIFIC_ATTRIBUTES", ProjectionExpression="#s", ExpressionAttributeNames={"#s": "sk"})
    assert [i for i in page["Items"]] == [{"sk": {"S": str(i)}} for i in range(5)]
    page = ddb.query(TableName=range_table, KeyConditions={"pk": {"AttributeValueList": [{"S": "s"}],
                                                                  "ComparisonOperator": "EQ"}},
                     AttributesToGet=["a", "nothing"])
    assert page["Items"] == [{"a": {"N": str(i)}} for i in range(5)]
    assert ddb.query(**base, Select="ALL_ATTRIBUTES")["Items"][4]["m"]["M"]["y"] == {"N": "1"}
    counted = ddb.query(**base, Select="COUNT")
    assert counted["Count"] == 5 and "Items" not in counted
    total = ddb.query(**base, ReturnConsumedCapacity="TOTAL", ConsistentRead=True)["ConsumedCapacity"]
    assert total["TableName"] == range_table and total["CapacityUnits"] == 1.0
    half = ddb.query(**base, ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
    assert half["CapacityUnits"] == 0.5 and half["Table"]["CapacityUnits"] == 0.5
    assert "ConsumedCapacity" not in ddb.query(**base, ReturnConsumedCapacity="NONE")
    bad = [
        (dict(Select="SPECIFIC_ATTRIBUTES"), "1 validation error detected: Must specify the AttributesToGet or "
                                             "ProjectionExpression when choosing to get SPECIFIC_ATTRIBUTES"),
        (dict(Select="ALL_PROJECTED_ATTRIBUTES"), "1 validation error detected: ALL_PROJECTED_ATTRIBUTES can be "
                                                  "used only when Querying using an IndexName"),
        (dict(Select="COUNT", ProjectionExpression="a"), "1 validation error detected: Cannot specify the "
                                                        "ProjectionExpression when choosing to get only the Count"),
        (dict(Select="ALL_ATTRIBUTES", ProjectionExpression="a"), "1 validation error detected: Cannot specify the "
                                                                 "ProjectionExpression when choosing to get "
                                                                 "ALL_ATTRIBUTES"),
    ]
    for extra, message in bad:
        with pytest.raises(ClientError) as e:
            ddb.query(**base, **extra)
        assert error_of(e) == ("ValidationException", message)


def test_one_megabyte_pages_in_both_directions(ddb, range_table):
    blob = "x" * 100_000
    for i in range(25):
        ddb.put_item(TableName=range_table, Item={"pk": {"S": "big"}, "sk": {"S": f"{i:02d}"}, "b": {"S": blob}})
    for forward in (True, False):
        first = ddb.query(TableName=range_table, KeyConditionExpression="pk = :p", ScanIndexForward=forward,
                          ExpressionAttributeValues={":p": {"S": "big"}})
        assert 9 <= first["Count"] <= 12 and "LastEvaluatedKey" in first
        items, pages = full_query(ddb, TableName=range_table, KeyConditionExpression="pk = :p",
                                  ScanIndexForward=forward, ExpressionAttributeValues={":p": {"S": "big"}})
        want = [f"{i:02d}" for i in range(25)]
        assert [i["sk"]["S"] for i in items] == (want if forward else want[::-1])
        assert pages == 3
    counted = ddb.query(TableName=range_table, KeyConditionExpression="pk = :p", Select="COUNT",
                        ExpressionAttributeValues={":p": {"S": "big"}})
    assert counted["Count"] < 25 and "LastEvaluatedKey" in counted


def test_limit_reached_exactly_still_returns_last_evaluated_key(ddb, hash_table):
    ddb.put_item(TableName=hash_table, Item={"pk": {"S": "only"}})
    page = ddb.query(TableName=hash_table, KeyConditionExpression="pk = :p", Limit=1,
                     ExpressionAttributeValues={":p": {"S": "only"}})
    assert page["Count"] == 1 and page["LastEvaluatedKey"] == {"pk": {"S": "only"}}
    page = ddb.query(TableName=hash_table, KeyConditionExpression="pk = :p", Limit=1,
                     ExpressionAttributeValues={":p": {"S": "only"}}, ExclusiveStartKey=page["LastEvaluatedKey"])
    assert page["Count"] == 0 and "LastEvaluatedKey" not in page
    empty = ddb.query(TableName=hash_table, KeyConditionExpression="pk = :p",
                      ExpressionAttributeValues={":p": {"S": "none"}})
    assert empty["Items"] == [] and empty["Count"] == 0 and empty["ScannedCount"] == 0


def test_bad_input(server, ddb, range_table):
    base = dict(TableName=range_table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}})
    raw = dict(base)
    for limit in (0, -1):
        status, body = raw_call(server, "Query", {**raw, "Limit": limit})
        assert status == 400 and body["__type"].endswith("ValidationException")
        # Query's Limit check names the member without echoing the value (Scan's echoes it)
        assert body["message"] == ("1 validation error detected: Value at 'Limit' failed to satisfy "
                                   "constraint: Member must have value greater than or equal to 1")
    cases = [
        (dict(base, ExclusiveStartKey={"pk": {"N": "1"}, "sk": {"S": "a"}}),
         "The provided key element does not match the schema"),
        # a start key naming the wrong attributes gets Query's bare sentence (Scan adds the detail)
        (dict(base, ExclusiveStartKey={"pk": {"S": "a"}}), "The provided starting key is invalid"),
        (dict(base, ExclusiveStartKey={"pk": {"S": "a"}, "sk": {"S": "a"}, "x": {"S": "a"}}),
         "The provided starting key is invalid"),
        (dict(base, ExclusiveStartKey={"bad": {"S": "p"}}), "The provided starting key is invalid"),
        (dict(base, ExclusiveStartKey={"pk": {"S": "b"}, "sk": {"S": "a"}}),
         "The provided starting key is outside query boundaries based on provided conditions"),
        (dict(TableName=range_table, KeyConditionExpression="pk = :p AND sk > :s",
              ExpressionAttributeValues={":p": {"S": "a"}, ":s": {"S": "m"}},
              ExclusiveStartKey={"pk": {"S": "a"}, "sk": {"S": "a"}}),
         "The provided starting key does not match the range key predicate"),
        (dict(TableName=range_table, KeyConditionExpression="pk = :p AND attr1 = :s",
              ExpressionAttributeValues={":p": {"S": "a"}, ":s": {"S": "m"}}),
         "Query condition missed key schema element: sk"),
        (dict(TableName=range_table, KeyConditionExpression="sk = :s", ExpressionAttributeValues={":s": {"S": "m"}}),
         "Query condition missed key schema element: pk"),
        (dict(TableName=range_table, KeyConditionExpression="pk = :p OR sk = :s",
              ExpressionAttributeValues={":p": {"S": "a"}, ":s": {"S": "m"}}),
         "Invalid operator used in KeyConditionExpression: OR"),
        (dict(TableName=range_table, KeyConditionExpression="pk = :p AND attribute_exists(sk)",
              ExpressionAttributeValues={":p": {"S": "a"}}),
         "Invalid operator used in KeyConditionExpression: attribute_exists"),
        (dict(TableName=range_table, KeyConditionExpression="pk = :p AND sk.x = :s",
              ExpressionAttributeValues={":p": {"S": "a"}, ":s": {"S": "m"}}),
         "KeyConditionExpressions cannot have conditions on nested attributes"),
        (dict(TableName=range_table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"N": "1"}}),
         "One or more parameter values were invalid: Condition parameter type does not match schema type"),
        (dict(TableName=range_table),
         "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request."),
        (dict(TableName=range_table, KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
              ExpressionAttributeValues={":p": {"S": "a"}, ":s": {"S": ""}}),
         "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an "
         "empty string value. Key: sk"),
        (dict(TableName=range_table, KeyConditionExpression="pk = :p AND sk BETWEEN :s AND :t",
              ExpressionAttributeValues={":p": {"S": "a"}, ":s": {"S": ""}, ":t": {"S": "b"}}),
         "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an "
         "empty string value. Key: sk"),
        (dict(TableName=range_table, KeyConditions={
            "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "a"}]},
            "sk": {"ComparisonOperator": "GT", "AttributeValueList": [{"S": ""}]}}),
         "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an "
         "empty string value. Key: sk"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ClientError) as e:
            ddb.query(**kwargs)
        assert error_of(e) == ("ValidationException", message), kwargs
    with pytest.raises(ClientError) as e:
        ddb.query(**dict(base, TableName="no_such_table"))
    assert error_of(e)[0] == "ResourceNotFoundException"


def test_repeated_key_condition_checks_every_new_value(ddb, range_table):
    """The server remembers a key condition's shape across requests; every value is still checked."""
    ddb.put_item(TableName=range_table, Item={"pk": {"S": "cache-a"}, "sk": {"S": "m"}})
    ddb.put_item(TableName=range_table, Item={"pk": {"S": "cache-b"}, "sk": {"S": "n"}})
    between = "pk = :p AND sk BETWEEN :lo AND :hi"
    ok = {":p": {"S": "cache-a"}, ":lo": {"S": "a"}, ":hi": {"S": "z"}}
    for _ in range(2):
        page = ddb.query(TableName=range_table, KeyConditionExpression=between, ExpressionAttributeValues=ok)
        assert page["Items"] == [{"pk": {"S": "cache-a"}, "sk": {"S": "m"}}]
    page = ddb.query(TableName=range_table, KeyConditionExpression=between,
                     ExpressionAttributeValues={":p": {"S": "cache-b"}, ":lo": {"S": "a"}, ":hi": {"S": "z"}})
    assert page["Items"] == [{"pk": {"S": "cache-b"}, "sk": {"S": "n"}}]
    bad = [
        ({":p": {"N": "1"}, ":lo": {"S": "a"}, ":hi": {"S": "z"}},
         "One or more parameter values were invalid: Condition parameter type does not match schema type"),
        ({":p": {"S": "cache-a"}, ":lo": {"S": "z"}, ":hi": {"S": "a"}},
         "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be greater than or "
         "equal to lower bound; lower bound operand: AttributeValue: {S:z}, upper bound operand: "
         "AttributeValue: {S:a}"),
        ({":p": {"S": "cache-a"}, ":lo": {"S": "a"}, ":hi": {"N": "x"}}, None),
    ]
    for values, message in bad:
        with pytest.raises(ClientError) as e:
            ddb.query(TableName=range_table, KeyConditionExpression=between, ExpressionAttributeValues=values)
        code, text = error_of(e)
        assert code == "ValidationException", values
        if message is not None:
            assert text == message, values
    with pytest.raises(ClientError) as e:
        ddb.query(TableName=range_table, KeyConditionExpression=between,
                  ExpressionAttributeValues={**ok, ":extra": {"S": "x"}})
    assert error_of(e) == ("ValidationException", "Value provided in ExpressionAttributeValues unused in "
                                                   "expressions: keys: {:extra}")
    same = "pk = :v AND sk = :v"
    ddb.put_item(TableName=range_table, Item={"pk": {"S": "same"}, "sk": {"S": "same"}})
    for _ in range(2):
        page = ddb.query(TableName=range_table, KeyConditionExpression=same,
                         ExpressionAttributeValues={":v": {"S": "same"}})
        assert page["Count"] == 1


def test_many_partitions_each_query_sees_only_its_own(ddb, table_name):
    create_table(ddb, table_name, hash_key=("pk", "N"), range_key=("sk", "N"))
    try:
        writes = [{"PutRequest": {"Item": {"pk": {"N": str(p)}, "sk": {"N": str(s)}}}}
                  for p in range(200) for s in range(3)]
        for start in range(0, len(writes), 25):
            ddb.batch_write_item(RequestItems={table_name: writes[start:start + 25]})
        for p in range(0, 200, 7):
            items = ddb.query(TableName=table_name, KeyConditionExpression="pk = :p",
                              ExpressionAttributeValues={":p": {"N": str(p)}})["Items"]
            assert items == [{"pk": {"N": str(p)}, "sk": {"N": str(s)}} for s in range(3)]
    finally:
        ddb.delete_table(TableName=table_name)


def test_paging_keys_survive_a_restart(tmp_path):
    srv = ServerProcess(tmp_path / "data", smp=2).start()
    try:
        ddb = srv.client()
        create_table(ddb, "restartq", range_key=("sk", "B"))
        create_table(ddb, "restarts", hash_key=("pk", "N"))
        for start in range(0, 40, 10):
            ddb.batch_write_item(RequestItems={
                "restartq": [{"PutRequest": {"Item": {"pk": {"S": "r"}, "sk": {"B": bytes([i])}}}}
                             for i in range(start, start + 10)],
                "restarts": [{"PutRequest": {"Item": {"pk": {"N": str(i)}}}} for i in range(start, start + 10)]})
        query_page = ddb.query(TableName="restartq", KeyConditionExpression="pk = :p", Limit=15,
                               ExpressionAttributeValues={":p": {"S": "r"}})
        scan_page = ddb.scan(TableName="restarts", Limit=15)
        assert srv.stop() == 0
        srv.start()
        ddb = srv.client()
        rest, _ = full_query(ddb, TableName="restartq", KeyConditionExpression="pk = :p", Limit=15,
                             ExpressionAttributeValues={":p": {"S": "r"}},
                             ExclusiveStartKey=query_page["LastEvaluatedKey"])
        assert [i["sk"]["B"] for i in query_page["Items"] + rest] == [bytes([i]) for i in range(40)]
        seen = [i["pk"]["N"] for i in scan_page["Items"]]
        start = scan_page["LastEvaluatedKey"]
        while start:
            page = ddb.scan(TableName="restarts", Limit=15, ExclusiveStartKey=start)
            seen += [i["pk"]["N"] for i in page["Items"]]
            start = page.get("LastEvaluatedKey")
        assert sorted(seen, key=int) == [str(i) for i in range(40)]
    finally:
        assert srv.stop() == 0


def test_repeated_queries_see_every_kind_of_write(server, ddb, table_name):
    """The same partitions queried over and over (served from the partition cache after
    the first read) while every write path changes them: each answer is current."""
    create_table(ddb, table_name, range_key=("sk", "N"))
    try:
        model = {p: {} for p in ("a", "b")}

        def check(p):
            for forward in (True, False):
                got = full_query(ddb, TableName=table_name, KeyConditionExpression="pk = :p",
                                 ExpressionAttributeValues={":p": {"S": p}}, ScanIndexForward=forward)[0]
                want = [model[p][s] for s in sorted(model[p], reverse=not forward)]
                assert got == want
            if model[p]:
                lo = sorted(model[p])[len(model[p]) // 2]
                got = ddb.query(TableName=table_name, KeyConditionExpression="pk = :p AND sk >= :s",
                                ExpressionAttributeValues={":p": {"S": p}, ":s": {"N": str(lo)}},
                                Limit=2)["Items"]
                assert got == [model[p][s] for s in sorted(model[p]) if s >= lo][:2]

        def item(p, s, v):
            return {"pk": {"S": p}, "sk": {"N": str(s)}, "v": {"S": v}}

        for s in range(6):
            ddb.put_item(TableName=table_name, Item=item("a", s, f"put{s}"))
            model["a"][s] = item("a", s, f"put{s}")
        check("a"), check("a"), check("b")
        ddb.update_item(TableName=table_name, Key={"pk": {"S": "a"}, "sk": {"N": "2"}},
                        UpdateExpression="SET v = :v", ExpressionAttributeValues={":v": {"S": "upd"}})
        model["a"][2] = item("a", 2, "upd")
        check("a")
        ddb.delete_item(TableName=table_name, Key={"pk": {"S": "a"}, "sk": {"N": "4"}})
        del model["a"][4]
        check("a")
        with pytest.raises(ClientError):
            ddb.put_item(TableName=table_name, Item=item("a", 0, "never"),
                         ConditionExpression="attribute_not_exists(pk)")
        check("a")
        ddb.batch_write_item(RequestItems={table_name: [
            {"PutRequest": {"Item": item("a", 9, "batch")}},
            {"DeleteRequest": {"Key": {"pk": {"S": "a"}, "sk": {"N": "0"}}}},
            {"PutRequest": {"Item": item("b", 1, "batch")}}]})
        model["a"][9] = item("a", 9, "batch")
        del model["a"][0]
        model["b"][1] = item("b", 1, "batch")
        check("a"), check("b")
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table_name, "Item": item("a", 7, "txn")}},
            {"Delete": {"TableName": table_name, "Key": {"pk": {"S": "b"}, "sk": {"N": "1"}}}}])
        model["a"][7] = item("a", 7, "txn")
        del model["b"][1]
        check("a"), check("b")
        with urllib.request.urlopen(f"http://127.0.0.1:{server.prometheus_port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        hits = sum(float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith("shardserver_partition_cache_hits_total"))
        assert hits > 0
    finally:
        ddb.delete_table(TableName=table_name)


def test_reads_are_charged_by_item_size_not_stored_json(ddb):
    """200 items of ~10 bytes (DynamoDB's size: names plus values) are 2 KB: one strongly
    consistent read unit for the Query, the Scan and the index Query; their stored JSON is ~7 KB."""
    name = "charged_by_size"
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"},
                              {"AttributeName": "g", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "by_g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "KEYS_ONLY"}}])
    for start in range(0, 200, 25):
        ddb.batch_write_item(RequestItems={name: [
            {"PutRequest": {"Item": {"pk": {"S": "p"}, "sk": {"N": str(i)}, "g": {"S": "g"}}}}
            for i in range(start, start + 25)]})
    query = ddb.query(TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={
        ":p": {"S": "p"}}, ConsistentRead=True, ReturnConsumedCapacity="TOTAL")
    assert query["Count"] == 200 and query["ConsumedCapacity"]["CapacityUnits"] == 1.0
    scan = ddb.scan(TableName=name, ConsistentRead=True, ReturnConsumedCapacity="TOTAL",
                    FilterExpression="sk < :n", ExpressionAttributeValues={":n": {"N": "0"}})
    # charged for what was read, before the filter
    assert scan["Count"] == 0 and scan["ScannedCount"] == 200
    assert scan["ConsumedCapacity"]["CapacityUnits"] == 1.0
    for _ in range(100):     # the GSI is eventually consistent
        index = ddb.query(TableName=name, IndexName="by_g", KeyConditionExpression="g = :g",
                          ExpressionAttributeValues={":g": {"S": "g"}}, ReturnConsumedCapacity="TOTAL")
        if index["Count"] == 200:
            break
        time.sleep(0.05)
    assert index["Count"] == 200 and index["ConsumedCapacity"]["CapacityUnits"] == 0.5
    ddb.delete_table(TableName=name)


def test_size_of_a_string_counts_utf16_code_units(ddb, range_table):
    # DynamoDB's size() counts a string as Java does: "é" is one unit, "𝄞" a surrogate pair, so 3, not 6 bytes
    ddb.put_item(TableName=range_table, Item={"pk": {"S": "u"}, "sk": {"S": "1"}, "s": {"S": "é\U0001d11e"}})
    for n, count in (("3", 1), ("6", 0)):
        got = ddb.query(TableName=range_table, KeyConditionExpression="pk = :p", FilterExpression="size(s) = :n",
                        ExpressionAttributeValues={":p": {"S": "u"}, ":n": {"N": n}})
        assert got["Count"] == count
