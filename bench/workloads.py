"""The benchmark's data model and DynamoDB request bodies, shared by every bench tool.

Owns: the two benchmark tables (``bench_kv``: hash key ``pk``; ``bench_query``:
hash key ``pk`` + range key ``sk`` with 10-item partitions), how a ~N-byte item
is shaped (YCSB-style ``field0..fieldK`` string attributes), key naming, key
distributions (uniform and scrambled zipfian), and pre-assembled request bodies
for each workload operation.  The load generator, the null server and the
locustfile all import it so that every tool sends and expects the same bytes.

It must never do I/O: no sockets, no files, no processes.
"""

from __future__ import annotations

import random

import numpy as np
import orjson

API_VERSION = "DynamoDB_20120810"
KV_TABLE = "bench_kv"
QUERY_TABLE = "bench_query"
PARTITION_SIZE = 10           # items per partition of the query table
BATCH_SIZE = 25               # BatchWriteItem's limit
COUNTER_ATTRIBUTE = "cnt"
DEFAULT_ITEM_SIZE = 1024
FIELD_LENGTH = 100            # YCSB's field size

BATCH_GET_SIZE = 100          # BatchGetItem's limit
WORKLOADS = ("get", "put", "update", "query", "batch", "batchget", "mix50")
# DynamoDB operation names of each workload, in the order they are drawn.
WORKLOAD_OPERATIONS = {
    "get": ("GetItem",),
    "put": ("PutItem",),
    "update": ("UpdateItem",),
    "query": ("Query",),
    "batch": ("BatchWriteItem",),
    "batchget": ("BatchGetItem",),
    "mix50": ("GetItem", "PutItem"),
}
UPDATE_EXPRESSION = "SET #c = if_not_exists(#c, :zero) + :one"

# A syntactically valid SigV4 header: servers that check the header's shape
# (dynalite does) accept it; none of the targets verifies the signature.
DUMMY_AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=AKIDBENCHMARK/20240101/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
    "Signature=" + "0" * 64)
DUMMY_DATE = "20240101T000000Z"


def kv_key(i: int) -> str:
    return "k%09d" % i


def partition_key(i: int) -> str:
    return "p%09d" % i


def key_schema_definitions(kv_table: str = KV_TABLE,
                           query_table: str = QUERY_TABLE) -> dict[str, dict]:
    """CreateTable request bodies of the benchmark tables, by table name."""
    return {
        kv_table: {
            "TableName": kv_table,
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
        query_table: {
            "TableName": query_table,
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                     {"AttributeName": "sk", "AttributeType": "N"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                          {"AttributeName": "sk", "KeyType": "RANGE"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
    }


# ---------------------------------------------------------------- items

def field_lengths(item_size: int) -> list[int]:
    """Lengths of the string fields that make an item of about ``item_size`` bytes.

    DynamoDB counts attribute names plus values; a field named ``fieldN`` costs
    its name (6-7 bytes) plus its value, and the key costs about 12 bytes.
    """
    budget = max(item_size - 12, 1)
    lengths = []
    while budget > 0:
        name_cost = len("field%d" % len(lengths))
        value = min(FIELD_LENGTH, max(budget - name_cost, 1))
        lengths.append(value)
        budget -= name_cost + value
    return lengths


class PayloadPool:
    """Pre-encoded attribute fragments (``"field0":{"S":"..."},...``) of item payloads.

    A few dozen random variants are enough to keep values from being identical
    without spending client CPU on building each item.
    """

    def __init__(self, item_size: int, variants: int = 64, seed: int = 7):
        rng = random.Random(seed)
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        lengths = field_lengths(item_size)
        self.attributes: list[dict] = []
        self.fragments: list[bytes] = []
        for _ in range(variants):
            attrs = {"field%d" % n: {"S": "".join(rng.choices(alphabet, k=length))}
                     for n, length in enumerate(lengths)}
            self.attributes.append(attrs)
            # Strip the outer braces so the fragment can be spliced after a key.
            self.fragments.append(orjson.dumps(attrs)[1:-1])

    def __len__(self) -> int:
        return len(self.fragments)


def kv_item(i: int, payload: PayloadPool, variant: int = 0) -> dict:
    item = {"pk": {"S": kv_key(i)}}
    item.update(payload.attributes[variant % len(payload)])
    return item


def query_item(partition: int, sort: int, payload: PayloadPool, variant: int = 0) -> dict:
    item = {"pk": {"S": partition_key(partition)}, "sk": {"N": str(sort)}}
    item.update(payload.attributes[variant % len(payload)])
    return item


# ---------------------------------------------------------------- keys

def zipf_cdf(n: int, theta: float) -> np.ndarray:
    """Cumulative distribution of ranks 0..n-1 with P(rank r) ~ 1/(r+1)^theta."""
    weights = 1.0 / np.power(np.arange(1, n + 1, dtype=np.float64), theta)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return cdf


class KeyChooser:
    """Draws key indexes in [0, n) from a uniform or a scrambled zipfian distribution.

    Zipfian ranks are scrambled by a fixed permutation, as YCSB does, so the
    hot keys are spread over the token ring instead of being neighbours.
    """

    def __init__(self, n: int, distribution: str = "uniform", theta: float = 0.99,
                 seed: int = 1):
        if n < 1:
            raise ValueError("key count must be at least 1")
        if distribution not in ("uniform", "zipfian"):
            raise ValueError("distribution must be uniform or zipfian")
        self.n = n
        self.distribution = distribution
        self.rng = np.random.default_rng(seed)
        if distribution == "zipfian":
            self._cdf = zipf_cdf(n, theta)
            self._scramble = np.random.default_rng(12345).permutation(n)

    def with_seed(self, seed: int) -> "KeyChooser":
        """A chooser over the same distribution with its own random stream.

        Shares the (O(n)) zipfian tables, so many clients in one process can
        each have a chooser cheaply.
        """
        twin = object.__new__(KeyChooser)
        twin.__dict__.update(self.__dict__)
        twin.rng = np.random.default_rng(seed)
        return twin

    def draw(self, count: int) -> np.ndarray:
        if self.distribution == "uniform":
            return self.rng.integers(0, self.n, size=count, dtype=np.int64)
        ranks = np.searchsorted(self._cdf, self.rng.random(count), side="right")
        np.minimum(ranks, self.n - 1, out=ranks)
        return self._scramble[ranks]

    def draw_distinct(self, count: int) -> list[int]:
        """``count`` distinct keys (a BatchWriteItem must not repeat a key)."""
        count = min(count, self.n)
        chosen: dict[int, None] = {}
        while len(chosen) < count:
            for k in self.draw(count - len(chosen)).tolist():
                chosen[k] = None
        return list(chosen)[:count]


# ---------------------------------------------------------------- request bodies

class BodyBuilder:
    """Builds request bodies by splicing pre-encoded fragments around the key.

    Each method returns the complete JSON body for one operation; the result is
    byte-for-byte what ``orjson.dumps`` of the equivalent dict would produce.
    """

    def __init__(self, payload: PayloadPool, kv_table: str = KV_TABLE,
                 query_table: str = QUERY_TABLE):
        self.payload = payload
        kv = orjson.dumps(kv_table)
        qt = orjson.dumps(query_table)
        self._get = (b'{"TableName":' + kv + b',"Key":{"pk":{"S":"', b'"}}}')
        self._put = (b'{"TableName":' + kv + b',"Item":{"pk":{"S":"', b'"},', b'}}')
        update_tail = orjson.dumps({
            "UpdateExpression": UPDATE_EXPRESSION,
            "ExpressionAttributeNames": {"#c": COUNTER_ATTRIBUTE},
            "ExpressionAttributeValues": {":zero": {"N": "0"}, ":one": {"N": "1"}},
        })[1:]
        self._update = (b'{"TableName":' + kv + b',"Key":{"pk":{"S":"', b'"}},' + update_tail)
        self._query = (b'{"TableName":' + qt + b',"KeyConditionExpression":"#p = :p",'
                       b'"ExpressionAttributeNames":{"#p":"pk"},'
                       b'"ExpressionAttributeValues":{":p":{"S":"', b'"}}}')
        self._batch_head = b'{"RequestItems":{' + kv + b':['
        self._batch_put = (b'{"PutRequest":{"Item":{"pk":{"S":"', b'"},', b'}}}')
        self._batch_get_head = b'{"RequestItems":{' + kv + b':{"Keys":['

    def get_item(self, key: str) -> bytes:
        return self._get[0] + key.encode() + self._get[1]

    def put_item(self, key: str, variant: int = 0) -> bytes:
        fragment = self.payload.fragments[variant % len(self.payload)]
        return self._put[0] + key.encode() + self._put[1] + fragment + self._put[2]

    def update_item(self, key: str) -> bytes:
        return self._update[0] + key.encode() + self._update[1]

    def query(self, pk: str) -> bytes:
        return self._query[0] + pk.encode() + self._query[1]

    def batch_write(self, keys: list[str], variant: int = 0) -> bytes:
        parts = []
        fragments = self.payload.fragments
        for n, key in enumerate(keys):
            fragment = fragments[(variant + n) % len(fragments)]
            parts.append(self._batch_put[0] + key.encode() + self._batch_put[1]
                         + fragment + self._batch_put[2])
        return self._batch_head + b",".join(parts) + b"]}}"

    def batch_get(self, keys: list[str]) -> bytes:
        return (self._batch_get_head
                + b",".join(b'{"pk":{"S":"' + key.encode() + b'"}}' for key in keys) + b"]}}}")


def batch_write_items(table: str, items: list[dict]) -> bytes:
    """BatchWriteItem body putting ``items`` (dicts) into ``table``; used by loaders."""
    return orjson.dumps({"RequestItems": {table: [{"PutRequest": {"Item": it}} for it in items]}})


def query_partitions(items: int) -> int:
    return max(1, items // PARTITION_SIZE)


def load_ranges(items: int, start: int = 0,
                tables: tuple[str, ...] = (KV_TABLE, QUERY_TABLE)) -> list[tuple[str, int, int]]:
    """The load plan as (table, first, end) batches of at most ``BATCH_SIZE`` items.

    The kv table gets keys ``start..items-1``; the query table gets the items
    ``j`` (partition ``j // PARTITION_SIZE``, sort key ``j % PARTITION_SIZE``)
    of the partitions from ``start // PARTITION_SIZE`` up to
    ``query_partitions(items)``, so growing a data set writes only what is new.
    """
    plan = []
    if KV_TABLE in tables:
        plan += [(KV_TABLE, first, min(first + BATCH_SIZE, items))
                 for first in range(start, items, BATCH_SIZE)]
    if QUERY_TABLE in tables:
        q_first = (start // PARTITION_SIZE) * PARTITION_SIZE
        q_end = query_partitions(items) * PARTITION_SIZE
        plan += [(QUERY_TABLE, first, min(first + BATCH_SIZE, q_end))
                 for first in range(q_first, q_end, BATCH_SIZE)]
    return plan


def load_batches(items: int, item_size: int, part: int = 0, parts: int = 1,
                 start: int = 0, tables: tuple[str, ...] = (KV_TABLE, QUERY_TABLE),
                 seed: int = 7):
    """Yields the BatchWriteItem bodies of this loader's share of ``load_ranges``.

    Batch ``b`` of the plan belongs to loader ``b % parts``: loaders split the
    work without talking to each other.
    """
    payload = PayloadPool(item_size, seed=seed)
    for b, (table, first, end) in enumerate(load_ranges(items, start, tables)):
        if b % parts != part:
            continue
        if table == KV_TABLE:
            batch = [kv_item(i, payload, i) for i in range(first, end)]
        else:
            batch = [query_item(j // PARTITION_SIZE, j % PARTITION_SIZE, payload, j)
                     for j in range(first, end)]
        yield batch_write_items(table, batch)
