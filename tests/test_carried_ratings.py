"""Pairwise layout: each answer is rated in one pair of its prompt and its ratings are carried into the others."""

from __future__ import annotations

from typing import Any

from platforms.label_studio.labeling_config import build_labeling_config
from platforms.label_studio.tasks import harvest_task, to_label_studio
from prompts.reader import PromptRecord
from providers.config import ProviderConfig
from providers.result import CallResult
from providers.slots import answer_slots
from task_builder.assemble import BatchContext, build_task
from task_builder.carried_ratings import carry_ratings
from task_builder.layout import TaskLayout
from task_builder.shell import final_answers
from task_builder.template import resolve_template

SOURCES = ("gpt-4o", "llama", "claude")
TEMPLATE = resolve_template("pref_ranking")


def _pairs() -> list[dict[str, Any]]:
    """The three pair tasks of one prompt, as the pairwise layout plans and builds them."""
    providers = [ProviderConfig(source_id=s, kind="openai", model=f"m-{s}") for s in SOURCES]
    slots = {slot.answer_id: slot for slot in answer_slots(providers, 1)}
    ctx = BatchContext("p", "b", "run", "hash", "2026-11-27T00:00:00Z", "pairwise", TEMPLATE, {"name": "x"})
    record = PromptRecord(id="q1", messages=[{"role": "user", "content": "Hi?"}])
    results = {s: CallResult(ok=True, text=f"answer of {s}", model=f"m-{s}", attempts=1) for s in SOURCES}
    planned = TaskLayout("pairwise", "b", 0).plan("q1", list(slots.values()))
    return [build_task(ctx, record, task, slots, results, {}).to_json_dict() for task in planned]


def _results(shell: dict[str, Any], score: dict[str, int]) -> list[dict[str, Any]]:
    """An annotation of the pair: the ratings of the answers it rates (``score`` per source), and the Likert."""
    rates = set(shell["metadata"]["rated_here"])
    out = [{"from_name": "likert", "to_name": "prompt", "type": "choices", "value": {"choices": ["4"]}}]
    form = build_labeling_config(TEMPLATE, 2, carried=True)
    for name, spec in form.controls.items():
        if spec.position is None or "__" not in name or spec.kind != "choices":
            continue
        source = final_answers(shell)[spec.position]["source_id"]
        if source in rates:
            value = "just_right" if spec.slot_key == "verbosity" else str(score[source])
            out.append(
                {"from_name": name, "to_name": f"response_{name[0]}", "type": "choices", "value": {"choices": [value]}}
            )
    return out


def _harvest(shell: dict[str, Any], result: list[dict[str, Any]], annotator: int, when: str) -> Any:
    ls_task = {
        "id": 1,
        **to_label_studio(shell, TEMPLATE),
        "annotations": [{"id": annotator * 100, "completed_by": annotator, "result": result, "created_at": when}],
    }
    return harvest_task(
        ls_task, {"platform": "label-studio"}, {1: "one@x", 2: "two@x"}, {shell["task_id"]: shell}, TEMPLATE
    )


def _overall(shell: dict[str, Any]) -> dict[str, Any]:
    return {
        a["source_id"]: next(s["value"] for s in a["annotations"] if s["key"] == "overall")
        for a in final_answers(shell)
    }


def test_each_answer_is_rated_in_exactly_one_pair_and_the_others_say_so() -> None:
    pairs = _pairs()
    rated = [set(shell["metadata"]["rated_here"]) for shell in pairs]
    assert sorted(s for r in rated for s in r) == sorted(f"{s}" for s in SOURCES)  # once each
    for shell, rates in zip(pairs, rated):
        data = to_label_studio(shell, TEMPLATE)["data"]
        for position, answer in enumerate(final_answers(shell)):
            elsewhere = "rlhf-rated-elsewhere" in data[f"response_{'ab'[position]}"]
            assert elsewhere == (answer["source_id"] not in rates)
    form = build_labeling_config(TEMPLATE, 2, carried=True)
    assert 'name="likert"' in form.xml and form.xml.count('required="true"') == 1  # the comparison only
    assert ":has(.rlhf-rated-elsewhere) .rlhf-compact { display: none; }" in form.xml


def test_ratings_are_carried_into_every_pair_from_where_they_were_asked() -> None:
    pairs = _pairs()
    scores = {"gpt-4o": 7, "llama": 2, "claude": 5}
    annotated = []
    for shell in pairs:
        outcome = _harvest(shell, _results(shell, scores), 1, "2026-12-01T00:00:00Z")
        assert outcome.rejected == []  # a pair answers only the ratings it asks (old code: required left blank)
        annotated += outcome.annotated
    kept, waiting = carry_ratings(annotated)
    assert waiting == [] and len(kept) == 3
    for shell in kept:
        assert _overall(shell) == {s: scores[s] for s in _overall(shell)}  # every answer rated, in every pair
    carried = [shell["metadata"].get("carried_ratings", {}) for shell in kept]
    assert sum(len(c) for c in carried) == 3  # 3 pairs × 2 answers = 6 ratings, 3 of them carried
    for origin in carried:
        for source, where in origin.items():
            assert source in next(p for p in pairs if p["task_id"] == where["task_id"])["metadata"]["rated_here"]


def test_a_pair_whose_ratings_are_not_annotated_yet_waits() -> None:
    first, second, last = _pairs()
    assert [len(p["metadata"]["rated_here"]) for p in (first, second, last)] == [2, 1, 0]
    outcome = _harvest(last, _results(last, dict.fromkeys(SOURCES, 1)), 2, "2026-12-01T00:00:00Z")
    assert outcome.rejected == []
    kept, waiting = carry_ratings(outcome.annotated)
    assert kept == [] and len(waiting) == 1
    assert waiting[0]["reason"] == "ratings_not_annotated_yet" and "harvest again" in waiting[0]["reasons"][0]


def test_the_same_annotators_ratings_are_carried_when_they_gave_them() -> None:
    first, second, _ = _pairs()
    ones = _harvest(first, _results(first, dict.fromkeys(SOURCES, 1)), 1, "2026-12-01T00:00:00Z").annotated
    twos = _harvest(first, _results(first, dict.fromkeys(SOURCES, 6)), 2, "2026-12-02T00:00:00Z").annotated
    mine = _harvest(second, _results(second, dict.fromkeys(SOURCES, 3)), 2, "2026-12-03T00:00:00Z").annotated
    kept, waiting = carry_ratings(ones + twos + mine)
    assert waiting == [] and kept[-1]["task_id"] == second["task_id"]
    (carried,) = kept[-1]["metadata"]["carried_ratings"].items()
    assert carried[1]["annotator"] == "two@x" and _overall(kept[-1])[carried[0]] == 6  # theirs, not the earlier 1
    (own,) = second["metadata"]["rated_here"]
    assert _overall(kept[-1])[own] == 3
