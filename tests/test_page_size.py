"""1 MB pages counted as DynamoDB counts them: the items' size (attribute names plus
values), not their JSON.  Query and Scan on tables and indexes, parallel scan,
filters, Limit, both directions, PartiQL pages, BatchGetItem's 16 MB."""

import base64
import json
import threading
import time

import pytest

from conftest import create_table

MB = 1024 * 1024
ATTRIBUTES = 50       # small numbers: about 5 bytes of DynamoDB size each, 15 of JSON
ITEMS = 5500


def av_size(av: dict) -> int:
    """DynamoDB's size of an attribute value, for the types these tests write."""
    (kind, value), = av.items()
    if kind == "S":
        return len(value.encode())
    if kind == "N":
        digits = value.lstrip("-").replace(".", "").strip("0")
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(value) if isinstance(value, bytes) else len(base64.b64decode(value))
    raise AssertionError(kind)


def size_of(item: dict) -> int:
    return sum(len(name.encode()) + av_size(av) for name, av in item.items())


def expected_pages(sizes: list[int], limit: int | None = None) -> list[int]:
    """Page lengths DynamoDB gives items of these sizes, in reading order: a page ends
    with the item that takes it to 1 MB, or at Limit items."""
    pages, count, total = [], 0, 0
    for size in sizes:
        count += 1
        total += size
        if total >= MB or count == limit:
            pages.append(count)
            count, total = 0, 0
    if count:
        pages.append(count)
    return pages


def pages_of(call, **kwargs) -> list[dict]:
    pages = []
    while True:
        page = call(**kwargs)
        pages.append(page)
        if "LastEvaluatedKey" not in page:
            return pages
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def lengths(pages, field="Count") -> list[int]:
    """Page lengths, with the empty page after one that ended exactly at the last item dropped."""
    counts = [p[field] for p in pages]
    if len(counts) > 1 and counts[-1] == 0:
        counts.pop()
    return counts


def json_length(item: dict) -> int:
    return len(json.dumps(item, separators=(",", ":")))


def small_numbers_item(i: int) -> dict:
    item = {"pk": {"S": "p"}, "sk": {"N": str(i)}, "g": {"S": "all"},
            # varying lengths, so page ends fall on items of different sizes
            "pad": {"S": "x" * (1 + i * 37 % 300)}}
    for a in range(ATTRIBUTES):
        item[f"a{a}"] = {"N": str((i + a) % 10)}
    return item


def write(ddb, table, items):
    for start in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": item}} for item in items[start:start + 25]]
        while batch:
            left = ddb.batch_write_item(RequestItems={table: batch})["UnprocessedItems"]
            batch = left.get(table, [])


@pytest.fixture(scope="module")
def small_items(server, ddb):
    """One partition of items whose JSON is ~2.5 times their DynamoDB size, with a GSI
    (projecting everything) on one constant key, and a copy spread over partitions."""
    name = "page_size_small"
    create_table(ddb, name, range_key=("sk", "N"), attributes=[("g", "S")], GlobalSecondaryIndexes=[
        {"IndexName": "by_g", "Projection": {"ProjectionType": "ALL"},
         "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]}])
    spread = "page_size_spread"
    create_table(ddb, spread, hash_key=("pk", "S"))
    items = [small_numbers_item(i) for i in range(ITEMS)]
    copy = threading.Thread(target=write, args=(server.client(), spread,
                                                [dict(item, pk={"S": f"p{i}"}) for i, item in enumerate(items)]))
    copy.start()
    write(ddb, name, items)
    copy.join()
    deadline = time.time() + 30
    while sum(p["ScannedCount"] for p in pages_of(ddb.query, TableName=name, Select="COUNT", **INDEX_QUERY)) \
            < ITEMS and time.time() < deadline:
        time.sleep(0.2)
    yield name, spread, items
    ddb.delete_table(TableName=name)
    ddb.delete_table(TableName=spread)


QUERY = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p"}}}
INDEX_QUERY = {"IndexName": "by_g", "KeyConditionExpression": "g = :g",
               "ExpressionAttributeValues": {":g": {"S": "all"}}}


@pytest.mark.parametrize("forward", [True, False])
def test_query_pages_end_at_one_megabyte_of_item_size(ddb, small_items, forward):
    name, _, items = small_items
    pages = pages_of(ddb.query, TableName=name, ScanIndexForward=forward, **QUERY)
    got = [i for p in pages for i in p["Items"]]
    ordered = items if forward else items[::-1]
    assert got == ordered                    # every item once, in key order
    assert lengths(pages) == expected_pages([size_of(i) for i in ordered])
    # The JSON of a page is far past 1 MB: a stored-JSON cut held under half as many items.
    assert pages[0]["Count"] > 2 * MB * len(items) // sum(json_length(i) for i in items)


def test_query_with_filter_reads_the_same_pages(ddb, small_items):
    name, _, items = small_items
    pages = pages_of(ddb.query, TableName=name, FilterExpression="a0 = :z",
                     **dict(QUERY, ExpressionAttributeValues={":p": {"S": "p"}, ":z": {"N": "3"}}))
    assert lengths(pages, "ScannedCount") == expected_pages([size_of(i) for i in items])
    got = [i for p in pages for i in p["Items"]]
    assert got == [i for i in items if i["a0"]["N"] == "3"]
    assert sum(p["Count"] for p in pages) == len(got)


@pytest.mark.parametrize("limit", [1500, 3000])
def test_query_limit_and_size_both_end_pages(ddb, small_items, limit):
    name, _, items = small_items
    pages = pages_of(ddb.query, TableName=name, Limit=limit, ScanIndexForward=False, **QUERY)
    ordered = items[::-1]
    assert [i for p in pages for i in p["Items"]] == ordered
    assert lengths(pages) == expected_pages([size_of(i) for i in ordered], limit)


def test_query_with_projection_and_count_pages_by_the_items_read(ddb, small_items):
    name, _, items = small_items
    sizes = [size_of(i) for i in items]
    projected = pages_of(ddb.query, TableName=name, ProjectionExpression="sk", **QUERY)
    assert lengths(projected) == expected_pages(sizes)
    assert [i["sk"] for p in projected for i in p["Items"]] == [i["sk"] for i in items]
    counted = pages_of(ddb.query, TableName=name, Select="COUNT", **QUERY)
    assert lengths(counted) == expected_pages(sizes)


@pytest.mark.parametrize("forward", [True, False])
def test_index_query_pages_end_at_one_megabyte_of_item_size(ddb, small_items, forward):
    name, _, items = small_items
    pages = pages_of(ddb.query, TableName=name, ScanIndexForward=forward, **INDEX_QUERY)
    ordered = items if forward else items[::-1]
    assert [i["sk"] for p in pages for i in p["Items"]] == [i["sk"] for i in ordered]
    assert lengths(pages) == expected_pages([size_of(i) for i in ordered])


def check_scan_pages(pages, items_by_key, key):
    """Every page but the last ends with the item that takes it to 1 MB; every item once."""
    seen = []
    for n, page in enumerate(pages):
        sizes = [size_of(items_by_key[key(i)]) for i in page["Items"]]
        seen += [key(i) for i in page["Items"]]
        if "LastEvaluatedKey" in page:
            assert sum(sizes) >= MB and sum(sizes) - sizes[-1] < MB, (n, len(sizes), sum(sizes))
        else:
            assert sum(sizes) < MB
    assert sorted(seen) == sorted(items_by_key)
    return [len(p["Items"]) for p in pages]


def test_scan_pages_end_at_one_megabyte_of_item_size(ddb, small_items):
    _, spread, items = small_items
    by_key = {f"p{i}": dict(item, pk={"S": f"p{i}"}) for i, item in enumerate(items)}
    pages = pages_of(ddb.scan, TableName=spread)
    counts = check_scan_pages(pages, by_key, lambda i: i["pk"]["S"])
    # The scan crosses from one shard to the next inside a page, and its pages are still cut exactly.
    assert len(counts) >= 2
    filtered = pages_of(ddb.scan, TableName=spread, FilterExpression="a1 = :v",
                        ExpressionAttributeValues={":v": {"N": "5"}})
    assert [p["ScannedCount"] for p in filtered] == counts
    got = [i["pk"]["S"] for p in filtered for i in p["Items"]]
    assert sorted(got) == sorted(k for k, i in by_key.items() if i["a1"]["N"] == "5")
    limited = pages_of(ddb.scan, TableName=spread, Limit=2000)
    assert all(len(p["Items"]) <= 2000 for p in limited)
    assert sorted(i["pk"]["S"] for p in limited for i in p["Items"]) == sorted(by_key)


@pytest.mark.parametrize("total", [2, 3])
def test_parallel_scan_segments_end_at_one_megabyte_of_item_size(ddb, small_items, total):
    _, spread, items = small_items
    by_key = {f"p{i}": dict(item, pk={"S": f"p{i}"}) for i, item in enumerate(items)}
    seen = []
    for segment in range(total):
        pages = pages_of(ddb.scan, TableName=spread, Segment=segment, TotalSegments=total)
        seen += [i["pk"]["S"] for p in pages for i in p["Items"]]
        for page in pages:
            sizes = [size_of(by_key[i["pk"]["S"]]) for i in page["Items"]]
            if "LastEvaluatedKey" in page:
                assert sum(sizes) >= MB and sum(sizes) - sizes[-1] < MB
            else:
                assert sum(sizes) < MB
    assert sorted(seen) == sorted(by_key)


def test_index_scan_pages_end_at_one_megabyte_of_item_size(ddb, small_items):
    name, _, items = small_items
    by_key = {i["sk"]["N"]: i for i in items}
    pages = pages_of(ddb.scan, TableName=name, IndexName="by_g")
    check_scan_pages(pages, by_key, lambda i: i["sk"]["N"])


def test_partiql_select_pages_end_at_one_megabyte_of_item_size(ddb, small_items):
    name, _, items = small_items
    pages, token = [], None
    while True:
        extra = {"NextToken": token} if token else {}
        page = ddb.execute_statement(Statement=f'SELECT * FROM "{name}" WHERE pk = \'p\'', **extra)
        pages.append(len(page["Items"]))
        token = page.get("NextToken")
        if token is None:
            break
    if len(pages) > 1 and pages[-1] == 0:
        pages.pop()
    assert pages == expected_pages([size_of(i) for i in items])


def test_binary_items_straddling_the_line(ddb, range_table):
    # 260,000 bytes each, 346,668 in base64: four are under 1 MB, the fifth crosses it.
    blob = bytes(range(256)) * 1015 + b"\x07" * 160
    for i in range(12):
        ddb.put_item(TableName=range_table, Item={"pk": {"S": "b"}, "sk": {"S": f"{i:02d}"}, "v": {"B": blob}})
    for forward in (True, False):
        pages = pages_of(ddb.query, TableName=range_table, KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {"S": "b"}}, ScanIndexForward=forward)
        assert lengths(pages) == [5, 5, 2]
        keys = [i["sk"]["S"] for p in pages for i in p["Items"]]
        assert keys == sorted(keys, reverse=not forward) and len(set(keys)) == 12
    pages = pages_of(ddb.scan, TableName=range_table)
    assert lengths(pages) == [5, 5, 2]


def test_batch_get_holds_16_megabytes_of_item_size(ddb, hash_table):
    # 100 items of 250,000 bytes (333,336 in base64): 25 MB of DynamoDB size, 33 MB of JSON.
    blob = b"\x01\x02\x03\x04" * 62_500
    keys = [{"pk": {"S": f"k{i}"}} for i in range(100)]
    for key in keys:
        ddb.put_item(TableName=hash_table, Item=dict(key, v={"B": blob}))
    request = {hash_table: {"Keys": keys}}
    first = ddb.batch_get_item(RequestItems=request)
    got = first["Responses"][hash_table]
    size = sum(size_of(i) for i in got)
    assert size <= 16 * MB
    # More than 16 MB of JSON answered: the limit is on DynamoDB size.
    assert len(got) * len(base64.b64encode(blob)) > 16 * MB
    seen = [i["pk"]["S"] for i in got]
    left = first["UnprocessedKeys"]
    while left:
        page = ddb.batch_get_item(RequestItems=left)
        seen += [i["pk"]["S"] for i in page["Responses"].get(hash_table, [])]
        left = page["UnprocessedKeys"]
    assert sorted(seen) == sorted(k["pk"]["S"] for k in keys)


def test_partiql_pages_of_many_keys_end_at_one_megabyte_of_item_size(ddb, hash_table):
    # One GetItem per key of the IN list: 260,000-byte items, so the fifth crosses 1 MB.
    blob = b"\x05" * 260_000
    names = [f"k{i}" for i in range(12)]
    for name in names:
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": name}, "v": {"B": blob}})
    statement = f'SELECT * FROM "{hash_table}" WHERE pk IN [{", ".join(repr(n) for n in names)}]'
    pages, seen, token = [], [], None
    while True:
        page = ddb.execute_statement(Statement=statement, **({"NextToken": token} if token else {}))
        pages.append(len(page["Items"]))
        seen += [i["pk"]["S"] for i in page["Items"]]
        token = page.get("NextToken")
        if token is None:
            break
    assert pages == [5, 5, 2]
    assert sorted(seen) == sorted(names)
