"""DynamoDB's expression language and item-level semantics (pure Python, no I/O).

Owns parsing (with an LRU parse cache keyed by expression text), binding of
a parse tree to one request's ExpressionAttributeNames/Values, and the
evaluation of ConditionExpression / FilterExpression, UpdateExpression,
ProjectionExpression and KeyConditionExpression, plus the legacy
parameters (Expected, AttributeUpdates, AttributesToGet, QueryFilter,
ScanFilter, KeyConditions, ConditionalOperator).  It raises
shardserver.errors.ValidationException with DynamoDB's wording and never
touches storage, shards or the wire format.

Typical handler flow (UpdateItem)::

    check_legacy_mix(request, "UpdateItem")
    ctx = ExpressionContext(request.get("ExpressionAttributeNames"),
                            request.get("ExpressionAttributeValues"))
    upd = ctx.bind_update(parse_update(request["UpdateExpression"]))
    cond = ctx.bind_condition(parse_condition(text)) if text else None
    ctx.check_all_used()                   # everything validated before any read
    old = <read item>
    if cond and not evaluate_condition(cond, old):
        raise ConditionalCheckFailedException(...)
    new, touched = apply_update(upd, old, ctx, key_names)
    updated_values(old, new, upd, ctx, "UPDATED_NEW")

Public API
    ExpressionContext(names, values)          .check_all_used(), .bind_condition(),
                                              .bind_update(), .bind_projection()
    parse_condition(text, kind="ConditionExpression") -> Condition   (kind may be
                                              "FilterExpression")
    parse_update(text) -> UpdateExpr
    parse_projection(text) -> ProjectionExpr (tuple of Path)
    parse_key_condition(text) -> Condition
    key_condition_parts(cond, ctx, hash_name, range_name, key_types=None)
        -> (hash_value_av, range_op | None, range_operand_avs)
    key_conditions_parts(key_conditions, hash_name, range_name, key_types=None)  (legacy)
    evaluate_condition(cond, item | None, ctx=None) -> bool
    apply_update(upd, item | None, ctx, key_names) -> (new_item, touched_top_level_names)
    check_key_updates(bound_update, key_names) -> None   (the key-attribute check alone, before any read)
    check_updated_size(new_item, json_length) -> None   (the 400 KB check, for apply_update(check_size=False))
    updated_values(old, new, upd, ctx, "UPDATED_OLD" | "UPDATED_NEW") -> dict
    project(item, paths, ctx=None) -> dict
    expected_to_condition(expected, conditional_operator=None) -> BoundCondition
    filter_from_legacy(filter, conditional_operator=None, member="queryFilter" | "scanFilter") -> BoundCondition
    apply_attribute_updates(attribute_updates, item | None, key_names) -> (new_item, touched)
    attributes_to_get_projection(names) -> BoundProjection
    check_legacy_mix(request, op="") -> None
"""

from __future__ import annotations

from shardserver.shard.expressions.ast import Condition, Path, ProjectionExpr, UpdateExpr
from shardserver.shard.expressions.conditions import BoundCondition, bind_condition, evaluate_condition
from shardserver.shard.expressions.context import ExpressionContext as _BaseContext
from shardserver.shard.expressions.keycondition import check_parts as check_key_condition_parts
from shardserver.shard.expressions.keycondition import key_condition_parts, key_conditions_parts
from shardserver.shard.expressions.legacy import (
    apply_attribute_updates, attributes_to_get_projection, check_legacy_mix, expected_to_condition,
    filter_from_legacy)
from shardserver.shard.expressions.parser import (
    cache_info, parse_condition, parse_key_condition, parse_projection, parse_update)
from shardserver.shard.expressions.projection import BoundProjection, bind_projection, project
from shardserver.shard.expressions.reserved import RESERVED_WORDS, is_reserved
from shardserver.shard.expressions.tokenizer import placeholders
from shardserver.shard.expressions.update import (
    BoundUpdate, apply_update, bind_update, check_key_updates, check_updated_size, updated_values)


class ExpressionContext(_BaseContext):
    """One request's ExpressionAttributeNames/Values; tracks which were used.

    The bind_* methods resolve placeholders and run every check that does not
    need the item, so a handler can validate the whole request (then call
    check_all_used()) before it reads anything."""

    __slots__ = ()

    def bind_condition(self, cond: Condition) -> BoundCondition:
        return self.bound(cond, bind_condition)

    def bind_update(self, upd: UpdateExpr) -> BoundUpdate:
        return self.bound(upd, bind_update)

    def bind_projection(self, paths: ProjectionExpr) -> BoundProjection:
        return self.bound(paths, bind_projection)


__all__ = [
    "BoundCondition", "BoundProjection", "BoundUpdate", "Condition", "ExpressionContext", "Path",
    "ProjectionExpr", "RESERVED_WORDS", "UpdateExpr", "apply_attribute_updates", "apply_update",
    "attributes_to_get_projection", "cache_info", "check_key_updates", "check_legacy_mix", "check_updated_size",
    "evaluate_condition",
    "check_key_condition_parts", "expected_to_condition", "filter_from_legacy", "is_reserved", "key_condition_parts",
    "key_conditions_parts", "parse_condition", "parse_key_condition", "parse_projection", "parse_update",
    "placeholders", "project", "updated_values",
]
