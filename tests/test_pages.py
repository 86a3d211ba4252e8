"""Unit tests of pages.read_page against a storage stand-in: DynamoDB's cut for any mix of
item shapes, budget, Limit and direction, and no decoding while the JSON stays under."""

import asyncio
import random

import orjson

from shardserver.shard import pages, values
from test_partition_cache import reference_read


class ListStorage:
    """storage.scan's contract over a sorted list of (key, JSON) pairs."""

    def __init__(self, pairs):
        self.pairs = sorted(pairs)
        self.reads = 0

    async def scan(self, table_id, start, end, *, start_exclusive=False, reverse=False,
                   limit=pages.UNBOUNDED, max_bytes=pages.UNBOUNDED, partition=None):
        self.reads += 1
        return reference_read(self.pairs, start, start_exclusive, end, reverse, limit, max_bytes)


def random_item(rng, n):
    shape = rng.choice(["numbers", "text", "bools", "nested"])
    item = {"k": {"N": str(n)}}
    if shape == "numbers":
        item.update({f"n{a}": {"N": str(rng.randint(0, 99))} for a in range(rng.randint(1, 30))})
    elif shape == "text":
        item["t"] = {"S": "é" * rng.randint(0, 3000)}
    elif shape == "bools":
        item["l"] = {"L": [{"BOOL": True}] * rng.randint(0, 50)}
    else:
        item["m"] = {"M": {"a": {"M": {}}, "b": {"L": []}, "c": {"B": "AAAA" * rng.randint(0, 500)}}}
    return item


def expected(items, budget, limit, reverse):
    ordered = items[::-1] if reverse else items
    out, total = [], 0
    for item in ordered:
        out.append(item)
        total += values.item_size(item)
        if len(out) >= limit or total >= budget:
            break
    return out, total >= budget


def test_read_page_cuts_where_dynamodb_does():
    rng = random.Random(11)
    for case in range(200):
        items = [random_item(rng, n) for n in range(rng.randint(0, 120))]
        storage = ListStorage([(n.to_bytes(4, "big"), orjson.dumps(i)) for n, i in enumerate(items)])
        budget = rng.choice([1, 500, 5_000, 20_000, 60_000])
        limit = rng.choice([1, 7, 50, pages.UNBOUNDED])
        reverse = rng.random() < 0.5
        page = asyncio.run(pages.read_page(storage, "t", None, None, reverse=reverse, limit=limit, budget=budget))
        want, full = expected(items, budget, limit, reverse)
        assert [orjson.loads(raw) for _, raw in page.pairs] == want, case
        if not full:
            assert not page.full, case
        elif len(want) < limit:
            assert page.full, case     # at Limit as well, the caller ends the page either way
        assert page.size() == sum(values.item_size(i) for i in want)
        if page.exact:
            assert page.used == page.size()
        else:
            assert page.used == sum(len(raw) for _, raw in page.pairs) >= page.size()


def test_no_item_is_decoded_while_the_json_is_under_the_budget(monkeypatch):
    items = [{"k": {"N": str(n)}, "v": {"S": "x" * 100}} for n in range(50)]
    storage = ListStorage([(n.to_bytes(4, "big"), orjson.dumps(i)) for n, i in enumerate(items)])
    monkeypatch.setattr(pages, "item_size", lambda item: (_ for _ in ()).throw(AssertionError("decoded")))
    page = asyncio.run(pages.read_page(storage, "t", None, None, budget=1 << 20))
    assert len(page.pairs) == 50 and not page.exact and not page.full and storage.reads == 1


def test_a_budget_known_only_as_a_lower_bound_is_reported_not_cut():
    items = [{"k": {"N": str(n)}, "v": {"S": "x" * 100}} for n in range(50)]
    storage = ListStorage([(n.to_bytes(4, "big"), orjson.dumps(i)) for n, i in enumerate(items)])
    page = asyncio.run(pages.read_page(storage, "t", None, None, budget=1000, budget_known=False))
    assert page.full and not page.exact
    sized = asyncio.run(pages.read_page(storage, "t", None, None, budget=1000, sized=True))
    assert sized.full and sized.exact and sized.used >= 1000
    assert sized.used - values.item_size(orjson.loads(sized.pairs[-1][1])) < 1000


def test_reading_on_to_the_cut_takes_few_reads_for_like_items():
    # JSON ~3 times the size: the first read ends a third of the way, the next one at the cut.
    items = [{"k": {"N": str(n)}, **{f"a{a}": {"N": str(a)} for a in range(20)}} for n in range(3000)]
    storage = ListStorage([(n.to_bytes(4, "big"), orjson.dumps(i)) for n, i in enumerate(items)])
    for reverse in (False, True):
        storage.reads = 0
        page = asyncio.run(pages.read_page(storage, "t", None, None, reverse=reverse, budget=50_000))
        want, full = expected(items, 50_000, pages.UNBOUNDED, reverse)
        assert [orjson.loads(raw) for _, raw in page.pairs] == want and page.full and full
        assert storage.reads <= 3
