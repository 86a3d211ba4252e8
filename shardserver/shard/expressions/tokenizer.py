"""The lexer of DynamoDB's expression language, and its syntax-error wording.

Owns the token rules (bare names, #name and :value placeholders, list
indexes, operators) and the exact "Syntax error; token: ..., near: ..."
message DynamoDB gives.  It turns text into tokens and never interprets
them: grammar lives in parser.py.

Any character the language does not know becomes a one-character OTHER token
rather than a lexer failure, so the parser reports it with DynamoDB's
"token/near" context like every other unexpected token.
"""

from __future__ import annotations

import functools
import re

from shardserver.errors import ValidationException

NAME = "NAME"          # a bare attribute name, keyword or function name
NAMEREF = "NAMEREF"    # "#name" placeholder
VALREF = "VALREF"      # ":value" placeholder
NUMBER = "NUMBER"      # digits, only meaningful as a list index
OTHER = "OTHER"        # a character the language does not know
EOF = "EOF"

_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<NAME>[A-Za-z][A-Za-z0-9_]*)"
    r"|(?P<NAMEREF>\#[A-Za-z0-9_]+)"
    r"|(?P<VALREF>:[A-Za-z0-9_]+)"
    r"|(?P<NUMBER>[0-9]+)"
    r"|(?P<OP><>|<=|>=|[=<>()\[\],.+\-])"
    r"|(?P<OTHER>.)",
    re.S)


class Token:
    __slots__ = ("kind", "text", "start", "end")

    def __init__(self, kind: str, text: str, start: int, end: int):
        # Operators are their own kind ("=", "(", ...) so the parser compares one field.
        self.kind = kind
        self.text = text
        self.start = start
        self.end = end

    def __repr__(self) -> str:
        return f"Token({self.kind}, {self.text!r})"


def tokenize(text: str) -> list[Token]:
    tokens = []
    for m in _TOKEN_RE.finditer(text):
        group = m.lastgroup
        if group == "ws":
            continue
        kind = m.group() if group == "OP" else group
        tokens.append(Token(kind, m.group(), m.start(), m.end()))
    tokens.append(Token(EOF, "<EOF>", len(text), len(text)))
    return tokens


@functools.lru_cache(maxsize=4096)
def placeholders(text: str) -> tuple[str, ...]:
    """The #name and :value placeholders an expression's text refers to, each
    once, in the order they appear.

    The language has no string literals, so every such token is a reference.
    """
    return tuple(dict.fromkeys(m.group() for m in _TOKEN_RE.finditer(text) if m.lastgroup in (NAMEREF, VALREF)))


def syntax_error(kind: str, text: str, tokens: list[Token], index: int) -> ValidationException:
    """DynamoDB's syntax error: the bad token and the source from the token
    before it to the token after it (as the service prints it)."""
    bad = tokens[index]
    start = tokens[index - 1].start if index > 0 else bad.start
    if bad.kind == EOF:
        end = len(text)
    else:
        nxt = tokens[index + 1]
        end = nxt.end if nxt.kind != EOF else bad.end
    near = text[start:end] if bad.kind != EOF else text[start:end].rstrip()
    return ValidationException(f'Invalid {kind}: Syntax error; token: "{bad.text}", near: "{near}"')
