"""The prepared-expression caches of shardserver.shard.itemsem: a hit answers as the full path does."""

import pytest

from shardserver.errors import ValidationException
from shardserver.shard import expressions as ex
from shardserver.shard import itemsem
from shardserver.shard.catalog import TableSchema


def _table(table_id: str, hash_key: str, range_key: str | None = None, hash_type: str = "S") -> TableSchema:
    definitions = [{"AttributeName": hash_key, "AttributeType": hash_type}]
    if range_key:
        definitions.append({"AttributeName": range_key, "AttributeType": "N"})
    return TableSchema("t", table_id, hash_key, hash_type, range_key, "N" if range_key else None, definitions, 0.0)


def _update(name: str) -> dict:
    return {"TableName": "t", "Key": {}, "UpdateExpression": "SET #k = :v",
            "ExpressionAttributeNames": {"#k": name}, "ExpressionAttributeValues": {":v": {"S": "x"}}}


def _refusal(call, *args) -> str:
    """The message of the ValidationException call(*args) raises."""
    with pytest.raises(ValidationException) as raised:
        call(*args)
    return raised.value.message


def _prepare(request: dict, schema, op: str):
    itemsem.check_before_table(request, op)
    return itemsem.prepare(request, schema, op)


def test_one_expression_on_tables_of_other_key_names():
    # The same text is checked once, but bound per key schema: "id" is a key on one table only.
    by_id, by_pk = _table("a", "id"), _table("b", "pk")
    for _ in range(3):
        assert _prepare(_update("id"), by_pk, "UpdateItem").update is not None
        with pytest.raises(ValidationException, match="Cannot update attribute id"):
            _prepare(_update("id"), by_id, "UpdateItem")
        assert itemsem.prepare(_update("id"), by_pk, "UpdateItem").update is not None


def test_recreated_table_with_other_key_names():
    assert _prepare(_update("pk"), _table("old", "id"), "UpdateItem").update is not None
    with pytest.raises(ValidationException, match="Cannot update attribute pk"):
        _prepare(_update("pk"), _table("new", "pk"), "UpdateItem")


def test_checked_text_still_checks_unused_values():
    request = _update("a")
    request["ExpressionAttributeValues"][":w"] = {"S": "y"}
    for _ in range(2):
        with pytest.raises(ValidationException, match="unused in expressions: keys: {:w}"):
            _prepare(dict(request), _table("a", "id"), "UpdateItem")


def _query(value, table_key: str = "pk") -> dict:
    return {"TableName": "t", "KeyConditionExpression": "#p = :p", "ExpressionAttributeNames": {"#p": table_key},
            "ExpressionAttributeValues": {":p": value}}


@pytest.mark.parametrize("value, message", [
    ({"S": ""}, "empty string value"),
    ({"N": "1"}, "Condition parameter type does not match schema type"),
    ({"S": "a", "N": "1"}, "Supplied AttributeValue has more than one datatypes set"),
    ({}, "Supplied AttributeValue is empty"),
    ("a", None),
])
def test_query_hit_checks_its_value_as_a_miss_does(value, message):
    schema = _table("q", "pk", "sk")
    for _ in range(2):
        assert _prepare(_query({"S": "p1"}), schema, "Query").key_condition == ({"S": "p1"}, None, [])
        with pytest.raises(ValidationException, match=message) as hit:
            itemsem.prepare(_query(value), schema, "Query")
        itemsem._query_cache.clear()
        assert _refusal(itemsem.prepare, _query(value), schema, "Query") == hit.value.message


def test_query_of_a_recreated_table_with_a_number_key():
    assert itemsem.prepare(_query({"S": "p1"}), _table("q1", "pk"), "Query").key_condition[0] == {"S": "p1"}
    with pytest.raises(ValidationException, match="type does not match schema type"):
        itemsem.prepare(_query({"S": "p1"}), _table("q2", "pk", hash_type="N"), "Query")


def test_values_checked_before_the_table_are_the_ones_bound():
    schema = _table("a", "id")
    for text in ("x", "y", "x"):
        request = _update("a")
        request["ExpressionAttributeValues"] = {":v": {"S": text}}
        update = _prepare(request, schema, "UpdateItem").update
        item, _ = ex.apply_update(update, {"id": {"S": "k"}}, None, {"id"})
        assert item["a"] == {"S": text}
        assert "\0context" not in request


@pytest.mark.parametrize("value", [{"S": "a", "N": "1"}, {"N": "x"}, {"BOOL": 1}, {}, "a", None, {"S": ""}])
def test_a_known_structure_checks_its_new_values_as_the_full_check_does(value):
    request = _update("a")
    itemsem.check_before_table(dict(request), "UpdateItem")        # the structure, known
    request["ExpressionAttributeValues"] = {":v": value}
    if value == {"S": ""}:
        itemsem.check_before_table(dict(request), "UpdateItem")    # a valid value, in a SET
        return
    hit = _refusal(itemsem.check_before_table, dict(request), "UpdateItem")
    itemsem._structures.clear()
    itemsem._checked.clear()
    assert _refusal(itemsem.check_before_table, dict(request), "UpdateItem") == hit



def test_a_filter_of_a_known_structure_tests_its_own_values():
    schema = _table("s", "id")
    for text in ("x", "y"):
        scan = {"TableName": "t", "FilterExpression": "#a = :v", "ExpressionAttributeNames": {"#a": "a"},
                "ExpressionAttributeValues": {":v": {"S": text}}}
        test = itemsem.prepare(scan, schema, "Scan").filter
        assert test({"a": {"S": text}}) and not test({"a": {"S": "z"}})
    scan["ExpressionAttributeValues"] = {":v": {"N": "x"}}
    hit = _refusal(itemsem.prepare, dict(scan), schema, "Scan")
    itemsem._structures.clear()
    assert _refusal(itemsem.prepare, dict(scan), schema, "Scan") == hit


def test_names_are_checked_unless_this_very_structure_passed():
    itemsem.check_before_table(_update("a"), "UpdateItem")
    for name, message in (("", "Empty attribute name for key #k"), ("a" * 65536, "Attribute name")):
        with pytest.raises(ValidationException, match=message):
            itemsem.check_before_table(_update(name), "UpdateItem")


def test_a_batch_get_projection_from_the_cache():
    schema = _table("g", "pk")
    for _ in range(2):
        spec = {"Keys": [{"pk": {"S": "k"}}], "ProjectionExpression": "#a, b", "ExpressionAttributeNames": {"#a": "a"}}
        _prepare(spec, schema, "BatchGetItem")      # the same spec, prepared twice
        projection = _prepare(spec, schema, "BatchGetItem").projection
        assert projection({"pk": {"S": "k"}, "a": {"N": "1"}, "c": {"S": "x"}}) == {"a": {"N": "1"}}
        assert list(spec) == ["Keys", "ProjectionExpression", "ExpressionAttributeNames"]


def _indexed(attribute: str, kind: str = "S") -> TableSchema:
    schema = _table("i", "pk", "sk")
    schema.attribute_definitions.append({"AttributeName": attribute, "AttributeType": kind})
    schema.global_indexes = [{"IndexName": "by", "KeySchema": [{"AttributeName": attribute, "KeyType": "HASH"}],
                              "Projection": {"ProjectionType": "ALL"}}]
    return schema


def _index_query(value: dict) -> dict:
    return {"TableName": "t", "IndexName": "by", "KeyConditionExpression": "#e = :e",
            "ExpressionAttributeNames": {"#e": "email"}, "ExpressionAttributeValues": {":e": value}}


def test_an_index_query_from_the_cache_and_a_recreated_index():
    for _ in range(2):
        for value in ({"S": "a@x"}, {"S": "b@x"}):
            assert itemsem.prepare(_index_query(value), _indexed("email"), "Query").key_condition == (value, None, [])
    # The same index name, one table id: another key attribute, then another key type.
    for schema in (_indexed("name"), _indexed("email", "N")):
        hit = _refusal(itemsem.prepare, _index_query({"S": "a@x"}), schema, "Query")
        itemsem._query_cache.clear()
        assert _refusal(itemsem.prepare, _index_query({"S": "a@x"}), schema, "Query") == hit
    with pytest.raises(ValidationException, match="does not have the specified index"):
        itemsem.prepare(_index_query({"S": "a@x"}), _table("i", "pk", "sk"), "Query")
