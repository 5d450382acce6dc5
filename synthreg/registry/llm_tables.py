"""Tables made by the LLM stage (a spec table with ``llm``): made at ``registry create``,
replayed strictly from the version's ``llm_calls.jsonl`` by ``materialize`` and ``verify --rebuild``.

Each table's rows go to ``tables/<t>/part-00000.parquet`` (hashed like an engine table, so
its digest enters the content digest); its rejects and plan to ``llm/<t>.rejects.parquet``
and ``llm/<t>.plan.parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthreg.digest import TableHasher
from synthreg.errors import ConflictError, NotFoundError
from synthreg.generators.engine import TableResult
from synthreg.generators.spec import Spec

__all__ = ["LlmTables", "make_llm_tables", "replay_llm_tables"]


@dataclass(frozen=True)
class LlmTables:
    """The LLM tables made: one ``TableResult`` each, the recorded calls used (in order) and
    the ``api_base`` the requests named (part of every call key: a replay needs it)."""

    tables: dict[str, TableResult]
    call_keys: list[str]
    api_base: str | None = None


def make_llm_tables(spec: Spec, gateway: Any, api_base: str | None, out_dir: Path) -> LlmTables:
    """Run every ``llm`` table of ``spec`` through ``gateway`` and write it under ``out_dir``.

    Raises ``ConflictError`` when the budget ran out or samples have no answer: nothing is
    written worth keeping, but the calls already made stay in the call store for a rerun.
    """
    import pyarrow.parquet as pq

    from synthreg.generators.llm.labeled import ROWS_SCHEMA, generate_labeled

    tables: dict[str, TableResult] = {}
    keys: dict[str, None] = {}
    for name in spec.llm_tables():
        llm = spec.tables[name].llm
        assert llm is not None
        result = generate_labeled(llm, gateway, api_base=api_base)
        if result.budget_exhausted or result.missing:
            raise ConflictError(_incomplete(name, result.budget_exhausted, len(result.missing)))
        path = out_dir / "tables" / name / "part-00000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(result.rows, path)
        (out_dir / "llm").mkdir(parents=True, exist_ok=True)
        pq.write_table(result.rejects, out_dir / "llm" / f"{name}.rejects.parquet")
        pq.write_table(result.plan, out_dir / "llm" / f"{name}.plan.parquet")
        hasher = TableHasher(ROWS_SCHEMA)
        hasher.update(result.rows)
        tables[name] = TableResult(name, hasher.rows, hasher.hexdigest(), (path,), ROWS_SCHEMA)
        keys.update(dict.fromkeys(result.call_keys))
    return LlmTables(tables, list(keys), api_base)


def _incomplete(table: str, budget_exhausted: bool, missing: int) -> str:
    why = "the LLM budget ran out" if budget_exhausted else "some calls failed"
    return (
        f"table '{table}': {why} and {missing} sample(s) have no answer; nothing was registered. "
        "The answered calls are recorded: raise [llm] max_usd / max_calls (or fix the server) "
        "and run the same 'registry create' again to make only the missing ones"
    )


def replay_llm_tables(vdir: Path, spec: Spec, out_dir: Path) -> LlmTables:
    """Remake ``spec``'s ``llm`` tables from ``vdir/llm_calls.jsonl`` alone (replay-strict: no call)."""
    from synthreg.generators.llm import CallStore, FakeBackend, Gateway
    from synthreg.registry.checkout import read_manifest

    calls = vdir / "llm_calls.jsonl"
    if not calls.is_file():
        raise NotFoundError(
            f"{calls} is missing: the version's LLM tables cannot be replayed without their calls; "
            "restore it from git (it is committed with the version)"
        )
    generation = read_manifest(vdir).get("generation") or {}
    store = CallStore.open(calls)
    try:
        # replay-strict never calls its backend: any will do.
        gateway = Gateway(store, FakeBackend(), mode="replay-strict")
        return make_llm_tables(spec, gateway, generation.get("llm_api_base"), out_dir)
    finally:
        store.close()


def preflight(spec: Spec, gateway: Any, api_base: str | None) -> dict[str, Any]:
    """What the LLM tables will cost before any call: calls not yet recorded, tokens, USD.

    Generation calls only (a judge's calls depend on the answers); tokens are the
    gateway's estimate (characters / 4) and prices come from the pinned table.
    """
    from synthreg.generators.llm.labeled import make_plan, render_requests

    totals = {"calls": 0, "cached": 0, "est_prompt_tokens": 0, "est_completion_tokens": 0, "est_usd": 0.0}
    unpriced: set[str] = set()
    for name in spec.llm_tables():
        llm = spec.tables[name].llm
        assert llm is not None
        estimate = gateway.preflight(render_requests(llm, make_plan(llm), api_base))
        for key in totals:
            totals[key] += getattr(estimate, key)
        unpriced |= set(estimate.unpriced_models)
    return {**totals, "est_usd": round(float(totals["est_usd"]), 6), "unpriced_models": sorted(unpriced)}
