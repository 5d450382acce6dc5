"""Bad spec content is a clear error (exit 2, the file, the place, the fix), never an internal error
or a hang, and nothing is registered: no version, no data, no staging left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import synthreg
from synthreg.cli.app import app
from synthreg.errors import SpecError
from synthreg.generators.engine import generate
from synthreg.generators.spec_io import parse_spec

runner = CliRunner()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str) -> Path:
    """One workspace for the module: no case may register anything in it."""
    path = tmp_path_factory.mktemp("bad") / "ws"
    synthreg.init(path)
    return path


def _spec(columns: dict[str, Any], rows: int = 5, **table: Any) -> dict[str, Any]:
    return {"seed": 1, "tables": {"t": {"rows": rows, "columns": columns, **table}}}


def _create(root: Path, spec: Path, *extra: str) -> Any:
    return runner.invoke(app, ["-C", str(root), "create", "bad", "--spec", str(spec), *extra])


def _assert_nothing_registered(root: Path) -> None:
    assert synthreg.open(root).list() == []
    assert not (root / "data" / "bad").exists()
    staging = root / ".registry" / "staging"
    assert not staging.exists() or not any(staging.iterdir())


def _refused(root: Path, spec: Path, *says: str, extra: tuple[str, ...] = ()) -> str:
    result = _create(root, spec, *extra)
    assert result.exit_code == 2, result.output
    assert "internal error" not in result.stderr
    assert f"error: {spec}" in result.stderr  # the file comes first
    for text in says:
        assert text in result.stderr
    _assert_nothing_registered(root)
    return str(result.stderr)


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_binary_spec_file_is_a_spec_error(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"tables:\n  t: {rows: 3}\n\xff\xfe\x00\x81binary")
    _refused(root, path, "not UTF-8 text (byte 23 is 0xff)", "save it as UTF-8")


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("9 ** 9 ** 9", "9 ** 9 ** 9 is not a finite number (overflow)"),
        ("1e308 ** 2", "1e+308 ** 2 is not a finite number (overflow)"),
        ("v + 10 ** 400", "10 ** 400 is not a finite number (overflow)"),
        ("v / 0 + 1 / 0", "1 / 0 is not a finite number (divide by zero)"),
        ("sqrt(-1) * v", "sqrt(-1) is not a finite number (invalid value)"),
        ("9" * 400, "beyond float64's range"),
        ("+".join(["v"] * 300), "at most 200"),
        ("-" * 900 + "v", "at most 200"),
        ("x" * 1001, "at most 1,000"),
        ("min(v)", "min() takes 2 or more argument(s), got 1"),
        ("round(v, v)", "round(x, n) needs n as a whole number"),
        ("v.real", "Attribute is not allowed"),
    ],
)
def test_costly_or_broken_expressions_are_refused_up_front(
    root: Path, tmp_path: Path, expr: str, says: str
) -> None:
    spec = _write(tmp_path, _spec({"v": {"type": "float"}, "x": {"type": "float", "expr": expr}}))
    stderr = _refused(root, spec, "tables.t.columns.x.expr", says)
    assert stderr.count("\n") <= 3  # one problem, said once


def test_derived_columns_in_a_cycle_are_a_spec_error(root: Path, tmp_path: Path) -> None:
    columns = {
        "a": {"type": "float", "expr": "c + 1"},
        "b": {"type": "float", "expr": "a * 2"},
        "c": {"type": "float", "expr": "b - 1"},
    }
    _refused(
        root,
        _write(tmp_path, _spec(columns)),
        "tables.t.columns.a",
        "cycle (a -> c -> b -> a)",
        "make one of them a drawn column",
    )


def test_an_email_made_from_itself_is_a_cycle(root: Path, tmp_path: Path) -> None:
    columns = {
        "last": {"type": "text", "vocab": "last_name"},
        "email": {"type": "text", "vocab": "email", "from": ["email", "last"]},
    }
    _refused(root, _write(tmp_path, _spec(columns)), "cycle (email -> email)")


@pytest.mark.parametrize(
    ("columns", "where", "says"),
    [
        (  # overflow that only the generated values show
            {"v": {"type": "float", "min": 1, "max": 2}, "x": {"type": "float", "expr": "exp(v * 1000)"}},
            "tables.t.columns.x.expr",
            "overflows float64",
        ),
        (
            {"v": {"type": "float", "min": 1, "max": 2}, "x": {"type": "int", "expr": "v * 1e300"}},
            "tables.t.columns.x.expr",
            "beyond the int64 range",
        ),
        (
            {"v": {"type": "float", "distribution": {"kind": "lognormal", "mean": 1000, "sigma": 1}}},
            "tables.t.columns.v",
            "values beyond float64's range",
        ),
        (
            {"v": {"type": "int", "distribution": {"kind": "normal", "mean": 1e300, "std": 1}}},
            "tables.t.columns.v",
            "beyond the int64 range",
        ),
        (
            {"v": {"type": "int", "distribution": {"kind": "poisson", "lam": 1e300}}},
            "tables.t.columns.v",
            "cannot be drawn from",
        ),
        ({"v": {"type": "int", "min": 0, "max": 1e300}}, "tables.t.columns.v.max", "use type: float"),
        ({"v": {"type": "int", "min": 0.2, "max": 0.7}}, "tables.t.columns.v", "no whole number lies"),
        ({"v": {"type": "float", "min": ".inf"}}, "tables.t.columns.v.min", "finite number"),
        (
            {"v": {"type": "int", "distribution": {"kind": "sequence", "start": 1, "step": 1e18}}},
            "tables.t.columns.v.distribution",
            "beyond the int64 range",
        ),
    ],
)
def test_numbers_beyond_their_type_are_a_spec_error(
    root: Path, tmp_path: Path, columns: dict[str, Any], where: str, says: str
) -> None:
    text = yaml.safe_dump(_spec(columns, rows=10)).replace("'.inf'", ".inf")
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    _refused(root, path, where, says)


def test_noise_that_overflows_its_column_is_a_spec_error(root: Path, tmp_path: Path) -> None:
    columns = {"v": {"type": "int", "min": 1, "max": 9}}
    noise = [{"kind": "outliers", "column": "v", "rate": 0.5, "factor": 1e300}]
    _refused(
        root, _write(tmp_path, _spec(columns, rows=20, noise=noise)), "tables.t.noise.0", "lower its factor"
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("tables: {t: {rows: 3, columns: {d: {type: date, start: 2024-13-45, end: 2025-01-01}}}}", "month"),
        ("tables: {t: {rows: " + "9" * 5000 + "}}", "integer string conversion"),
        ("tables: [" * 3000, "nests too deeply"),
        ("a: &a [*a]\ntables: {t: {rows: 1, columns: {x: {type: int}}}, y: *a}", "contains itself"),
    ],
)
def test_yaml_that_cannot_be_read_is_a_spec_error(root: Path, tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    _refused(root, path, says)


@pytest.mark.parametrize("scale", ["inf", "nan", "1e12"])
def test_a_scale_out_of_range_is_a_spec_error(root: Path, tmp_path: Path, scale: str) -> None:
    spec = _write(tmp_path, _spec({"v": {"type": "int"}}))
    _refused(root, spec, "--scale must be a number > 0", extra=("--scale", scale))


def test_a_spec_error_raised_in_a_worker_process_crosses_back(tmp_path: Path) -> None:
    data = _spec(
        {"v": {"type": "float", "min": 1, "max": 2}, "x": {"type": "float", "expr": "exp(v * 1000)"}}
    )
    data["tables"]["u"] = {"rows": 3, "columns": {"w": {"type": "int"}}}  # two tables: two workers
    spec = parse_spec(data, "worker.yaml")
    with pytest.raises(SpecError, match=r"^worker\.yaml: tables\.t\.columns\.x\.expr: .*overflows") as info:
        generate(spec, tmp_path, workers=2)
    assert info.value.problems[0][0] == "tables.t.columns.x.expr"


def test_expressions_keep_their_values() -> None:
    """Constants are float64 now: the values of ordinary expressions do not change."""
    import numpy as np

    from synthreg.generators.expr import evaluate

    cols = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([0.0, 2.0, -1.0])}
    assert evaluate("round(a * 1.25, 1)", cols).tolist() == [1.2, 2.5, 3.8]
    assert evaluate("a // 2 + a % 2 + 2 ** 3", cols).tolist() == [9.0, 9.0, 10.0]
    assert evaluate("(a > b) - (b > a) + (not b)", cols).tolist() == [2.0, 0.0, 1.0]
    assert evaluate("a if b else -a", cols).tolist() == [-1.0, 2.0, 3.0]
    assert evaluate("max(a, b, 2.5)", cols).tolist() == [2.5, 2.5, 3.0]
    assert evaluate("7", cols, rows=3).tolist() == [7.0, 7.0, 7.0]
    with np.errstate(all="raise"):  # division by zero per row is a null, not an error
        assert np.isinf(evaluate("a / b", cols)[0])


def test_a_bad_expectation_is_refused_before_generating(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_generation(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("generated before refusing the spec")

    monkeypatch.setattr("synthreg.registry.create.generate", no_generation)
    bad = [{"expectation": "expect_column_values_to_not_be_null", "kwargs": {"column": "nope"}}]
    spec = _write(tmp_path, _spec({"v": {"type": "int"}}, expectations=bad))
    _refused(root, spec, "tables.t.expectations.0.kwargs.column", "'nope' is not a column of t")


@pytest.mark.parametrize(
    ("tables", "says"),
    [
        (  # q is stored as int8 (its range is 1..9): r's values do not fit in it
            {
                "t": {
                    "rows": 20,
                    "columns": {
                        "q": {"type": "int", "min": 1, "max": 9},
                        "r": {"type": "int", "min": 0, "max": 1000},
                    },
                    "constraints": [
                        {"kind": "inequality", "left": "q", "op": ">=", "right": "r", "action": "cap"}
                    ],
                }
            },
            "beyond the int8 range (-128..127): give q a range (min/max) that holds r's values",
        ),
        (  # redistributing up to the limit (1000) overflows int8 as well
            {
                "p": {"rows": 50, "primary_key": "id", "columns": {"id": {"type": "int"}}},
                "t": {
                    "rows": 200,
                    "columns": {
                        "u": {"type": "int", "foreign_key": "p.id", "skew": 10},
                        "q": {"type": "int", "min": 100, "max": 120},
                    },
                    "constraints": [
                        {
                            "kind": "sum_limit",
                            "group_by": ["u"],
                            "column": "q",
                            "limit": 1000,
                            "action": "redistribute",
                        }
                    ],
                },
            },
            "beyond the int8 range (-128..127): give q a max that holds the limit, or use action cap",
        ),
    ],
)
def test_rules_that_would_wrap_narrow_ints_are_a_spec_error(
    root: Path, tmp_path: Path, tables: dict[str, Any], says: str
) -> None:
    """NumPy wraps such values silently (a 'q' of -108 with min 100): refused instead."""
    _refused(root, _write(tmp_path, {"seed": 1, "tables": tables}), "tables.t.constraints.0", says)
