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


#: bounds on what a spec document may hold once YAML aliases are expanded (a few aliases can
#: stand for billions of nodes) and how deeply it may nest; real specs are far below both
MAX_NODES = 200_000
MAX_DEPTH = 48


def _shape_problem(data: Any) -> str | None:
    """Why ``data`` is too big, too deep or cyclic to validate, or None."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Any, depth: int) -> int:
        if not isinstance(node, (dict, list, tuple)):
            return 1
        if depth > MAX_DEPTH:
            raise ValueError(f"it nests more than {MAX_DEPTH} levels deep: flatten it")
        if id(node) in open_nodes:
            raise ValueError("it contains itself (a YAML alias inside its own anchor): remove the alias")
        if id(node) not in sizes:
            open_nodes.add(id(node))
            items = [*node.keys(), *node.values()] if isinstance(node, dict) else list(node)
            total = 1
            for item in items:
                total += size(item, depth + 1)
                if total > MAX_NODES:
                    raise ValueError(
                        f"it holds more than {MAX_NODES:,} values once YAML aliases are expanded: "
                        "write the spec out without aliases, or shrink it"
                    )
            open_nodes.discard(id(node))
            sizes[id(node)] = total
        return sizes[id(node)]

    try:
        size(data, 0)
    except ValueError as exc:
        return str(exc)
    return None


def parse_spec(data: Any, source: str = "<spec>") -> Spec:
    """Validate already-parsed YAML/JSON data into a Spec, or raise SpecError."""
    if not isinstance(data, dict):
        raise SpecError(source, [("", "a spec must be a mapping with a 'tables' key; see examples/")])
    shape = _shape_problem(data)
    if shape:
        raise SpecError(source, [("", f"the spec cannot be read: {shape}")])
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(source, _format_pydantic(exc)) from None
    from synthreg.generators.spec_checks import reference_problems

    problems = reference_problems(spec)
    if problems:
        raise SpecError(source, problems)
    return spec.with_source(source)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            str(path),
            [
                (
                    "",
                    f"not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}): a spec is a YAML "
                    "or JSON text file; save it as UTF-8",
                )
            ],
        ) from None
    except OSError as exc:
        raise SpecError(
            str(path), [("", f"cannot be read ({exc.strerror}): check its permissions")]
        ) from None


def _parse_text(path: Path, text: str) -> Any:
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(str(path), [(where, f"invalid YAML: {problem}; fix the syntax there")]) from None
    except json.JSONDecodeError as exc:
        raise SpecError(
            str(path), [(f"line {exc.lineno}", f"invalid JSON: {exc.msg}; fix the syntax there")]
        ) from None
    except RecursionError:
        raise SpecError(
            str(path), [("", f"nests too deeply to read: flatten it (at most {MAX_DEPTH} levels)")]
        ) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # a value that parses as YAML but not as its type: a date like 2024-13-45, an integer of
        # thousands of digits
        raise SpecError(str(path), [("", f"a value cannot be read: {exc}; fix or quote it")]) from None


def load_spec(path: str | Path) -> Spec:
    """Read a YAML or JSON spec file."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"spec file {path} does not exist: check the path (examples/ has samples)")
    return parse_spec(_parse_text(path, _read_text(path)), str(path))


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
        if not 0 < scale < 1e9:
            raise SpecError(source, [("", f"--scale must be a number > 0 (and < 1e9), got {scale}")])
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
