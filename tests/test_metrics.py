"""The Prometheus endpoint of a real server under a real boto3 load.

One server (2 shards, 1 MB memtables so that flushes happen, batch commit
log so that syncs are counted) is scraped while client threads write and
read; the output is parsed with prometheus_client's own parser and the
per-shard counters must move on every shard.
"""

import gzip
import re
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from serverutil import ServerProcess, make_client

P = "shardserver_"


@pytest.fixture(scope="module")
def mserver(tmp_path_factory):
    proc = ServerProcess(tmp_path_factory.mktemp("metrics"), smp=2,
                         extra=["--memtable-flush-threshold-in-mb", "1",
                                "--commitlog-sync", "batch"]).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def scrape(server, query="", headers=None):
    url = f"http://127.0.0.1:{server.prometheus_port}/metrics" + (f"?{query}" if query else "")
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
        return r.status, dict(r.headers), r.read()


def parse(text: str) -> dict:
    """{(sample name, frozenset of labels): value}, via prometheus_client's parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = sample.value
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0)


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def clients_on_every_shard(server, nshards):
    """One boto3 client per shard: SO_REUSEPORT picks the shard, the request id says which."""
    found = {}
    for _ in range(200):
        client = make_client(server.endpoint, retries=3)
        shard = int(client.list_tables()["ResponseMetadata"]["RequestId"][:2], 16)
        found.setdefault(shard, client)
        if len(found) == nshards:
            return [found[s] for s in range(nshards)]
    pytest.fail(f"connections only ever reached shards {sorted(found)}")


def create(client, name):
    client.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")


def test_scrape_during_load_every_shard_moves(mserver):
    clients = clients_on_every_shard(mserver, 2)
    create(clients[0], "metrics_load")
    _, _, first_raw = scrape(mserver)
    first = parse(first_raw.decode())

    errors = []
    written = [0, 0]
    blob = "x" * 8000

    def load(i, client):
        # 300 items of 8 kB per client: well past the 1 MB memtables on both shards.
        try:
            for n in range(300):
                key = {"pk": {"S": f"c{i}-{n}"}}
                client.put_item(TableName="metrics_load", Item={**key, "v": {"S": blob}})
                assert client.get_item(TableName="metrics_load", Key=key)["Item"]["v"]["S"] == blob
                written[i] = n + 1
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    scrapes = []
    deadline = time.monotonic() + 60
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        status, headers, raw = scrape(mserver)
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        scrapes.append(parse(raw.decode()))
        time.sleep(0.15)
    for t in threads:
        t.join(30)
    assert not errors, errors
    _, _, last_raw = scrape(mserver)
    text = last_raw.decode()
    last = parse(text)
    scrapes.append(last)
    assert len(scrapes) >= 3

    # Counters never go backwards between scrapes.
    for before, after in zip(scrapes, scrapes[1:]):
        for key, v in before.items():
            if key[0].endswith("_total") and key in after:
                assert after[key] >= v, key

    ops_total = P + "alternator_operations_total"
    for shard in ("0", "1"):
        for op in ("PutItem", "GetItem"):
            assert value(last, ops_total, op=op, shard=shard) > value(first, ops_total, op=op, shard=shard), \
                (op, shard)
        # Both acceptors forwarded to the other shard and both owners received.
        for direction in ("out", "in"):
            name = P + "forwarded_requests_total"
            assert value(last, name, direction=direction, shard=shard) > \
                value(first, name, direction=direction, shard=shard), (direction, shard)
        name = P + "commitlog_bytes_total"
        assert value(last, name, shard=shard) > value(first, name, shard=shard)
        assert value(last, P + "commitlog_syncs_total", shard=shard) > 0
        assert value(last, P + "flushes_total", shard=shard) > 0, "1 MB memtables must have flushed"
        assert value(last, P + "sstables", shard=shard) > 0
        assert value(last, P + "sstable_bytes", shard=shard) > 0
        assert (P + "memtable_bytes", frozenset({"shard": shard}.items())) in last
        assert (P + "loop_stalls_total", frozenset({"shard": shard}.items())) in last
        assert value(last, P + "open_connections", shard=shard) >= 1
        peer = "1" if shard == "0" else "0"
        assert (P + "ring_depth_bytes", frozenset({"peer": peer, "shard": shard}.items())) in last
        assert (P + "ring_full_waits_total", frozenset({"peer": peer, "shard": shard}.items())) in last

    # Every item written is counted exactly once, on its owner.
    items = sum(value(last, P + "table_items", table="metrics_load", shard=s) for s in ("0", "1"))
    assert items == sum(written)

    # Reads of flushed items and of absent keys show in the cache and bloom-filter series.
    for n in range(0, written[0], 3):
        clients[0].get_item(TableName="metrics_load", Key={"pk": {"S": f"c0-{n}"}})
    for n in range(100):
        clients[0].get_item(TableName="metrics_load", Key={"pk": {"S": f"absent-{n}"}})
    _, _, after_raw = scrape(mserver)
    after = parse(after_raw.decode())
    total = lambda snap, name: sum(value(snap, P + name, shard=s) for s in ("0", "1"))  # noqa: E731
    assert total(after, "cache_hits_total") + total(after, "cache_misses_total") > \
        total(last, "cache_hits_total") + total(last, "cache_misses_total")
    assert total(after, "bloom_filter_negatives_total") > total(last, "bloom_filter_negatives_total")
    for name in ("block_cache_bytes", "block_cache_hits_total", "block_cache_misses_total",
                 "sstable_reads_total", "flush_bytes_total", "compaction_bytes_total", "memtables_flushing"):
        for shard in ("0", "1"):
            assert (P + name, frozenset({"shard": shard}.items())) in after, name
    assert total(after, "block_cache_hits_total") + total(after, "block_cache_misses_total") > 0
    assert all(value(last, P + "table_items", table="metrics_load", shard=s) > 0 for s in ("0", "1"))
    assert sum(value(last, P + "table_bytes", table="metrics_load", shard=s) for s in ("0", "1")) > 8000 * items

    # The latency histogram is consistent with the operation counter.
    fam = families(text)[P + "alternator_op_latency_seconds"]
    assert fam.type == "histogram"
    for shard in ("0", "1"):
        labels = {"op": "PutItem", "shard": shard}
        count = value(last, P + "alternator_op_latency_seconds_count", **labels)
        assert count == value(last, ops_total, **labels)
        buckets = sorted(((float(s.labels["le"]), s.value) for s in fam.samples
                          if s.name.endswith("_bucket") and s.labels["op"] == "PutItem"
                          and s.labels["shard"] == shard))
        assert buckets[-1] == (float("inf"), count)
        assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), "buckets must be cumulative"
        assert 0 < value(last, P + "alternator_op_latency_seconds_sum", **labels) < count * 5


def test_every_series_has_a_shard_label_and_conventional_names(mserver):
    _, _, raw = scrape(mserver)
    for family in text_string_to_metric_families(raw.decode()):
        assert family.name.startswith(P)
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        for sample in family.samples:
            assert sample.labels.get("shard") in ("0", "1"), sample


def test_errors_counted_by_type_on_the_owner(mserver):
    clients = clients_on_every_shard(mserver, 2)
    create(clients[0], "metrics_errors")
    before = parse(scrape(mserver)[2].decode())
    for client in clients:
        with pytest.raises(ClientError) as info:
            client.get_item(TableName="no_such_table_here", Key={"pk": {"S": "a"}})
        assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    for i in range(8):
        clients[0].put_item(TableName="metrics_errors", Item={"pk": {"S": f"k{i}"}})
        with pytest.raises(ClientError) as info:
            clients[0].put_item(TableName="metrics_errors", Item={"pk": {"S": f"k{i}"}},
                                ConditionExpression="attribute_not_exists(pk)")
        assert info.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    after = parse(scrape(mserver)[2].decode())

    def delta(op, kind):
        return sum(value(after, P + "alternator_errors_total", op=op, type=kind, shard=s)
                   - value(before, P + "alternator_errors_total", op=op, type=kind, shard=s)
                   for s in ("0", "1"))

    assert delta("GetItem", "ResourceNotFoundException") == 2
    assert delta("PutItem", "ConditionalCheckFailedException") == 8


def test_unknown_operations_cannot_grow_the_series(mserver):
    """X-Amz-Target is the client's to choose; the error series stay bounded."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", mserver.port, timeout=10)
    for i in range(700):
        conn.request("POST", "/", body=b"{}", headers={
            "X-Amz-Target": f"DynamoDB_20120810.NoSuchOp{i}", "Content-Type": "application/x-amz-json-1.0"})
        r = conn.getresponse()
        r.read()
        assert r.status == 400
    conn.close()
    text = scrape(mserver)[2].decode()
    shard_series = {}
    lumped = 0
    for family in text_string_to_metric_families(text):
        if family.name == P + "alternator_errors":
            for s in family.samples:
                shard_series[s.labels["shard"]] = shard_series.get(s.labels["shard"], 0) + 1
                if s.labels["op"] == "_other":
                    lumped += s.value
    # 512 distinct series, plus one overflow series per error type.
    assert shard_series and max(shard_series.values()) <= 512 + 4
    assert lumped > 0


def test_one_shard_alone(mserver):
    for shard in ("0", "1"):
        status, _, raw = scrape(mserver, f"shard={shard}")
        assert status == 200
        samples = parse(raw.decode())
        assert samples
        assert {dict(labels)["shard"] for _, labels in samples} == {shard}
        assert any(name == P + "memtable_bytes" for name, _ in samples)
    for query, code in (("shard=2", 404), ("shard=-1", 404), ("shard=abc", 400)):
        with pytest.raises(urllib.error.HTTPError) as info:
            scrape(mserver, query)
        assert info.value.code == code


def test_gzip_scrape_and_pipelined_order(mserver):
    """Prometheus asks for gzip; answers on one connection come back in order."""
    status, headers, raw = scrape(mserver, headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    assert parse(gzip.decompress(raw).decode())
    with socket.create_connection(("127.0.0.1", mserver.prometheus_port), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /metrics?shard=abc HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"200", b"400", b"200", b"404"]
