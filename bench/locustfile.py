"""locust load test for any DynamoDB-compatible endpoint, over the raw JSON protocol.

Owns: locust's FastHttpUser tasks for GetItem, PutItem, UpdateItem (SET +
if_not_exists arithmetic), Query of a 10-item partition, BatchWriteItem and a
YCSB-A-like 50/50 GetItem/PutItem mix; the custom options (also environment
variables) that pick the workload, tables, key count, item size and key
distribution; and creating + filling the tables when a test starts.  Request
bodies come from ``workloads.py``, the same bytes the harness sends.

It must never use boto3 (its signing costs more CPU than the server under
test) and should only be pointed at a server you run yourself.

    locust -f bench/locustfile.py --headless -u 32 -r 32 -t 30s --host http://127.0.0.1:8000
    locust -f bench/locustfile.py --headless -u 32 -r 32 -t 30s --host http://127.0.0.1:8000 \\
           --ddb-workload get --ddb-keys 100000 --ddb-distribution zipfian
"""

from __future__ import annotations

import http.client
import os
import sys
import time
import urllib.parse

import orjson
from locust import FastHttpUser, events, task
from locust.runners import WorkerRunner

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads  # noqa: E402

WORKLOAD_CHOICES = workloads.WORKLOADS + ("all",)


@events.init_command_line_parser.add_listener
def _options(parser):
    parser.add_argument("--ddb-workload", choices=WORKLOAD_CHOICES, default="mix50",
                        env_var="DDB_WORKLOAD",
                        help="operation mix: get, put, update, query, batch, batchget, mix50 (YCSB-A) or all")
    parser.add_argument("--ddb-table", default=workloads.KV_TABLE, env_var="DDB_TABLE",
                        help="table of single items (hash key pk, S)")
    parser.add_argument("--ddb-query-table", default=workloads.QUERY_TABLE, env_var="DDB_QUERY_TABLE",
                        help="table of 10-item partitions (pk S, sk N) for Query")
    parser.add_argument("--ddb-keys", type=int, default=10_000, env_var="DDB_KEYS",
                        help="number of distinct keys (the query table has keys/10 partitions)")
    parser.add_argument("--ddb-item-size", type=int, default=workloads.DEFAULT_ITEM_SIZE,
                        env_var="DDB_ITEM_SIZE", help="approximate item size in bytes")
    parser.add_argument("--ddb-distribution", choices=("uniform", "zipfian"), default="uniform",
                        env_var="DDB_DISTRIBUTION", help="key distribution (zipfian: hot keys)")
    parser.add_argument("--ddb-theta", type=float, default=0.99, env_var="DDB_THETA",
                        help="zipfian skew")
    parser.add_argument("--ddb-load", choices=("auto", "yes", "no"), default="auto",
                        env_var="DDB_LOAD",
                        help="fill the tables at test start: auto = only tables this test created")


# ---------------------------------------------------------------- test setup

def _call(base: urllib.parse.SplitResult, operation: str, body: bytes) -> tuple[int, dict]:
    conn_class = http.client.HTTPSConnection if base.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(base.hostname, base.port or (443 if base.scheme == "https" else 80), timeout=60)
    try:
        conn.request("POST", base.path or "/", body, {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "%s.%s" % (workloads.API_VERSION, operation),
            "X-Amz-Date": workloads.DUMMY_DATE,
            "Authorization": workloads.DUMMY_AUTHORIZATION,
        })
        resp = conn.getresponse()
        data = resp.read()
        try:
            return resp.status, (orjson.loads(data) if data else {})
        except orjson.JSONDecodeError:
            return resp.status, {}
    finally:
        conn.close()


def _ensure_table(base, definition: dict) -> bool:
    """Creates the table if missing and waits for ACTIVE; True if this call created it."""
    name = definition["TableName"]
    status, _ = _call(base, "DescribeTable", orjson.dumps({"TableName": name}))
    created = False
    if status != 200:
        status, doc = _call(base, "CreateTable", orjson.dumps(definition))
        if status != 200 and "ResourceInUse" not in str(doc.get("__type", "")):
            raise RuntimeError("CreateTable %s failed: HTTP %d %s" % (name, status, doc))
        created = status == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, doc = _call(base, "DescribeTable", orjson.dumps({"TableName": name}))
        if status == 200 and doc.get("Table", {}).get("TableStatus", "ACTIVE") == "ACTIVE":
            return created
        time.sleep(0.1)
    raise RuntimeError("table %s is not ACTIVE after 60 s" % name)


def _write(base, table: str, items: list[dict]) -> None:
    request = {table: [{"PutRequest": {"Item": it}} for it in items]}
    for _ in range(100):
        status, doc = _call(base, "BatchWriteItem", orjson.dumps({"RequestItems": request}))
        if status != 200:
            raise RuntimeError("BatchWriteItem failed while loading: HTTP %d %s" % (status, doc))
        request = doc.get("UnprocessedItems") or {}
        if not request:
            return
        time.sleep(0.01)
    raise RuntimeError("BatchWriteItem kept returning UnprocessedItems while loading")


def _load(base, opts) -> None:
    payload = workloads.PayloadPool(opts.ddb_item_size)
    for first in range(0, opts.ddb_keys, workloads.BATCH_SIZE):
        end = min(first + workloads.BATCH_SIZE, opts.ddb_keys)
        _write(base, opts.ddb_table, [workloads.kv_item(i, payload, i) for i in range(first, end)])
    total = workloads.query_partitions(opts.ddb_keys) * workloads.PARTITION_SIZE
    for first in range(0, total, workloads.BATCH_SIZE):
        end = min(first + workloads.BATCH_SIZE, total)
        _write(base, opts.ddb_query_table,
               [workloads.query_item(j // workloads.PARTITION_SIZE, j % workloads.PARTITION_SIZE,
                                     payload, j) for j in range(first, end)])


@events.test_start.add_listener
def _prepare_tables(environment, **_kwargs):
    if isinstance(environment.runner, WorkerRunner) or not environment.host:
        return
    opts = environment.parsed_options
    base = urllib.parse.urlsplit(environment.host)
    created = False
    for definition in workloads.key_schema_definitions(opts.ddb_table, opts.ddb_query_table).values():
        created |= _ensure_table(base, definition)
    if opts.ddb_load == "yes" or (opts.ddb_load == "auto" and created):
        t0 = time.monotonic()
        _load(base, opts)
        print("loaded %d keys into %s and %s in %.1f s" % (
            opts.ddb_keys, opts.ddb_table, opts.ddb_query_table, time.monotonic() - t0),
            file=sys.stderr)


# ---------------------------------------------------------------- the user

_CHOOSERS: dict = {}


def _chooser(n: int, distribution: str, theta: float, seed: int) -> workloads.KeyChooser:
    # The zipfian CDF costs O(n) to build: share it between users of this process.
    proto = _CHOOSERS.get((n, distribution, theta))
    if proto is None:
        proto = _CHOOSERS[(n, distribution, theta)] = workloads.KeyChooser(n, distribution, theta, 0)
    return proto.with_seed(seed)


class DynamoDBUser(FastHttpUser):
    """One client connection issuing the chosen workload's operations back to back."""

    _seed = 0

    def on_start(self):
        opts = self.environment.parsed_options
        DynamoDBUser._seed += 1
        self.workload = opts.ddb_workload
        self.builder = workloads.BodyBuilder(
            workloads.PayloadPool(opts.ddb_item_size, seed=DynamoDBUser._seed),
            opts.ddb_table, opts.ddb_query_table)
        self.keys = _chooser(opts.ddb_keys, opts.ddb_distribution, opts.ddb_theta, DynamoDBUser._seed)
        self.partitions = _chooser(workloads.query_partitions(opts.ddb_keys), opts.ddb_distribution,
                                   opts.ddb_theta, DynamoDBUser._seed + 100_000)
        self.headers = {
            op: {"Content-Type": "application/x-amz-json-1.0",
                 "X-Amz-Target": "%s.%s" % (workloads.API_VERSION, op),
                 "X-Amz-Date": workloads.DUMMY_DATE,
                 "Authorization": workloads.DUMMY_AUTHORIZATION}
            for ops in workloads.WORKLOAD_OPERATIONS.values() for op in ops}
        self.variant = 0
        self.draws = 0
        names = workloads.WORKLOADS[:-1] if self.workload == "all" else (self.workload,)
        self.steps = [getattr(self, "_" + n) for n in names]

    def _key(self) -> str:
        return workloads.kv_key(int(self.keys.draw(1)[0]))

    def _post(self, operation: str, body: bytes) -> None:
        self.client.post("/", data=body, headers=self.headers[operation], name=operation)

    def _get(self):
        self._post("GetItem", self.builder.get_item(self._key()))

    def _put(self):
        self.variant += 1
        self._post("PutItem", self.builder.put_item(self._key(), self.variant))

    def _update(self):
        self._post("UpdateItem", self.builder.update_item(self._key()))

    def _query(self):
        pk = workloads.partition_key(int(self.partitions.draw(1)[0]))
        self._post("Query", self.builder.query(pk))

    def _batch(self):
        self.variant += 1
        keys = [workloads.kv_key(k) for k in self.keys.draw_distinct(workloads.BATCH_SIZE)]
        self._post("BatchWriteItem", self.builder.batch_write(keys, self.variant))

    def _batchget(self):
        keys = [workloads.kv_key(k) for k in self.keys.draw_distinct(workloads.BATCH_GET_SIZE)]
        self._post("BatchGetItem", self.builder.batch_get(keys))

    def _mix50(self):
        if self.keys.rng.random() < 0.5:
            self._get()
        else:
            self._put()

    @task
    def next_operation(self):
        # "all" cycles through every workload so each gets the same share of requests.
        self.draws += 1
        self.steps[self.draws % len(self.steps)]()
