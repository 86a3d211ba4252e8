"""ProjectionExpression (and AttributesToGet, UPDATED_OLD/NEW) applied to items.

Owns the rule that a projected item keeps the shape of the original: a.b[2].c
yields {"a": {"M": {"b": {"L": [{"M": {"c": ...}}]}}}}, several list indexes of
one list are kept in index order, and paths that do not exist (or go
through a value of the wrong type) contribute nothing.  It copies nothing
it does not return and never mutates the item it reads.
"""

from __future__ import annotations

from shardserver.shard.expressions import ast
from shardserver.shard.expressions.paths import check_paths

_MISSING = object()


class BoundProjection:
    """Resolved paths and the trie used to project items with them."""

    __slots__ = ("paths", "tree")

    def __init__(self, paths: list):
        self.paths = paths
        self.tree = build_tree(paths)

    def apply(self, item: dict) -> dict:
        return project_tree(item, self.tree)


def build_tree(paths) -> dict:
    root: dict = {}
    for path in paths:
        node = root
        for element in path[:-1]:
            child = node.get(element, _MISSING)
            if child is None:           # an ancestor is already projected whole
                break
            if child is _MISSING:
                child = node[element] = {}
            node = child
        else:
            node[path[-1]] = None
    return root


def _project_value(av: dict, tree: dict):
    (kind, value), = av.items()
    if kind == "M":
        out = {}
        for element, sub in tree.items():
            if element.__class__ is int:
                continue
            child = value.get(element)
            if child is None:
                continue
            if sub is None:
                out[element] = child
            else:
                projected = _project_value(child, sub)
                if projected is not None:
                    out[element] = projected
        return {"M": out} if out else None
    if kind == "L":
        out = []
        for element in sorted(e for e in tree if e.__class__ is int):
            if element >= len(value):
                break
            sub = tree[element]
            if sub is None:
                out.append(value[element])
            else:
                projected = _project_value(value[element], sub)
                if projected is not None:
                    out.append(projected)
        return {"L": out} if out else None
    return None


def project_tree(item: dict, tree: dict) -> dict:
    out = {}
    for name, sub in tree.items():
        av = item.get(name)
        if av is None:
            continue
        if sub is None:
            out[name] = av
        else:
            projected = _project_value(av, sub)
            if projected is not None:
                out[name] = projected
    return out


def bind_projection(parsed: ast.ProjectionExpr, ctx) -> BoundProjection:
    kind = "ProjectionExpression"
    paths = [ctx.resolve_path(p.elements, kind) for p in parsed]
    check_paths(paths, kind)
    return BoundProjection(paths)


def project(item: dict, paths, ctx=None) -> dict:
    """item restricted to a ProjectionExpression (parsed, bound against ctx
    once per request) or to an already BoundProjection."""
    bound = paths if paths.__class__ is BoundProjection else ctx.bound(paths, bind_projection)
    return bound.apply(item)
