"""Story -> spec: a short story becomes a validated multi-table ``Spec`` (docs LLM.md, "Story -> spec").

1. ``lock_story`` reads what the story states explicitly (table names, row counts such as
   "50k users" or "2 million orders", enums such as "plans free, pro and team"), with no
   LLM. Locked facts win over the model's answers; each override is logged as a fix.
2. Three structured-output calls through the ``Gateway`` (stages ``story.tables``,
   ``story.columns``, ``story.constraints``; templates in ``story_prompts``), assembled into
   a spec mapping and validated by ``parse_spec`` (the YAML path's model).
3. A step whose answer is not JSON, breaks its schema or yields spec errors gets a repair
   call (``repair#k``, at most ``max_repairs`` per step) carrying the problems and its
   previous answer; what is still wrong then meets deterministic fixes (``story_fixes``
   rules below), each logged. If the spec still does not validate, ``SpecError`` says why.

No random choice is made here: the same answers give the same spec, so a replay of the
recorded calls (``replay-strict``) rebuilds the spec byte for byte. ``seed`` is the spec's
seed and is passed to the provider (best effort).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from synthreg.errors import SpecError, UsageError
from synthreg.generators.llm.callstore import CallRequest
from synthreg.generators.llm.errors import BackendError
from synthreg.generators.llm.gateway import Gateway, Result
from synthreg.generators.llm.story_answers import (
    Problems,
    assemble,
    lock_tables,
    normalize_columns,
    normalize_constraints,
    normalize_tables,
)
from synthreg.generators.llm.story_fixes import apply_fixes, route
from synthreg.generators.llm.story_lock import Locked, LockedEnum, LockedTable, lock_story
from synthreg.generators.llm.story_prompts import (
    COLUMNS,
    COLUMNS_SCHEMA,
    CONSTRAINTS,
    CONSTRAINTS_SCHEMA,
    REPAIR,
    SYSTEM,
    TABLES,
    TABLES_SCHEMA,
    PromptTemplate,
    columns_prompt,
    constraints_prompt,
    tables_prompt,
)
from synthreg.generators.spec import Spec
from synthreg.generators.spec_io import parse_spec

__all__ = ["Locked", "LockedEnum", "LockedTable", "StepLog", "StoryResult", "draft_spec", "lock_story"]

SOURCE = "story"
_MAX_FIX_PASSES = 60
_Normalizer = Callable[[Any], tuple[dict[str, Any], Problems]]


@dataclass(frozen=True)
class StepLog:
    """What one step did: its call keys and attempt kinds, the problems seen, the fixes applied."""

    name: str
    call_keys: tuple[str, ...]
    attempts: tuple[str, ...]
    errors: tuple[str, ...]
    fixes: tuple[str, ...]


@dataclass(frozen=True)
class StoryResult:
    """The accepted spec and how it was reached (``to_dict`` for JSON and the version record)."""

    spec: Spec
    spec_yaml: str
    locked: Locked
    steps: tuple[StepLog, ...]
    call_keys: tuple[str, ...]
    prompt: str
    model_answered: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the spec as its frozen mapping)."""
        return {
            "spec": self.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True),
            "spec_yaml": self.spec_yaml,
            "locked": self.locked.to_dict(),
            "steps": [asdict(step) for step in self.steps],
            "call_keys": list(self.call_keys),
            "prompt": self.prompt,
            "model_answered": self.model_answered,
        }


@dataclass(eq=False)  # hashed by identity: steps key the routed problems
class _Step:
    name: str
    template: PromptTemplate
    schema: dict[str, Any]
    normalize: _Normalizer
    max_tokens: int
    messages: list[dict[str, str]] = field(default_factory=list)
    answer: dict[str, Any] | None = None
    content: str | None = None
    keys: list[str] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    def log(self, kind: list[str], path: str, message: str) -> None:
        line = f"{path}: {message}" if path else message
        if line not in kind:
            kind.append(line)

    def freeze(self) -> StepLog:
        return StepLog(self.name, *map(tuple, (self.keys, self.attempts, self.errors, self.fixes)))


def _steps() -> dict[str, _Step]:
    return {
        "tables": _Step("tables", TABLES, TABLES_SCHEMA, normalize_tables, 2000),
        "columns": _Step("columns", COLUMNS, COLUMNS_SCHEMA, normalize_columns, 8000),
        "constraints": _Step("constraints", CONSTRAINTS, CONSTRAINTS_SCHEMA, normalize_constraints, 2000),
    }


def draft_spec(
    story: str,
    gateway: Gateway,
    *,
    model: str,
    api_base: str | None = None,
    seed: int = 0,
    max_repairs: int = 2,
) -> StoryResult:
    """Draft a spec from ``story`` with ``model`` through ``gateway`` (see the module docstring).

    Raises ``UsageError`` for an empty model or story, ``SpecError`` when the answers do not
    make a valid spec even after repairs and fixes, ``BackendError`` when no model answered,
    and the gateway's ``CallNotRecordedError`` in replay-strict mode for a call not recorded.
    The gateway's budget caps the whole draft (every step and repair together); when it runs
    out, ``UsageError`` says so, and the calls made so far stay recorded for a resume.
    """
    _check_args(story, model, seed, max_repairs)
    locked = lock_story(story)
    run = _Run(gateway, model, api_base, seed, max_repairs)
    tables = run.ask(run.steps["tables"], tables_prompt(story, locked))
    shown = lock_tables(tables, locked, [])
    run.ask(run.steps["columns"], columns_prompt(story, locked, shown))
    run.ask(run.steps["constraints"], constraints_prompt(story, shown, run.answer("columns")))
    spec = run.settle(locked, seed, story)
    return StoryResult(
        spec=spec,
        spec_yaml=spec.frozen_yaml(),
        locked=locked,
        steps=tuple(step.freeze() for step in run.steps.values()),
        call_keys=tuple(run.call_keys),
        prompt="\n\n".join([f"# story\n{story.strip()}", *run.prompts]),
        model_answered=", ".join(dict.fromkeys(run.models)),
    )


def _check_args(story: str, model: str, seed: int, max_repairs: int) -> None:
    if not model or not model.strip():
        raise UsageError(
            "story -> spec needs an LLM model and none was given: configure a provider-qualified "
            "model (e.g. openai/gpt-4o-mini) in the registry's LLM settings, or write the spec YAML by hand"
        )
    if not story or not story.strip():
        raise UsageError("the story is empty: describe the dataset, e.g. 'a fitness app with 50k users'")
    if not 0 <= seed < 2**63:
        raise UsageError(f"seed must be in [0, 2**63), not {seed}: pick another seed")
    if max_repairs < 0:
        raise UsageError(f"max_repairs must be >= 0, not {max_repairs}: use 0 for no repair calls")


class _Run:
    """The calls of one ``draft_spec``: the steps' conversations, repairs and logs.

    The gateway's ``max_calls`` / ``max_usd`` hold for the whole draft: each run gets what the
    earlier runs left (``Gateway.rest_of_budget``).
    """

    def __init__(self, gateway: Gateway, model: str, api_base: str | None, seed: int, max_repairs: int):
        self.gateway, self.model, self.api_base = gateway, model, api_base
        self.seed, self.max_repairs = seed, max_repairs
        self.steps = _steps()
        self.call_keys: list[str] = []
        self.prompts: list[str] = []
        self.models: list[str] = []
        self.calls, self.spent_usd = 0, 0.0

    def answer(self, name: str) -> dict[str, Any]:
        return self.steps[name].answer or {}

    def ask(self, step: _Step, text: str) -> dict[str, Any]:
        """The step's first answer, repaired while it is not JSON or breaks its schema."""
        step.messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
        problems = self._accept(step, self._call([(step, self._request(step, step.messages, "gen"))])[0])
        while problems and self._can_repair(step):
            problems = self._accept(step, self._call([(step, self._repair(step, problems))])[0])
        if problems:
            raise SpecError(
                SOURCE,
                [(f"step {step.name}: {path}", message) for path, message in problems]
                + [("", _give_up(step, "the answer stays unusable"))],
            )
        return step.answer or {}

    def settle(self, locked: Locked, seed: int, story: str) -> Spec:
        """Assemble and validate; repair the steps with problems; then fix deterministically."""
        while True:
            data = self._assemble(locked, seed, story)
            try:
                return parse_spec(data, SOURCE)
            except SpecError as exc:
                routed = self._log_problems(exc.problems)
            todo = [(s, p) for s, p in routed.items() if self._can_repair(s)]
            if not todo:
                return self._fix(data)
            results = self._call([(step, self._repair(step, problems)) for step, problems in todo])
            for (step, _), result in zip(todo, results, strict=True):
                self._accept(step, result)

    def _assemble(self, locked: Locked, seed: int, story: str) -> dict[str, Any]:
        notes: list[tuple[str, str, str]] = []
        description = self.answer("tables").get("description") or story.strip()[:300]
        data = assemble(
            self.answer("tables"), self.answer("columns"), self.answer("constraints"), locked, notes
        )
        data = {"description": description, "seed": seed, **data}
        for name, path, note in notes:
            self.steps[name].log(self.steps[name].fixes, path, note)
        return data

    def _log_problems(self, problems: Problems) -> dict[_Step, Problems]:
        routed: dict[_Step, Problems] = {}
        for path, message in problems:
            step = self.steps[route(path, message)]
            step.log(step.errors, path, message)
            routed.setdefault(step, []).append((path, message))
        return routed

    def _fix(self, data: dict[str, Any]) -> Spec:
        problems: Problems = []
        for _ in range(_MAX_FIX_PASSES):
            try:
                return parse_spec(data, SOURCE)
            except SpecError as exc:
                problems = exc.problems
            self._log_problems(problems)
            notes = apply_fixes(data, problems)
            if not notes:
                break
            for path, message, note in notes:
                step = self.steps[route(path, message)]
                step.log(step.fixes, path, note)
        repairs = sum(len(s.attempts) - 1 for s in self.steps.values())
        raise SpecError(
            SOURCE,
            [
                *problems,
                ("", _give_up(None, f"the spec still does not validate after {repairs} repair call(s)")),
            ],
        )

    def _can_repair(self, step: _Step) -> bool:
        return len(step.attempts) <= self.max_repairs

    def _accept(self, step: _Step, result: Result) -> Problems:
        step.content = result.content
        if result.parse_error is not None:
            problems: Problems = [("answer", result.parse_error)]
        else:
            normalized, problems = step.normalize(result.parsed)
            if not problems:
                step.answer = normalized
        for path, message in problems:
            step.log(step.errors, path, message)
        return problems

    def _request(self, step: _Step, messages: list[dict[str, str]], attempt: str) -> CallRequest:
        template = step.template if attempt == "gen" else REPAIR
        return CallRequest(
            model=self.model,
            messages=messages,
            api_base=self.api_base,
            temperature=0.0,
            max_tokens=step.max_tokens,
            seed=self.seed,
            response_schema=step.schema,
            schema_name=f"story_{step.name}",
            template_id=template.id,
            template_version=template.version,
            template_hash=template.hash,
            stage=f"story.{step.name}",
            row_id="*",
            attempt=attempt,
        )

    def _repair(self, step: _Step, problems: Problems) -> CallRequest:
        listed = "\n".join(f"- {path or '(spec)'}: {message}" for path, message in problems)
        messages = [
            *step.messages,
            {"role": "assistant", "content": step.content or "(no answer)"},
            {"role": "user", "content": REPAIR.render(problems=listed)},
        ]
        return self._request(step, messages, f"repair#{len(step.attempts)}")

    def _call(self, batch: list[tuple[_Step, CallRequest]]) -> list[Result]:
        run = self.gateway.run([request for _, request in batch])
        self.calls += run.calls
        self.spent_usd += run.spent_usd
        self.gateway = self.gateway.rest_of_budget(run)  # one budget for the whole draft
        if run.skipped:
            raise UsageError(
                f"the LLM budget ran out during stage {run.skipped[0].stage} after {self.calls} call(s) "
                f"(${self.spent_usd:.4f}) in this draft: raise --max-usd or --max-calls and run again "
                "(recorded calls are reused, not paid twice)"
            )
        for (step, request), result in zip(batch, run.results, strict=True):
            if result.error is not None:
                raise BackendError(f"{result.error}; check the model, api_base and API key, then run again")
            key = result.answered_key or result.key
            step.keys.append(key)
            step.attempts.append(request.attempt)
            self.call_keys.append(key)
            self.models.append(result.model_answered or request.model)
            self.prompts.append(_rendered(request))
        return list(run.results)


def _give_up(step: _Step | None, what: str) -> str:
    where = f"story step {step.name}: " if step else ""
    return (
        f"{where}{what}: rephrase the story (state tables, row counts and enums explicitly), "
        "try another model, or write the spec YAML by hand (see examples/)"
    )


def _rendered(request: CallRequest) -> str:
    head = (
        f"# {request.stage} {request.attempt} "
        f"(template {request.template_id} v{request.template_version} sha256 {request.template_hash})"
    )
    body = [f"[{m.get('role')}]\n{m.get('content')}" for m in request.messages]
    return "\n".join([head, *body])
