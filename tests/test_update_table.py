"""UpdateTable through boto3 against a real server: GSI create (backfill) and delete, billing, throughput, streams."""

import threading
import time

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from test_indexes import S, N, canon, defs, error_of, full_query, full_scan, gsi, key_schema


def create_gsi_update(name, hash_key, range_key=None, types=None, projection=None):
    types = types or {hash_key: "S", **({range_key: "S"} if range_key else {})}
    return {"AttributeDefinitions": defs(**types),
            "GlobalSecondaryIndexUpdates": [{"Create": gsi(name, hash_key, *([range_key] if range_key else []),
                                                           projection=projection)}]}


def _loose(server):
    """A client that sends what boto3 would refuse to, for the server to judge."""
    return boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="y",
                        config=BotoConfig(parameter_validation=False, retries={"max_attempts": 1}))


def wait_active(ddb, table, index, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        description = ddb.describe_table(TableName=table)["Table"]
        entry = [g for g in description.get("GlobalSecondaryIndexes", []) if g["IndexName"] == index]
        assert len(entry) == 1
        if entry[0]["IndexStatus"] == "ACTIVE":
            assert "Backfilling" not in entry[0] and description["TableStatus"] == "ACTIVE"
            return entry[0]
        assert entry[0]["IndexStatus"] == "CREATING" and entry[0]["Backfilling"] is True
        assert time.monotonic() < deadline, "index did not become ACTIVE"
        time.sleep(0.05)


@pytest.fixture
def table(ddb, table_name):
    ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema("p"),
                     AttributeDefinitions=defs(p="S"))
    yield table_name
    ddb.delete_table(TableName=table_name)


def test_add_gsi_backfills_while_writes_continue(ddb, server, table):
    total = 6000
    requests = [{"PutRequest": {"Item": {"p": S(f"k{i}"), "x": S(f"x{i % 40}"), "n": N(i),
                                         **({"bad": N(i)} if i % 10 == 0 else {}),
                                         **({"e": S("")} if i % 7 == 0 else {"e": S(f"e{i % 3}")})}}}
                for i in range(total)]
    for start in range(0, total, 25):
        ddb.batch_write_item(RequestItems={table: requests[start:start + 25]})
    stop = threading.Event()
    failures = []

    def writer():
        client = server.client()
        i = 0
        while not stop.is_set():
            i += 1
            try:
                client.put_item(TableName=table, Item={"p": S(f"k{(i * 37) % total}"), "x": S(f"x{i % 40}"),
                                                       "n": N(-i), "e": S(f"w{i % 5}")})
                client.delete_item(TableName=table, Key={"p": S(f"k{(i * 53) % total}")})
            except ClientError as exc:
                failures.append(exc)
                return

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        response = ddb.update_table(TableName=table, **create_gsi_update("by_e", "e", "n", types={"e": "S", "n": "N"}))
        created = [g for g in response["TableDescription"]["GlobalSecondaryIndexes"] if g["IndexName"] == "by_e"]
        # the AWS CLI's update-table example: CREATING, the backfill not begun when UpdateTable answers
        assert created[0]["IndexStatus"] == "CREATING" and created[0]["Backfilling"] is False
        time.sleep(0.3)
        wait_active(ddb, table, "by_e")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures
    base = full_scan(ddb, TableName=table, ConsistentRead=True)
    # Items with an empty e were never indexable; everything else with e is.
    want = [i for i in base if "e" in i and i["e"]["S"] != ""]
    deadline = time.monotonic() + 15
    while canon(full_scan(ddb, TableName=table, IndexName="by_e")) != canon(want):
        assert time.monotonic() < deadline, "backfilled index does not match the table"
        time.sleep(0.1)
    got = full_query(ddb, TableName=table, IndexName="by_e", KeyConditionExpression="e = :e AND n > :n",
                     ExpressionAttributeValues={":e": S("e1"), ":n": N(100)})
    assert canon(got) == canon([i for i in want if i["e"] == S("e1") and int(i["n"]["N"]) > 100])
    # Now the index exists, its key types are enforced on writes.
    code, message = error_of(ddb.put_item, TableName=table, Item={"p": S("new"), "e": N(1)})
    assert "Type mismatch for Index Key e Expected: S Actual: N IndexName: by_e" in message
    description = ddb.describe_table(TableName=table)["Table"]
    assert {"AttributeName": "e", "AttributeType": "S"} in description["AttributeDefinitions"]
    entry = [g for g in description["GlobalSecondaryIndexes"] if g["IndexName"] == "by_e"][0]
    assert entry["ItemCount"] == len(want)


def test_delete_and_recreate_gsi(ddb, table):
    ddb.update_table(TableName=table, **create_gsi_update("gone", "x"))
    wait_active(ddb, table, "gone")
    ddb.put_item(TableName=table, Item={"p": S("1"), "x": S("a")})
    response = ddb.update_table(TableName=table, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "gone"}}])
    assert [g["IndexStatus"] for g in response["TableDescription"]["GlobalSecondaryIndexes"]] == ["DELETING"]
    description = ddb.describe_table(TableName=table)["Table"]
    assert "GlobalSecondaryIndexes" not in description
    assert description["AttributeDefinitions"] == defs(p="S")
    code, message = error_of(ddb.query, TableName=table, IndexName="gone", KeyConditionExpression="x = :x",
                             ExpressionAttributeValues={":x": S("a")})
    assert (code, message) == ("ValidationException", "The table does not have the specified index: gone")
    # Its type rule is gone with it.
    ddb.put_item(TableName=table, Item={"p": S("2"), "x": N(7)})
    assert error_of(ddb.update_table, TableName=table,
                    GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "gone"}}])[0] == "ResourceNotFoundException"
    ddb.update_table(TableName=table, **create_gsi_update("gone", "x"))
    wait_active(ddb, table, "gone")
    assert full_scan(ddb, TableName=table, IndexName="gone") == [{"p": S("1"), "x": S("a")}]


def test_throughput_changes_are_dated(ddb, table):
    # ProvisionedThroughputDescription: LastIncreaseDateTime, LastDecreaseDateTime and the UTC day's
    # NumberOfDecreasesToday; a switch from on demand to provisioned units is an increase (the AWS CLI's
    # update-table example shows it dated).
    before = ddb.describe_table(TableName=table)["Table"]["ProvisionedThroughput"]
    assert "LastIncreaseDateTime" not in before and "LastDecreaseDateTime" not in before
    switched = ddb.update_table(TableName=table, BillingMode="PROVISIONED",
                                ProvisionedThroughput={"ReadCapacityUnits": 15, "WriteCapacityUnits": 10})
    increased = switched["TableDescription"]["ProvisionedThroughput"]
    assert increased["LastIncreaseDateTime"] >= switched["TableDescription"]["CreationDateTime"]
    assert "LastDecreaseDateTime" not in increased and increased["NumberOfDecreasesToday"] == 0
    ddb.update_table(TableName=table, ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 10})
    ddb.update_table(TableName=table, ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 2})
    described = ddb.describe_table(TableName=table)["Table"]["ProvisionedThroughput"]
    assert described["LastIncreaseDateTime"] == increased["LastIncreaseDateTime"]
    assert described["LastDecreaseDateTime"] >= increased["LastIncreaseDateTime"]
    assert described["NumberOfDecreasesToday"] == 2
    assert (described["ReadCapacityUnits"], described["WriteCapacityUnits"]) == (5, 2)


def test_global_index_warm_throughput_and_on_demand_caps(ddb, server, table_name):
    # A global index has its own WarmThroughput (DynamoDB's baseline until raised) and OnDemandThroughput,
    # given at CreateTable and changed by an UpdateTable Update without ProvisionedThroughput, as the
    # developer guide's update-table --warm-throughput example does.
    created = ddb.create_table(
        TableName=table_name, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema("p"),
        AttributeDefinitions=defs(p="S", x="S", y="S"),
        GlobalSecondaryIndexes=[gsi("g_x", "x"), {**gsi("g_y", "y"), "OnDemandThroughput": {"MaxReadRequestUnits": 200},
                                                 "WarmThroughput": {"ReadUnitsPerSecond": 1987}}])
    try:
        plain, tuned = created["TableDescription"]["GlobalSecondaryIndexes"]
        # CreateTable answers no WarmThroughput an index did not ask for (DescribeTable does, below)
        assert "WarmThroughput" not in plain and "WarmThroughput" not in created["TableDescription"]
        assert "OnDemandThroughput" not in plain
        # an index may ask for less than the table baseline (the developer guide's create-table example)
        assert tuned["WarmThroughput"] == {"ReadUnitsPerSecond": 1987, "WriteUnitsPerSecond": 4000, "Status": "ACTIVE"}
        assert tuned["OnDemandThroughput"] == {"MaxReadRequestUnits": 200}
        ddb.update_table(TableName=table_name, GlobalSecondaryIndexUpdates=[
            {"Update": {"IndexName": "g_x", "WarmThroughput": {"ReadUnitsPerSecond": 13000, "WriteUnitsPerSecond": 5000}}}])
        ddb.update_table(TableName=table_name, GlobalSecondaryIndexUpdates=[
            {"Update": {"IndexName": "g_y", "OnDemandThroughput": {"MaxWriteRequestUnits": 50}}}])
        described = {g["IndexName"]: g for g in ddb.describe_table(TableName=table_name)["Table"]["GlobalSecondaryIndexes"]}
        assert described["g_x"]["WarmThroughput"] == {"ReadUnitsPerSecond": 13000, "WriteUnitsPerSecond": 5000,
                                                     "Status": "ACTIVE"}
        assert described["g_y"]["OnDemandThroughput"] == {"MaxReadRequestUnits": 200, "MaxWriteRequestUnits": 50}
        code, message = error_of(ddb.update_table, TableName=table_name, GlobalSecondaryIndexUpdates=[
            {"Update": {"IndexName": "g_x", "WarmThroughput": {"ReadUnitsPerSecond": 12500}}}])
        assert (code, message) == ("ValidationException", "One or more parameter values were invalid: Requested "
                                   "ReadUnitsPerSecond for WarmThroughput for index g_x is lower than current "
                                   "WarmThroughput, decreasing WarmThroughput is not supported")
        # an empty one names the index, even one the table does not have
        for name in ("g_x", "ghost"):
            assert error_of(ddb.update_table, TableName=table_name, GlobalSecondaryIndexUpdates=[
                {"Update": {"IndexName": name, "WarmThroughput": {}}}]) == (
                "ValidationException", "One or more parameter values were invalid: WarmThroughput must have at "
                f"least one of ReadUnitsPerSecond or WriteUnitsPerSecond specified for index: {name}")
        # ... before the table is looked for, and before the rules of what may come together
        empty_warm = ("ValidationException", "One or more parameter values were invalid: WarmThroughput must have at "
                      "least one of ReadUnitsPerSecond or WriteUnitsPerSecond specified for index: g_x")
        assert error_of(ddb.update_table, TableName="no_such_table", GlobalSecondaryIndexUpdates=[
            {"Update": {"IndexName": "g_x", "WarmThroughput": {}}}]) == empty_warm
        assert error_of(ddb.update_table, TableName=table_name, TableClass="STANDARD", GlobalSecondaryIndexUpdates=[
            {"Update": {"IndexName": "g_x", "WarmThroughput": {}}}]) == empty_warm
        # Units with their members missing: the model's rules, at the update's place in the list
        null = "failed to satisfy constraint: Member must not be null"
        place = "globalSecondaryIndexUpdates.1.member.update.provisionedThroughput"
        unchecked = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                                 aws_access_key_id="x", aws_secret_access_key="y",
                                 config=BotoConfig(parameter_validation=False, retries={"max_attempts": 1}))
        assert error_of(unchecked.update_table, TableName=table_name, GlobalSecondaryIndexUpdates=[
            {"Update": {"IndexName": "g_x", "ProvisionedThroughput": {}}}]) == (
            "ValidationException", f"2 validation errors detected: Value null at '{place}.writeCapacityUnits' {null}; "
                                   f"Value null at '{place}.readCapacityUnits' {null}")
        assert error_of(unchecked.update_table, TableName=table_name, AttributeDefinitions=defs(z="S"),
                        GlobalSecondaryIndexUpdates=[{"Create": gsi("", "z")}])[1].startswith(
            "2 validation errors detected: Value '' at 'globalSecondaryIndexUpdates.1.member.create.indexName' "
            "failed to satisfy constraint: Member must have length greater than or equal to 3")
        # An index the table does not have, in DynamoDB's words for UpdateTable
        for action in ({"Update": {"IndexName": "ghost", "OnDemandThroughput": {"MaxReadRequestUnits": 5}}},
                       {"Delete": {"IndexName": "ghost"}}):
            assert error_of(ddb.update_table, TableName=table_name, GlobalSecondaryIndexUpdates=[action]) == (
                "ResourceNotFoundException", f"Requested resource not found: Index ghost for table {table_name}")
        code, message = error_of(ddb.update_table, TableName=table_name, GlobalSecondaryIndexUpdates=[
            {"Update": {"IndexName": "g_x", "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}}}])
        assert message == ("One or more parameter values were invalid: The only Updates for index: g_x when "
                           "TableThroughputMode is PAY_PER_REQUEST can be to OnDemandThroughput, WarmThroughput")
    finally:
        ddb.delete_table(TableName=table_name)


def test_update_table_errors(ddb, server, table):
    # LimitExceededException is retried by boto3 as throttling; ask once.
    once = server.client(retries=1)
    # Live DynamoDB's list of what an UpdateTable may change, less a member the request has.
    everything = ("At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, GlobalSecondaryIndexUpdates, "
                  "SSESpecification, ReplicaUpdates, MultiAccountReplicaReady, ReplicaTransitRoleArn, {}"
                  "DeletionProtectionEnabled, OnDemandThroughput, WarmThroughput or TableClass is required")
    assert error_of(ddb.update_table, TableName=table) == (
        "ValidationException", everything.format("MultiRegionConsistency, "))
    assert error_of(ddb.update_table, TableName=table, AttributeDefinitions=defs(p="S")) == (
        "ValidationException", everything.format("MultiRegionConsistency, "))
    assert error_of(ddb.update_table, TableName=table, MultiRegionConsistency="EVENTUAL") == (
        "ValidationException", everything.format(""))
    assert error_of(ddb.update_table, TableName=table, GlobalSecondaryIndexUpdates=[])[0] == "ValidationException"
    assert error_of(ddb.update_table, TableName="missing_table", BillingMode="PAY_PER_REQUEST")[0] == (
        "ResourceNotFoundException")
    # the units' member rules come before the table is looked for, write before read as DynamoDB lists them
    rule = "failed to satisfy constraint: Member must have value greater than or equal to 1"
    assert error_of(_loose(server).update_table, TableName="missing_table", ProvisionedThroughput={"ReadCapacityUnits": 0,
                                                                      "WriteCapacityUnits": 0}) == (
        "ValidationException", f"2 validation errors detected: Value '0' at 'provisionedThroughput.writeCapacityUnits' "
                               f"{rule}; Value '0' at 'provisionedThroughput.readCapacityUnits' {rule}")
    code, message = error_of(ddb.update_table, TableName=table, GlobalSecondaryIndexUpdates=[{}])
    assert code == "ValidationException" and "GlobalSecondaryIndexUpdate" in message
    two = {"AttributeDefinitions": defs(x="S"),
           "GlobalSecondaryIndexUpdates": [{"Create": gsi("one", "x")}, {"Create": gsi("two", "x")}]}
    assert error_of(once.update_table, TableName=table, **two) == (
        "LimitExceededException",
        "Subscriber limit exceeded: Only 1 online index can be created or deleted simultaneously per table")
    code, message = error_of(ddb.update_table, TableName=table,
                             GlobalSecondaryIndexUpdates=[{"Create": gsi("one", "x")}])
    assert code == "ValidationException" and "AttributeDefinitions" in message
    assert error_of(ddb.update_table, TableName=table,
                    GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "nope"}}])[0] == "ResourceNotFoundException"
    ddb.update_table(TableName=table, **create_gsi_update("one", "x"))
    code, message = error_of(once.update_table, TableName=table, **create_gsi_update("one", "y"))
    assert code in ("ValidationException", "LimitExceededException")
    wait_active(ddb, table, "one")
    code, message = error_of(ddb.update_table, TableName=table, **create_gsi_update("one", "y"))
    assert code == "ValidationException" and "already exists" in message
    code, message = error_of(ddb.update_table, TableName=table, **create_gsi_update("two", "x", types={"x": "N"}))
    assert code == "ValidationException" and "redefined" in message
    description = ddb.describe_table(TableName=table)["Table"]
    assert [g["IndexName"] for g in description["GlobalSecondaryIndexes"]] == ["one"]


def test_billing_throughput_and_stream_changes(ddb, table):
    code, message = error_of(ddb.update_table, TableName=table, BillingMode="PROVISIONED")
    assert message == ("One or more parameter values were invalid: ProvisionedThroughput must be specified when "
                       "BillingMode is PROVISIONED")
    ddb.update_table(TableName=table, **create_gsi_update("gx_", "x"))
    wait_active(ddb, table, "gx_")
    # Leaving on demand, no index is given the table's units: each needs its own in the same request.
    to_provisioned = dict(BillingMode="PROVISIONED", ProvisionedThroughput={"ReadCapacityUnits": 5,
                                                                           "WriteCapacityUnits": 7})
    assert error_of(ddb.update_table, TableName=table, **to_provisioned) == (
        "ValidationException", "One or more parameter values were invalid: ProvisionedThroughput must be "
        "specified for index: gx_")
    response = ddb.update_table(TableName=table, **to_provisioned, GlobalSecondaryIndexUpdates=[
        {"Update": {"IndexName": "gx_", "ProvisionedThroughput": {"ReadCapacityUnits": 2, "WriteCapacityUnits": 1}}}])
    assert response["TableDescription"]["BillingModeSummary"]["BillingMode"] == "PROVISIONED"
    description = ddb.describe_table(TableName=table)["Table"]
    assert description["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
    assert description["ProvisionedThroughput"]["WriteCapacityUnits"] == 7
    assert description["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"]["ReadCapacityUnits"] == 2
    # Restating an index's units is refused, as the table's are.
    assert error_of(ddb.update_table, TableName=table, GlobalSecondaryIndexUpdates=[
        {"Update": {"IndexName": "gx_", "ProvisionedThroughput": {"ReadCapacityUnits": 2, "WriteCapacityUnits": 1}}}]
    ) == ("ValidationException", "The provisioned throughput for the index gx_ will not change. The requested "
          "value equals the current value. Current ReadCapacityUnits provisioned for index gx_: 2. Requested "
          "ReadCapacityUnits: 2. Current WriteCapacityUnits provisioned for index gx_: 1. Requested "
          "WriteCapacityUnits: 1. Refer to the Amazon DynamoDB Developer Guide for current limits and how to "
          "request higher limits.")
    code, message = error_of(ddb.update_table, TableName=table,
                             ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 7})
    assert message.startswith("The provisioned throughput for the table will not change.")
    code, message = error_of(ddb.update_table, TableName=table, BillingMode="PROVISIONED",
                             ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 7})
    assert message.startswith("The provisioned throughput for the table will not change.")
    ddb.update_table(TableName=table, GlobalSecondaryIndexUpdates=[
        {"Update": {"IndexName": "gx_", "ProvisionedThroughput": {"ReadCapacityUnits": 3, "WriteCapacityUnits": 4}}}])
    entry = ddb.describe_table(TableName=table)["Table"]["GlobalSecondaryIndexes"][0]
    assert entry["ProvisionedThroughput"]["WriteCapacityUnits"] == 4
    ddb.update_table(TableName=table, BillingMode="PAY_PER_REQUEST")
    description = ddb.describe_table(TableName=table)["Table"]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    code, _ = error_of(ddb.update_table, TableName=table,
                       ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1})
    assert code == "ValidationException"
    ddb.update_table(TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    assert ddb.describe_table(TableName=table)["Table"]["StreamSpecification"] == {
        "StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    ddb.update_table(TableName=table, StreamSpecification={"StreamEnabled": False})
    assert "StreamSpecification" not in ddb.describe_table(TableName=table)["Table"]


def test_deletion_protection_and_on_demand_caps_change_at_once(ddb, table):
    """DynamoDB answers these changes with the table ACTIVE (they are synchronous); the others say UPDATING."""
    for change in ({"DeletionProtectionEnabled": True}, {"DeletionProtectionEnabled": False},
                   {"OnDemandThroughput": {"MaxReadRequestUnits": 50}}):
        assert ddb.update_table(TableName=table, **change)["TableDescription"]["TableStatus"] == "ACTIVE"
    assert ddb.update_table(TableName=table, BillingMode="PAY_PER_REQUEST")["TableDescription"][
        "TableStatus"] == "UPDATING"


def test_changes_that_must_come_alone(ddb, table):
    """What DynamoDB will not change in one UpdateTable: each refused with its own words, nothing applied."""
    ddb.update_table(TableName=table, BillingMode="PROVISIONED",
                     ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
    prefix = "One or more parameter values were invalid: "
    create = create_gsi_update("gnew", "x")
    create["GlobalSecondaryIndexUpdates"][0]["Create"]["ProvisionedThroughput"] = {
        "ReadCapacityUnits": 1, "WriteCapacityUnits": 1}
    more_units = {"ProvisionedThroughput": {"ReadCapacityUnits": 6, "WriteCapacityUnits": 6}}
    stream = {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}}
    cases = [
        (dict(DeletionProtectionEnabled=True, BillingMode="PROVISIONED", **more_units),
         "DeletionProtection modification must be the only operation in the request"),
        (dict(DeletionProtectionEnabled=True, **create),
         "DeletionProtection modification must be the only operation in the request"),
        (dict(SSESpecification={"Enabled": True, "SSEType": "KMS"}, DeletionProtectionEnabled=True),
         "Server-Side Encryption modification must be the only operation in the request"),
        (dict(TableClass="STANDARD_INFREQUENT_ACCESS", **more_units),
         "TableClass modification must be the only operation in the request"),
        (dict(**create, **more_units), "You cannot create or delete index while updating table IOPS"),
        (dict(**create, **stream), "You cannot create or delete index while changing stream status"),
        (dict(**stream, **more_units), "You cannot modify stream status while updating table IOPS"),
        (dict(DeletionProtectionEnabled=True, GlobalSecondaryIndexUpdates=[]),
         "List of GlobalSecondaryIndexUpdates is empty"),
    ]
    for request, message in cases:
        assert error_of(ddb.update_table, TableName=table, **request) == ("ValidationException", prefix + message)
    description = ddb.describe_table(TableName=table)["Table"]
    assert description["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
    assert "GlobalSecondaryIndexes" not in description and "StreamSpecification" not in description
    assert description["DeletionProtectionEnabled"] is False
    for request, message in (
            (dict(WarmThroughput={"ReadUnitsPerSecond": 13000}, **more_units),
             "WarmThroughput must be the only operation in the request"),
            (dict(WarmThroughput={"ReadUnitsPerSecond": 13000}, **create),
             "Create global secondary index cannot be specified when updating WarmThroughput"),
            (dict(OnDemandThroughput={"MaxReadRequestUnits": 10}, WarmThroughput={"ReadUnitsPerSecond": 13000}),
             "OnDemandThroughput can only be combined with BillingMode in an UpdateTable request"),
            (dict(BillingMode="PROVISIONED", **stream), "You cannot modify stream status while updating table IOPS"),
            (dict(BillingMode="PROVISIONED"), "ProvisionedThroughput must be specified when BillingMode is "
                                              "PROVISIONED")):
        assert error_of(ddb.update_table, TableName=table, **request) == ("ValidationException", prefix + message)
    # The request model's constraints are checked first.
    code, message = error_of(ddb.update_table, TableName=table, BillingMode="FREE", DeletionProtectionEnabled=True)
    assert code == "ValidationException" and "billingMode" in message
    # A new index may come with a switch to on demand.
    plain = create_gsi_update("gnew", "x")
    ddb.update_table(TableName=table, BillingMode="PAY_PER_REQUEST", **plain)
    wait_active(ddb, table, "gnew")
    assert ddb.describe_table(TableName=table)["Table"]["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_global_index_updates_in_update_tables_words(ddb, table):
    prefix = "One or more parameter values were invalid: "
    plain = create_gsi_update("gppr", "x")
    del plain["AttributeDefinitions"]
    assert error_of(ddb.update_table, TableName=table, **plain) == (
        "ValidationException", prefix + "AttributeDefinitions is not specified for index: gppr")
    with_units = create_gsi_update("gppr", "x")
    with_units["GlobalSecondaryIndexUpdates"][0]["Create"]["ProvisionedThroughput"] = {
        "ReadCapacityUnits": 1, "WriteCapacityUnits": 1}
    assert error_of(ddb.update_table, TableName=table, **with_units) == (
        "ValidationException", prefix + "Neither ReadCapacityUnits nor WriteCapacityUnits can be specified for "
        "index: gppr when BillingMode is PAY_PER_REQUEST")
    ddb.update_table(TableName=table, **create_gsi_update("gppr", "x"))
    wait_active(ddb, table, "gppr")
    assert error_of(ddb.update_table, TableName=table, GlobalSecondaryIndexUpdates=[
        {"Update": {"IndexName": "gppr"}}]) == (
        "ValidationException", prefix + "The only Updates for index: gppr when TableThroughputMode is "
        "PAY_PER_REQUEST can be to OnDemandThroughput, WarmThroughput")


def test_a_new_index_of_a_provisioned_table_needs_units_in_update_tables_words(ddb, table_name):
    # CreateTable says "is not specified for index" (test_indexes.py); UpdateTable's Create says this.
    ddb.create_table(TableName=table_name, BillingMode="PROVISIONED", KeySchema=key_schema("p"),
                     AttributeDefinitions=defs(p="S"),
                     ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1})
    try:
        assert error_of(ddb.update_table, TableName=table_name, **create_gsi_update("gprov", "x")) == (
            "ValidationException", "One or more parameter values were invalid: Both ReadCapacityUnits and "
            "WriteCapacityUnits must be specified for index: gprov")
    finally:
        ddb.delete_table(TableName=table_name)


def test_a_new_indexs_units_members_are_judged_before_the_billing_mode(ddb, server, table):
    # DynamoDB checks a Create's units as it checks an Update's, before it weighs them against
    # the table's mode: a half-filled or zero throughput is refused as such even by an on-demand
    # table (ScyllaDB's alternator test, checked against DynamoDB, says so).
    where = "globalSecondaryIndexUpdates.1.member.create.provisionedThroughput."
    for units, problem in (({"ReadCapacityUnits": 4}, "Value null at '" + where + "writeCapacityUnits' failed "
                            "to satisfy constraint: Member must not be null"),
                           ({"ReadCapacityUnits": 0, "WriteCapacityUnits": 5}, "Value '0' at '" + where +
                            "readCapacityUnits' failed to satisfy constraint: Member must have value greater than "
                            "or equal to 1")):
        update = create_gsi_update("gunits", "x")
        update["GlobalSecondaryIndexUpdates"][0]["Create"]["ProvisionedThroughput"] = units
        assert error_of(_loose(server).update_table, TableName=table, **update) == (
            "ValidationException", "1 validation error detected: " + problem)


def test_a_local_index_is_not_updated_or_deleted(ddb, table_name):
    ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST", KeySchema=key_schema("p", "s"),
                     AttributeDefinitions=defs(p="S", s="S", x="S"),
                     LocalSecondaryIndexes=[gsi("lsi_b", "p", "x")])
    try:
        for action, body in (("Delete", {"IndexName": "lsi_b"}),
                             ("Update", {"IndexName": "lsi_b", "OnDemandThroughput": {"MaxReadRequestUnits": 5}})):
            assert error_of(ddb.update_table, TableName=table_name, GlobalSecondaryIndexUpdates=[{action: body}]) == (
                "ValidationException", f"Cannot {action.lower()} an index that is not a GlobalSecondaryIndex: lsi_b")
    finally:
        ddb.delete_table(TableName=table_name)


def test_index_throughput_changes_are_dated(ddb, table_name):
    # An index's ProvisionedThroughputDescription records its own increases and decreases, as the table's does.
    units = {"ReadCapacityUnits": 2, "WriteCapacityUnits": 2}
    ddb.create_table(TableName=table_name, KeySchema=key_schema("p"), AttributeDefinitions=defs(p="S", x="S"),
                     ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
                     GlobalSecondaryIndexes=[{**gsi("gd_", "x"), "ProvisionedThroughput": units}])
    try:
        def index_units():
            return ddb.describe_table(TableName=table_name)["Table"]["GlobalSecondaryIndexes"][0][
                "ProvisionedThroughput"]

        def update(read, write):
            throughput = {"ReadCapacityUnits": read, "WriteCapacityUnits": write}
            ddb.update_table(TableName=table_name, GlobalSecondaryIndexUpdates=[{"Update": {
                "IndexName": "gd_", "ProvisionedThroughput": throughput}}])

        assert index_units() == {"NumberOfDecreasesToday": 0, **units}
        update(3, 2)
        increased = index_units()
        assert "LastIncreaseDateTime" in increased and "LastDecreaseDateTime" not in increased
        update(1, 2)
        update(1, 1)
        described = index_units()
        assert described["LastIncreaseDateTime"] == increased["LastIncreaseDateTime"]
        assert described["LastDecreaseDateTime"] >= increased["LastIncreaseDateTime"]
        assert described["NumberOfDecreasesToday"] == 2
        assert (described["ReadCapacityUnits"], described["WriteCapacityUnits"]) == (1, 1)
        table_units = ddb.describe_table(TableName=table_name)["Table"]["ProvisionedThroughput"]
        assert "LastDecreaseDateTime" not in table_units and table_units["NumberOfDecreasesToday"] == 0
    finally:
        ddb.delete_table(TableName=table_name)


def test_index_units_out_of_bounds_name_the_index(ddb, table_name):
    # More than 10^12 units is refused for a global index too, naming it, when it is created
    # with the table, created by UpdateTable, or updated.
    big = 1000000000001
    units = {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}
    definition = dict(TableName=table_name, KeySchema=key_schema("p"), AttributeDefinitions=defs(p="S", x="S"),
                      ProvisionedThroughput=units)
    for read, write, refused in ((big, 1, "ReadCapacityUnits"), (1, big, "WriteCapacityUnits")):
        index = {**gsi("gb_", "x"), "ProvisionedThroughput": {"ReadCapacityUnits": read, "WriteCapacityUnits": write}}
        assert error_of(ddb.create_table, **definition, GlobalSecondaryIndexes=[index]) == (
            "ValidationException", f"Given value {big} for {refused} is out of bounds for index gb_")
    assert table_name not in ddb.list_tables()["TableNames"]
    ddb.create_table(**definition, GlobalSecondaryIndexes=[{**gsi("gb_", "x"), "ProvisionedThroughput": units}])
    try:
        update = {"Update": {"IndexName": "gb_", "ProvisionedThroughput": {"ReadCapacityUnits": 1,
                                                                           "WriteCapacityUnits": big}}}
        assert error_of(ddb.update_table, TableName=table_name, GlobalSecondaryIndexUpdates=[update]) == (
            "ValidationException", f"Given value {big} for WriteCapacityUnits is out of bounds for index gb_")
        create = {"Create": {**gsi("gc_", "y"), "ProvisionedThroughput": {"ReadCapacityUnits": big,
                                                                          "WriteCapacityUnits": 1}}}
        assert error_of(ddb.update_table, TableName=table_name, AttributeDefinitions=defs(p="S", y="S"),
                        GlobalSecondaryIndexUpdates=[create]) == (
            "ValidationException", f"Given value {big} for ReadCapacityUnits is out of bounds for index gc_")
        indexes = ddb.describe_table(TableName=table_name)["Table"]["GlobalSecondaryIndexes"]
        assert [(i["IndexName"], i["ProvisionedThroughput"]["WriteCapacityUnits"]) for i in indexes] == [("gb_", 1)]
    finally:
        ddb.delete_table(TableName=table_name)
