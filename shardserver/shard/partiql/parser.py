"""A recursive-descent parser for DynamoDB's subset of PartiQL: text in, ``ast.Statement`` out.

SELECT (``*`` or paths; FROM "table" or "table"."index"; WHERE; ORDER BY),
INSERT INTO ... VALUE {...}, UPDATE ... SET/REMOVE ... WHERE ... [RETURNING],
DELETE FROM ... WHERE ... [RETURNING ALL OLD *], and EXISTS(SELECT ...) for
transactions.  It knows no table: whether a WHERE names a key is decided by
``translate``.  Errors are ValidationExceptions with DynamoDB's wording.
"""

from __future__ import annotations

from shardserver.errors import ValidationException
from shardserver.shard.partiql import ast
from shardserver.shard.partiql.lexer import PartiQLSyntaxError, Token, tokenize

COMPARISONS = {"=": "=", "<>": "<>", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
IS_TYPES = ("MISSING", "NULL", "STRING", "NUMERIC", "BOOLEAN", "BLOB", "LIST", "STRUCT", "TUPLE")
INVALID_IN = ("IN operator must have a left hand argument of type Variable Reference and right hand argument of "
              "type Seq with at least one member")
RETURNING = {("ALL", "OLD"): "ALL_OLD", ("MODIFIED", "OLD"): "UPDATED_OLD",
             ("ALL", "NEW"): "ALL_NEW", ("MODIFIED", "NEW"): "UPDATED_NEW"}


def parse(text: str) -> ast.Statement:
    return _Parser(text).statement()


class _Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.pos = 0
        self.params = 0

    # ------------------------------------------------------------ token helpers

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        token = self.peek()
        self.pos += 1
        return token

    def at(self, *texts: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind in ("keyword", "punct") and token.text in texts

    def accept(self, *texts: str) -> bool:
        if self.at(*texts):
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise self.unexpected(f"expected {text}")

    def unexpected(self, wanted: str = "") -> PartiQLSyntaxError:
        token = self.peek()
        if token.kind == "eof":
            found = "Unexpected end of statement"
        elif token.kind == "keyword":
            found = f"Unexpected keyword {token.text} at position {token.pos}"
        else:
            found = f"Unexpected token {token.text!r} at position {token.pos}"
        return PartiQLSyntaxError(found + (f", {wanted}" if wanted else ""))

    # ------------------------------------------------------------ statements

    def statement(self) -> ast.Statement:
        if self.accept("SELECT"):
            body = self.select()
        elif self.accept("INSERT"):
            body = self.insert()
        elif self.accept("UPDATE"):
            body = self.update()
        elif self.accept("DELETE"):
            body = self.delete()
        elif self.accept("EXISTS"):
            self.expect("(")
            self.expect("SELECT")
            body = ast.Exists(self.select())
            self.expect(")")
        else:
            raise self.unexpected("expected SELECT, INSERT, UPDATE, DELETE or EXISTS")
        self.accept(";")
        if self.peek().kind != "eof":
            if self.at("LIMIT"):
                raise ValidationException("Unsupported clause: LIMIT")
            raise self.unexpected()
        return ast.Statement(body, self.params)

    def select(self) -> ast.Select:
        projection = None
        if not self.accept("*"):
            paths = [self.projected_path()]
            while self.accept(","):
                paths.append(self.projected_path())
            projection = tuple(paths)
        elif self.at(","):
            raise ValidationException("Other attributes should not be present in the projection when '*' is used.")
        self.expect("FROM")
        table, index = self.source()
        where = self.condition() if self.accept("WHERE") else None
        order_by = []
        if self.accept("ORDER"):
            self.expect("BY")
            while True:
                path = self.path()
                descending = self.accept("DESC")
                if not descending:
                    self.accept("ASC")
                order_by.append((path, descending))
                if not self.accept(","):
                    break
        return ast.Select(table, index, projection, where, tuple(order_by))

    def projected_path(self) -> ast.Path:
        if self.at("*"):
            raise ValidationException("Other attributes should not be present in the projection when '*' is used.")
        token = self.peek()
        if token.kind == "ident" and self.at("(", ahead=1):
            raise ValidationException(f"Unsupported operation: function {token.text} in the select list")
        path = self.path()
        if self.at("AS"):
            raise ValidationException("Aliasing is not supported")
        return path

    def source(self) -> tuple[str, str | None]:
        table = self.name("a table name")
        index = None
        if self.accept("."):
            index = self.name("an index name")
        if self.at("."):
            raise ValidationException("A path may contain at most 2 components in the FROM clause")
        if self.at(","):
            raise ValidationException("Only select from a single table or index is supported.")
        return table, index

    def insert(self) -> ast.Insert:
        self.expect("INTO")
        table = self.name("a table name")
        if self.at("."):
            raise ValidationException("FROM clause may only contain a single table name in data manipulation "
                                      "statements")
        if self.at("VALUES") or self.at("<<"):
            raise ValidationException('Unsupported operation: Inserting multiple items in a single statement is not '
                                      'supported, use "INSERT INTO tableName VALUE item" instead')
        self.expect("VALUE")
        item = self.value()
        if self.at("RETURNING"):
            raise ValidationException("RETURNING is not supported in INSERT")
        return ast.Insert(table, item)

    def update(self) -> ast.Update:
        table = self.name("a table name")
        actions = []
        while True:
            if self.accept("SET"):
                while True:
                    path = self.path()
                    self.expect("=")
                    actions.append(("SET", path, self.additive()))
                    if not self.accept(","):
                        break
            elif self.accept("REMOVE"):
                while True:
                    actions.append(("REMOVE", self.path()))
                    if not self.accept(","):
                        break
            else:
                break
        if not actions:
            raise self.unexpected("expected SET or REMOVE")
        self.expect("WHERE")
        where = self.condition()
        return ast.Update(table, tuple(actions), where, self.returning())

    def delete(self) -> ast.Delete:
        self.expect("FROM")
        table = self.name("a table name")
        self.expect("WHERE")
        where = self.condition()
        returning = self.returning()
        if returning not in (None, "ALL_OLD"):
            shown = {v: " ".join(k) for k, v in RETURNING.items()}[returning]
            raise ValidationException(f"Invalid returning clause: RETURNING {shown} *. Only RETURNING ALL OLD * is "
                                      "allowed in DELETE statements.")
        return ast.Delete(table, where, returning)

    def returning(self) -> str | None:
        if not self.accept("RETURNING"):
            return None
        which = self.next().text, self.next().text
        if which not in RETURNING:
            self.pos -= 2
            raise self.unexpected("expected ALL OLD, MODIFIED OLD, ALL NEW or MODIFIED NEW")
        if not self.accept("*"):
            raise ValidationException("Expected '*' after ( MODIFIED | ALL ) ( NEW | OLD ) in RETURNING clause")
        if self.at(","):
            raise ValidationException("Invalid syntax with multiple returning elements in RETURNING clause")
        return RETURNING[which]

    # ------------------------------------------------------------ names and paths

    def name(self, what: str) -> str:
        token = self.peek()
        if token.kind not in ("ident", "qident"):
            raise self.unexpected(f"expected {what}")
        self.pos += 1
        if token.kind == "qident" and token.text == "":
            raise ValidationException("Path component cannot be an empty string")
        return token.text

    def path(self) -> ast.Path:
        if self.at("["):
            raise ValidationException("A path cannot start with a list index")
        steps: list = [self.name("an attribute name")]
        while True:
            if self.accept("."):
                if self.at("*"):
                    raise ValidationException("Unpivot path component like a.*.b are not supported")
                steps.append(self.name("an attribute name"))
            elif self.accept("["):
                token = self.next()
                if token.kind == "punct" and token.text == "*":
                    raise ValidationException("Wildcard path component like a[*].b are not supported")
                if token.kind == "string":
                    steps.append(token.text)        # a['k'] is a map key, as a.k
                elif token.kind == "number" and token.text.isdigit():
                    steps.append(int(token.text))
                else:
                    self.pos -= 1
                    raise self.unexpected("expected a list index")
                self.expect("]")
            else:
                return ast.Path(tuple(steps))

    # ------------------------------------------------------------ conditions

    def condition(self):
        operands = [self.conjunction()]
        while self.accept("OR"):
            operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else ast.Or(tuple(operands))

    def conjunction(self):
        operands = [self.negation()]
        while self.accept("AND"):
            operands.append(self.negation())
        return operands[0] if len(operands) == 1 else ast.And(tuple(operands))

    def negation(self):
        if self.accept("NOT"):
            return ast.Not(self.negation())
        return self.predicate()

    def predicate(self):
        left = self.additive()
        token = self.peek()
        if token.kind == "punct" and token.text in COMPARISONS:
            self.pos += 1
            return ast.Compare(COMPARISONS[token.text], left, self.additive())
        negated = self.at("NOT") and self.at("BETWEEN", "IN", ahead=1)
        if negated:
            self.pos += 1
        if self.accept("BETWEEN"):
            low = self.additive()
            self.expect("AND")
            result = ast.Between(left, low, self.additive())
            return ast.Not(result) if negated else result
        if self.accept("IN"):
            result = ast.In(left, self.in_list())
            return ast.Not(result) if negated else result
        if self.accept("IS"):
            is_negated = self.accept("NOT")
            token = self.next()
            type_name = token.text.upper()
            if token.kind not in ("keyword", "ident") or type_name not in IS_TYPES:
                raise ValidationException(f"Unsupported data type for IS operator: {token.text}. Supported data "
                                          "types are [MISSING, NULL, BOOLEAN, BLOB, STRING, NUMERIC, STRUCT, "
                                          "TUPLE, LIST]")
            return ast.Is(left, type_name, is_negated)
        return left

    def in_list(self) -> tuple:
        close = "]" if self.accept("[") else ")" if self.accept("(") else None
        items = self.items(close) if close is not None else ()
        if not items:
            raise ValidationException(INVALID_IN)
        return items

    def additive(self):
        left = self.primary()
        while self.at("+", "-"):
            op = self.next().text
            left = ast.Arith(op, left, self.primary())
        return left

    def primary(self):
        token = self.peek()
        if self.accept("("):
            inner = self.condition()
            self.expect(")")
            return inner
        if token.kind == "ident" and self.at("(", ahead=1):
            return self.call()
        if token.kind in ("ident", "qident"):
            return self.path()
        if self.accept("MISSING"):
            return ast.Missing()
        if self.accept("EXISTS"):
            raise ValidationException("EXISTS can only be used in ExecuteTransaction write requests.")
        return self.value()

    def call(self) -> ast.Call:
        name = self.next().text.lower()
        self.expect("(")
        args = []
        if not self.at(")"):
            args.append(self.additive())
            while self.accept(","):
                args.append(self.additive())
        self.expect(")")
        return ast.Call(name, tuple(args))

    # ------------------------------------------------------------ values

    def value(self):
        token = self.next()
        kind, text = token.kind, token.text
        if kind == "string":
            return ast.Scalar({"S": text})
        if kind == "number":
            return ast.Scalar({"N": text})
        if kind == "punct" and text == "-" and self.peek().kind == "number":
            return ast.Scalar({"N": "-" + self.next().text})
        if kind == "param":
            self.params += 1
            return ast.Param(self.params - 1)
        if kind == "keyword":
            if text in ("TRUE", "FALSE"):
                return ast.Scalar({"BOOL": text == "TRUE"})
            if text == "NULL":
                return ast.Scalar({"NULL": True})
            if text == "MISSING":
                return ast.Missing()
        if kind == "punct":
            if text == "{":
                return self.tuple_value()
            if text == "[":
                return ast.List(self.items("]"))
            if text == "<<":
                return ast.Bag(self.items(">>"))
        self.pos -= 1
        raise self.unexpected("expected a value")

    def items(self, close: str) -> tuple:
        items = []
        if not self.accept(close):
            items.append(self.value())
            while self.accept(","):
                items.append(self.value())
            self.expect(close)
        return tuple(items)

    def tuple_value(self) -> ast.Tuple:
        pairs = []
        seen = set()
        if not self.accept("}"):
            while True:
                key = self.next()
                if key.kind != "string":
                    self.pos -= 1
                    raise self.unexpected("expected a string as a tuple key")
                if key.text in seen:
                    raise ValidationException(f"Duplicate keys in tuple. Key: {key.text}")
                seen.add(key.text)
                self.expect(":")
                pairs.append((key.text, self.value()))
                if not self.accept(","):
                    break
            self.expect("}")
        return ast.Tuple(tuple(pairs))
