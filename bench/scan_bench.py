"""Full-scan throughput over raw HTTP (no boto3): serial, and parallel with TotalSegments = shards.

Loads N items of about 100 bytes with BatchWriteItem, then scans the whole table
page by page with one client, then once more with one client process per
segment, and prints items/s for both.  By default it starts its own server
(127.0.0.1, a temporary data directory, stopped by pid at the end); --endpoint
points it at a running one instead.  It only ever talks to 127.0.0.1.

    python bench/scan_bench.py --items 200000 --smp 2
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import orjson

TABLE = "scanbench"


class Client:
    """One keep-alive HTTP connection speaking the DynamoDB JSON protocol."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, op: str, body: dict) -> bytes:
        self.conn.request("POST", "/", orjson.dumps(body), {
            "X-Amz-Target": f"DynamoDB_20120810.{op}", "Content-Type": "application/x-amz-json-1.0"})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{op}: HTTP {response.status}: {data[:300]!r}")
        return data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(smp: int, data_dir: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    log = open(os.path.join(data_dir, "server.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "shardserver", "--smp", str(smp), "--developer-mode",
                             "--data-dir", os.path.join(data_dir, "data"), "--alternator-port", str(port),
                             "--prometheus-port", str(_free_port())], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                if r.read().startswith(b"healthy"):
                    time.sleep(1.0)     # let every shard reach its listening socket
                    return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not become healthy")


def _load_range(port: int, start: int, stop: int) -> None:
    client = Client(port)
    pad = "x" * 60          # pk + n + pad attribute: about 100 bytes of item
    for first in range(start, stop, 25):
        requests = [{"PutRequest": {"Item": {"pk": {"S": f"item{i:09d}"}, "n": {"N": str(i)}, "pad": {"S": pad}}}}
                    for i in range(first, min(first + 25, stop))]
        pending = {TABLE: requests}
        while pending:
            reply = orjson.loads(client.call("BatchWriteItem", {"RequestItems": pending}))
            pending = reply.get("UnprocessedItems") or {}


def load(port: int, items: int, writers: int = 4) -> float:
    started = time.perf_counter()
    step = -(-items // writers)
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(lambda w: _load_range(port, w * step, min(items, (w + 1) * step)), range(writers)))
    return time.perf_counter() - started


def scan_segment(args) -> tuple[int, float]:
    """(items returned, seconds) of one full (segment) scan by one client."""
    port, segment, total = args
    client = Client(port)
    body = {"TableName": TABLE}
    if total is not None:
        body.update(Segment=segment, TotalSegments=total)
    count = 0
    started = time.perf_counter()
    while True:
        page = orjson.loads(client.call("Scan", body))
        count += len(page["Items"])
        last = page.get("LastEvaluatedKey")
        if last is None:
            return count, time.perf_counter() - started
        body["ExclusiveStartKey"] = last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--smp", type=int, default=2)
    parser.add_argument("--endpoint-port", type=int, help="use a running server on 127.0.0.1:PORT")
    args = parser.parse_args()
    workdir = None
    proc = None
    try:
        if args.endpoint_port:
            port = args.endpoint_port
        else:
            workdir = tempfile.mkdtemp(prefix="scan_bench_")
            proc, port = start_server(args.smp, workdir)
        client = Client(port)
        client.call("CreateTable", {
            "TableName": TABLE, "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]})
        seconds = load(port, args.items)
        print(f"loaded {args.items} items in {seconds:.1f}s ({args.items / seconds:,.0f} items/s via BatchWriteItem)")
        count, seconds = scan_segment((port, 0, None))
        assert count == args.items, (count, args.items)
        print(f"serial scan:   {count} items in {seconds:.2f}s = {count / seconds:,.0f} items/s")
        shards = args.smp
        started = time.perf_counter()
        with multiprocessing.Pool(shards) as pool:
            results = pool.map(scan_segment, [(port, s, shards) for s in range(shards)])
        seconds = time.perf_counter() - started
        count = sum(c for c, _ in results)
        assert count == args.items, (count, args.items)
        print(f"parallel scan: {count} items in {seconds:.2f}s = {count / seconds:,.0f} items/s "
              f"(TotalSegments={shards}, one client process per segment)")
        client.call("DeleteTable", {"TableName": TABLE})
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
