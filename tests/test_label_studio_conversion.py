"""Label Studio conversion without a server: labeling config, task data, harvest validation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flows.prompt_reader import PromptRecord
from platforms.label_studio.labeling_config import build_labeling_config
from platforms.label_studio.tasks import harvest_task, to_label_studio
from providers.config import ProviderConfig
from providers.result import CallResult
from task_builder.assemble import BatchContext, build_task
from task_builder.layout import PlannedTask
from task_builder.slots import answer_slots
from task_builder.template import resolve_template

SOURCES = ("gpt-4o", "llama", "claude")


def _shell(template: str = "helpsteer_0_4") -> dict[str, Any]:
    providers = [ProviderConfig(source_id=s, kind="openai", model=f"m-{s}") for s in SOURCES]
    slots = {slot.answer_id: slot for slot in answer_slots(providers, 1)}
    ctx = BatchContext("p", "b", "run", "hash", "2026-11-27T00:00:00Z", "n_way", resolve_template(template), {"name": "x"})
    record = PromptRecord(id="q1", messages=[{"role": "user", "content": "Hi?"}])
    results = {s: CallResult(ok=True, text=f"answer of {s}", model=f"m-{s}", attempts=1) for s in SOURCES}
    order = ["claude", "gpt-4o", "llama"]
    return build_task(ctx, record, PlannedTask("task_1", "", order), slots, results, {}).to_json_dict()


def _choice(name: str, value: str) -> dict[str, Any]:
    return {"from_name": name, "to_name": "prompt", "type": "choices", "value": {"choices": [value]}}


def _harvest(shell: dict[str, Any], result: list[dict[str, Any]]) -> Any:
    return harvest_task({"id": 7, "data": {"shell": shell}, "annotations": [{"id": 1, "completed_by": 3, "result": result}]},
                        {"platform": "label-studio"}, {3: "ann@example.com"})


def test_config_hides_sources_and_declares_every_control() -> None:
    config = build_labeling_config(resolve_template("helpsteer_0_4"), 3)
    assert not any(source in config.xml for source in SOURCES)
    assert {"a__helpfulness", "c__verbosity", "selected", "rank_1", "rank_3", "justification"} <= set(config.controls)
    assert "likert" not in config.controls  # only with exactly two responses
    assert config.controls["a__helpfulness"].allowed == ["0", "1", "2", "3", "4"]
    assert 'alias="0"' in config.xml and "0 - Not helpful at all" in config.xml


def test_task_data_shows_positions_in_order() -> None:
    shell = _shell()
    data = to_label_studio(shell, 4)["data"]
    assert (data["response_a"], data["response_b"], data["response_c"], data["response_d"]) == (
        "answer of claude", "answer of gpt-4o", "answer of llama", "")
    assert data["prompt"] == "Hi?" and data["shell"] == shell


def test_ranking_selection_and_ratings_are_written_into_the_shell() -> None:
    outcome = _harvest(_shell(), [
        _choice("rank_1", "C"), _choice("rank_2", "A"), _choice("rank_3", "B"), _choice("selected", "C"),
        {"from_name": "b__helpfulness", "to_name": "response_b", "type": "choices", "value": {"choices": ["4"]}},
    ])
    assert outcome.rejected == []
    (task,) = outcome.annotated
    turn = task["threads"][0]["turns"][-1]
    values = {slot["key"]: slot["value"] for slot in turn["annotations"]}
    assert values["ranking"] == ["llama", "claude", "gpt-4o"] and values["selected_model_id"] == "llama"
    helpfulness = next(s for s in turn["messages"][2]["annotations"] if s["key"] == "helpfulness")
    assert helpfulness["value"] == 4
    assert task["status"] == "completed" and task["metadata"]["annotation"]["annotator"] == "ann@example.com"


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ([_choice("rank_1", "A"), _choice("rank_2", "A"), _choice("rank_3", "B")], "ranking: ranks must place every response exactly once"),
        ([_choice("selected", "D")], "selected: 'D' is not a response of this task"),
        ([{"from_name": "a__helpfulness", "to_name": "response_a", "type": "choices", "value": {"choices": ["5"]}}],
         "a__helpfulness: 5 is outside the allowed values [0, 1, 2, 3, 4]"),
        ([{"from_name": "d__helpfulness", "to_name": "response_d", "type": "choices", "value": {"choices": ["1"]}}],
         "d__helpfulness: no such slot in this task"),
        ([_choice("likert", "3")], "likert: no such slot in this task"),
        ([{"from_name": "a__helpfulness", "type": "rating", "value": {"rating": 3}}], "a__helpfulness: unsupported result type 'rating'"),
    ],
)
def test_invalid_results_are_rejected_with_the_reason(result: list[dict[str, Any]], reason: str) -> None:
    outcome = _harvest(_shell(), result)
    assert outcome.annotated == []
    (reject,) = outcome.rejected
    assert reject["reasons"][0].startswith(reason), reject
    # The whole rejects line: which task and annotation, by whom, and why; unchanged through JSON.
    assert reject == {"label_studio_task": 7, "annotation_id": 1, "annotator": "ann@example.com",
                      "task_id": "task_1", "reasons": reject["reasons"]}
    assert json.loads(json.dumps(reject)) == reject


def test_the_task_line_is_the_same_data_as_the_task_dict() -> None:
    providers = [ProviderConfig(source_id=s, kind="openai", model=f"m-{s}", params={"temperature": 1e-05, "top_p": 0.95})
                 for s in SOURCES]
    slots = {slot.answer_id: slot for slot in answer_slots(providers, 1)}
    ctx = BatchContext("p", "b", "run", "hash", "2026-11-27T00:00:00Z", "n_way", resolve_template("default"), {"name": "x"})
    record = PromptRecord(id="q1", messages=[{"role": "user", "content": "Grüße? 你好 \"quoted\"\n"}],
                          metadata={"score": 0.1, "big": 2**70, "nested": {"list": [1, None, True]}})
    results = {s: CallResult(ok=True, text=f"réponse de {s} ✓", model=f"m-{s}", attempts=1, latency_ms=12.5) for s in SOURCES}
    shell = build_task(ctx, record, PlannedTask("task_1", "", list(SOURCES)), slots, results, {})
    line = shell.to_json_line()
    assert "\n" not in line and "你好" in line  # one line, not ASCII-escaped
    assert json.loads(line) == shell.to_json_dict()
