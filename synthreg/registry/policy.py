"""The review policy of ``registry.toml``: what status a new version starts in.

``auto_approve`` is a boolean expression over the version's facts, e.g.
``"validation_passed and quality_score >= 0.9"`` or, with the facts of ``registry evaluate``,
``"validation_passed and fidelity >= 0.8 and dcr_share <= 0.55"``; ``"never"`` leaves every passing
version pending, and ``require_human = true`` does too. A version whose validation
failed is always rejected. The expression is parsed by hand (names, numbers,
comparisons, and/or/not, parentheses): no ``eval``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from synthreg.config import Settings
from synthreg.errors import WorkspaceError

__all__ = ["EVALUATION_FACTS", "FACTS", "check_rule", "evaluate_rule", "review_status"]

#: the facts ``registry evaluate`` adds (None until a version is evaluated: a rule using them
#: then leaves it pending, and the evaluate that measures them approves it when the rule holds)
EVALUATION_FACTS = ("fidelity", "dcr_share", "nndr", "exact_matches", "tstr_ratio")
#: the names a rule may use
FACTS = ("validation_passed", "quality_score", "success_ratio", "failed_checks", "rows", *EVALUATION_FACTS)
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|(<=|>=|==|!=|<|>)|(\(|\))|([A-Za-z_]+))")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _tokens(rule: str) -> list[str]:
    out, pos = [], 0
    while pos < len(rule.rstrip()):
        match = _TOKEN.match(rule, pos)
        if match is None:
            raise WorkspaceError(
                f"registry.toml [review] auto_approve {rule!r}: cannot read at position {pos}; "
                f"use {', '.join(FACTS)}, numbers, < <= > >= == !=, and, or, not, ( )"
            )
        out.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, rule: str, facts: dict[str, Any]):
        self.rule, self.facts, self.toks, self.i = rule, facts, _tokens(rule), 0

    def fail(self, what: str) -> WorkspaceError:
        near = self.toks[self.i] if self.i < len(self.toks) else "the end"
        return WorkspaceError(f"registry.toml [review] auto_approve {self.rule!r}: {what} near {near!r}")

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise self.fail("unexpected end")
        self.i += 1
        return tok

    def parse(self) -> bool:
        value = self.or_()
        if self.peek() is not None:
            raise self.fail("unexpected token")
        return value

    def or_(self) -> bool:
        value = self.and_()
        while self.peek() == "or":
            self.take()
            right = self.and_()
            value = value or right
        return value

    def and_(self) -> bool:
        value = self.not_()
        while self.peek() == "and":
            self.take()
            right = self.not_()
            value = value and right
        return value

    def not_(self) -> bool:
        if self.peek() == "not":
            self.take()
            return not self.not_()
        if self.peek() == "(":
            self.take()
            value = self.or_()
            if self.take() != ")":
                raise self.fail("missing )")
            return value
        return self.comparison()

    def atom(self) -> Any:
        tok = self.take()
        if re.fullmatch(r"\d+(\.\d+)?", tok):
            return float(tok)
        if tok not in FACTS:
            raise self.fail(f"unknown name {tok!r} (known: {', '.join(FACTS)})")
        return self.facts.get(tok)

    def comparison(self) -> bool:
        left = self.atom()
        if self.peek() in _OPS:
            op = self.take()
            right = self.atom()
            if left is None or right is None:
                return False  # a fact that was not measured never approves
            return _OPS[op](left, right)
        return bool(left)


def evaluate_rule(rule: str, facts: dict[str, Any]) -> bool:
    """Evaluate an ``auto_approve`` rule over a version's facts."""
    return _Parser(rule, facts).parse()


def check_rule(rule: str) -> None:
    """Raise WorkspaceError if a rule does not parse (checked with neutral facts)."""
    if rule != "never":
        evaluate_rule(rule, dict.fromkeys(FACTS, 0.0))


def review_status(settings: Settings, validation_passed: bool, facts: dict[str, Any] | None = None) -> str:
    """``rejected`` if validation failed; else ``approved`` or ``pending`` by policy."""
    if not validation_passed:
        return "rejected"
    rule = settings.auto_approve.strip()
    check_rule(rule)
    if settings.require_human or rule == "never":
        return "pending"
    values = {"validation_passed": True, **(facts or {})}
    return "approved" if evaluate_rule(rule, values) else "pending"
