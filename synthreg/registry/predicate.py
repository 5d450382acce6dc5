"""A safe, SQL-like ``--where`` filter over the columns of one table.

The text is read by a hand-written tokenizer and a recursive-descent parser (no
``eval``, no Python ``ast``) into a small tree, type-checked against the spec's
column types, and turned into Arrow compute calls. The grammar, keywords
case-insensitive::

    where      := or_expr END
    or_expr    := and_expr (OR and_expr)*
    and_expr   := not_expr (AND not_expr)*
    not_expr   := NOT not_expr | '(' or_expr ')' | condition
    condition  := column op value                      op: = != <> < <= > >=
                | column [NOT] IN '(' value (',' value)* ')'
                | column IS [NOT] NULL
                | column [NOT] BETWEEN value AND value
                | column [NOT] LIKE 'pattern'          % any run, _ one character
                | column [NOT] ILIKE 'pattern'         LIKE ignoring case
                | column                               a bool column on its own
    column     := name | "name"                        the quoted form for a column named like a keyword
    value      := [-] integer | [-] decimal | 'string' ('' is a quote) | TRUE | FALSE

Numbers compare with int and float columns, TRUE/FALSE with bool columns, strings
with category, text and uuid columns, and ISO strings (``'2022-01-01'``,
``'2022-01-01 12:30'``) with date and datetime columns. NULL values follow SQL's
three-valued logic: a comparison with NULL is unknown, and unknown rows never
match, not even under NOT; use ``IS NULL`` to select them.

``parse_where`` returns a :class:`Predicate`: ``.expression`` is a
``pyarrow.compute.Expression`` for ``dataset.to_table(filter=...)``, and
``.mask(batch)`` evaluates the same tree on a table or record batch in memory.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from synthreg.errors import UsageError

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "Predicate", "parse_where"]

#: The longest expression accepted, in characters.
MAX_LENGTH = 10_000
#: The deepest nesting of parentheses and NOTs accepted.
MAX_DEPTH = 64

_KEYWORDS = {"AND", "OR", "NOT", "IN", "IS", "NULL", "BETWEEN", "LIKE", "ILIKE", "TRUE", "FALSE"}
_COMPARISONS = {"=": "equal", "!=": "not_equal", "<>": "not_equal", "<": "less", "<=": "less_equal"}
_COMPARISONS |= {">": "greater", ">=": "greater_equal"}
_TOKEN_RE = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)
      | (?P<string>'(?:[^']|'')*')
      | (?P<quoted>"[A-Za-z_][A-Za-z0-9_]*")
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op><>|!=|<=|>=|=|<|>)
      | (?P<punct>[(),-])""",
    re.VERBOSE,
)
_STRING_TYPES = ("category", "text", "uuid", "llm_text")
_INT64_MAX = 2**63 - 1
_VALUE_HINT = "expected a value (a number, a 'quoted string', TRUE or FALSE)"


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, name, keyword, op, punct, end
    text: str
    pos: int

    @property
    def shown(self) -> str:
        return "end of expression" if self.kind == "end" else repr(self.text)


def _tokenize(text: str, fail: Callable[[str], UsageError]) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            char = text[pos]
            if char in "'\"":
                close = "a ' (write '' for a quote inside)" if char == "'" else 'a "'
                raise fail(f"unterminated {char} starting at position {pos}; close it with {close}")
            raise fail(
                f"unexpected character {char!r} at position {pos}; a condition looks like "
                "column = value, joined with AND/OR"
            )
        kind = match.lastgroup or ""
        word = match.group()
        if kind == "word" and word.upper() in _KEYWORDS:
            kind, word = "keyword", word.upper()
        elif kind in ("word", "quoted"):
            kind, word = "name", word.strip('"')
        if kind != "space":
            tokens.append(_Token(kind, word, pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


# ---------------------------------------------------------------- the tree

#: A column getter: (column name, Arrow type to read it as) -> an Expression or an array.
_Getter = Callable[[str, pa.DataType], Any]


def _null_if_null(column: Any, result: Any) -> Any:
    """``result`` where ``column`` is valid, NULL elsewhere (SQL: x IN (...) is unknown for NULL x)."""
    return pc.if_else(pc.is_valid(column), result, pa.scalar(None, pa.bool_()))


@dataclass(frozen=True)
class _Compare:
    column: str
    function: str
    value: pa.Scalar

    def build(self, get: _Getter) -> Any:
        return getattr(pc, self.function)(get(self.column, self.value.type), self.value)


@dataclass(frozen=True)
class _In:
    column: str
    values: pa.Array
    negated: bool

    def build(self, get: _Getter) -> Any:
        column = get(self.column, self.values.type)
        found = _null_if_null(column, pc.is_in(column, value_set=self.values))
        return pc.invert(found) if self.negated else found


@dataclass(frozen=True)
class _IsNull:
    column: str
    arrow_type: pa.DataType
    negated: bool

    def build(self, get: _Getter) -> Any:
        column = get(self.column, self.arrow_type)
        return pc.is_valid(column) if self.negated else pc.is_null(column)


@dataclass(frozen=True)
class _Between:
    column: str
    low: pa.Scalar
    high: pa.Scalar
    negated: bool

    def build(self, get: _Getter) -> Any:
        column = get(self.column, self.low.type)
        inside = pc.and_kleene(pc.greater_equal(column, self.low), pc.less_equal(column, self.high))
        return pc.invert(inside) if self.negated else inside


@dataclass(frozen=True)
class _Like:
    column: str
    pattern: str
    ignore_case: bool
    negated: bool

    def build(self, get: _Getter) -> Any:
        column = get(self.column, pa.string())
        found = pc.match_like(column, self.pattern, ignore_case=self.ignore_case)
        return pc.invert(found) if self.negated else found


@dataclass(frozen=True)
class _Logic:
    function: str  # and_kleene, or_kleene
    left: _Node
    right: _Node

    def build(self, get: _Getter) -> Any:
        return getattr(pc, self.function)(self.left.build(get), self.right.build(get))


@dataclass(frozen=True)
class _Not:
    operand: _Node

    def build(self, get: _Getter) -> Any:
        return pc.invert(self.operand.build(get))


_Node = _Compare | _In | _IsNull | _Between | _Like | _Logic | _Not


@dataclass(frozen=True)
class Predicate:
    """A parsed ``--where`` filter over one table.

    ``text`` is what the user wrote; ``columns`` the columns it reads (read only
    those, plus what you need besides).
    """

    text: str
    columns: tuple[str, ...]
    _node: _Node

    @property
    def expression(self) -> pc.Expression:
        """The filter as an Arrow expression (``dataset.to_table(filter=p.expression)``)."""
        return self._node.build(lambda name, typ: pc.field(name).cast(typ))

    def mask(self, data: pa.Table | pa.RecordBatch) -> pa.BooleanArray:
        """True for the rows of ``data`` that match; False for the rest (unknown included)."""
        missing = [c for c in self.columns if c not in data.schema.names]
        if missing:
            raise UsageError(
                f"--where {self.text!r} reads {', '.join(missing)}, which the data does not have; "
                f"its columns: {', '.join(data.schema.names)}"
            )
        result = self._node.build(lambda name, typ: pc.cast(data.column(name), typ))
        result = pc.fill_null(result, False)
        if isinstance(result, pa.ChunkedArray):
            result = result.combine_chunks() if result.num_chunks else pa.array([], pa.bool_())
        return result


# ---------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Literal:
    kind: str  # number, string, bool
    value: Any
    token: _Token


class _Parser:
    """Recursive descent over the token list; every error names the token and its position."""

    def __init__(self, text: str, columns: Mapping[str, str]):
        self.text = text
        self.columns = columns
        self.used: list[str] = []
        self.tokens = _tokenize(text, self.error)
        self.index = 0
        self.depth = 0

    def error(self, problem: str) -> UsageError:
        return UsageError(f'--where "{self.text}": {problem}')

    def unexpected(self, expected: str, token: _Token | None = None) -> UsageError:
        token = token or self.peek
        return self.error(f"unexpected {token.shown} at position {token.pos}; {expected}")

    @property
    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def accept(self, *texts: str) -> _Token | None:
        token = self.peek
        if token.kind in ("keyword", "op", "punct") and token.text in texts:
            return self.take()
        return None

    def expect(self, text: str, expected: str) -> _Token:
        token = self.accept(text)
        if token is None:
            raise self.unexpected(expected)
        return token

    def parse(self) -> Predicate:
        node = self.or_expr()
        if self.peek.kind != "end":
            raise self.unexpected("expected AND, OR or the end of the expression")
        return Predicate(self.text, tuple(dict.fromkeys(self.used)), node)

    def or_expr(self) -> _Node:
        node = self.and_expr()
        while self.accept("OR"):
            node = _Logic("or_kleene", node, self.and_expr())
        return node

    def and_expr(self) -> _Node:
        node = self.not_expr()
        while self.accept("AND"):
            node = _Logic("and_kleene", node, self.not_expr())
        return node

    def not_expr(self) -> _Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(
                f"nested more than {MAX_DEPTH} levels deep at position {self.peek.pos}; simplify it"
            )
        if self.accept("NOT"):
            node: _Node = _Not(self.not_expr())
        elif self.accept("("):
            node = self.or_expr()
            self.expect(")", "expected ')' to close the '('")
        else:
            node = self.condition()
        self.depth -= 1
        return node

    def column(self) -> tuple[str, str]:
        token = self.take()
        if token.kind != "name":
            raise self.unexpected("expected a column name", token)
        if token.text not in self.columns:
            known = list(self.columns)
            close = difflib.get_close_matches(token.text, known, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'? The" if close else "; the"
            raise self.error(
                f"unknown column '{token.text}' at position {token.pos}{hint} table's columns are "
                f"{', '.join(known)}"
            )
        self.used.append(token.text)
        return token.text, self.columns[token.text]

    def condition(self) -> _Node:
        name, ctype = self.column()
        token = self.peek
        if token.kind == "op":
            self.take()
            return self.comparison(name, ctype, token)
        if self.accept("IS"):
            negated = self.accept("NOT") is not None
            self.expect("NULL", "expected NULL or NOT NULL after IS")
            return _IsNull(name, _arrow_type(ctype, []), negated)
        negated = self.accept("NOT") is not None
        if self.accept("IN"):
            return self.in_list(name, ctype, negated)
        if self.accept("BETWEEN"):
            return self.between(name, ctype, negated)
        like = self.accept("LIKE", "ILIKE")
        if like:
            return self.like(name, ctype, like, negated)
        if ctype == "bool" and not negated:
            return _Compare(name, "equal", pa.scalar(True))
        raise self.unexpected("expected an operator (= != < <= > >= IN IS BETWEEN LIKE)")

    def comparison(self, name: str, ctype: str, op: _Token) -> _Node:
        if ctype == "bool" and op.text not in ("=", "!=", "<>"):
            raise self.error(
                f"'{op.text}' at position {op.pos} does not apply to bool column '{name}'; "
                "use = or != TRUE/FALSE"
            )
        literal = self.value()
        return _Compare(name, _COMPARISONS[op.text], self.scalar(name, ctype, [literal])[0])

    def in_list(self, name: str, ctype: str, negated: bool) -> _Node:
        self.expect("(", "expected '(' to start the list of values, e.g. IN (1, 2)")
        literals = [self.value()]
        while self.accept(","):
            literals.append(self.value())
        self.expect(")", "expected ',' or ')' to close the list")
        values = self.scalar(name, ctype, literals)
        return _In(name, pa.array([v.as_py() for v in values], values[0].type), negated)

    def between(self, name: str, ctype: str, negated: bool) -> _Node:
        self.ordered(name, ctype, "BETWEEN")
        low = self.value()
        self.expect("AND", "expected AND between the two bounds, e.g. BETWEEN 1 AND 9")
        high = self.value()
        low_scalar, high_scalar = self.scalar(name, ctype, [low, high])
        return _Between(name, low_scalar, high_scalar, negated)

    def like(self, name: str, ctype: str, op: _Token, negated: bool) -> _Node:
        if ctype not in _STRING_TYPES:
            raise self.error(
                f"{op.text} at position {op.pos} applies to text columns; '{name}' is {ctype}: "
                "use = or a range instead"
            )
        literal = self.value()
        if literal.kind != "string":
            raise self.unexpected(f"{op.text} needs a 'quoted pattern', e.g. 'abc%'", literal.token)
        return _Like(name, literal.value, op.text == "ILIKE", negated)

    def ordered(self, name: str, ctype: str, what: str) -> None:
        if ctype == "bool":
            raise self.error(f"{what} does not apply to bool column '{name}'; use = TRUE or = FALSE")

    def value(self) -> _Literal:
        token = self.take()
        sign = ""
        if token.kind == "punct" and token.text == "-":
            sign, token = "-", self.take()
            if token.kind != "number":
                raise self.unexpected("expected a number after '-'", token)
        if token.kind == "number":
            number = sign + token.text
            return _Literal("number", float(number) if "." in number else int(number), token)
        if token.kind == "string":
            return _Literal("string", token.text[1:-1].replace("''", "'"), token)
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE"):
            return _Literal("bool", token.text == "TRUE", token)
        if token.kind == "keyword" and token.text == "NULL":
            raise self.error(
                f"NULL at position {token.pos} is not a value to compare with; "
                "write 'column IS NULL' or 'column IS NOT NULL'"
            )
        raise self.unexpected(_VALUE_HINT, token)

    def scalar(self, name: str, ctype: str, literals: list[_Literal]) -> list[pa.Scalar]:
        """The literals as Arrow scalars of one type fit for column ``name``, or a type error."""
        values = [self.convert(name, ctype, lit) for lit in literals]
        typ = _arrow_type(ctype, values)
        return [pa.scalar(v, typ) for v in values]

    def convert(self, name: str, ctype: str, literal: _Literal) -> Any:
        wanted = _WANTED.get(ctype, "string")
        if literal.kind != wanted:
            shown = f"{literal.value!r}" if literal.kind == "string" else literal.token.text
            raise self.error(
                f"type mismatch at position {literal.token.pos}: column '{name}' is {ctype}, "
                f"so compare it with {_DESCRIBE[ctype]}, not {shown}"
            )
        if literal.kind == "number" and isinstance(literal.value, int) and abs(literal.value) > _INT64_MAX:
            raise self.error(f"number at position {literal.token.pos} is out of range; use a smaller one")
        if ctype in ("date", "datetime"):
            return self.moment(ctype, literal)
        return literal.value

    def moment(self, ctype: str, literal: _Literal) -> dt.date:
        parse = dt.date.fromisoformat if ctype == "date" else dt.datetime.fromisoformat
        try:
            value = parse(literal.value)
        except ValueError:
            example = "'2022-01-31'" if ctype == "date" else "'2022-01-31' or '2022-01-31 08:30:00'"
            raise self.error(
                f"{literal.value!r} at position {literal.token.pos} is not a {ctype}; write it as {example}"
            ) from None
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value


_WANTED = {"int": "number", "float": "number", "bool": "bool"}
_DESCRIBE = {
    "int": "a number",
    "float": "a number",
    "bool": "TRUE or FALSE",
    "date": "a date string such as '2022-01-31'",
    "datetime": "a date/time string such as '2022-01-31 08:30:00'",
    **{t: "a 'quoted string'" for t in _STRING_TYPES},
}


def _arrow_type(ctype: str, values: list[Any]) -> pa.DataType:
    """The Arrow type a column of spec type ``ctype`` is compared as, given the literals."""
    if ctype in ("int", "float"):
        exact = ctype == "int" and all(isinstance(v, int) for v in values)
        return pa.int64() if exact else pa.float64()
    return {
        "bool": pa.bool_(),
        "date": pa.date32(),
        "datetime": pa.timestamp("us"),
    }.get(ctype, pa.string())


def parse_where(text: str, columns: Mapping[str, str]) -> Predicate:
    """Parse a ``--where`` filter over a table whose columns are ``{name: spec type}``.

    Raises UsageError naming the offending token and its position (0-based), an
    unknown column (with the table's columns), or a type mismatch.
    """
    if len(text) > MAX_LENGTH:
        raise UsageError(f"--where is {len(text):,} characters long; keep it under {MAX_LENGTH:,}")
    if not text.strip():
        raise UsageError("--where is empty; write a condition such as \"age > 30 AND plan = 'pro'\"")
    return _Parser(text, columns).parse()
