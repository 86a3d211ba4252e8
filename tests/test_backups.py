"""On-demand backups, restores and point-in-time recovery settings, through boto3."""

import time

import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from conftest import create_table
from serverutil import ServerProcess, make_client

ITEMS = 300     # enough for both shards to own many of them


def _error(excinfo) -> tuple[str, str]:
    error = excinfo.value.response["Error"]
    return error["Code"], error["Message"]


def _put_items(ddb, table, keys, **attrs):
    for key in keys:
        item = {"pk": {"S": f"k{key}"}, "n": {"N": str(key)}}
        item.update({k: {"S": v} for k, v in attrs.items()})
        ddb.put_item(TableName=table, Item=item)


def _scan_all(ddb, table, **kwargs) -> dict:
    items, start = {}, None
    while True:
        page = ddb.scan(TableName=table, **kwargs, **({"ExclusiveStartKey": start} if start else {}))
        for item in page["Items"]:
            items[item["pk"]["S"]] = item
        start = page.get("LastEvaluatedKey")
        if start is None:
            return items


def _unvalidated(server):
    """A client that sends what it is given (botocore checks some constraints itself)."""
    import boto3
    return boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="y",
                        config=BotoConfig(parameter_validation=False, retries={"max_attempts": 1}))


def _wait_indexes_active(ddb, table, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        description = ddb.describe_table(TableName=table)["Table"]
        if all(i["IndexStatus"] == "ACTIVE" for i in description.get("GlobalSecondaryIndexes", [])):
            return description
        time.sleep(0.1)
    pytest.fail(f"indexes of {table} not ACTIVE after {timeout}s")


def _backup(ddb, table, name="bkp"):
    return ddb.create_backup(TableName=table, BackupName=name)["BackupDetails"]


def _cleanup(ddb, *tables):
    for table in tables:
        try:
            ddb.delete_table(TableName=table)
        except ClientError:
            pass


# ---------------------------------------------------------------------- point-in-time recovery settings

def test_continuous_backups_start_disabled_and_can_be_enabled_and_disabled(ddb, hash_table):
    described = ddb.describe_continuous_backups(TableName=hash_table)["ContinuousBackupsDescription"]
    assert described == {"ContinuousBackupsStatus": "ENABLED",
                         "PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": "DISABLED"}}
    before = time.time()
    updated = ddb.update_continuous_backups(
        TableName=hash_table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True,
                                                                "RecoveryPeriodInDays": 7})
    pitr = updated["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED" and pitr["RecoveryPeriodInDays"] == 7
    latest, earliest = pitr["LatestRestorableDateTime"].timestamp(), pitr["EarliestRestorableDateTime"].timestamp()
    assert int(before) <= earliest <= latest <= time.time()
    # the same, read back; and by the table's ARN
    arn = ddb.describe_table(TableName=hash_table)["Table"]["TableArn"]
    again = ddb.describe_continuous_backups(TableName=arn)["ContinuousBackupsDescription"]
    assert again["PointInTimeRecoveryDescription"]["RecoveryPeriodInDays"] == 7
    with pytest.raises(ClientError) as excinfo:
        ddb.update_continuous_backups(TableName=hash_table, PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": False, "RecoveryPeriodInDays": 7})
    assert _error(excinfo) == ("ValidationException", "Invalid Request: Cannot specify RecoveryPeriodInDays when "
                                                      "disabling point-in-time recovery.")
    # enabled without a period: the default of 35 days
    ddb.update_continuous_backups(TableName=hash_table,
                                  PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False})
    described = ddb.describe_continuous_backups(TableName=hash_table)["ContinuousBackupsDescription"]
    assert described["PointInTimeRecoveryDescription"] == {"PointInTimeRecoveryStatus": "DISABLED"}
    updated = ddb.update_continuous_backups(TableName=hash_table,
                                            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    assert updated["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["RecoveryPeriodInDays"] == 35


def test_earliest_restorable_time_is_never_before_the_last_write(ddb, hash_table):
    ddb.update_continuous_backups(TableName=hash_table,
                                  PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    time.sleep(1.1)
    written = time.time()
    _put_items(ddb, hash_table, range(20))
    pitr = ddb.describe_continuous_backups(TableName=hash_table)[
        "ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["EarliestRestorableDateTime"].timestamp() >= int(written)


def test_continuous_backups_of_an_unknown_table(ddb):
    for call in (lambda: ddb.describe_continuous_backups(TableName="no_such_table"),
                 lambda: ddb.update_continuous_backups(
                     TableName="no_such_table",
                     PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert _error(excinfo) == ("TableNotFoundException", "Table not found: no_such_table")


@pytest.mark.parametrize("days", [0, 36])
def test_recovery_period_out_of_range(server, hash_table, days):
    client = _unvalidated(server)
    with pytest.raises(ClientError) as excinfo:
        client.update_continuous_backups(TableName=hash_table, PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True, "RecoveryPeriodInDays": days})
    code, message = _error(excinfo)
    assert code == "ValidationException" and "recoveryPeriodInDays" in message
    with pytest.raises(ClientError) as excinfo:
        client.update_continuous_backups(TableName=hash_table, PointInTimeRecoverySpecification={})
    assert _error(excinfo)[0] == "ValidationException"


def test_pitr_setting_survives_a_restart_and_goes_with_its_table(tmp_path):
    srv = ServerProcess(tmp_path / "data", smp=2).start()
    try:
        ddb = srv.client()
        create_table(ddb, "pitr_kept")
        ddb.update_continuous_backups(TableName="pitr_kept", PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True, "RecoveryPeriodInDays": 3})
        assert srv.stop() == 0
        srv = ServerProcess(tmp_path / "data", smp=2, port=srv.port).start()
        ddb = srv.client()
        pitr = ddb.describe_continuous_backups(TableName="pitr_kept")[
            "ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
        assert pitr["PointInTimeRecoveryStatus"] == "ENABLED" and pitr["RecoveryPeriodInDays"] == 3
        ddb.delete_table(TableName="pitr_kept")
        create_table(ddb, "pitr_kept")
        pitr = ddb.describe_continuous_backups(TableName="pitr_kept")[
            "ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
        assert pitr == {"PointInTimeRecoveryStatus": "DISABLED"}
    finally:
        srv.stop()


# ---------------------------------------------------------------------- backups and restores

def test_restore_holds_exactly_the_backups_items(ddb, server, hash_table):
    _put_items(ddb, hash_table, range(ITEMS), v="old")
    expected = _scan_all(ddb, hash_table)
    details = _backup(ddb, hash_table, "exact")
    # CreateBackup answers CREATING, as DynamoDB does; the backup is AVAILABLE by the next request
    assert details["BackupStatus"] == "CREATING" and details["BackupType"] == "USER"
    assert ddb.describe_backup(BackupArn=details["BackupArn"])["BackupDescription"]["BackupDetails"][
        "BackupStatus"] == "AVAILABLE"
    assert details["BackupArn"].startswith(ddb.describe_table(TableName=hash_table)["Table"]["TableArn"] + "/backup/")
    assert details["BackupSizeBytes"] > 0
    # changes after the backup: new items, overwritten items, deleted items
    _put_items(ddb, hash_table, range(ITEMS, ITEMS + 50), v="new")
    _put_items(ddb, hash_table, range(0, 40), v="changed")
    for key in range(40, 80):
        ddb.delete_item(TableName=hash_table, Key={"pk": {"S": f"k{key}"}})
    target = hash_table + "_r"
    try:
        restored = ddb.restore_table_from_backup(TargetTableName=target, BackupArn=details["BackupArn"])
        summary = restored["TableDescription"]["RestoreSummary"]
        assert summary["SourceBackupArn"] == details["BackupArn"]
        # "point in time or source backup time": the backup's, not the restore's
        assert summary["RestoreDateTime"] == details["BackupCreationDateTime"]
        assert restored["TableDescription"]["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        ddb.get_waiter("table_exists").wait(TableName=target)
        assert _scan_all(ddb, target) == expected
        description = ddb.describe_table(TableName=target)["Table"]
        assert description["ItemCount"] == ITEMS
        assert description["RestoreSummary"]["RestoreInProgress"] is False
        assert description["RestoreSummary"]["SourceTableArn"].endswith("/" + hash_table)
        # every shard holds part of it, and the restored table is writable like any other
        owners = set()
        for shard_metrics in _shard_table_items(server, target):
            owners.add(shard_metrics > 0)
        assert owners == {True}
        ddb.put_item(TableName=target, Item={"pk": {"S": "after"}})
        assert ddb.get_item(TableName=target, Key={"pk": {"S": "after"}})["Item"]
        assert _scan_all(ddb, hash_table).keys() != expected.keys()
    finally:
        _cleanup(ddb, target)
        ddb.delete_backup(BackupArn=details["BackupArn"])


def _shard_table_items(server, table):
    """Items of the table on each shard, from the per-shard metrics."""
    import urllib.request
    out = []
    for shard in range(server.smp):
        with urllib.request.urlopen(f"http://127.0.0.1:{server.prometheus_port}/metrics?shard={shard}") as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith("shardserver_table_items") and f'table="{table}"' in line:
                out.append(float(line.rsplit(" ", 1)[1]))
    return out


def test_indexes_are_queryable_after_a_restore(ddb, table_name):
    ddb.create_table(
        TableName=table_name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "lsk", "g")],
        LocalSecondaryIndexes=[{"IndexName": "by_lsk", "Projection": {"ProjectionType": "ALL"},
                                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                              {"AttributeName": "lsk", "KeyType": "RANGE"}]}],
        GlobalSecondaryIndexes=[{"IndexName": "by_g", "Projection": {"ProjectionType": "KEYS_ONLY"},
                                 "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}]}])
    for p in range(30):
        for s in range(4):
            ddb.put_item(TableName=table_name, Item={"pk": {"S": f"p{p}"}, "sk": {"S": f"s{s}"},
                                                     "lsk": {"S": f"l{3 - s}"}, "g": {"S": f"g{s}"}})
    arn = _backup(ddb, table_name)["BackupArn"]
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "p0"}, "sk": {"S": "late"}, "lsk": {"S": "l9"},
                                             "g": {"S": "g0"}})
    target = table_name + "_r"
    try:
        ddb.restore_table_from_backup(TargetTableName=target, BackupArn=arn)
        description = _wait_indexes_active(ddb, target)
        assert [i["IndexName"] for i in description["LocalSecondaryIndexes"]] == ["by_lsk"]
        local = ddb.query(TableName=target, IndexName="by_lsk", KeyConditionExpression="pk = :p",
                          ExpressionAttributeValues={":p": {"S": "p7"}})["Items"]
        assert [i["sk"]["S"] for i in local] == ["s3", "s2", "s1", "s0"]
        glob = ddb.query(TableName=target, IndexName="by_g", KeyConditionExpression="g = :g",
                         ExpressionAttributeValues={":g": {"S": "g0"}})["Items"]
        assert sorted(i["pk"]["S"] for i in glob) == sorted(f"p{p}" for p in range(30))
        # overrides: only the local index, on provisioned capacity
        ddb.restore_table_from_backup(
            TargetTableName=target + "2", BackupArn=arn, GlobalSecondaryIndexOverride=[],
            BillingModeOverride="PROVISIONED",
            ProvisionedThroughputOverride={"ReadCapacityUnits": 3, "WriteCapacityUnits": 4})
        description = ddb.describe_table(TableName=target + "2")["Table"]
        assert "GlobalSecondaryIndexes" not in description
        assert description["ProvisionedThroughput"]["ReadCapacityUnits"] == 3
        # as the AWS CLI's recorded restore shows it: the mode without a date of a switch
        assert description["BillingModeSummary"] == {"BillingMode": "PROVISIONED"}
        assert {d["AttributeName"] for d in description["AttributeDefinitions"]} == {"pk", "sk", "lsk"}
        with pytest.raises(ClientError) as excinfo:
            ddb.restore_table_from_backup(TargetTableName=target + "3", BackupArn=arn, GlobalSecondaryIndexOverride=[
                {"IndexName": "by_other", "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}]}])
        assert _error(excinfo) == ("ValidationException", "Invalid Request: Index by_other does not match a secondary "
                                   "index that existed in the source table and cannot be created during the restore "
                                   "operation")
        by_g = {"IndexName": "by_g", "Projection": {"ProjectionType": "KEYS_ONLY"},
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}]}
        for override, message in (
                ({"BillingModeOverride": "PAY_PER_REQUEST", "GlobalSecondaryIndexOverride": [
                    {**by_g, "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}}]},
                 "Cannot override ProvisionedThroughput if BillingMode is overridden to PAY_PER_REQUEST for index by_g"),
                ({"BillingModeOverride": "PROVISIONED", "GlobalSecondaryIndexOverride": [by_g],
                  "ProvisionedThroughputOverride": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}},
                 "Must specify provisioned throughput for index by_g")):
            with pytest.raises(ClientError) as excinfo:
                ddb.restore_table_from_backup(TargetTableName=target + "3", BackupArn=arn, **override)
            assert _error(excinfo) == ("ValidationException", "Invalid Request: " + message)
    finally:
        _cleanup(ddb, table_name, target, target + "2")
        ddb.delete_backup(BackupArn=arn)


def test_restore_after_the_source_table_was_deleted(ddb, table_name):
    create_table(ddb, table_name)
    _put_items(ddb, table_name, range(100))
    expected = _scan_all(ddb, table_name)
    arn = _backup(ddb, table_name)["BackupArn"]
    ddb.delete_table(TableName=table_name)
    described = ddb.describe_backup(BackupArn=arn)["BackupDescription"]
    assert described["SourceTableDetails"]["TableName"] == table_name
    assert described["SourceTableDetails"]["ItemCount"] == 100
    # nothing to describe: no index, stream or Time to Live (the AWS CLI's describe-backup example)
    assert described["SourceTableFeatureDetails"] == {}
    assert [s["BackupArn"] for s in ddb.list_backups(TableName=table_name)["BackupSummaries"]] == [arn]
    # restored under the deleted table's own name
    try:
        ddb.restore_table_from_backup(TargetTableName=table_name, BackupArn=arn)
        assert _scan_all(ddb, table_name) == expected
    finally:
        _cleanup(ddb, table_name)
        ddb.delete_backup(BackupArn=arn)


def test_a_restore_keeps_encryption_and_caps_but_not_class_or_protection(ddb, table_name):
    """What DynamoDB carries from a backup's table to the restored one: its KMS encryption and
    on-demand caps; its table class, deletion protection and tags stay behind."""
    create_table(ddb, table_name, TableClass="STANDARD_INFREQUENT_ACCESS", DeletionProtectionEnabled=True,
                 SSESpecification={"Enabled": True, "SSEType": "KMS"},
                 OnDemandThroughput={"MaxReadRequestUnits": 100, "MaxWriteRequestUnits": 50},
                 Tags=[{"Key": "team", "Value": "a"}])
    arn = _backup(ddb, table_name)["BackupArn"]
    target = table_name + "_r"
    try:
        ddb.restore_table_from_backup(TargetTableName=target, BackupArn=arn)
        restored = ddb.describe_table(TableName=target)["Table"]
        assert restored["SSEDescription"]["SSEType"] == "KMS"
        assert restored["OnDemandThroughput"] == {"MaxReadRequestUnits": 100, "MaxWriteRequestUnits": 50}
        assert "TableClassSummary" not in restored and restored["DeletionProtectionEnabled"] is False
        assert ddb.list_tags_of_resource(ResourceArn=restored["TableArn"])["Tags"] == []
    finally:
        ddb.update_table(TableName=table_name, DeletionProtectionEnabled=False)
        _cleanup(ddb, table_name, target)
        ddb.delete_backup(BackupArn=arn)


def test_backups_survive_a_restart(tmp_path):
    srv = ServerProcess(tmp_path / "data", smp=2).start()
    try:
        ddb = srv.client()
        create_table(ddb, "kept")
        _put_items(ddb, "kept", range(ITEMS))
        expected = _scan_all(ddb, "kept")
        arn = _backup(ddb, "kept", "before_restart")["BackupArn"]
        _put_items(ddb, "kept", range(ITEMS, ITEMS + 10))
        assert srv.stop() == 0
        srv = ServerProcess(tmp_path / "data", smp=2, port=srv.port).start()
        ddb = srv.client()
        assert ddb.describe_backup(BackupArn=arn)["BackupDescription"]["BackupDetails"]["BackupStatus"] == "AVAILABLE"
        ddb.restore_table_from_backup(TargetTableName="kept_restored", BackupArn=arn)
        assert _scan_all(ddb, "kept_restored") == expected
        ddb.delete_backup(BackupArn=arn)
        # the restored table holds its own copy: it outlives the backup, and the next restart
        assert srv.stop() == 0
        assert not any((tmp_path / "data" / f"shard-{i}" / "backups" / arn.rsplit("/", 1)[1]).exists()
                       for i in range(2))
        srv = ServerProcess(tmp_path / "data", smp=2, port=srv.port).start()
        assert _scan_all(srv.client(), "kept_restored") == expected
    finally:
        srv.stop()


def test_backups_and_restored_tables_survive_a_crash(tmp_path):
    srv = ServerProcess(tmp_path / "data", smp=2, extra=["--commitlog-sync", "batch"]).start()
    try:
        ddb = srv.client()
        create_table(ddb, "crashed")
        _put_items(ddb, "crashed", range(ITEMS))
        expected = _scan_all(ddb, "crashed")
        arn = _backup(ddb, "crashed")["BackupArn"]
        ddb.restore_table_from_backup(TargetTableName="crashed_r", BackupArn=arn)
        srv.kill()
        srv = ServerProcess(tmp_path / "data", smp=2, port=srv.port).start()
        ddb = srv.client()
        assert _scan_all(ddb, "crashed_r") == expected
        assert ddb.describe_table(TableName="crashed_r")["Table"]["ItemCount"] == ITEMS
        ddb.restore_table_from_backup(TargetTableName="crashed_r2", BackupArn=arn)
        assert _scan_all(ddb, "crashed_r2") == expected
    finally:
        srv.stop()


def test_list_backups_filters_and_pages(ddb, table_name):
    create_table(ddb, table_name)
    other = table_name + "_o"
    create_table(ddb, other)
    arns = []
    try:
        for i in range(5):
            arns.append(_backup(ddb, table_name, f"bk{i}")["BackupArn"])
        between = time.time()
        time.sleep(1.1)
        other_arn = _backup(ddb, other, "other")["BackupArn"]
        summaries = ddb.list_backups(TableName=table_name)["BackupSummaries"]
        assert [s["BackupArn"] for s in summaries] == arns
        assert {s["TableName"] for s in summaries} == {table_name}
        assert summaries[0]["BackupName"] == "bk0" and summaries[0]["BackupStatus"] == "AVAILABLE"
        pages, start = [], None
        while True:
            page = ddb.list_backups(TableName=table_name, Limit=2,
                                    **({"ExclusiveStartBackupArn": start} if start else {}))
            pages.append([s["BackupArn"] for s in page["BackupSummaries"]])
            start = page.get("LastEvaluatedBackupArn")
            if start is None:
                break
        assert pages == [arns[0:2], arns[2:4], arns[4:5]]
        later = ddb.list_backups(TimeRangeLowerBound=int(between) + 1)["BackupSummaries"]
        assert [s["BackupArn"] for s in later] == [other_arn]
        earlier = ddb.list_backups(TimeRangeUpperBound=int(between) + 1)["BackupSummaries"]
        assert set(arns) <= {s["BackupArn"] for s in earlier} and other_arn not in {s["BackupArn"] for s in earlier}
        assert ddb.list_backups(TableName=table_name, BackupType="SYSTEM")["BackupSummaries"] == []
        assert len(ddb.list_backups(TableName=table_name, BackupType="ALL")["BackupSummaries"]) == 5
        arns.append(other_arn)
    finally:
        for arn in arns:
            ddb.delete_backup(BackupArn=arn)
        _cleanup(ddb, table_name, other)


def test_delete_backup(ddb, hash_table):
    arn = _backup(ddb, hash_table)["BackupArn"]
    deleted = ddb.delete_backup(BackupArn=arn)["BackupDescription"]
    assert deleted["BackupDetails"]["BackupStatus"] == "DELETED"
    for call in (lambda: ddb.describe_backup(BackupArn=arn), lambda: ddb.delete_backup(BackupArn=arn),
                 lambda: ddb.restore_table_from_backup(TargetTableName=hash_table + "_r", BackupArn=arn)):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert _error(excinfo) == ("BackupNotFoundException", f"Backup not found: {arn}")
    assert arn not in {s["BackupArn"] for s in ddb.list_backups(BackupType="ALL")["BackupSummaries"]}


def test_backup_errors(ddb, server, hash_table):
    client = _unvalidated(server)
    arn = _backup(ddb, hash_table)["BackupArn"]
    try:
        with pytest.raises(ClientError) as excinfo:
            client.create_backup(TableName="no_such_table", BackupName="b")
        assert _error(excinfo)[0] == "ValidationException"      # the name is too short first
        with pytest.raises(ClientError) as excinfo:
            client.create_backup(TableName=hash_table, BackupName="")
        assert _error(excinfo)[1] == (      # DynamoDB names a backup name's pattern before its length
            "2 validation errors detected: Value '' at 'backupName' failed to satisfy constraint: Member must "
            "satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value '' at 'backupName' failed to satisfy "
            "constraint: Member must have length greater than or equal to 3")
        with pytest.raises(ClientError) as excinfo:
            ddb.create_backup(TableName="no_such_table", BackupName="bkp")
        assert _error(excinfo) == ("TableNotFoundException", "Table not found: no_such_table")
        with pytest.raises(ClientError) as excinfo:
            ddb.create_backup(TableName=hash_table, BackupName="bad name!")
        assert _error(excinfo)[0] == "ValidationException"
        # target table exists
        with pytest.raises(ClientError) as excinfo:
            ddb.restore_table_from_backup(TargetTableName=hash_table, BackupArn=arn)
        assert _error(excinfo) == ("TableAlreadyExistsException", f"Table already exists: {hash_table}")
        # unknown backups: well-formed, malformed, too short
        unknown = arn.rsplit("/", 1)[0] + "/01234567890123-0123abcd"
        with pytest.raises(ClientError) as excinfo:
            ddb.describe_backup(BackupArn=unknown)
        assert _error(excinfo) == ("BackupNotFoundException", f"Backup not found: {unknown}")
        for bad in ("arn:aws:dynamodb:us-east-1:000000000000:table/x/nobackup/1", "not-an-arn-" + "x" * 30):
            for call in (lambda: ddb.describe_backup(BackupArn=bad), lambda: ddb.delete_backup(BackupArn=bad),
                         lambda: ddb.restore_table_from_backup(TargetTableName="tgt", BackupArn=bad)):
                with pytest.raises(ClientError) as excinfo:
                    call()
                assert _error(excinfo) == ("ValidationException", "Invalid Backup ARN")
        with pytest.raises(ClientError) as excinfo:
            client.describe_backup(BackupArn="arn:short")
        code, message = _error(excinfo)
        assert code == "ValidationException" and "greater than or equal to 37" in message
        # limits
        for limit in (0, 101):
            with pytest.raises(ClientError) as excinfo:
                client.list_backups(Limit=limit)
            assert _error(excinfo)[0] == "ValidationException"
        with pytest.raises(ClientError) as excinfo:
            client.list_backups(BackupType="NONE")
        assert _error(excinfo)[0] == "ValidationException"
        with pytest.raises(ClientError) as excinfo:
            ddb.list_backups(TimeRangeLowerBound=2000, TimeRangeUpperBound=1000)
        assert _error(excinfo) == ("ValidationException", "One or more parameter values were invalid: Time range "
                                                          "lower bound must be less than or equal to upper bound")
        with pytest.raises(ClientError) as excinfo:
            ddb.restore_table_from_backup(TargetTableName="tgt_bad_billing", BackupArn=arn,
                                          BillingModeOverride="PROVISIONED")
        assert _error(excinfo)[0] == "ValidationException"
        with pytest.raises(ClientError) as excinfo:
            ddb.describe_table(TableName="tgt_bad_billing")
        assert _error(excinfo)[0] == "ResourceNotFoundException"
    finally:
        ddb.delete_backup(BackupArn=arn)


def test_restore_overrides_are_checked_before_anything_is_restored(ddb, server, hash_table):
    """Each override's member rules, in DynamoDB's words; a refused restore makes no table."""
    client = _unvalidated(server)
    arn = _backup(ddb, hash_table)["BackupArn"]
    null = "failed to satisfy constraint: Member must not be null"
    try:
        for override, message in (
                ({"TargetTableName": ""}, "TableName must be at least 3 characters long and at most 255 characters long"),
                ({"BillingModeOverride": ""}, "1 validation error detected: Value '' at 'billingModeOverride' failed to "
                                              "satisfy constraint: Member must satisfy enum value set: [PROVISIONED, "
                                              "PAY_PER_REQUEST]"),
                ({"ProvisionedThroughputOverride": {}},
                 f"2 validation errors detected: Value null at 'provisionedThroughputOverride.writeCapacityUnits' {null}; "
                 f"Value null at 'provisionedThroughputOverride.readCapacityUnits' {null}"),
                ({"GlobalSecondaryIndexOverride": [{}]},
                 f"3 validation errors detected: Value null at 'globalSecondaryIndexOverride.1.member.indexName' {null}; "
                 f"Value null at 'globalSecondaryIndexOverride.1.member.keySchema' {null}; "
                 f"Value null at 'globalSecondaryIndexOverride.1.member.projection' {null}"),
                ({"LocalSecondaryIndexOverride": [{"IndexName": "x"}]},
                 "3 validation errors detected: Value 'x' at 'localSecondaryIndexOverride.1.member.indexName' failed to "
                 "satisfy constraint: Member must have length greater than or equal to 3; "
                 f"Value null at 'localSecondaryIndexOverride.1.member.keySchema' {null}; "
                 f"Value null at 'localSecondaryIndexOverride.1.member.projection' {null}"),
                ({"SSESpecificationOverride": {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": ""}},
                 "1 validation error detected: Value '' at 'sSESpecificationOverride.kMSMasterKeyId' failed to satisfy "
                 "constraint: Member must have length greater than or equal to 1"),
                ({"OnDemandThroughputOverride": {"MaxReadRequestUnits": 0}},
                 "Invalid Request: Requested MaxReadRequestUnits for OnDemandThroughput is outside of valid range")):
            request = {"TargetTableName": "restore_refused", "BackupArn": arn, **override}
            with pytest.raises(ClientError) as excinfo:
                client.restore_table_from_backup(**request)
            assert _error(excinfo) == ("ValidationException", message), override
        # Capacity overrides against the restored table's billing mode (the backup's table is on demand)
        units = {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}
        for override, message in (
                ({"BillingModeOverride": "PAY_PER_REQUEST", "ProvisionedThroughputOverride": units},
                 "Cannot override ProvisionedThroughput if BillingMode is overridden to PAY_PER_REQUEST"),
                ({"ProvisionedThroughputOverride": units},
                 "Cannot override ProvisionedThroughput unless BillingMode is PROVISIONED"),
                ({"BillingModeOverride": "PROVISIONED"},
                 "Must override ProvisionedThroughput if BillingMode is overridden to PROVISIONED"),
                ({"BillingModeOverride": "PROVISIONED", "ProvisionedThroughputOverride": units,
                  "OnDemandThroughputOverride": {"MaxWriteRequestUnits": 10}},
                 "Cannot override MaxWriteRequestUnits for OnDemandThroughput unless BillingModeOverride is "
                 "PAY_PER_REQUEST")):
            for target in ("restore_refused", hash_table):      # before the target is looked at
                with pytest.raises(ClientError) as excinfo:
                    client.restore_table_from_backup(TargetTableName=target, BackupArn=arn, **override)
                assert _error(excinfo) == ("ValidationException", "Invalid Request: " + message), override
        assert "restore_refused" not in ddb.list_tables()["TableNames"]
        with pytest.raises(ClientError) as excinfo:
            client.describe_backup(BackupArn="")
        assert _error(excinfo) == ("ValidationException", "Invalid Backup ARN")
    finally:
        ddb.delete_backup(BackupArn=arn)


def test_a_backup_being_restored_cannot_be_deleted(tmp_path):
    """The catalog coordinator's rule: while a restored table still names its backup (until
    every shard built its copy), DeleteBackup of that backup is refused."""
    from shardserver.errors import BackupInUseException
    from shardserver.shard import backups
    from shardserver.shard.catalog import Catalog, TableSchema
    catalog = Catalog(str(tmp_path))
    arn = "arn:aws:dynamodb:us-east-1:000000000000:table/src/backup/01700000000000-0123abcd"
    catalog.backups["01700000000000-0123abcd"] = {"id": "01700000000000-0123abcd", "arn": arn, "status": "AVAILABLE"}
    restoring = TableSchema(name="dst", table_id="id-1", hash_key="pk", hash_type="S", range_key=None,
                            range_type=None, attribute_definitions=[], creation_time=0.0,
                            extra={"RestoreSource": {"backup": "01700000000000-0123abcd", "tables": {}},
                                   "RestoreSummary": {"RestoreInProgress": True}})
    catalog.tables["dst"] = restoring
    with pytest.raises(BackupInUseException):
        backups.apply_catalog_change(catalog, {"action": "delete", "id": "01700000000000-0123abcd", "arn": arn})
    backups.apply_catalog_change(catalog, {"action": "restored", "name": "dst", "table_id": "id-1"})
    assert catalog.tables["dst"].extra["RestoreSummary"]["RestoreInProgress"] is False
    backups.apply_catalog_change(catalog, {"action": "delete", "id": "01700000000000-0123abcd", "arn": arn})
    assert catalog.backups == {}


# ---------------------------------------------------------------------- point-in-time restores

def test_restore_to_the_latest_restorable_time(ddb, hash_table):
    with pytest.raises(ClientError) as excinfo:
        ddb.restore_table_to_point_in_time(SourceTableName=hash_table, TargetTableName=hash_table + "_p",
                                           UseLatestRestorableTime=True)
    assert _error(excinfo)[0] == "PointInTimeRecoveryUnavailableException"
    ddb.update_continuous_backups(TableName=hash_table,
                                  PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    _put_items(ddb, hash_table, range(ITEMS))
    expected = _scan_all(ddb, hash_table)
    targets = [hash_table + "_p1", hash_table + "_p2"]
    try:
        restored = ddb.restore_table_to_point_in_time(SourceTableName=hash_table, TargetTableName=targets[0],
                                                      UseLatestRestorableTime=True)["TableDescription"]
        assert restored["RestoreSummary"]["SourceTableArn"].endswith("/" + hash_table)
        assert "SourceBackupArn" not in restored["RestoreSummary"]
        assert _scan_all(ddb, targets[0]) == expected
        time.sleep(1.1)     # a second with no writes: restorable to
        pitr = ddb.describe_continuous_backups(TableName=hash_table)[
            "ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
        latest = pitr["LatestRestorableDateTime"]
        ddb.restore_table_to_point_in_time(SourceTableName=hash_table, TargetTableName=targets[1],
                                           RestoreDateTime=latest)
        assert _scan_all(ddb, targets[1]) == expected
        # the snapshots the restores took are no backups of their own
        assert ddb.list_backups(TableName=hash_table, BackupType="ALL")["BackupSummaries"] == []
        # written since: that time cannot be restored honestly any more
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": "later"}})
        with pytest.raises(ClientError) as excinfo:
            ddb.restore_table_to_point_in_time(SourceTableName=hash_table, TargetTableName=hash_table + "_p3",
                                               RestoreDateTime=latest)
        assert _error(excinfo)[0] == "InvalidRestoreTimeException"
        for when in (time.time() - 3 * 86400 * 40, time.time() + 3600):
            with pytest.raises(ClientError) as excinfo:
                ddb.restore_table_to_point_in_time(SourceTableName=hash_table, TargetTableName=hash_table + "_p3",
                                                   RestoreDateTime=when)
            assert _error(excinfo)[0] == "InvalidRestoreTimeException"
        with pytest.raises(ClientError) as excinfo:
            ddb.restore_table_to_point_in_time(SourceTableName=hash_table, TargetTableName=targets[0],
                                               UseLatestRestorableTime=True)
        assert _error(excinfo)[0] == "TableAlreadyExistsException"
        with pytest.raises(ClientError) as excinfo:
            ddb.restore_table_to_point_in_time(SourceTableName="no_such_table", TargetTableName="tgt",
                                               UseLatestRestorableTime=True)
        assert _error(excinfo) == ("TableNotFoundException", "Table not found: no_such_table")
        # A source and a time each named exactly once, in DynamoDB's words
        source_arn = ddb.describe_table(TableName=hash_table)["Table"]["TableArn"]
        for request, expected in (
                ({"SourceTableName": hash_table}, "Invalid Request: Either one of RestoreDateTime or "
                                                  "UseLatestRestorableTime must be specified, but not both"),
                ({"SourceTableName": hash_table, "UseLatestRestorableTime": True, "RestoreDateTime": latest},
                 "Invalid Request: Both RestoreDateTime and UseLatestRestorableTime cannot be set for point-in-time "
                 "restore request. Please specify either RestoreDateTime time or UseLatestRestorableTime"),
                ({"SourceTableName": hash_table, "SourceTableArn": source_arn, "UseLatestRestorableTime": True},
                 "Must provide exactly one of: sourceTableArn, sourceTableName"),
                ({"UseLatestRestorableTime": True},
                 "The parameter 'TableName' is required but was not present in the request"),
                ({"SourceTableArn": "arn:nothing", "UseLatestRestorableTime": True},
                 "One or more parameter values were invalid: sourceTableArn is not a valid ARN"),
                ({"SourceTableArn": hash_table, "UseLatestRestorableTime": True},
                 f"One or more parameter values were invalid: ARNs must start with 'arn:': {hash_table}"),
                ({"SourceTableArn": source_arn.replace("000000000000", "123456789012"), "UseLatestRestorableTime": True},
                 "This action is only supported by accounts that match the resource owner\u2019s account.")):
            with pytest.raises(ClientError) as excinfo:
                ddb.restore_table_to_point_in_time(TargetTableName="tgt", **request)
            assert _error(excinfo) == ("ValidationException", expected), request
        with pytest.raises(ClientError) as excinfo:
            ddb.restore_table_to_point_in_time(SourceTableArn=source_arn + "_gone", TargetTableName="tgt",
                                               UseLatestRestorableTime=True)
        assert _error(excinfo) == ("TableNotFoundException", "Table not found")
        assert "tgt" not in ddb.list_tables()["TableNames"]
        with pytest.raises(ClientError) as excinfo:
            ddb.describe_table(TableName=hash_table + "_p3")
        assert _error(excinfo)[0] == "ResourceNotFoundException"
    finally:
        _cleanup(ddb, *targets)


# ---------------------------------------------------------------------- the storage's snapshots

def test_storage_snapshot_is_the_instant_it_was_asked_for(tmp_path):
    """Items in SSTables, in a memtable being flushed and in the active memtable, tombstones
    among them; writes, a flush and a major compaction while the snapshot is written: the
    table made from it holds exactly what the table held when snapshot() was called."""
    import uvloop
    from shardserver.shard.storage import ShardStorage, StorageOptions

    async def scenario():
        storage = ShardStorage(str(tmp_path / "shard"), 0, StorageOptions(
            memtable_flush_threshold_bytes=50_000, sstable_block_size_in_kb=2, compaction_min_threshold=100))
        await storage.open()
        storage.create_table("t")
        for i in range(3000):
            storage.put("t", b"k%05d" % i, b"v%d-" % i * 5)
        for i in range(0, 3000, 7):
            storage.delete("t", b"k%05d" % i)
        await storage.flush("t")
        for i in range(0, 3000, 3):
            storage.put("t", b"k%05d" % i, b"newer-%d" % i)
        expected = await storage.scan("t", None, None)
        count, size = storage.table_stats("t")
        task = asyncio.ensure_future(storage.snapshot(["t"], str(tmp_path / "shard" / "backups" / "b1")))
        await asyncio.sleep(0)          # the snapshot's instant is past: its first step ran
        for i in range(0, 3000, 2):
            storage.put("t", b"k%05d" % i, b"after")
        storage.delete("t", b"k00001")
        await storage.flush("t")
        await storage.compact("t")
        manifest = await task
        part = manifest["tables"]["t"]
        assert (part["live_items"], part["live_bytes"]) == (count, size)
        storage.drop_table("t")         # the snapshot does not need the table
        await storage.create_table_from_snapshot("copy", str(tmp_path / "shard" / "backups" / "b1"), "t")
        assert await storage.scan("copy", None, None) == expected
        assert storage.table_stats("copy") == (count, size)
        with pytest.raises(FileNotFoundError):       # no snapshot there: no table either
            await storage.create_table_from_snapshot("copy2", str(tmp_path / "shard" / "backups" / "b2"), "t")
        assert not storage.has_table("copy2")
        await storage.close()
        reopened = ShardStorage(str(tmp_path / "shard"), 0, StorageOptions())
        await reopened.open()
        assert await reopened.scan("copy", None, None) == expected
        await reopened.close()

    import asyncio
    uvloop.run(scenario())


def test_a_failed_flush_under_a_snapshot_loses_nothing(tmp_path, monkeypatch):
    """A snapshot freezes a newer memtable while an older one's flush fails: the newer one
    must not reach an SSTable first (its install would mark the older one's commit-log
    records as flushed), so a crash afterwards still replays every write."""
    import asyncio
    import uvloop
    from shardserver.errors import InternalServerError
    from shardserver.shard import storage as storage_mod
    from shardserver.shard.storage import ShardStorage, StorageOptions

    real = storage_mod.SSTableWriter
    failures = {"left": 1}

    class FailingOnce(real):
        async def finish(self, extra_meta=None):
            if failures["left"] and "/tables/" in self.path:
                failures["left"] -= 1
                await asyncio.sleep(0.05)
                raise OSError(28, "No space left on device")
            return await super().finish(extra_meta)

    monkeypatch.setattr(storage_mod, "SSTableWriter", FailingOnce)
    options = dict(commitlog_sync="batch", commitlog_sync_batch_window_in_ms=0.0, compaction_min_threshold=100)

    async def scenario():
        s = ShardStorage(str(tmp_path / "shard"), 0, StorageOptions(**options))
        await s.open()
        s.create_table("t")
        for i in range(200):
            s.put("t", b"a%04d" % i, b"old")
        flush = asyncio.ensure_future(s.flush("t"))
        await asyncio.sleep(0.01)                    # the flush froze the memtable and writes it
        for i in range(200):
            s.put("t", b"b%04d" % i, b"mid")
        try:
            await s.snapshot(["t"], str(tmp_path / "shard" / "backups" / "b1"))
        except InternalServerError:
            pass        # it read a memtable that a failed flush gave back to writes: refused
        with pytest.raises(OSError):
            await flush
        for i in range(200):
            s.put("t", b"c%04d" % i, b"new")
        await s.sync()
        expected = await s.scan("t", None, None)
        assert len(expected) == 600
        # a crash: no flush, no clean close
        s.commitlog._periodic_task and s.commitlog._periodic_task.cancel()
        for task in [s._flush_task, s._compaction_task, *s._side_flushes]:
            if task is not None and not task.done():
                task.cancel()
        s._closing = True
        await asyncio.sleep(0.1)
        s.aio.close()
        reopened = ShardStorage(str(tmp_path / "shard"), 0, StorageOptions(**options))
        await reopened.open()
        assert await reopened.scan("t", None, None) == expected
        await reopened.close()

    uvloop.run(scenario())
