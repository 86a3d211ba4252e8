"""Recursive-descent parser for DynamoDB's five expression kinds, with a parse cache.

Owns the grammar (clauses of UpdateExpression, the condition grammar with
OR < AND < NOT < comparison precedence, paths, function calls) and the checks
that depend on the text alone: emptiness, the 4 KB size limit, reserved
words, path nesting depth, IN and operator counts, repeated update clauses,
redundant parentheses and group nesting.
Everything that needs the request's ExpressionAttributeNames/Values is left
to the binders.  Parsed trees are cached by (kind, text) and shared, so the
parser must never return anything mutable.
"""

from __future__ import annotations

import functools

from shardserver.errors import ValidationException
from shardserver.shard.expressions import ast
from shardserver.shard.expressions.reserved import RESERVED_WORDS
from shardserver.shard.expressions.tokenizer import (
    EOF, NAME, NAMEREF, NUMBER, VALREF, syntax_error, tokenize)

MAX_EXPRESSION_BYTES = 4096
MAX_PATH_DEPTH = 32
MAX_IN_OPERANDS = 100
MAX_OPERATORS = 300
# Deeper nesting needs more operators than MAX_OPERATORS, or a redundant group;
# refusing it before recursing keeps the parser's stack bounded.
MAX_GROUP_DEPTH = MAX_OPERATORS + 1

COMPARATORS = frozenset(("=", "<>", "<", "<=", ">", ">="))
UPDATE_CLAUSES = ("SET", "REMOVE", "ADD", "DELETE")
_CONDITION_KEYWORDS = frozenset(("AND", "OR", "NOT", "BETWEEN", "IN"))


def invalid(kind: str, message: str) -> ValidationException:
    return ValidationException(f"Invalid {kind}: {message}")


def _check_text(kind: str, text) -> None:
    if not isinstance(text, str):
        raise ValidationException(f"Invalid {kind}: The expression must be a string")
    if not text.strip():
        raise invalid(kind, "The expression can not be empty;")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_EXPRESSION_BYTES:
        raise invalid(kind, "Expression size has exceeded the maximum allowed size; "
                            f"expression size: {size}")


class _Parser:
    def __init__(self, kind: str, text: str):
        self.kind = kind
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.operators = 0
        self.groups: dict[int, int] = {}    # "(" token index -> its ")" index, conditions only
        self._check_nesting()

    def _check_nesting(self) -> None:
        """Refuse nesting no valid expression has, before recursing into it.

        A group that is not redundant (it does more than wrap one other group)
        holds an operator of its own, so a valid expression nests at most
        MAX_OPERATORS + 1 groups deep."""
        depth = deepest = 0
        doubled = False
        previous = None
        for tok in self.tokens:
            if tok.kind == "(":
                depth += 1
                deepest = max(deepest, depth)
                doubled = doubled or previous == "("
            elif tok.kind == ")":
                depth -= 1
            previous = tok.kind
        if deepest > MAX_GROUP_DEPTH:
            if doubled:
                raise invalid(self.kind, "The expression has redundant parentheses;")
            raise invalid(self.kind, "The expression contains too many operators; "
                                     f"operator count: more than {MAX_OPERATORS}")

    # -------------------------------------------------------- token helpers

    @property
    def tok(self):
        return self.tokens[self.pos]

    def error(self) -> ValidationException:
        return syntax_error(self.kind, self.text, self.tokens, self.pos)

    def expect(self, kind: str) -> None:
        if self.tok.kind != kind:
            raise self.error()
        self.pos += 1

    def at_keyword(self, word: str) -> bool:
        tok = self.tok
        return tok.kind == NAME and tok.text.upper() == word

    def expect_end(self) -> None:
        if self.tok.kind != EOF:
            raise self.error()

    def count_operator(self) -> None:
        self.operators += 1
        if self.operators > MAX_OPERATORS:
            raise invalid(self.kind, "The expression contains too many operators; "
                                     f"operator count: {self.operators}")

    # -------------------------------------------------------- paths and operands

    def path_name(self) -> str:
        tok = self.tok
        if tok.kind == NAME:
            if tok.text.upper() in RESERVED_WORDS:
                raise invalid(self.kind, "Attribute name is a reserved keyword; "
                                         f"reserved keyword: {tok.text}")
            self.pos += 1
            return tok.text
        if tok.kind == NAMEREF:
            self.pos += 1
            return tok.text
        raise self.error()

    def path(self) -> ast.Path:
        elements = [self.path_name()]
        while True:
            kind = self.tok.kind
            if kind == ".":
                self.pos += 1
                elements.append(self.path_name())
            elif kind == "[":
                self.pos += 1
                if self.tok.kind != NUMBER:
                    raise self.error()
                elements.append(int(self.tok.text))
                self.pos += 1
                self.expect("]")
            else:
                break
        if len(elements) > MAX_PATH_DEPTH:
            raise invalid(self.kind, "The document path has too many nesting levels; "
                                     f"nesting levels: {len(elements)}")
        return ast.Path(tuple(elements))

    def operand(self):
        tok = self.tok
        if tok.kind == VALREF:
            self.pos += 1
            return ast.ValueRef(tok.text)
        if tok.kind == NAME:
            if self.tokens[self.pos + 1].kind == "(":
                return self.call()
            if tok.text.upper() in _CONDITION_KEYWORDS and self.kind != "UpdateExpression":
                raise self.error()
        return self.path()

    def call(self) -> ast.Call:
        name = self.tok.text
        self.pos += 2                       # the name and "("
        self.count_operator()
        args = [self.operand()]
        while self.tok.kind == ",":
            self.pos += 1
            args.append(self.operand())
        self.expect(")")
        return ast.Call(name, tuple(args))

    # -------------------------------------------------------- conditions

    def condition(self):
        node = self.conjunction()
        while self.at_keyword("OR"):
            self.pos += 1
            self.count_operator()
            node = ast.Or(node, self.conjunction())
        return node

    def conjunction(self):
        node = self.negation()
        while self.at_keyword("AND"):
            self.pos += 1
            self.count_operator()
            node = ast.And(node, self.negation())
        return node

    def negation(self):
        if self.at_keyword("NOT"):
            self.pos += 1
            self.count_operator()
            return ast.Not(self.negation())
        return self.primary()

    def primary(self):
        if self.tok.kind == "(":
            opened = self.pos
            self.pos += 1
            node = self.condition()
            if self.groups.get(opened + 1) == self.pos - 1:
                # "((a = b))": DynamoDB refuses a group that only wraps another group
                raise invalid(self.kind, "The expression has redundant parentheses;")
            self.expect(")")
            self.groups[opened] = self.pos - 1
            return node
        left = self.operand()
        tok = self.tok
        if tok.kind in COMPARATORS:
            self.pos += 1
            self.count_operator()
            return ast.Compare(tok.kind, left, self.operand())
        if self.at_keyword("BETWEEN"):
            self.pos += 1
            self.count_operator()
            low = self.operand()
            if not self.at_keyword("AND"):
                raise self.error()
            self.pos += 1
            return ast.Between(left, low, self.operand())
        if self.at_keyword("IN"):
            self.pos += 1
            self.count_operator()
            self.expect("(")
            options = [self.operand()]
            while self.tok.kind == ",":
                self.pos += 1
                options.append(self.operand())
            self.expect(")")
            # DynamoDB counts (and limits to 100) the values in the list, not the left operand.
            if len(options) > MAX_IN_OPERANDS:
                raise invalid(self.kind, "The IN operator is provided with too many operands; "
                                         f"number of operands: {len(options)}")
            return ast.In(left, tuple(options))
        if isinstance(left, ast.Call):
            return ast.FunctionCondition(left)
        raise self.error()

    # -------------------------------------------------------- update

    def update(self) -> ast.UpdateExpr:
        clauses = {}
        while self.tok.kind != EOF:
            tok = self.tok
            word = tok.text.upper() if tok.kind == NAME else None
            if word not in UPDATE_CLAUSES:
                raise self.error()
            if word in clauses:
                raise invalid(self.kind, f'The "{word}" section can only be used once in an update expression;')
            self.pos += 1
            actions = clauses[word] = []
            while True:
                actions.append(self.update_action(word))
                if self.tok.kind != ",":
                    break
                self.pos += 1
            nxt = self.tok
            if nxt.kind != EOF and not (nxt.kind == NAME and nxt.text.upper() in UPDATE_CLAUSES):
                raise self.error()
        return ast.UpdateExpr(self.text, tuple(clauses.get("SET", ())), tuple(clauses.get("REMOVE", ())),
                              tuple(clauses.get("ADD", ())), tuple(clauses.get("DELETE", ())))

    def update_action(self, clause: str):
        if clause == "REMOVE":
            return self.path()
        path = self.path()
        if clause == "SET":
            self.expect("=")
            return path, self.set_value()
        # ADD and DELETE take a path and a value placeholder, separated by blanks only.
        tok = self.tok
        if tok.kind != VALREF:
            raise self.error()
        self.pos += 1
        return path, ast.ValueRef(tok.text)

    def set_value(self):
        """A SET action's value: an operand, or two operands joined by one + or -.
        DynamoDB also takes the value, or an operand, in parentheses, as
        SET c = (c - :v) (ORMs such as ElectroDB write it that way); the
        parentheses never let one + or - join more than two operands."""
        value = self.set_operand()
        if self.tok.kind in ("+", "-"):
            if value.__class__ is ast.Arith:
                raise self.error()
            op = self.tok.kind
            self.pos += 1
            self.count_operator()
            start = self.pos
            right = self.set_operand()
            if right.__class__ is ast.Arith:
                self.pos = start
                raise self.error()
            value = ast.Arith(op, value, right)
        return value

    def set_operand(self):
        if self.tok.kind != "(":
            return self.operand()
        self.pos += 1
        value = self.set_value()
        self.expect(")")
        return value

    # -------------------------------------------------------- projection

    def projection(self) -> ast.ProjectionExpr:
        paths = [self.path()]
        while self.tok.kind == ",":
            self.pos += 1
            paths.append(self.path())
        self.expect_end()
        return ast.ProjectionExpr(paths)


def _too_deep(kind: str):
    """Decorator: a parse that outgrows the interpreter's stack is the client's error.

    The shards raise the recursion limit above what the deepest valid
    expression needs (see shard.main); this covers a smaller limit elsewhere."""
    def wrap(parse):
        @functools.wraps(parse)
        def guarded(*args):
            try:
                return parse(*args)
            except RecursionError:
                raise invalid(args[0] if kind is None else kind,
                              "The expression is nested too deeply;") from None
        return guarded
    return wrap


@functools.lru_cache(maxsize=4096)
@_too_deep(None)
def _parse_condition(kind: str, text: str) -> ast.Condition:
    parser = _Parser(kind, text)
    root = parser.condition()
    parser.expect_end()
    return ast.Condition(kind, text, root)


@functools.lru_cache(maxsize=4096)
@_too_deep("UpdateExpression")
def _parse_update(text: str) -> ast.UpdateExpr:
    parser = _Parser("UpdateExpression", text)
    return parser.update()


@functools.lru_cache(maxsize=4096)
@_too_deep("ProjectionExpression")
def _parse_projection(text: str) -> ast.ProjectionExpr:
    return _Parser("ProjectionExpression", text).projection()


def parse_condition(text: str, kind: str = "ConditionExpression") -> ast.Condition:
    """Parses a ConditionExpression or FilterExpression (kind names it in errors)."""
    _check_text(kind, text)
    return _parse_condition(kind, text)


def parse_key_condition(text: str) -> ast.Condition:
    # DynamoDB parses key conditions with the condition grammar and rejects
    # what Query cannot use afterwards (see keycondition.py).
    _check_text("KeyConditionExpression", text)
    return _parse_condition("KeyConditionExpression", text)


def parse_update(text: str) -> ast.UpdateExpr:
    _check_text("UpdateExpression", text)
    return _parse_update(text)


def parse_projection(text: str) -> ast.ProjectionExpr:
    _check_text("ProjectionExpression", text)
    return _parse_projection(text)


def cache_info() -> dict:
    return {"condition": _parse_condition.cache_info(), "update": _parse_update.cache_info(),
            "projection": _parse_projection.cache_info()}
