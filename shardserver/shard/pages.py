"""One Query or Scan page read from storage, cut where DynamoDB cuts it.

DynamoDB ends a page once the items it read (before any filter) reach 1 MB of
their DynamoDB size (attribute names plus values, values.item_size); the item
that crosses the line is the last one.  Storage counts the items' stored
JSON, which is never shorter than their DynamoDB size (values.py checks that
claim type by type), so a read whose JSON stays under the budget cannot have
reached it either, and then no item is decoded.  Only a read whose JSON
passes the budget decodes its items, to find DynamoDB's cut, reading on past
the JSON cut as far as that.  It never writes.
"""

from __future__ import annotations

import orjson

from shardserver.shard.values import item_size

PAGE_BYTES = 1024 * 1024
UNBOUNDED = 1 << 62


class Page:
    """The (key, stored JSON) pairs of one read, and what they spent of the budget.

    `used` is their DynamoDB size when `exact`, else their JSON length (never
    less than the DynamoDB size); `full` says the budget was reached, so the
    page ends after the last pair."""

    __slots__ = ("pairs", "used", "exact", "full", "_sizes")

    def __init__(self, pairs: list, used: int, exact: bool, full: bool, sizes: list | None):
        self.pairs, self.used, self.exact, self.full, self._sizes = pairs, used, exact, full, sizes

    def size(self) -> int:
        """DynamoDB size of the items read (what read capacity is charged by)."""
        if self._sizes is None:
            self._sizes = sizes_of(self.pairs)
        return sum(self._sizes)


def sizes_of(pairs) -> list[int]:
    return [item_size(orjson.loads(raw)) for _, raw in pairs]


def json_length(pairs) -> int:
    return sum([len(raw) for _, raw in pairs])


async def read_page(storage, table_id: str, start: bytes | None, end: bytes | None, *,
                    start_exclusive: bool = False, reverse: bool = False, limit: int = UNBOUNDED,
                    budget: int = PAGE_BYTES, partition: bytes | None = None,
                    budget_known: bool = True, sized: bool = False) -> Page:
    """Items of [start, end) (storage.scan's bounds) up to `limit` or `budget` bytes of DynamoDB size.

    `budget_known=False` says the budget is only a lower bound of what is left
    (the page's earlier parts were measured by their JSON): a read whose JSON
    reaches it comes back full and not exact, and the caller must measure the
    page again with `sized=True`, which decodes every item read."""
    budget = max(budget, 1)
    pairs = await storage.scan(table_id, start, end, start_exclusive=start_exclusive, reverse=reverse,
                               limit=limit, max_bytes=budget, partition=partition)
    stored = json_length(pairs)
    if not sized and (stored < budget or len(pairs) >= limit):
        # Under the budget in JSON, so under it in DynamoDB size; or ended by Limit.
        return Page(pairs, stored, False, False, None)
    if not budget_known:
        return Page(pairs, stored, False, True, None)
    sizes = sizes_of(pairs)
    total = sum(sizes)
    more = stored >= budget      # the JSON cut stopped the read, not the end of the range
    while more and total < budget and len(pairs) < limit:
        # Read on from the last item, asking for the JSON the rest of the budget
        # likely takes at the ratio seen so far; a read past DynamoDB's cut is trimmed.
        wanted = max((budget - total) * stored // max(total, 1), 1)
        if reverse:
            after = await storage.scan(table_id, start, pairs[-1][0], start_exclusive=start_exclusive,
                                       reverse=True, limit=limit - len(pairs), max_bytes=wanted,
                                       partition=partition)
        else:
            after = await storage.scan(table_id, pairs[-1][0], end, start_exclusive=True,
                                       limit=limit - len(pairs), max_bytes=wanted, partition=partition)
        read = json_length(after)
        more = read >= wanted
        pairs += after
        stored += read
        added = sizes_of(after)
        sizes += added
        total += sum(added)
    if total >= budget:
        # DynamoDB's cut: the first item whose size takes the total to the budget.
        running = 0
        for count, size in enumerate(sizes, 1):
            running += size
            if running >= budget:
                break
        del pairs[count:], sizes[count:]
        return Page(pairs, running, True, True, sizes)
    return Page(pairs, total, True, False, sizes)
