"""Overlap and conflict rules between the document paths of one expression.

Owns DynamoDB's rule that the paths an UpdateExpression modifies (or a
ProjectionExpression reads) may neither overlap (one is a prefix of, or
equal to, the other) nor conflict (one addresses a map member where the
other addresses a list element of the same parent).  Checked on resolved
paths (placeholders replaced), before any item is read.  Builds a trie so
the check stays linear in the number of paths.
"""

from __future__ import annotations

from shardserver.shard.expressions.compare import show_path
from shardserver.shard.expressions.parser import invalid


class _Node:
    __slots__ = ("children", "path", "under")

    def __init__(self):
        self.children: dict = {}
        self.path = None       # the full path ending here, if any
        self.under = None      # some full path passing through or ending here


def check_paths(paths: list, kind: str) -> None:
    root = _Node()
    for path in paths:
        node = root
        for element in path:
            if node.path is not None:
                raise _overlap(kind, node.path, path)
            child = node.children.get(element)
            if child is None:
                for other_key, other in node.children.items():
                    # An int index next to a member name: the parent cannot be both a list and a map.
                    if (other_key.__class__ is int) != (element.__class__ is int):
                        raise invalid(kind, "Two document paths conflict with each other; must remove or "
                                            "rewrite one of these paths; "
                                            f"path one: {show_path(other.under)}, path two: {show_path(path)}")
                child = node.children[element] = _Node()
            if child.under is None:
                child.under = path
            node = child
        if node.path is not None or node.children:
            raise _overlap(kind, node.path or node.under, path)
        node.path = path


def _overlap(kind: str, one: tuple, two: tuple):
    return invalid(kind, "Two document paths overlap with each other; must remove or rewrite one of these "
                         f"paths; path one: {show_path(one)}, path two: {show_path(two)}")
