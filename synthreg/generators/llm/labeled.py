"""Labeled text samples: run the plan's calls, keep rows and rejects, flag and curate (LLM.md).

>>> spec = load_labeled_spec("examples/labeled/support_replies.yaml")   # doctest: +SKIP
>>> result = generate_labeled(spec, gateway)                            # doctest: +SKIP
>>> curated = curate(result.rows)                                       # doctest: +SKIP

The plan, the templates and the requests come from ``labeled_prompts`` (re-exported
here). ``generate_labeled`` runs the generation requests through a ``Gateway``; an
answer that is not JSON or breaks the ``{"text", "reasoning"}`` contract goes to
``rejects`` with its reason (kept, never fatal). With a ``judge_model`` every row gets a
second, blind call (stage ``labeled.judge``) that labels the text from the label
descriptions alone. Then every row is flagged (``flag_rows``):

- ``length_ok``: ``min_length <= len(text) <= max_length`` (characters);
- ``refusal``: the text says "as an AI" / "as a language model", or opens by declining
  ("I'm sorry, but I can't help with that request", "I cannot write that."). An apology
  alone is not a refusal: customer-service replies apologise;
- ``dup_cluster``: rows whose normalised texts (lower case, punctuation and symbols
  removed, whitespace collapsed) are equal, or whose character 5-gram sets have a Jaccard
  similarity >= ``NEAR_DUPLICATE_THRESHOLD`` (MinHash candidates, 16 bands x 4 rows, then
  exact Jaccard), share a cluster id: the smallest sample id in the cluster (null for a
  row with no duplicate);
- ``label_conflict``: the same normalised text appears under two or more labels.

``rows`` holds only what the call store determines (answers, usage, cost, the record's
``created_at``), sorted by sample id: the same spec and store give byte-identical rows,
live or replayed. What differs between runs (cache hits, attempts, latency, errors) is
in ``run_log``.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from synthreg.generators.llm.callstore import CallRequest
from synthreg.generators.llm.gateway import Gateway, Result, RunResult
from synthreg.generators.llm.labeled_prompts import (
    GEN_STAGE,
    JUDGE_STAGE,
    PLAN_SCHEMA,
    CurationPolicy,
    LabeledExample,
    LabeledTextSpec,
    judge_requests,
    load_labeled_spec,
    make_plan,
    parse_labeled_spec,
    prompt_hash,
    render_requests,
)

__all__ = [
    "DROP_REASONS",
    "GEN_STAGE",
    "JUDGE_STAGE",
    "NEAR_DUPLICATE_THRESHOLD",
    "PLAN_SCHEMA",
    "REJECTS_SCHEMA",
    "ROWS_SCHEMA",
    "RUN_LOG_SCHEMA",
    "Curated",
    "CurationPolicy",
    "LabeledExample",
    "LabeledResult",
    "LabeledTextSpec",
    "curate",
    "flag_rows",
    "generate_labeled",
    "is_refusal",
    "load_labeled_spec",
    "make_plan",
    "normalize_text",
    "parse_labeled_spec",
    "provenance",
    "render_requests",
]

NEAR_DUPLICATE_THRESHOLD = 0.7
_SHINGLE, _BANDS, _ROWS_PER_BAND, _PROBES = 5, 16, 4, 8

_CELL = [(n, pa.string()) for n in ("sample_id", "label", "category", "type")]
_PROVENANCE = ("model_requested", "model_answered", "model_returned", "template_id", "template_version")
_STR, _F64, _I64, _BOOL = pa.string(), pa.float64(), pa.int64(), pa.bool_()
ROWS_SCHEMA = pa.schema(
    [
        *_CELL,
        *[(n, _STR) for n in ("text", "reasoning", *_PROVENANCE, "template_hash", "prompt_hash", "call_key")],
        *[("temperature", _F64), ("top_p", _F64), ("seed", _I64), ("tokens_in", _I64), ("tokens_out", _I64)],
        *[("cost_usd", _F64), ("created_at", _STR), ("length_ok", _BOOL), ("refusal", _BOOL)],
        *[("dup_cluster", _STR), ("label_conflict", _BOOL), ("judge_label", _STR), ("judge_agrees", _BOOL)],
        ("judge_call_key", _STR),
    ]
)
REJECTS_SCHEMA = pa.schema(
    [*_CELL, *[(n, _STR) for n in ("stage", "model_requested", "call_key", "reason", "content")]]
)
RUN_LOG_SCHEMA = pa.schema(
    [
        *[(n, _STR) for n in ("sample_id", "stage", "call_key")],
        *[("cache_hit", _BOOL), ("attempts", _I64), ("latency_ms", _F64), ("fallback_used", _BOOL)],
        ("error", _STR),
    ]
)


@dataclass(frozen=True)
class LabeledResult:
    """What ``generate_labeled`` returns.

    ``rows`` (``ROWS_SCHEMA``) and ``rejects`` (``REJECTS_SCHEMA``) are sorted by sample id and
    depend only on the spec and the call store. ``call_keys`` are the recorded calls used, in
    plan order (each row's generation, then its judge call): what a version's manifest lists.
    ``missing`` are sample ids without an answer (budget exhausted, or the call failed: see
    ``run_log``); a record-missing rerun fills them (a row whose judge call is missing keeps a
    null ``judge_label``). Tokens and ``cost_usd`` are those recorded
    with the answers used; ``calls`` (HTTP requests, retries included), ``cache_hits`` and
    ``spent_usd`` are this run's.
    """

    plan: pa.Table
    rows: pa.Table
    rejects: pa.Table
    run_log: pa.Table
    call_keys: tuple[str, ...]
    missing: tuple[str, ...]
    budget_exhausted: bool
    calls: int
    cache_hits: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    spent_usd: float
    judge_agreement: float | None


@dataclass
class _Run:
    """Results of one generation (and judge) pass, as lists of dicts."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    answered: list[Result] = field(default_factory=list)


def generate_labeled(
    spec: LabeledTextSpec, gateway: Gateway, *, api_base: str | None = None
) -> LabeledResult:
    """Plan, render and run ``spec`` through ``gateway`` (its mode, store and budget apply)."""
    plan = make_plan(spec)
    requests = render_requests(spec, plan, api_base)
    gen = gateway.run(requests)
    cells = {row["sample_id"]: row for row in plan.to_pylist()}
    state = _collect(gateway, cells, requests, gen)
    judged = judge_requests(spec, state.rows, api_base)
    judge = gateway.rest_of_budget(gen).run(judged) if judged else None
    if judge is not None:
        _apply_judge(spec, state, judged, judge)
    rows = flag_rows(pa.Table.from_pylist(_with_defaults(state.rows), schema=ROWS_SCHEMA), spec)
    verdicts = [v for v in rows.column("judge_agrees").to_pylist() if v is not None]
    runs = [gen] if judge is None else [gen, judge]
    return LabeledResult(
        plan=plan,
        rows=rows,
        rejects=pa.Table.from_pylist(sorted(state.rejects, key=_reject_order), schema=REJECTS_SCHEMA),
        run_log=_run_log([*requests, *judged], runs),
        call_keys=_call_keys(requests, state),
        missing=tuple(state.missing),
        budget_exhausted=any(r.budget_exhausted for r in runs),
        calls=sum(r.calls for r in runs),
        cache_hits=sum(r.cache_hits for r in runs),
        tokens_in=sum(r.prompt_tokens for r in state.answered),
        tokens_out=sum(r.completion_tokens for r in state.answered),
        cost_usd=round(sum(r.cost_usd for r in state.answered), 10),
        spent_usd=round(sum(r.spent_usd for r in runs), 10),
        judge_agreement=sum(verdicts) / len(verdicts) if verdicts else None,
    )


def _answers(requests: Sequence[CallRequest], run: RunResult) -> list[Result | None]:
    """The answered result of each request (None: skipped or failed), in request order."""
    by_key = {r.key: r for r in run}
    found = (by_key.get(q.key) for q in requests)
    return [r if r is not None and r.ok else None for r in found]


def _collect(
    gateway: Gateway, cells: Mapping[str, Mapping[str, Any]], requests: list[CallRequest], run: RunResult
) -> _Run:
    state = _Run()
    for request, result in zip(requests, _answers(requests, run), strict=True):
        if result is None:
            state.missing.append(request.row_id)
            continue
        state.answered.append(result)
        cell = {n: cells[request.row_id][n] for n in ("sample_id", "label", "category", "type")}
        problem = _gen_problem(result)
        if problem is not None:
            state.rejects.append(_reject(cell, request, result, problem))
            continue
        record = gateway.store.get(result.answered_key or result.key)
        created_at = record.created_at if record is not None else ""
        sample = {"text": result.parsed["text"], "reasoning": result.parsed["reasoning"]}
        state.rows.append({**cell, **sample, **provenance(request, result, created_at)})
    return state


def _apply_judge(spec: LabeledTextSpec, state: _Run, requests: list[CallRequest], run: RunResult) -> None:
    for row, request, result in zip(state.rows, requests, _answers(requests, run), strict=True):
        if result is None:
            continue
        state.answered.append(result)
        row["judge_call_key"] = result.answered_key
        problem = _judge_problem(result, spec.labels)
        if problem is not None:
            state.rejects.append(_reject(row, request, result, problem))
            continue
        row["judge_label"] = result.parsed["label"]
        row["judge_agrees"] = row["judge_label"] == row["label"]


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _gen_problem(result: Result) -> str | None:
    """Why an answer breaks the contract (None: it keeps it; extra fields are ignored)."""
    if result.parse_error:
        return result.parse_error
    parsed = result.parsed
    if not isinstance(parsed, dict):
        return f"the answer is a JSON {_json_type(parsed)}, not an object with text and reasoning"
    for name in ("text", "reasoning"):
        if name not in parsed:
            return f"the answer has no {name!r} field"
        if not isinstance(parsed[name], str):
            return f"{name!r} is a JSON {_json_type(parsed[name])}, not a string"
    return None if parsed["text"].strip() else "'text' is empty"


def _judge_problem(result: Result, labels: Mapping[str, str]) -> str | None:
    if result.parse_error:
        return result.parse_error
    label = result.parsed.get("label") if isinstance(result.parsed, dict) else None
    return None if label in labels else f"the judge's label {label!r} is not one of {list(labels)}"


def provenance(request: CallRequest, result: Result, created_at: str) -> dict[str, Any]:
    """The provenance columns of one answered request (LLM.md): models, template, prompt hash,
    call key, sampling, usage, cost and the record's time."""
    return {
        "model_requested": request.model,
        "model_answered": result.model_answered,
        "model_returned": result.model_returned,
        "template_id": request.template_id,
        "template_version": request.template_version,
        "template_hash": request.template_hash,
        "prompt_hash": prompt_hash(request.messages),
        "call_key": result.answered_key,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "tokens_in": result.prompt_tokens,
        "tokens_out": result.completion_tokens,
        "cost_usd": result.cost_usd,
        "created_at": created_at,
    }


def _reject(cell: Mapping[str, Any], request: CallRequest, result: Result, reason: str) -> dict[str, Any]:
    return {
        **{name: cell[name] for name in ("sample_id", "label", "category", "type")},
        "stage": request.stage,
        "model_requested": request.model,
        "call_key": result.answered_key,
        "reason": reason,
        "content": result.content,
    }


def _reject_order(reject: Mapping[str, Any]) -> tuple[str, str]:
    return reject["sample_id"], reject["stage"]


def _with_defaults(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    empty = {"judge_label": None, "judge_agrees": None, "judge_call_key": None}
    flags = {"length_ok": True, "refusal": False, "dup_cluster": None, "label_conflict": False}
    return [{**empty, **flags, **row} for row in rows]


def _call_keys(requests: list[CallRequest], state: _Run) -> tuple[str, ...]:
    by_row: dict[str, list[str]] = defaultdict(list)
    for result in state.answered:
        by_row[result.row_id].append(result.answered_key or result.key)
    return tuple(key for request in requests for key in by_row.get(request.row_id, []))


def _run_log(requests: Sequence[CallRequest], runs: Sequence[RunResult]) -> pa.Table:
    done = {r.key: r for run in runs for r in run}
    entries = []
    for request in requests:
        result = done.get(request.key)
        entries.append(
            {
                "sample_id": request.row_id,
                "stage": request.stage,
                "call_key": request.key if result is None else (result.answered_key or request.key),
                "cache_hit": None if result is None else result.cache_hit,
                "attempts": 0 if result is None else result.attempts,
                "latency_ms": None if result is None else result.latency_ms,
                "fallback_used": None if result is None else result.fallback_used,
                "error": "not run: the budget was exhausted" if result is None else result.error,
            }
        )
    return pa.Table.from_pylist(entries, schema=RUN_LOG_SCHEMA)


# ---------------------------------------------------------------- flags

_PUNCT_OR_SYMBOL = re.compile(r"[^\w\s]|_", re.UNICODE)
_REFUSAL = re.compile(
    r"\bas an ai\b|\bas a (?:large )?language model\b"
    r"|^\W*(?:(?:i'm|i am) sorry|sorry|unfortunately)?[,.]?\s*(?:but\s+)?"
    r"i\s+(?:cannot|can't|can not|won't|will not|am unable to|'m unable to|am not able to)\s+"
    r"(?:help|assist|comply|fulfil|fulfill|create|generate|write|produce|provide)"
    r"(?:(?:\s+(?:with\s+)?(?:that|this|it)(?:\s+request)?)?\s*[.!]?\s*$"
    r"|\s+(?:with\s+)?(?:that|this|your|such)\s+(?:request|prompt|content|task))",
    re.IGNORECASE,
)


def normalize_text(text: str) -> str:
    """Lower case, punctuation and symbols removed, whitespace collapsed (as the quality validator)."""
    return " ".join(_PUNCT_OR_SYMBOL.sub("", text.lower()).split())


def is_refusal(text: str) -> bool:
    """Whether ``text`` is a model refusal rather than a sample (module docstring)."""
    return _REFUSAL.search(text.replace("\u2019", "'").strip()) is not None


def flag_rows(rows: pa.Table, spec: LabeledTextSpec) -> pa.Table:
    """``rows`` with ``length_ok``, ``refusal``, ``dup_cluster`` and ``label_conflict`` (re)computed."""
    texts = rows.column("text").to_pylist()
    ids, labels = rows.column("sample_id").to_pylist(), rows.column("label").to_pylist()
    norms = [normalize_text(t) for t in texts]
    seen: dict[str, set[str]] = defaultdict(set)
    for norm, label in zip(norms, labels, strict=True):
        seen[norm].add(label)
    flags = {
        "length_ok": pa.array([spec.min_length <= len(t) <= spec.max_length for t in texts], pa.bool_()),
        "refusal": pa.array([is_refusal(t) for t in texts], pa.bool_()),
        "dup_cluster": pa.array(_dup_clusters(ids, norms), pa.string()),
        "label_conflict": pa.array([len(seen[n]) > 1 for n in norms], pa.bool_()),
    }
    for name, values in flags.items():
        rows = rows.set_column(rows.schema.get_field_index(name), name, values)
    return rows


def _dup_clusters(ids: list[str], norms: list[str]) -> list[str | None]:
    """Per row, the smallest sample id of its duplicate cluster (None: no duplicate)."""
    distinct = sorted(set(norms))  # sorted: clusters must not depend on row order
    root = _near_duplicate_roots(distinct)
    index = {text: i for i, text in enumerate(distinct)}
    members: dict[int, list[str]] = defaultdict(list)
    for sample_id, norm in zip(ids, norms, strict=True):
        members[root[index[norm]]].append(sample_id)
    first = {r: min(m) for r, m in members.items() if len(m) > 1}
    return [first.get(root[index[norm]]) for norm in norms]


def _shingles(text: str) -> frozenset[str]:
    if len(text) <= _SHINGLE:
        return frozenset({text})
    return frozenset(text[i : i + _SHINGLE] for i in range(len(text) - _SHINGLE + 1))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_SALTS = _mix(np.arange(1, _BANDS * _ROWS_PER_BAND + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))


def _signature(shingles: frozenset[str]) -> np.ndarray:
    """The MinHash signature: per salt, the smallest mixed 64-bit shingle hash."""
    digests = [hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest() for s in sorted(shingles)]
    hashes = np.frombuffer(b"".join(digests), dtype="<u8").astype(np.uint64)
    return np.asarray(_mix(hashes[None, :] ^ _SALTS[:, None]).min(axis=1))


def _near_duplicate_roots(texts: list[str]) -> list[int]:
    """Union-find roots over distinct ``texts`` linked by 5-gram Jaccard >= the threshold."""
    sets = [_shingles(t) for t in texts]
    signatures = [_signature(s) for s in sets]
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for band in range(_BANDS):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        for i, sig in enumerate(signatures):
            buckets[sig[band * _ROWS_PER_BAND : (band + 1) * _ROWS_PER_BAND].tobytes()].append(i)
        for group in buckets.values():
            for pos in range(1, len(group)):
                a = group[pos]
                for b in reversed(group[max(0, pos - _PROBES) : pos]):
                    if find(a) == find(b):
                        break
                    inter = len(sets[a] & sets[b])
                    if inter >= NEAR_DUPLICATE_THRESHOLD * (len(sets[a]) + len(sets[b]) - inter):
                        parent[find(a)] = find(b)
                        break
    return [find(i) for i in range(len(texts))]


# ---------------------------------------------------------------- curation

#: Why ``curate`` drops a row, in the order the reasons are checked.
DROP_REASONS = ("refusal", "length", "label_conflict", "judge_disagreement", "duplicate")


@dataclass(frozen=True)
class Curated:
    """The rows ``curate`` kept, and how many it dropped per reason (every reason listed)."""

    kept: pa.Table
    dropped: dict[str, int]
    reasons: dict[str, str]
    """sample id -> the reason it was dropped (the first one that applies)."""


def _drop_reason(row: Mapping[str, Any], policy: CurationPolicy) -> str | None:
    checks = (
        ("refusal", policy.drop_refusals and row["refusal"]),
        ("length", policy.drop_length and not row["length_ok"]),
        ("label_conflict", policy.drop_label_conflicts and row["label_conflict"]),
        ("judge_disagreement", policy.drop_judge_disagreements and row["judge_agrees"] is False),
    )
    return next((reason for reason, hit in checks if hit), None)


def curate(rows: pa.Table, policy: CurationPolicy | None = None) -> Curated:
    """Drop flagged rows by ``policy``; of each duplicate cluster the first surviving row is kept."""
    policy = policy or CurationPolicy()
    names = ["sample_id", "refusal", "length_ok", "label_conflict", "judge_agrees", "dup_cluster"]
    reasons: dict[str, str] = {}
    clusters: set[str] = set()
    for row in sorted(rows.select(names).to_pylist(), key=lambda r: r["sample_id"]):
        reason = _drop_reason(row, policy)
        if reason is None and policy.drop_duplicates and row["dup_cluster"] is not None:
            reason = "duplicate" if row["dup_cluster"] in clusters else None
            clusters.add(row["dup_cluster"])
        if reason is not None:
            reasons[row["sample_id"]] = reason
    keep = pa.array([sid not in reasons for sid in rows.column("sample_id").to_pylist()], pa.bool_())
    dropped = {reason: sum(1 for r in reasons.values() if r == reason) for reason in DROP_REASONS}
    return Curated(kept=rows.filter(keep), dropped=dropped, reasons=reasons)
