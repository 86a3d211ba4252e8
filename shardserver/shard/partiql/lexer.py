"""PartiQL's tokens, as DynamoDB reads them: a function of the statement text only.

Keywords are case-insensitive; ``"..."`` is an identifier (``""`` escapes a
quote), ``'...'`` a string (``''`` escapes one), ``?`` a positional
parameter; ``--`` and ``/* */`` are comments.  It raises
``PartiQLSyntaxError`` and never looks at a table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shardserver.errors import ValidationException

MALFORMED = "Statement wasn't well formed, can't be processed: "

KEYWORDS = frozenset("""
    ALL AND AS ASC BETWEEN BY DELETE DESC EXISTS FALSE FROM IN INSERT INTO IS LIMIT MISSING MODIFIED NEW
    NOT NULL OLD OR ORDER REMOVE RETURNING SELECT SET TRUE UPDATE VALUE VALUES WHERE
""".split())

PUNCTUATION = ("<<", ">>", "<=", ">=", "<>", "!=", "||", "=", "<", ">", "(", ")", "[", "]", "{", "}",
               ",", ".", ":", ";", "*", "+", "-", "/", "%", "?")


class PartiQLSyntaxError(ValidationException):
    """A statement DynamoDB cannot parse: ValidationException with its prefix."""

    def __init__(self, detail: str):
        super().__init__(MALFORMED + detail)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str       # "keyword", "ident", "qident", "string", "number", "punct", "param", "eof"
    text: str       # keywords upper-cased; strings and quoted identifiers unescaped
    pos: int


_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos, end = 0, len(text)
    while pos < end:
        space = _SPACE.match(text, pos)
        if space:
            pos = space.end()
            continue
        if text.startswith("--", pos):
            newline = text.find("\n", pos)
            pos = end if newline < 0 else newline + 1
            continue
        if text.startswith("/*", pos):
            close = text.find("*/", pos + 2)
            if close < 0:
                raise PartiQLSyntaxError("Unterminated comment")
            pos = close + 2
            continue
        char = text[pos]
        if char in "'\"":
            value, pos_after = _quoted(text, pos, char)
            tokens.append(Token("string" if char == "'" else "qident", value, pos))
            pos = pos_after
            continue
        word = _WORD.match(text, pos)
        if word:
            upper = word.group().upper()
            kind = "keyword" if upper in KEYWORDS else "ident"
            tokens.append(Token(kind, upper if kind == "keyword" else word.group(), pos))
            pos = word.end()
            continue
        number = _NUMBER.match(text, pos)
        if number:
            tokens.append(Token("number", number.group(), pos))
            pos = number.end()
            continue
        for punct in PUNCTUATION:
            if text.startswith(punct, pos):
                tokens.append(Token("param" if punct == "?" else "punct", punct, pos))
                pos += len(punct)
                break
        else:
            raise PartiQLSyntaxError(f"Unexpected character '{char}' at position {pos}")
    tokens.append(Token("eof", "", end))
    return tokens


def _quoted(text: str, start: int, quote: str) -> tuple[str, int]:
    parts = []
    pos = start + 1
    while True:
        close = text.find(quote, pos)
        if close < 0:
            what = "string" if quote == "'" else "quoted identifier"
            raise PartiQLSyntaxError(f"Unterminated {what} starting at position {start}")
        parts.append(text[pos:close])
        if text.startswith(quote * 2, close):
            parts.append(quote)
            pos = close + 2
            continue
        return "".join(parts), close + 1
