"""A request's expressions, prepared once: key condition, filter, projection, condition, update.

``prepare`` reads every expression parameter of one request (and the
legacy ones), checks that every name and value is used (before anything is
checked against the table, as DynamoDB does), binds them to the request's
ExpressionAttributeNames/Values, and hands back small callables
the operations apply to items.  Everything is validated before any item
is read, so a bad request never touches data.
"""

from __future__ import annotations

from collections import OrderedDict

import orjson

from shardserver.errors import ConditionalCheckFailedException, ValidationException
from shardserver.shard import expressions as ex
from shardserver.shard.values import composite_key, sort_components, validate_value

_RANGE_OPERATORS = {"=": "EQ", "<": "LT", "<=": "LE", ">": "GT", ">=": "GE", "BETWEEN": "BETWEEN",
                    "begins_with": "BEGINS_WITH", "EQ": "EQ", "LT": "LT", "LE": "LE", "GT": "GT", "GE": "GE",
                    "BEGINS_WITH": "BEGINS_WITH"}


class Prepared:
    """The bound expressions of one request; absent ones are None."""

    __slots__ = ("key_condition", "sort_prefix", "filter", "projection", "condition", "update", "legacy_updates",
                 "return_old_on_failure")

    def __init__(self):
        self.key_condition = None     # (partition key AV, range op or None, [range operand AVs])
        self.sort_prefix = b""        # a multi-attribute index key: its sort attributes fixed by equality
        self.filter = None            # item -> bool
        self.projection = None        # item -> projected item
        self.condition = None         # old item or None -> None, raises ConditionalCheckFailedException
        self.update = None            # BoundUpdate
        self.legacy_updates = None    # AttributeUpdates map
        self.return_old_on_failure = False

    def check_condition(self, old: dict | None) -> None:
        if self.condition is not None:
            self.condition(old)

    def only_removes(self) -> bool:
        """True when the update only removes attributes or set elements: DynamoDB then
        leaves an absent item absent instead of creating it from its key (an update
        with no actions at all does create it)."""
        if self.update is not None:
            return not self.update.sets and not self.update.adds
        if self.legacy_updates:
            return all(spec.get("Action", "PUT") == "DELETE" for spec in self.legacy_updates.values())
        return False


def _text(request: dict, name: str) -> str | None:
    value = request.get(name)
    if value is not None and not isinstance(value, str):
        raise ValidationException(f"1 validation error detected: Value at '{name[0].lower() + name[1:]}' "
                                  "failed to satisfy constraint: Member must be a string")
    return value


def _condition_function(bound, return_old: bool):
    test = bound.test

    def check(old):
        if not test(old if old is not None else {}):
            raise ConditionalCheckFailedException("The conditional request failed",
                                                  item=old if return_old and old is not None else None)
    return check


# Every request parameter that prepare() reads; a request with none of them
# (the common GetItem/PutItem) shares one empty Prepared and costs nothing.
_EXPRESSION_PARAMETERS = frozenset((
    "KeyConditionExpression", "KeyConditions", "FilterExpression", "QueryFilter", "ScanFilter",
    "ProjectionExpression", "AttributesToGet", "ConditionExpression", "Expected", "ConditionalOperator",
    "UpdateExpression", "AttributeUpdates", "ExpressionAttributeNames", "ExpressionAttributeValues",
    "ReturnValuesOnConditionCheckFailure"))
_NOTHING = Prepared()

# Bound-request cache for the single-item operations (and BatchGetItem's
# per-table projection): an application sends the same expressions with the
# same placeholders again and again (counters, conditional puts, projections).
# One cache, keyed by the operation and the exact text of every expression
# parameter (see _expression_text), serves both steps: an entry means
# check_request_expressions passed for that text, and maps each key schema
# (hash key, range key) the text was prepared for to its whole validated,
# bound Prepared.  Only successful, small requests are cached; a Prepared is
# never mutated after prepare() returns it, so sharing it between requests is
# safe.
_CACHED_OPERATIONS = frozenset(("GetItem", "BatchGetItem", "PutItem", "DeleteItem", "UpdateItem"))
_CACHE_SIZE = 512
_CACHE_MAX_KEY_BYTES = 2048
_KEY_SCHEMAS_PER_ENTRY = 8      # tables sharing one expression text, kept per entry
_checked: OrderedDict = OrderedDict()


def prepare(request: dict, schema, op: str, check_unused: bool = True) -> Prepared:
    if op == "Query":
        return _prepare_query(request, schema, check_unused)
    if _EXPRESSION_PARAMETERS.isdisjoint(request):
        return _NOTHING
    entry = request.pop(_CHECKED_TEXT, None)
    if op not in _CACHED_OPERATIONS or not check_unused:
        return _prepare(request, schema, op, check_unused)
    if entry is None:
        text = _expression_text(request, op)
        if text is None:            # not JSON-shaped: let validation report it
            return _prepare(request, schema, op, check_unused)
        entry = _checked.get(text)
        if entry is None:
            prepared = _prepare(request, schema, op, check_unused)
            _remember(text)[(schema.hash_key, schema.range_key)] = prepared
            return prepared
        _checked.move_to_end(text)
    key_schema = (schema.hash_key, schema.range_key)    # without key_names' property call
    prepared = entry.get(key_schema)
    if prepared is None:
        prepared = _prepare(request, schema, op, check_unused, request.pop(_CHECKED_CONTEXT, None))
        if len(entry) >= _KEY_SCHEMAS_PER_ENTRY:
            entry.clear()
        entry[key_schema] = prepared
    return prepared


# Query shape cache.  A Query's key condition text and placeholder names repeat
# from request to request while its values (the partition key) change, so the
# cache keeps, per key condition text, which placeholder holds the partition
# key and which hold the sort key operands; a hit re-runs every check that
# depends on the values (validate_value, the schema type check, begins_with
# on N, BETWEEN order) through the same functions the full path uses, and any
# failure falls back to the full path so the error is exactly its error.
# No filter (a bound filter holds the values).  On an index the key holds the
# index's key names and the table's attribute definitions too: deleting and
# creating an index of the same name changes them under one table id.  Not on
# an index of a multi-attribute key.
_QUERY_CACHEABLE = frozenset(("KeyConditionExpression", "ExpressionAttributeNames",
                              "ExpressionAttributeValues", "ProjectionExpression"))
_QUERY_UNCACHEABLE = _EXPRESSION_PARAMETERS - _QUERY_CACHEABLE
_query_cache: OrderedDict = OrderedDict()


def _prepare_query(request: dict, schema, check_unused: bool) -> Prepared:
    values = request.get("ExpressionAttributeValues")
    if not check_unused or type(values) is not dict or not _QUERY_UNCACHEABLE.isdisjoint(request):
        return _prepare(request, schema, "Query", check_unused)
    index = request.get("IndexName")
    if index is None:
        hash_name, range_name, index_key = schema.hash_key, schema.range_key, None
    else:
        try:
            hashes, ranges = schema.index_key_names(index)
        except ValidationException:         # raised by the full path, in its order
            return _prepare(request, schema, "Query", check_unused)
        if len(hashes) > 1 or len(ranges) > 1:
            return _prepare(request, schema, "Query", check_unused)
        hash_name, range_name = hashes[0], ranges[0] if ranges else None
        index_key = (index, hash_name, range_name, schema.attribute_definitions)
    try:
        key = orjson.dumps((schema.table_id, request.get("KeyConditionExpression"),
                            request.get("ExpressionAttributeNames"), request.get("ProjectionExpression"),
                            list(values), index_key))
    except TypeError:
        return _prepare(request, schema, "Query", check_unused)
    shape = _query_cache.get(key)
    if shape is not None:
        prepared = _bind_query_shape(shape, values)
        if prepared is not None:
            return prepared
        return _prepare(request, schema, "Query", check_unused)
    prepared = _prepare(request, schema, "Query", check_unused)
    pk, range_op, operands = prepared.key_condition
    by_identity = {id(av): ref for ref, av in values.items()}
    refs = [by_identity.get(id(av)) for av in (pk, *operands)]
    if None not in refs and len(key) <= _CACHE_MAX_KEY_BYTES:
        key_types = {d["AttributeName"]: d["AttributeType"] for d in schema.attribute_definitions}
        _query_cache[key] = (range_op is None and key_types.get(hash_name) == "S",
                             hash_name, range_name, key_types, refs[0],
                             _OPERATOR_TEXT[range_op] if range_op else None, refs[1:], prepared.projection)
        if len(_query_cache) > _CACHE_SIZE:
            _query_cache.popitem(last=False)
    return prepared


_OPERATOR_TEXT = {"EQ": "=", "LT": "<", "LE": "<=", "GT": ">", "GE": ">=", "BETWEEN": "BETWEEN",
                  "BEGINS_WITH": "begins_with"}


def _bind_query_shape(shape, values: dict) -> Prepared | None:
    """The Prepared of a Query whose shape was cached, or None if any value check fails."""
    string_pk_only, hash_name, range_name, key_types, hash_ref, range_op, range_refs, projection = shape
    if string_pk_only:
        # The commonest Query: a string partition key alone, so its placeholder is the only
        # value (every value is used, by the key condition alone).  A non-empty {"S": str}
        # passes every check below; anything else takes them.
        pk = values[hash_ref]
        if pk.__class__ is dict and len(pk) == 1:
            value = pk.get("S")
            if value.__class__ is str and value:
                prepared = Prepared()
                prepared.key_condition = (pk, None, [])
                prepared.projection = projection
                return prepared
    try:
        for av in values.values():
            # A plain string, {"S": str}, needs no further check (as in values.validate_item).
            if av.__class__ is not dict or len(av) != 1 or av.get("S").__class__ is not str:
                validate_value(av)
        # (check_key_condition_parts takes the partition key alone in one test)
        parts = {hash_name: ("=", [values[hash_ref]])}
        if range_op is not None:
            parts[range_name] = (range_op, [values[r] for r in range_refs])
        pk, op, operands = ex.check_key_condition_parts(parts, hash_name, range_name, key_types)
    except ValidationException:
        return None
    prepared = Prepared()
    prepared.key_condition = (pk, _RANGE_OPERATORS[op] if op else None, list(operands or []))
    prepared.projection = projection
    return prepared


# The legacy condition map each operation's ConditionalOperator combines.
_CONDITION_MAPS = {"Query": "QueryFilter", "Scan": "ScanFilter",
                   "PutItem": "Expected", "DeleteItem": "Expected", "UpdateItem": "Expected"}


# Each operation's expression parameters, in the order _prepare reads them.
_OPERATION_EXPRESSIONS = {
    "GetItem": ("ProjectionExpression",), "BatchGetItem": ("ProjectionExpression",),
    "PutItem": ("ConditionExpression",), "DeleteItem": ("ConditionExpression",),
    "UpdateItem": ("ConditionExpression", "UpdateExpression"),
    "Query": ("KeyConditionExpression", "FilterExpression", "ProjectionExpression"),
    "Scan": ("FilterExpression", "ProjectionExpression"),
}
_PARSERS = {"KeyConditionExpression": ex.parse_key_condition,
            "FilterExpression": lambda text: ex.parse_condition(text, "FilterExpression"),
            "ProjectionExpression": ex.parse_projection, "ConditionExpression": ex.parse_condition,
            "UpdateExpression": ex.parse_update}


def check_request_expressions(request: dict, op: str, check_unused: bool = True) -> ex.ExpressionContext:
    """The checks DynamoDB makes of a request's expressions before it looks at
    the table or the key: legacy and expression parameters not mixed, the
    placeholder maps well formed, every expression's syntax, every
    placeholder an expression refers to defined, and every placeholder given
    referred to by some expression.  The request's ExpressionContext, for
    binding."""
    ex.check_legacy_mix(request, op)
    if (request.get("ConditionalOperator") is not None and op in _CONDITION_MAPS
            and not request.get(_CONDITION_MAPS[op])):
        # Checked before the key condition, as DynamoDB does; an empty map counts as none.
        raise ValidationException("ConditionalOperator cannot be used without Filter or Expected")
    ctx = ex.ExpressionContext(request.get("ExpressionAttributeNames"), request.get("ExpressionAttributeValues"))
    if check_unused and (ctx.names or ctx.values):
        referenced = set()
        for name in _OPERATION_EXPRESSIONS.get(op, _PARSERS):
            text = _text(request, name)
            if text is not None:
                _PARSERS[name](text)
                for ref in ex.placeholders(text):
                    if ref not in referenced:
                        # Raises DynamoDB's "not defined" error for a missing one.
                        ctx.name(ref, name) if ref[0] == "#" else ctx.value(ref, name)
                        referenced.add(ref)
        ctx.check_all_used(referenced)
    return ctx


# Request keys under which check_before_table leaves the request's entry of _checked,
# so that prepare() on the same shard finds it without encoding the expressions again,
# and, when it has just checked them, their ExpressionContext, so that they are not
# checked twice.
_CHECKED_TEXT = "\0expressions"
_CHECKED_CONTEXT = "\0context"


def _expression_text(request: dict, op: str, placeholders_only: bool = False) -> bytes | None:
    """The operation and its expression parameters present, in the request's order (another
    order is just another cache entry), as bytes; None if they are not JSON-shaped.
    placeholders_only: of ExpressionAttributeValues (a dict), only its placeholders."""
    # One flat list (operation, then name, value, name, value...): no tuple per parameter.
    present = [op]
    for parameter, value in request.items():
        if parameter in _EXPRESSION_PARAMETERS:
            present.append(parameter)
            present.append(list(value) if placeholders_only and parameter == "ExpressionAttributeValues"
                           else value)
    try:
        return orjson.dumps(present)
    except TypeError:
        return None


def _remember(text: bytes) -> dict:
    """A new entry of _checked for text (one not kept if text is too long to cache)."""
    entry = {}
    if len(text) <= _CACHE_MAX_KEY_BYTES:
        _checked[text] = entry
        if len(_checked) > _CACHE_SIZE:
            _checked.popitem(last=False)
    return entry


# Expression structures that passed check_request_expressions: the operation and
# every expression parameter, but of ExpressionAttributeValues only its
# placeholders.  Requests that differ only in their values (SET #name = :name,
# a filter on a changing value) have one structure, and of a known structure
# only the values are left to check, by ExpressionContext as
# check_request_expressions does: everything it checks before them passed, and
# everything after them depends on the texts and the placeholders alone.
_structures: OrderedDict = OrderedDict()


def _checked_context(request: dict, op: str) -> ex.ExpressionContext:
    """check_request_expressions(request, op), remembered by the request's structure."""
    values = request.get("ExpressionAttributeValues")
    structure = _expression_text(request, op, placeholders_only=True) if values.__class__ is dict else None
    if structure in _structures:
        _structures.move_to_end(structure)
        return ex.ExpressionContext(request.get("ExpressionAttributeNames"), values, names_checked=True)
    ctx = check_request_expressions(request, op)
    if structure is not None and len(structure) <= _CACHE_MAX_KEY_BYTES:
        _structures[structure] = None
        if len(_structures) > _CACHE_SIZE:
            _structures.popitem(last=False)
    return ctx


def check_before_table(request: dict, op: str) -> None:
    """check_request_expressions, for a request that has expression parameters."""
    if _EXPRESSION_PARAMETERS.isdisjoint(request):
        return
    text = _expression_text(request, op)
    if text is None:
        check_request_expressions(request, op)
        return
    entry = _checked.get(text)
    if entry is not None:
        _checked.move_to_end(text)
    else:
        ctx = _checked_context(request, op)
        entry = _remember(text)
        if op in _CACHED_OPERATIONS:
            request[_CHECKED_CONTEXT] = ctx
    if op in _CACHED_OPERATIONS:
        request[_CHECKED_TEXT] = entry


def _prepare(request: dict, schema, op: str, check_unused: bool,
             ctx: ex.ExpressionContext | None = None) -> Prepared:
    """The request's Prepared; ctx, if given, is what check_request_expressions returned for it."""
    if ctx is None:
        ctx = _checked_context(request, op) if check_unused else check_request_expressions(request, op, False)
    prepared = Prepared()
    key_types = {d["AttributeName"]: d["AttributeType"] for d in schema.attribute_definitions}

    if op == "Query":
        hash_name, range_name = schema.hash_key, schema.range_key
        key_names = (hash_name, range_name)
        index = request.get("IndexName")
        if index is not None:
            hashes, ranges = schema.index_key_names(index)
            key_names = hashes + ranges
            if len(hashes) > 1 or len(ranges) > 1:
                hash_name, range_name = hashes, ranges      # a multi-attribute key
            else:
                hash_name, range_name = hashes[0], ranges[0] if ranges else None
        text = _text(request, "KeyConditionExpression")
        if text is not None:
            parts = ex.key_condition_parts(ex.parse_key_condition(text), ctx, hash_name, range_name, key_types)
        elif request.get("KeyConditions") is not None:
            parts = ex.key_conditions_parts(request["KeyConditions"], hash_name, range_name, key_types)
        else:
            raise ValidationException("Either the KeyConditions or KeyConditionExpression parameter must be "
                                      "specified in the request.")
        if isinstance(hash_name, tuple):
            hash_values, fixed, range_op, operands = parts
            pk = hash_values[0] if len(hash_values) == 1 else composite_key(hash_values)
            prepared.sort_prefix = sort_components(fixed)
        else:
            pk, range_op, operands = parts
        prepared.key_condition = (pk, _RANGE_OPERATORS[range_op] if range_op else None, list(operands or []))

    if op in ("Query", "Scan"):
        text = _text(request, "FilterExpression")
        legacy = request.get("QueryFilter" if op == "Query" else "ScanFilter")
        bound = None
        if text is not None:
            parsed = ex.parse_condition(text, "FilterExpression")
            bound = ctx.bind_condition(parsed)
            if op == "Query":
                _reject_key_attributes_in_filter("Filter Expression", _top_level_names(parsed.root, ctx), key_names)
        elif legacy is not None:
            bound = ex.filter_from_legacy(legacy, request.get("ConditionalOperator"),
                                          "queryFilter" if op == "Query" else "scanFilter")
            if op == "Query":
                _reject_key_attributes_in_filter("QueryFilter", set(legacy), key_names)
        if bound is not None:
            test = bound.test
            prepared.filter = lambda item: test(item)

    text = _text(request, "ProjectionExpression")
    if text is not None:
        prepared.projection = ctx.bind_projection(ex.parse_projection(text)).apply
    elif request.get("AttributesToGet") is not None:
        prepared.projection = ex.attributes_to_get_projection(request["AttributesToGet"]).apply

    if op in ("PutItem", "DeleteItem", "UpdateItem"):
        return_old = request.get("ReturnValuesOnConditionCheckFailure", "NONE")
        if return_old not in ("NONE", "ALL_OLD"):
            raise ValidationException(
                f"1 validation error detected: Value '{return_old}' at 'returnValuesOnConditionCheckFailure' "
                "failed to satisfy constraint: Member must satisfy enum value set: [ALL_OLD, NONE]")
        text = _text(request, "ConditionExpression")
        if text is not None:
            prepared.condition = _condition_function(
                ctx.bind_condition(ex.parse_condition(text, "ConditionExpression")), return_old == "ALL_OLD")
        elif request.get("Expected") is not None:
            prepared.condition = _condition_function(
                ex.expected_to_condition(request["Expected"], request.get("ConditionalOperator")),
                return_old == "ALL_OLD")

    if op == "UpdateItem":
        text = _text(request, "UpdateExpression")
        key_names = set(schema.key_names)
        if text is not None:
            prepared.update = ctx.bind_update(ex.parse_update(text))
            # Rejected before the item is read, so a failing condition never hides it.
            ex.check_key_updates(prepared.update, key_names)
        elif request.get("AttributeUpdates") is not None:
            prepared.legacy_updates = request["AttributeUpdates"]
            # A dry run on an empty item runs every check that needs no item.
            ex.apply_attribute_updates(prepared.legacy_updates, None, key_names)

    return prepared


def _top_level_names(node, ctx) -> set:
    """The top-level attribute names a parsed condition refers to (placeholders resolved)."""
    names = set()
    stack = [node]
    while stack:
        node = stack.pop()
        if node.__class__ is ex.Path:
            first = node.elements[0]
            names.add(ctx.names.get(first, first) if first[0] == "#" else first)
        elif isinstance(node, tuple):
            stack.extend(node)
        elif hasattr(node, "__slots__"):
            stack.extend(getattr(node, slot) for slot in node.__slots__)
    return names


def _reject_key_attributes_in_filter(what: str, names: set, key_names: tuple) -> None:
    """Query filters may not name the queried key's attributes (DynamoDB's rule, hash key first)."""
    for key in key_names:
        if key is not None and key in names:
            raise ValidationException(f"{what} can only contain non-primary key attributes: "
                                      f"Primary key attribute: {key}")


# Convenience wrappers used by the single-item operations.

def projection_of(request: dict, schema):
    return prepare(request, schema, "GetItem").projection


def write_condition(request: dict, schema, op: str):
    return prepare(request, schema, op).condition
