"""``evaluation.html``: the evaluation of a version as one self-contained page, its plots
(matplotlib, drawn on a bare Figure) embedded as base64 PNGs."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from synthreg.registry.diff_report import _CSS

__all__ = ["render_html"]

_DPI = 100


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("-" if value is None else str(value))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, dpi=_DPI, format="png", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode()


def _figure(caption: str, fig: Any) -> str:
    image = f'<img alt="{_esc(caption)}" src="data:image/png;base64,{_png(fig)}">'
    return f"<figure>{image}<figcaption>{_esc(caption)}</figcaption></figure>"


def _shapes_plot(columns: dict[str, dict[str, dict[str, Any]]]) -> str:
    from matplotlib.figure import Figure

    names = [f"{t}.{c}" for t, cols in columns.items() for c in cols]
    scores = [v["score"] for cols in columns.values() for v in cols.values()]
    fig = Figure(figsize=(7, max(2.0, 0.3 * len(names) + 1)), dpi=_DPI)
    ax = fig.subplots()
    ax.barh(names, scores, color="#1f77b4")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("score (1 = same distribution)")
    return _figure("Column shapes: KS complement (numbers, dates), TV complement (categories)", fig)


def _pairs_plot(table: str, pairs: list[dict[str, Any]]) -> str:
    import numpy as np
    from matplotlib.figure import Figure

    cols = sorted({p["a"] for p in pairs} | {p["b"] for p in pairs})
    grid = np.full((len(cols), len(cols)), np.nan)
    for p in pairs:
        i, j = cols.index(p["a"]), cols.index(p["b"])
        grid[i, j] = grid[j, i] = p["score"]
    fig = Figure(figsize=(1.5 + 0.5 * len(cols), 1 + 0.5 * len(cols)), dpi=_DPI)
    ax = fig.subplots()
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right")
    ax.set_yticks(range(len(cols)), cols)
    fig.colorbar(image, ax=ax)
    return _figure(f"{table}: column-pair trends (correlation or contingency similarity)", fig)


def _utility_plot(util: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    names = list(util["tstr"])
    fig = Figure(figsize=(5, 3), dpi=_DPI)
    ax = fig.subplots()
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [util["tstr"][n] for n in names], 0.4, label="TSTR (trained on synthetic)")
    ax.bar([x + 0.2 for x in xs], [util["trtr"][n] for n in names], 0.4, label="TRTR (trained on real)")
    ax.set_xticks(list(xs), names)
    ax.legend(fontsize=8)
    return _figure(f"Utility: {util['target']} ({util['task']}), tested on real holdout rows", fig)


def render_html(data: dict[str, Any]) -> str:
    """The page for evaluation.json's ``data``."""
    fid, priv, util, summary = data["fidelity"], data["privacy"], data["utility"], data["summary"]
    title = f"Evaluation of {data['ref']} against real data"
    body = [
        f"<h1>{_esc(title)}</h1>",
        f'<p class="summary">fidelity {_fmt(summary["fidelity"])}, DCR share {_fmt(summary["dcr_share"])}, '
        f"exact matches {summary['exact_matches']}, TSTR/TRTR {_fmt(summary['tstr_ratio'])}</p>",
        _table(["fact", "value"], [[k, v] for k, v in summary.items()]),
        f"<p>Split: {_esc(data['inputs']['split'])}; seed {data['seed']}; caps {_esc(data['caps'])}.</p>",
        "<h2>Fidelity</h2>",
        _table(
            ["table", "column", "metric", "score"],
            [[t, c, v["metric"], v["score"]] for t, cols in fid["columns"].items() for c, v in cols.items()],
        ),
    ]
    if any(fid["columns"].values()):
        body.append(_shapes_plot(fid["columns"]))
    body += [_pairs_plot(t, pairs) for t, pairs in fid["pairs"].items() if pairs]
    if fid["cardinality"]:
        body.append(
            _table(
                ["child", "parent", "cardinality shape"],
                [[c["child"], c["parent"], c["score"]] for c in fid["cardinality"]],
            )
        )
    skipped = [[t, c, why] for t, cols in fid["skipped"].items() for c, why in cols.items()]
    if skipped:
        body += ["<h3>Not compared</h3>", _table(["table", "column", "why"], skipped)]
    keys = [
        "dcr_share",
        "dcr_train_median",
        "dcr_holdout_median",
        "nndr",
        "nndr_holdout",
        "exact_matches",
        "exact_match_share",
    ]
    body += [
        "<h2>Privacy</h2>",
        _table(["table", *keys], [[t, *(e.get(k) for k in keys)] for t, e in priv["tables"].items()]),
    ]
    if util is not None:
        rows = [[k, util["tstr"][k], util["trtr"][k]] for k in util["tstr"]]
        body += ["<h2>Utility</h2>", _table(["metric", "TSTR", "TRTR"], rows), _utility_plot(util)]
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
