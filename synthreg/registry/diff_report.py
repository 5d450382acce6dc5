"""Render a DiffResult: Markdown, a self-contained HTML page, and the per-column plots.

Both renderers build the same sections from the same rows: the generation changes
(with the spec diff), each table's row and schema changes, a table of column
statistics (KS, PSI, JS), label balances and the plots. The HTML page carries its CSS
inline and its plots as ``data:image/png;base64`` URIs; it holds no external URL at
all (``://`` in any text from the data or the spec is written as an entity, so
nothing can be fetched or followed). matplotlib is imported inside the plot
functions, with the Agg canvas and no pyplot state.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthreg.registry.diff_stats import ColumnPair, histogram

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection
    from matplotlib.figure import Figure

    from synthreg.registry.diff import DiffResult

__all__ = [
    "MAX_BARS",
    "MAX_PLOTS",
    "PLOT_DPI",
    "make_plots",
    "plot_bars",
    "plot_histogram",
    "render_html",
    "render_markdown",
]

#: changed columns that get a plot, the most changed first
MAX_PLOTS = 12
PLOT_DPI = 100
MAX_BARS = 20
_COLORS = {"a": "#1f77b4", "b": "#e6550d"}
_TIME_TYPES = {"date", "datetime"}

Rows = list[list[str]]


# ---------------------------------------------------------------- plots


def _figure(width: float = 7.5, height: float = 4.2) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=PLOT_DPI, metadata={"Software": None})


def plot_histogram(
    hist: dict[str, Any], path: Path, title: str, labels: tuple[str, str], *, lengths: bool = False
) -> None:
    """Overlaid histograms of a and b (shares per bin) saved as PNG at ``path``."""
    fig = _figure()
    ax = fig.subplots()
    edges = hist["edges"]
    if hist["time"]:
        edges = [e / 86400 for e in edges]  # matplotlib date numbers: days since 1970-01-01
    for side, label in zip("ab", labels, strict=True):
        ax.stairs(hist[side], edges, fill=True, alpha=0.3, color=_COLORS[side])
        ax.stairs(hist[side], edges, color=_COLORS[side], linewidth=1.6, label=f"{side}: {label}")
    if hist["time"]:
        import matplotlib.dates as mdates

        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    xlabel = "length (characters)" if lengths else ("date" if hist["time"] else "value")
    ax.set_xlabel(xlabel + ("" if hist["whole"] else " (p1–p99 range, tails not shown)"))
    ax.set_ylabel("share of non-null values")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def _short(text: str, width: int = 18) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def plot_bars(stats: dict[str, Any], path: Path, title: str, labels: tuple[str, str]) -> None:
    """Side-by-side bars of a's and b's category shares (the ``MAX_BARS`` largest)."""
    pa, pb = stats["a"]["proportions"], stats["b"]["proportions"]
    cats = sorted(pa.keys() | pb.keys(), key=lambda k: (-max(pa.get(k, 0.0), pb.get(k, 0.0)), k))
    shown = cats[:MAX_BARS]
    fig = _figure(max(6.0, min(12.0, 0.55 * len(shown) + 3)), 4.4)
    ax = fig.subplots()
    for offset, side, label in ((-0.2, "a", labels[0]), (0.2, "b", labels[1])):
        shares = [(pa if side == "a" else pb).get(c, 0.0) for c in shown]
        ax.bar(
            [i + offset for i in range(len(shown))],
            shares,
            width=0.4,
            color=_COLORS[side],
            label=f"{side}: {label}",
        )
    rotate = len(shown) > 6 or any(len(c) > 10 for c in shown)
    ax.set_xticks(
        range(len(shown)),
        [_short(c) for c in shown],
        rotation=35 if rotate else 0,
        ha="right" if rotate else "center",
    )
    more = f" (top {MAX_BARS} of {len(cats)})" if len(cats) > MAX_BARS else ""
    ax.set_xlabel("category" + more)
    ax.set_ylabel("share of non-null values")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    _save(fig, path)


def _plot_score(stats: dict[str, Any]) -> float:
    return max(stats.get("ks") or 0.0, stats.get("js") or 0.0, min(stats.get("psi") or 0.0, 1.0))


def _plot_title(qualified: str, stats: dict[str, Any]) -> str:
    figures = [
        f"{name} {stats[key]:.3f}"
        for key, name in (("ks", "KS"), ("psi", "PSI"), ("js", "JS"))
        if stats.get(key) is not None
    ]
    if stats["kind"] == "text":
        figures = [f"lengths, {f}" for f in figures]
    return qualified + (f" ({', '.join(figures)})" if figures else "")


def make_plots(
    con: DuckDBPyConnection,
    tables: dict[str, dict[str, Any]],
    pairs: list[ColumnPair],
    plots_dir: Path,
    labels: tuple[str, str],
) -> None:
    """Plot the ``MAX_PLOTS`` most changed columns; record each file name under ``plot``.

    Columns whose only change is their type (same values) get no plot.
    """

    def stats_of(pair: ColumnPair) -> dict[str, Any]:
        return tables[pair.table]["columns"][pair.name]

    changed = [
        p for p in pairs if stats_of(p)["kind"] and stats_of(p)["reasons"] not in ([], ["type changed"])
    ]
    changed.sort(key=lambda p: -_plot_score(stats_of(p)))
    plots_dir.mkdir(parents=True, exist_ok=True)
    for pair in changed[:MAX_PLOTS]:
        stats = stats_of(pair)
        path = plots_dir / f"{pair.table}.{pair.name}.png"
        title = _plot_title(f"{pair.table}.{pair.name}", stats)
        if stats["kind"] == "categorical":
            plot_bars(stats, path, title, labels)
        else:
            hist = histogram(con, pair, stats)
            if hist is None:
                continue
            plot_histogram(hist, path, title, labels, lengths=stats["kind"] == "text")
        stats["plot"] = path.name


# ---------------------------------------------------------------- cells


def _num(value: Any, column_type: str | None = None) -> str:
    if value is None:
        return "–"
    if column_type in _TIME_TYPES and isinstance(value, int | float):
        moment = dt.datetime.fromtimestamp(float(value), dt.UTC)
        return moment.date().isoformat() if column_type == "date" else moment.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.1f}" if abs(value) >= 10_000 else f"{value:.4g}"


def _pair(stats: dict[str, Any], key: str) -> str:
    return f"{_num(stats['a'].get(key))} → {_num(stats['b'].get(key))}"


def _side_summary(stats: dict[str, Any], side: str) -> str:
    s = stats[side]
    kind = stats["kind"]
    typ = stats["type"] if isinstance(stats["type"], str) else stats["type"][0 if side == "a" else 1]
    if kind == "numeric":
        return (
            f"mean {_num(s['mean'], typ)}, p50 {_num(s['quantiles']['p50'], typ)}, nulls {_num(s['nulls'])}"
        )
    if kind == "categorical":
        top = next(iter(s["proportions"].items()), None)
        return f"{s['distinct']} values" + (f", top {top[0]} {top[1]:.1%}" if top else "")
    if kind == "text":
        return f"distinct ratio {_num(s['distinct_ratio'])}, length p50 {_num(s['length']['p50'])}"
    return "–"


def _column_rows(table: dict[str, Any]) -> Rows:
    rows = []
    for name, s in table["columns"].items():
        typ = s["type"] if isinstance(s["type"], str) else f"{s['type'][0]} → {s['type'][1]}"
        a_b = [_side_summary(s, "a"), _side_summary(s, "b")] if s["kind"] else ["–", "–"]
        stats = [_num(s.get("ks")), _num(s.get("psi")), _num(s.get("js"))]
        rows.append([name, typ, "yes" if s["changed"] else "no", *a_b, *stats, "; ".join(s["reasons"])])
    return rows


COLUMN_HEADERS = ["column", "type", "changed", "a", "b", "KS", "PSI", "JS", "why"]


def _generation_rows(result: DiffResult) -> Rows:
    g = result.generation
    rows = []
    for key in ("seed", "model", "spec_sha256", "content_digest"):
        a, b = g[key]["a"], g[key]["b"]
        short = key in ("spec_sha256", "content_digest")
        rows.append(
            [
                key,
                str(a)[:16] if short and a else _num(a),
                str(b)[:16] if short and b else _num(b),
                "" if a == b else "changed",
            ]
        )
    rows += [[f"params.{k}", _num(a), _num(b), "changed"] for k, (a, b) in g["params"].items()]
    return rows


def _tables_rows(result: DiffResult) -> Rows:
    rows = []
    for name, t in result.tables.items():
        d = t["rows_diff"]
        schema = t["schema"]
        n_schema = len(schema["added"]) + len(schema["removed"]) + len(schema["type_changed"])
        cells = [d["added"], d["removed"], d["changed"], d["unchanged"]]
        rows.append(
            [name, t["status"], _num(t["rows"]["a"]), _num(t["rows"]["b"]), *map(_num, cells), _num(n_schema)]
        )
    return rows


TABLE_HEADERS = [
    "table",
    "status",
    "rows a",
    "rows b",
    "added",
    "removed",
    "changed",
    "unchanged",
    "schema changes",
]


def _table_notes(table: dict[str, Any]) -> list[str]:
    d, schema = table["rows_diff"], table["schema"]
    moved = f"+{_num(d['added'])} added, −{_num(d['removed'])} removed"
    if d["mode"] == "key":
        notes = [
            f"Rows matched by primary key {d['key']}: {moved}, {_num(d['changed'])} changed, "
            f"{_num(d['unchanged'])} unchanged."
        ]
    else:
        notes = [
            f"Rows compared as a multiset of row hashes (no primary key): {moved}, "
            f"{_num(d['unchanged'])} unchanged; without a key a changed row counts as removed plus added."
        ]
    for kind, keys in (d.get("examples") or {}).items():
        if keys:
            notes.append(f"Example {kind} keys: {', '.join(map(str, keys))}")
    if schema["added"]:
        notes.append(f"Columns added: {', '.join(schema['added'])}")
    if schema["removed"]:
        notes.append(f"Columns removed: {', '.join(schema['removed'])}")
    for col, (ta, tb) in schema["type_changed"].items():
        notes.append(f"Column {col} changed type: {ta} → {tb}")
    for col, s in table["columns"].items():
        for key in ("new", "vanished"):
            if s.get(key):
                notes.append(
                    f"{col}: {key} categories {', '.join(s[key][:10])}" + (" …" if len(s[key]) > 10 else "")
                )
    return notes


def _label_rows(stats: dict[str, Any]) -> Rows:
    ratio = stats.get("label_ratio") or {}
    return [
        [k, f"{ratio['a'].get(k, 0.0):.2%}", f"{ratio['b'].get(k, 0.0):.2%}", f"{d:+.2%}"]
        for k, d in ratio.get("delta", {}).items()
    ]


LABEL_HEADERS = ["value", "a", "b", "change"]


# ---------------------------------------------------------------- markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(headers: list[str], rows: Rows) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows] + [""]


def _md_fence(text: str) -> str:
    longest = max(
        (len(run) for run in text.replace("`", "\0`\0").split("\0") if run.startswith("`")), default=0
    )
    return "`" * max(3, longest + 1)


def _md_generation(result: DiffResult) -> list[str]:
    a, b = result.a, result.b
    lines = [
        "## Generation",
        "",
        *_md_table(["", f"a: {a}", f"b: {b}", ""], _generation_rows(result)),
        "### Spec diff",
        "",
    ]
    diff = result.generation["spec_diff"]
    if not diff:
        return [*lines, "The two specs are identical.", ""]
    fence = _md_fence(diff)
    return [*lines, f"{fence}diff", diff, fence, ""]


def _md_table_section(name: str, table: dict[str, Any], plots_rel_dir: str | None) -> list[str]:
    lines = [f"### {name} ({table['status']})", "", *(f"- {n}" for n in _table_notes(table)), ""]
    if table["columns"]:
        lines += _md_table(COLUMN_HEADERS, _column_rows(table))
    for col, s in table["columns"].items():
        if s.get("label_ratio"):
            lines += [f"Label balance of {col}:", "", *_md_table(LABEL_HEADERS, _label_rows(s))]
    for col, s in table["columns"].items():
        if s.get("plot") and plots_rel_dir is not None:
            lines += [f"![{name}.{col}: a vs b]({plots_rel_dir.rstrip('/')}/{s['plot']})", ""]
    return lines


def render_markdown(result: DiffResult, plots_rel_dir: str | Path | None = None) -> str:
    """The diff as Markdown; plot links point into ``plots_rel_dir`` (none when it is None)."""
    rel = None if plots_rel_dir is None else Path(plots_rel_dir).as_posix()
    lines = [f"# Diff {result.a} → {result.b}", "", f"**{result.summary['text']}**", ""]
    lines += [f"Computed in {result.seconds:.1f} s.", ""]
    lines += _md_generation(result)
    lines += ["## Tables", "", *_md_table(TABLE_HEADERS, _tables_rows(result))]
    for name, table in result.tables.items():
        lines += _md_table_section(name, table, rel)
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------- HTML


def _esc(text: Any) -> str:
    """HTML-escaped text in which no URL scheme survives (``://`` becomes an entity)."""
    return html.escape(str(text)).replace("://", ":&#47;&#47;")


def _html_table(headers: list[str], rows: Rows) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_diff(diff: str) -> str:
    if not diff:
        return "<p>The two specs are identical.</p>"
    classes = {"+": "add", "-": "del", "@": "hunk"}
    lines = []
    for line in diff.splitlines():
        cls = "" if line.startswith(("+++", "---")) else classes.get(line[:1], "")
        lines.append(f'<span class="{cls}">{_esc(line)}</span>' if cls else _esc(line))
    return "<pre>" + "\n".join(lines) + "</pre>"


def _html_image(plots_dir: Path | None, name: str | None, caption: str) -> str:
    if plots_dir is None or not name or not (plots_dir / name).is_file():
        return ""
    data = base64.b64encode((plots_dir / name).read_bytes()).decode("ascii")
    img = f'<img alt="{_esc(caption)}" src="data:image/png;base64,{data}">'
    return f"<figure>{img}<figcaption>{_esc(caption)}</figcaption></figure>"


def _html_table_section(name: str, table: dict[str, Any], plots_dir: Path | None) -> str:
    parts = [f"<h3>{_esc(name)} <small>({_esc(table['status'])})</small></h3>"]
    parts.append("<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in _table_notes(table)) + "</ul>")
    if table["columns"]:
        parts.append(_html_table(COLUMN_HEADERS, _column_rows(table)))
    for col, s in table["columns"].items():
        if s.get("label_ratio"):
            parts.append(f"<p>Label balance of {_esc(col)}:</p>" + _html_table(LABEL_HEADERS, _label_rows(s)))
    parts += [
        _html_image(plots_dir, s.get("plot"), f"{name}.{col}: a vs b") for col, s in table["columns"].items()
    ]
    return "\n".join(p for p in parts if p)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:70rem;
color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}.summary{font-weight:600;background:#f7f7fb;padding:.6rem;border-left:4px solid #1f77b4}
pre{background:#f8f8f8;padding:.8rem;overflow-x:auto;font-size:.85rem}
.add{color:#116611;background:#eaffea}.del{color:#991111;background:#ffecec}.hunk{color:#555}
figure{display:inline-block;margin:.5rem}img{max-width:100%}figcaption{font-size:.85rem;color:#555}
"""


def render_html(result: DiffResult, plots_dir: Path | None = None) -> str:
    """The diff as one self-contained HTML page, plots from ``plots_dir`` embedded as base64."""
    title = f"Diff {result.a} → {result.b}"
    gen_headers = ["", f"a: {result.a}", f"b: {result.b}", ""]
    body = [
        f"<h1>{_esc(title)}</h1>",
        f'<p class="summary">{_esc(result.summary["text"])}</p>',
        f"<p>Computed in {result.seconds:.1f} s.</p>",
        "<h2>Generation</h2>",
        _html_table(gen_headers, _generation_rows(result)),
        "<h3>Spec diff</h3>",
        _html_diff(result.generation["spec_diff"]),
        "<h2>Tables</h2>",
        _html_table(TABLE_HEADERS, _tables_rows(result)),
    ]
    plots = None if plots_dir is None else Path(plots_dir)
    body += [_html_table_section(name, table, plots) for name, table in result.tables.items()]
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
