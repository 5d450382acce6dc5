"""Loading specs: YAML/JSON files and parsed data -> a validated ``Spec`` (or a ``SpecError``
listing every problem with its path and fix), and the command-line overrides (seed, rows, scale)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from synthreg.errors import NotFoundError, SpecError
from synthreg.generators.llm.column_text import LlmTextColumn
from synthreg.generators.llm.labeled_prompts import CurationPolicy, LabeledExample, LabeledTextSpec
from synthreg.generators.spec import (
    Column,
    Constraint,
    Distribution,
    Noise,
    Spec,
    Table,
    UserExpectation,
    _suggest,
)

__all__ = ["apply_overrides", "load_spec", "parse_spec"]


def _format_pydantic(error: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"] if not str(part).startswith("function-"))
        loc = re.sub(r"\.?(str|int|float|list\[str\]|dict\[str,float\]|Distribution)$", "", loc)
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            key = str(item["loc"][-1])
            parent = _model_at(loc.rsplit(".", 1)[0] if "." in loc else "")
            allowed = list(parent.model_fields) if parent else []
            aliases = ["from" if a == "from_" else a for a in allowed]
            msg = f"unknown key '{key}'{_suggest(key, aliases)} Allowed keys: {', '.join(aliases)}"
        elif item["type"] == "missing":
            msg = "required key is missing: add it"
        problems.append((loc, msg))
    return problems


def _model_at(loc: str) -> type[BaseModel] | None:
    parts = loc.split(".") if loc else []
    if not parts:
        return Spec
    if parts[0] != "tables":
        return None
    depth_models: list[type[BaseModel]] = [Spec, Spec, Table, Table, Column, Distribution]
    if len(parts) >= 5 and parts[4] == "distribution":
        return Distribution
    if len(parts) >= 5 and parts[2] == "columns" and parts[4] == "llm":
        return LlmTextColumn
    if len(parts) >= 4 and parts[2] == "llm" and parts[3] == "curation":
        return CurationPolicy
    if len(parts) >= 3 and parts[2] == "llm":
        return LabeledExample if len(parts) >= 5 and parts[3] == "examples" else LabeledTextSpec
    if len(parts) >= 3 and parts[2] in ("expectations", "constraints", "noise"):
        block: dict[str, type[BaseModel]] = {
            "expectations": UserExpectation,
            "constraints": Constraint,
            "noise": Noise,
        }
        return block[parts[2]]
    return depth_models[min(len(parts), len(depth_models) - 1)]


def parse_spec(data: Any, source: str = "<spec>") -> Spec:
    """Validate already-parsed YAML/JSON data into a Spec, or raise SpecError."""
    if not isinstance(data, dict):
        raise SpecError(source, [("", "a spec must be a mapping with a 'tables' key; see examples/")])
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(source, _format_pydantic(exc)) from None
    from synthreg.generators.spec_checks import reference_problems

    problems = reference_problems(spec)
    if problems:
        raise SpecError(source, problems)
    return spec


def load_spec(path: str | Path) -> Spec:
    """Read a YAML or JSON spec file."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"spec file {path} does not exist: check the path (examples/ has samples)")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(str(path), [(where, f"invalid YAML: {problem}; fix the syntax there")]) from None
    except json.JSONDecodeError as exc:
        raise SpecError(str(path), [(f"line {exc.lineno}", f"invalid JSON: {exc.msg}")]) from None
    return parse_spec(data, str(path))


def apply_overrides(
    spec: Spec,
    *,
    seed: int | None = None,
    rows: dict[str, int] | None = None,
    scale: float | None = None,
    source: str = "<spec>",
) -> Spec:
    """A copy of ``spec`` with a new seed, scaled and/or explicit row counts.

    ``scale`` multiplies every table's rows first (``--scale``); ``rows`` then sets
    single tables (``--rows TABLE=N``).
    """
    data = spec.model_dump(mode="json", by_alias=True)
    if scale is not None:
        if not scale > 0:
            raise SpecError(source, [("", f"--scale must be > 0, got {scale}")])
        for table in data["tables"].values():
            if table.get("llm") is None:  # LLM tables keep their samples: scaling them would buy calls
                table["rows"] = max(1, round(table["rows"] * scale)) if table["rows"] else 0
    if seed is not None:
        if seed < 0:
            raise SpecError(source, [("seed", f"--seed must be >= 0, got {seed}")])
        data["seed"] = seed
    for table, count in (rows or {}).items():
        if table not in data["tables"]:
            raise SpecError(
                source,
                [
                    (
                        f"tables.{table}",
                        f"--rows names table '{table}', which the spec does not have"
                        f"{_suggest(table, list(data['tables']))}; tables: {', '.join(data['tables'])}",
                    )
                ],
            )
        if count < 0:
            raise SpecError(source, [(f"tables.{table}.rows", f"--rows {table}={count}: rows must be >= 0")])
        data["tables"][table]["rows"] = count
        if data["tables"][table].get("llm") is not None:
            data["tables"][table]["llm"]["samples"] = count
    return parse_spec(data, source)
