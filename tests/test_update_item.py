"""UpdateItem through boto3 against a real 2-shard server: every clause on
top-level and nested paths, arithmetic limits, upsert, the 400 KB limit,
bad expressions (DynamoDB's messages, item unchanged) and concurrent ADDs."""

import threading

import orjson
import pytest
from botocore.exceptions import ClientError

from conftest import create_table
from shardserver.shard.executor.update import _add_to_stored_counter

N = lambda v: {"N": str(v)}  # noqa: E731
S = lambda v: {"S": v}  # noqa: E731
KEY = {"pk": S("item")}

DOC = {
    "pk": S("item"), "n": N(5), "s": S("text"), "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2"]},
    "l": {"L": [S("x"), S("y"), S("z")]},
    "a": {"M": {"b": {"L": [N(0), N(1), {"M": {"c": S("deep")}}]}, "m": {"M": {"k": S("v")}}}},
}


def error_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def get(ddb, table, key=KEY):
    return ddb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")


def update(ddb, table, expression, values=None, names=None, key=KEY, **extra):
    args = dict(TableName=table, Key=key, UpdateExpression=expression, **extra)
    if values is not None:
        args["ExpressionAttributeValues"] = values
    if names is not None:
        args["ExpressionAttributeNames"] = names
    return ddb.update_item(**args)


@pytest.fixture(scope="module")
def hash_table(ddb):
    # One table for the module (creating one per test costs more than the tests); tests use their own keys
    # or reset the item they share.
    name = create_table(ddb, "update_item")
    yield name
    ddb.delete_table(TableName=name)


@pytest.fixture(scope="module")
def range_table(ddb):
    name = create_table(ddb, "update_item_range", range_key=("sk", "S"))
    yield name
    ddb.delete_table(TableName=name)


@pytest.fixture
def doc(ddb, hash_table):
    ddb.put_item(TableName=hash_table, Item=DOC)
    return hash_table


def test_nested_set_remove_add_delete(ddb, doc):
    update(ddb, doc, "SET a.b[2].c = :v, a.b[2].added = :w, a.m.#k = :w, l[1] = :v "
                     "REMOVE a.b[0], l[0] ADD a.m.cnt :one, ns :ns DELETE ss :a",
           {":v": S("V"), ":w": S("W"), ":one": N(1), ":ns": {"NS": ["3"]}, ":a": {"SS": ["a"]}}, {"#k": "k"})
    item = get(ddb, doc)
    assert item["a"]["M"]["b"]["L"] == [N(1), {"M": {"c": S("V"), "added": S("W")}}]
    assert item["a"]["M"]["m"]["M"] == {"k": S("W"), "cnt": N(1)}
    assert item["l"]["L"] == [S("V"), S("z")]                     # old positions, then the shift
    assert sorted(item["ns"]["NS"]) == ["1", "2", "3"] and item["ss"] == {"SS": ["b"]}


def test_list_functions_and_if_not_exists(ddb, doc):
    out = update(ddb, doc, "SET l = list_append(:front, l), l2 = list_append(l, :back), "
                           "n = if_not_exists(n, :zero) + :one, fresh = if_not_exists(fresh, :zero) - :one",
                 {":front": {"L": [S("f")]}, ":back": {"L": [S("b")]}, ":zero": N(0), ":one": N(1)},
                 ReturnValues="UPDATED_NEW")["Attributes"]
    assert out["l"]["L"] == [S("f"), S("x"), S("y"), S("z")]
    assert out["l2"]["L"] == [S("x"), S("y"), S("z"), S("b")]     # right-hand sides read the old item
    assert out["n"] == N(6) and out["fresh"] == N(-1)


def test_parenthesised_set_values(ddb, doc):
    # DynamoDB takes a SET value, or one of its operands, in parentheses
    # (ElectroDB writes SET c = (c - :v)); the operator still joins two operands.
    out = update(ddb, doc, "SET n = (n - :one), m2 = (if_not_exists(m2, :zero) + :one), s = (:s), l = (list_append(l, :l))",
                 {":one": N(1), ":zero": N(0), ":s": S("t"), ":l": {"L": [S("w")]}}, ReturnValues="UPDATED_NEW")
    assert out["Attributes"] == {"n": N(4), "m2": N(1), "s": S("t"), "l": {"L": [S("x"), S("y"), S("z"), S("w")]}}
    assert update(ddb, doc, "SET n = ((n) + :one)", {":one": N(1)}, ReturnValues="ALL_NEW")["Attributes"]["n"] == N(5)
    for text in ("SET n = (n + :one) + :one", "SET n = n + (:one - :one)", "SET n = (n + :one"):
        with pytest.raises(ClientError) as e:
            update(ddb, doc, text, {":one": N(1)})
        assert error_of(e)[0] == "ValidationException" and "Syntax error" in error_of(e)[1]
    assert get(ddb, doc)["n"] == N(5)


def test_set_past_list_end_appends_and_delete_empties_set(ddb, doc):
    update(ddb, doc, "SET l[10] = :v, l[7] = :w DELETE ss :all", {":v": S("ten"), ":w": S("seven"),
                                                                    ":all": {"SS": ["a", "b"]}})
    item = get(ddb, doc)
    assert item["l"]["L"] == [S("x"), S("y"), S("z"), S("seven"), S("ten")]
    assert "ss" not in item


@pytest.mark.parametrize("a, op, b, result", [
    ("10000000000000000000000", "+", "1", "10000000000000000000001"),
    ("10000000000000000000000", "-", "1", "9999999999999999999999"),
    ("99999999999999999999999999999999999999", "+", "1", "100000000000000000000000000000000000000"),
    ("0.1", "+", "0.2", "0.3"), ("-5", "-", "-5", "0"), ("1E-130", "+", "1E-130", "0" + "." + "0" * 129 + "2"),
])
def test_arithmetic_is_exact(ddb, hash_table, a, op, b, result):
    update(ddb, hash_table, f"SET r = :a {op} :b", {":a": N(a), ":b": N(b)})
    assert get(ddb, hash_table)["r"] == N(result)


@pytest.mark.parametrize("a, op, b, message", [
    ("9E125", "+", "9E125", "Number overflow. Attempting to store a number with magnitude larger than supported range"),
    ("-9E125", "-", "9E125", "Number overflow. Attempting to store a number with magnitude larger than supported range"),
    # DynamoDB reports an inexact (more than 38 digits) sum with its overflow message.
    ("1E50", "+", "1", "Number overflow. Attempting to store a number with magnitude larger than supported range"),
    ("1.5E-130", "-", "1.4E-130",
     "Number underflow. Attempting to store a number with magnitude smaller than supported range"),
])
def test_arithmetic_limits(ddb, doc, a, op, b, message):
    with pytest.raises(ClientError) as e:
        update(ddb, doc, f"SET n = :a {op} :b", {":a": N(a), ":b": N(b)})
    assert error_of(e) == ("ValidationException", message)
    assert get(ddb, doc) == DOC


def test_upsert_creates_item(ddb, range_table):
    key = {"pk": S("new"), "sk": S("one")}
    out = update(ddb, range_table, "SET x = :v ADD c :one", {":v": S("v"), ":one": N(1)}, key=key,
                 ReturnValues="ALL_NEW")
    assert out["Attributes"] == {"pk": S("new"), "sk": S("one"), "x": S("v"), "c": N(1)}
    # An UpdateItem with no update at all still creates the item from its key.
    ddb.update_item(TableName=range_table, Key={"pk": S("bare"), "sk": S("k")})
    assert get(ddb, range_table, {"pk": S("bare"), "sk": S("k")}) == {"pk": S("bare"), "sk": S("k")}


def test_nested_path_on_missing_item_is_invalid(ddb, hash_table):
    with pytest.raises(ClientError) as e:
        update(ddb, hash_table, "SET a.b = :v", {":v": N(1)}, key={"pk": S("absent")})
    assert error_of(e) == ("ValidationException",
                           "The document path provided in the update expression is invalid for update")
    assert get(ddb, hash_table, {"pk": S("absent")}) is None


def test_result_over_400kb_rejected(ddb, doc):
    big = S("x" * 250_000)
    update(ddb, doc, "SET big1 = :v", {":v": big})
    with pytest.raises(ClientError) as e:
        update(ddb, doc, "SET big2 = :v", {":v": big})
    assert error_of(e) == ("ValidationException", "Item size to update has exceeded the maximum allowed size")
    item = get(ddb, doc)
    assert "big2" not in item and item["big1"] == big


def test_400kb_limit_counts_dynamodb_size_not_json(ddb, hash_table):
    # A quote is one byte of DynamoDB size and two of JSON: this item's JSON is
    # over 400 KB while its size is not, so only the exact count decides.
    key = {"pk": S("quotes")}
    quoted = S('"' * 300_000)
    update(ddb, hash_table, "SET q = :v", {":v": quoted}, key=key)
    update(ddb, hash_table, "SET #c = if_not_exists(#c, :zero) + :one", {":zero": N(0), ":one": N(1)},
           names={"#c": "cnt"}, key=key)
    assert get(ddb, hash_table, key) == {"pk": S("quotes"), "q": quoted, "cnt": N(1)}
    with pytest.raises(ClientError) as e:
        update(ddb, hash_table, "SET r = :v", {":v": S('"' * 110_000)}, key=key)
    assert error_of(e) == ("ValidationException", "Item size to update has exceeded the maximum allowed size")
    assert get(ddb, hash_table, key) == {"pk": S("quotes"), "q": quoted, "cnt": N(1)}


# Every rejected request: DynamoDB's type and message, and the item untouched.
LONG_SET = "SET " + ", ".join(f"attr{i} = :v" for i in range(400))
BAD = [
    ("SET a = :v REMOVE a.b", {":v": N(1)}, None,
     "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these "
     "paths; path one: [a], path two: [a, b]"),
    ("SET a.b[0] = :v, a.b.c = :v", {":v": N(1)}, None,
     "Invalid UpdateExpression: Two document paths conflict with each other; must remove or rewrite one of these "
     "paths; path one: [a, b, [0]], path two: [a, b, c]"),
    ("SET n = :v, n = :v", {":v": N(1)}, None,
     "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these "
     "paths; path one: [n], path two: [n]"),
    ("SET pk = :v", {":v": S("x")}, None,
     "One or more parameter values were invalid: Cannot update attribute pk. This attribute is part of the key"),
    ("ADD pk.x :v", {":v": N(1)}, None,
     "One or more parameter values were invalid: Cannot update attribute pk. This attribute is part of the key"),
    ("SET s.x = :v", {":v": N(1)}, None, "The document path provided in the update expression is invalid for update"),
    ("REMOVE nope.x", None, None, "The document path provided in the update expression is invalid for update"),
    ("SET l.x = :v", {":v": N(1)}, None, "The document path provided in the update expression is invalid for update"),
    ("SET a.m[0] = :v", {":v": N(1)}, None, "The document path provided in the update expression is invalid for update"),
    ("SET a.b[7].c = :v", {":v": N(1)}, None,
     "The document path provided in the update expression is invalid for update"),
    ("SET x = nope", None, None, "The provided expression refers to an attribute that does not exist in the item"),
    ("SET x = s + :v", {":v": N(1)}, None, "An operand in the update expression has an incorrect data type"),
    ("SET x = list_append(s, :l)", {":l": {"L": []}}, None,
     "An operand in the update expression has an incorrect data type"),
    ("ADD s :v", {":v": N(1)}, None, "An operand in the update expression has an incorrect data type"),
    ("ADD ss :v", {":v": {"NS": ["1"]}}, None, "An operand in the update expression has an incorrect data type"),
    ("DELETE ns :v", {":v": {"SS": ["1"]}}, None, "An operand in the update expression has an incorrect data type"),
    ("ADD x :v", {":v": S("s")}, None,
     "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: STRING"),
    ("DELETE x :v", {":v": N(1)}, None,
     "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE, operand type: NUMBER"),
    ("SET x = n + :v", {":v": S("s")}, None,
     "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: +, "
     "operand type: S"),
    ("SET x = list_append(:v, l)", {":v": N(1)}, None,
     "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: list_append, "
     "operand type: N"),
    ("SET x = if_not_exists(:v, n)", {":v": N(1)}, None,
     "Invalid UpdateExpression: Operator or function requires a document path; operator or function: if_not_exists"),
    ("SET x = if_not_exists(n)", None, None,
     "Invalid UpdateExpression: Incorrect number of operands for operator or function; operator or function: "
     "if_not_exists, number of operands: 1"),
    ("SET x = nofunc(n)", None, None, "Invalid UpdateExpression: Invalid function name; function: nofunc"),
    ("SET x = :v SET y = :v", {":v": N(1)}, None,
     'Invalid UpdateExpression: The "SET" section can only be used once in an update expression;'),
    ("SET x = ", None, None, 'Invalid UpdateExpression: Syntax error; token: "<EOF>", near: "="'),
    ("SET x = a * b", None, None, 'Invalid UpdateExpression: Syntax error; token: "*", near: "a * b"'),
    ("SET status = :v", {":v": N(1)}, None,
     "Invalid UpdateExpression: Attribute name is a reserved keyword; reserved keyword: status"),
    ("SET x = :nope", {":v": N(1)}, None,
     "Invalid UpdateExpression: An expression attribute value used in expression is not defined; "
     "attribute value: :nope"),
    ("SET #nope = :v", {":v": N(1)}, None,
     "Invalid UpdateExpression: An expression attribute name used in the document path is not defined; "
     "attribute name: #nope"),
    ("SET x = :v", {":v": N(1), ":w": N(2)}, None,
     "Value provided in ExpressionAttributeValues unused in expressions: keys: {:w}"),
    ("SET x = :v", {":v": N(1)}, {"#w": "w"},
     "Value provided in ExpressionAttributeNames unused in expressions: keys: {#w}"),
    ("", None, None, "Invalid UpdateExpression: The expression can not be empty;"),
    (LONG_SET, {":v": N(1)}, None,
     f"Invalid UpdateExpression: Expression size has exceeded the maximum allowed size; expression size: {len(LONG_SET)}"),
]


@pytest.mark.parametrize("expression, values, names, message", BAD, ids=range(len(BAD)))
def test_invalid_updates_leave_item_unchanged(ddb, doc, expression, values, names, message):
    with pytest.raises(ClientError) as e:
        update(ddb, doc, expression, values, names)
    assert error_of(e) == ("ValidationException", message)
    assert get(ddb, doc) == DOC


def test_key_update_rejected_before_condition(ddb, doc):
    # The request is invalid whatever the item holds: validation wins over a failing condition.
    with pytest.raises(ClientError) as e:
        update(ddb, doc, "SET pk = :v", {":v": S("x"), ":zero": N(0)}, ConditionExpression="n = :zero")
    assert error_of(e)[0] == "ValidationException"


def test_repeated_request_uses_parse_cache(ddb, doc):
    # Same text and placeholders on every call: results must still follow the item.
    for expected in range(6, 16):
        out = update(ddb, doc, "SET n = n + :one", {":one": N(1)}, ReturnValues="UPDATED_NEW")
        assert out["Attributes"] == {"n": N(expected)}


COUNTER = "SET #c = if_not_exists(#c, :zero) + :one"


@pytest.mark.parametrize("adds", [False, True])
@pytest.mark.parametrize("name,start,step", [
    ("cnt", None, 1), ("cnt", N(-2), 1), ("cnt", N(7), -3), ("cnt", N("9" * 17), 1), ("cnt", N("1.5"), 1),
    ("c nt", N(4), 1), ("a.b-c_9", N(4), 1),
])
def test_counter_updates(ddb, hash_table, name, start, step, adds):
    # The counter idioms are applied to the stored JSON when the counter is the item's last
    # attribute: every item must end as the general path leaves it, attribute order included.
    fast, general = ({"pk": S(f"counter-{way}-{adds}-{name}-{start}")} for way in ("fast", "general"))
    items = {"pk": None, "s": S('x,"cnt":{"N":"5"}}'), "m": {"M": {"cnt": N(5)}}}
    for key in (fast, general):
        item = dict(items, pk=key["pk"])
        if start is not None:
            item[name] = start
        ddb.put_item(TableName=hash_table, Item=item)
    if adds:
        values, text = {":one": N(step)}, "ADD #c :one"
    else:
        values, text = {":zero": N(0), ":one": N(abs(step))}, COUNTER.replace("+", "+" if step > 0 else "-")
    for _ in range(3):
        update(ddb, hash_table, text, values, {"#c": name}, key=fast)
        update(ddb, hash_table, text, values, {"#c": name}, key=general, ReturnValues="ALL_NEW")
    got, want = get(ddb, hash_table, fast), get(ddb, hash_table, general)
    assert list(got) == list(want) and {**got, "pk": None} == {**want, "pk": None}
    first = 0 if start is None else int(start["N"]) if start["N"].lstrip("-").isdigit() else None
    if first is not None:
        assert got[name] == N(first + 3 * step)
    assert got["m"] == {"M": {"cnt": N(5)}} and got["s"] == items["s"]


def test_counter_on_stored_json_takes_only_the_last_top_level_integer():
    def spliced(item, delta=1):
        return _add_to_stored_counter(orjson.dumps(item), ("cnt", delta))
    assert spliced({"pk": S("k"), "cnt": N(41)}) == orjson.dumps({"pk": S("k"), "cnt": N(42)})
    assert spliced({"pk": S("k"), "x": S("y"), "cnt": N(-1)}, -2) == \
        orjson.dumps({"pk": S("k"), "x": S("y"), "cnt": N(-3)})
    for item in ({"pk": S("k"), "cnt": N(1), "z": S("after")},          # not the last attribute
                 {"pk": S("k"), "m": {"M": {"cnt": N(1)}}},             # nested, not top-level
                 {"pk": S("k"), "s": S('x,"cnt":{"N":"5"}}')},          # inside a string
                 {"pk": S("k"), "xcnt": N(1)}, {"pk": S("k"), "cnt": N("1.5")}, {"pk": S("k"), "cnt": S("1")},
                 {"pk": S("k"), "cnt": N("1" * 18)}, {"pk": S("k"), "cnt": N("1E+5")},
                 {"pk": S("k"), "big": S("x" * 409_580), "cnt": N(9)}):  # 400 KB of JSON reached
        assert spliced(item) is None, item


def test_counter_update_checks_what_it_skips(ddb, hash_table):
    key = {"pk": S("counter-checks")}
    ddb.put_item(TableName=hash_table, Item={"pk": S("counter-checks"), "cnt": N(1)})
    update(ddb, hash_table, COUNTER, {":zero": N(0), ":one": N(1)}, {"#c": "cnt"}, key=key)
    update(ddb, hash_table, "SET #c = #c + :one", {":one": N(1)}, {"#c": "cnt"}, key=key)
    assert get(ddb, hash_table, key)["cnt"] == N(3)
    out = update(ddb, hash_table, COUNTER, {":zero": N(0), ":one": N(1)}, {"#c": "cnt"}, key=key,
                 ReturnValues="UPDATED_NEW")
    assert out["Attributes"] == {"cnt": N(4)}
    with pytest.raises(ClientError) as e:
        update(ddb, hash_table, COUNTER, {":zero": N(0), ":one": N(1)}, {"#c": "cnt"}, key=key,
               ConditionExpression="#c = :zero")
    assert error_of(e)[0] == "ConditionalCheckFailedException"
    ddb.put_item(TableName=hash_table, Item={"pk": S("counter-checks"), "cnt": S("41")})
    for text, values in ((COUNTER, {":zero": N(0), ":one": N(1)}), ("ADD #c :one", {":one": N(1)})):
        with pytest.raises(ClientError) as e:
            update(ddb, hash_table, text, values, {"#c": "cnt"}, key=key)
        assert error_of(e) == ("ValidationException",
                               "An operand in the update expression has an incorrect data type")
    assert get(ddb, hash_table, key)["cnt"] == S("41")


def test_concurrent_add_is_exact(server, hash_table):
    threads, per_thread = 8, 40
    key = {"pk": S("counter")}
    errors = []

    def worker():
        client = server.client()        # its own connection: the kernel spreads them over both shards
        try:
            for _ in range(per_thread):
                client.update_item(TableName=hash_table, Key=key, UpdateExpression="ADD #c :one",
                                   ExpressionAttributeNames={"#c": "counter"},
                                   ExpressionAttributeValues={":one": N(1)})
        except Exception as exc:        # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors
    item = server.client().get_item(TableName=hash_table, Key=key, ConsistentRead=True)["Item"]
    assert item["counter"] == N(threads * per_thread)


@pytest.mark.parametrize("update_args", [
    {"UpdateExpression": "REMOVE a, b"},
    {"UpdateExpression": "REMOVE x.y, z[0]"},      # no item, so no document path to be invalid
    {"UpdateExpression": "DELETE ss :v", "ExpressionAttributeValues": {":v": {"SS": ["a"]}}},
    {"AttributeUpdates": {"a": {"Action": "DELETE"}}},
])
def test_an_update_that_only_removes_leaves_an_absent_item_absent(ddb, hash_table, update_args):
    key = {"pk": S("never-created")}
    out = ddb.update_item(TableName=hash_table, Key=key, ReturnValues="ALL_NEW", **update_args)
    assert "Attributes" not in out
    assert get(ddb, hash_table, key) is None
    if "UpdateExpression" in update_args:      # transactions take expressions only
        ddb.transact_write_items(TransactItems=[{"Update": dict(TableName=hash_table, Key=key, **update_args)}])
        assert get(ddb, hash_table, key) is None


def test_an_update_that_adds_or_does_nothing_creates_the_item(ddb, hash_table):
    ddb.update_item(TableName=hash_table, Key={"pk": S("empty-update")})
    assert get(ddb, hash_table, {"pk": S("empty-update")}) == {"pk": S("empty-update")}
    ddb.update_item(TableName=hash_table, Key={"pk": S("mixed")}, UpdateExpression="REMOVE a SET b = :v",
                    ExpressionAttributeValues={":v": N(1)})
    assert get(ddb, hash_table, {"pk": S("mixed")}) == {"pk": S("mixed"), "b": N(1)}
