"""UpdateExpression binding and application (SET, REMOVE, ADD, DELETE).

Owns DynamoDB's update semantics: every right-hand side is read from the
item as it was before the update; list indexes refer to the old positions
(REMOVE shifts the survivors afterwards, SET past the end appends in index
order); ADD creates missing numbers and sets; DELETE that empties a set
removes the attribute; paths may not overlap or conflict, may not touch a
key attribute, and must run through existing maps/lists.  Application
never mutates the input item: it shallow-copies the item and deep-copies
only the top-level attributes a nested path writes into.
"""

from __future__ import annotations

import re

from shardserver.errors import ValidationException
from shardserver.shard.expressions import ast
from shardserver.shard.expressions.compare import (
    SET_TYPES, add_numbers, is_small_integer, kind_of, set_difference, set_union)
from shardserver.shard.expressions.conditions import check_function, operand_type_error, path_getter
from shardserver.shard.expressions.parser import invalid
from shardserver.shard.expressions.paths import check_paths
from shardserver.shard.expressions.projection import build_tree, project_tree
from shardserver.shard.values import MAX_ITEM_SIZE, item_size, value_size

KIND = "UpdateExpression"
_SET_FUNCTIONS = frozenset(("if_not_exists", "list_append"))

MISSING_ATTRIBUTE = "The provided expression refers to an attribute that does not exist in the item"
WRONG_DATA_TYPE = "An operand in the update expression has an incorrect data type"
INVALID_PATH = "The document path provided in the update expression is invalid for update"
ITEM_TOO_LARGE = "Item size to update has exceeded the maximum allowed size"

# DynamoDB names the literal's type in words for ADD and DELETE errors.
_TYPE_WORDS = {"S": "STRING", "N": "NUMBER", "B": "BINARY", "BOOL": "BOOLEAN", "NULL": "NULL",
               "L": "LIST", "M": "MAP", "SS": "STRING_SET", "NS": "NUMBER_SET", "BS": "BINARY_SET"}


class BoundUpdate:
    __slots__ = ("sets", "removes", "adds", "deletes", "paths", "touched", "top_level_sets", "counter", "_tree")

    def __init__(self, sets, removes, adds, deletes):
        self.sets = sets            # [(path, value_fn)]
        self.removes = removes      # [path]
        self.adds = adds            # [(path, av)]
        self.deletes = deletes      # [(path, av)]
        self.paths = [p for p, _ in sets] + list(removes) + [p for p, _ in adds] + [p for p, _ in deletes]
        self.touched = {p[0] for p in self.paths}
        # [(name, value_fn)] when the update only SETs top-level attributes (counters, flags), else None.
        self.top_level_sets = None if removes or adds or deletes or any(len(p) > 1 for p, _ in sets) \
            else [(p[0], fn) for p, fn in sets]
        self.counter = None         # (name, delta): see _counter_of
        self._tree = None

    @property
    def tree(self) -> dict:
        if self._tree is None:
            self._tree = build_tree(self.paths)
        return self._tree


# ------------------------------------------------------------ binding

def _bind_value(node, ctx, in_list_append: bool = False):
    """(fn(item) -> AttributeValue, literal or None) for a SET operand."""
    cls = node.__class__
    if cls is ast.ValueRef:
        av = ctx.value(node.name, KIND)
        return (lambda item: av), av
    if cls is ast.Path:
        get = path_getter(ctx.resolve_path(node.elements, KIND))

        def read(item):
            value = get(item)
            if value is None:
                raise ValidationException(MISSING_ATTRIBUTE)
            return value
        return read, None
    if cls is ast.Arith:
        return _bind_arith(node, ctx), None
    check_function(KIND, node, _SET_FUNCTIONS)
    # Arguments are resolved before the function's own checks, as DynamoDB
    # reports an undefined :value before a misplaced one.
    if node.name == "if_not_exists":
        fallback, default = _bind_value(node.args[1], ctx, in_list_append)
        if node.args[0].__class__ is not ast.Path:
            _bind_value(node.args[0], ctx, in_list_append)
            raise invalid(KIND, "Operator or function requires a document path; operator or function: if_not_exists")
        path = ctx.resolve_path(node.args[0].elements, KIND)
        if default is not None and len(path) == 1:
            # The counter idiom, if_not_exists(a, :zero): one call, no getters.
            name = path[0]

            def if_not_exists(item):
                value = item.get(name)
                return value if value is not None else default
            return if_not_exists, None
        get = path_getter(path)

        def if_not_exists(item):
            value = get(item)
            return value if value is not None else fallback(item)
        return if_not_exists, None
    if in_list_append:
        raise invalid(KIND, "The function is not allowed to be used this way in an expression; function: list_append")
    (first, c1), (second, c2) = (_bind_value(a, ctx, True) for a in node.args)
    for literal in (c1, c2):
        if literal is not None and kind_of(literal) != "L":
            raise operand_type_error(KIND, "list_append", literal)

    def list_append(item):
        a, b = first(item), second(item)
        if kind_of(a) != "L" or kind_of(b) != "L":
            raise ValidationException(WRONG_DATA_TYPE)
        return {"L": a["L"] + b["L"]}
    return list_append, None


def _bind_arith(node: ast.Arith, ctx):
    (left, c1), (right, c2) = _bind_value(node.left, ctx), _bind_value(node.right, ctx)
    for literal in (c1, c2):
        if literal is not None and kind_of(literal) != "N":
            raise operand_type_error(KIND, node.op, literal)
    subtract = node.op == "-"
    if c2 is not None:
        # a + :literal (the counter idiom): the literal's number is known now.
        y = c2["N"]

        def arith_literal(item):
            x = left(item).get("N")
            if x is None:
                raise ValidationException(WRONG_DATA_TYPE)
            return {"N": add_numbers(x, y, subtract)}
        return arith_literal

    def arith(item):
        a, b = left(item), right(item)
        x, y = a.get("N"), b.get("N")
        if x is None or y is None:
            raise ValidationException(WRONG_DATA_TYPE)
        return {"N": add_numbers(x, y, subtract)}
    return arith


def bind_update(upd: ast.UpdateExpr, ctx) -> BoundUpdate:
    sets = []
    for path, value in upd.sets:
        resolved = ctx.resolve_path(path.elements, KIND)
        fn, _ = _bind_value(value, ctx)
        sets.append((resolved, fn))
    removes = [ctx.resolve_path(p.elements, KIND) for p in upd.removes]
    adds = []
    for path, ref in upd.adds:
        resolved = ctx.resolve_path(path.elements, KIND)
        av = ctx.value(ref.name, KIND)
        kind = kind_of(av)
        if kind != "N" and kind not in SET_TYPES:
            raise invalid(KIND, "Incorrect operand type for operator or function; "
                                f"operator: ADD, operand type: {_TYPE_WORDS[kind]}")
        adds.append((resolved, av))
    deletes = []
    for path, ref in upd.deletes:
        resolved = ctx.resolve_path(path.elements, KIND)
        av = ctx.value(ref.name, KIND)
        kind = kind_of(av)
        if kind not in SET_TYPES:
            raise invalid(KIND, "Incorrect operand type for operator or function; "
                                f"operator: DELETE, operand type: {_TYPE_WORDS[kind]}")
        deletes.append((resolved, av))
    bound = BoundUpdate(sets, removes, adds, deletes)
    check_paths(bound.paths, KIND)
    bound.counter = _counter_of(upd, bound, ctx)
    return bound


# Attribute names JSON writes as themselves between quotes, none of whose
# characters may follow a string's closing quote.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-]+\Z")


def _counter_of(upd: ast.UpdateExpr, bound: BoundUpdate, ctx):
    """(name, delta) when the update is a counter idiom alone, ``ADD a :n``,
    ``SET a = a + :n`` or ``SET a = if_not_exists(a, :v) + :n`` (or -) on a top-level
    attribute with :n a small integer and a plain name (_PLAIN_NAME): on an item whose
    ``a`` is a small integer, the update sets it to a + delta and does nothing else, so
    a caller may apply it to the item's JSON without decoding it."""
    if len(bound.adds) == 1 and not (bound.sets or bound.removes or bound.deletes):
        (path, av), = bound.adds
        number = av.get("N")
        if len(path) == 1 and _PLAIN_NAME.match(path[0]) and number is not None and len(number) < 18 \
                and is_small_integer(number):
            return path[0], int(number)
        return None
    if len(upd.sets) != 1 or bound.top_level_sets is None:
        return None
    (name, _), = bound.top_level_sets
    if not _PLAIN_NAME.match(name):
        return None
    value = upd.sets[0][1]
    if value.__class__ is not ast.Arith or value.right.__class__ is not ast.ValueRef:
        return None
    read = value.left
    if read.__class__ is ast.Call and read.name == "if_not_exists":
        read = read.args[0]         # binding checked it is (path, operand)
    if read.__class__ is not ast.Path or ctx.resolve_path(read.elements, KIND) != (name,):
        return None
    number = ctx.values[value.right.name]["N"]      # binding checked it is a number
    if len(number) >= 18 or not is_small_integer(number):
        return None
    return name, -int(number) if value.op == "-" else int(number)


# ------------------------------------------------------------ application

def _add(current, av: dict) -> dict:
    if current is None:
        return av
    kind = kind_of(av)
    if kind_of(current) != kind:
        raise ValidationException(WRONG_DATA_TYPE)
    if kind == "N":
        return {"N": add_numbers(current["N"], av["N"])}
    return {kind: set_union(kind, current[kind], av[kind])}


def _delete(current: dict, av: dict):
    """The set left after DELETE, or None when nothing is left."""
    kind = kind_of(av)
    if kind_of(current) != kind:
        raise ValidationException(WRONG_DATA_TYPE)
    rest = set_difference(kind, current[kind], av[kind])
    return {kind: rest} if rest else None


def _copy(av: dict) -> dict:
    # Scalars and sets are never modified in place, so only containers are copied.
    (kind, value), = av.items()
    if kind == "M":
        return {"M": {k: _copy(v) for k, v in value.items()}}
    if kind == "L":
        return {"L": [_copy(v) for v in value]}
    return av


def _apply_nested(new: dict, nested: list, item_missing: bool) -> None:
    copied = set()
    targets = []
    # Resolve every parent container before changing anything: list indexes
    # name positions in the old item, and REMOVE must not shift them early.
    for op, path, value in nested:
        top = path[0]
        if top not in copied:
            current = new.get(top)
            if current is None:
                if op == "REMOVE" and item_missing:
                    continue            # DynamoDB ignores REMOVE a.b on an absent item
                raise ValidationException(INVALID_PATH)
            new[top] = _copy(current)
            copied.add(top)
        parent = new[top]
        for element in path[1:-1]:
            if element.__class__ is int:
                inner = parent.get("L")
                if inner is None or element >= len(inner):
                    raise ValidationException(INVALID_PATH)
                parent = inner[element]
            else:
                inner = parent.get("M")
                child = None if inner is None else inner.get(element)
                if child is None:
                    raise ValidationException(INVALID_PATH)
                parent = child
        last = path[-1]
        container = parent.get("L") if last.__class__ is int else parent.get("M")
        if container is None:
            raise ValidationException(INVALID_PATH)
        targets.append((op, container, last, value))

    appends: dict = {}
    removals: dict = {}
    for op, container, last, value in targets:
        if last.__class__ is int:
            present = last < len(container)
            if op == "SET" or (op == "ADD" and not present):
                if present:
                    container[last] = value
                else:
                    appends.setdefault(id(container), (container, []))[1].append((last, value))
            elif op == "ADD":
                container[last] = _add(container[last], value)
            elif present:
                rest = None if op == "REMOVE" else _delete(container[last], value)
                if rest is None:
                    removals.setdefault(id(container), (container, set()))[1].add(last)
                else:
                    container[last] = rest
        elif op == "SET":
            container[last] = value
        elif op == "REMOVE":
            container.pop(last, None)
        elif op == "ADD":
            container[last] = _add(container.get(last), value)
        else:
            current = container.get(last)
            if current is not None:
                rest = _delete(current, value)
                if rest is None:
                    del container[last]
                else:
                    container[last] = rest
    for container, entries in appends.values():
        entries.sort(key=lambda entry: entry[0])
        container.extend(value for _, value in entries)
    for container, indexes in removals.values():
        for index in sorted(indexes, reverse=True):
            del container[index]


def check_key_updates(bound: BoundUpdate, key_names) -> None:
    """DynamoDB's error for an update of a key attribute (or of a path inside one)."""
    for path in bound.paths:
        if path[0] in key_names:
            raise ValidationException("One or more parameter values were invalid: "
                                      f"Cannot update attribute {path[0]}. This attribute is part of the key")


def _check_size(new: dict, touched: set, old_size_bound: int | None) -> None:
    if old_size_bound is not None:
        # The untouched attributes are no larger than the whole old item, so
        # when this bound fits there is no need to walk the untouched ones.
        bound = old_size_bound
        for name in touched:
            value = new.get(name)
            if value is not None:
                bound += len(name.encode("utf-8", "surrogatepass")) + value_size(value)
        if bound <= MAX_ITEM_SIZE:
            return
    if item_size(new) > MAX_ITEM_SIZE:
        raise ValidationException(ITEM_TOO_LARGE)


def run_update(bound: BoundUpdate, item: dict | None, key_names, old_size_bound: int | None = None,
               check_size: bool = True) -> dict:
    check_key_updates(bound, key_names)
    old = item if item is not None else {}
    new = dict(old)
    if bound.top_level_sets is not None:
        for name, fn in bound.top_level_sets:
            new[name] = fn(old)
        if check_size:
            _check_size(new, bound.touched, old_size_bound)
        return new
    nested = []
    # Right-hand sides read the old item, never the new one, so each value
    # can be stored as soon as it is computed.
    for path, fn in bound.sets:
        if len(path) == 1:
            new[path[0]] = fn(old)
        else:
            nested.append(("SET", path, fn(old)))
    for path in bound.removes:
        if len(path) == 1:
            new.pop(path[0], None)
        else:
            nested.append(("REMOVE", path, None))
    for path, av in bound.adds:
        if len(path) == 1:
            new[path[0]] = _add(old.get(path[0]), av)
        else:
            nested.append(("ADD", path, av))
    for path, av in bound.deletes:
        if len(path) == 1:
            current = old.get(path[0])
            if current is not None:
                rest = _delete(current, av)
                if rest is None:
                    del new[path[0]]
                else:
                    new[path[0]] = rest
        else:
            nested.append(("DELETE", path, av))
    if nested:
        _apply_nested(new, nested, item is None)
    if check_size:
        _check_size(new, bound.touched, old_size_bound)
    return new


def apply_update(upd, item: dict | None, ctx, key_names, old_size_bound: int | None = None,
                 check_size: bool = True) -> tuple[dict, set]:
    """(new item, top-level attribute names the update touched).

    upd is a parsed UpdateExpr (bound against ctx once per request) or a
    BoundUpdate.  item None means the item does not exist (upsert).
    old_size_bound, when given, is an upper bound of the old item's size
    (its stored JSON length is one); it lets the 400 KB check skip the
    attributes the update did not touch.  check_size=False leaves the 400 KB
    check to the caller, which must then call check_updated_size."""
    bound = upd if upd.__class__ is BoundUpdate else ctx.bound(upd, bind_update)
    return run_update(bound, item, key_names, old_size_bound, check_size), bound.touched


def check_updated_size(new: dict, json_length: int) -> None:
    """The 400 KB limit on an updated item whose JSON encoding is json_length
    bytes: that length is never less than the item's DynamoDB size, so only a
    long encoding needs the exact count (for a caller that encodes the item anyway)."""
    if json_length > MAX_ITEM_SIZE and item_size(new) > MAX_ITEM_SIZE:
        raise ValidationException(ITEM_TOO_LARGE)


def updated_values(old: dict | None, new: dict, upd, ctx, which: str) -> dict:
    """ReturnValues UPDATED_OLD / UPDATED_NEW: the updated paths only, in the
    shape of the item (a nested SET a.b returns {"a": {"M": {"b": ...}}})."""
    bound = upd if upd.__class__ is BoundUpdate else ctx.bound(upd, bind_update)
    source = old if which == "UPDATED_OLD" else new
    if source is None:
        return {}
    return project_tree(source, bound.tree)
