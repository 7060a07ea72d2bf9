"""Judges in a run: each judge rates every answer and compares answer pairs; their values become predictions.

For each chunk, once its answers are in, every judge (``judges:`` in the run config) is asked:

- to **rate each answer on its own** on the template's dimensions (``task_builder.judging.rating_request``):
  one answer per request, so the order answers are shown in cannot bias the scores;
- for each **pair of answers** a task will compare (the two answers of an ``n_way`` task with two,
  every pair in the ``pairwise`` layout), the **Likert preference twice, with the answers swapped**,
  combined by ``task_builder.judging.swap_combination`` (the rule used is recorded with the value).

Judge calls are ordinary provider calls (``providers``: limits, retries, the breaker, the response store
and fingerprints, so a rerun pays for no judgement twice). Each judge becomes two providers: its config
with the structured-output parameters of the rating schema, and of the preference schema (OpenAI
``response_format`` with the JSON schema; Anthropic a forced tool whose ``input_schema`` is the schema),
source ids ``<judge>:rating`` and ``<judge>:preference``, pacing as one ``rate_limit_group``. An answer
that does not fit the schema or the scale is asked again (up to :data:`JUDGE_ATTEMPTS` times); one that
never fits is stored as a failed call (``invalid_judgement``), never guessed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from common.clock import utc_now
from flows.generation import stopping
from flows.reporting.summary import ProviderTally, RunSummary
from prompts.reader import PromptRecord
from providers.base import system_text
from providers.config import ProviderConfig
from providers.fingerprint import legacy_provider_identity, provider_identity, request_fingerprint
from providers.pool import ProviderPool, pool_for
from providers.rescue import AnswerKeeper
from providers.result import BUDGET, CallResult
from providers.slots import read_results, reusable
from providers.store_factory import StoreLike
from task_builder.judging import (
    JudgeProblem,
    JudgeRequest,
    anthropic_tool,
    has_preference,
    judgeable_dimensions,
    openai_response_format,
    parse_judgement,
    preference_request,
    rating_request,
    swap_combination,
)
from task_builder.predictions import Judgement, PairJudgement
from task_builder.shapes import AnswerPolicy, shown_text
from task_builder.template import AnnotationTemplate

JUDGE_ATTEMPTS = 3
"""How many times a judge is asked for a judgement that fits the schema and the scale before it counts as failed."""
INVALID_JUDGEMENT = "invalid_judgement"

_keepers: dict[str, AnswerKeeper] = {}


@dataclass(slots=True)
class JudgeCall:
    """One request to a judge: what it judges (an answer id, or a pair and the order it was shown in)."""

    fingerprint: str
    judge: str
    target: str  # an answer id; or "first|second" for a preference, in the order shown
    prompt_id: str
    request: JudgeRequest
    system: str | None


def _structured(judge: ProviderConfig, request: JudgeRequest) -> dict[str, Any]:
    """The request parameters asking ``judge``'s kind for output fitting the request's schema."""
    if judge.kind == "anthropic":
        tool, choice = anthropic_tool(request)
        return {"tools": [tool], "tool_choice": choice}
    return {"response_format": openai_response_format(request)}


def _derived(judge: ProviderConfig, purpose: str, request: JudgeRequest) -> ProviderConfig:
    return judge.model_copy(
        update={
            "source_id": f"{judge.source_id}:{purpose}",
            "params": {**judge.params, **_structured(judge, request)},
            "rate_limit_group": judge.rate_limit_group or f"judge:{judge.source_id}",
        }
    )


class RunJudges:
    """The judges of one run: plans each chunk's judge calls, makes them, and turns the results into judgements."""

    def __init__(
        self,
        judges: list[ProviderConfig],
        template: AnnotationTemplate,
        layout: str,
        store: StoreLike,
        pool: ProviderPool,
        keeper: AnswerKeeper,
        summary: RunSummary,
        retry_failed: bool,
        answers: AnswerPolicy | None = None,
    ) -> None:
        self.template = template
        self._answers = answers or AnswerPolicy()
        self._layout = layout
        self._store = store
        self._pool = pool
        self._retry_failed = retry_failed
        self._summary = summary
        self.keeper = keeper
        self._rates = bool(judgeable_dimensions(template))
        self._compares = has_preference(template) and layout != "single"
        self._configs: dict[tuple[str, str], ProviderConfig] = {}
        self._identities: dict[tuple[str, str], str] = {}
        self._legacy_identities: dict[tuple[str, str], str | None] = {}
        self._judges = {judge.source_id: judge for judge in judges}
        sample_rating = rating_request(template, "", "") if self._rates else None
        sample_preference = preference_request(template, "", "", "") if self._compares else None
        for judge in judges:
            for purpose, sample in (("rating", sample_rating), ("preference", sample_preference)):
                if sample is not None:
                    config = _derived(judge, purpose, sample)
                    self._configs[(judge.source_id, purpose)] = config
                    self._identities[(judge.source_id, purpose)] = provider_identity(config)
                    self._legacy_identities[(judge.source_id, purpose)] = legacy_provider_identity(config)
            summary.judges[judge.source_id] = ProviderTally(
                judge.source_id, judge.model, judge.effective_price, "judge", judge.full_price, judge.price_source
            )
        _keepers[pool.run_key] = keeper

    def close(self) -> None:
        """Forget the run's keeper (the run is over)."""
        _keepers.pop(self._pool.run_key, None)

    def _pairs(self, answered: list[str]) -> list[tuple[str, str]]:
        if not self._compares:
            return []
        ordered = sorted(answered)
        if self._layout == "pairwise":
            return list(combinations(ordered, 2))
        return [(ordered[0], ordered[1])] if len(ordered) == 2 else []

    def _call(self, judge: str, purpose: str, target: str, prompt_id: str, request: JudgeRequest) -> JudgeCall:
        config = self._configs[(judge, purpose)]
        system = system_text(request.system, config.system_prompt)
        fingerprint = request_fingerprint(self._identities[(judge, purpose)], request.messages, system)
        return JudgeCall(fingerprint, judge, target, prompt_id, request, system)

    def plan(self, record: PromptRecord, results: dict[str, CallResult]) -> list[JudgeCall]:
        """Every judge call of one prompt: a rating per answer annotators are shown, and each pair in both orders."""
        texts = {aid: shown_text(r) for aid, r in results.items() if r.ok and self._answers.left_out(r) is None}
        prompt = str(record.messages[-1]["content"])
        calls = []
        for judge in self._judges:
            if self._rates:
                for aid, text in sorted(texts.items()):
                    calls.append(
                        self._call(
                            judge,
                            "rating",
                            aid,
                            record.id,
                            rating_request(self.template, prompt, text).with_images(record.images),
                        )
                    )
            for first, second in self._pairs(list(texts)):
                for a, b in ((first, second), (second, first)):
                    request = preference_request(self.template, prompt, texts[a], texts[b])
                    assert request is not None  # the template has the preference (self._compares)
                    request = request.with_images(record.images)
                    calls.append(self._call(judge, "preference", f"{a}|{b}", record.id, request))
        return calls

    async def judge(
        self, chunk_index: int, records: list[PromptRecord], results: list[dict[str, CallResult]]
    ) -> list[dict[str, Judgement]]:
        """Every judge's judgement of each prompt of a chunk (calls made only where the store has no result)."""
        planned = [self.plan(record, prompt_results) for record, prompt_results in zip(records, results)]
        stored = self._stored([call for calls in planned for call in calls])
        missing: dict[tuple[str, str], list[JudgeCall]] = {}
        for calls in planned:
            for call in calls:
                previous = stored.get(call.fingerprint)
                if reusable(previous, self._retry_failed):
                    self._summary.judges[call.judge].reused_from_store += 1
                    continue
                purpose = "preference" if "|" in call.target else "rating"
                missing.setdefault((call.judge, purpose), []).append(call)
        if missing and not stopping.requested():
            stored.update(await self._make(chunk_index, missing))
        return [self._judgements(calls, stored) for calls in planned]

    def _stored(self, calls: list[JudgeCall]) -> dict[str, CallResult]:
        """What the store holds for these calls, by fingerprint: under it or its legacy fingerprint
        (``providers.slots.read_results``; what is found under the latter is moved to the former)."""

        def legacy_of(unsure: list[str]) -> dict[str, str]:
            wanted, legacy = set(unsure), {}
            for call in calls:
                if call.fingerprint in wanted:
                    purpose = "preference" if "|" in call.target else "rating"
                    identity = self._legacy_identities[(call.judge, purpose)]
                    if identity is not None:
                        legacy[call.fingerprint] = request_fingerprint(identity, call.request.messages, call.system)
            return legacy

        return read_results(self._store, (call.fingerprint for call in calls), legacy_of, migrate=True)

    async def _make(self, chunk_index: int, missing: dict[tuple[str, str], list[JudgeCall]]) -> dict[str, CallResult]:
        runs = []
        for (judge, purpose), calls in missing.items():
            config = self._configs[(judge, purpose)]
            named = judge_provider_chunk.with_options(task_run_name=f"{config.source_id}-chunk-{chunk_index}")
            runs.append(named(config, quote(calls), self._pool.run_key))  # type: ignore[call-overload]
        made: dict[str, CallResult] = {}
        for (judge, _), outcome in zip(missing, await asyncio.gather(*runs)):
            made.update(outcome)
            self._summary.judges[judge].called_this_run += len(outcome)
        return made

    def _judgements(self, calls: list[JudgeCall], results: dict[str, CallResult]) -> dict[str, Judgement]:
        judgements = {judge: Judgement() for judge in self._judges}
        preferences: dict[tuple[str, str], dict[str, Any] | str] = {}
        for call in calls:
            result = results.get(call.fingerprint)
            judgement = judgements[call.judge]
            if result is not None:
                self._summary.judges[call.judge].add(result)
            values = _values(call, result)
            if "|" not in call.target:
                if isinstance(values, dict):
                    judgement.answers[call.target] = values
                else:
                    judgement.errors[call.target] = values
            else:
                preferences[(call.judge, call.target)] = values
        for (judge, target), forward in preferences.items():
            first, second = target.split("|")
            if first > second:
                continue  # read with its pair below
            backward = preferences.get((judge, f"{second}|{first}"), "not judged")
            key = f"{first}|{second}"
            if isinstance(forward, str) or isinstance(backward, str):
                judgements[judge].errors[key] = forward if isinstance(forward, str) else str(backward)
                continue
            combined = swap_combination(self.template, forward["likert_value"], backward["likert_value"])
            judgements[judge].pairs[(first, second)] = PairJudgement(
                combined.value,
                str(forward.get("rationale", "")),
                combined.rule,
                combined.first,
                combined.swapped_mirrored,
            )
        return {judge: j for judge, j in judgements.items() if j.answers or j.pairs or j.errors}


def _values(call: JudgeCall, result: CallResult | None) -> dict[str, Any] | str:
    """The judgement's values, or why there are none."""
    if result is None:
        return "not judged (the run was stopped)"
    if not result.ok:
        return f"{result.error_type}: {result.error}"
    parsed = parse_judgement(call.request, judgement_text(result))
    return parsed if isinstance(parsed, dict) else f"{INVALID_JUDGEMENT}: {parsed.field}: {parsed.reason}"


@task(name="judge-chunk", cache_policy=NO_CACHE, persist_result=False)
async def judge_provider_chunk(provider: ProviderConfig, calls: list[JudgeCall], run_key: str) -> dict[str, CallResult]:
    """Make one judge's planned calls of a chunk; keep every final result (a valid judgement or a failure)."""
    client = await pool_for(run_key).get(provider)
    keeper = _keepers[run_key]
    made: dict[str, CallResult] = {}

    async def one(call: JudgeCall) -> None:
        result = await _valid_judgement(client, call)
        if not result.made:
            if result.error_type == BUDGET:  # not sent: the judgement says so, the judge's tally counts it
                made[call.fingerprint] = result
            return
        if result.storable:
            keeper.keep(call.fingerprint, provider.source_id, call.prompt_id, result)
        made[call.fingerprint] = result

    await stopping.gather_until_stopped(one(call) for call in calls)
    return made


async def _valid_judgement(client: Any, call: JudgeCall) -> CallResult:
    """Ask until the answer fits the schema and scale (at most :data:`JUDGE_ATTEMPTS` times)."""
    problem: JudgeProblem | None = None
    attempts = 0
    cost: float | None = None  # every answer asked for was paid: the stored result carries what they all cost
    price: str | None = None
    for _ in range(JUDGE_ATTEMPTS):
        result: CallResult = await client.call(call.request.messages, call.system)
        attempts += result.attempts
        if result.cost_usd is not None:
            cost, price = (cost or 0.0) + result.cost_usd, result.price
        if not result.ok:
            if result.made:
                result.cost_usd = cost
            return result
        parsed = parse_judgement(call.request, judgement_text(result))
        if isinstance(parsed, dict):
            result.attempts = attempts
            result.cost_usd = cost
            return result
        problem = parsed
    assert problem is not None
    return CallResult(
        ok=False,
        attempts=attempts,
        error_type=INVALID_JUDGEMENT,
        error=f"{problem.field or 'answer'}: {problem.reason} (asked {JUDGE_ATTEMPTS} times)",
        created_at=utc_now("milliseconds"),
        cost_usd=cost,
        price=price,
    )


def judgement_text(result: CallResult) -> str:
    """What a judge answered: its text, or for a forced tool call (Anthropic's structured output) the tool's
    input as JSON."""
    if result.text and result.text.strip():
        return result.text
    return next((call["arguments"] for call in result.tool_calls or () if call.get("arguments")), "")
