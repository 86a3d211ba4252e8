"""The catalog: every table's definition, persisted atomically, known to every shard.

One JSON file (``<data-dir>/catalog.json``) holds all table definitions.
Only the catalog coordinator (shard 0) writes it, with write-temp, fsync,
rename; every shard reads it at start and again when the coordinator
broadcasts a schema change.  This module knows nothing of the rings.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import asdict, dataclass, field

import orjson

CATALOG_FILE = "catalog.json"
REGION = "us-east-1"
# What every DynamoDB table can take at once, and the least a WarmThroughput may ask for.
WARM_THROUGHPUT_BASELINE = {"ReadUnitsPerSecond": 12000, "WriteUnitsPerSecond": 4000}
ACCOUNT = "000000000000"


@dataclass
class TableSchema:
    name: str
    table_id: str
    hash_key: str
    hash_type: str
    range_key: str | None
    range_type: str | None
    attribute_definitions: list
    creation_time: float
    billing_mode: str = "PROVISIONED"
    read_capacity: int = 0
    write_capacity: int = 0
    local_indexes: list = field(default_factory=list)
    global_indexes: list = field(default_factory=list)
    stream_specification: dict | None = None
    tags: list = field(default_factory=list)
    ttl_attribute: str | None = None
    extra: dict = field(default_factory=dict)
    # DynamoDB Streams of the table, oldest first: {"label", "view_type", "created_ms",
    # "disabled_ms"}; at most the last one is enabled (see shardserver.shard.streams).
    streams: list = field(default_factory=list)

    def __post_init__(self):
        spec = self.stream_specification
        if not self.streams and spec and spec.get("StreamEnabled") and spec.get("StreamViewType"):
            # A catalog written before streams were kept: its stream starts with the table.
            from shardserver.shard.streams import new_stream
            self.streams = [new_stream(spec["StreamViewType"], int(self.creation_time * 1000), [])]
        # Read on every write (ShardService.after_write): worked out once per schema version.
        last = self.streams[-1] if self.streams else None
        self.active_stream = last if last is not None and last.get("disabled_ms") is None else None

    @property
    def arn(self) -> str:
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.name}"

    @property
    def warm_throughput(self) -> dict:
        """Read and write units per second the table takes at once: the baseline, or what it asked for."""
        return {**WARM_THROUGHPUT_BASELINE, **self.extra.get("WarmThroughput", {})}

    @property
    def pay_per_request_since(self) -> float | None:
        """When PAY_PER_REQUEST was last set, or None for a table never on demand."""
        if "PayPerRequestSince" in self.extra:
            return self.extra["PayPerRequestSince"]
        return self.creation_time if self.billing_mode == "PAY_PER_REQUEST" else None

    @property
    def deletion_protection(self) -> bool:
        return bool(self.extra.get("DeletionProtectionEnabled", False))

    @property
    def table_class(self) -> str:
        return self.extra.get("TableClass", "STANDARD")

    @property
    def key_schema(self) -> list:
        schema = [{"AttributeName": self.hash_key, "KeyType": "HASH"}]
        if self.range_key:
            schema.append({"AttributeName": self.range_key, "KeyType": "RANGE"})
        return schema

    @property
    def key_names(self) -> tuple:
        return (self.hash_key, self.range_key) if self.range_key else (self.hash_key,)

    def index_key_names(self, index_name: str) -> tuple[tuple, tuple]:
        """(hash, range) key names of a secondary index, in key schema order (a GSI's
        multi-attribute key has up to four each), or ValidationException."""
        from shardserver.errors import ValidationException
        for index in self.local_indexes + self.global_indexes:
            if index.get("IndexName") == index_name:
                return (tuple(e["AttributeName"] for e in index["KeySchema"] if e["KeyType"] == "HASH"),
                        tuple(e["AttributeName"] for e in index["KeySchema"] if e["KeyType"] == "RANGE"))
        raise ValidationException(f"The table does not have the specified index: {index_name}")

    def throughput_description(self) -> dict:
        """ProvisionedThroughput as DynamoDB describes it, with the dates of the last
        increase and decrease (UpdateTable records them) and the UTC day's decreases."""
        throughput = {}
        if "ThroughputIncreased" in self.extra:
            throughput["LastIncreaseDateTime"] = self.extra["ThroughputIncreased"]
        if "ThroughputDecreased" in self.extra:
            throughput["LastDecreaseDateTime"] = self.extra["ThroughputDecreased"]
        day, decreases = self.extra.get("ThroughputDecreases", ("", 0))
        today = time.strftime("%Y-%m-%d", time.gmtime())
        throughput["NumberOfDecreasesToday"] = decreases if day == today else 0
        throughput["ReadCapacityUnits"] = self.read_capacity
        throughput["WriteCapacityUnits"] = self.write_capacity
        return throughput

    def sse_description(self, status: str) -> dict:
        """SSEDescription of encryption at rest with the table's (stand-in) KMS key."""
        return {"Status": status, "SSEType": "KMS",
                "KMSMasterKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{self.table_id}"}

    def description(self, item_count: int = 0, size_bytes: int = 0, status: str = "ACTIVE",
                    index_stats: dict | None = None) -> dict:
        """DescribeTable's TableDescription; ``index_stats`` maps index name -> (item count, bytes)."""
        description = {
            "TableName": self.name,
            "TableId": self.table_id,
            "TableArn": self.arn,
            "TableStatus": status,
            "CreationDateTime": self.creation_time,
            "KeySchema": self.key_schema,
            # DynamoDB answers the definitions sorted by name (Java's String order), not as sent.
            "AttributeDefinitions": sorted(self.attribute_definitions,
                                           key=lambda d: d["AttributeName"].encode("utf-16-be")),
            "ItemCount": item_count,
            "TableSizeBytes": size_bytes,
            "ProvisionedThroughput": self.throughput_description(),
            "DeletionProtectionEnabled": self.deletion_protection,
        }
        since = self.pay_per_request_since
        if since is not None:
            # DynamoDB shows a BillingModeSummary only once a table has been on demand.
            description["BillingModeSummary"] = {"BillingMode": self.billing_mode,
                                                 "LastUpdateToPayPerRequestDateTime": since}
        elif "RestoreSummary" in self.extra:
            # A restored table states its billing mode, on demand or not.
            description["BillingModeSummary"] = {"BillingMode": self.billing_mode}
        if "TableClass" in self.extra:
            description["TableClassSummary"] = {"TableClass": self.extra["TableClass"]}
            if "TableClassUpdated" in self.extra:
                description["TableClassSummary"]["LastUpdateDateTime"] = self.extra["TableClassUpdated"]
        if self.extra.get("OnDemandThroughput"):
            description["OnDemandThroughput"] = dict(self.extra["OnDemandThroughput"])
        description["WarmThroughput"] = {**self.warm_throughput, "Status": "ACTIVE"}
        if self.extra.get("SSEEnabled"):
            description["SSEDescription"] = self.sse_description("ENABLED")
        if self.active_stream is not None:
            description["StreamSpecification"] = {"StreamEnabled": True,
                                                  "StreamViewType": self.active_stream["view_type"]}
        if self.streams:
            latest = self.streams[-1]
            description["LatestStreamLabel"] = latest["label"]
            description["LatestStreamArn"] = f"{self.arn}/stream/{latest['label']}"
        if "RestoreSummary" in self.extra:
            description["RestoreSummary"] = dict(self.extra["RestoreSummary"])
        if self.local_indexes or self.global_indexes:
            from shardserver.shard.indexes import describe_index
            stats = index_stats or {}
            if self.local_indexes:
                description["LocalSecondaryIndexes"] = [
                    describe_index(self, i, False, stats.get(i["IndexName"])) for i in self.local_indexes]
            if self.global_indexes:
                description["GlobalSecondaryIndexes"] = [
                    describe_index(self, i, True, stats.get(i["IndexName"])) for i in self.global_indexes]
        return description

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TableSchema":
        return cls(**data)


def new_table_id() -> str:
    return str(uuid.uuid4())


class Catalog:
    """In-memory view of catalog.json; writes only through ``save``."""

    def __init__(self, data_dir: str):
        self.path = os.path.join(data_dir, CATALOG_FILE)
        self.tables: dict[str, TableSchema] = {}
        # Deleted tables whose (disabled) streams stay readable for the streams retention, by table id.
        self.deleted_tables: dict[str, TableSchema] = {}
        # On-demand backups by backup id (shardserver.shard.backups): they outlive their tables.
        self.backups: dict[str, dict] = {}
        self.version = 0

    def load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                data = orjson.loads(f.read())
        except FileNotFoundError:
            self.tables, self.deleted_tables, self.backups, self.version = {}, {}, {}, 0
            return
        self.version = data.get("version", 0)
        self.tables = {t["name"]: TableSchema.from_json(t) for t in data.get("tables", [])}
        self.deleted_tables = {t["table_id"]: TableSchema.from_json(t) for t in data.get("deleted_tables", [])}
        self.backups = {b["id"]: b for b in data.get("backups", [])}

    def save(self) -> None:
        """Atomically replaces catalog.json (write temp, fsync, rename, fsync dir)."""
        self.version += 1
        payload = orjson.dumps({"version": self.version,
                                "tables": [t.to_json() for t in self.tables.values()],
                                "deleted_tables": [t.to_json() for t in self.deleted_tables.values()],
                                "backups": list(self.backups.values())},
                               option=orjson.OPT_INDENT_2)
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, name: str) -> TableSchema | None:
        return self.tables.get(name)

    def by_id(self) -> dict[str, TableSchema]:
        return {t.table_id: t for t in self.tables.values()}


def now() -> float:
    return round(time.time(), 3)
