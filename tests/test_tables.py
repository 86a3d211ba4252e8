"""Table operations through boto3 against a real server."""

import threading

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, ParamValidationError

from conftest import create_table


def error_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def test_create_describe_list_delete(ddb, table_name):
    resp = ddb.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "n", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"},
                              {"AttributeName": "n", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST")
    desc = resp["TableDescription"]
    assert desc["TableName"] == table_name
    assert desc["TableStatus"] == "CREATING"          # as DynamoDB answers CreateTable
    assert desc["KeySchema"][1] == {"AttributeName": "n", "KeyType": "RANGE"}
    ddb.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 0.1})
    table = ddb.describe_table(TableName=table_name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["TableArn"].endswith(":table/" + table_name)
    assert table["TableId"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["ItemCount"] == 0 and table["TableSizeBytes"] == 0
    assert table_name in ddb.list_tables()["TableNames"]
    ddb.delete_table(TableName=table_name)
    with pytest.raises(ClientError) as e:
        ddb.describe_table(TableName=table_name)
    assert error_of(e)[0] == "ResourceNotFoundException"
    assert table_name not in ddb.list_tables()["TableNames"]


def test_create_existing_table(ddb, hash_table):
    with pytest.raises(ClientError) as e:
        create_table(ddb, hash_table)
    assert error_of(e) == ("ResourceInUseException", f"Table already exists: {hash_table}")


def test_item_count_and_size(ddb, hash_table):
    for i in range(50):
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": f"k{i}"}, "v": {"S": "x" * 10}})
    ddb.put_item(TableName=hash_table, Item={"pk": {"S": "k0"}, "v": {"S": "y"}})
    ddb.delete_item(TableName=hash_table, Key={"pk": {"S": "k1"}})
    table = ddb.describe_table(TableName=hash_table)["Table"]
    assert table["ItemCount"] == 49
    assert table["TableSizeBytes"] > 0


def test_list_tables_paging(ddb):
    names = [f"page_{i:02d}" for i in range(7)]
    for name in names:
        create_table(ddb, name)
    try:
        seen, start = [], None
        while True:
            kwargs = {"Limit": 3}
            if start:
                kwargs["ExclusiveStartTableName"] = start
            resp = ddb.list_tables(**kwargs)
            assert len(resp["TableNames"]) <= 3
            seen += resp["TableNames"]
            start = resp.get("LastEvaluatedTableName")
            if not start:
                break
        assert [n for n in seen if n.startswith("page_")] == names
        assert seen == sorted(seen)
    finally:
        for name in names:
            ddb.delete_table(TableName=name)


def test_list_tables_member_rules_are_reported_together(server):
    """A bad start name and a bad Limit in one message; the start's pattern is named before its length."""
    loose = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                         aws_access_key_id="x", aws_secret_access_key="y",
                         config=BotoConfig(parameter_validation=False, retries={"max_attempts": 1}))
    rule = "failed to satisfy constraint: Member must"
    with pytest.raises(ClientError) as e:
        loose.list_tables(ExclusiveStartTableName="a;", Limit=500)
    assert error_of(e) == ("ValidationException", "3 validation errors detected: "
                           f"Value 'a;' at 'exclusiveStartTableName' {rule} satisfy regular expression pattern: "
                           f"[a-zA-Z0-9_.-]+; Value 'a;' at 'exclusiveStartTableName' {rule} have length greater "
                           f"than or equal to 3; Value '500' at 'limit' {rule} have value less than or equal to 100")


@pytest.mark.parametrize("kwargs, code, fragment", [
    (dict(TableName="ab"), "ValidationException", "length greater than or equal to 3"),
    (dict(TableName="bad name!"), "ValidationException", "regular expression pattern"),
])
def test_create_table_bad_names(ddb, kwargs, code, fragment):
    with pytest.raises((ClientError, ParamValidationError)) as e:
        ddb.create_table(KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST", **kwargs)
    if isinstance(e.value, ClientError):
        assert error_of(e)[0] == code and fragment in error_of(e)[1]


def test_create_table_bad_schemas(ddb, table_name):
    cases = [
        ([{"AttributeName": "id", "KeyType": "RANGE"}], [{"AttributeName": "id", "AttributeType": "S"}],
         "not a HASH key type"),
        ([{"AttributeName": "id", "KeyType": "HASH"}], [{"AttributeName": "other", "AttributeType": "S"}],
         "Some index key attributes are not defined"),
        ([{"AttributeName": "id", "KeyType": "HASH"}],
         [{"AttributeName": "id", "AttributeType": "S"}, {"AttributeName": "x", "AttributeType": "S"}],
         "does not exactly match"),
        ([{"AttributeName": "id", "KeyType": "HASH"}], [{"AttributeName": "id", "AttributeType": "BOOL"}],
         "enum value set: [B, N, S]"),
        # Fewer definitions than key elements on a table without indexes: DynamoDB's own wording,
        # even when the two elements name one attribute; with enough definitions that is its own error.
        ([{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "id", "KeyType": "RANGE"}],
         [{"AttributeName": "id", "AttributeType": "S"}], "Some index key attribute have no definition"),
        ([{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "s", "KeyType": "RANGE"}],
         [{"AttributeName": "id", "AttributeType": "S"}], "Some index key attribute have no definition"),
        ([{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "id", "KeyType": "RANGE"}],
         [{"AttributeName": "id", "AttributeType": "S"}, {"AttributeName": "x", "AttributeType": "S"}],
         "Invalid KeySchema: Both the Hash Key and the Range"),
        ([{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "s", "KeyType": "RANGE"},
          {"AttributeName": "t", "KeyType": "RANGE"}], [{"AttributeName": "id", "AttributeType": "S"}],
         "Value '[KeySchemaElement(attributeName=id, keyType=HASH), KeySchemaElement(attributeName=s, "
         "keyType=RANGE), KeySchemaElement(attributeName=t, keyType=RANGE)]' at 'keySchema' failed to satisfy "
         "constraint: Member must have length less than or equal to 2"),
    ]
    for key_schema, definitions, fragment in cases:
        with pytest.raises(ClientError) as e:
            ddb.create_table(TableName=table_name, KeySchema=key_schema, AttributeDefinitions=definitions,
                             BillingMode="PAY_PER_REQUEST")
        assert error_of(e)[0] == "ValidationException"
        assert fragment in error_of(e)[1]


def test_create_table_without_table_name_says_it_is_required(server):
    from test_request_shapes import call
    status, reply = call(server, "CreateTable", {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}], "BillingMode": "PAY_PER_REQUEST"})
    assert status == 400
    assert reply["message"] == "The parameter 'TableName' is required but was not present in the request"


def test_create_table_member_constraints_are_reported_together(server, table_name):
    # DynamoDB's model validation names every member that breaks its own constraint in one
    # message, before any rule between members (key types' order, a key's definition).
    from test_request_shapes import call
    status, reply = call(server, "CreateTable", {
        "TableName": table_name, "AttributeDefinitions": [{}, {"AttributeName": "b", "AttributeType": "SS"}],
        "KeySchema": [{"KeyType": "HASH"}, {"AttributeName": "a"}, {"KeyType": "Woop", "AttributeName": "a"}],
        "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": -1}})
    assert status == 400 and reply["__type"].endswith("#ValidationException")
    rule = "failed to satisfy constraint: Member must"
    assert reply["message"] == "9 validation errors detected: " + "; ".join([
        f"Value null at 'attributeDefinitions.1.member.attributeName' {rule} not be null",
        f"Value null at 'attributeDefinitions.1.member.attributeType' {rule} not be null",
        f"Value 'SS' at 'attributeDefinitions.2.member.attributeType' {rule} satisfy enum value set: [B, N, S]",
        f"Value '0' at 'provisionedThroughput.readCapacityUnits' {rule} have value greater than or equal to 1",
        f"Value '-1' at 'provisionedThroughput.writeCapacityUnits' {rule} have value greater than or equal to 1",
        "Value '[KeySchemaElement(attributeName=null, keyType=HASH), KeySchemaElement(attributeName=a, "
        "keyType=null), KeySchemaElement(attributeName=a, keyType=Woop)]' at 'keySchema' "
        f"{rule} have length less than or equal to 2",
        f"Value null at 'keySchema.1.member.attributeName' {rule} not be null",
        f"Value null at 'keySchema.2.member.keyType' {rule} not be null",
        f"Value 'Woop' at 'keySchema.3.member.keyType' {rule} satisfy enum value set: [HASH, RANGE]"])
    # One bad member alone: its constraint, not the key schema's two HASH elements.
    status, reply = call(server, "CreateTable", {
        "TableName": table_name, "AttributeDefinitions": [{"AttributeName": "b", "AttributeType": "SS"}],
        "KeySchema": [{"KeyType": "HASH", "AttributeName": "a"}, {"KeyType": "HASH", "AttributeName": "a"}],
        "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}})
    assert reply["message"] == ("1 validation error detected: Value 'SS' at 'attributeDefinitions.1.member."
                                f"attributeType' {rule} satisfy enum value set: [B, N, S]")
    status, reply = call(server, "CreateTable", {"TableName": table_name, "AttributeDefinitions": []})
    assert reply["message"] == f"1 validation error detected: Value null at 'keySchema' {rule} not be null"


def test_create_table_refuses_capacity_out_of_bounds(ddb, table_name):
    # As UpdateTable does: more than 10^12 units is refused before the key schema is looked at.
    for read, write, refused in ((1000000000001, 1, "ReadCapacityUnits"), (1, 1000000000001, "WriteCapacityUnits")):
        with pytest.raises(ClientError) as e:
            ddb.create_table(TableName=table_name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                             AttributeDefinitions=[],
                             ProvisionedThroughput={"ReadCapacityUnits": read, "WriteCapacityUnits": write})
        assert error_of(e) == ("ValidationException", f"Given value 1000000000001 for {refused} is out of bounds")
    assert table_name not in ddb.list_tables()["TableNames"]


def test_create_table_duplicate_attribute_definition(ddb, table_name):
    with pytest.raises(ClientError) as e:
        ddb.create_table(TableName=table_name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"},
                                               {"AttributeName": "id", "AttributeType": "N"}],
                         BillingMode="PAY_PER_REQUEST")
    assert error_of(e) == ("ValidationException", "Attribute Name is duplicated: id")


def test_delete_table_answer_leaves_the_schema_out(ddb, table_name):
    ddb.create_table(TableName=table_name,
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"},
                                {"AttributeName": "n", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"},
                                           {"AttributeName": "n", "AttributeType": "N"},
                                           {"AttributeName": "g", "AttributeType": "S"}],
                     GlobalSecondaryIndexes=[{"IndexName": "by_g",
                                              "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                              "Projection": {"ProjectionType": "ALL"}}],
                     LocalSecondaryIndexes=[{"IndexName": "by_g_local",
                                             "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"},
                                                           {"AttributeName": "g", "KeyType": "RANGE"}],
                                             "Projection": {"ProjectionType": "KEYS_ONLY"}}],
                     BillingMode="PAY_PER_REQUEST")
    table = ddb.describe_table(TableName=table_name)["Table"]
    gone = ddb.delete_table(TableName=table_name)["TableDescription"]
    assert gone["TableStatus"] == "DELETING"
    for member in ("TableName", "TableId", "TableArn", "BillingModeSummary", "ProvisionedThroughput"):
        assert gone[member] == table[member]
    for member in ("CreationDateTime", "KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes",
                   "LocalSecondaryIndexes"):
        assert member in table and member not in gone
    assert table_name not in ddb.list_tables()["TableNames"]


def test_billing_mode_rules(ddb, table_name):
    base = dict(TableName=table_name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    with pytest.raises(ClientError) as e:
        ddb.create_table(**base)
    assert "ReadCapacityUnits and WriteCapacityUnits must both be specified" in error_of(e)[1]
    with pytest.raises(ClientError) as e:
        ddb.create_table(BillingMode="PAY_PER_REQUEST",
                         ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}, **base)
    assert "PAY_PER_REQUEST" in error_of(e)[1]
    ddb.create_table(ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 7}, **base)
    table = ddb.describe_table(TableName=table_name)["Table"]
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
    assert "BillingModeSummary" not in table
    ddb.delete_table(TableName=table_name)


def test_billing_mode_summary_appears_once_a_table_has_been_on_demand(ddb, table_name):
    # DynamoDB describes a provisioned table that never was on demand without a BillingModeSummary;
    # LastUpdateToPayPerRequestDateTime dates the last switch to PAY_PER_REQUEST, and stays after a switch back.
    base = dict(TableName=table_name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    created = ddb.create_table(BillingMode="PROVISIONED",
                               ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}, **base)
    assert "BillingModeSummary" not in created["TableDescription"]
    assert "BillingModeSummary" not in ddb.describe_table(TableName=table_name)["Table"]
    updated = ddb.update_table(TableName=table_name, BillingMode="PAY_PER_REQUEST")["TableDescription"]
    summary = updated["BillingModeSummary"]
    assert summary["BillingMode"] == "PAY_PER_REQUEST"
    assert summary["LastUpdateToPayPerRequestDateTime"] >= updated["CreationDateTime"]
    back = ddb.update_table(TableName=table_name, BillingMode="PROVISIONED",
                            ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1})
    assert back["TableDescription"]["BillingModeSummary"] == {
        "BillingMode": "PROVISIONED", "LastUpdateToPayPerRequestDateTime": summary["LastUpdateToPayPerRequestDateTime"]}
    assert ddb.describe_table(TableName=table_name)["Table"]["BillingModeSummary"]["BillingMode"] == "PROVISIONED"
    ddb.delete_table(TableName=table_name)


def test_missing_tables(ddb):
    for call in (lambda: ddb.describe_table(TableName="nope_nope"),
                 lambda: ddb.delete_table(TableName="nope_nope"),
                 lambda: ddb.get_item(TableName="nope_nope", Key={"k": {"S": "x"}}),
                 lambda: ddb.put_item(TableName="nope_nope", Item={"k": {"S": "x"}})):
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e)[0] == "ResourceNotFoundException"


def test_describe_endpoints_and_limits(server, ddb):
    endpoints = ddb.describe_endpoints()["Endpoints"]
    assert endpoints[0]["Address"] == f"127.0.0.1:{server.port}"
    limits = ddb.describe_limits()
    assert limits["TableMaxWriteCapacityUnits"] > 0


def test_tags(ddb, hash_table):
    arn = ddb.describe_table(TableName=hash_table)["Table"]["TableArn"]
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "team", "Value": "db"}, {"Key": "env", "Value": "test"}])
    tags = {t["Key"]: t["Value"] for t in ddb.list_tags_of_resource(ResourceArn=arn)["Tags"]}
    assert tags == {"team": "db", "env": "test"}
    ddb.untag_resource(ResourceArn=arn, TagKeys=["env"])
    assert ddb.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "db"}]


def test_tag_and_untag_answer_with_an_empty_body(ddb, hash_table):
    # DynamoDB's TagResource and UntagResource responses have no body at all, not "{}".
    arn = ddb.describe_table(TableName=hash_table)["Table"]["TableArn"]
    tagged = ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}])
    assert tagged["ResponseMetadata"]["HTTPHeaders"]["content-length"] == "0"
    untagged = ddb.untag_resource(ResourceArn=arn, TagKeys=["k"])
    assert untagged["ResponseMetadata"]["HTTPHeaders"]["content-length"] == "0"


def _key(name, kind="HASH"):
    return {"AttributeName": name, "KeyType": kind}


def _definitions(*names):
    return [{"AttributeName": n, "AttributeType": "S"} for n in names]


LONG = "n" * 256


@pytest.mark.parametrize("extra", [
    # The length is checked before the definitions are matched to the keys.
    {"KeySchema": [_key("a")], "AttributeDefinitions": _definitions(LONG)},
    {"KeySchema": [_key("a"), _key("b", "RANGE")], "AttributeDefinitions": _definitions("a", "b", LONG),
     "GlobalSecondaryIndexes": [{"IndexName": "gsi", "KeySchema": [_key("short")],
                                 "Projection": {"ProjectionType": "ALL"}}]},
    {"KeySchema": [_key("a"), _key("b", "RANGE")], "AttributeDefinitions": _definitions("a", "b", "short"),
     "GlobalSecondaryIndexes": [{"IndexName": "gsi", "KeySchema": [_key(LONG)],
                                 "Projection": {"ProjectionType": "ALL"}}]},
    {"KeySchema": [_key("a"), _key("b", "RANGE")], "AttributeDefinitions": _definitions("a", "b", "short"),
     "LocalSecondaryIndexes": [{"IndexName": "lsi", "KeySchema": [_key("a"), _key(LONG, "RANGE")],
                                "Projection": {"ProjectionType": "ALL"}}]},
])
def test_key_attribute_names_are_limited_to_255_characters(ddb, table_name, extra):
    with pytest.raises(ClientError) as e:
        ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST", **extra)
    code, message = error_of(e)
    assert code == "ValidationException" and "255" in message


def test_update_table_index_key_names_are_limited_to_255_characters(ddb, hash_table):
    for definition, key in ((LONG, "short"), ("short", LONG)):
        with pytest.raises(ClientError) as e:
            ddb.update_table(TableName=hash_table, AttributeDefinitions=_definitions(definition),
                             GlobalSecondaryIndexUpdates=[{"Create": {
                                 "IndexName": "gsi", "KeySchema": [_key(key)],
                                 "Projection": {"ProjectionType": "ALL"}}}])
        code, message = error_of(e)
        assert code == "ValidationException" and "255" in message


def test_tag_errors(ddb, server, range_table):
    arn = ddb.describe_table(TableName=range_table)["Table"]["TableArn"]
    # boto3 would refuse a tag without a Key or a Value itself
    unchecked = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                             aws_access_key_id="x", aws_secret_access_key="y",
                             config=BotoConfig(parameter_validation=False))

    def refusal(call, **kwargs):
        with pytest.raises(ClientError) as e:
            call(**kwargs)
        return error_of(e)
    with pytest.raises(ClientError) as e:
        ddb.tag_resource(ResourceArn=arn, Tags=[])
    assert error_of(e) == ("ValidationException", "Atleast one Tag needs to be provided as Input.")
    with pytest.raises(ClientError) as e:
        ddb.untag_resource(ResourceArn=arn, TagKeys=[])
    assert error_of(e) == ("ValidationException", "Atleast one Tag Key needs to be provided as Input.")
    # DynamoDB's own words, not the request model's constraint messages; one bad tag refuses them all.
    good = {"Key": "fine", "Value": "v"}
    for tags, message in (
            ([good, {"Key": "hi!", "Value": "v"}], "The Tag Key provided is invalid, Key: hi!"),
            ([good, {"Key": "k" * 129, "Value": "v"}], "The Tag Key provided is invalid, Key: " + "k" * 129),
            ([good, {"Key": "", "Value": "v"}], "The Tag Key provided is invalid, Key: "),
            ([good, {"Key": "k", "Value": "d%g"}], "The Tag Value provided is invalid, Value: d%g"),
            ([good, {"Key": "k", "Value": "v" * 257}], "The Tag Value provided is invalid, Value: " + "v" * 257),
            ([good, {"Key": "k"}], "The Tag Value provided is invalid, Value: null"),
            ([good, {"Value": "v"}], "The Tag Key provided is invalid, Key: null"),
            ([good, {"Key": "aws:zzz", "Value": "v"}], "Tag Key cannot be prefixed with aws:, Key: aws:zzz"),
            ([good, {"Key": "AWS:zzz", "Value": "v"}], "Tag Key cannot be prefixed with aws:, Key: AWS:zzz"),
            ([{"Key": "dup", "Value": "1"}, {"Key": "dup", "Value": "2"}],
             "Duplicate Tag Keys provided as input: Duplicate Tag Key found dup")):
        assert refusal(unchecked.tag_resource, ResourceArn=arn, Tags=tags) == ("ValidationException", message)
    assert refusal(ddb.untag_resource, ResourceArn=arn, TagKeys=["k" * 129]) == (
        "ValidationException", "The Tag Key provided is invalid, Key: " + "k" * 129)
    # AWS's own keys cannot be removed either, though removing a key the table lacks is no error.
    for key in ("aws:cloudformation:stack-name", "Aws:x"):
        assert refusal(ddb.untag_resource, ResourceArn=arn, TagKeys=["absent", key]) == (
            "ValidationException", f"Tag Key cannot be prefixed with aws:, Key: {key}")
    ddb.untag_resource(ResourceArn=arn, TagKeys=["absent", "myaws:x"])
    assert ddb.list_tags_of_resource(ResourceArn=arn)["Tags"] == []
    # Letters and digits of any script, white space and + - = . _ : / @ are all allowed.
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "ключ 7", "Value": "a+b-c=d.e_f:g/h@i"}])
    invalid = "One or more parameter values were invalid: "
    for call in (lambda resource: ddb.tag_resource(ResourceArn=resource, Tags=[{"Key": "k", "Value": "v"}]),
                 lambda resource: ddb.untag_resource(ResourceArn=resource, TagKeys=["k"]),
                 lambda resource: ddb.list_tags_of_resource(ResourceArn=resource)):
        # A table's name is no ARN; a backup's ARN is no taggable resource's; an ARN in capitals names none.
        for resource, expected in (
                (range_table, ("ValidationException", f"{invalid}ARNs must start with 'arn:': {range_table}")),
                (f"{arn}/backup/01796223897587-3958a9c2",
                 ("ValidationException", f"{invalid}Provided Arn is not a DynamoDB resource arn: "
                                         f"{arn}/backup/01796223897587-3958a9c2")),
                (arn.upper(), ("ResourceNotFoundException",
                               f"Requested resource not found: ResourcArn: {arn.upper()} not found"))):
            with pytest.raises(ClientError) as e:
                call(resource)
            assert error_of(e) == expected
    # An index's ARN is not a taggable resource.
    index_arn = arn + "/index/whatever"
    for call in (lambda: ddb.list_tags_of_resource(ResourceArn=index_arn),
                 lambda: ddb.tag_resource(ResourceArn=index_arn, Tags=[{"Key": "k", "Value": "v"}])):
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e) == ("ValidationException", f"Invalid TableArn: Invalid ResourceArn provided as input "
                                                      f"{index_arn}")
    assert ddb.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "ключ 7", "Value": "a+b-c=d.e_f:g/h@i"}]
    # 10,240 bytes of keys and values at most, counted with the ones it has (27 bytes of "ключ 7" here).
    big = [{"Key": f"k{i:02}".ljust(128, "x"), "Value": "v" * 256} for i in range(27)]
    assert refusal(ddb.tag_resource, ResourceArn=arn, Tags=big) == (
        "ValidationException", "Tag set size 10395 bytes is above max size limit of 10240 bytes")
    with pytest.raises(ClientError) as e:       # CreateTable's Tags too, and no table is made
        create_table(ddb, "tags_too_big", Tags=big)
    assert error_of(e) == ("ValidationException", "Tag set size 10368 bytes is above max size limit of 10240 bytes")
    assert "tags_too_big" not in ddb.list_tables()["TableNames"]
    # Fifty tags a table at most, counted with the ones it has; DynamoDB's words (and type) for more.
    with pytest.raises(ClientError) as e:
        ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    assert error_of(e) == ("ValidationException", "Number of Tags exceed the current limit for the provided "
                                                  "ResourceArn")


def test_concurrent_tag_changes_are_all_kept(server, ddb, hash_table):
    """Clients tag and untag the same table at once: no change may undo another."""
    arn = ddb.describe_table(TableName=hash_table)["Table"]["TableArn"]
    errors = []

    def churn(name):
        client = server.client()
        try:
            for i in range(100):
                client.tag_resource(ResourceArn=arn, Tags=[{"Key": name, "Value": str(i)}])
                tags = {t["Key"]: t["Value"] for t in client.list_tags_of_resource(ResourceArn=arn)["Tags"]}
                assert tags.get(name) == str(i), tags
                client.untag_resource(ResourceArn=arn, TagKeys=[name])
                tags = {t["Key"]: t["Value"] for t in client.list_tags_of_resource(ResourceArn=arn)["Tags"]}
                assert name not in tags, tags
        except Exception as error:      # noqa: BLE001 - handed to the main thread
            errors.append(error)

    threads = [threading.Thread(target=churn, args=(name,)) for name in ("first", "second", "third")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert ddb.list_tags_of_resource(ResourceArn=arn)["Tags"] == []


def test_deletion_protection(ddb, table_name):
    create_table(ddb, table_name, DeletionProtectionEnabled=True)
    assert ddb.describe_table(TableName=table_name)["Table"]["DeletionProtectionEnabled"] is True
    with pytest.raises(ClientError) as e:
        ddb.delete_table(TableName=table_name)
    assert error_of(e) == ("ValidationException", "Resource cannot be deleted as it is currently protected "
                                                  "against deletion. Disable deletion protection first.")
    ddb.update_table(TableName=table_name, DeletionProtectionEnabled=False)
    assert ddb.describe_table(TableName=table_name)["Table"]["DeletionProtectionEnabled"] is False
    ddb.update_table(TableName=table_name, DeletionProtectionEnabled=True)
    with pytest.raises(ClientError):
        ddb.delete_table(TableName=table_name)
    ddb.update_table(TableName=table_name, DeletionProtectionEnabled=False)
    ddb.delete_table(TableName=table_name)
    assert table_name not in ddb.list_tables()["TableNames"]


def test_table_class_and_encryption_settings_are_described(ddb, table_name):
    create_table(ddb, table_name, TableClass="STANDARD_INFREQUENT_ACCESS", SSESpecification={"Enabled": True})
    table = ddb.describe_table(TableName=table_name)["Table"]
    assert table["TableClassSummary"] == {"TableClass": "STANDARD_INFREQUENT_ACCESS"}
    assert table["SSEDescription"]["Status"] == "ENABLED" and table["SSEDescription"]["SSEType"] == "KMS"
    ddb.update_table(TableName=table_name, TableClass="STANDARD")
    assert ddb.describe_table(TableName=table_name)["Table"]["TableClassSummary"]["TableClass"] == "STANDARD"
    with pytest.raises(ClientError) as e:
        ddb.update_table(TableName=table_name, TableClass="GLACIER")
    assert error_of(e)[0] == "ValidationException"
    # The key the table has, named by its ARN, is refused; DynamoDB re-encrypts only for another name of it.
    key_arn = table["SSEDescription"]["KMSMasterKeyArn"]
    with pytest.raises(ClientError) as e:
        ddb.update_table(TableName=table_name, SSESpecification={"Enabled": True, "SSEType": "KMS",
                                                                 "KMSMasterKeyId": key_arn})
    assert error_of(e) == ("ValidationException", "One or more parameter values were invalid: Table is already "
                           "encrypted with given KMSMasterKeyId. Use KMSMasterKeyId parameter if you want to change "
                           "Master Key")
    ddb.delete_table(TableName=table_name)
    # STANDARD asked of a table that never had a class is DynamoDB's default again: no summary appears.
    create_table(ddb, table_name)
    ddb.update_table(TableName=table_name, TableClass="STANDARD")
    assert "TableClassSummary" not in ddb.describe_table(TableName=table_name)["Table"]
    ddb.delete_table(TableName=table_name)


def test_encryption_specification_rules(ddb, server, table_name):
    unchecked = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                             aws_access_key_id="x", aws_secret_access_key="y",
                             config=BotoConfig(parameter_validation=False))
    prefix = "One or more parameter values were invalid: "
    for sse, message in (({"Enabled": False, "SSEType": "KMS"}, "SSEType can not be specified if Enabled is false"),
                         ({"Enabled": False, "KMSMasterKeyId": "alias/k"},
                          "KMSMasterKeyId can not be specified if Enabled is false"),
                         ({"Enabled": True, "SSEType": "AES256"}, "SSEType AES256 is not supported"),
                         ({"Enabled": True, "KMSMasterKeyId": "alias/k"},
                          "SSEType KMS is required if KMSMasterKeyId is specified")):
        with pytest.raises(ClientError) as e:
            create_table(unchecked, table_name, SSESpecification=sse)
        assert error_of(e) == ("ValidationException", prefix + message)
    # An empty key id is no key: the model's length rule refuses it, at CreateTable and UpdateTable.
    empty_key = ("ValidationException", "1 validation error detected: Value '' at 'sSESpecification.kMSMasterKeyId' "
                                        "failed to satisfy constraint: Member must have length greater than or equal to 1")
    with pytest.raises(ClientError) as e:
        create_table(unchecked, table_name, SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": ""})
    assert error_of(e) == empty_key
    assert table_name not in ddb.list_tables()["TableNames"]
    create_table(ddb, table_name)
    with pytest.raises(ClientError) as e:
        unchecked.update_table(TableName=table_name, SSESpecification={"Enabled": True, "SSEType": "KMS",
                                                                       "KMSMasterKeyId": ""})
    assert error_of(e) == empty_key
    assert "SSEDescription" not in ddb.describe_table(TableName=table_name)["Table"]
    # A table on the AWS owned key is refused that key again, however it is asked for.
    for sse in ({"Enabled": False}, {}):
        with pytest.raises(ClientError) as e:
            unchecked.update_table(TableName=table_name, SSESpecification=sse)
        assert error_of(e) == ("ValidationException", prefix + "Table is already encrypted by default")
    ddb.update_table(TableName=table_name, SSESpecification={"SSEType": "KMS"})
    assert ddb.describe_table(TableName=table_name)["Table"]["SSEDescription"]["Status"] == "ENABLED"
    ddb.delete_table(TableName=table_name)


def test_turning_encryption_off_answers_updating_with_the_kms_key(ddb, table_name):
    # DynamoDB's UpdateTable answer still describes the KMS key, UPDATING, while it goes back to the AWS owned key
    create_table(ddb, table_name, SSESpecification={"Enabled": True})
    enabled = ddb.describe_table(TableName=table_name)["Table"]["SSEDescription"]
    answer = ddb.update_table(TableName=table_name, SSESpecification={"Enabled": False})["TableDescription"]
    assert answer["SSEDescription"] == {**enabled, "Status": "UPDATING"}
    assert "SSEDescription" not in ddb.describe_table(TableName=table_name)["Table"]
    ddb.delete_table(TableName=table_name)


def test_on_demand_throughput_is_kept_and_updated(ddb, table_name):
    create_table(ddb, table_name, OnDemandThroughput={"MaxReadRequestUnits": 10, "MaxWriteRequestUnits": 5})
    assert ddb.describe_table(TableName=table_name)["Table"]["OnDemandThroughput"] == {
        "MaxReadRequestUnits": 10, "MaxWriteRequestUnits": 5}
    ddb.update_table(TableName=table_name, OnDemandThroughput={"MaxReadRequestUnits": 20})
    assert ddb.describe_table(TableName=table_name)["Table"]["OnDemandThroughput"] == {
        "MaxReadRequestUnits": 20, "MaxWriteRequestUnits": 5}
    ddb.delete_table(TableName=table_name)


def test_table_class_change_is_dated_and_bad_classes_named(ddb, table_name):
    create_table(ddb, table_name, TableClass="STANDARD")
    assert "LastUpdateDateTime" not in ddb.describe_table(TableName=table_name)["Table"]["TableClassSummary"]
    ddb.update_table(TableName=table_name, TableClass="STANDARD_INFREQUENT_ACCESS")
    summary = ddb.describe_table(TableName=table_name)["Table"]["TableClassSummary"]
    assert summary["TableClass"] == "STANDARD_INFREQUENT_ACCESS"
    assert summary["LastUpdateDateTime"] >= ddb.describe_table(TableName=table_name)["Table"]["CreationDateTime"]
    message = ("Invalid table-class parameter provided. Please try again with a valid table-class value: "
               "[STANDARD, STANDARD_INFREQUENT_ACCESS].")
    with pytest.raises(ClientError) as e:
        ddb.update_table(TableName=table_name, TableClass="standard")
    assert error_of(e) == ("ValidationException", message)
    with pytest.raises(ClientError) as e:
        create_table(ddb, table_name + "_x", TableClass="GLACIER")
    assert error_of(e) == ("ValidationException", message)
    ddb.delete_table(TableName=table_name)


def test_create_tables_answer_has_no_warm_throughput_or_pay_per_request_date_unasked(ddb, table_name):
    """DynamoDB's CreateTable answer, unlike DescribeTable's, carries no WarmThroughput the request
    did not set (table or index) and no LastUpdateToPayPerRequestDateTime."""
    created = ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST",
                               KeySchema=[{"AttributeName": "p", "KeyType": "HASH"}],
                               AttributeDefinitions=[{"AttributeName": "p", "AttributeType": "S"},
                                                     {"AttributeName": "x", "AttributeType": "S"}],
                               GlobalSecondaryIndexes=[{"IndexName": "gsi",
                                                        "KeySchema": [{"AttributeName": "x", "KeyType": "HASH"}],
                                                        "Projection": {"ProjectionType": "ALL"}}])["TableDescription"]
    try:
        assert "WarmThroughput" not in created and "WarmThroughput" not in created["GlobalSecondaryIndexes"][0]
        assert created["BillingModeSummary"] == {"BillingMode": "PAY_PER_REQUEST"}
        assert created["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"] == {
            "NumberOfDecreasesToday": 0, "ReadCapacityUnits": 0, "WriteCapacityUnits": 0}
        described = ddb.describe_table(TableName=table_name)["Table"]
        assert "WarmThroughput" in described and "WarmThroughput" in described["GlobalSecondaryIndexes"][0]
        assert "LastUpdateToPayPerRequestDateTime" in described["BillingModeSummary"]
    finally:
        ddb.delete_table(TableName=table_name)


def test_warm_throughput_is_kept_described_and_never_lowered(ddb, table_name):
    # Every table reports DynamoDB's baseline; a WarmThroughput given is kept (a unit left out
    # keeps its value), an UpdateTable with only WarmThroughput is a change (Terraform sends
    # it alone), and neither a value under the baseline nor a decrease is accepted.
    create_table(ddb, table_name, WarmThroughput={"ReadUnitsPerSecond": 12240})
    try:
        warm = ddb.describe_table(TableName=table_name)["Table"]["WarmThroughput"]
        assert warm == {"ReadUnitsPerSecond": 12240, "WriteUnitsPerSecond": 4000, "Status": "ACTIVE"}
        ddb.update_table(TableName=table_name, WarmThroughput={"WriteUnitsPerSecond": 4080})
        warm = ddb.describe_table(TableName=table_name)["Table"]["WarmThroughput"]
        assert warm == {"ReadUnitsPerSecond": 12240, "WriteUnitsPerSecond": 4080, "Status": "ACTIVE"}
        for lower in (12120, 11000):     # below the baseline is below the current value too
            with pytest.raises(ClientError) as e:
                ddb.update_table(TableName=table_name, WarmThroughput={"ReadUnitsPerSecond": lower})
            assert error_of(e) == ("ValidationException", "One or more parameter values were invalid: Requested "
                                   "ReadUnitsPerSecond for WarmThroughput for table is lower than current "
                                   "WarmThroughput, decreasing WarmThroughput is not supported")
        # An empty WarmThroughput beside another change is no change, and not refused company.
        ddb.update_table(TableName=table_name, WarmThroughput={}, DeletionProtectionEnabled=False)
        assert ddb.describe_table(TableName=table_name)["Table"]["WarmThroughput"]["ReadUnitsPerSecond"] == 12240
    finally:
        ddb.delete_table(TableName=table_name)
    with pytest.raises(ClientError) as e:
        create_table(ddb, table_name, WarmThroughput={"ReadUnitsPerSecond": 12000, "WriteUnitsPerSecond": 3999})
    assert error_of(e) == ("ValidationException", "One or more parameter values were invalid: Requested "
                           "WriteUnitsPerSecond for WarmThroughput for table is lower than initial throughput for "
                           "OnDemand. See: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/"
                           "on-demand-capacity-mode.html#on-demand-capacity-mode-initial")
    plain = create_table(ddb, table_name + "_plain")
    try:
        created = ddb.describe_table(TableName=plain)["Table"]["WarmThroughput"]
        assert created == {"ReadUnitsPerSecond": 12000, "WriteUnitsPerSecond": 4000, "Status": "ACTIVE"}
    finally:
        ddb.delete_table(TableName=plain)


def test_warm_throughput_of_a_provisioned_table_is_the_most_it_was_provisioned(ddb, table_name):
    """DynamoDB's warm throughput of a provisioned table: its units, raised with them and never
    lowered; on demand's 12,000/4,000 once it has been on demand (kept when it goes back)."""
    def warm():
        described = ddb.describe_table(TableName=table_name)["Table"]["WarmThroughput"]
        return described["ReadUnitsPerSecond"], described["WriteUnitsPerSecond"]

    def units(read, write):
        return {"ReadCapacityUnits": read, "WriteCapacityUnits": write}

    def create_provisioned(read, write, **extra):
        ddb.create_table(TableName=table_name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         ProvisionedThroughput=units(read, write), **extra)
    prefix = "One or more parameter values were invalid: Requested "
    with pytest.raises(ClientError) as e:
        create_provisioned(10, 10, WarmThroughput={"ReadUnitsPerSecond": 5, "WriteUnitsPerSecond": 5})
    assert error_of(e) == ("ValidationException", prefix + "ReadUnitsPerSecond for WarmThroughput for table is lower "
                                                           "than ReadCapacityUnits of ProvisionedThroughput")
    create_provisioned(2, 2)
    try:
        assert warm() == (2, 2)
        ddb.update_table(TableName=table_name, ProvisionedThroughput=units(3, 3))
        ddb.update_table(TableName=table_name, ProvisionedThroughput=units(1, 1))
        assert warm() == (3, 3)
        with pytest.raises(ClientError) as e:
            ddb.update_table(TableName=table_name, WarmThroughput={"ReadUnitsPerSecond": 1, "WriteUnitsPerSecond": 1})
        assert error_of(e) == ("ValidationException", prefix + "ReadUnitsPerSecond for WarmThroughput for table is "
                               "lower than current WarmThroughput, decreasing WarmThroughput is not supported")
        ddb.update_table(TableName=table_name, WarmThroughput={"ReadUnitsPerSecond": 50, "WriteUnitsPerSecond": 50})
        assert warm() == (50, 50)
        ddb.update_table(TableName=table_name, BillingMode="PAY_PER_REQUEST")
        assert warm() == (12000, 4000)
        ddb.update_table(TableName=table_name, BillingMode="PROVISIONED", ProvisionedThroughput=units(5, 5))
        assert warm() == (12000, 4000)
    finally:
        ddb.delete_table(TableName=table_name)
    create_provisioned(10, 10, WarmThroughput={"ReadUnitsPerSecond": 100})
    try:
        assert warm() == (100, 10)
    finally:
        ddb.delete_table(TableName=table_name)


def test_on_demand_caps_need_on_demand_billing_and_a_positive_value(ddb, table_name):
    prefix = "One or more parameter values were invalid: "
    definitions = [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "x", "AttributeType": "S"}]
    index = {"IndexName": "g_a", "KeySchema": [{"AttributeName": "x", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "ALL"}}
    units = {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}
    cases = [
        (dict(ProvisionedThroughput=units, OnDemandThroughput={"MaxWriteRequestUnits": 10}),
         "MaxWriteRequestUnits for OnDemandThroughput cannot be specified when table BillingMode is PROVISIONED."),
        (dict(ProvisionedThroughput=units, GlobalSecondaryIndexes=[
            {**index, "ProvisionedThroughput": units, "OnDemandThroughput": {"MaxReadRequestUnits": 10}}]),
         "MaxReadRequestUnits for OnDemandThroughput for index: g_a cannot be specified when table BillingMode is "
         "PROVISIONED."),
        (dict(BillingMode="PAY_PER_REQUEST", OnDemandThroughput={"MaxReadRequestUnits": 0}),
         "Requested MaxReadRequestUnits for OnDemandThroughput for table is outside of valid range"),
        (dict(BillingMode="PAY_PER_REQUEST", GlobalSecondaryIndexes=[
            {**index, "OnDemandThroughput": {"MaxReadRequestUnits": -1}}]),
         "Requested MaxReadRequestUnits for OnDemandThroughput for index : g_a is outside of valid range"),
    ]
    for extra, message in cases:
        with pytest.raises(ClientError) as e:
            ddb.create_table(TableName=table_name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                             AttributeDefinitions=definitions if "GlobalSecondaryIndexes" in extra else definitions[:1],
                             **extra)
        assert error_of(e) == ("ValidationException", prefix + message)
    ddb.create_table(TableName=table_name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=definitions[:1], ProvisionedThroughput=units)
    with pytest.raises(ClientError) as e:
        ddb.update_table(TableName=table_name, OnDemandThroughput={"MaxReadRequestUnits": 100})
    assert error_of(e) == ("ValidationException", prefix + "MaxReadRequestUnits for OnDemandThroughput cannot be "
                                                           "specified when the table BillingMode is PROVISIONED")
    ddb.update_table(TableName=table_name, BillingMode="PAY_PER_REQUEST",
                     OnDemandThroughput={"MaxReadRequestUnits": 100})
    with pytest.raises(ClientError) as e:
        ddb.update_table(TableName=table_name, OnDemandThroughput={"MaxWriteRequestUnits": 0})
    assert error_of(e) == ("ValidationException", prefix + "Requested MaxWriteRequestUnits for OnDemandThroughput "
                                                           "for table is outside of valid range")
    assert ddb.describe_table(TableName=table_name)["Table"]["OnDemandThroughput"]["MaxReadRequestUnits"] == 100
    ddb.delete_table(TableName=table_name)
