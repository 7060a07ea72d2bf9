"""Judges' values as Label Studio predictions, without a server: result items, round trip, blinding, split."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import provider_entry, write_config, write_prompts
from pydantic import SecretStr

from flows.delivery.deliver import deliver_label_studio, harvest_label_studio
from flows.generation.generate import generate_tasks
from platforms.label_studio.client import LabelStudioClient
from platforms.label_studio.labeling_config import build_labeling_config
from platforms.label_studio.local_server import LabelStudioServer
from platforms.label_studio.predictions import (
    PREDICTION_MODES,
    choose_judge,
    label_studio_predictions,
    prediction_results,
    predictions_shown,
    shows_predictions,
    to_label_studio_with_predictions,
)
from platforms.label_studio.tasks import harvest_task
from prompts.reader import PromptRecord
from providers.config import ProviderConfig
from providers.result import CallResult
from providers.slots import answer_slots
from simulator import RunningSimulator
from task_builder.agreement import agreement
from task_builder.assemble import BatchContext, build_task
from task_builder.ids import task_id_for
from task_builder.layout import PlannedTask
from task_builder.shell import final_answers
from task_builder.template import AnnotationTemplate, resolve_template

RLHF = str(Path(sys.executable).with_name("rlhf"))
SOURCES = ("gpt-4o", "llama", "claude")
HELPSTEER = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
JUDGE, OTHER_JUDGE = "judge-x", "judge-y"


def _shell(template: AnnotationTemplate, order: list[str], task_id: str = "task_1") -> dict[str, Any]:
    providers = [ProviderConfig(source_id=s, kind="openai", model=f"m-{s}") for s in SOURCES]
    slots = {slot.answer_id: slot for slot in answer_slots(providers, 1)}
    ctx = BatchContext("p", "b", "run", "hash", "2026-11-27T00:00:00Z", "n_way", template, {"name": "x"})
    record = PromptRecord(id="q1", messages=[{"role": "user", "content": "Hi?"}])
    results = {s: CallResult(ok=True, text=f"answer of {s}", model=f"m-{s}", attempts=1) for s in SOURCES}
    return build_task(ctx, record, PlannedTask(task_id, "", order), slots, results, {}).to_json_dict()


def _with(shell: dict[str, Any], predictions: dict[str, Any]) -> dict[str, Any]:
    shell = copy.deepcopy(shell)
    shell["metadata"]["predictions"] = predictions
    return shell


def _choices(results: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """``from_name -> (to_name, the one choice)`` of result items, checking their shape on the way."""
    found = {}
    for item in results:
        assert set(item) == {"from_name", "to_name", "type", "value"} and item["type"] == "choices"
        assert set(item["value"]) == {"choices"} and len(item["value"]["choices"]) == 1
        found[item["from_name"]] = (item["to_name"], item["value"]["choices"][0])
    return found


def _helpsteer_values(base: int) -> dict[str, Any]:
    return {key: (base + i) % 5 for i, key in enumerate(HELPSTEER)} | {"rationale": "Clear and correct."}


def _slot_values(annotations: list[dict[str, Any]]) -> dict[str, Any]:
    return {slot["key"]: slot["value"] for slot in annotations}


def test_two_answers_give_every_rating_per_position_and_the_likert() -> None:
    template = resolve_template("helpsteer_0_4")
    shell = _shell(template, ["claude", "gpt-4o"])
    judge = {
        "claude": _helpsteer_values(0),
        "gpt-4o": _helpsteer_values(2),
        "turn": {"likert_value": 3, "selected_model_id": "claude", "rationale": "A is a little better."},
        "errors": {},
    }
    results = prediction_results(shell, template, judge)
    form = build_labeling_config(template, 2)
    assert [item["from_name"] for item in results] == [name for name in form.controls if name != "justification"]
    choices = _choices(results)
    for key in HELPSTEER:
        assert choices[f"a__{key}"] == ("response_a", str(judge["claude"][key]))  # A is the first answer: claude
        assert choices[f"b__{key}"] == ("response_b", str(judge["gpt-4o"][key]))
    assert choices["likert"] == ("prompt", "3")
    for name, (_, value) in choices.items():
        assert value in form.controls[name].allowed  # exactly the values the form's choices carry


def test_three_answers_give_ratings_per_position_and_no_comparison() -> None:
    template = resolve_template("helpsteer_0_4")
    shell = _shell(template, ["llama", "claude", "gpt-4o"])
    judge = {source: _helpsteer_values(i) for i, source in enumerate(SOURCES)}
    judge["turn"] = {"likert_value": 2}  # no Likert control with three answers, and no ranking predicted
    choices = _choices(prediction_results(shell, template, judge))
    assert set(choices) == {f"{p}__{key}" for p in "abc" for key in HELPSTEER}
    assert choices["a__helpfulness"] == ("response_a", str(judge["llama"]["helpfulness"]))
    assert choices["c__verbosity"] == ("response_c", str(judge["gpt-4o"]["verbosity"]))


def test_categories_yes_no_and_selection_use_the_forms_choice_values() -> None:
    template = AnnotationTemplate.model_validate(
        {
            "name": "mixed",
            "dimensions": [
                {"key": "score", "title": "Score", "type": "integer", "values": [1, 2, 3]},
                {"key": "length", "title": "Length", "type": "category", "values": ["short", "ok", "long"]},
                {"key": "safe", "title": "Safe?", "type": "boolean"},
                {"key": "notes", "title": "Notes", "type": "text"},
            ],
            "rewrite": True,
            "turn": {"likert": {"enabled": False}, "ranking": False, "selected_model_id": True},
        }
    )
    shell = _shell(template, ["gpt-4o", "llama", "claude"])
    judge = {
        "gpt-4o": {"score": 3, "length": "long", "safe": False, "notes": "judge text", "rationale": "r"},
        "llama": {"score": 1, "length": "ok", "safe": True},
        "turn": {"selected_model_id": "claude", "rationale": "C is best."},
    }
    choices = _choices(prediction_results(shell, template, judge))
    assert choices == {
        "a__score": ("response_a", "3"),
        "a__length": ("response_a", "long"),
        "a__safe": ("response_a", "false"),
        "b__score": ("response_b", "1"),
        "b__length": ("response_b", "ok"),
        "b__safe": ("response_b", "true"),
        "selected": ("prompt", "C"),  # claude is the third answer: by position, never by source id
    }
    # Free text (a text dimension, the rewrite, the justification) is never pre-filled.
    assert not any(item["type"] == "textarea" for item in prediction_results(shell, template, judge))


@pytest.mark.parametrize("sources", [["claude", "gpt-4o"], ["llama", "claude", "gpt-4o"]])
def test_a_prediction_nobody_changed_harvests_back_to_the_judges_values(sources: list[str]) -> None:
    template = resolve_template("helpsteer_0_4")
    judge = {source: _helpsteer_values(i + 1) for i, source in enumerate(sources)}
    if len(sources) == 2:
        judge["turn"] = {"likert_value": 6, "selected_model_id": sources[1], "rationale": "B is better."}
    shell = _with(_shell(template, sources), {JUDGE: judge})
    ls_task = to_label_studio_with_predictions(shell, template)
    (prediction,) = ls_task["predictions"]
    annotation = {"id": 1, "completed_by": 3, "result": prediction["result"]}
    outcome = harvest_task(
        {"id": 9, **ls_task, "annotations": [annotation]},
        {"platform": "label-studio"},
        {3: "ann@example.com"},
        {shell["task_id"]: shell},
        template if len(sources) == 2 else None,  # three answers: the ranking no judge predicts is required
    )
    assert outcome.rejected == []
    (annotated,) = outcome.annotated
    turn = annotated["threads"][0]["turns"][-1]
    for message in turn["messages"][1:]:
        expected = {key: value for key, value in judge[message["source_id"]].items() if key != "rationale"}
        assert _slot_values(message["annotations"]) == expected
    turn_values = _slot_values(turn["annotations"])
    if len(sources) == 2:
        assert turn_values["likert_value"] == 6 and turn_values["selected_model_id"] == sources[1]
    else:
        assert turn_values["ranking"] is None and turn_values["selected_model_id"] is None


def test_the_payload_names_the_judge_once_and_no_answer_source_or_model() -> None:
    template = resolve_template("pref_ranking")
    shell = _shell(template, ["claude", "gpt-4o"])
    dims = {d.key: ("just_right" if d.type == "category" else 5) for d in template.dimensions}
    shell = _with(
        shell,
        {
            JUDGE: {
                "claude": {**dims, "rationale": "gpt-4o would say otherwise"},
                "gpt-4o": {**dims, "rationale": "claude said so"},
                "turn": {
                    "likert_value": 2,
                    "selected_model_id": "claude",
                    "rationale": "llama agrees",
                    "position_bias": {"rule": "same", "first": 2, "swapped_mirrored": 2},
                },
                "errors": {"llama": "gpt-4o failed"},
            }
        },
    )
    task = to_label_studio_with_predictions(shell, template)
    assert set(task) == {"data", "predictions"}
    assert set(task["data"]) == {"task_id", "prompt", "response_a", "response_b", "text_sha256"}
    assert [set(p) for p in task["predictions"]] == [{"model_version", "result"}]
    assert task["predictions"][0]["model_version"] == JUDGE
    shown = json.dumps(task).replace("answer of claude", "").replace("answer of gpt-4o", "")
    for word in (*SOURCES, "m-", "source_id", "rationale", "position", "errors", "agrees", "said so"):
        assert word not in shown, word
    assert shown.count(JUDGE) == 1


def test_missing_invalid_and_foreign_parts_are_skipped() -> None:
    template = resolve_template("helpsteer_0_4")
    shell = _shell(template, ["claude", "gpt-4o"])
    judge = {
        "claude": {"helpfulness": 4, "correctness": 5, "coherence": None, "complexity": "3", "no_such_key": 1},
        "llama": {"helpfulness": 0},  # an answer this task does not have
        "errors": {"gpt-4o": "timeout", "turn": "the two orders disagree"},
    }
    assert _choices(prediction_results(shell, template, judge)) == {"a__helpfulness": ("response_a", "4")}
    assert prediction_results(shell, template, {"gpt-4o": "not an object", "turn": {"likert_value": 8}}) == []
    assert prediction_results(shell, template, {"turn": {"likert_value": True}}) == []  # a bool is no scale value
    assert _choices(prediction_results(shell, template, {"turn": {"likert_value": 1}})) == {"likert": ("prompt", "1")}

    # A judge with nothing the form can show gets no prediction; a shell without judges gets none at all.
    two = _with(shell, {JUDGE: {"errors": {"claude": "x"}}, OTHER_JUDGE: {"gpt-4o": {"verbosity": 2}}})
    assert [p["model_version"] for p in label_studio_predictions(two, template)] == [OTHER_JUDGE]
    assert "predictions" not in to_label_studio_with_predictions(shell, template)
    assert "predictions" not in to_label_studio_with_predictions(_with(shell, {JUDGE: {}}), template)


def test_judges_are_chosen_and_ordered_by_the_caller_and_one_is_delivered() -> None:
    template = resolve_template("helpsteer_0_4")
    shell = _with(
        _shell(template, ["claude", "gpt-4o"]),
        {JUDGE: {"claude": {"helpfulness": 1}}, OTHER_JUDGE: {"claude": {"helpfulness": 3}}},
    )
    assert [p["model_version"] for p in label_studio_predictions(shell, template)] == [JUDGE, OTHER_JUDGE]
    assert [p["model_version"] for p in label_studio_predictions(shell, template, [OTHER_JUDGE])] == [OTHER_JUDGE]
    assert [p["model_version"] for p in label_studio_predictions(shell, template, ["absent", OTHER_JUDGE])] == [
        OTHER_JUDGE
    ]
    only_other = _with(shell, {OTHER_JUDGE: {}})
    assert choose_judge([shell, only_other]) == OTHER_JUDGE  # values for the most tasks
    assert choose_judge([shell]) == JUDGE  # a tie: the first by name
    assert choose_judge([shell, only_other], JUDGE) == JUDGE  # the caller's choice
    assert choose_judge([_shell(template, ["claude", "gpt-4o"])]) is None
    with pytest.raises(ValueError, match="judge 'absent' has no values in these tasks"):
        choose_judge([shell], "absent")


def test_the_half_split_is_deterministic_and_about_half() -> None:
    ids = [task_id_for("batch-1", f"p-{i:03d}") for i in range(200)]
    shown = [shows_predictions(task_id, "half") for task_id in ids]
    assert shown == [shows_predictions(task_id, "half") for task_id in ids]
    assert 80 <= sum(shown) <= 120
    assert all(shows_predictions(task_id, "all") for task_id in ids)
    assert not any(shows_predictions(task_id, "none") for task_id in ids)
    # Pinned: a change of the split would silently mix up the groups of tasks already delivered.
    assert [shows_predictions(f"task_{i}", "half") for i in range(8)] == [
        False, True, False, False, True, True, False, True
    ]  # fmt: skip
    assert PREDICTION_MODES == ("none", "all", "half")
    with pytest.raises(ValueError, match="unknown predictions mode 'some'"):
        shows_predictions(ids[0], "some")


def test_predictions_shown_follows_the_mode_the_split_and_the_prefilled_judge() -> None:
    template = resolve_template("helpsteer_0_4")
    plain = _shell(template, ["claude", "gpt-4o"])
    shell = _with(plain, {JUDGE: {"claude": {"helpfulness": 2}}, OTHER_JUDGE: {"errors": {"claude": "x"}}})
    assert predictions_shown(plain, template, "all", JUDGE) is None  # nothing to compare: field left out
    assert predictions_shown(shell, template, "all", JUDGE) is True
    assert predictions_shown(shell, template, "none", JUDGE) is False
    assert predictions_shown(shell, template, "all", None) is False  # the project pre-fills no judge
    assert predictions_shown(shell, template, "all", OTHER_JUDGE) is False  # its judge has nothing here
    assert predictions_shown(shell, template, "half", JUDGE) is shows_predictions(shell["task_id"], "half")


# --------------------------------------------------------------------------------------------------
# Against a real Label Studio (the session's server, see tests/conftest.py)


def _run_with_predictions(sim: RunningSimulator, tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """A finished two-answer run on the simulator whose shells then get judges' values by hand.

    ``judge-x`` predicts every task but two: one keeps no predictions at all, one (in the shown group)
    only ``judge-y``'s, which also predicts two other tasks.
    """
    sim.configure(mode="auto")
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    config = write_config(
        tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 10), annotation={"template": "pref_ranking"}
    )
    summary = asyncio.run(generate_tasks(str(config)))
    tasks_path = Path(summary["files"]["tasks"])
    shells = [json.loads(line) for line in tasks_path.read_text().splitlines()]
    shown = [s["task_id"] for s in shells if shows_predictions(s["task_id"], "half")]
    blind = [s["task_id"] for s in shells if not shows_predictions(s["task_id"], "half")]
    assert len(shown) >= 3 and len(blind) >= 3  # pinned by the task ids: both groups are there
    nothing, only_y = blind[-1], shown[-1]
    template = resolve_template("pref_ranking")
    for i, shell in enumerate(shells):
        if shell["task_id"] == nothing:
            continue
        order = [m["source_id"] for m in final_answers(shell)]
        values = [
            {d.key: ("too_long" if d.type == "category" else (i + n) % 7 + 1) for d in template.dimensions}
            for n in range(2)
        ]
        likert = i % 7 + 1
        winner = None if likert == 4 else order[0 if likert < 4 else 1]
        judge_x = {
            order[0]: {**values[0], "rationale": "fine"},
            order[1]: {**values[1], "rationale": "fine"},
            "turn": {"likert_value": likert, "selected_model_id": winner, "rationale": "compared"},
        }
        judge_y = {order[0]: {"overall": 2, "rationale": "weak"}, "errors": {order[1]: "timeout"}}
        if shell["task_id"] == only_y:
            shell["metadata"]["predictions"] = {"judge-y": judge_y}
        elif i < 2:
            shell["metadata"]["predictions"] = {"judge-x": judge_x, "judge-y": judge_y}
        else:
            shell["metadata"]["predictions"] = {"judge-x": judge_x}
    tasks_path.write_text("".join(json.dumps(s) + "\n" for s in shells), encoding="utf-8")
    return tasks_path.parent, {s["task_id"]: s for s in shells}


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_half_the_tasks_arrive_pre_annotated_and_harvest_knows_which(
    label_studio: LabelStudioServer, sim: RunningSimulator, tmp_path: Path
) -> None:
    run_dir, shells = _run_with_predictions(sim, tmp_path)
    template = resolve_template("pref_ranking")
    token = SecretStr(label_studio.token)
    done = subprocess.run(
        [RLHF, "deliver", str(run_dir), "--to", "label-studio", "--url", label_studio.url]
        + ["--project-title", "judges half", "--predictions", "half", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LABEL_STUDIO_TOKEN": label_studio.token},
    )
    assert done.returncode == 0, done.stderr
    delivered = json.loads(done.stdout)
    with_judges = {t for t, s in shells.items() if s["metadata"].get("predictions")}
    shown_group = {t for t in shells if shows_predictions(t, "half")}
    assert delivered["predictions"] == "half"
    assert delivered["imported"] == len(shells)
    with_x = {t for t in with_judges if "judge-x" in shells[t]["metadata"]["predictions"]}
    assert delivered["imported_with_predictions"] == len(with_x & shown_group)
    (record,) = [json.loads(line) for line in (run_dir / "deliveries.jsonl").read_text().splitlines()]
    assert (record["predictions"], record["prefill_judge"], delivered["judge"]) == ("half", "judge-x", "judge-x")
    project_id = delivered["project_id"]

    with LabelStudioClient(label_studio.url, token) as client:
        project = client.request("GET", f"/api/projects/{project_id}")
        assert project["show_collab_predictions"] is True and project["model_version"] == "judge-x"
        ls_ids = client.task_ids(project_id)
        for task_id, ls_id in ls_ids.items():
            stored = client.request("GET", "/api/predictions/", params={"task": ls_id})
            # One judge is delivered (judge-y's values stay in the run), and only to the shown group.
            expected = (
                label_studio_predictions(shells[task_id], template, ["judge-x"]) if task_id in shown_group else []
            )
            assert [p["model_version"] for p in stored] == [p["model_version"] for p in expected], task_id
            for got, want in zip(stored, expected):
                assert [{k: item[k] for k in ("from_name", "to_name", "type", "value")} for item in got["result"]] == (
                    want["result"]
                )
            # What the labeling view loads: that prediction, and nothing naming an answer's model.
            view = client.request("GET", f"/api/tasks/{ls_id}")
            assert [p["model_version"] for p in view["predictions"]] == [p["model_version"] for p in expected]
            assert not any(word in json.dumps(view) for word in ("gpt-4o", "claude", "source_id"))

        # Annotate two tasks of each group (and the task without judges' values), as the UI submits.
        by_group = {
            True: sorted(shown_group & with_x),
            False: sorted(with_judges - shown_group),
        }
        (only_y,) = with_judges - with_x
        nothing = next(t for t in shells if t not in with_judges)
        annotated_ids = [*by_group[True][:2], *by_group[False][:2], only_y, nothing]
        for task_id in annotated_ids:
            result = [
                _ls_choice(f"{p}__{d.key}", f"response_{p}", "just_right" if d.type == "category" else "4")
                for p in "ab"
                for d in template.dimensions
            ]
            client.create_annotation(ls_ids[task_id], [*result, _ls_choice("likert", "prompt", "2")])

    out = tmp_path / "annotated.jsonl"
    harvested = harvest_label_studio(label_studio.url, token, run_dir, out)
    assert (harvested["annotated"], harvested["rejected"]) == (len(annotated_ids), 0)
    assert harvested["predictions_shown"] == {"shown": 2, "blind": 3}
    tasks = {task["task_id"]: task for task in map(json.loads, out.read_text().splitlines())}
    for task_id in by_group[True][:2]:
        assert tasks[task_id]["metadata"]["predictions_shown"] is True
        assert tasks[task_id]["metadata"]["annotation"]["prefilled_from"] == "judge-x"
    for task_id in [*by_group[False][:2], only_y]:  # judge-y's values were not delivered
        assert tasks[task_id]["metadata"]["predictions_shown"] is False
        assert "prefilled_from" not in tasks[task_id]["metadata"]["annotation"]
    assert "predictions_shown" not in tasks[nothing]["metadata"]
    report = agreement(tasks.values())
    assert report.tasks_by_group == {"shown": 2, "blind": 3} and report.tasks_shown_unknown == 0

    # A task lost from the project is delivered again only the way the project was first delivered.
    lost = next(t for t in sorted(shown_group & with_x) if t not in annotated_ids)
    with LabelStudioClient(label_studio.url, token) as client:
        client.request("DELETE", f"/api/tasks/{ls_ids[lost]}")
    with pytest.raises(ValueError, match="was delivered with --predictions half"):
        deliver_label_studio(run_dir, label_studio.url, token, "judges half", predictions="none")
    with pytest.raises(ValueError, match="pre-fills judge 'judge-x'"):
        deliver_label_studio(run_dir, label_studio.url, token, "judges half", predictions="half", judge="judge-y")
    again = deliver_label_studio(run_dir, label_studio.url, token, "judges half", predictions="half")
    assert (again["imported"], again["imported_with_predictions"], again["judge"]) == (1, 1, "judge-x")


def _ls_choice(name: str, to_name: str, value: str) -> dict[str, Any]:
    return {"from_name": name, "to_name": to_name, "type": "choices", "value": {"choices": [value]}}
