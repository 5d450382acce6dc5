"""Derived columns: arithmetic over other columns of the row (``quantity * unit_price``).

Parsed with ``ast`` against a whitelist and evaluated on NumPy arrays: no ``eval``,
no attribute access, no calls but a few element-wise functions.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import numpy as np

__all__ = ["FUNCTIONS", "evaluate", "referenced_columns"]

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": np.abs,
    "round": lambda x, n=0: np.round(x, int(n)),
    "min": np.minimum,
    "max": np.maximum,
    "sqrt": np.sqrt,
    "log": np.log,
    "exp": np.exp,
    "floor": np.floor,
    "ceil": np.ceil,
}


def _check(node: ast.AST, text: str) -> None:
    allowed = (
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
    for sub in ast.walk(node):
        if not isinstance(sub, allowed):
            raise ValueError(
                f"expr {text!r}: {type(sub).__name__} is not allowed; use + - * / // % **, "
                f"comparisons, and/or, 'x if c else y', {', '.join(FUNCTIONS)}"
            )
        if isinstance(sub, ast.Call) and not (isinstance(sub.func, ast.Name) and sub.func.id in FUNCTIONS):
            raise ValueError(f"expr {text!r}: only these functions are allowed: {', '.join(FUNCTIONS)}")
        if isinstance(sub, ast.Constant) and not isinstance(sub.value, (int, float, bool)):
            raise ValueError(f"expr {text!r}: constants must be numbers")


@cache
def _parse(text: str) -> ast.Expression:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"expr {text!r} does not parse at column {exc.offset}: {exc.msg}") from None
    _check(tree, text)
    return tree


def referenced_columns(text: str) -> set[str]:
    """Column names an expression reads (function names excluded)."""
    tree = _parse(text)
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in calls}


def evaluate(text: str, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluate ``text`` element-wise over ``columns``."""
    return np.asarray(_eval(_parse(text).body, columns), dtype=np.float64)


def _eval(node: ast.AST, cols: Mapping[str, np.ndarray]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return cols[node.id]
    if isinstance(node, ast.BinOp):
        with np.errstate(divide="ignore", invalid="ignore"):
            return _BINARY[type(node.op)](_eval(node.left, cols), _eval(node.right, cols))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, cols)
        return (
            np.logical_not(value)
            if isinstance(node.op, ast.Not)
            else (-value if isinstance(node.op, ast.USub) else value)
        )
    if isinstance(node, ast.Compare):
        left, result = _eval(node.left, cols), True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, cols)
            result = np.logical_and(result, _COMPARE[type(op)](left, right))
            left = right
        return result
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, cols) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = values[0]
        for value in values[1:]:
            out = combine(out, value)
        return out
    if isinstance(node, ast.IfExp):
        return np.where(_eval(node.test, cols), _eval(node.body, cols), _eval(node.orelse, cols))
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    return FUNCTIONS[node.func.id](*(_eval(a, cols) for a in node.args))
