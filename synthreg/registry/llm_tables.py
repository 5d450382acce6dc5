"""What the LLM makes in a version: tables with ``llm`` (labeled text) and ``llm_text`` columns of
engine tables. Made at ``registry create`` after the engine, replayed strictly from the version's
``llm_calls.jsonl`` by ``materialize`` and ``verify --rebuild``.

An LLM table's rows go to ``tables/<t>/part-00000.parquet`` (hashed like an engine table, so
its digest enters the content digest); its rejects and plan to ``llm/<t>.rejects.parquet``
and ``llm/<t>.plan.parquet``. An ``llm_text`` column is filled in the engine's part files,
which are then re-hashed; its per-row provenance goes to ``llm/<t>.<column>.parquet``.

One budget covers the whole version: each stage gets what the earlier ones left.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthreg.digest import TableHasher
from synthreg.errors import ConflictError, NotFoundError, SpecError
from synthreg.generators.engine import TableResult
from synthreg.generators.spec import Spec

__all__ = [
    "CURATION_VERSION",
    "LlmTables",
    "carry_llm",
    "check_models_reachable",
    "file_sha256",
    "llm_facts",
    "make_llm_data",
    "read_slice",
    "replay_llm_data",
    "slice_problems",
]

#: The curation step LLM tables go through at create (recorded: a replay applies the same one).
CURATION_VERSION = 1


@dataclass(frozen=True)
class LlmTables:
    """The LLM tables made: one ``TableResult`` each, the recorded calls used (in order) and
    the ``api_base`` the requests named (part of every call key: a replay needs it)."""

    tables: dict[str, TableResult]
    call_keys: list[str]
    api_base: str | None = None
    fallbacks: tuple[str, ...] = ()  # the fallback models the gateway could route to (a replay follows them)


def make_llm_data(
    spec: Spec,
    gateway: Any,
    api_base: str | None,
    out_dir: Path,
    engine: dict[str, TableResult],
    on_preflight: Callable[[dict[str, Any]], None] | None = None,
    curation: int | None = CURATION_VERSION,
) -> LlmTables:
    """Make ``spec``'s ``llm`` tables and fill its ``llm_text`` columns (in the engine's files
    under ``out_dir``, listed in ``engine``) through ``gateway``.

    ``curation`` is the version of the curation step the LLM tables go through (None: none, as
    for versions made before it existed: their replay must keep every row). ``on_preflight``
    receives the estimate of the calls to make before any is made. Raises
    ``ConflictError`` when the budget ran out or rows have no answer: nothing is written worth
    keeping, but the calls already made stay in the call store for a rerun.
    """
    columns = _column_rows(spec, engine)
    if on_preflight is not None:
        on_preflight(preflight(spec, gateway, api_base, columns))
    keys: dict[str, None] = {}
    tables, gateway = _make_tables(spec, gateway, api_base, out_dir, keys, curation)
    for name, rows in columns.items():
        tables[name], gateway = _fill_columns(
            spec, name, rows, gateway, api_base, out_dir, engine[name], keys
        )
    fallbacks = tuple(f for f in gateway.fallbacks if isinstance(f, str))
    return LlmTables(tables, list(keys), api_base, fallbacks)


def check_models_reachable(spec: Spec, llm: Any) -> None:
    """Refuse, before anything is generated or called, a spec naming a model the workspace's
    ``[llm]`` settings (``llm``, a ``LlmSettings``) cannot reach: no endpoint serving it, no key
    (rules: ``synthreg.generators.llm.reach``). Raises ``SpecError`` naming each model and the
    setting to add."""
    from synthreg.generators.llm.reach import unreachable_reason

    named: list[tuple[str, str]] = []
    for name in spec.llm_tables():
        table = spec.tables[name].llm
        assert table is not None
        named += [(f"tables.{name}.llm.models", m) for m in table.models]
        if table.judge_model:
            named.append((f"tables.{name}.llm.judge_model", table.judge_model))
    for table_name, column in spec.llm_columns():
        col = spec.tables[table_name].columns[column].llm
        assert col is not None
        named += [(f"tables.{table_name}.columns.{column}.llm.models", m) for m in col.models]
    problems = []
    for loc, model in dict.fromkeys(named):
        why = unreachable_reason(
            model, default_model=llm.model, api_base=llm.api_base, api_key_env=llm.api_key_env
        )
        if why:
            problems.append((loc, f"{why}; nothing was generated or called"))
    if problems:
        raise SpecError(spec.source, problems)


def _column_rows(spec: Spec, engine: dict[str, TableResult]) -> dict[str, list[dict[str, Any]]]:
    """Per table with ``llm_text`` columns, every row's values of the columns the prompts read."""
    import pyarrow.parquet as pq

    from synthreg.generators.llm.column_text import placeholders

    out: dict[str, list[dict[str, Any]]] = {}
    for table in dict.fromkeys(t for t, _ in spec.llm_columns()):
        columns = spec.tables[table].columns
        needed = {n for col in columns.values() if col.llm is not None for n in placeholders(col.llm.prompt)}
        names = [n for n in columns if n in needed]
        out[table] = [
            row for path in engine[table].files for row in pq.read_table(path, columns=names).to_pylist()
        ]
    return out


def _make_tables(
    spec: Spec, gateway: Any, api_base: str | None, out_dir: Path, keys: dict[str, None], curation: int | None
) -> tuple[dict[str, TableResult], Any]:
    """The ``llm`` tables (curated by their spec's ``curation``: what it drops goes to
    ``llm/<t>.dropped.parquet`` with its reason), and the gateway with what they left of the budget."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from synthreg.generators.llm.labeled import (
        GEN_STAGE,
        ROWS_SCHEMA,
        CurationPolicy,
        curate,
        generate_labeled,
    )

    keep_all = CurationPolicy(drop_duplicates=False, drop_refusals=False, drop_length=False)

    tables: dict[str, TableResult] = {}
    for name in spec.llm_tables():
        llm = spec.tables[name].llm
        assert llm is not None
        result = generate_labeled(llm, gateway, api_base=api_base)
        gateway = gateway.rest_of_budget(result)  # the next stage gets what is left
        if result.budget_exhausted or result.missing:
            raise ConflictError(_incomplete(f"table '{name}'", result.budget_exhausted, len(result.missing)))
        path = out_dir / "tables" / name / "part-00000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        curated = curate(result.rows, llm.curation if curation is not None else keep_all)
        pq.write_table(curated.kept, path)
        (out_dir / "llm").mkdir(parents=True, exist_ok=True)
        pq.write_table(result.rejects, out_dir / "llm" / f"{name}.rejects.parquet")
        pq.write_table(result.plan, out_dir / "llm" / f"{name}.plan.parquet")
        ids = result.rows.column("sample_id").to_pylist()
        dropped = result.rows.filter(pa.array([i in curated.reasons for i in ids], pa.bool_()))
        reasons = [curated.reasons[i] for i in dropped.column("sample_id").to_pylist()]
        dropped = dropped.append_column("drop_reason", pa.array(reasons, pa.string()))
        pq.write_table(dropped, out_dir / "llm" / f"{name}.dropped.parquet")
        summary = {
            "samples": llm.samples,
            "rows": curated.kept.num_rows,
            "rejects": sum(s == GEN_STAGE for s in result.rejects.column("stage").to_pylist()),
            "judge_rejects": sum(s != GEN_STAGE for s in result.rejects.column("stage").to_pylist()),
            "dropped": {k: v for k, v in curated.dropped.items() if v},
            "judge_agreement": result.judge_agreement,
        }
        (out_dir / "llm" / f"{name}.summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        hasher = TableHasher(ROWS_SCHEMA)
        hasher.update(curated.kept)
        tables[name] = TableResult(name, hasher.rows, hasher.hexdigest(), (path,), ROWS_SCHEMA)
        keys.update(dict.fromkeys(result.call_keys))
    return tables, gateway


def _fill_columns(
    spec: Spec,
    table: str,
    rows: list[dict[str, Any]],
    gateway: Any,
    api_base: str | None,
    out_dir: Path,
    made: TableResult,
    keys: dict[str, None],
) -> tuple[TableResult, Any]:
    """Fill ``table``'s ``llm_text`` columns in its part files, keep their provenance, re-hash;
    return the table and the gateway with what the columns left of the budget."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from synthreg.generators.constraints import rewrite_part
    from synthreg.generators.llm.column_text import fill_column

    texts: dict[str, list[str | None]] = {}
    for name, col in spec.tables[table].columns.items():
        if col.llm is None:
            continue
        filled = fill_column(table, name, col.llm, rows, gateway, api_base)
        gateway = gateway.rest_of_budget(filled)
        if filled.budget_exhausted or filled.missing:
            where = f"column '{table}.{name}'"
            raise ConflictError(_incomplete(where, filled.budget_exhausted, len(filled.missing)))
        (out_dir / "llm").mkdir(parents=True, exist_ok=True)
        pq.write_table(filled.provenance, out_dir / "llm" / f"{table}.{name}.parquet")
        texts[name] = filled.texts
        keys.update(dict.fromkeys(filled.call_keys))
    hasher = TableHasher(made.schema)
    offset = 0
    for path in made.files:
        part = pq.read_table(path)
        n = part.num_rows
        for name, values in texts.items():
            i = part.schema.get_field_index(name)
            part = part.set_column(
                i, part.schema.field(i), pa.array(values[offset : offset + n], pa.string())
            )
        rewrite_part(path, part)
        hasher.update(part)
        offset += n
    return TableResult(table, hasher.rows, hasher.hexdigest(), made.files, made.schema), gateway


def _incomplete(where: str, budget_exhausted: bool, missing: int) -> str:
    why = "the LLM budget ran out" if budget_exhausted else "some calls failed"
    return (
        f"{where}: {why} and {missing} row(s) have no answer; nothing was registered. "
        "The answered calls are recorded: raise [llm] max_usd / max_calls (or fix the server) "
        "and run the same 'registry create' again to make only the missing ones"
    )


def replay_llm_data(vdir: Path, spec: Spec, out_dir: Path, engine: dict[str, TableResult]) -> LlmTables:
    """Remake ``spec``'s ``llm`` tables and ``llm_text`` columns from ``vdir/llm_calls.jsonl`` alone
    (replay-strict: no call)."""
    from synthreg.generators.llm import CallStore, FakeBackend, Gateway
    from synthreg.registry.checkout import read_manifest

    calls = vdir / "llm_calls.jsonl"
    if not calls.is_file():
        raise NotFoundError(
            f"{calls} is missing: the version's LLM data cannot be replayed without its calls; "
            "restore it from git (it is committed with the version)"
        )
    facts = llm_facts(read_manifest(vdir)) or {}
    store = CallStore.open(calls)
    try:
        # replay-strict never calls its backend: any will do.
        gateway = Gateway(store, FakeBackend(), mode="replay-strict", fallbacks=facts.get("fallbacks", ()))
        return make_llm_data(
            spec, gateway, facts.get("api_base"), out_dir, engine, curation=facts.get("curation")
        )
    finally:
        store.close()


def llm_facts(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """What replaying a version's LLM calls needs: ``call_keys`` and the ``api_base`` the requests
    named. A created version records them with its generation; a rollback or a disable carries
    its source's (manifest ``llm``)."""
    generation = manifest.get("generation") or {}
    if "llm_call_keys" in generation:
        return {
            "call_keys": generation["llm_call_keys"],
            "api_base": generation.get("llm_api_base"),
            "fallbacks": generation.get("llm_fallbacks", []),
            "calls_sha256": generation.get("llm_calls_sha256"),
            "curation": generation.get("llm_curation"),
        }
    carried: dict[str, Any] | None = manifest.get("llm")
    return carried


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a text file's bytes with LF line ends (a CRLF checkout hashes the same)."""
    import hashlib

    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def read_slice(path: Path) -> list[dict[str, Any]]:
    """The records of a call slice (JSONL): split on newlines only, since an answer may hold
    U+2028 or U+0085, which ``str.splitlines`` would break on. Raises ``ValueError`` for a
    line that is not JSON."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def slice_problems(vdir: Path, manifest: dict[str, Any]) -> list[str]:
    """What is wrong with a version's call slice (``llm_calls.jsonl``): missing, edited since it
    was recorded (sha256), a record whose request does not hash to its key, or keys that differ
    from the manifest's. Empty for a version without LLM calls."""
    import hashlib

    from synthreg.generators.llm.callstore import canonical_json

    facts = llm_facts(manifest)
    if facts is None:
        return []
    path = vdir / "llm_calls.jsonl"
    if not path.is_file():
        if not facts["call_keys"]:  # versions made before empty slices were shipped
            return []
        return [f"{path.name} is missing: restore it from git (it is committed with the version)"]
    problems = []
    if facts.get("calls_sha256") and file_sha256(path) != facts["calls_sha256"]:
        problems.append(f"{path.name} does not match its sha256 in manifest.json: it was edited")
    records, forged = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if hashlib.sha256(canonical_json(record["request"]).encode("utf-8")).hexdigest() != record["key"]:
                forged.append(str(record["key"])[:12])
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"line {n} of {path.name} is not a call record ({type(exc).__name__}: {exc})")
            continue
        records.append(record)
    if forged:
        problems.append(
            f"{len(forged)} call(s) in {path.name} do not hash to their key ({', '.join(forged[:3])})"
        )
    if [r["key"] for r in records] != list(facts["call_keys"]):
        problems.append(f"the calls in {path.name} are not the ones manifest.json lists (llm_call_keys)")
    return problems


def carry_llm(src: Path, staging: Path) -> dict[str, Any] | None:
    """Copy a source version's call slice and LLM side tables (``llm/``) into ``staging``, for a
    version made from it without generating (rollback, disable); return its replay facts."""
    import shutil

    from synthreg.registry.checkout import read_manifest

    facts = llm_facts(read_manifest(src))
    if facts is None:
        return None
    if (src / "llm_calls.jsonl").is_file():
        shutil.copy2(src / "llm_calls.jsonl", staging / "llm_calls.jsonl")
    if (src / "llm").is_dir():
        shutil.copytree(src / "llm", staging / "llm")
    return facts


def preflight(
    spec: Spec, gateway: Any, api_base: str | None, columns: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """What the LLM data will cost before any call: calls not yet recorded, tokens, USD.

    Generation calls only (judge and repair calls depend on the answers); tokens are the
    gateway's estimate (characters / 4) and prices come from the pinned table. ``columns``
    holds the rows each table's ``llm_text`` prompts read.
    """
    from synthreg.generators.llm.column_text import column_requests
    from synthreg.generators.llm.labeled import make_plan, render_requests

    requests = []
    for name in spec.llm_tables():
        llm = spec.tables[name].llm
        assert llm is not None
        requests += render_requests(llm, make_plan(llm), api_base)
    for table, column in spec.llm_columns():
        col = spec.tables[table].columns[column].llm
        assert col is not None
        requests += column_requests(table, column, col, columns[table], api_base)
    estimate: dict[str, Any] = gateway.preflight(requests).as_dict()
    return {**estimate, "unpriced_models": list(estimate["unpriced_models"])}
