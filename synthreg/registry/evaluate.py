"""``registry evaluate REF --against PATH... [--holdout PATH...] [--target TABLE.COLUMN]``:
fidelity, privacy and utility of a version against the real data it stands in for.

Everything is read and computed before anything is written; bad input (unknown tables, columns
that do not match, an unreadable file, a target that is missing or constant) fails first. The
results are then stored with the version by :mod:`synthreg.registry.evaluate_store`.

Without ``--holdout``, the real sample is split 50/50 (seeded): the first half plays the training
rows, the second the holdout. Fidelity always compares against the ``--against`` rows.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthreg.errors import UsageError
from synthreg.generators.spec_io import load_spec
from synthreg.registry import evaluate_inputs as inputs
from synthreg.registry.checkout import ensure_local, read_manifest
from synthreg.registry.facts import bytes_sha256
from synthreg.registry.query import resolve
from synthreg.registry.refs import parse_ref
from synthreg.registry.store import read_session
from synthreg.registry.workspace import Workspace

__all__ = ["EvaluationRun", "compute", "evaluate"]

EVALUATION_SCHEMA_VERSION = 1


@dataclass
class EvaluationRun:
    """What evaluate computed, before it is stored."""

    dataset: str
    version: int
    label: str
    data: dict[str, Any]  # what evaluation.json holds (less what storing adds)
    utility: Any = None  # validators.utility.UtilityResult
    stages: dict[str, dict[str, float | None]] = field(default_factory=dict)  # stage -> seconds, peak_rss_mb


def evaluate(
    ws: Workspace,
    ref: str,
    against: list[Path],
    holdout: list[Path] | None = None,
    target: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate a version against real tables and store the results with it; return evaluation.json."""
    from synthreg.registry.evaluate_store import store

    return store(ws, compute(ws, ref, against, holdout, target, seed))


@dataclass
class _Inputs:
    label: str
    tables: dict[str, Any]  # table -> (synthetic parts, schema)
    real: dict[str, Path]
    holdout: dict[str, Path]
    keys: dict[str, set[str]]
    links: list[tuple[str, str, str]]  # (child, column, parent)
    target: tuple[str, str] | None


def _prepare(
    ws: Workspace, ref: str, against: list[Path], holdout: list[Path] | None, target: str | None
) -> tuple[Any, Any, _Inputs]:
    with read_session(ws.engine) as session:
        dataset, version = resolve(session, parse_ref(ref))
    label = f"{dataset.name}@v{version.number}"
    vdir = ws.root / version.path
    names = list(read_manifest(vdir)["tables"])
    real = inputs.real_sources(against, "--against", names, label)
    if not real:
        raise UsageError("--against: give at least one real table (Parquet or CSV, named by table)")
    held = inputs.real_sources(holdout or [], "--holdout", names, label)
    if held and set(held) != set(real):
        raise UsageError(
            f"--holdout gives tables {', '.join(sorted(held))} but --against gives "
            f"{', '.join(sorted(real))}: give one holdout file for each real table"
        )
    spec = load_spec(vdir / "spec.yaml")
    tables, keys, links = {}, {}, []
    for t in real:
        ensure_local(ws, version, t)
        parts = sorted((vdir / "tables" / t).glob("part-*.parquet"))
        schema = inputs.comparison_schema(parts)
        tables[t] = (parts, schema)
        for option, files in (("--against", real), ("--holdout", held)):
            if t in files:
                inputs.check_columns(files[t], option, schema, label)
        fks = spec.tables[t].foreign_keys() if t in spec.tables else {}
        keys[t] = {k for k in [spec.tables[t].primary_key if t in spec.tables else None, *fks] if k}
        links += [(t, col, parent) for col, (parent, _) in fks.items() if parent in real]
    return dataset, version, _Inputs(label, tables, real, held, keys, links, _target(target, tables, keys))


def _target(target: str | None, tables: dict[str, Any], keys: dict[str, set[str]]) -> tuple[str, str] | None:
    if target is None:
        return None
    table, _, column = target.partition(".")
    if table not in tables:
        raise UsageError(
            f"--target {target}: no real table {table!r} was given; use TABLE.COLUMN with one of "
            f"{', '.join(sorted(tables))}"
        )
    names = tables[table][1].names
    if column not in names or column in keys[table]:
        what = "is a key" if column in keys[table] else "does not exist"
        usable = [c for c in names if c not in keys[table]]
        raise UsageError(
            f"--target {target}: column {column!r} {what} in {table}; use one of {', '.join(usable)}"
        )
    return table, column


class _Stage:
    """Wall time and peak RSS of one stage (Linux: the high-water mark is reset at the start
    through /proc/self/clear_refs; elsewhere the peak is None)."""

    def __init__(self, stages: dict[str, dict[str, float | None]], name: str):
        self.stages, self.name = stages, name

    def __enter__(self) -> None:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.stages[self.name] = {
            "seconds": round(time.perf_counter() - self.t0, 3),
            "peak_rss_mb": _hwm_mb(),
        }


def _hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def compute(
    ws: Workspace,
    ref: str,
    against: list[Path],
    holdout: list[Path] | None = None,
    target: str | None = None,
    seed: int = 0,
) -> EvaluationRun:
    """Read and score; write nothing. Bad input raises UsageError before any scoring."""
    dataset, version, inp = _prepare(ws, ref, against, holdout, target)
    stages: dict[str, dict[str, float | None]] = {}
    with _Stage(stages, "read"):
        synth, real, held = _read_all(inp, seed)
    kinds, skipped = {}, {}
    for t in inp.tables:
        kinds[t], skipped[t] = inputs.column_kinds(inp.tables[t][1], inp.keys[t], real[t].sample)
    train, hold = _split(real, held)
    if inp.target is not None:
        _check_target(inp, kinds, train, synth)
    with _Stage(stages, "fidelity"):
        fid = _fidelity(inp, synth, real, kinds, skipped)
    with _Stage(stages, "privacy"):
        priv = _privacy(inp, synth, real, held, train, hold, kinds)
    util = None
    if inp.target is not None:
        with _Stage(stages, "utility"):
            util = _utility(inp.target, kinds, train, hold, synth, seed)
    data = _document(inp, version, fid, priv, util, real, held, synth, seed)
    return EvaluationRun(dataset.name, version.number, inp.label, data, util, stages)


def _read_all(inp: _Inputs, seed: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    synth, real, held = {}, {}, {}
    for t, (parts, schema) in inp.tables.items():
        fk_cols = [col for child, col, _ in inp.links if child == t]
        hashed = [c for c in schema.names if c not in inp.keys[t]]
        common: dict[str, Any] = {"seed": seed, "fk_columns": fk_cols, "hash_columns": hashed}
        synth[t] = inputs.read_table(t, parts, schema, role="synthetic", **common)
        real[t] = inputs.read_table(t, inp.real[t], schema, role="real", option="--against", **common)
        if t in inp.holdout:
            held[t] = inputs.read_table(
                t, inp.holdout[t], schema, role="holdout", option="--holdout", **common
            )
    return synth, real, held


def _split(real: dict[str, Any], held: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Training and holdout rows: --holdout when given, else the two halves of the real sample."""
    train, hold = {}, {}
    for t, data in real.items():
        if t in held:
            train[t], hold[t] = data.sample, held[t].sample
        else:
            half = len(data.sample) // 2
            train[t], hold[t] = data.sample.iloc[:half], data.sample.iloc[half:]
    return train, hold


def _check_target(
    inp: _Inputs, kinds: dict[str, dict[str, str]], train: dict[str, Any], synth: dict[str, Any]
) -> None:
    from synthreg.validators.utility import check_target

    assert inp.target is not None
    table, column = inp.target
    label = f"{table}.{column}"
    if column not in kinds[table]:
        raise UsageError(
            f"--target {label}: a free-text column cannot be a target; pick a category or a number"
        )
    check_target(label, column, {"real training": train[table], "synthetic": synth[table].sample})


def _children_per_parent(counts: Any, parent_rows: int) -> dict[int, int]:
    """``{children: parents}``; parents never referenced count as 0 children."""
    hist = {int(k): int(v) for k, v in counts.value_counts().items()}
    zero = max(parent_rows - len(counts), 0)
    if zero:
        hist[0] = hist.get(0, 0) + zero
    return hist


def _fidelity(
    inp: _Inputs, synth: dict[str, Any], real: dict[str, Any], kinds: dict[str, Any], skipped: dict[str, Any]
) -> Any:
    from synthreg.validators.fidelity import fidelity

    links = [
        {
            "child": f"{child}.{col}",
            "parent": parent,
            "real": _children_per_parent(real[child].fk_counts[col], real[parent].rows),
            "synthetic": _children_per_parent(synth[child].fk_counts[col], synth[parent].rows),
        }
        for child, col, parent in inp.links
    ]
    result = fidelity(
        {t: d.sample for t, d in real.items()},
        {t: d.sample for t, d in synth.items()},
        kinds,
        pair_rows=inputs.PAIR_ROWS,
        pair_columns=inputs.PAIR_COLUMNS,
        cardinality=links,
    )
    result.skipped = skipped
    return result


def _privacy(
    inp: _Inputs,
    synth: dict[str, Any],
    real: dict[str, Any],
    held: dict[str, Any],
    train: dict[str, Any],
    hold: dict[str, Any],
    kinds: dict[str, Any],
) -> dict[str, Any]:
    import numpy as np

    from synthreg.validators.privacy import Encoder, dcr_share, nndr

    tables = {}
    for t in inp.tables:
        real_hashes = np.concatenate([real[t].hashes, held[t].hashes]) if t in held else real[t].hashes
        matches = int(np.isin(synth[t].hashes, real_hashes).sum())
        entry: dict[str, Any] = {
            "exact_matches": matches,
            "exact_match_share": matches / max(synth[t].rows, 1),
        }
        n = min(inputs.PRIVACY_ROWS, len(train[t]), len(hold[t]))
        if kinds[t] and n >= 2 and len(synth[t].sample) >= 1:
            enc = Encoder.fit(train[t].iloc[:n], kinds[t])
            x_train, x_hold = enc.transform(train[t].iloc[:n]), enc.transform(hold[t].iloc[:n])
            x_syn = enc.transform(synth[t].sample.iloc[: inputs.PRIVACY_ROWS])
            entry.update(dcr_share(x_train, x_hold, x_syn))
            entry.update(nndr=nndr(x_train, x_syn), nndr_holdout=nndr(x_hold, x_syn), rows_per_role=n)
        tables[t] = entry
    shares = [e["dcr_share"] for e in tables.values() if "dcr_share" in e]
    nndrs = [e["nndr"] for e in tables.values() if "nndr" in e]
    return {
        "dcr_share": max(shares) if shares else None,
        "nndr": min(nndrs) if nndrs else None,
        "exact_matches": sum(e["exact_matches"] for e in tables.values()),
        "tables": tables,
    }


def _utility(
    target: tuple[str, str],
    kinds: dict[str, Any],
    train: dict[str, Any],
    hold: dict[str, Any],
    synth: dict[str, Any],
    seed: int,
) -> Any:
    from synthreg.validators.utility import tstr

    table, column = target
    task = "classification" if kinds[table][column] == "categorical" else "regression"
    cap = inputs.UTILITY_ROWS
    return tstr(
        column,
        task,
        kinds[table],
        real_train=train[table].iloc[:cap],
        real_test=hold[table].iloc[:cap],
        synthetic=synth[table].sample.iloc[:cap],
        seed=seed,
        label=f"{table}.{column}",
    )


def _document(
    inp: _Inputs,
    version: Any,
    fid: Any,
    priv: dict[str, Any],
    util: Any,
    real: dict[str, Any],
    held: dict[str, Any],
    synth: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    fidelity = fid.to_dict()
    props = fidelity["properties"]
    summary = {
        "fidelity": fidelity["score"],
        "column_shapes": props["column_shapes"],
        "column_pair_trends": props["column_pair_trends"],
        "cardinality": props["cardinality"],
        "dcr_share": priv["dcr_share"],
        "nndr": priv["nndr"],
        "exact_matches": priv["exact_matches"],
        "tstr_ratio": None if util is None else util.ratio,
    }
    return {
        "schema_version": EVALUATION_SCHEMA_VERSION,
        "ref": inp.label,
        "path": version.path,
        "content_digest": version.content_digest,
        "seed": seed,
        "inputs": {
            "against": {
                t: {"file": str(p), "sha256": bytes_sha256(p), "rows": real[t].rows}
                for t, p in inp.real.items()
            },
            "holdout": {
                t: {"file": str(p), "sha256": bytes_sha256(p), "rows": held[t].rows}
                for t, p in inp.holdout.items()
            },
            "split": "given (--holdout)" if inp.holdout else "50/50 seeded split of the --against sample",
            "synthetic_rows": {t: d.rows for t, d in synth.items()},
        },
        "caps": {
            "sample_rows": inputs.SAMPLE_ROWS,
            "pair_rows": inputs.PAIR_ROWS,
            "pair_columns": inputs.PAIR_COLUMNS,
            "privacy_rows": inputs.PRIVACY_ROWS,
            "utility_rows": inputs.UTILITY_ROWS,
        },
        "summary": summary,
        "fidelity": fidelity,
        "privacy": priv,
        "utility": None if util is None else util.to_dict(),
    }
