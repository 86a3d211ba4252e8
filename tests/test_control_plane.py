"""The control-plane operations beyond tables, through boto3 against a real server:
Contributor Insights, resource policies, Kinesis destinations, global tables, replica
auto scaling, exports and imports.  What is kept is read back; what does not exist is
described as absent; what this server cannot do is refused with DynamoDB's error types."""

import json
import threading

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import create_table

ACCOUNT_ARN = "arn:aws:dynamodb:us-east-1:000000000000"
KINESIS_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/orders"
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
     "Action": "dynamodb:GetItem", "Resource": "*"}]})


def minified(policy: str) -> str:
    """A policy as GetResourcePolicy answers it, for a document already in IAM's member order."""
    return json.dumps(json.loads(policy), separators=(",", ":"))


@pytest.fixture(scope="module")
def loose(server):
    """A client that sends what boto3 would refuse to (lengths, ranges) for the server to judge."""
    return boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="y",
                        config=Config(parameter_validation=False, retries={"max_attempts": 1}))


def body(response):
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def error_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def refused(call, **kwargs):
    with pytest.raises(ClientError) as e:
        call(**kwargs)
    return error_of(e)


def not_found(name):
    return ("ResourceNotFoundException", f"Requested resource not found: Table: {name} not found")


@pytest.fixture
def index_table(ddb, table_name):
    """A table with a GSI (gsi1) and an LSI (lsi1)."""
    key = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    ddb.create_table(
        TableName=table_name, BillingMode="PAY_PER_REQUEST", KeySchema=key,
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "g", "l")],
        GlobalSecondaryIndexes=[{"IndexName": "gsi1", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}],
        LocalSecondaryIndexes=[{"IndexName": "lsi1", "KeySchema": [key[0], {"AttributeName": "l", "KeyType": "RANGE"}],
                                "Projection": {"ProjectionType": "KEYS_ONLY"}}])
    yield table_name
    ddb.delete_table(TableName=table_name)


# ------------------------------------------------------------------ Contributor Insights

def test_contributor_insights_of_a_table_and_its_gsi(ddb, index_table):
    assert body(ddb.describe_contributor_insights(TableName=index_table)) == {
        "TableName": index_table, "ContributorInsightsStatus": "DISABLED"}
    assert ddb.list_contributor_insights(TableName=index_table)["ContributorInsightsSummaries"] == []
    enabled = ddb.update_contributor_insights(TableName=index_table, ContributorInsightsAction="ENABLE")
    assert (enabled["ContributorInsightsStatus"], enabled["ContributorInsightsMode"]) == \
        ("ENABLING", "ACCESSED_AND_THROTTLED_KEYS")
    described = ddb.describe_contributor_insights(TableName=index_table)
    assert described["ContributorInsightsStatus"] == "ENABLED"
    assert described["ContributorInsightsMode"] == "ACCESSED_AND_THROTTLED_KEYS"
    assert "LastUpdateDateTime" in described and "ContributorInsightsRuleList" not in described
    # the GSI's setting is its own
    assert ddb.describe_contributor_insights(TableName=index_table, IndexName="gsi1")[
        "ContributorInsightsStatus"] == "DISABLED"
    gsi = ddb.update_contributor_insights(TableName=index_table, IndexName="gsi1", ContributorInsightsAction="ENABLE",
                                          ContributorInsightsMode="THROTTLED_KEYS")
    assert (gsi["IndexName"], gsi["ContributorInsightsStatus"], gsi["ContributorInsightsMode"]) == \
        ("gsi1", "ENABLING", "THROTTLED_KEYS")
    assert ddb.list_contributor_insights(TableName=index_table)["ContributorInsightsSummaries"] == [
        {"TableName": index_table, "ContributorInsightsStatus": "ENABLED",
         "ContributorInsightsMode": "ACCESSED_AND_THROTTLED_KEYS"},
        {"TableName": index_table, "IndexName": "gsi1", "ContributorInsightsStatus": "ENABLED",
         "ContributorInsightsMode": "THROTTLED_KEYS"}]
    # ENABLE of what is enabled already is a no-op answering the settled status
    again = ddb.update_contributor_insights(TableName=index_table, ContributorInsightsAction="ENABLE")
    assert again["ContributorInsightsStatus"] == "ENABLED"
    # by ARN as well as by name
    arn = ddb.describe_table(TableName=index_table)["Table"]["TableArn"]
    assert ddb.describe_contributor_insights(TableName=arn)["ContributorInsightsStatus"] == "ENABLED"
    disabled = ddb.update_contributor_insights(TableName=index_table, ContributorInsightsAction="DISABLE")
    assert disabled["ContributorInsightsStatus"] == "DISABLING"
    described = ddb.describe_contributor_insights(TableName=index_table)
    assert described["ContributorInsightsStatus"] == "DISABLED"
    assert described["ContributorInsightsMode"] == "ACCESSED_AND_THROTTLED_KEYS"     # kept after a cycle
    assert ddb.update_contributor_insights(TableName=index_table, ContributorInsightsAction="DISABLE")[
        "ContributorInsightsStatus"] == "DISABLED"
    # a DISABLED entry is not listed
    assert [s.get("IndexName") for s in ddb.list_contributor_insights(
        TableName=index_table)["ContributorInsightsSummaries"]] == ["gsi1"]


def test_contributor_insights_errors(ddb, loose, index_table):
    assert refused(ddb.describe_contributor_insights, TableName="missing_table") == not_found("missing_table")
    assert refused(ddb.update_contributor_insights, TableName="missing_table",
                   ContributorInsightsAction="ENABLE") == not_found("missing_table")
    assert refused(ddb.list_contributor_insights, TableName="missing_table") == not_found("missing_table")
    for index in ("lsi1", "nope"):      # an LSI has no Contributor Insights of its own
        message = f"Requested resource not found: Index: {index} not found for table: {index_table}"
        assert refused(ddb.describe_contributor_insights, TableName=index_table, IndexName=index) == \
            ("ResourceNotFoundException", message)
        assert refused(ddb.update_contributor_insights, TableName=index_table, IndexName=index,
                       ContributorInsightsAction="ENABLE") == ("ResourceNotFoundException", message)
    # member constraints come before the table is looked for
    code, message = refused(ddb.update_contributor_insights, TableName="missing_table",
                            ContributorInsightsAction="ON", ContributorInsightsMode="ALL")
    assert code == "ValidationException"
    assert message == ("2 validation errors detected: Value 'ON' at 'contributorInsightsAction' failed to satisfy "
                       "constraint: Member must satisfy enum value set: [ENABLE, DISABLE]; Value 'ALL' at "
                       "'contributorInsightsMode' failed to satisfy constraint: Member must satisfy enum value set: "
                       "[THROTTLED_KEYS, ACCESSED_AND_THROTTLED_KEYS]")
    assert refused(loose.list_contributor_insights, MaxResults=101) == (
        "ValidationException", "1 validation error detected: Value '101' at 'maxResults' failed to satisfy "
                               "constraint: Member must have value less than or equal to 100")
    assert refused(ddb.list_contributor_insights, NextToken="garbage!")[0] == "ValidationException"
    # An index name of the wrong length has Contributor Insights' own words.
    for call in (loose.describe_contributor_insights,
                 lambda **kw: loose.update_contributor_insights(ContributorInsightsAction="ENABLE", **kw)):
        for name in ("", "x" * 256):
            assert refused(call, TableName=index_table, IndexName=name) == (
                "ValidationException", "IndexName must be at least 3 characters long and at most 255 characters long")
    assert refused(loose.describe_contributor_insights, TableName=index_table, IndexName="x")[0] == \
        "ValidationException"
    assert refused(ddb.describe_contributor_insights,
                   TableName=f"arn:aws:dynamodb:eu-west-1:000000000000:table/{index_table}") == (
        "ValidationException", f"1 validation error detected: Invalid AWS region in "
                               f"'arn:aws:dynamodb:eu-west-1:000000000000:table/{index_table}'")


def test_contributor_insights_listing_pages(ddb, table_name):
    names = [f"{table_name}_{i}" for i in range(3)]
    for name in names:
        create_table(ddb, name)
    try:
        for name in names:
            ddb.update_contributor_insights(TableName=name, ContributorInsightsAction="ENABLE")
        seen, token = [], None
        while True:
            page = ddb.list_contributor_insights(MaxResults=1, **({"NextToken": token} if token else {}))
            assert len(page["ContributorInsightsSummaries"]) <= 1
            seen += [s["TableName"] for s in page["ContributorInsightsSummaries"]]
            token = page.get("NextToken")
            if token is None:
                break
        assert [n for n in seen if n in names] == names
    finally:
        for name in names:
            ddb.delete_table(TableName=name)
    # the settings go with the table
    create_table(ddb, names[0])
    try:
        assert ddb.describe_contributor_insights(TableName=names[0])["ContributorInsightsStatus"] == "DISABLED"
    finally:
        ddb.delete_table(TableName=names[0])


def test_contributor_insights_survive_a_restart(tmp_path):
    from serverutil import ServerProcess
    srv = ServerProcess(tmp_path / "data", smp=2).start()
    try:
        ddb = srv.client()
        create_table(ddb, "kept")
        ddb.update_contributor_insights(TableName="kept", ContributorInsightsAction="ENABLE")
        arn = ddb.describe_table(TableName="kept")["Table"]["TableArn"]
        revision = ddb.put_resource_policy(ResourceArn=arn, Policy=POLICY)["RevisionId"]
        assert srv.stop() == 0
        srv.start()
        ddb = srv.client()
        assert ddb.describe_contributor_insights(TableName="kept")["ContributorInsightsStatus"] == "ENABLED"
        assert body(ddb.get_resource_policy(ResourceArn=arn)) == {"Policy": minified(POLICY), "RevisionId": revision}
    finally:
        srv.stop()


# ------------------------------------------------------------------ resource policies

def test_resource_policy_put_get_delete(ddb, hash_table):
    arn = ddb.describe_table(TableName=hash_table)["Table"]["TableArn"]
    assert refused(ddb.get_resource_policy, ResourceArn=arn) == (
        "PolicyNotFoundException", f"Resource-based policy not found for the provided ResourceArn: {arn}")
    described = ddb.describe_table(TableName=hash_table)["Table"]
    revision = ddb.put_resource_policy(ResourceArn=arn, Policy=POLICY)["RevisionId"]
    assert revision.isdigit()
    got = ddb.get_resource_policy(ResourceArn=arn)
    assert (got["Policy"], got["RevisionId"]) == (minified(POLICY), revision)
    # the same document (spaced differently) again changes nothing, not even the revision
    assert ddb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(json.loads(POLICY), indent=4))[
        "RevisionId"] == revision
    other = POLICY.replace("GetItem", "Query")
    newer = ddb.put_resource_policy(ResourceArn=arn, Policy=other, ExpectedRevisionId=revision)["RevisionId"]
    assert int(newer) > int(revision)
    assert ddb.get_resource_policy(ResourceArn=arn)["Policy"] == minified(other)
    # a stale expectation is refused, and nothing changes
    assert refused(ddb.put_resource_policy, ResourceArn=arn, Policy=POLICY, ExpectedRevisionId=revision) == (
        "PolicyNotFoundException", "Resource-based policy not found for the provided ResourceArn: Requested "
        f"update for policy with revision id {revision}, but the policy associated to target table {hash_table} "
        f"has revision id {newer}.")
    assert refused(ddb.put_resource_policy, ResourceArn=arn, Policy=POLICY, ExpectedRevisionId="NO_POLICY") == (
        "PolicyNotFoundException", "Resource-based policy not found for the provided ResourceArn: Requested "
        f"policy update expecting none to be present for table {hash_table}, but a policy exists with revision "
        f"id {newer}.")
    assert refused(ddb.delete_resource_policy, ResourceArn=arn, ExpectedRevisionId=revision)[0] == \
        "PolicyNotFoundException"
    assert ddb.get_resource_policy(ResourceArn=arn)["RevisionId"] == newer
    # policies are stored, not enforced, and DescribeTable does not show them
    assert ddb.describe_table(TableName=hash_table)["Table"] == described
    assert ddb.delete_resource_policy(ResourceArn=arn, ExpectedRevisionId=newer)["RevisionId"] == newer
    assert refused(ddb.get_resource_policy, ResourceArn=arn)[0] == "PolicyNotFoundException"
    assert "RevisionId" not in ddb.delete_resource_policy(ResourceArn=arn)     # nothing to delete: a no-op
    assert refused(ddb.delete_resource_policy, ResourceArn=arn, ExpectedRevisionId=newer)[0] == \
        "PolicyNotFoundException"
    fresh = ddb.put_resource_policy(ResourceArn=arn, Policy=POLICY, ExpectedRevisionId="NO_POLICY")["RevisionId"]
    assert ddb.get_resource_policy(ResourceArn=arn)["RevisionId"] == fresh


def test_resource_policy_is_kept_in_dynamodbs_canonical_form(ddb, hash_table):
    """GetResourcePolicy answers the document as DynamoDB rewrites it: minified, members in IAM's
    order, a lone statement as a list, one-element lists as strings, an account id as its root
    ARN, the Effect's case fixed, and 2008-10-17 for a document that names no Version."""
    arn = ddb.describe_table(TableName=hash_table)["Table"]["TableArn"]
    sent = json.dumps({"Statement": {"Resource": [arn], "Action": ["dynamodb:GetItem"], "Effect": "allow",
                                     "Principal": {"AWS": ["000000000000", "arn:aws:iam::000000000000:root"]},
                                     "Sid": "read"}}, indent=2)
    revision = ddb.put_resource_policy(ResourceArn=arn, Policy=sent)["RevisionId"]
    shown = ddb.get_resource_policy(ResourceArn=arn)["Policy"]
    assert shown == ('{"Version":"2008-10-17","Statement":[{"Sid":"read","Effect":"Allow","Principal":{"AWS":'
                     '"arn:aws:iam::000000000000:root"},"Action":"dynamodb:GetItem","Resource":"' + arn + '"}]}')
    # the same policy written another way changes nothing; naming the default Version is a change
    respelled = json.dumps({"Statement": [{"Sid": "read", "Effect": "Allow", "Resource": arn,
                                           "Principal": {"AWS": "000000000000"}, "Action": "dynamodb:GetItem"}]})
    assert ddb.put_resource_policy(ResourceArn=arn, Policy=respelled)["RevisionId"] == revision
    assert ddb.put_resource_policy(ResourceArn=arn, Policy=shown)["RevisionId"] != revision
    # an Allow to everyone, with no condition, is DynamoDB's guardrail's to refuse
    for everyone in ("*", {"AWS": "*"}):
        public = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": everyone, "Action": "dynamodb:GetItem", "Resource": arn}]})
        assert refused(ddb.put_resource_policy, ResourceArn=arn, Policy=public) == (
            "ValidationException", "Resource-based policy grants unbounded access in one or more elements. Please "
                                   "revise the policy to ensure least-privilege form of access")
    ddb.delete_resource_policy(ResourceArn=arn)


def test_resource_policy_of_a_stream_is_its_own(ddb, table_name):
    create_table(ddb, table_name, StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
    try:
        table = ddb.describe_table(TableName=table_name)["Table"]
        stream_arn = table["LatestStreamArn"]
        revision = ddb.put_resource_policy(ResourceArn=stream_arn, Policy=POLICY)["RevisionId"]
        assert ddb.get_resource_policy(ResourceArn=stream_arn)["RevisionId"] == revision
        assert refused(ddb.get_resource_policy, ResourceArn=table["TableArn"])[0] == "PolicyNotFoundException"
        bogus = f"{table['TableArn']}/stream/2000-01-01T00:00:00.000"
        assert refused(ddb.get_resource_policy, ResourceArn=bogus) == (
            "ResourceNotFoundException",
            f"Requested resource not found: Stream: 2000-01-01T00:00:00.000 not found for Table: {table_name}")
    finally:
        ddb.delete_table(TableName=table_name)
    # a policy goes with its table
    create_table(ddb, table_name)
    try:
        arn = ddb.describe_table(TableName=table_name)["Table"]["TableArn"]
        assert refused(ddb.get_resource_policy, ResourceArn=arn)[0] == "PolicyNotFoundException"
    finally:
        ddb.delete_table(TableName=table_name)


def test_concurrent_changes_are_not_lost(server, index_table):
    """Changes race through different acceptors: each conditional put either wins or sees the
    winner's revision, and changes of different settings of one table all stay."""
    clients = [server.client() for _ in range(16)]
    arn = clients[0].describe_table(TableName=index_table)["Table"]["TableArn"]
    base = clients[0].put_resource_policy(ResourceArn=arn, Policy=POLICY)["RevisionId"]
    for client in clients:
        client.describe_table(TableName=index_table)       # connected before the race starts
    outcomes = [None] * len(clients)
    start = threading.Barrier(len(clients))

    def conditional_put(i):
        start.wait()
        try:
            clients[i].put_resource_policy(ResourceArn=arn, Policy=POLICY.replace("GetItem", f"Get{i}"),
                                           ExpectedRevisionId=base)
            outcomes[i] = "won"
        except ClientError as error:
            outcomes[i] = error.response["Error"]["Code"]

    threads = [threading.Thread(target=conditional_put, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("won") == 1 and outcomes.count("PolicyNotFoundException") == len(clients) - 1
    winner = outcomes.index("won")
    assert f"Get{winner}" in clients[0].get_resource_policy(ResourceArn=arn)["Policy"]

    def enable(i):
        start.wait()
        clients[i].update_contributor_insights(TableName=index_table, ContributorInsightsAction="ENABLE",
                                               **({"IndexName": "gsi1"} if i % 2 else {}))

    threads = [threading.Thread(target=enable, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(clients[0].list_contributor_insights(TableName=index_table)["ContributorInsightsSummaries"]) == 2
    assert clients[0].get_resource_policy(ResourceArn=arn)["Policy"] != minified(POLICY)     # the policy stayed too


def test_create_table_keeps_its_resource_policy(ddb, table_name):
    create_table(ddb, table_name, ResourcePolicy=POLICY)
    try:
        arn = ddb.describe_table(TableName=table_name)["Table"]["TableArn"]
        assert ddb.get_resource_policy(ResourceArn=arn)["Policy"] == minified(POLICY)
    finally:
        ddb.delete_table(TableName=table_name)
    assert refused(create_table, client=ddb, name=table_name, ResourcePolicy="{not json") == (
        "ValidationException", "One or more parameter values were invalid: Invalid policy document: "
                               "This policy contains invalid Json")
    assert table_name not in ddb.list_tables()["TableNames"]


def test_resource_policy_errors(ddb, loose, index_table):
    arn = ddb.describe_table(TableName=index_table)["Table"]["TableArn"]
    invalid = "One or more parameter values were invalid: "
    for policy, message in (
            ("{not json", "Invalid policy document: This policy contains invalid Json"),
            ("[1, 2]", "Invalid policy document: This policy contains invalid Json"),
            ("", "Invalid policy document: This policy contains invalid Json"),
            ("null", "Invalid policy document: This text appears not to be a policy"),
            ("{}", "Invalid policy document: Syntax error at position (1,3)"),
            (json.dumps({"Version": "2012-10-17", "Statement": []}),
             "Invalid policy document: Could not parse the policy: Statement is empty!"),
            (json.dumps({"Version": "2012-10-17", "Statement": [{}]}),
             "Invalid policy document: Missing required field Effect"),
            (json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "dynamodb:GetItem",
                                                                 "Principal": "*"}]}),
             "Invalid policy document: Missing required field Resource"),
            (json.dumps({"Version": "2012-10-17", "Statement": [dict(json.loads(POLICY)["Statement"][0], Sid="a")] * 2}),
             "Invalid policy document: The Statement Ids in the policy are not unique"),
            (json.dumps({"Statement": [], "Pad": " " * 20480}), "Maximum policy size of 20480 bytes exceeded")):
        assert refused(ddb.put_resource_policy, ResourceArn=arn, Policy=policy) == \
            ("ValidationException", invalid + message)
    for resource, expected in (
            (index_table, ("ValidationException", f"{invalid}ARNs must start with 'arn:': {index_table}")),
            (f"{ACCOUNT_ARN}:table/missing_table", not_found("missing_table")),
            (f"{arn}/index/gsi1", ("ValidationException",
                                   f"{invalid}Invalid resource arn provided, only table or stream is accepted. "
                                   f"Provided resource arn: {arn}/index/gsi1")),
            (f"{arn}/backup/01234", ("ValidationException",
                                     f"{invalid}Provided Arn is not a DynamoDB resource arn: {arn}/backup/01234")),
            (f"arn:aws:dynamodb:eu-west-1:000000000000:table/{index_table}",
             ("ValidationException", f"{invalid}Invalid resource Arn: "
                                     f"arn:aws:dynamodb:eu-west-1:000000000000:table/{index_table}")),
            (f"arn:aws:dynamodb:us-east-1:123456789012:table/{index_table}",
             ("ValidationException", "This action is only supported by accounts that match the resource "
                                     "owner\u2019s account.")),
            (f"arn:aws:s3:::{index_table}", ("ValidationException", f"{invalid}Provided Arn is not a DynamoDB "
                                                                    f"resource arn: arn:aws:s3:::{index_table}"))):
        assert refused(ddb.get_resource_policy, ResourceArn=resource) == expected
        assert refused(ddb.put_resource_policy, ResourceArn=resource, Policy=POLICY) == expected
        assert refused(ddb.delete_resource_policy, ResourceArn=resource) == expected
    # CreateTable's ResourcePolicy is judged the same way, and no table is made.
    assert refused(ddb.create_table, TableName="policy_refused", KeySchema=[{"AttributeName": "p", "KeyType": "HASH"}],
                   AttributeDefinitions=[{"AttributeName": "p", "AttributeType": "S"}],
                   BillingMode="PAY_PER_REQUEST", ResourcePolicy="{}") == \
        ("ValidationException", invalid + "Invalid policy document: Syntax error at position (1,3)")
    assert "policy_refused" not in ddb.list_tables()["TableNames"]
    assert refused(loose.put_resource_policy, ResourceArn=arn, Policy=POLICY, ExpectedRevisionId="x" * 256)[0] == \
        "ValidationException"
    assert refused(ddb.put_resource_policy, ResourceArn=arn, Policy=POLICY, ExpectedRevisionId="12345")[0] == \
        "PolicyNotFoundException"


def test_missing_members_are_refused_by_the_server(server):
    """The raw requests an SDK would stop client-side: the server still refuses them."""
    import urllib.request

    def post(op, body):
        request = urllib.request.Request(server.endpoint, data=json.dumps(body).encode(), method="POST", headers={
            "X-Amz-Target": f"DynamoDB_20120810.{op}", "Content-Type": "application/x-amz-json-1.0"})
        try:
            with urllib.request.urlopen(request) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    for op, body, field in (
            ("GetResourcePolicy", {}, "resourceArn"),
            ("PutResourcePolicy", {"ResourceArn": f"{ACCOUNT_ARN}:table/t"}, "policy"),
            ("DescribeContributorInsights", {}, "tableName"),
            ("UpdateContributorInsights", {"TableName": "t_t"}, "contributorInsightsAction"),
            ("DescribeKinesisStreamingDestination", {}, "tableName"),
            ("EnableKinesisStreamingDestination", {"TableName": "t_t"}, "streamArn"),
            ("DescribeGlobalTable", {}, "globalTableName"),
            ("CreateGlobalTable", {"GlobalTableName": "t_t"}, "replicationGroup"),
            ("UpdateGlobalTable", {"GlobalTableName": "t_t"}, "replicaUpdates"),
            ("DescribeTableReplicaAutoScaling", {}, "tableName"),
            ("DescribeExport", {}, "exportArn"),
            ("ExportTableToPointInTime", {"TableArn": f"{ACCOUNT_ARN}:table/t_t"}, "s3Bucket"),
            ("DescribeImport", {}, "importArn"),
            ("ImportTable", {"InputFormat": "CSV", "TableCreationParameters": {
                "TableName": "t_t", "KeySchema": [], "AttributeDefinitions": []}}, "s3BucketSource")):
        status, reply = post(op, body)
        assert status == 400, (op, reply)
        assert reply["__type"].endswith("#ValidationException"), (op, reply)
        assert f"Value null at '{field}' failed to satisfy constraint: Member must not be null" in \
            reply["message"], (op, reply)


# ------------------------------------------------------------------ Kinesis destinations

def test_kinesis_destinations_are_absent_and_cannot_be_enabled(ddb, loose, hash_table):
    described = ddb.describe_kinesis_streaming_destination(TableName=hash_table)
    assert (described["TableName"], described["KinesisDataStreamDestinations"]) == (hash_table, [])
    code, message = refused(ddb.enable_kinesis_streaming_destination, TableName=hash_table, StreamArn=KINESIS_ARN)
    assert code == "ValidationException" and "not supported by this server" in message
    assert refused(ddb.disable_kinesis_streaming_destination, TableName=hash_table, StreamArn=KINESIS_ARN) == (
        "ValidationException", "Table is not in a valid state to enable Kinesis Streaming Destination: "
                               "KinesisStreamingDestination must be ACTIVE to perform DISABLE operation.")
    assert refused(ddb.update_kinesis_streaming_destination, TableName=hash_table, StreamArn=KINESIS_ARN,
                   UpdateKinesisStreamingConfiguration={"ApproximateCreationDateTimePrecision": "MICROSECOND"}) == (
        "ValidationException", "Table is not in a valid state to enable Kinesis Streaming Destination: Kinesis "
                               "streaming is not in ACTIVE state. Updates are only allowed in ACTIVE state. "
                               f"TableName: {hash_table}, kdsArn: {KINESIS_ARN}")
    # An Update that asks for nothing is refused for that first.
    for configuration in ({}, {"UpdateKinesisStreamingConfiguration": {}}):
        assert refused(ddb.update_kinesis_streaming_destination, TableName=hash_table, StreamArn=KINESIS_ARN,
                       **configuration) == (
            "ValidationException", "Streaming destination cannot be updated with given parameters: "
                                   "UpdateKinesisStreamingConfiguration cannot be null or contain only null values")
    assert ddb.describe_kinesis_streaming_destination(TableName=hash_table)["KinesisDataStreamDestinations"] == []
    # an unknown table is ResourceNotFoundException first
    for call in (ddb.enable_kinesis_streaming_destination, ddb.disable_kinesis_streaming_destination,
                 ddb.update_kinesis_streaming_destination):
        assert refused(call, TableName="missing_table", StreamArn=KINESIS_ARN) == not_found("missing_table")
    assert refused(ddb.describe_kinesis_streaming_destination, TableName="missing_table") == \
        not_found("missing_table")
    # and malformed members before that
    assert refused(loose.enable_kinesis_streaming_destination, TableName="missing_table", StreamArn="short") == (
        "ValidationException", "1 validation error detected: Value 'short' at 'streamArn' failed to satisfy "
                               "constraint: Member must have length greater than or equal to 37")


# ------------------------------------------------------------------ global tables and replica auto scaling

def test_there_are_no_global_tables(ddb, loose, hash_table):
    assert ddb.list_global_tables()["GlobalTables"] == []
    assert ddb.list_global_tables(RegionName="us-east-1", Limit=5)["GlobalTables"] == []
    absent = ("GlobalTableNotFoundException", f"Global table with name: '{hash_table}' does not exist.")
    assert refused(ddb.describe_global_table, GlobalTableName=hash_table) == absent
    assert refused(ddb.describe_global_table_settings, GlobalTableName=hash_table) == absent
    assert refused(ddb.update_global_table_settings, GlobalTableName=hash_table,
                   GlobalTableBillingMode="PAY_PER_REQUEST") == absent
    assert refused(ddb.update_global_table, GlobalTableName=hash_table,
                   ReplicaUpdates=[{"Delete": {"RegionName": "us-east-1"}}]) == absent
    legacy = ("ValidationException", "One or more parameter values were invalid: DynamoDB global tables version "
              "2017.11.29 is not supported. We recommend using DynamoDB global tables version 2019.11.21, instead "
              "of version 2017.11.29 (Legacy).")
    assert refused(ddb.create_global_table, GlobalTableName=hash_table,
                   ReplicationGroup=[{"RegionName": "us-east-1"}, {"RegionName": "eu-west-1"}]) == legacy
    assert refused(ddb.update_global_table, GlobalTableName=hash_table,
                   ReplicaUpdates=[{"Create": {"RegionName": "eu-west-1"}}]) == legacy
    assert ddb.list_global_tables()["GlobalTables"] == []
    short = ("ValidationException", "TableName must be at least 3 characters long and at most 255 characters long")
    for call in (loose.describe_global_table, loose.describe_global_table_settings):
        for name in ("", "x"):
            assert refused(call, GlobalTableName=name) == short
    assert refused(loose.list_global_tables, Limit=0)[0] == "ValidationException"
    for updates in ([], [{}]):
        assert refused(loose.update_global_table, GlobalTableName=hash_table, ReplicaUpdates=updates) == \
            ("ValidationException", "One or more parameter values were invalid")
    assert refused(loose.update_global_table_settings, GlobalTableName=hash_table, ReplicaSettingsUpdate=[{}]) == (
        "ValidationException", "1 validation error detected: Value null at 'replicaSettingsUpdate.1.member.regionName' "
                               "failed to satisfy constraint: Member must not be null")


def test_replica_auto_scaling_of_a_regional_table(ddb, hash_table):
    for name in (hash_table, "missing_table"):
        absent = ("ResourceNotFoundException", f"Global table with name: '{name}' does not exist.")
        assert refused(ddb.describe_table_replica_auto_scaling, TableName=name) == absent
        update = {"MinimumUnits": 1, "MaximumUnits": 10, "ScalingPolicyUpdate": {
            "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 70.0}}}
        assert refused(ddb.update_table_replica_auto_scaling, TableName=name,
                       ProvisionedWriteCapacityAutoScalingUpdate=update) == absent
    assert refused(ddb.describe_table_replica_auto_scaling, TableName="a?")[0] == "ValidationException"


# ------------------------------------------------------------------ exports and imports

def test_there_are_no_exports_and_none_can_be_made(ddb, loose, hash_table):
    arn = ddb.describe_table(TableName=hash_table)["Table"]["TableArn"]
    assert ddb.list_exports()["ExportSummaries"] == []
    assert ddb.list_exports(TableArn=arn, MaxResults=25)["ExportSummaries"] == []
    export_arn = f"{arn}/export/01700000000000-0a1b2c3d"
    assert refused(ddb.describe_export, ExportArn=export_arn) == (
        "ExportNotFoundException", f"Export not found: Export not found: {export_arn}")
    assert refused(ddb.describe_export, ExportArn=arn + "/backup/01700000000000-0a1b2c3d") == \
        ("ValidationException", "Invalid Export ARN")
    # An incremental export needs its start, and an empty TableArn has words of its own: both before the table.
    assert refused(loose.export_table_to_point_in_time, TableArn=arn, S3Bucket="my-bucket",
                   ExportType="INCREMENTAL_EXPORT", IncrementalExportSpecification={}) == (
        "ValidationException", "Invalid Request: ExportFromTime must be provided in IncrementalExportSpecification")
    assert refused(loose.export_table_to_point_in_time, TableArn="", S3Bucket="my-bucket") == (
        "ValidationException", "Invalid TableArn: Invalid Table ARN")
    # An export reads the table's continuous backups: without them DynamoDB refuses it first.
    assert refused(ddb.export_table_to_point_in_time, TableArn=arn, S3Bucket="my-bucket") == (
        "PointInTimeRecoveryUnavailableException", f"Point in time recovery is not enabled for table '{hash_table}'")
    ddb.update_continuous_backups(TableName=hash_table,
                                  PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    code, message = refused(ddb.export_table_to_point_in_time, TableArn=arn, S3Bucket="my-bucket")
    assert code == "ValidationException" and "no Amazon S3" in message
    assert ddb.list_exports()["ExportSummaries"] == []
    assert refused(ddb.export_table_to_point_in_time, TableArn=f"{ACCOUNT_ARN}:table/missing_table",
                   S3Bucket="my-bucket") == (
        "TableNotFoundException", f"Table not found: {ACCOUNT_ARN}:table/missing_table")
    assert refused(ddb.export_table_to_point_in_time, TableArn=hash_table, S3Bucket="my-bucket") == (
        "ValidationException", "One or more parameter values were invalid: tableArn is not a valid ARN")
    code, message = refused(ddb.export_table_to_point_in_time, TableArn=arn, S3Bucket="-bad-", ExportFormat="CSV")
    assert code == "ValidationException" and message.startswith("2 validation errors detected")
    assert refused(loose.list_exports, MaxResults=26)[0] == "ValidationException"
    assert refused(ddb.list_exports, NextToken="abc")[0] == "ValidationException"


def test_there_are_no_imports_and_none_can_be_made(ddb, loose, hash_table):
    assert ddb.list_imports()["ImportSummaryList"] == []
    arn = ddb.describe_table(TableName=hash_table)["Table"]["TableArn"]
    import_arn = f"{arn}/import/01700000000000-0a1b2c3d"
    assert refused(ddb.describe_import, ImportArn=import_arn) == (
        "ImportNotFoundException", f"Import not found: {import_arn}")
    assert refused(ddb.describe_import, ImportArn=arn + "/export/01700000000000-0a1b2c3d") == \
        ("ValidationException", "Invalid Import ARN")
    parameters = {"TableName": "imported_table", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                  "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                  "BillingMode": "PAY_PER_REQUEST"}
    code, message = refused(ddb.import_table, S3BucketSource={"S3Bucket": "my-bucket"}, InputFormat="CSV",
                            TableCreationParameters=parameters)
    assert code == "ValidationException" and "no Amazon S3" in message
    assert "imported_table" not in ddb.list_tables()["TableNames"]
    assert refused(ddb.import_table, S3BucketSource={"S3Bucket": "my-bucket"}, InputFormat="CSV",
                   TableCreationParameters={**parameters, "TableName": hash_table}) == (
        "ResourceInUseException", f"Table already exists: {hash_table}")
    assert refused(ddb.import_table, S3BucketSource={"S3Bucket": "my-bucket"}, InputFormat="XML",
                   TableCreationParameters=parameters)[0] == "ValidationException"
    # CSV options: a one-character delimiter, and only for CSV input; DynamoDB's enum order for compression
    source = {"S3BucketSource": {"S3Bucket": "my-bucket"}, "TableCreationParameters": parameters}
    rule = "failed to satisfy constraint: Member must"
    assert refused(loose.import_table, InputFormat="CSV", InputFormatOptions={"Csv": {"Delimiter": ";;"}},
                   **source) == (
        "ValidationException", f"2 validation errors detected: Value ';;' at 'inputFormatOptions.csv.delimiter' {rule} "
                               f"satisfy regular expression pattern: [,;:|\\t ]; Value ';;' at "
                               f"'inputFormatOptions.csv.delimiter' {rule} have length less than or equal to 1")
    assert refused(ddb.import_table, InputFormat="DYNAMODB_JSON", InputFormatOptions={"Csv": {"Delimiter": ","}},
                   **source) == (
        "ValidationException", "Invalid Request: Unsupported InputFormatOptions for the given input format: "
                               "DYNAMODB_JSON.")
    assert refused(loose.import_table, InputFormat="CSV", InputCompressionType="BZIP2", **source) == (
        "ValidationException", f"1 validation error detected: Value 'BZIP2' at 'inputCompressionType' {rule} "
                               "satisfy enum value set: [ZSTD, NONE, GZIP]")
    # The new table is checked as CreateTable checks it, before the refusal for want of S3.
    provisioned = {**parameters, "BillingMode": "PROVISIONED"}
    assert refused(ddb.import_table, S3BucketSource={"S3Bucket": "my-bucket"}, InputFormat="CSV",
                   TableCreationParameters=provisioned) == (
        "ValidationException", "One or more parameter values were invalid: ReadCapacityUnits and "
                               "WriteCapacityUnits must both be specified when BillingMode is PROVISIONED")
    code, message = refused(ddb.import_table, S3BucketSource={"S3Bucket": "my-bucket"}, InputFormat="CSV",
                            TableCreationParameters={**parameters, "KeySchema": [
                                {"AttributeName": "other", "KeyType": "HASH"}]})
    assert code == "ValidationException" and "AttributeDefinitions" in message
    assert refused(loose.list_imports, PageSize=0)[0] == "ValidationException"


def test_update_table_refuses_replicas(ddb, loose, hash_table):
    before = ddb.describe_table(TableName=hash_table)["Table"]
    code, message = refused(ddb.update_table, TableName=hash_table,
                            ReplicaUpdates=[{"Create": {"RegionName": "eu-west-1"}}])
    assert code == "ValidationException" and "cannot create a replica in region eu-west-1" in message
    assert refused(loose.update_table, TableName=hash_table, ReplicaUpdates=[]) == (
        "ValidationException", "There are no actions specified in the Replica Update Action of the request.")
    # the actions' shapes in DynamoDB's words: a region to update or delete, one create or delete at a time
    for updates, message in (
            ([{"Update": {}}], "1 validation error detected: Value null at 'replicaUpdates.1.member.update.regionName' "
                               "failed to satisfy constraint: Member must not be null"),
            ([{"Create": {}}], "One or more parameter values were invalid"),
            ([{"Create": {"RegionName": "eu-west-1"}}, {"Delete": {"RegionName": "eu-west-2"}}],
             "Update table operation with more than one create or delete replica actions not allowed")):
        assert refused(loose.update_table, TableName=hash_table, ReplicaUpdates=updates) == (
            "ValidationException", message)
    assert refused(ddb.update_table, TableName="missing_table",
                   ReplicaUpdates=[{"Create": {"RegionName": "eu-west-1"}}]) == not_found("missing_table")
    after = ddb.describe_table(TableName=hash_table)["Table"]
    assert "Replicas" not in after and after == before
