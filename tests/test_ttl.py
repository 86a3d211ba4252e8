"""Time to Live through boto3: UpdateTimeToLive / DescribeTimeToLive and background expiry.

One 2-shard server for the module, scanning for expired items every second.
"""

import time

import pytest
from botocore.exceptions import ClientError

from conftest import create_table
from serverutil import ServerProcess


@pytest.fixture(scope="module")
def ttl_server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("ttl"), smp=2, extra=["--ttl-scan-interval-in-s", "1"]).start()
    yield srv
    assert srv.stop() == 0, srv.log()


@pytest.fixture(scope="module")
def client(ttl_server):
    return ttl_server.client()


def _error(call):
    with pytest.raises(ClientError) as error:
        call()
    return error.value.response["Error"]["Code"], error.value.response["Error"]["Message"]


def _spec(client, table, enabled, name):
    return client.update_time_to_live(TableName=table,
                                      TimeToLiveSpecification={"Enabled": enabled, "AttributeName": name})


def test_enable_describe_disable(client):
    table = create_table(client, "ttl_settings")
    assert client.describe_time_to_live(TableName=table)["TimeToLiveDescription"] == {"TimeToLiveStatus": "DISABLED"}
    assert _error(lambda: _spec(client, table, False, "exp")) == (
        "ValidationException", "TimeToLive is already disabled")
    reply = _spec(client, table, True, "exp")
    assert reply["TimeToLiveSpecification"] == {"Enabled": True, "AttributeName": "exp"}
    assert client.describe_time_to_live(TableName=table)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "exp"}
    assert _error(lambda: _spec(client, table, True, "exp")) == (
        "ValidationException", "TimeToLive is already enabled")
    assert _error(lambda: _spec(client, table, True, "other")) == (
        "ValidationException", "TimeToLive is active on a different AttributeName: current AttributeName is exp")
    assert _error(lambda: _spec(client, table, False, "other"))[1].startswith(
        "TimeToLive is active on a different AttributeName")
    _spec(client, table, False, "exp")
    assert client.describe_time_to_live(TableName=table)["TimeToLiveDescription"] == {"TimeToLiveStatus": "DISABLED"}
    assert _error(lambda: client.describe_time_to_live(TableName="no_such_table"))[0] == "ResourceNotFoundException"
    assert _error(lambda: _spec(client, "no_such_table", True, "exp"))[0] == "ResourceNotFoundException"
    client.delete_table(TableName=table)


def test_specification_rules_come_before_the_table(ttl_server):
    """The model's rules for TimeToLiveSpecification, in DynamoDB's words, before the table is looked for."""
    import boto3
    from botocore.config import Config
    loose = boto3.client("dynamodb", endpoint_url=ttl_server.endpoint, region_name="us-east-1",
                         aws_access_key_id="x", aws_secret_access_key="y",
                         config=Config(parameter_validation=False, retries={"max_attempts": 1}))
    field = "timeToLiveSpecification"
    rule = "failed to satisfy constraint: Member must"
    for spec, message in (
            ({"Enabled": True, "AttributeName": ""},
             f"1 validation error detected: Value '' at '{field}.attributeName' {rule} have length greater than or "
             "equal to 1"),
            ({"Enabled": True, "AttributeName": "a" * 256},
             f"1 validation error detected: Value '{'a' * 256}' at '{field}.attributeName' {rule} have length less "
             "than or equal to 255"),
            ({}, f"2 validation errors detected: Value null at '{field}.attributeName' {rule} not be null; "
                 f"Value null at '{field}.enabled' {rule} not be null")):
        assert _error(lambda: loose.update_time_to_live(TableName="no_such_table", TimeToLiveSpecification=spec)) == (
            "ValidationException", message)


def _wait(predicate, timeout=8.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_expired_items_are_deleted_on_every_shard(client):
    table = create_table(client, "ttl_expiry")
    now = int(time.time())
    rows = {
        "past": {"N": str(now - 60)},
        "past_fraction": {"N": f"{now - 30}.5"},
        "future": {"N": str(now + 3600)},
        "string": {"S": str(now - 60)},
        "ancient": {"N": str(now - 6 * 365 * 24 * 3600)},     # over five years: DynamoDB ignores it
    }
    for i in range(20):
        for name, value in rows.items():
            client.put_item(TableName=table, Item={"pk": {"S": f"{name}-{i}"}, "exp": value})
        client.put_item(TableName=table, Item={"pk": {"S": f"none-{i}"}})
    _spec(client, table, True, "exp")

    def survivors():
        return {item["pk"]["S"].split("-")[0] for item in client.scan(TableName=table)["Items"]}

    assert _wait(lambda: survivors() == {"future", "string", "ancient", "none"}), survivors()
    assert client.scan(TableName=table, Select="COUNT")["Count"] == 80
    # Disabled: nothing expires any more.
    _spec(client, table, False, "exp")
    time.sleep(1.5)
    client.put_item(TableName=table, Item={"pk": {"S": "late"}, "exp": {"N": str(now - 60)}})
    time.sleep(2.5)
    assert client.get_item(TableName=table, Key={"pk": {"S": "late"}}).get("Item") is not None
    client.delete_table(TableName=table)


def test_expiry_maintains_secondary_indexes(client):
    table = "ttl_index"
    client.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "g", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "by_g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}])
    _spec(client, table, True, "exp")
    now = int(time.time())
    for i in range(10):
        client.put_item(TableName=table, Item={"pk": {"S": f"p{i}"}, "g": {"S": "group"},
                                               "exp": {"N": str(now - 5 if i % 2 else now + 3600)}})

    def in_index():
        return client.query(TableName=table, IndexName="by_g", KeyConditionExpression="g = :g",
                            ExpressionAttributeValues={":g": {"S": "group"}})["Count"]

    assert _wait(lambda: in_index() == 5), in_index()
    assert client.scan(TableName=table)["Count"] == 5
    client.delete_table(TableName=table)
