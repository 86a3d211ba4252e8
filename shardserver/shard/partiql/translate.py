"""A parsed PartiQL statement, bound to its Parameters, as the DynamoDB request that runs it.

``plan(statement, schema, parameters)`` returns a ``Plan``: the operation
(GetItem, Query, Scan, PutItem, UpdateItem, DeleteItem, ConditionCheck for
EXISTS, or "Reads": one GetItem/Query per partition key of ``pk IN [...]``)
and its request, with expressions written by ``expressions.Builder``, so
every rule of those operations (conditions, limits, indexes, capacity,
streams) applies unchanged.  A SELECT naming the whole key is a GetItem; one
with an equality on the partition key a Query (one sort-key condition
becomes its key condition, the rest its filter); any other a Scan with the
WHERE as its filter.  Sans I/O: it reads a schema, never an item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shardserver.errors import ValidationException
from shardserver.shard import values
from shardserver.shard.partiql import ast
from shardserver.shard.partiql.expressions import Builder, attribute_value

INCOMPLETE_KEY = "Where clause does not contain a mandatory equality on all key attributes"
MAX_DECOMPOSED_READS = 100
PARAMETER_COUNT = "Number of parameters in request and statement don't match."
INVALID_TABLE_NAME = ("Table name should be within the length [3, 255] and only contain 'a-z', 'A-Z', '0-9', "
                      "'-', '_', '.'.")
_TABLE_NAME = re.compile(r"[a-zA-Z0-9_.-]{3,255}")

_RANGE_OPERATORS = ("=", "<", "<=", ">", ">=")
_FLIPPED = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass
class Plan:
    op: str                     # GetItem, Query, Scan, PutItem, UpdateItem, DeleteItem, ConditionCheck
    table: str
    request: dict
    projection: tuple | None = None     # SELECT's paths, to shape each item with (None: *)
    full_key: bool = False      # a read of at most one item, named by its whole primary key
    parts: list | None = None   # "Reads": the GetItem/Query plans run one after the other

    @property
    def is_read(self) -> bool:
        return self.op in ("GetItem", "Query", "Scan", "Reads")


def table_name_of(statement: ast.Statement) -> str:
    """The table a statement reads or writes, checked against DynamoDB's table-name rules."""
    body = statement.body
    name = (body.select if isinstance(body, ast.Exists) else body).table
    if not _TABLE_NAME.fullmatch(name):
        raise ValidationException(INVALID_TABLE_NAME)
    return name


def plan(statement: ast.Statement, schema, parameters: list) -> Plan:
    if statement.parameter_count != len(parameters):
        raise ValidationException(PARAMETER_COUNT)
    body = statement.body
    if isinstance(body, ast.Select):
        return _select_plan(body, schema, parameters)
    builder = Builder(parameters)
    if isinstance(body, ast.Insert):
        result = _insert(builder, body, schema)
    elif isinstance(body, ast.Update):
        result = _update(builder, body, schema)
    elif isinstance(body, ast.Delete):
        result = _delete(builder, body, schema)
    else:
        result = _exists(builder, body.select, schema)
    builder.finish(result.request)
    return result


# ------------------------------------------------------------------ WHERE analysis

def _conjuncts(where) -> list:
    if where is None:
        return []
    if isinstance(where, ast.And):
        result = []
        for operand in where.operands:
            result.extend(_conjuncts(operand))
        return result
    return [where]


def _and(conjuncts: list):
    if not conjuncts:
        return None
    return conjuncts[0] if len(conjuncts) == 1 else ast.And(tuple(conjuncts))


def _key_name(node, names) -> str | None:
    if isinstance(node, ast.Path) and len(node.steps) == 1 and node.steps[0] in names:
        return node.steps[0]
    return None


def _key_equalities(conjuncts: list, names: tuple) -> tuple[dict, list]:
    """({key name: value node} of the top-level key equalities, the other conjuncts)."""
    found, rest = {}, []
    for conjunct in conjuncts:
        if isinstance(conjunct, ast.Compare) and conjunct.op == "=":
            for key_side, value_side in ((conjunct.left, conjunct.right), (conjunct.right, conjunct.left)):
                name = _key_name(key_side, names)
                if name is not None and name not in found and isinstance(value_side, ast.VALUE_NODES):
                    found[name] = value_side
                    break
            else:
                rest.append(conjunct)
            continue
        rest.append(conjunct)
    return found, rest


def _range_condition(conjunct, range_name: str):
    """(KeyConditionExpression builder) if the conjunct is a sort-key condition Query takes, else None."""
    if isinstance(conjunct, ast.Compare) and conjunct.op in _RANGE_OPERATORS:
        if _key_name(conjunct.left, (range_name,)) and isinstance(conjunct.right, ast.VALUE_NODES):
            return lambda b: f"{b.name(range_name)} {conjunct.op} {b.value(conjunct.right)}"
        if _key_name(conjunct.right, (range_name,)) and isinstance(conjunct.left, ast.VALUE_NODES):
            return lambda b: f"{b.name(range_name)} {_FLIPPED[conjunct.op]} {b.value(conjunct.left)}"
    if isinstance(conjunct, ast.Between) and _key_name(conjunct.operand, (range_name,)) and \
            isinstance(conjunct.low, ast.VALUE_NODES) and isinstance(conjunct.high, ast.VALUE_NODES):
        return lambda b: f"{b.name(range_name)} BETWEEN {b.value(conjunct.low)} AND {b.value(conjunct.high)}"
    if isinstance(conjunct, ast.Call) and conjunct.name == "begins_with" and len(conjunct.args) == 2 and \
            _key_name(conjunct.args[0], (range_name,)) and isinstance(conjunct.args[1], ast.VALUE_NODES):
        return lambda b: f"begins_with({b.name(range_name)}, {b.value(conjunct.args[1])})"
    return None


def _mentions(node, names: set) -> bool:
    if isinstance(node, ast.Path):
        return node.steps[0] in names
    for child in _children(node):
        if _mentions(child, names):
            return True
    return False


def _children(node) -> tuple:
    if isinstance(node, (ast.And, ast.Or)):
        return node.operands
    if isinstance(node, ast.Not):
        return (node.operand,)
    if isinstance(node, (ast.Compare, ast.Arith)):
        return node.left, node.right
    if isinstance(node, ast.Between):
        return node.operand, node.low, node.high
    if isinstance(node, ast.In):
        return (node.operand,)
    if isinstance(node, ast.Is):
        return (node.operand,)
    if isinstance(node, ast.Call):
        return node.args
    return ()


def _key_of(builder: Builder, schema, found: dict) -> dict:
    key = {}
    for name, kind in ((schema.hash_key, schema.hash_type), (schema.range_key, schema.range_type)):
        if name is None:
            continue
        av = attribute_value(found[name], builder.parameters)
        if not isinstance(av, dict) or kind not in av:
            raise ValidationException(f"Key attribute's data type should match its data type in table's schema: "
                                      f"Key {name}")
        key[name] = av
    return key


def _table_keys(schema) -> tuple:
    return tuple(n for n in (schema.hash_key, schema.range_key) if n)


def _write_key(builder: Builder, where, schema) -> tuple[dict, list]:
    """(Key, the other conjuncts) of an UPDATE/DELETE/EXISTS WHERE, which must name the whole key."""
    found, rest = _key_equalities(_conjuncts(where), _table_keys(schema))
    if len(found) != len(_table_keys(schema)):
        raise ValidationException(INCOMPLETE_KEY)
    return _key_of(builder, schema, found), rest


# ------------------------------------------------------------------ SELECT

def _index_keys(schema, index: str | None) -> tuple[str | None, str | None]:
    """The partition and sort key names a SELECT may turn into a key condition; (None, None) for a
    GSI's multi-attribute key, whose SELECTs run as Scans of the index (the WHERE as their filter)."""
    if index is None:
        return schema.hash_key, schema.range_key
    for definition in schema.global_indexes + schema.local_indexes:
        if definition["IndexName"] == index:
            kinds = [e["KeyType"] for e in definition["KeySchema"]]
            if kinds.count("HASH") > 1 or kinds.count("RANGE") > 1:
                return None, None
            roles = {e["KeyType"]: e["AttributeName"] for e in definition["KeySchema"]}
            return roles["HASH"], roles.get("RANGE")
    raise ValidationException("The table does not have the specified index")   # PartiQL: no name


def output_name(path: ast.Path) -> str:
    """The attribute name a projected path's value is answered under: its last name, with the
    list indexes after it (``m.k[1]`` answers ``k[1]``)."""
    last = max(i for i, step in enumerate(path.steps) if isinstance(step, str))
    return path.steps[last] + "".join(f"[{step}]" for step in path.steps[last + 1:])


def shape_item(item: dict, paths: tuple | None) -> dict:
    """A stored item (DynamoDB JSON) as SELECT's projection list answers it."""
    if paths is None:
        return item
    shaped = {}
    for path in paths:
        value = item.get(path.steps[0])
        for step in path.steps[1:]:
            if value is None:
                break
            if isinstance(step, int):
                items = value.get("L")
                value = items[step] if isinstance(items, list) and step < len(items) else None
            else:
                members = value.get("M")
                value = members.get(step) if isinstance(members, dict) else None
        if value is not None:
            shaped[output_name(path)] = value
    return shaped


def _select_plan(select: ast.Select, schema, parameters: list) -> Plan:
    """GetItem or Query when the WHERE allows, one read per partition key for ``pk IN [...]`` or an
    OR of partition keys (as DynamoDB decomposes them, never a scan), else a Scan."""
    builder = Builder(parameters)
    result = _select(builder, select, schema)
    builder.finish(result.request)
    if result.op == "Scan" and select.where is not None:
        parts = _decomposed(select, schema, parameters)
        if parts is not None:
            return Plan("Reads", select.table, {}, select.projection, parts=parts)
    if result.op == "Scan" and select.order_by:
        if select.where is None:
            raise ValidationException("Must have WHERE clause in the statement when using ORDER BY clause.")
        raise ValidationException("Must have at least one non-optional hash key condition in WHERE clause when "
                                  "using ORDER BY clause.")
    return result


def _decomposed(select: ast.Select, schema, parameters: list) -> list | None:
    """The single-partition reads a WHERE of ``pk IN [...]`` (or ``pk = a OR pk = b``) stands for."""
    hash_name = _index_keys(schema, select.index)[0]
    if hash_name is None:
        return None
    hash_path = ast.Path((hash_name,))
    conjuncts = _conjuncts(select.where)
    wheres = None
    for position, conjunct in enumerate(conjuncts):
        if isinstance(conjunct, ast.In) and conjunct.operand == hash_path and \
                all(isinstance(item, ast.VALUE_NODES) for item in conjunct.items):
            others = conjuncts[:position] + conjuncts[position + 1:]
            wheres = [(av, _and(others + [ast.Compare("=", hash_path, ast.Scalar(av))]))
                      for av in (attribute_value(item, parameters) for item in conjunct.items)]
            break
    if wheres is None and isinstance(select.where, ast.Or):
        wheres = []
        for disjunct in select.where.operands:
            found, _ = _key_equalities(_conjuncts(disjunct), (hash_name,))
            if hash_name not in found:
                return None
            wheres.append((attribute_value(found[hash_name], parameters), disjunct))
    if wheres is None:
        return None
    distinct: dict[bytes, tuple] = {}
    for av, where in wheres:
        if not (isinstance(av, dict) and len(av) == 1 and next(iter(av)) in ("S", "N", "B")):
            return None
        # An OR naming one partition twice would read it twice: leave that to a Scan.
        if distinct.setdefault(_sort_bytes(av), (av, where)) != (av, where):
            return None
    if len(distinct) > MAX_DECOMPOSED_READS:
        raise ValidationException("Too many decomposed read operations for a given query.")
    ordered = list(distinct.items())
    order = {path.steps[0]: desc for path, desc in select.order_by if len(path.steps) == 1}
    if hash_name in order:
        ordered.sort(key=lambda entry: entry[0], reverse=order[hash_name])
    elif select.order_by and len(ordered) > 1:
        raise ValidationException("Must have hash key in ORDER BY clause when more than one hash key condition "
                                  "specified in WHERE clause.")
    parts = []
    for _, (_, where) in ordered:
        builder = Builder(parameters)
        part = _select(builder, ast.Select(select.table, select.index, select.projection, where, select.order_by),
                       schema)
        if part.op == "Scan":
            return None
        builder.finish(part.request)
        parts.append(part)
    return parts


def _sort_bytes(av: dict) -> bytes:
    try:
        return values.encode_sort_component(av)
    except (ValueError, KeyError, TypeError):
        raise ValidationException("Key attribute values must be of type S, N or B") from None


def _select(builder: Builder, select: ast.Select, schema) -> Plan:
    hash_name, range_name = _index_keys(schema, select.index)
    keys = tuple(n for n in (hash_name, range_name) if n)
    request: dict = {"TableName": select.table}
    if select.index is not None:
        request["IndexName"] = select.index
    if select.projection is not None:
        seen = set()
        for path in select.projection:
            name = output_name(path)
            if name in seen:
                raise ValidationException(f"Duplicate identifiers in select clause: {name}")
            seen.add(name)
        tops = dict.fromkeys(path.steps[0] for path in select.projection)
        request["ProjectionExpression"] = ", ".join(builder.name(name) for name in tops)
    conjuncts = _conjuncts(select.where)
    found, rest = _key_equalities(conjuncts, keys)
    descending = _order(select, keys)
    if select.index is None and len(found) == len(keys) and not rest:
        request["Key"] = _key_of(builder, schema, found)
        return Plan("GetItem", select.table, request, select.projection, full_key=True)
    if hash_name is not None and hash_name in found:
        key_condition = [lambda b: f"{b.name(hash_name)} = {b.value(found[hash_name])}"]
        if range_name in found:
            key_condition.append(lambda b: f"{b.name(range_name)} = {b.value(found[range_name])}")
        elif range_name is not None:
            for position, conjunct in enumerate(rest):
                condition = _range_condition(conjunct, range_name)
                if condition is not None:
                    key_condition.append(condition)
                    rest = rest[:position] + rest[position + 1:]
                    break
        if not any(_mentions(conjunct, set(keys)) for conjunct in rest):
            request["KeyConditionExpression"] = " AND ".join(part(builder) for part in key_condition)
            if rest:
                request["FilterExpression"] = builder.condition(_and(rest))
            if descending:
                request["ScanIndexForward"] = False
            # The whole key and more conditions: a Query of at most one item, with a filter.
            full = select.index is None and len(found) == len(keys)
            return Plan("Query", select.table, request, select.projection, full_key=full)
    # No usable partition-key equality (or more conditions on a key than Query takes): a Scan.
    if select.where is not None:
        request["FilterExpression"] = builder.condition(select.where)
    return Plan("Scan", select.table, request, select.projection)


def _order(select: ast.Select, keys: tuple) -> bool:
    """Whether ORDER BY asks for the sort key descending; refuses an ORDER BY on anything else."""
    descending = False
    for path, desc in select.order_by:
        name = _key_name(path, keys)
        if name is None:
            shown = ".".join(str(step) for step in path.steps)
            raise ValidationException(f"Variable reference {shown} in ORDER BY clause must be part of the "
                                      "primary key")
        if name == keys[-1] and len(keys) == 2:
            descending = desc
    return descending


# ------------------------------------------------------------------ writes

def _insert(builder: Builder, insert: ast.Insert, schema) -> Plan:
    if not isinstance(insert.item, (ast.Tuple, ast.Param)):
        raise ValidationException("Unsupported format in item expression. Please use struct format {...} to "
                                  "express item values for insert statement.")
    item = attribute_value(insert.item, builder.parameters)
    if not isinstance(item, dict) or not isinstance(item.get("M"), dict):
        raise ValidationException("Unsupported format in item expression. Please use struct format {...} to "
                                  "express item values for insert statement.")
    item = item["M"]
    for name, kind in ((schema.hash_key, schema.hash_type), (schema.range_key, schema.range_type)):
        if name is None:
            continue
        if name not in item:
            raise ValidationException(f"Key attribute should be present in the item: Key {name}")
        if not isinstance(item[name], dict) or kind not in item[name]:
            raise ValidationException(f"Key attribute's data type should match its data type in table's schema: "
                                      f"Key {name}")
    request = {"TableName": insert.table, "Item": item,
               "ConditionExpression": f"attribute_not_exists({builder.name(schema.hash_key)})"}
    return Plan("PutItem", insert.table, request)


def _update(builder: Builder, update: ast.Update, schema) -> Plan:
    key, rest = _write_key(builder, update.where, schema)
    clauses: dict[str, list[str]] = {"SET": [], "REMOVE": [], "ADD": [], "DELETE": []}
    for action in update.actions:
        if action[0] == "REMOVE":
            clauses["REMOVE"].append(builder.path(action[1]))
            continue
        _, path, value = action
        if isinstance(value, ast.Call) and value.name in ("set_add", "set_delete"):
            which = value.name[4:].upper()
            if len(value.args) != 2:
                raise ValidationException(f"SET_{which} must have exactly two arguments")
            if value.args[0] != path:
                raise ValidationException(f"The first argument to SET_{which} must equal the assignment value")
            operand = value.args[1]
            av = attribute_value(operand, builder.parameters) if isinstance(operand, ast.VALUE_NODES) else None
            if not (isinstance(av, dict) and len(av) == 1 and next(iter(av)) in ("SS", "NS", "BS")):
                raise ValidationException(f"The second argument to SET_{which} must be a value with type SET")
            clauses[which].append(f"{builder.path(path)} {builder.value(operand)}")
            continue
        clauses["SET"].append(f"{builder.path(path)} = {builder.update_value(value)}")
    expression = " ".join(f"{kind} {', '.join(parts)}" for kind, parts in clauses.items() if parts)
    condition = f"attribute_exists({builder.name(schema.hash_key)})"
    if rest:
        condition += f" AND ({builder.condition(_and(rest))})"
    request = {"TableName": update.table, "Key": key, "UpdateExpression": expression,
               "ConditionExpression": condition}
    if update.returning is not None:
        request["ReturnValues"] = update.returning
    return Plan("UpdateItem", update.table, request)


def _delete(builder: Builder, delete: ast.Delete, schema) -> Plan:
    key, rest = _write_key(builder, delete.where, schema)
    request = {"TableName": delete.table, "Key": key}
    if rest:
        # An absent item is deleted successfully whatever the condition; a present one must match it.
        request["ConditionExpression"] = (f"attribute_not_exists({builder.name(schema.hash_key)}) OR "
                                          f"({builder.condition(_and(rest))})")
    if delete.returning is not None:
        request["ReturnValues"] = delete.returning
    return Plan("DeleteItem", delete.table, request)


def _exists(builder: Builder, select: ast.Select, schema) -> Plan:
    if select.index is not None:
        raise ValidationException("Operations on indices are not supported in transactions")
    found, rest = _key_equalities(_conjuncts(select.where), _table_keys(schema))
    if len(found) != len(_table_keys(schema)):
        raise ValidationException("EXISTS() must contain a single item read with additional condition")
    key = _key_of(builder, schema, found)
    condition = f"attribute_exists({builder.name(schema.hash_key)})"
    if rest:
        condition += f" AND ({builder.condition(_and(rest))})"
    request = {"TableName": select.table, "Key": key, "ConditionExpression": condition}
    return Plan("ConditionCheck", select.table, request)
