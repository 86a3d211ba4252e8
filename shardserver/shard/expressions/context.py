"""One request's ExpressionAttributeNames and ExpressionAttributeValues.

Owns the validation of both maps (key syntax, non-empty, valid
AttributeValues), placeholder lookup with DynamoDB's "not defined" errors,
the record of which placeholders the request's expressions used (for the
"unused in expressions" error), and a per-request memo of bound
expressions.  It lives for one request only and must never be shared
between requests or cached.
"""

from __future__ import annotations

import re

from shardserver.errors import ValidationException
from shardserver.shard.values import ATTRIBUTE_NAME_TOO_LARGE, check_attribute_name_length, validate_value

_NAME_KEY = re.compile(r"#[A-Za-z0-9_]+\Z")
_VALUE_KEY = re.compile(r":[A-Za-z0-9_]+\Z")


class ExpressionContext:
    """One request's ExpressionAttributeNames/Values; tracks which were used."""

    __slots__ = ("names", "values", "used_names", "used_values", "_bound")

    def __init__(self, names: dict | None = None, values: dict | None = None, names_checked: bool = False):
        # names_checked: these very names passed this check before (a cache vouches for them).
        if names is not None and not names_checked:
            if not isinstance(names, dict):
                raise ValidationException("ExpressionAttributeNames must be a map")
            if not names:
                raise ValidationException("ExpressionAttributeNames must not be empty")
            for key, name in names.items():
                if not isinstance(key, str) or not _NAME_KEY.match(key):
                    raise ValidationException(
                        f'ExpressionAttributeNames contains invalid key: Syntax error; key: "{key}"')
                if not isinstance(name, str) or not name:
                    raise ValidationException(
                        f"ExpressionAttributeNames contains invalid value: Empty attribute name for key {key}")
                check_attribute_name_length(name)
        if values is not None:
            if not isinstance(values, dict):
                raise ValidationException("ExpressionAttributeValues must be a map")
            if not values:
                raise ValidationException("ExpressionAttributeValues must not be empty")
            for key, av in values.items():
                if not isinstance(key, str) or not _VALUE_KEY.match(key):
                    raise ValidationException(
                        f'ExpressionAttributeValues contains invalid key: Syntax error; key: "{key}"')
                try:
                    validate_value(av)
                except ValidationException as e:
                    if e.message == ATTRIBUTE_NAME_TOO_LARGE:
                        raise           # DynamoDB words it the same wherever the name is
                    raise ValidationException(
                        f"ExpressionAttributeValues contains invalid value: {e.message} for key {key}") from None
        self.names = names or {}
        self.values = values or {}
        self.used_names: set = set()
        self.used_values: set = set()
        self._bound: dict = {}

    def name(self, ref: str, kind: str) -> str:
        try:
            name = self.names[ref]
        except KeyError:
            raise ValidationException(
                f"Invalid {kind}: An expression attribute name used in the document path is not defined; "
                f"attribute name: {ref}") from None
        self.used_names.add(ref)
        return name

    def value(self, ref: str, kind: str) -> dict:
        try:
            av = self.values[ref]
        except KeyError:
            raise ValidationException(
                f"Invalid {kind}: An expression attribute value used in expression is not defined; "
                f"attribute value: {ref}") from None
        self.used_values.add(ref)
        return av

    def resolve_path(self, elements: tuple, kind: str) -> tuple:
        """A parsed path's elements with #placeholders replaced by names."""
        out = []
        for element in elements:
            if element.__class__ is str and element[0] == "#":
                element = self.name(element, kind)
            out.append(element)
        return tuple(out)

    def check_all_used(self, referenced: frozenset | set | None = None) -> None:
        """Every name and value given was used: by the bound expressions, or
        (``referenced``) by the placeholders their texts contain."""
        used_names = self.used_names if referenced is None else referenced
        used_values = self.used_values if referenced is None else referenced
        unused = [k for k in self.names if k not in used_names]
        if unused:
            raise ValidationException("Value provided in ExpressionAttributeNames unused in expressions: "
                                      "keys: {" + ", ".join(unused) + "}")
        unused = [k for k in self.values if k not in used_values]
        if unused:
            raise ValidationException("Value provided in ExpressionAttributeValues unused in expressions: "
                                      "keys: {" + ", ".join(unused) + "}")

    def bound(self, parsed, binder):
        """binder(parsed, self), once per parsed expression per request."""
        entry = self._bound.get(id(parsed))
        if entry is None or entry[0] is not parsed:
            entry = self._bound[id(parsed)] = (parsed, binder(parsed, self))
        return entry[1]
