"""The PartiQL lexer, parser and translator on plain strings: no server, no storage."""

from types import SimpleNamespace

import pytest

from shardserver.errors import ValidationException
from shardserver.shard.partiql import ast
from shardserver.shard.partiql.lexer import MALFORMED, tokenize
from shardserver.shard.partiql.parser import parse
from shardserver.shard.partiql.translate import output_name, plan, shape_item

TABLE = SimpleNamespace(hash_key="pk", hash_type="S", range_key="sk", range_type="N",
                        global_indexes=[{"IndexName": "g", "KeySchema": [
                            {"AttributeName": "gh", "KeyType": "HASH"}, {"AttributeName": "gr", "KeyType": "RANGE"}]}],
                        local_indexes=[])
HASH_ONLY = SimpleNamespace(hash_key="pk", hash_type="S", range_key=None, range_type=None, global_indexes=[],
                            local_indexes=[])


def planned(text, *parameters, schema=TABLE):
    return plan(parse(text), schema, list(parameters))


def refused(text, *parameters, schema=TABLE) -> str:
    with pytest.raises(ValidationException) as excinfo:
        planned(text, *parameters, schema=schema)
    return excinfo.value.message


# ------------------------------------------------------------------ lexer

def test_tokens_quotes_comments_and_case():
    tokens = tokenize("sElEcT \"a\"\"b\", 'it''s' -- comment\n /* block */ from x where y <> ? ;")
    assert [(t.kind, t.text) for t in tokens] == [
        ("keyword", "SELECT"), ("qident", 'a"b'), ("punct", ","), ("string", "it's"), ("keyword", "FROM"),
        ("ident", "x"), ("keyword", "WHERE"), ("ident", "y"), ("punct", "<>"), ("param", "?"), ("punct", ";"),
        ("eof", "")]


def test_numbers_and_bags_tokenize():
    assert [t.text for t in tokenize("<<1.5e3, .5, 10>>")][:-1] == ["<<", "1.5e3", ",", ".5", ",", "10", ">>"]


@pytest.mark.parametrize("text", ["SELECT 'open", "SELECT \"open", "SELECT /* open", "SELECT # FROM t"])
def test_lexer_errors_are_malformed_statements(text):
    with pytest.raises(ValidationException) as excinfo:
        tokenize(text)
    assert excinfo.value.message.startswith(MALFORMED)


# ------------------------------------------------------------------ parser

def test_select_tree():
    statement = parse('SELECT a, m.k[1], "x.y" FROM "t"."i" WHERE pk = ? AND NOT (b > 1 OR c IS NOT MISSING) '
                      "ORDER BY sk DESC, pk")
    select = statement.body
    assert statement.parameter_count == 1
    assert select.table == "t" and select.index == "i"
    assert select.projection == (ast.Path(("a",)), ast.Path(("m", "k", 1)), ast.Path(("x.y",)))
    assert select.order_by == ((ast.Path(("sk",)), True), (ast.Path(("pk",)), False))
    first, second = select.where.operands
    assert first == ast.Compare("=", ast.Path(("pk",)), ast.Param(0))
    assert second == ast.Not(ast.Or((ast.Compare(">", ast.Path(("b",)), ast.Scalar({"N": "1"})),
                                     ast.Is(ast.Path(("c",)), "MISSING", True))))


def test_value_literals():
    item = parse("insert into t value {'s': 'x', 'n': -2, 'b': true, 'z': null, 'l': [1, ?], 'g': <<'a'>>, "
                 "'m': {}}").body.item
    assert dict(item.pairs) == {"s": ast.Scalar({"S": "x"}), "n": ast.Scalar({"N": "-2"}),
                                "b": ast.Scalar({"BOOL": True}), "z": ast.Scalar({"NULL": True}),
                                "l": ast.List((ast.Scalar({"N": "1"}), ast.Param(0))),
                                "g": ast.Bag((ast.Scalar({"S": "a"}),)), "m": ast.Tuple(())}


def test_update_and_delete_trees():
    update = parse("UPDATE t SET a = a + 1, b = list_append(b, [1]) SET c = 2 REMOVE d, e.f "
                   "WHERE pk = 'x' RETURNING MODIFIED OLD *").body
    assert [a[0] for a in update.actions] == ["SET", "SET", "SET", "REMOVE", "REMOVE"]
    assert update.actions[0][2] == ast.Arith("+", ast.Path(("a",)), ast.Scalar({"N": "1"}))
    assert update.returning == "UPDATED_OLD"
    delete = parse("delete from t where pk = 'x' returning all old *").body
    assert isinstance(delete, ast.Delete) and delete.returning == "ALL_OLD"
    exists = parse("EXISTS(SELECT * FROM t WHERE pk = 'x')").body
    assert isinstance(exists, ast.Exists) and exists.select.table == "t"


@pytest.mark.parametrize("text", [
    "", ";", "SELEC * FROM t", "SELECT * FROM", "SELECT * FROM t WHERE", "SELECT a FROM t t2",
    "SELECT * FROM t WHERE a = ", "SELECT * FROM t WHERE a BETWEEN 1", "INSERT INTO t VALUE {'a' 1}",
    "INSERT INTO t VALUE {a: 1}", "UPDATE t WHERE pk = 1", "UPDATE t SET a WHERE pk = 1",
    "DELETE t WHERE pk = 1", "SELECT * FROM t WHERE a[x] = 1", "SELECT * FROM t; SELECT * FROM t",
    "UPDATE t SET a = 1 WHERE pk = 1 RETURNING SOME OLD *", "CREATE TABLE t",
])
def test_syntax_errors(text):
    with pytest.raises(ValidationException) as excinfo:
        parse(text)
    assert excinfo.value.message.startswith(MALFORMED)


@pytest.mark.parametrize("text, message", [
    ("SELECT * FROM t LIMIT 1", "Unsupported clause: LIMIT"),
    ("SELECT a AS b FROM t", "Aliasing is not supported"),
    ("SELECT *, a FROM t", "Other attributes should not be present in the projection when '*' is used."),
    ("SELECT a, * FROM t", "Other attributes should not be present in the projection when '*' is used."),
    ("SELECT * FROM a, b", "Only select from a single table or index is supported."),
    ("SELECT * FROM t WHERE a[*].b = 1", "Wildcard path component like a[*].b are not supported"),
    ("SELECT * FROM t WHERE \"\" = 1", "Path component cannot be an empty string"),
    ("INSERT INTO t VALUES {'pk': 'a'}", 'Unsupported operation: Inserting multiple items in a single statement '
     'is not supported, use "INSERT INTO tableName VALUE item" instead'),
    ("INSERT INTO t VALUE {'pk': 'a'} RETURNING ALL OLD *", "RETURNING is not supported in INSERT"),
    ("DELETE FROM t WHERE pk = 'a' RETURNING MODIFIED OLD *", "Invalid returning clause: RETURNING MODIFIED OLD "
     "*. Only RETURNING ALL OLD * is allowed in DELETE statements."),
    ("SELECT * FROM t WHERE a IN []", "IN operator must have a left hand argument of type Variable Reference and "
     "right hand argument of type Seq with at least one member"),
])
def test_refusals_in_dynamodb_words(text, message):
    with pytest.raises(ValidationException) as excinfo:
        parse(text)
    assert excinfo.value.message == message


def test_in_takes_brackets_or_parentheses():
    assert parse("SELECT * FROM t WHERE a IN (1, ?)").body.where == parse("SELECT * FROM t WHERE a IN [1, ?]").body.where


def test_question_mark_in_a_string_is_no_parameter():
    assert parse("SELECT * FROM t WHERE a = '?' AND b = ?").parameter_count == 1


# ------------------------------------------------------------------ translation

def test_full_key_select_is_a_get_item():
    result = planned("SELECT a.b FROM t WHERE sk = 1 AND pk = ?", {"S": "x"})
    assert result.op == "GetItem" and result.full_key
    assert result.request["Key"] == {"pk": {"S": "x"}, "sk": {"N": "1"}}
    assert result.request["ProjectionExpression"] == "#n0"
    assert result.request["ExpressionAttributeNames"] == {"#n0": "a"}


def test_partition_key_select_is_a_query_with_key_condition_and_filter():
    result = planned("SELECT * FROM t WHERE pk = 'x' AND v < 3 AND 5 <= sk ORDER BY sk DESC")
    request = result.request
    assert result.op == "Query" and not result.full_key
    names = {v: k for k, v in request["ExpressionAttributeNames"].items()}
    assert request["KeyConditionExpression"] == f"{names['pk']} = :v0 AND {names['sk']} >= :v1"
    assert request["FilterExpression"] == f"{names['v']} < :v2"
    assert request["ScanIndexForward"] is False
    assert request["ExpressionAttributeValues"] == {":v0": {"S": "x"}, ":v1": {"N": "5"}, ":v2": {"N": "3"}}


def test_index_select_uses_the_index_key():
    result = planned('SELECT * FROM "t"."g" WHERE gh = 1 AND begins_with(gr, \'a\')')
    assert result.op == "Query" and result.request["IndexName"] == "g"
    assert "begins_with" in result.request["KeyConditionExpression"] and "FilterExpression" not in result.request
    assert planned('SELECT * FROM "t"."g" WHERE pk = \'x\' AND sk = 1').op == "Scan"


@pytest.mark.parametrize("text", [
    "SELECT * FROM t", "SELECT * FROM t WHERE pk > 'a'", "SELECT * FROM t WHERE pk = 'a' OR v = 'b'",
    "SELECT * FROM t WHERE v = 1", "SELECT * FROM t WHERE pk = 'a' AND sk > 1 AND sk < 5",
    "SELECT * FROM t WHERE (pk = 'a' AND v = 1) OR (pk = 'a' AND v = 2)",
    "SELECT * FROM t WHERE pk IN ['a', 'b'] AND sk > 1 AND sk < 5",
])
def test_everything_else_is_a_scan(text):
    result = planned(text)
    assert result.op == "Scan" and "KeyConditionExpression" not in result.request


def test_insert_is_a_conditional_put():
    result = planned("INSERT INTO t VALUE {'pk': ?, 'sk': 1, 'v': <<1, 2>>}", {"S": "a"})
    assert result.op == "PutItem"
    assert result.request["Item"] == {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"NS": ["1", "2"]}}
    assert result.request["ConditionExpression"] == "attribute_not_exists(#n0)"


def test_update_is_a_conditional_update_item():
    result = planned("UPDATE t SET a = 1, s = set_add(s, <<'x'>>) REMOVE r SET d = set_delete(d, ?) "
                     "WHERE pk = 'a' AND sk = 1 AND v > 0 RETURNING ALL NEW *", {"NS": ["1"]})
    request = result.request
    assert result.op == "UpdateItem" and request["Key"] == {"pk": {"S": "a"}, "sk": {"N": "1"}}
    assert request["UpdateExpression"] == "SET #n0 = :v0 REMOVE #n2 ADD #n1 :v1 DELETE #n3 :v2"
    assert request["ConditionExpression"] == "attribute_exists(#n4) AND (#n5 > :v3)"
    assert request["ReturnValues"] == "ALL_NEW"


def test_delete_condition_spares_an_absent_item():
    request = planned("DELETE FROM t WHERE pk = 'a' AND sk = 1 AND v = 2").request
    assert request["ConditionExpression"] == "attribute_not_exists(#n0) OR (#n1 = :v0)"
    assert "ConditionExpression" not in planned("DELETE FROM t WHERE pk = 'a' AND sk = 1").request


@pytest.mark.parametrize("text, parameters, message", [
    ("SELECT * FROM t WHERE pk = ?", [], "Number of parameters in request and statement don't match."),
    ("SELECT * FROM t", [{"S": "a"}], "Number of parameters in request and statement don't match."),
    ("UPDATE t SET a = 1 WHERE pk = 'a'", [], "Where clause does not contain a mandatory equality on all key "
     "attributes"),
    ("DELETE FROM t WHERE pk = 'a' OR sk = 1", [], "Where clause does not contain a mandatory equality on all "
     "key attributes"),
    ("DELETE FROM t WHERE pk = 1 AND sk = 1", [], "Key attribute's data type should match its data type in "
     "table's schema: Key pk"),
    ("SELECT * FROM t WHERE pk = ? AND sk = 1", [{"N": "1"}], "Key attribute's data type should match its data "
     "type in table's schema: Key pk"),
    ("INSERT INTO t VALUE {'pk': 'a'}", [], "Key attribute should be present in the item: Key sk"),
    ("INSERT INTO t VALUE {'pk': 'a', 'sk': 1, 's': <<?>>}", [{"S": "x"}],
     "Unsupported data type in Bag. DynamoDB only supports either numbers or strings in bags"),
    ("UPDATE t SET a = set_add(a, [1]) WHERE pk = 'a' AND sk = 1", [],
     "The second argument to SET_ADD must be a value with type SET"),
    ("SELECT a, b.a FROM t", [], "Duplicate identifiers in select clause: a"),
    ("SELECT * FROM t WHERE pk = 'a' ORDER BY v", [], "Variable reference v in ORDER BY clause must be part of "
     "the primary key"),
    ("SELECT * FROM t WHERE size(a)", [], "WHERE clause must contain an expression that resolves to a boolean"),
])
def test_translation_refusals(text, parameters, message):
    assert refused(text, *parameters) == message


def test_hash_only_table_full_key():
    assert planned("SELECT * FROM t WHERE pk = 'a'", schema=HASH_ONLY).op == "GetItem"
    assert planned("SELECT * FROM t WHERE pk = 'a' AND v = 1", schema=HASH_ONLY).op == "Query"


def test_projected_items_are_named_by_their_last_name():
    paths = parse("SELECT a, m.k[1], l[0][1], m.none FROM t").body.projection
    assert [output_name(p) for p in paths] == ["a", "k[1]", "l[0][1]", "none"]
    item = {"a": {"S": "x"}, "m": {"M": {"k": {"L": [{"N": "1"}, {"N": "2"}]}}},
            "l": {"L": [{"L": [{"S": "p"}, {"S": "q"}]}]}}
    assert shape_item(item, paths) == {"a": {"S": "x"}, "k[1]": {"N": "2"}, "l[0][1]": {"S": "q"}}
    assert shape_item(item, None) is item


def test_partition_keys_in_or_or_are_one_read_each():
    result = planned("SELECT * FROM t WHERE pk IN ['b', ?, 'b'] AND v = 1 ORDER BY pk DESC, sk DESC", {"S": "a"})
    assert result.op == "Reads" and result.request == {}
    assert [p.op for p in result.parts] == ["Query", "Query"]
    assert [p.request["ExpressionAttributeValues"][":v0"] for p in result.parts] == [{"S": "b"}, {"S": "a"}]
    assert all(p.request["ScanIndexForward"] is False and "FilterExpression" in p.request for p in result.parts)
    result = planned("SELECT * FROM t WHERE pk = 'x' AND sk = 1 OR pk = 'y'")
    assert [p.op for p in result.parts] == ["GetItem", "Query"]
    numbers = planned("SELECT * FROM t WHERE pk IN [10, 9, -1] ORDER BY pk", schema=SimpleNamespace(
        hash_key="pk", hash_type="N", range_key=None, range_type=None, global_indexes=[], local_indexes=[]))
    assert [p.request["Key"]["pk"]["N"] for p in numbers.parts] == ["-1", "9", "10"]


def test_decomposed_reads_refusals():
    assert refused("SELECT * FROM t WHERE pk IN ['a', 'b'] ORDER BY sk") == (
        "Must have hash key in ORDER BY clause when more than one hash key condition specified in WHERE clause.")
    many = ", ".join(f"'{i}'" for i in range(101))
    assert refused(f"SELECT * FROM t WHERE pk IN [{many}]") == "Too many decomposed read operations for a given query."
