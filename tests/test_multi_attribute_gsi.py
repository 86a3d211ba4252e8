"""Global secondary indexes with multi-attribute keys (up to four partition key and four sort key
attributes) through boto3: definitions, the key condition rules, order, paging, sparse entries,
backfill, KeyConditions and PartiQL.

GSIs are eventually consistent, so reads are retried for a bounded time (``eventually``)."""

import time

import pytest

from test_indexes import N, S, defs, error_of, eventually, full_query, full_scan

TRIPLE = [{"AttributeName": "league", "KeyType": "HASH"}, {"AttributeName": "tier", "KeyType": "HASH"},
          {"AttributeName": "round", "KeyType": "RANGE"}, {"AttributeName": "seq", "KeyType": "RANGE"}]


def gsi(name, key_schema, projection="ALL"):
    return {"IndexName": name, "KeySchema": key_schema, "Projection": {"ProjectionType": projection}}


@pytest.fixture
def matches(ddb, table_name):
    ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=defs(id="S", league="S", tier="N", round="S", seq="N"),
                     GlobalSecondaryIndexes=[gsi("by_bracket", TRIPLE), gsi("by_bracket_keys", TRIPLE, "KEYS_ONLY")])
    items = []
    for i in range(24):
        item = {"id": S(f"m{i:02d}"), "league": S(["eu", "us"][i % 2]), "tier": N(i % 3),
                "round": S(["final", "quarter", "semi"][i % 4 % 3]), "seq": N(i), "extra": S("x" * i)}
        items.append(item)
        ddb.put_item(TableName=table_name, Item=item)
    yield table_name, items
    ddb.delete_table(TableName=table_name)


def query(ddb, table, condition, values, index="by_bracket", **extra):
    return full_query(ddb, TableName=table, IndexName=index, KeyConditionExpression=condition,
                      ExpressionAttributeValues=values, **extra)


def test_describe_keeps_the_key_schema(ddb, matches):
    table, _ = matches
    described = {i["IndexName"]: i for i in ddb.describe_table(TableName=table)["Table"]["GlobalSecondaryIndexes"]}
    assert described["by_bracket"]["KeySchema"] == TRIPLE


def test_key_condition_prefixes(ddb, matches):
    table, items = matches
    eu1 = [i for i in items if i["league"] == S("eu") and i["tier"] == N(1)]
    ordered = sorted(eu1, key=lambda i: (i["round"]["S"], int(i["seq"]["N"])))
    values = {":r": S("eu"), ":t": N(1)}
    eventually(lambda: query(ddb, table, "league = :r AND tier = :t", values), ordered)
    # Sorted by (round, seq), forward and backward, one page at a time.
    assert query(ddb, table, "league = :r AND tier = :t", values, Limit=1) == ordered
    assert query(ddb, table, "league = :r AND tier = :t", values, ScanIndexForward=False, Limit=2) == ordered[::-1]
    semis = [i for i in ordered if i["round"] == S("semi")]
    assert query(ddb, table, "league = :r AND tier = :t AND #round = :round",
                 {**values, ":round": S("semi")}, ExpressionAttributeNames={"#round": "round"}) == semis
    assert query(ddb, table, "league = :r AND tier = :t AND #round > :round",
                 {**values, ":round": S("quarter")}, ExpressionAttributeNames={"#round": "round"}) == semis
    assert query(ddb, table, "league = :r AND tier = :t AND begins_with(#round, :p)",
                 {**values, ":p": S("qu")}, ExpressionAttributeNames={"#round": "round"}) == [
        i for i in ordered if i["round"] == S("quarter")]
    low, high = sorted(int(i["seq"]["N"]) for i in semis)[:2]
    got = query(ddb, table, "league = :r AND tier = :t AND #round = :round AND seq BETWEEN :lo AND :hi",
                {**values, ":round": S("semi"), ":lo": N(low), ":hi": N(high)},
                ExpressionAttributeNames={"#round": "round"})
    assert [i["seq"] for i in got] == [N(low), N(high)]
    keys_only = query(ddb, table, "league = :r AND tier = :t", values, index="by_bracket_keys")
    assert keys_only == [{k: i[k] for k in ("id", "league", "tier", "round", "seq")} for i in ordered]
    legacy = ddb.query(TableName=table, IndexName="by_bracket", KeyConditions={
        "league": {"ComparisonOperator": "EQ", "AttributeValueList": [S("eu")]},
        "tier": {"ComparisonOperator": "EQ", "AttributeValueList": [N(1)]},
        "round": {"ComparisonOperator": "EQ", "AttributeValueList": [S("semi")]},
        "seq": {"ComparisonOperator": "GE", "AttributeValueList": [N(high)]}})["Items"]
    assert [i["seq"] for i in legacy] == [i["seq"] for i in semis if int(i["seq"]["N"]) >= high]


def test_key_condition_rules(ddb, matches):
    table, _ = matches
    names = {"#round": "round"}

    def refused(condition, values):
        # Names only where used: DynamoDB reports an unused one before any key condition rule.
        code, message = error_of(ddb.query, TableName=table, IndexName="by_bracket", KeyConditionExpression=condition,
                                 ExpressionAttributeValues=values,
                                 **({"ExpressionAttributeNames": names} if "#round" in condition else {}))
        assert code == "ValidationException"
        return message

    assert "tier" in refused("league = :r AND #round = :x", {":r": S("eu"), ":x": S("semi")})
    assert "round" in refused("league = :r AND tier = :t AND seq = :s", {":r": S("eu"), ":t": N(1), ":s": N(1)})
    refused("league = :r AND tier = :t AND #round > :x AND seq = :s",
            {":r": S("eu"), ":t": N(1), ":x": S("a"), ":s": N(1)})
    refused("league = :r AND tier > :t", {":r": S("eu"), ":t": N(1)})
    assert refused("league = :r AND tier = :t", {":r": S("eu"), ":t": S("1")}) == (
        "One or more parameter values were invalid: Condition parameter type does not match schema type")
    assert error_of(ddb.query, TableName=table, IndexName="by_bracket", KeyConditions={
        "league": {"ComparisonOperator": "EQ", "AttributeValueList": [S("eu")]},
        "tier": {"ComparisonOperator": "EQ", "AttributeValueList": [N(1)]},
        "extra": {"ComparisonOperator": "EQ", "AttributeValueList": [S("x")]}}) == (
        "ValidationException", "Query condition missed key schema element: round")
    # A filter may not name the index's key attributes, any of them.
    assert error_of(ddb.query, TableName=table, IndexName="by_bracket", KeyConditionExpression="league = :r AND "
                    "tier = :t", FilterExpression="seq > :s",
                    ExpressionAttributeValues={":r": S("eu"), ":t": N(1), ":s": N(1)})[1] == (
        "Filter Expression can only contain non-primary key attributes: Primary key attribute: seq")


def test_sparse_entries_scan_and_paging(ddb, matches):
    table, items = matches
    ddb.put_item(TableName=table, Item={"id": S("partial"), "league": S("eu"), "tier": N(1), "round": S("semi")})
    ddb.put_item(TableName=table, Item={"id": S("no_tier"), "league": S("eu"), "round": S("semi"), "seq": N(3)})
    eventually(lambda: full_scan(ddb, TableName=table, IndexName="by_bracket", Limit=5), items)
    page = ddb.scan(TableName=table, IndexName="by_bracket", Limit=3)
    assert set(page["LastEvaluatedKey"]) == {"id", "league", "tier", "round", "seq"}
    # Updating away one key attribute drops the entry; restoring it brings it back.
    ddb.update_item(TableName=table, Key={"id": S("m05")}, UpdateExpression="REMOVE seq")
    eventually(lambda: full_scan(ddb, TableName=table, IndexName="by_bracket"),
               [i for i in items if i["id"] != S("m05")])
    assert error_of(ddb.put_item, TableName=table, Item={"id": S("bad"), "league": S("eu"), "tier": S("one")})[1] == (
        "One or more parameter values were invalid: Type mismatch for Index Key tier Expected: N Actual: S "
        "IndexName: by_bracket")


def test_partiql_reads_the_index(ddb, matches):
    table, items = matches
    expected = [i for i in items if i["league"] == S("us") and i["tier"] == N(2)]
    eventually(lambda: ddb.execute_statement(
        Statement=f'SELECT * FROM "{table}"."by_bracket" WHERE league = ? AND tier = ?',
        Parameters=[S("us"), N(2)])["Items"], expected)


def test_added_index_is_backfilled(ddb, table_name):
    ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], AttributeDefinitions=defs(id="S"))
    try:
        items = [{"id": S(f"i{i}"), "a": S(f"a{i % 2}"), "b": S(f"b{i % 3}")} for i in range(12)]
        for item in items:
            ddb.put_item(TableName=table_name, Item=item)
        ddb.update_table(TableName=table_name, AttributeDefinitions=defs(a="S", b="S"),
                         GlobalSecondaryIndexUpdates=[{"Create": gsi("by_ab", [
                             {"AttributeName": "a", "KeyType": "HASH"}, {"AttributeName": "b", "KeyType": "HASH"}])}])
        deadline = time.monotonic() + 30
        while ddb.describe_table(TableName=table_name)["Table"]["GlobalSecondaryIndexes"][0]["IndexStatus"] != \
                "ACTIVE":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        eventually(lambda: query(ddb, table_name, "a = :a AND b = :b", {":a": S("a1"), ":b": S("b2")}, index="by_ab"),
                   [i for i in items if i["a"] == S("a1") and i["b"] == S("b2")])
    finally:
        ddb.delete_table(TableName=table_name)


def test_bad_key_schemas(ddb, table_name):
    def create(key_schema, kind="GlobalSecondaryIndexes"):
        index = gsi("idx", key_schema)
        return error_of(ddb.create_table, TableName=table_name, BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "r", "KeyType": "RANGE"}],
                        AttributeDefinitions=defs(id="S", r="S", a="S", b="S", c="S", d="S", e="S"),
                        **{kind: [index]})

    hashes = [{"AttributeName": n, "KeyType": "HASH"} for n in "abcde"]
    # DynamoDB's wording for each rule of multi-attribute keys.
    invalid = "One or more parameter values were invalid: "
    assert create(hashes) == ("ValidationException", invalid + "The KeySchema exceeds the maximum allowed number "
                              "of HASH key attributes")
    ranges = [{"AttributeName": n, "KeyType": "RANGE"} for n in "bcde"]
    assert create(hashes[:1] + ranges + [{"AttributeName": "r", "KeyType": "RANGE"}]) == (
        "ValidationException", invalid + "The KeySchema exceeds the maximum allowed number of RANGE key attributes")
    assert create(hashes[:1] + [{"AttributeName": "b", "KeyType": "RANGE"}, hashes[2]]) == (
        "ValidationException", invalid + "All HASH key attributes must precede RANGE key attributes in the KeySchema")
    assert create(hashes[:2] + [{"AttributeName": "a", "KeyType": "RANGE"}]) == (
        "ValidationException", "The KeySchema contains multiple key attributes with the same name")
    assert create(hashes[:1] + [{"AttributeName": "x", "KeyType": "RANGE"}, hashes[1]])[0] == "ValidationException"
    too_many = [{"AttributeName": n, "KeyType": "HASH"} for n in "abcdeabcd"]
    assert create(too_many)[1].endswith("Member must have length less than or equal to 8")
    # Local indexes keep one sort key attribute.
    local = [{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "a", "KeyType": "RANGE"},
             {"AttributeName": "b", "KeyType": "RANGE"}]
    assert create(local, "LocalSecondaryIndexes")[1].endswith("Member must have length less than or equal to 2")
    assert table_name not in ddb.list_tables()["TableNames"]
