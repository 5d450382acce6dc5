"""The text quality monitor (issue 15): semantic figures in quality.json, the style map in the
DataCard, validation.html and diff, full-text search with tags and provenance, and export.

One workspace for the module: an LLM table made through the loopback server (two versions,
two seeds) and a table without free text. The model (MiniLM, from the ``text`` extra) is
loaded once per process.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import LLM_KEY_ENV, SMALL_SPEC, point_llm_at
from llm_server import LLMServer
from typer.testing import CliRunner

import synthreg
from synthreg.cli.app import app
from synthreg.generators.spec_io import parse_spec
from synthreg.validators.embeddings import embed
from synthreg.validators.semantic import text_columns

runner = CliRunner()
MODEL = "openai/test-model"
POLITE = (
    ["Thank you so much for writing to us", "We sincerely apologise", "It is our pleasure to help you",
     "We are grateful for your kind patience", "Please accept our warm apologies",
     "We truly appreciate your note"],
    ["we will gladly sort it out today", "we are happy to make this right",
     "kind regards from the whole team", "please do not hesitate to ask again",
     "we hope you enjoy your next trip", "thank you for understanding"],
)  # fmt: skip
RUDE = (
    ["Not our problem", "Stop complaining about it", "Read the terms yourself", "Nobody here cares",
     "That is your own fault", "Do not email us again"],
    ["deal with it", "we will do nothing", "figure it out alone", "whatever you say",
     "go somewhere else then", "this conversation is over"],
)  # fmt: skip
TOPICS = ["the refund", "the luggage", "the seat upgrade"]
SPEC: dict[str, Any] = {
    "seed": 3,
    "tables": {
        "users": {
            "rows": 30,
            "primary_key": "user_id",
            "columns": {"user_id": {"type": "int"}, "plan": {"type": "category", "values": ["a", "b"]}},
        },
        "replies": {
            "llm": {
                "task": "Customer-service replies to complaints.",
                "labels": {"polite": "Courteous and helpful.", "impolite": "Curt and dismissive."},
                "categories": {"travel": ["air", "train"]},
                "samples": 24,
                "models": [MODEL],
                "min_length": 5,
                "few_shot": 0,
                "seed": 7,
            }
        },
    },
}


def answer(body: dict[str, Any]) -> str:
    """Replies whose wording follows the requested label, varied by a hash of the request."""
    prompt = body["messages"][-1]["content"]
    label = re.search(r"Label: (\w+)", prompt)
    digest = hashlib.sha256(json.dumps([body["messages"], body.get("seed")]).encode()).digest()
    openers, closers = RUDE if label and label.group(1) == "impolite" else POLITE
    topic = TOPICS[digest[1] % 3]
    text = f"{openers[digest[0] % 6]}: about {topic}, {closers[digest[2] % 6]} (#{digest[3]})."
    return json.dumps({"text": text, "reasoning": "scripted"})


def _spec_file(root: Path, seed: int) -> Path:
    path = root / f"spec{seed}.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "seed": seed}))
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str) -> Iterator[Path]:
    """replies@v1 and replies@v2 (another seed)."""
    root = tmp_path_factory.mktemp("text") / "ws"
    synthreg.init(root)
    with pytest.MonkeyPatch.context() as mp, LLMServer() as server:
        mp.setenv(LLM_KEY_ENV, "sk-test")
        server.answer = answer
        point_llm_at(root, server.api_base)
        reg = synthreg.open(root)
        reg.create("replies", _spec_file(root.parent, 3))
        reg.create("replies", _spec_file(root.parent, 4))
        yield root


def _quality(root: Path, ref: str = "replies@v1") -> dict[str, Any]:
    return json.loads((synthreg.open(root).path(ref) / "quality.json").read_text())


def test_quality_json_carries_semantic_figures_and_plots(ws: Path) -> None:
    semantic = _quality(ws)["semantic"]
    assert semantic["status"] == "measured" and semantic["model"].endswith("all-MiniLM-L6-v2")
    col = semantic["columns"]["replies.text"]
    assert col["sample"] == 24 and col["label"] == "label"
    assert 0.05 < col["semantic_diversity"] < 1.0
    assert semantic["semantic_diversity"] == {"replies.text": col["semantic_diversity"]}
    agreement = col["semantic_label_agreement"]
    assert agreement["accuracy"] > agreement["chance"] + 0.2  # the wording follows the label
    assert set(col["semantic_per_label"]) == {"polite", "impolite"}
    assert sum(col["length"]["chars"]["counts"]) == 24 and "label_margin" in col["difficulty"]
    assert {"rate", "pairs", "examples"} <= set(col["semantic_near_duplicates"])
    assert sum(t["rows"] for t in col["topics"]["clusters"]) == 24
    vdir = synthreg.open(ws).path("replies@v1")
    assert "plots/replies.text.style_map.png" in col["plots"]
    assert all((vdir / p).is_file() for p in col["plots"])
    card = (vdir / "datacard.md").read_text()
    assert "replies.text.style_map.png" in card and "replies.text.text_labels.png" in card
    page = (vdir / "validation.html").read_text()
    assert "Text: semantic quality" in page and page.count("data:image/png;base64,") == len(col["plots"])
    assert synthreg.open(ws).verify("replies@v1").ok  # the plots are committed with the version


def test_no_free_text_no_monitor_and_no_torch(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(SMALL_SPEC)
    code = (
        "import sys; from pathlib import Path; from synthreg.generators.spec_io import load_spec; "
        "from synthreg.registry.text_monitor import with_semantic; "
        f"d = Path({str(tmp_path)!r}); q = {{'quality_score': 1.0}}; "
        "assert with_semantic(q, load_spec(d / 'spec.yaml'), d, None) is q; "
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_text_columns_skip_patterns_and_names() -> None:
    spec = parse_spec(
        {
            "tables": {
                "t": {
                    "rows": 5,
                    "columns": {
                        "name": {"type": "text", "vocab": "first_name"},
                        "code": {"type": "text", "pattern": "A\\d{3}"},
                        "review": {"type": "text", "vocab": "review"},
                        "stars": {"type": "category", "values": ["1", "5"], "label": True},
                    },
                }
            }
        }
    )
    assert [(c.key, c.label) for c in text_columns(spec)] == [("t.review", "stars")]


def test_embeddings_are_unit_vectors_cached_by_content(tmp_path: Path) -> None:
    texts = ["a refund for my ticket", "a refund for my ticket", "the train was late"]
    first = embed(texts, tmp_path)
    assert first.shape == (3, 384) and np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-4)
    assert np.array_equal(first[0], first[1]) and len(list(tmp_path.glob("*.npy"))) == 1
    assert np.array_equal(embed(texts, tmp_path), first)  # read back from the cache file


def test_diff_puts_both_versions_on_one_style_map(ws: Path, tmp_path: Path) -> None:
    report = tmp_path / "d.html"
    result = runner.invoke(
        app, ["-C", str(ws), "diff", "replies@v1", "replies@v2", "--json", "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    col = json.loads(result.stdout)["semantic"]["columns"]["replies.text"]
    assert set(col["semantic_diversity"]) == {"a", "b"} and "replies.text.style_map.png" in col["plots"]
    stored = ws / json.loads(result.stdout)["stored_at"]
    assert (stored / "plots" / "replies.text.style_map.png").is_file()
    assert "replies.text.style_map.png" in (stored / "diff.md").read_text()
    page = report.read_text()
    assert "Text: semantic quality (a → b)" in page and "http://" not in page


def test_search_finds_rows_with_tags_and_provenance(ws: Path) -> None:
    result = runner.invoke(app, ["-C", str(ws), "search", "replies@v1", "refund", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["matches"] > 0 and all("refund" in h["text"].lower() for h in data["hits"])
    hit = data["hits"][0]
    assert hit["tags"]["tag_task_type"] == "text-classification" and hit["tags"]["tag_language"] == "en"
    assert hit["tags"]["tag_label"] in ("polite", "impolite")
    assert isinstance(hit["tags"]["tag_topic_cluster"], int)
    assert hit["provenance"]["version"] == "replies@v1" and hit["provenance"]["model_answered"]
    assert len(hit["provenance"]["call_key"]) == 64
    filtered = runner.invoke(
        app, ["-C", str(ws), "search", "replies@v1", "refund", "--where", "label = 'impolite'", "--json"]
    )
    assert filtered.exit_code == 0, filtered.output
    hits = json.loads(filtered.stdout)["hits"]
    assert hits and {h["values"]["label"] for h in hits} == {"impolite"}
    assert len(hits) < data["matches"]
    text = runner.invoke(app, ["-C", str(ws), "search", "replies@v1", "refunds"])  # stemmed
    assert text.exit_code == 0 and "matching rows" in text.stderr and "refund" in text.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["search", "replies@v9", "refund"], 4, "v9"),
        (["search", "nope", "refund"], 4, "nope"),
        (["search", "replies@v1", "refund", "--where", "colour = 'red'"], 2, "colour"),
        (["search", "replies@v1", "!!!"], 2, "no word"),
    ],
)
def test_search_bad_input(ws: Path, args: list[str], code: int, message: str) -> None:
    result = runner.invoke(app, ["-C", str(ws), *args])
    assert result.exit_code == code, result.output
    assert message in result.stderr and result.stdout == ""


def test_export_jsonl_csv_hf_with_card_and_audit(ws: Path, tmp_path: Path) -> None:
    import datasets

    for fmt in ("jsonl", "csv", "hf"):
        dest = tmp_path / fmt
        result = runner.invoke(
            app, ["-C", str(ws), "export", "replies@v1", "--format", fmt, "--dest", str(dest), "--json"]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["rows"] == {"users": 30, "replies": 24}
        assert (dest / "datacard.md").is_file() and (dest / "export.json").is_file()
    lines = (tmp_path / "jsonl" / "replies" / "part-00000.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    assert len(lines) == 24 and row["tag_label"] == row["label"] and row["tag_language"] == "en"
    assert "tag_topic_cluster" in (tmp_path / "csv" / "replies.csv").read_text().splitlines()[0]
    loaded = datasets.load_from_disk(str(tmp_path / "hf"))
    assert loaded["replies"].num_rows == 24 and "tag_topic_cluster" in loaded["replies"].column_names
    assert (tmp_path / "hf" / "README.md").read_text().startswith("---")
    events = [e for e in synthreg.open(ws).audit(dataset="replies") if e["action"] == "export"]
    assert [e["details"]["format"] for e in events[-3:]] == ["jsonl", "csv", "hf"]


def test_export_bad_input_leaves_nothing(ws: Path, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    cases = [
        (["export", "replies@v1", "--format", "parquet", "--dest", str(tmp_path / "a")], 2, "jsonl, csv, hf"),
        (["export", "replies@v7", "--format", "jsonl", "--dest", str(tmp_path / "b")], 4, "v7"),
        (["export", "replies@v1", "--format", "jsonl", "--dest", str(busy)], 2, "not empty"),
    ]
    for args, code, message in cases:
        result = runner.invoke(app, ["-C", str(ws), *args])
        assert result.exit_code == code, result.output
        assert message in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]


def test_label_agreement_and_diversity_on_known_vectors() -> None:
    from synthreg.validators.semantic import TextSample, column_metrics

    rng = np.random.default_rng(0)
    axes = np.eye(8)[:2]
    vectors = np.repeat(axes, 20, axis=0) + rng.normal(scale=0.05, size=(40, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [f"text number {i}" for i in range(40)]
    separated = column_metrics(TextSample(np.arange(40), texts, ["a"] * 20 + ["b"] * 20, vectors), 1)
    assert separated["semantic_label_agreement"]["accuracy"] == 1.0
    assert separated["semantic_label_agreement"]["chance"] == 0.5
    assert separated["semantic_per_label"]["a"]["semantic_diversity"] < 0.05  # one direction each
    assert 0.45 < separated["semantic_diversity"] < 0.6  # half the pairs are orthogonal
    shuffled = ["a", "b"] * 20
    mixed = column_metrics(TextSample(np.arange(40), texts, shuffled, vectors), 1)
    assert mixed["semantic_label_agreement"]["accuracy"] < 0.7
    same = np.tile(vectors[:1], (40, 1))
    dup = column_metrics(TextSample(np.arange(40), texts, None, same), 1)
    assert dup["semantic_diversity"] == 0.0 and dup["semantic_near_duplicates"]["rate"] == 1.0
