"""LLM stage throughput against a loopback OpenAI-compatible server with a fixed latency.

Labeled-text samples/s at concurrency 1, 8 and 32 (real litellm, real HTTP on 127.0.0.1,
200 ms per call by default), ``llm_text`` column rows/s at concurrency 8 and 32, and the
overhead the call store and gateway add per call
(microseconds: a replay served from the store, and raw store put/get).

    python benchmarks/bench_llm.py [--latency-ms 200] [--samples 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from llm_server import LLMServer  # noqa: E402

import synthreg  # noqa: E402,F401  (offline environment defaults)
from synthreg.generators.llm import CallStore, Gateway, LiteLLMBackend  # noqa: E402
from synthreg.generators.llm.labeled import generate_labeled, load_labeled_spec  # noqa: E402

SPEC = HERE.parent / "examples" / "labeled" / "support_replies.yaml"
KEY_ENV = "SYNTHREG_BENCH_LLM_KEY"


def _answer(body: dict[str, Any]) -> str | None:
    """A distinct, valid answer per request (derived from its seed)."""
    seed = body.get("seed", 0)
    if "text" in json.dumps(body.get("response_format", {})):
        return json.dumps(
            {
                "text": f"Reply number {seed}: we are looking into your booking now.",
                "reasoning": "a short factual reply",
                "label": "neutral",
            }
        )
    return None


def run(server: LLMServer, samples: int, concurrency: int, store: CallStore, mode: str = "live") -> float:
    """Seconds to generate ``samples`` labeled rows."""
    spec = load_labeled_spec(SPEC).model_copy(
        update={"samples": samples, "judge_model": None, "models": ["openai/bench-model"]}
    )
    gateway = Gateway(store, LiteLLMBackend(api_key_env=KEY_ENV, timeout_s=30), mode, concurrency=concurrency)
    start = time.perf_counter()
    result = generate_labeled(spec, gateway, api_base=server.api_base)
    seconds = time.perf_counter() - start
    if len(result.rows) + len(result.rejects) < samples:
        raise RuntimeError(f"only {len(result.rows)} rows and {len(result.rejects)} rejects of {samples}")
    return seconds


def run_column(server: LLMServer, rows: int, concurrency: int, store: CallStore) -> float:
    """Seconds to fill an ``llm_text`` column of ``rows`` rows (one call per row)."""
    from synthreg.generators.llm.column_text import LlmTextColumn, fill_column

    col = LlmTextColumn(prompt="A review of an order rated {rating} of 5.", models=["openai/bench-model"])
    values = [{"rating": 1 + i % 5} for i in range(rows)]
    gateway = Gateway(store, LiteLLMBackend(api_key_env=KEY_ENV, timeout_s=30), concurrency=concurrency)
    start = time.perf_counter()
    result = fill_column("orders", "review", col, values, gateway, api_base=server.api_base)
    seconds = time.perf_counter() - start
    if result.missing or None in result.texts:
        raise RuntimeError(f"{len(result.missing)} rows without an answer")
    return seconds


def store_overhead(n: int = 2000) -> dict[str, float]:
    """Raw put/get cost of the SQLite call store, in microseconds per call."""
    from synthreg.generators.llm.callstore import CallRecord

    with tempfile.TemporaryDirectory() as tmp:
        store = CallStore.open(Path(tmp) / "calls.sqlite")
        fields = CallRecord.__dataclass_fields__
        base = {k: None for k in fields}
        records = []
        for i in range(n):
            rec = dict(
                base,
                key=f"{i:064x}",
                request={"i": i},
                content="x" * 200,
                finish_reason="stop",
                prompt_tokens=10,
                completion_tokens=20,
                model_returned="m",
                latency_ms=1.0,
                attempts=1,
                cost_usd=0.0,
                priced=False,
                backend="bench",
                backend_version="0",
                created_at="2026-01-01T00:00:00",
            )
            records.append(CallRecord(**{k: v for k, v in rec.items() if k in fields}))
        start = time.perf_counter()
        for rec in records:
            store.put(rec)
        put = (time.perf_counter() - start) / n * 1e6
        start = time.perf_counter()
        for rec in records:
            store.get(rec.key)
        get = (time.perf_counter() - start) / n * 1e6
        store.close()
    return {"put_us": put, "get_us": get}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--samples", type=int, default=64, help="samples per run at concurrency 8 and 32")
    args = parser.parse_args(argv)
    os.environ[KEY_ENV] = "sk-bench-not-a-real-key"
    print(
        f"{'concurrency':>11} {'samples':>8} {'seconds':>8} {'samples/s':>10}  (latency {args.latency_ms} ms)"
    )
    with LLMServer() as server:
        server.answer = _answer
        with tempfile.TemporaryDirectory() as tmp:  # warm-up: litellm's import (~3 s) is not a call
            run(server, 1, 1, CallStore.open(Path(tmp) / "warm.sqlite"))
        server.delay_ms = args.latency_ms
        for concurrency, samples in ((1, 8), (8, args.samples), (32, args.samples * 2)):
            with tempfile.TemporaryDirectory() as tmp:
                store = CallStore.open(Path(tmp) / "calls.sqlite")
                seconds = run(server, samples, concurrency, store)
                print(f"{concurrency:>11} {samples:>8} {seconds:>8.2f} {samples / seconds:>10.1f}")
                replays = [run(server, samples, concurrency, store) for _ in range(3)]
                per_call = statistics.median(replays) / samples * 1e6
                store.close()
        print(
            f"replay from the store (no HTTP): {per_call:,.0f} us per sample (median of 3, {samples} samples)"
        )
        for concurrency, rows in ((8, args.samples), (32, args.samples * 2)):
            with tempfile.TemporaryDirectory() as tmp:
                store = CallStore.open(Path(tmp) / "calls.sqlite")
                seconds = run_column(server, rows, concurrency, store)
                store.close()
            print(
                f"llm_text column, concurrency {concurrency}: {rows} rows in {seconds:.2f}s "
                f"= {rows / seconds:.1f} rows/s"
            )
    overhead = store_overhead()
    print(f"call store: put {overhead['put_us']:,.0f} us, get {overhead['get_us']:,.0f} us per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
