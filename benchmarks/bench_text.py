"""The text quality monitor's cost: embedding throughput and memory, and what it adds to create.

1. Embedding (its own process, torch limited to ``--threads`` threads, 2 by default): import and
   model-load time, texts/s over ``--texts`` distinct sentences (12-30 words, embedded once
   each in batches of 64) after a warm-up batch, a cache hit, and the process's peak RSS.
2. ``registry create`` of a table with a free-text column (``words:`` tokens, 8-30 words a row)
   at 10k and 100k rows, each in a fresh process and workspace (so the torch import and model
   load are counted): the ``semantic`` stage of create's timings is the time the monitor adds
   (it embeds a seeded sample of at most 500 rows, so it does not grow with the table); peak
   PSS/RSS of the process tree from ``tree_memory``.
3. The same table without the text column at 100k rows: no ``semantic`` stage (the monitor does
   not run, torch is not imported).

    .venv/bin/python benchmarks/bench_text.py                  # ~2-4 minutes on 2 cores
    .venv/bin/python benchmarks/bench_text.py --rows 10000     # one size only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from tree_memory import run_measured  # noqa: E402

REGISTRY = str(Path(sys.executable).with_name("registry"))
WORDS = [
    "refund", "delay", "ticket", "booking", "seat", "train", "flight", "luggage", "gate", "voucher",
    "receipt", "order", "platform", "thanks", "sorry", "late", "lost", "broken", "helpful", "rude",
    "quick", "slow", "staff", "service", "price", "upgrade", "cancel", "the", "a", "my", "your", "was",
    "is", "not", "very", "really", "again", "today", "yesterday", "please", "never", "always",
]  # fmt: skip

EMBED_CODE = r"""
import json, os, resource, sys, time
threads = int(sys.argv[1]); n = int(sys.argv[2]); cache = sys.argv[3]
t0 = time.perf_counter()
import torch
torch.set_num_threads(threads)
from synthreg.validators import embeddings
imported = time.perf_counter() - t0
rng = __import__("numpy").random.default_rng(0)
words = sys.argv[4].split()
texts = [" ".join(rng.choice(words, size=int(rng.integers(12, 31)))) + f" #{i}" for i in range(n)]
t0 = time.perf_counter(); embeddings.embed(texts[:64]); loaded = time.perf_counter() - t0
t0 = time.perf_counter(); vectors = embeddings.embed(texts, cache); seconds = time.perf_counter() - t0
t0 = time.perf_counter(); embeddings.embed(texts, cache); hit = time.perf_counter() - t0
print(json.dumps({
    "threads": torch.get_num_threads(), "texts": n, "import_s": imported, "load_and_first_batch_s": loaded,
    "embed_s": seconds, "texts_per_s": n / seconds, "cache_hit_s": hit, "dims": int(vectors.shape[1]),
    "mean_chars": sum(map(len, texts)) / n,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def _spec(rows: int, text: bool) -> dict[str, object]:
    columns: dict[str, object] = {
        "review_id": {"type": "int"},
        "stars": {"type": "category", "values": ["1", "2", "3", "4", "5"], "label": True},
        "channel": {"type": "category", "values": ["app", "web", "phone"]},
    }
    if text:
        words = dict.fromkeys(WORDS, 1.0 / len(WORDS))
        columns["body"] = {"type": "text", "words": words, "min_words": 8, "max_words": 30}
    return {"seed": 1, "tables": {"reviews": {"rows": rows, "primary_key": "review_id", "columns": columns}}}


def _embedding(threads: int, texts: int, tmp: Path) -> dict[str, float]:
    cmd = [sys.executable, "-c", EMBED_CODE, str(threads), str(texts), str(tmp / "cache"), " ".join(WORDS)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def _create(rows: int, text: bool, tmp: Path, threads: int) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(dir=tmp))
    subprocess.run([REGISTRY, "init", str(work / "ws")], check=True, capture_output=True)
    spec = work / "spec.yaml"
    spec.write_text(yaml.safe_dump(_spec(rows, text)))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log = work / "create.log"
    cmd = [REGISTRY, "-C", str(work / "ws"), "create", "bench", "--spec", str(spec), "--json"]
    measured = run_measured(cmd, log, env=env)
    if measured.returncode not in (0, 3):
        raise SystemExit(f"create failed ({measured.returncode}): {log.read_text()[-2000:]}")
    text_out = log.read_text()
    data = json.loads(text_out[text_out.index("{") :])
    timings = data.get("timings", {})
    quality = work / "ws" / data["path"] / "quality.json"
    return {
        "rows": rows,
        "text": text,
        "create_s": measured.wall_s,
        "semantic_s": timings.get("semantic"),
        "peak_pss_mb": measured.peak_pss_mb,
        "peak_rss_mb": measured.peak_rss_mb,
        "semantic_in_quality": "semantic" in json.loads(quality.read_text()),
    }


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--rows", type=int, nargs="*", default=[10_000, 100_000])
    args = parser.parse_args()
    print(f"# bench_text: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start, "
          f"torch threads {args.threads}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="synthreg-bench-text-") as name:
        tmp = Path(name)
        e = _embedding(args.threads, args.texts, tmp)
        print(
            f"embedding: {e['texts']} distinct texts (mean {e['mean_chars']:.0f} chars): "
            f"{e['texts_per_s']:.0f} texts/s ({e['embed_s']:.1f} s); import torch+sentence-transformers "
            f"{e['import_s']:.1f} s; model load + first batch {e['load_and_first_batch_s']:.1f} s; "
            f"cache hit {e['cache_hit_s'] * 1000:.0f} ms; peak RSS {e['peak_rss_mb']:.0f} MB",
            flush=True,
        )
        cases = [(rows, True) for rows in args.rows] + [(max(args.rows), False)]
        for rows, text in cases:
            r = _create(rows, text, tmp, args.threads)
            semantic = "not run" if r["semantic_s"] is None else f"{r['semantic_s']:.1f} s"
            print(
                f"create {rows:,} rows {'with' if text else 'without'} a text column: "
                f"{r['create_s']:.1f} s in all, text monitor (semantic stage) {semantic}, "
                f"semantic in quality.json: {r['semantic_in_quality']}; "
                f"peak PSS {r['peak_pss_mb']:.0f} MB, RSS {r['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    print(f"# load average {os.getloadavg()[0]:.1f} at the end; {time.strftime('%Y-%m-%d %H:%M')}")


if __name__ == "__main__":
    main()
