"""Label Studio conversion without a server: labeling config, task data, harvest validation."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from platforms.label_studio.labeling_config import INERT_HOTKEY, RESERVED_KEYS, build_labeling_config
from platforms.label_studio.tasks import harvest_task, to_label_studio
from prompts.reader import PromptRecord
from providers.config import ProviderConfig
from providers.result import CallResult
from providers.slots import answer_slots
from task_builder.answer_hash import text_sha256
from task_builder.assemble import BatchContext, build_task
from task_builder.layout import PlannedTask
from task_builder.render import render_answer, render_conversation
from task_builder.template import Dimension, resolve_template

SOURCES = ("gpt-4o", "llama", "claude")


def _shell(template: str = "helpsteer_0_4") -> dict[str, Any]:
    providers = [ProviderConfig(source_id=s, kind="openai", model=f"m-{s}") for s in SOURCES]
    slots = {slot.answer_id: slot for slot in answer_slots(providers, 1)}
    ctx = BatchContext(
        "p", "b", "run", "hash", "2026-11-27T00:00:00Z", "n_way", resolve_template(template), {"name": "x"}
    )
    record = PromptRecord(id="q1", messages=[{"role": "user", "content": "Hi?"}])
    results = {s: CallResult(ok=True, text=f"answer of {s}", model=f"m-{s}", attempts=1) for s in SOURCES}
    order = ["claude", "gpt-4o", "llama"]
    return build_task(ctx, record, PlannedTask("task_1", "", order), slots, results, {}).to_json_dict()


def _choice(name: str, value: str) -> dict[str, Any]:
    return {"from_name": name, "to_name": "prompt", "type": "choices", "value": {"choices": [value]}}


def _harvest(shell: dict[str, Any], result: list[dict[str, Any]], template: str | None = None) -> Any:
    """Harvest one annotation of the delivered (blinded) task, joined back to ``shell`` by task id."""
    ls_task = {"id": 7, **to_label_studio(shell), "annotations": [{"id": 1, "completed_by": 3, "result": result}]}
    return harvest_task(
        ls_task,
        {"platform": "label-studio"},
        {3: "ann@example.com"},
        {shell["task_id"]: shell},
        resolve_template(template) if template else None,
    )


def test_config_hides_sources_and_declares_every_control() -> None:
    config = build_labeling_config(resolve_template("helpsteer_0_4"), 3)
    assert not any(source in config.xml for source in SOURCES)
    assert {"a__helpfulness", "c__verbosity", "rank_1", "rank_3", "justification"} <= set(config.controls)
    assert "likert" not in config.controls  # only with exactly two responses
    assert "selected" not in config.controls  # the ranking's first place is the selection: asked once
    assert config.controls["a__helpfulness"].allowed == ["0", "1", "2", "3", "4"]
    assert 'alias="0"' in config.xml and "0 - Not helpful at all" in config.xml


def test_task_data_shows_positions_in_order_and_nothing_that_names_a_model() -> None:
    shell = _shell()
    data = to_label_studio(shell)["data"]
    assert data == {
        "task_id": shell["task_id"],
        "prompt": render_conversation([("User", "Hi?")]),  # rendered markdown, sanitised (task_builder.render)
        "response_a": render_answer("answer of claude"),
        "response_b": render_answer("answer of gpt-4o"),
        "response_c": render_answer("answer of llama"),
        "text_sha256": {  # what harvest checks the annotated text by: hashes name nothing
            field: text_sha256(f"answer of {source}")
            for field, source in zip(("response_a", "response_b", "response_c"), ("claude", "gpt-4o", "llama"))
        },
    }
    # Every data field is a Data Manager column: no source id, model or provider name anywhere in it.
    shown = json.dumps(data)
    for source in SOURCES:
        assert source not in shown.replace(f"answer of {source}", "") and f"m-{source}" not in shown


def test_ranking_selection_and_ratings_are_written_into_the_shell() -> None:
    outcome = _harvest(
        _shell(),
        [
            _choice("rank_1", "C"),
            _choice("rank_2", "A"),
            _choice("rank_3", "B"),
            _choice("selected", "C"),
            {"from_name": "b__helpfulness", "to_name": "response_b", "type": "choices", "value": {"choices": ["4"]}},
        ],
    )
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
        (
            [_choice("rank_1", "A"), _choice("rank_2", "A"), _choice("rank_3", "B")],
            "ranking: ranks must place every response exactly once",
        ),
        ([_choice("selected", "D")], "selected: 'D' is not a response of this task"),
        (
            [{"from_name": "a__helpfulness", "to_name": "response_a", "type": "choices", "value": {"choices": ["5"]}}],
            "a__helpfulness: 5 is outside the allowed values [0, 1, 2, 3, 4]",
        ),
        (
            [{"from_name": "d__helpfulness", "to_name": "response_d", "type": "choices", "value": {"choices": ["1"]}}],
            "d__helpfulness: no such slot in this task",
        ),
        ([_choice("likert", "3")], "likert: no such slot in this task"),
        (
            [{"from_name": "a__helpfulness", "type": "rating", "value": {"rating": 3}}],
            "a__helpfulness: unsupported result type 'rating'",
        ),
    ],
)
def test_invalid_results_are_rejected_with_the_reason(result: list[dict[str, Any]], reason: str) -> None:
    outcome = _harvest(_shell(), result)
    assert outcome.annotated == []
    (reject,) = outcome.rejected
    assert reject["reasons"][0].startswith(reason), reject
    # The whole rejects line: which task and annotation, by whom, and why; unchanged through JSON.
    assert reject == {
        "label_studio_task": 7,
        "annotation_id": 1,
        "annotator": "ann@example.com",
        "task_id": "task_1",
        "reasons": reject["reasons"],
    }
    assert json.loads(json.dumps(reject)) == reject


def test_the_task_line_is_the_same_data_as_the_task_dict() -> None:
    providers = [
        ProviderConfig(source_id=s, kind="openai", model=f"m-{s}", params={"temperature": 1e-05, "top_p": 0.95})
        for s in SOURCES
    ]
    slots = {slot.answer_id: slot for slot in answer_slots(providers, 1)}
    ctx = BatchContext(
        "p", "b", "run", "hash", "2026-11-27T00:00:00Z", "n_way", resolve_template("default"), {"name": "x"}
    )
    record = PromptRecord(
        id="q1",
        messages=[{"role": "user", "content": 'Grüße? 你好 "quoted"\n'}],
        metadata={"score": 0.1, "big": 2**70, "nested": {"list": [1, None, True]}},
    )
    results = {
        s: CallResult(ok=True, text=f"réponse de {s} ✓", model=f"m-{s}", attempts=1, latency_ms=12.5) for s in SOURCES
    }
    shell = build_task(ctx, record, PlannedTask("task_1", "", list(SOURCES)), slots, results, {})
    line = shell.to_json_line()
    assert "\n" not in line and "你好" in line  # one line, not ASCII-escaped
    assert json.loads(line) == shell.to_json_dict()


def _form(template: str, answers: int) -> tuple[Any, ET.Element]:
    config = build_labeling_config(resolve_template(template), answers)
    return config, ET.fromstring(config.xml)


def test_two_answers_side_by_side_with_ratings_under_each_then_one_preference_then_justification() -> None:
    config, root = _form("pref_ranking", 2)
    columns = [view for view in root.iter("View") if view.get("className") == "rlhf-answer"]
    assert len(columns) == 2
    row = next(view for view in root.iter("View") if view.get("className") == "rlhf-answers")
    assert list(row) == columns  # the answers sit in one flex row: side by side
    for position, column in zip("ab", columns):
        names = {control.get("name") for control in column.iter() if control.get("toName")}
        assert names == {f"{position}__{d.key}" for d in resolve_template("pref_ranking").dimensions}
    # One overall question, the Likert, after every answer; the selection follows from it at harvest.
    controls = [element.get("name") for element in root.iter() if element.tag in ("Choices", "TextArea")]
    assert "selected" not in controls and controls[-2:] == ["likert", "justification"]
    assert set(config.required) == {n for n in controls if n != "justification"}


def test_every_scale_names_its_ends_and_every_question_has_its_own_hotkeys() -> None:
    for template, answers in (("pref_ranking", 2), ("pref_ranking", 3), ("helpsteer_0_4", 3), ("sft", 1)):
        config, root = _form(template, answers)
        seen: set[str] = set()
        for choices in root.iter("Choices"):
            labels = [choice.get("hint") or choice.get("value") for choice in choices]  # compact rows: ends as hints
            keys = [choice.get("hotkey") for choice in choices]
            assert INERT_HOTKEY not in keys and not seen & set(keys), (template, choices.get("name"), keys)
            assert not RESERVED_KEYS & set(keys)  # never one of Label Studio's own
            seen |= set(keys)
            if choices.get("name") == "likert":
                assert keys == [str(i) for i in range(1, 8)]  # one per option, along the scale
            if choices.get("name").endswith(("__verbosity", "__needs_rewrite")):
                continue  # categories: every option is labelled
            assert labels[0] != choices[0].get("alias") and labels[-1] != choices[-1].get("alias"), (template, labels)
    likert = next(c for c in _form("pref_ranking", 2)[1].iter("Choices") if c.get("name") == "likert")
    assert [c.get("value") for c in likert][::6] == ["Response A much better", "Response B much better"]


def test_an_unlabelled_number_scale_marks_its_ends() -> None:
    template = resolve_template("pref_ranking").model_copy(
        update={"dimensions": [Dimension(key="clarity", title="Clarity", values=[1, 2, 3, 4, 5])]}
    )
    xml = build_labeling_config(template, 2).xml
    assert 'hint="1 (lowest)"' in xml and 'hint="5 (highest)"' in xml


def test_three_answers_without_ranking_ask_for_a_selection_keyed_by_digits() -> None:
    template = resolve_template("pref_ranking")
    config = build_labeling_config(template, 3)
    selected = ET.fromstring(config.xml).find(".//Choices[@name='selected']")
    assert selected is not None and selected.get("required") == "true"
    assert [(c.get("alias"), c.get("hotkey")) for c in selected] == [("A", "1"), ("B", "2"), ("C", "3")]
    assert "likert" not in config.controls


def _filled(letters: str, dims: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "from_name": f"{p}__{d.key}",
            "to_name": f"response_{p}",
            "type": "choices",
            "value": {"choices": [str(d.values[0])]},
        }
        for p in letters
        for d in dims
    ]


def _pairwise_shell() -> dict[str, Any]:
    providers = [ProviderConfig(source_id=s, kind="openai", model=f"m-{s}") for s in SOURCES[:2]]
    slots = {slot.answer_id: slot for slot in answer_slots(providers, 1)}
    ctx = BatchContext(
        "p", "b", "run", "hash", "2026-11-27T00:00:00Z", "pairwise", resolve_template("pref_ranking"), {"name": "x"}
    )
    record = PromptRecord(id="q1", messages=[{"role": "user", "content": "Hi?"}])
    results = {s: CallResult(ok=True, text=f"answer of {s}", model=f"m-{s}", attempts=1) for s in SOURCES[:2]}
    return build_task(ctx, record, PlannedTask("task_2", "", ["llama", "gpt-4o"]), slots, results, {}).to_json_dict()


@pytest.mark.parametrize(("likert", "selected"), [(1, "llama"), (3, "llama"), (4, None), (6, "gpt-4o")])
def test_the_likert_answer_fills_the_selection(likert: int, selected: str | None) -> None:
    dims = resolve_template("pref_ranking").dimensions
    outcome = _harvest(_pairwise_shell(), [*_filled("ab", dims), _choice("likert", str(likert))], "pref_ranking")
    assert outcome.rejected == []
    values = {s["key"]: s["value"] for s in outcome.annotated[0]["threads"][0]["turns"][-1]["annotations"]}
    assert (values["likert_value"], values["selected_model_id"]) == (likert, selected)


def test_a_required_question_left_blank_is_rejected_with_its_name() -> None:
    dims = resolve_template("pref_ranking").dimensions
    result = [r for r in _filled("ab", dims) if r["from_name"] != "b__truthfulness"]
    outcome = _harvest(_pairwise_shell(), result, "pref_ranking")
    assert outcome.annotated == []
    assert outcome.rejected[0]["reasons"] == ["required question(s) left blank: b__truthfulness, likert"]
    # A dimension the template marks optional may stay blank.
    template = resolve_template("pref_ranking")
    optional = template.model_copy(
        update={
            "dimensions": [
                d.model_copy(update={"required": False}) if d.key == "truthfulness" else d for d in template.dimensions
            ]
        }
    )
    ls_task = {
        "id": 7,
        **to_label_studio(_pairwise_shell()),
        "annotations": [{"id": 1, "completed_by": 3, "result": [*result, _choice("likert", "2")]}],
    }
    kept = harvest_task(ls_task, {}, {}, {"task_2": _pairwise_shell()}, optional)
    assert kept.rejected == [] and len(kept.annotated) == 1


def test_an_annotation_of_a_task_the_run_does_not_have_is_rejected() -> None:
    ls_task = {
        "id": 9,
        "data": {"task_id": "task_other", "prompt": "x"},
        "annotations": [{"id": 2, "completed_by": 3, "result": [_choice("likert", "2")]}],
    }
    outcome = harvest_task(ls_task, {}, {}, {}, None)
    assert outcome.annotated == [] and "not in the run's tasks" in outcome.rejected[0]["reasons"][0]
