"""``registry evaluate`` and ``registry compare``: metric values on hand-made data, an evaluate end
to end (files, show, card, policy, MLflow, verify, doctor), compare by the runs that used two
versions, and every bad input's exit code and message. One workspace for the module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from synthreg.cli.app import app
from synthreg.validators.fidelity import (
    contingency_similarity,
    correlation_similarity,
    ks_complement,
    ks_complement_counts,
    tv_complement,
)
from synthreg.validators.privacy import dcr_share, nndr

runner = CliRunner()
RULE = "validation_passed and fidelity >= 0.5 and dcr_share <= 0.95"


# ------------------------------------------------------------------ metrics against hand-computed values


def test_ks_complement() -> None:
    # CDFs differ most at x=2: 2/4 - 0/4 = 0.5
    assert ks_complement([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(0.5)
    assert ks_complement([1.0, np.nan, 2.0], [2.0, 1.0]) == pytest.approx(1.0)  # nulls dropped
    # children per parent {0: 1, 1: 2, 2: 1} vs {1: 4}: CDFs 0.25/0.75/1 vs 0/1/1 -> 1 - 0.25
    assert ks_complement_counts({0: 1, 1: 2, 2: 1}, {1: 4}) == pytest.approx(0.75)


def test_tv_complement_counts_null_as_a_category() -> None:
    # real a .5 b .25 null .25, synthetic a .25 b .75: TVD (.25 + .5 + .25) / 2 = .5
    assert tv_complement(["a", "a", "b", None], ["a", "b", "b", "b"]) == pytest.approx(0.5)
    assert tv_complement(["x", "y"], ["y", "x"]) == pytest.approx(1.0)


def test_pair_metrics() -> None:
    # r_real = 1, r_synthetic = -1: 1 - |1 - (-1)| / 2 = 0
    assert correlation_similarity(([1, 2, 3], [1, 2, 3]), ([1, 2, 3], [3, 2, 1])) == pytest.approx(0.0)
    assert correlation_similarity(([1, 2, 3], [2, 4, 7]), ([1, 2, 3], [2, 4, 7])) == pytest.approx(1.0)
    assert correlation_similarity(([1, 1, 1], [1, 2, 3]), ([1, 2, 3], [1, 2, 3])) is None  # constant
    # four cells of .25 vs two cells of .5: TVD (4 x .25) / 2 = .5
    real = (["a", "a", "b", "b"], ["x", "y", "x", "y"])
    synthetic = (["a", "a", "b", "b"], ["x", "x", "y", "y"])
    assert contingency_similarity(real, synthetic) == pytest.approx(0.5)


def test_dcr_share_and_nndr() -> None:
    train, holdout = np.array([[0.0], [10.0]]), np.array([[1.0], [20.0]])
    # 0.1 is nearer a training row, 19 a holdout row, 0.5 ties (0.5 to both): (1 + 0 + 0.5) / 3
    result = dcr_share(train, holdout, np.array([[0.1], [19.0], [0.5]]))
    assert result["dcr_share"] == pytest.approx(0.5)
    # to train [0, 10]: row 1 -> 1/9, row 5 -> 5/5 = 1; the 10th percentile of [1/9, 1] is 1/9 + 0.1 * (8/9)
    assert nndr(train, np.array([[1.0], [5.0]])) == pytest.approx(1 / 9 + 0.1 * 8 / 9)
    assert nndr(train, np.array([[0.0]])) == 0.0  # an exact copy


# ------------------------------------------------------------------ one workspace for the CLI tests


def _invoke(root: Path, *args: str) -> Any:
    return runner.invoke(app, ["-C", str(root), *args])


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str, small_spec_text: str) -> dict[str, Any]:
    """A workspace whose policy needs an evaluation; shop@v1 and shop@v2 (pending); real tables
    made from v1's rows with noise."""
    import pandas as pd
    import pyarrow.parquet as pq

    import synthreg as sr

    base = tmp_path_factory.mktemp("evaluate")
    root = base / "ws"
    sr.init(root)
    config = root / "registry.toml"
    config.write_text(
        config.read_text().replace('auto_approve = "validation_passed"', f'auto_approve = "{RULE}"')
    )
    spec = base / "small.yaml"
    spec.write_text(small_spec_text.replace("rows: 300", "rows: 200").replace("rows: 900", "rows: 400"))
    reg = sr.open(root)
    reg.create("shop", spec)
    reg.create("shop", spec, seed=11)
    real, rng = base / "real", np.random.default_rng(5)
    real.mkdir()
    for table in ("users", "orders"):
        frame = pq.read_table(root / "data/shop/v1/tables" / table).to_pandas()
        if table == "users":
            frame["age"] = (frame["age"] + rng.integers(-3, 4, len(frame))).clip(18, 90)
            frame["plan"] = frame["plan"].astype(str).sample(frac=1.0, random_state=1).to_numpy()
        else:
            frame["amount"] = (frame["amount"] * rng.uniform(0.9, 1.1, len(frame))).round(2)
        frame.to_parquet(real / f"{table}.parquet", index=False)
    users = pd.read_parquet(real / "users.parquet")
    users.drop(columns=["email"]).assign(extra=1).to_csv(base / "users.csv", index=False)
    return {"root": root, "real": real, "base": base}


def _against(real: Path) -> list[str]:
    return ["--against", str(real / "users.parquet"), "--against", str(real / "orders.parquet")]


def test_evaluate_end_to_end(ws: dict[str, Any]) -> None:
    root, real = ws["root"], ws["real"]
    show = json.loads(_invoke(root, "show", "shop@v1", "--json").stdout)
    assert show["status"] == "pending" and show["evaluation"] is None  # the rule needs fidelity
    result = _invoke(root, "evaluate", "shop@v1", *_against(real), "--target", "users.plan", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    summary = data["summary"]
    for key in ("fidelity", "column_shapes", "column_pair_trends", "cardinality", "dcr_share", "nndr"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["exact_matches"] >= 0 and summary["tstr_ratio"] is not None
    assert data["fidelity"]["skipped"]["users"]["user_id"].startswith("a key")
    assert "free text" in data["fidelity"]["skipped"]["users"]["email"]
    assert {c["child"] for c in data["fidelity"]["cardinality"]} == {"orders.user_id"}
    assert data["policy"] == {"rule": RULE, "before": "pending", "after": "approved"}
    assert data["mlflow_metrics_logged"] is True
    vdir = root / "data/shop/v1"
    stored = json.loads((vdir / "evaluation.json").read_text())
    assert stored["summary"] == summary and set(stored["mlflow_runs"]) == {"tstr", "trtr"}
    assert "data:image/png;base64," in (vdir / "evaluation.html").read_text()
    show = json.loads(_invoke(root, "show", "shop@v1", "--json").stdout)
    assert show["status"] == "approved" and show["evaluation"]["summary"] == summary
    card = json.loads((vdir / "datacard.json").read_text())
    assert card["evaluation"]["summary"]["fidelity"] == summary["fidelity"]
    assert card["identity"]["status"] == "approved"
    assert "## Evaluation against real data" in (vdir / "datacard.md").read_text()
    lineage = json.loads(_invoke(root, "lineage", "shop@v1", "--json").stdout)
    used = {c["run_id"] for c in lineage["consumers"]}
    assert set(stored["mlflow_runs"].values()) <= used
    assert _invoke(root, "verify", "shop@v1").exit_code == 0
    doctor = _invoke(root, "doctor")
    assert doctor.exit_code == 0, doctor.output
    # an edit of the stored evaluation is caught
    text = (vdir / "evaluation.json").read_text()
    (vdir / "evaluation.json").write_text(text.replace('"seed": 0', '"seed": 1'))
    broken = _invoke(root, "verify", "shop@v1")
    assert broken.exit_code == 1 and "evaluation.json" in broken.stderr
    (vdir / "evaluation.json").write_text(text)


def test_compare_by_runs_that_used_each_version(ws: dict[str, Any], mlflow_uri: str) -> None:
    from mlflow import MlflowClient

    root = ws["root"]
    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.create_experiment("compare-test")
    for ref, acc in (("shop@v1", 0.7), ("shop@v2", 0.8)):
        run_id = client.create_run(exp).info.run_id
        client.log_metric(run_id, "accuracy", acc)
        client.log_metric(run_id, f"only_{ref[-1]}", 1.0)
        client.set_terminated(run_id)
        assert _invoke(root, "use", ref, "--run-id", run_id).exit_code == 0
    plot = ws["base"] / "compare.png"
    result = _invoke(root, "compare", "shop@v1", "shop@v2", "--plot", str(plot), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {(r["context"], r["metric"]): r for r in data["metrics"]}
    assert rows[("training", "accuracy")]["a"] == pytest.approx(0.7)
    assert rows[("training", "accuracy")]["delta"] == pytest.approx(0.1)
    assert ("training", "only_1") not in rows  # not common to both
    assert len(data["a"]["runs"]) == 3 and len(data["b"]["runs"]) == 1  # v1: also its TSTR and TRTR runs
    assert plot.read_bytes().startswith(b"\x89PNG")
    text = _invoke(root, "compare", "shop@v1", "shop@v2")
    assert text.exit_code == 0 and "accuracy" in text.stdout


def _state(root: Path) -> tuple[str, int, bool]:
    from synthreg.integrations import git
    from synthreg.registry.audit import log_size

    return git.head(root), log_size(root), (root / "data/shop/v2/evaluation.json").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["shop@v9", "--against", "{real}/users.parquet"], 4, "v9"),
        (["shop@v2", "--against", "{base}/users.csv"], 2, "missing email; not in the version: extra"),
        (
            ["shop@v2", "--against", "{real}/users.parquet", "--target", "users.nope"],
            2,
            "'nope' does not exist",
        ),
        (["shop@v2", "--against", "{real}/users.parquet", "--target", "users.user_id"], 2, "is a key"),
        (["shop@v2", "--against", "{base}/const/users.parquet", "--target", "users.plan"], 2, "is constant"),
        (["shop@v2", "--against", "{base}/junk/users.parquet"], 2, "cannot be read"),
        (["shop@v2", "--against", "{base}/nothere.parquet"], 2, "does not exist"),
        (
            ["shop@v2", "--against", "{real}/users.parquet", "--holdout", "{real}/orders.parquet"],
            2,
            "holdout",
        ),
    ],
)
def test_bad_input(ws: dict[str, Any], args: list[str], code: int, message: str) -> None:
    import pandas as pd

    root, base = ws["root"], ws["base"]
    for sub in ("const", "junk"):
        (base / sub).mkdir(exist_ok=True)
    users = pd.read_parquet(ws["real"] / "users.parquet")
    users.assign(plan="free").to_parquet(base / "const/users.parquet", index=False)
    (base / "junk/users.parquet").write_bytes(b"not parquet at all")
    before = _state(root)
    result = _invoke(root, "evaluate", *[a.format(real=ws["real"], base=base) for a in args])
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert _state(root) == before  # nothing half-written
