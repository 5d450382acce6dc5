"""Derived columns: arithmetic over other columns of the row (``quantity * unit_price``).

Parsed with ``ast`` against a whitelist and evaluated on NumPy float64 arrays: no ``eval``,
no attribute access, no calls but a few element-wise functions. An expression's cost is
bounded before anything runs (specs may be drafted by an LLM): at most ``MAX_CHARS``
characters and ``MAX_NODES`` syntax nodes, constants that are finite float64 numbers, and
every column-free part folded once at parse time, so ``9 ** 9 ** 9`` or ``1e308 ** 2`` is
refused up front instead of hanging or overflowing. Numbers are always float64 (never
Python integers, whose powers can take unbounded time and memory); per row, division by
zero and invalid operations (``sqrt(-1)``) give nulls, while a result beyond float64's
range raises :class:`ExprOverflowError`.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "FUNCTIONS",
    "MAX_CHARS",
    "MAX_NODES",
    "ExprOverflowError",
    "evaluate",
    "parse",
    "referenced_columns",
]

#: bounds on an expression's size (a few dozen characters and nodes cover any real formula)
MAX_CHARS = 1000
MAX_NODES = 200

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide,
    ast.Mod: np.mod,
    ast.Pow: np.power,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


def round_values(x: Any, n: Any = 0.0) -> Any:
    """``np.round(x, n)``, keeping values too large to scale by ``10**n`` (they have no decimals)."""
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = np.round(x, int(n))
    return np.where(np.isfinite(rounded) | ~np.isfinite(x), rounded, x)


def _fold(combine: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def apply(first: Any, *rest: Any) -> Any:
        out = first
        for value in rest:
            out = combine(out, value)
        return out

    return apply


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": np.abs,
    "round": round_values,
    "min": _fold(np.minimum),
    "max": _fold(np.maximum),
    "sqrt": np.sqrt,
    "log": np.log,
    "exp": np.exp,
    "floor": np.floor,
    "ceil": np.ceil,
}
#: function -> (fewest, most) arguments (None: any number)
_ARITY: dict[str, tuple[int, int | None]] = {
    "round": (1, 2),
    "min": (2, None),
    "max": (2, None),
    **{name: (1, 1) for name in ("abs", "sqrt", "log", "exp", "floor", "ceil")},
}
_MAX_FLOAT = float(np.finfo(np.float64).max)


class ExprOverflowError(ArithmeticError):
    """An expression's value on the generated rows is beyond float64's range."""


_ALLOWED = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.BoolOp,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Call,
    ast.IfExp,
    ast.USub,
    ast.UAdd,
    ast.Not,
    ast.And,
    ast.Or,
    *_BINARY,
    *_COMPARE,
)


def _check_node(sub: ast.AST, text: str) -> None:
    if not isinstance(sub, _ALLOWED):
        raise ValueError(
            f"expr {text!r}: {type(sub).__name__} is not allowed; use + - * / // % **, "
            f"comparisons, and/or, 'x if c else y', {', '.join(FUNCTIONS)}"
        )
    if isinstance(sub, ast.Call):
        if not (isinstance(sub.func, ast.Name) and sub.func.id in FUNCTIONS):
            raise ValueError(f"expr {text!r}: only these functions are allowed: {', '.join(FUNCTIONS)}")
        low, high = _ARITY[sub.func.id]
        if len(sub.args) < low or (high is not None and len(sub.args) > high):
            want = f"{low}" if low == high else f"{low} or more" if high is None else f"{low} to {high}"
            raise ValueError(f"expr {text!r}: {sub.func.id}() takes {want} argument(s), got {len(sub.args)}")
        if sub.func.id == "round" and len(sub.args) == 2:
            digits = _whole_number(sub.args[1])
            if digits is None or not -15 <= digits <= 15:
                raise ValueError(
                    f"expr {text!r}: round(x, n) needs n as a whole number from -15 to 15, e.g. round(x, 2)"
                )
    if isinstance(sub, ast.Constant):
        if not isinstance(sub.value, (int, float, bool)):
            raise ValueError(f"expr {text!r}: constants must be numbers")
        if not abs(sub.value) <= _MAX_FLOAT:
            raise ValueError(
                f"expr {text!r}: the constant {str(sub.value)[:12]}... is beyond float64's range (±1.8e308): "
                "use a smaller one"
            )


def _whole_number(node: ast.AST) -> int | None:
    """The value of an integer literal (``2``, ``-2``), else None."""
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign, node = (-1 if isinstance(node.op, ast.USub) else 1), node.operand
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return sign * node.value
    return None


def _fold_constants(tree: ast.Expression, text: str) -> None:
    """Evaluate every column-free part once, so a constant that overflows is refused here."""

    def check(node: ast.AST) -> None:
        if isinstance(node, ast.Expression):
            node = node.body
        if not isinstance(node, ast.expr):  # operators and contexts
            return
        if _reads_columns(node):
            for child in ast.iter_child_nodes(node):
                check(child)
            return
        try:
            with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
                value = _eval(node, {})
        except (FloatingPointError, OverflowError, ZeroDivisionError) as exc:
            why = str(exc).split(" encountered")[0]
            raise ValueError(
                f"expr {text!r}: {ast.unparse(node)} is not a finite number ({why}): "
                "rewrite that part (the result must stay within ±1.8e308)"
            ) from None
        if not np.all(np.isfinite(value)):
            raise ValueError(f"expr {text!r}: {ast.unparse(node)} is not a finite number: rewrite that part")

    check(tree)


def _reads_columns(node: ast.AST) -> bool:
    calls = {id(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}
    return any(isinstance(n, ast.Name) and id(n) not in calls for n in ast.walk(node))


@lru_cache(maxsize=512)
def parse(text: str) -> ast.Expression:
    """The checked syntax tree of ``text``, or ``ValueError`` saying what to change."""
    if len(text) > MAX_CHARS:
        raise ValueError(
            f"expr of {len(text):,} characters: at most {MAX_CHARS:,}; split it into several derived columns"
        )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"expr {text!r} does not parse at column {exc.offset}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ValueError(
            f"expr {text[:40]!r}... nests too deeply: split it into several derived columns"
        ) from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ValueError(
            f"expr {text[:40]!r}... has {len(nodes)} parts, at most {MAX_NODES}: "
            "split it into several derived columns"
        )
    for sub in nodes:
        _check_node(sub, text)
    _fold_constants(tree, text)
    return tree


def referenced_columns(text: str) -> set[str]:
    """Column names an expression reads (function names excluded)."""
    tree = parse(text)
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in calls}


def evaluate(text: str, columns: Mapping[str, np.ndarray], rows: int | None = None) -> np.ndarray:
    """Evaluate ``text`` element-wise over ``columns`` (float64; ``rows`` long when given,
    even for an expression that reads no column).

    Division by zero and invalid operations give nan/inf (the caller writes nulls); a value
    beyond float64's range raises ``ExprOverflowError``.
    """
    try:
        with np.errstate(divide="ignore", invalid="ignore", under="ignore", over="raise"):
            values = np.asarray(_eval(parse(text).body, columns), dtype=np.float64)
    except FloatingPointError:
        raise ExprOverflowError(f"expr {text!r} overflows float64 (beyond ±1.8e308)") from None
    return values if rows is None or values.shape == (rows,) else np.broadcast_to(values, (rows,)).copy()


def _as_float(value: Any) -> Any:
    return np.asarray(value, dtype=np.float64) if isinstance(value, np.ndarray) else np.float64(value)


def _eval(node: ast.AST, cols: Mapping[str, np.ndarray]) -> Any:
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, (int, float))  # parse() allows numbers (and bools) only
        return np.float64(node.value)
    if isinstance(node, ast.Name):
        return cols[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, cols), _eval(node.right, cols))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, cols)
        if isinstance(node.op, ast.Not):
            return _as_float(np.logical_not(value))
        return np.negative(value) if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Compare):
        left, result = _eval(node.left, cols), np.True_
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, cols)
            result = np.logical_and(result, _COMPARE[type(op)](left, right))
            left = right
        return _as_float(result)
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, cols) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        return _as_float(_fold(combine)(*values))
    if isinstance(node, ast.IfExp):
        test = _eval(node.test, cols)
        return np.where(test != 0, _eval(node.body, cols), _eval(node.orelse, cols))
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    return FUNCTIONS[node.func.id](*(_eval(a, cols) for a in node.args))
