"""Project-level guarantees: CLI help, lazy imports, layer contracts, the project's DVC pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import synthreg
from synthreg import errors
from synthreg.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
runner = CliRunner()


def _commands() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def test_every_command_has_help_text() -> None:
    for name in _commands():
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, name
        assert len(result.stdout.strip().splitlines()) > 3, name


def test_every_visible_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    import typer.main

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        if not cmd.hidden:
            assert f"registry {name}" in readme, f"README does not mention 'registry {name}'"


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys; from synthreg.cli.app import app\n"
        "heavy = [m for m in ('mlflow', 'great_expectations', 'litellm', 'dvc', 'pandas', 'sqlmodel')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_python_dash_m_synthreg() -> None:
    out = subprocess.run([sys.executable, "-m", "synthreg", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "create" in out.stdout


def test_offline_defaults_are_set_and_user_values_win() -> None:
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["DVC_NO_ANALYTICS"] == "1"
    code = "import os, synthreg; print(os.environ['DO_NOT_TRACK'])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "DO_NOT_TRACK": "mine"},
    )
    assert out.stdout.strip() == "mine"


def test_error_tree_and_exit_codes() -> None:
    assert set(errors.__all__) <= set(dir(errors))
    codes = {
        errors.UsageError: 2,
        errors.SpecError: 2,
        errors.ValidationFailedError: 3,
        errors.NotFoundError: 4,
        errors.ConflictError: 5,
        errors.IntegrationError: 1,
    }
    for cls, code in codes.items():
        assert issubclass(cls, errors.SynthregError)
        assert cls.exit_code == code
        assert cls.__name__ in (errors.__doc__ or "")
    assert synthreg.__all__ == ["__version__", "init", "log_input", "open"]


def test_import_layer_contracts_hold() -> None:
    out = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_project_pipeline_dry_run() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--dry", "--force"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    assert out.returncode == 0, out.stderr
    assert "examples/build.py --registry build/registry" in out.stdout
    assert "benchmarks/bench_engine.py --schema three_table" in out.stdout


@pytest.mark.slow
def test_bench_stage_command_writes_metrics(tmp_path: Path) -> None:
    target = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/bench_engine.py"), "--total-rows", "20000", "--repeat", "1"]
    out = subprocess.run([*cmd, "--json", str(target)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    metrics = json.loads(target.read_text())["engine"]["three_table"]
    assert metrics["rows"] == 20000 and metrics["rows_per_s"] > 0 and metrics["peak_rss_mb"] > 0
