"""PartiQL (ExecuteStatement, BatchExecuteStatement, ExecuteTransaction) through boto3 on a real 2-shard server.

Items are spread over both shards (keys of test_transactions.keys_on_each_shard),
so every statement is also checked through the forwarding path.
"""

import pytest
from botocore.exceptions import ClientError

from test_streams import all_records, stream_table, streams_client
from test_transactions import keys_on_each_shard

MALFORMED = "Statement wasn't well formed, can't be processed: "
INCOMPLETE_KEY = "Where clause does not contain a mandatory equality on all key attributes"


def error_of(excinfo):
    error = excinfo.value.response["Error"]
    return error["Code"], error["Message"]


def assert_refused(ddb, statement, message, code="ValidationException"):
    with pytest.raises(ClientError) as excinfo:
        run(ddb, statement)
    assert error_of(excinfo) == (code, message)


def run(ddb, statement, *parameters, **extra):
    if parameters:
        extra["Parameters"] = list(parameters)
    return ddb.execute_statement(Statement=statement, **extra)


def S(value):
    return {"S": value}


def N(value):
    return {"N": str(value)}


@pytest.fixture
def music(ddb, table_name):
    """A table keyed (Artist S, SongTitle S), a GSI on (Genre, Year N), six songs."""
    ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "Artist", "KeyType": "HASH"},
                                {"AttributeName": "SongTitle", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "Artist", "AttributeType": "S"},
                                           {"AttributeName": "SongTitle", "AttributeType": "S"},
                                           {"AttributeName": "Genre", "AttributeType": "S"},
                                           {"AttributeName": "Year", "AttributeType": "N"}],
                     GlobalSecondaryIndexes=[{"IndexName": "by_genre",
                                              "KeySchema": [{"AttributeName": "Genre", "KeyType": "HASH"},
                                                            {"AttributeName": "Year", "KeyType": "RANGE"}],
                                              "Projection": {"ProjectionType": "ALL"}}])
    on_0, on_1 = keys_on_each_shard("artist", 1)
    songs = [(on_0[0], "a1", "rock", 1990), (on_0[0], "a2", "pop", 1991), (on_0[0], "b1", "rock", 1992),
             (on_1[0], "a1", "rock", 1993), (on_1[0], "c1", "jazz", 1994), (on_1[0], "c2", "pop", 1995)]
    for artist, title, genre, year in songs:
        ddb.put_item(TableName=table_name, Item={"Artist": S(artist), "SongTitle": S(title), "Genre": S(genre),
                                                 "Year": N(year), "Plays": N(0)})
    yield table_name, on_0[0], on_1[0]
    ddb.delete_table(TableName=table_name)


# ------------------------------------------------------------------ INSERT

def test_insert_then_select_by_full_key_every_literal(ddb, hash_table):
    run(ddb, f"""INSERT INTO "{hash_table}" VALUE {{'pk': 'a', 'n': -1.5e3, 's': 'it''s', 'b': TRUE,
                 'z': NULL, 'm': {{'k': [1, 'two', {{'deep': FALSE}}]}}, 'ss': <<'x', 'y'>>, 'ns': <<1, 2>>}}""")
    item = ddb.get_item(TableName=hash_table, Key={"pk": S("a")})["Item"]
    assert item["s"] == S("it's") and item["b"] == {"BOOL": True} and item["z"] == {"NULL": True}
    assert float(item["n"]["N"]) == -1500
    assert item["m"] == {"M": {"k": {"L": [N(1), S("two"), {"M": {"deep": {"BOOL": False}}}]}}}
    assert sorted(item["ss"]["SS"]) == ["x", "y"] and sorted(item["ns"]["NS"]) == ["1", "2"]
    got = run(ddb, f'select * from "{hash_table}" where pk = ?', S("a"))
    assert got["Items"] == [item]
    assert "NextToken" not in got


def test_insert_with_parameters_and_binary(ddb, hash_table):
    run(ddb, f"INSERT INTO {hash_table} VALUE {{'pk': ?, 'bin': ?, 'l': [?, 2]}}", S("p"), {"B": b"\x00\x01"},
        N(7))
    item = ddb.get_item(TableName=hash_table, Key={"pk": S("p")})["Item"]
    assert item["bin"] == {"B": b"\x00\x01"} and item["l"] == {"L": [N(7), N(2)]}


def test_insert_existing_key_is_duplicate_item(ddb, hash_table):
    run(ddb, f"INSERT INTO \"{hash_table}\" VALUE {{'pk': 'a', 'v': 1}}")
    with pytest.raises(ClientError) as excinfo:
        run(ddb, f"INSERT INTO \"{hash_table}\" VALUE {{'pk': 'a', 'v': 2}}")
    assert error_of(excinfo) == ("DuplicateItemException", "Duplicate primary key exists in table")
    assert ddb.get_item(TableName=hash_table, Key={"pk": S("a")})["Item"]["v"] == N(1)


@pytest.mark.parametrize("statement, message", [
    ("INSERT INTO \"{t}\" VALUE {{'v': 1}}", "Key attribute should be present in the item: Key pk"),
    ("INSERT INTO \"{t}\" VALUE {{'pk': 1}}",
     "Key attribute's data type should match its data type in table's schema: Key pk"),
    ("INSERT INTO \"{t}\" VALUE ['pk', 'a']",
     "Unsupported format in item expression. Please use struct format {{...}} to express item values for "
     "insert statement."),
    ("INSERT INTO \"{t}\" VALUE {{'pk': 'a', 's': <<>>}}", "Empty bags are not supported"),
    ("INSERT INTO \"{t}\" VALUE {{'pk': 'a', 's': <<1, 'x'>>}}",
     "Unsupported data type in Bag. DynamoDB only supports either numbers or strings in bags"),
    ("INSERT INTO \"{t}\" VALUE {{'pk': 'a', 'v': 1, 'v': 2}}", "Duplicate keys in tuple. Key: v"),
    ("INSERT INTO \"{t}\" VALUE {{'pk': 'a'}} RETURNING ALL OLD *", "RETURNING is not supported in INSERT"),
])
def test_insert_refusals(ddb, hash_table, statement, message):
    assert_refused(ddb, statement.format(t=hash_table), message.replace("{{", "{").replace("}}", "}"))
    assert ddb.scan(TableName=hash_table)["Count"] == 0


# ------------------------------------------------------------------ SELECT

def test_select_partition_is_a_query_in_sort_key_order(ddb, music):
    table, artist, _ = music
    got = run(ddb, f'SELECT SongTitle FROM "{table}" WHERE Artist = ?', S(artist))
    assert got["Items"] == [{"SongTitle": S("a1")}, {"SongTitle": S("a2")}, {"SongTitle": S("b1")}]
    got = run(ddb, f'SELECT SongTitle FROM "{table}" WHERE Artist = ? ORDER BY SongTitle DESC', S(artist))
    assert [i["SongTitle"]["S"] for i in got["Items"]] == ["b1", "a2", "a1"]


@pytest.mark.parametrize("condition, titles", [
    ("begins_with(SongTitle, 'a')", ["a1", "a2"]),
    ("SongTitle > 'a1'", ["a2", "b1"]),
    ("'a2' >= SongTitle", ["a1", "a2"]),
    ("SongTitle BETWEEN 'a2' AND 'b1'", ["a2", "b1"]),
    ("Genre = 'rock'", ["a1", "b1"]),
    ("Genre <> 'rock' AND Year < 2000", ["a2"]),
    ("SongTitle IN ['a1', 'b1']", ["a1", "b1"]),
    ("(Genre = 'pop' OR Year = 1992)", ["a2", "b1"]),
    ("NOT Genre = 'rock'", ["a2"]),
    ("Year NOT BETWEEN 1991 AND 1992", ["a1"]),
    ("Absent IS MISSING AND Genre IS NOT MISSING", ["a1", "a2", "b1"]),
    ("Genre IS STRING AND Year IS NUMERIC AND Genre IS NOT NULL", ["a1", "a2", "b1"]),
    ("contains(Genre, 'oc')", ["a1", "b1"]),
    ("attribute_type(Year, 'N') AND size(Genre) = 3", ["a2"]),
    ("SongTitle = 'a1' AND SongTitle = 'a1'", ["a1"]),
])
def test_select_where_conditions(ddb, music, condition, titles):
    table, artist, _ = music
    got = run(ddb, f'SELECT * FROM "{table}" WHERE Artist = ? AND {condition}', S(artist))
    assert sorted(i["SongTitle"]["S"] for i in got["Items"]) == titles


def test_select_without_partition_key_scans_both_shards(ddb, music):
    table, first, second = music
    got = run(ddb, f"SELECT Artist, SongTitle FROM \"{table}\" WHERE Genre = 'rock' OR Year = 1995")
    found = sorted((i["Artist"]["S"], i["SongTitle"]["S"]) for i in got["Items"])
    assert found == sorted([(first, "a1"), (first, "b1"), (second, "a1"), (second, "c2")])
    assert len(run(ddb, f'SELECT * FROM "{table}"')["Items"]) == 6


def test_select_full_key_and_missing_item(ddb, music):
    table, artist, _ = music
    got = run(ddb, f'SELECT Year FROM "{table}" WHERE SongTitle = ? AND Artist = ?', S("a2"), S(artist),
              ConsistentRead=True)
    assert got["Items"] == [{"Year": N(1991)}]
    assert run(ddb, f"SELECT * FROM \"{table}\" WHERE Artist = 'nobody' AND SongTitle = 'x'")["Items"] == []


def test_select_from_an_index(ddb, music):
    table, _, _ = music
    got = run(ddb, f'SELECT SongTitle, "Year" FROM "{table}"."by_genre" WHERE Genre = ? AND "Year" >= 1992 '
                   'ORDER BY "Year" DESC', S("rock"))
    assert [i["Year"]["N"] for i in got["Items"]] == ["1993", "1992"]
    with pytest.raises(ClientError) as excinfo:
        run(ddb, f'SELECT * FROM "{table}"."nope" WHERE Genre = ?', S("rock"))
    assert error_of(excinfo) == ("ValidationException", "The table does not have the specified index")


def test_select_nested_paths_are_answered_under_their_last_name(ddb, hash_table):
    ddb.put_item(TableName=hash_table, Item={"pk": S("a"), "l": {"L": [N(1), N(2)]},
                                             "m": {"M": {"k": {"L": [S("x"), S("y")]}, "z": N(5)}}})
    got = run(ddb, f"SELECT m.k[1], l[0], m.z, m.none, absent FROM \"{hash_table}\" WHERE pk = 'a'")
    assert got["Items"] == [{"k[1]": S("y"), "l[0]": N(1), "z": N(5)}]
    got = run(ddb, f"SELECT \"m\".\"k\", m['z'] FROM \"{hash_table}\" WHERE pk = 'a'")
    assert got["Items"] == [{"k": {"L": [S("x"), S("y")]}, "z": N(5)}]


@pytest.mark.parametrize("statement, message", [
    ('SELECT m.z, z FROM "{t}"', "Duplicate identifiers in select clause: z"),
    ('SELECT *, a FROM "{t}"', "Other attributes should not be present in the projection when '*' is used."),
    ('SELECT a AS b FROM "{t}"', "Aliasing is not supported"),
    ('SELECT * FROM "{t}" WHERE pk = \'a\' LIMIT 1', "Unsupported clause: LIMIT"),
    ('SELECT * FROM "{t}" ORDER BY pk', "Must have WHERE clause in the statement when using ORDER BY clause."),
    ('SELECT * FROM "{t}" WHERE a = 1 ORDER BY pk',
     "Must have at least one non-optional hash key condition in WHERE clause when using ORDER BY clause."),
    ("SELECT * FROM \"{t}\" WHERE pk = 'a' ORDER BY a",
     "Variable reference a in ORDER BY clause must be part of the primary key"),
    ('SELECT * FROM "{t}" WHERE a = MISSING', "MISSING must be compared using IS operator"),
    ('SELECT * FROM "{t}" WHERE a', "WHERE clause must contain an expression that resolves to a boolean"),
    ('SELECT * FROM "{t}" WHERE utcnow(a)', "Unrecognized function: utcnow"),
    ('SELECT * FROM "{t}" WHERE a + 1 = 2', "Unsupported operator in Condition Expression. Operator: +"),
    ("SELECT * FROM \"{t}\" WHERE a IS DATE", "Unsupported data type for IS operator: DATE. Supported data "
     "types are [MISSING, NULL, BOOLEAN, BLOB, STRING, NUMERIC, STRUCT, TUPLE, LIST]"),
    ('SELECT * FROM "{t}" WHERE EXISTS(SELECT * FROM "{t}")',
     "EXISTS can only be used in ExecuteTransaction write requests."),
    ('SELECT * FROM "{t}"."i"."j"', "A path may contain at most 2 components in the FROM clause"),
])
def test_select_refusals(ddb, hash_table, statement, message):
    assert_refused(ddb, statement.format(t=hash_table), message)


def test_select_pages_with_limit_and_next_token(ddb, hash_table):
    for i in range(7):
        ddb.put_item(TableName=hash_table, Item={"pk": S(f"k{i}"), "even": {"BOOL": i % 2 == 0}})
    seen, token, pages = [], None, 0
    while True:
        extra = {"NextToken": token} if token else {}
        got = run(ddb, f'SELECT pk FROM "{hash_table}" WHERE even = ?', {"BOOL": True}, Limit=2, **extra)
        seen += [i["pk"]["S"] for i in got["Items"]]
        pages += 1
        token = got.get("NextToken")
        if token is None:
            break
        assert isinstance(token, str) and "LastEvaluatedKey" in got
    assert sorted(seen) == ["k0", "k2", "k4", "k6"] and pages >= 4
    first = run(ddb, f'SELECT pk FROM "{hash_table}"', Limit=1)
    with pytest.raises(ClientError) as excinfo:
        run(ddb, f'SELECT pk FROM "{hash_table}" WHERE pk <> \'x\'', Limit=1, NextToken=first["NextToken"])
    assert error_of(excinfo) == ("ValidationException", "The provided starting key is invalid")
    with pytest.raises(ClientError) as excinfo:
        run(ddb, f'SELECT pk FROM "{hash_table}"', NextToken="not a token")
    assert error_of(excinfo) == ("ValidationException", "Invalid NextToken")


def test_select_consumed_capacity(ddb, hash_table):
    ddb.put_item(TableName=hash_table, Item={"pk": S("a")})
    got = run(ddb, f"SELECT * FROM \"{hash_table}\" WHERE pk = 'a'", ReturnConsumedCapacity="TOTAL")
    assert got["ConsumedCapacity"]["TableName"] == hash_table and got["ConsumedCapacity"]["CapacityUnits"] > 0


# ------------------------------------------------------------------ UPDATE

def test_update_set_arithmetic_lists_sets_remove(ddb, range_table):
    ddb.put_item(TableName=range_table, Item={"pk": S("a"), "sk": S("1"), "n": N(1), "l": {"L": [N(1)]},
                                              "tags": {"SS": ["x", "y"]}, "gone": S("bye")})
    got = run(ddb, f"""UPDATE "{range_table}" SET n = n + 2, l = list_append(l, [2, 3])
                       SET tags = set_add(tags, <<'z'>>), m = {{'a': 1}} REMOVE gone
                       WHERE pk = 'a' AND sk = '1' RETURNING ALL NEW *""")
    item = got["Items"][0]
    assert item["n"] == N(3) and item["l"] == {"L": [N(1), N(2), N(3)]} and "gone" not in item
    assert sorted(item["tags"]["SS"]) == ["x", "y", "z"] and item["m"] == {"M": {"a": N(1)}}
    got = run(ddb, f"UPDATE \"{range_table}\" SET tags = set_delete(tags, ?), n = n - 1 "
                   "WHERE pk = 'a' AND sk = '1' RETURNING MODIFIED OLD *", {"SS": ["x"]})
    assert got["Items"][0]["n"] == N(3) and sorted(got["Items"][0]["tags"]["SS"]) == ["x", "y", "z"]
    stored = ddb.get_item(TableName=range_table, Key={"pk": S("a"), "sk": S("1")})["Item"]
    assert sorted(stored["tags"]["SS"]) == ["y", "z"] and stored["n"] == N(2)
    assert run(ddb, f"UPDATE \"{range_table}\" SET n = 9 WHERE pk = 'a' AND sk = '1'")["Items"] == []


def test_update_absent_item_or_false_condition_fails(ddb, hash_table):
    with pytest.raises(ClientError) as excinfo:
        run(ddb, f"UPDATE \"{hash_table}\" SET v = 1 WHERE pk = 'absent'")
    assert error_of(excinfo)[0] == "ConditionalCheckFailedException"
    assert "Item" not in ddb.get_item(TableName=hash_table, Key={"pk": S("absent")})
    ddb.put_item(TableName=hash_table, Item={"pk": S("a"), "v": N(1)})
    with pytest.raises(ClientError) as excinfo:
        run(ddb, f"UPDATE \"{hash_table}\" SET v = 2 WHERE pk = 'a' AND v > 5",
            ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert error_of(excinfo)[0] == "ConditionalCheckFailedException"
    assert excinfo.value.response["Item"] == {"pk": S("a"), "v": N(1)}
    run(ddb, f"UPDATE \"{hash_table}\" SET v = 2 WHERE pk = 'a' AND v = 1")
    assert ddb.get_item(TableName=hash_table, Key={"pk": S("a")})["Item"]["v"] == N(2)


@pytest.mark.parametrize("statement, message", [
    ("UPDATE \"{t}\" SET v = 1 WHERE sk = '1'", INCOMPLETE_KEY),
    ("UPDATE \"{t}\" SET v = 1 WHERE pk = 'a'", INCOMPLETE_KEY),
    ("UPDATE \"{t}\" SET v = 1 WHERE pk = 'a' OR sk = '1'", INCOMPLETE_KEY),
    ("UPDATE \"{t}\" SET v = 1 WHERE pk > 'a' AND sk = '1'", INCOMPLETE_KEY),
    ("UPDATE \"{t}\" SET v = set_add(w, <<1>>) WHERE pk = 'a' AND sk = '1'",
     "The first argument to SET_ADD must equal the assignment value"),
    ("UPDATE \"{t}\" SET v = set_add(v, 1) WHERE pk = 'a' AND sk = '1'",
     "The second argument to SET_ADD must be a value with type SET"),
    ("UPDATE \"{t}\" SET v = set_delete(v) WHERE pk = 'a' AND sk = '1'", "SET_DELETE must have exactly two arguments"),
    ("UPDATE \"{t}\" SET v = 1 WHERE pk = 'a' AND sk = '1' RETURNING ALL NEW",
     "Expected '*' after ( MODIFIED | ALL ) ( NEW | OLD ) in RETURNING clause"),
])
def test_update_refusals(ddb, range_table, statement, message):
    assert_refused(ddb, statement.format(t=range_table), message)


def test_update_writes_a_stream_record_like_update_item(ddb, server, table_name):
    arn = stream_table(ddb, table_name, view="NEW_IMAGE")
    try:
        run(ddb, f"INSERT INTO \"{table_name}\" VALUE {{'pk': 'a', 'v': 1}}")
        run(ddb, f"UPDATE \"{table_name}\" SET v = v + 1 WHERE pk = 'a'")
        records = all_records(streams_client(server), arn)
        assert [r["eventName"] for r in records] == ["INSERT", "MODIFY"]
        assert records[1]["dynamodb"]["NewImage"]["v"] == N(2)
    finally:
        ddb.delete_table(TableName=table_name)


# ------------------------------------------------------------------ DELETE

def test_delete_returning_old_absent_and_conditions(ddb, hash_table):
    ddb.put_item(TableName=hash_table, Item={"pk": S("a"), "v": N(1)})
    with pytest.raises(ClientError) as excinfo:
        run(ddb, f"DELETE FROM \"{hash_table}\" WHERE pk = 'a' AND v = 2")
    assert error_of(excinfo)[0] == "ConditionalCheckFailedException"
    got = run(ddb, f"DELETE FROM \"{hash_table}\" WHERE pk = ? AND v = 1 RETURNING ALL OLD *", S("a"))
    assert got["Items"] == [{"pk": S("a"), "v": N(1)}]
    assert "Item" not in ddb.get_item(TableName=hash_table, Key={"pk": S("a")})
    assert run(ddb, f"DELETE FROM \"{hash_table}\" WHERE pk = 'a'")["Items"] == []
    assert run(ddb, f"DELETE FROM \"{hash_table}\" WHERE pk = 'a' AND v = 3")["Items"] == []


@pytest.mark.parametrize("statement, message", [
    ("DELETE FROM \"{t}\" WHERE v = 1", INCOMPLETE_KEY),
    ("DELETE FROM \"{t}\" WHERE pk = 'a' RETURNING ALL NEW *",
     "Invalid returning clause: RETURNING ALL NEW *. Only RETURNING ALL OLD * is allowed in DELETE statements."),
])
def test_delete_refusals(ddb, hash_table, statement, message):
    assert_refused(ddb, statement.format(t=hash_table), message)


# ------------------------------------------------------------------ request-level errors

@pytest.mark.parametrize("statement", [
    "SELEC * FROM t", "SELECT * FROM", "SELECT * FROM \"t\" WHERE", "SELECT * FROM 't'",
    "INSERT INTO \"tab\" VALUE {'pk': 'a'", "SELECT * FROM \"tab\" WHERE a = 'unterminated",
    "UPSERT INTO \"tab\" VALUE {'pk': 'a'}", "SELECT * FROM \"tab\"; SELECT * FROM \"tab\"",
    "UPDATE \"tab\" WHERE pk = 'a'", "DELETE \"tab\" WHERE pk = 'a'",
])
def test_syntax_errors(ddb, statement):
    with pytest.raises(ClientError) as excinfo:
        run(ddb, statement)
    code, message = error_of(excinfo)
    assert code == "ValidationException" and message.startswith(MALFORMED) and len(message) > len(MALFORMED)


def test_parameter_counts_must_match(ddb, hash_table):
    for parameters in ([], [S("a"), S("b")]):
        with pytest.raises(ClientError) as excinfo:
            ddb.execute_statement(Statement=f'SELECT * FROM "{hash_table}" WHERE pk = ?',
                                  **({"Parameters": parameters} if parameters else {}))
        assert error_of(excinfo) == ("ValidationException",
                                     "Number of parameters in request and statement don't match.")
    with pytest.raises(ClientError) as excinfo:
        ddb.execute_statement(Statement=f"SELECT * FROM \"{hash_table}\" WHERE pk = '?'", Parameters=[S("a")])
    assert error_of(excinfo)[1] == "Number of parameters in request and statement don't match."


def test_unknown_table_and_bad_members(ddb):
    with pytest.raises(ClientError) as excinfo:
        run(ddb, "SELECT * FROM \"no_such_table\" WHERE pk = 'a'")
    assert error_of(excinfo) == ("ResourceNotFoundException", "Requested resource not found")
    with pytest.raises(ClientError) as excinfo:
        run(ddb, "INSERT INTO \"no_such_table\" VALUE {'pk': 'a'}")
    assert error_of(excinfo)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as excinfo:
        run(ddb, "SELECT * FROM \"x" + "y" * 8192 + "\"")
    assert error_of(excinfo)[0] == "ValidationException" and "8192" in error_of(excinfo)[1]
    with pytest.raises(ClientError) as excinfo:
        run(ddb, "SELECT * FROM \"no_such_table\" WHERE pk = ?", {"N": "abc"})
    assert error_of(excinfo)[0] == "ValidationException"


# ------------------------------------------------------------------ BatchExecuteStatement

def test_batch_writes_each_answered(ddb, hash_table):
    ddb.put_item(TableName=hash_table, Item={"pk": S("old"), "v": N(1)})
    got = ddb.batch_execute_statement(Statements=[
        {"Statement": f"INSERT INTO \"{hash_table}\" VALUE {{'pk': ?}}", "Parameters": [S("new")]},
        {"Statement": f"INSERT INTO \"{hash_table}\" VALUE {{'pk': 'old'}}"},
        {"Statement": f"UPDATE \"{hash_table}\" SET v = 2 WHERE pk = 'old' AND v = 5",
         "ReturnValuesOnConditionCheckFailure": "ALL_OLD"},
        {"Statement": f"UPDATE \"{hash_table}\" SET v = 3 WHERE pk = 'old'"},
        {"Statement": f"DELETE FROM \"{hash_table}\" WHERE v = 1"},
        {"Statement": "SELEC oops"},
        {"Statement": f"INSERT INTO \"{hash_table}\" VALUE {{'pk': ?}}"},
    ])["Responses"]
    assert got[0] == {"TableName": hash_table} and got[3] == {"TableName": hash_table}
    assert got[1]["Error"] == {"Code": "DuplicateItem", "Message": "Duplicate primary key exists in table"}
    assert got[2]["Error"]["Code"] == "ConditionalCheckFailed"
    assert got[2]["Error"]["Item"] == {"pk": S("old"), "v": N(1)}
    assert got[4]["Error"] == {"Code": "ValidationError", "Message": INCOMPLETE_KEY}
    assert got[5]["Error"]["Code"] == "ValidationError" and got[5]["Error"]["Message"].startswith(MALFORMED)
    assert got[6]["Error"] == {"Code": "ValidationError",
                               "Message": "Number of parameters in request and statement don't match."}
    assert ddb.get_item(TableName=hash_table, Key={"pk": S("old")})["Item"]["v"] == N(3)
    assert "Item" in ddb.get_item(TableName=hash_table, Key={"pk": S("new")})


def test_batch_reads_need_the_full_key(ddb, music):
    table, first, second = music
    got = ddb.batch_execute_statement(Statements=[
        {"Statement": f'SELECT Year FROM "{table}" WHERE Artist = ? AND SongTitle = ?',
         "Parameters": [S(first), S("a2")], "ConsistentRead": True},
        {"Statement": f"SELECT * FROM \"{table}\" WHERE Artist = ? AND SongTitle = 'zz'", "Parameters": [S(second)]},
        {"Statement": f'SELECT * FROM "{table}" WHERE Artist = ?', "Parameters": [S(second)]},
        {"Statement": 'SELECT * FROM "no_such_table" WHERE pk = 1'},
        {"Statement": f"SELECT SongTitle FROM \"{table}\" WHERE Artist = ? AND SongTitle = 'c1' AND Genre = ?",
         "Parameters": [S(second), S("jazz")]},
        {"Statement": f"SELECT SongTitle FROM \"{table}\" WHERE Artist = ? AND SongTitle = 'c1' AND Genre = ?",
         "Parameters": [S(second), S("rock")]},
    ], ReturnConsumedCapacity="TOTAL")
    responses = got["Responses"]
    assert responses[0] == {"TableName": table, "Item": {"Year": N(1991)}}
    assert responses[1] == {"TableName": table}
    assert responses[2]["Error"] == {"Code": "ValidationError", "Message": INCOMPLETE_KEY}
    assert responses[3]["Error"]["Code"] == "ResourceNotFound"
    assert responses[4] == {"TableName": table, "Item": {"SongTitle": S("c1")}}
    assert responses[5] == {"TableName": table}
    assert got["ConsumedCapacity"][0]["TableName"] == table


def test_batch_limits_and_mixing(ddb, hash_table):
    read = {"Statement": f"SELECT * FROM \"{hash_table}\" WHERE pk = 'a'"}
    write = {"Statement": f"INSERT INTO \"{hash_table}\" VALUE {{'pk': 'b'}}"}
    with pytest.raises(ClientError) as excinfo:
        ddb.batch_execute_statement(Statements=[read] * 26)
    assert error_of(excinfo)[0] == "ValidationException" and "less than or equal to 25" in error_of(excinfo)[1]
    with pytest.raises(ClientError) as excinfo:
        ddb.batch_execute_statement(Statements=[read, write])
    assert error_of(excinfo)[0] == "ValidationException"
    assert "Item" not in ddb.get_item(TableName=hash_table, Key={"pk": S("b")})


# ------------------------------------------------------------------ ExecuteTransaction

def test_transaction_of_writes_is_atomic(ddb, hash_table):
    first, second = keys_on_each_shard("tx", 1)
    ddb.put_item(TableName=hash_table, Item={"pk": S(first[0]), "n": N(1)})
    statements = [
        {"Statement": f"INSERT INTO \"{hash_table}\" VALUE {{'pk': ?}}", "Parameters": [S(second[0])]},
        {"Statement": f"UPDATE \"{hash_table}\" SET n = n + 1 WHERE pk = ?", "Parameters": [S(first[0])]},
    ]
    assert ddb.execute_transaction(TransactStatements=statements)["Responses"] == []
    assert ddb.get_item(TableName=hash_table, Key={"pk": S(first[0])})["Item"]["n"] == N(2)
    with pytest.raises(ClientError) as excinfo:
        ddb.execute_transaction(TransactStatements=[
            {"Statement": f"UPDATE \"{hash_table}\" SET n = n + 1 WHERE pk = ?", "Parameters": [S(first[0])]},
            {"Statement": f"INSERT INTO \"{hash_table}\" VALUE {{'pk': ?}}", "Parameters": [S(second[0])]},
            {"Statement": f"UPDATE \"{hash_table}\" SET n = 1 WHERE pk = 'absent'"},
        ])
    assert error_of(excinfo)[0] == "TransactionCanceledException"
    reasons = excinfo.value.response["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["None", "DuplicateItem", "ConditionalCheckFailed"]
    assert reasons[1]["Message"] == "Duplicate primary key exists in table"
    assert ddb.get_item(TableName=hash_table, Key={"pk": S(first[0])})["Item"]["n"] == N(2)


def test_transaction_exists_condition_and_delete(ddb, hash_table):
    ddb.put_item(TableName=hash_table, Item={"pk": S("guard"), "open": {"BOOL": False}})
    ddb.put_item(TableName=hash_table, Item={"pk": S("victim")})
    exists = {"Statement": f"EXISTS(SELECT * FROM \"{hash_table}\" WHERE pk = 'guard' AND \"open\" = ?)",
              "Parameters": [{"BOOL": True}]}
    delete = {"Statement": f"DELETE FROM \"{hash_table}\" WHERE pk = 'victim'"}
    with pytest.raises(ClientError) as excinfo:
        ddb.execute_transaction(TransactStatements=[exists, delete])
    assert [r["Code"] for r in excinfo.value.response["CancellationReasons"]] == ["ConditionalCheckFailed", "None"]
    assert "Item" in ddb.get_item(TableName=hash_table, Key={"pk": S("victim")})
    ddb.put_item(TableName=hash_table, Item={"pk": S("guard"), "open": {"BOOL": True}})
    ddb.execute_transaction(TransactStatements=[exists, delete])
    assert "Item" not in ddb.get_item(TableName=hash_table, Key={"pk": S("victim")})


def test_transaction_of_reads(ddb, music):
    table, first, second = music
    got = ddb.execute_transaction(TransactStatements=[
        {"Statement": f'SELECT SongTitle, Genre FROM "{table}" WHERE Artist = ? AND SongTitle = ?',
         "Parameters": [S(first), S("b1")]},
        {"Statement": f"SELECT * FROM \"{table}\" WHERE Artist = ? AND SongTitle = 'nope'", "Parameters": [S(second)]},
    ])
    assert got["Responses"] == [{"Item": {"SongTitle": S("b1"), "Genre": S("rock")}}, {}]


@pytest.mark.parametrize("statements, message", [
    (["SELECT * FROM \"{t}\" WHERE pk = 'a'", "INSERT INTO \"{t}\" VALUE {{'pk': 'b'}}"],
     "ExecuteTransaction API does not support both read and write operations in the same request."),
    (["SELECT * FROM \"{t}\" WHERE v = 1"],
     "Select statements within ExecuteTransaction must specify the primary key in the where clause."),
    (["EXISTS(SELECT * FROM \"{t}\" WHERE v = 1)"],
     "EXISTS() must contain a single item read with additional condition"),
    (["DELETE FROM \"{t}\" WHERE pk = 'a' RETURNING ALL OLD *"],
     "RETURNING is not supported in ExecuteTransaction statements"),
    (["DELETE FROM \"{t}\" WHERE pk = 'a'", "UPDATE \"{t}\" SET v = 1 WHERE pk = 'a'"],
     "Transaction request cannot include multiple operations on one item"),
])
def test_transaction_refusals(ddb, hash_table, statements, message):
    with pytest.raises(ClientError) as excinfo:
        ddb.execute_transaction(TransactStatements=[{"Statement": s.format(t=hash_table)} for s in statements])
    assert error_of(excinfo) == ("ValidationException", message)


def test_transaction_limit(ddb, hash_table):
    statements = [{"Statement": f"INSERT INTO \"{hash_table}\" VALUE {{'pk': '{i}'}}"} for i in range(101)]
    with pytest.raises(ClientError) as excinfo:
        ddb.execute_transaction(TransactStatements=statements)
    assert error_of(excinfo)[0] == "ValidationException" and "less than or equal to 100" in error_of(excinfo)[1]


def test_transaction_client_request_token_is_idempotent(ddb, hash_table):
    ddb.put_item(TableName=hash_table, Item={"pk": S("c"), "n": N(0)})
    token = "token-" + hash_table[:30]

    def increment(by):
        return [{"Statement": f"UPDATE \"{hash_table}\" SET n = n + {by} WHERE pk = 'c'"}]
    ddb.execute_transaction(TransactStatements=increment(1), ClientRequestToken=token)
    ddb.execute_transaction(TransactStatements=increment(1), ClientRequestToken=token)
    assert ddb.get_item(TableName=hash_table, Key={"pk": S("c")})["Item"]["n"] == N(1)
    with pytest.raises(ClientError) as excinfo:
        ddb.execute_transaction(TransactStatements=increment(2), ClientRequestToken=token)
    assert error_of(excinfo)[0] == "IdempotentParameterMismatchException"


def test_batch_consumed_capacity_is_summed_per_table_and_index(ddb, music):
    table, first, second = music
    got = ddb.batch_execute_statement(Statements=[
        {"Statement": f"UPDATE \"{table}\" SET Genre = 'folk' WHERE Artist = ? AND SongTitle = 'a1'",
         "Parameters": [S(artist)]} for artist in (first, second)], ReturnConsumedCapacity="INDEXES")
    assert got["Responses"] == [{"TableName": table}, {"TableName": table}]
    (spent,) = got["ConsumedCapacity"]
    assert spent["TableName"] == table and spent["Table"]["CapacityUnits"] == 2.0
    assert spent["GlobalSecondaryIndexes"]["by_genre"]["CapacityUnits"] == 4.0   # delete + put, twice
    assert spent["CapacityUnits"] == 6.0


def test_partition_keys_in_a_list_are_read_one_partition_after_another(ddb, music):
    table, first, second = music
    got = run(ddb, f'SELECT Artist, SongTitle FROM "{table}" WHERE Artist IN [?, ?, \'nobody\'] '
                   "ORDER BY Artist DESC, SongTitle DESC", S(first), S(second))
    expected = sorted([(first, "a1"), (first, "a2"), (first, "b1"), (second, "a1"), (second, "c1"),
                       (second, "c2")], reverse=True)
    assert [(i["Artist"]["S"], i["SongTitle"]["S"]) for i in got["Items"]] == expected
    got = run(ddb, f"SELECT SongTitle FROM \"{table}\" WHERE Artist = ? AND SongTitle = 'b1' OR Artist = ? "
                   "AND Genre = 'jazz'", S(first), S(second))
    assert sorted(i["SongTitle"]["S"] for i in got["Items"]) == ["b1", "c1"]
    with pytest.raises(ClientError) as excinfo:
        run(ddb, f'SELECT * FROM "{table}" WHERE Artist IN [?, ?] ORDER BY SongTitle', S(first), S(second))
    assert error_of(excinfo)[1] == ("Must have hash key in ORDER BY clause when more than one hash key condition "
                                    "specified in WHERE clause.")


def test_decomposed_reads_page_with_limit_across_partitions(ddb, music):
    table, first, second = music
    statement = f'SELECT SongTitle FROM "{table}" WHERE Artist IN [?, ?] ORDER BY Artist'
    seen, token, pages = [], None, 0
    while True:
        extra = {"NextToken": token} if token else {}
        got = run(ddb, statement, S(first), S(second), Limit=2, **extra)
        assert len(got["Items"]) <= 2
        seen += [i["SongTitle"]["S"] for i in got["Items"]]
        pages += 1
        token = got.get("NextToken")
        if token is None:
            break
    expected = ["a1", "a2", "b1", "a1", "c1", "c2"] if first < second else ["a1", "c1", "c2", "a1", "a2", "b1"]
    assert seen == expected and pages >= 3


def test_failed_condition_with_old_item_keeps_its_message_from_either_shard(ddb, hash_table):
    # The owner's error body spells the member "Message" when it carries the item; the
    # acceptor that forwarded the statement must still read the message from it.
    for k in [*keys_on_each_shard("cm")[0], *keys_on_each_shard("cm")[1]]:
        ddb.put_item(TableName=hash_table, Item={"pk": S(k), "v": N(1)})
        with pytest.raises(ClientError) as excinfo:
            run(ddb, f"UPDATE \"{hash_table}\" SET v = 2 WHERE pk = '{k}' AND v > 5",
                ReturnValuesOnConditionCheckFailure="ALL_OLD")
        assert error_of(excinfo) == ("ConditionalCheckFailedException", "The conditional request failed")
        assert excinfo.value.response["Item"] == {"pk": S(k), "v": N(1)}
