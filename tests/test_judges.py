"""Judges in a run: predictions for every answer and the preference, kept apart from the human slots,
stored like answers (a rerun pays for no judgement twice), retried when invalid, never guessed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import flow_run_artifacts, provider_entry, write_config, write_prompts
from scale_check import assert_scale_compatible
from typer.testing import CliRunner

from flows.cli.app import app
from flows.generation.generate import generate_tasks
from simulator import RunningSimulator
from task_builder.annotated import value_problem
from task_builder.judging import judgeable_dimensions
from task_builder.preference import likert_winner
from task_builder.template import resolve_template

pytestmark = [pytest.mark.usefixtures("prefect_api", "fake_keys"), pytest.mark.slow]

TEMPLATE = resolve_template("default")
JUDGE_MODELS = {"judge-gpt": "judge-gpt-4o", "judge-claude": "judge-claude-opus"}


def answer_providers(sim: RunningSimulator, count: int = 2) -> list[dict[str, Any]]:
    entries = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-sonnet-4-5"),
        provider_entry(sim, "llama", "openai", "llama-3-8b"),
    ]
    return entries[:count]


def judge_entries(sim: RunningSimulator) -> list[dict[str, Any]]:
    return [
        provider_entry(sim, "judge-gpt", "openai", JUDGE_MODELS["judge-gpt"], params={"temperature": 0.0}),
        provider_entry(sim, "judge-claude", "anthropic", JUDGE_MODELS["judge-claude"], params={"max_tokens": 1024}),
    ]


def run(config: Path, **kwargs: Any) -> dict[str, Any]:
    return asyncio.run(generate_tasks(str(config), **kwargs))


def read_tasks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    with open(summary["files"]["tasks"], encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def final_turn(task: dict[str, Any]) -> dict[str, Any]:
    return task["threads"][0]["turns"][-1]


def order_of(task: dict[str, Any]) -> list[str]:
    return [m["source_id"] for m in final_turn(task)["messages"] if m["role"] == "assistant"]


def judge_requests(sim: RunningSimulator) -> int:
    by_model = sim.stats()["by_model"]
    return sum(by_model.get(model, {}).get("requests", 0) for model in JUDGE_MODELS.values())


def assert_human_slots_empty(task: dict[str, Any]) -> None:
    turn = final_turn(task)
    for message in turn["messages"]:
        for slot in message.get("annotations") or []:
            assert slot["value"] is None
    for slot in turn.get("annotations") or []:
        assert slot["value"] is None


def test_judges_predict_every_answer_and_the_preference_and_leave_the_human_slots_empty(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 6)
    config = write_config(tmp_path, answer_providers(sim), prompts, judges=judge_entries(sim), chunk_size=4)
    summary = run(config)

    assert summary["tasks_written"] == 6
    dimensions = judgeable_dimensions(TEMPLATE)
    likert = TEMPLATE.turn.likert.values
    for task in read_tasks(summary):
        assert_scale_compatible(task)
        assert_human_slots_empty(task)
        order = order_of(task)
        predictions = task["metadata"]["predictions"]
        assert set(predictions) == set(JUDGE_MODELS)
        for judge, entry in predictions.items():
            assert "errors" not in entry, entry
            for answer_id in order:
                values = entry[answer_id]
                assert set(values) == {d.key for d in dimensions} | {"rationale"}
                for dimension in dimensions:
                    slot = {"type": dimension.type, "possible_values": dimension.values}
                    assert value_problem(slot, values[dimension.key]) is None, (judge, dimension.key, values)
                assert isinstance(values["rationale"], str) and values["rationale"]
            turn = entry["turn"]
            assert turn["likert_value"] in likert
            winner = likert_winner(likert, turn["likert_value"])
            assert turn["selected_model_id"] == (None if winner is None else order[winner[0]])
            assert turn["position_bias"]["rule"] in ("same", "mean", "middle")
    # 6 prompts × 2 judges × (2 ratings + the preference asked in both orders)
    assert judge_requests(sim) == 6 * 2 * 4
    for judge in JUDGE_MODELS:
        tally = summary["judges"][judge]
        assert (tally["requested"], tally["answered"], tally["called_this_run"]) == (24, 24, 24)

    again = run(config)  # every judgement is stored: none is asked again
    assert judge_requests(sim) == 48 and again["judges"]["judge-gpt"]["reused_from_store"] == 24
    first = {t["task_id"]: t["metadata"]["predictions"] for t in read_tasks(summary)}
    assert {t["task_id"]: t["metadata"]["predictions"] for t in read_tasks(again)} == first


def test_an_invalid_judgement_is_asked_again_and_one_never_valid_is_a_recorded_failure(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 4)
    judges = judge_entries(sim)[:1]
    sim.configure(structured_invalid_probability=0.3, seed=11)
    summary = run(write_config(tmp_path, answer_providers(sim), prompts, judges=judges))
    tally = summary["judges"]["judge-gpt"]
    assert judge_requests(sim) > 4 * 4  # some judgements were asked again
    for task in read_tasks(summary):
        entry = task["metadata"]["predictions"]["judge-gpt"]
        for answer_id in order_of(task):
            assert answer_id in entry or entry["errors"][answer_id].startswith("invalid_judgement")
    assert tally["answered"] + tally["failed"] == 16

    sim.configure(structured_invalid_probability=1.0)
    out = tmp_path / "never"
    out.mkdir()
    config = write_config(out, answer_providers(sim), prompts, judges=judges)
    summary = run(config)
    tally = summary["judges"]["judge-gpt"]
    assert tally["answered"] == 0 and tally["failure_reasons"] == {"invalid_judgement": 16}
    for task in read_tasks(summary):
        entry = task["metadata"]["predictions"]["judge-gpt"]
        assert set(entry) == {"errors"}  # no value was guessed
        assert all(reason.startswith("invalid_judgement") for reason in entry["errors"].values())
        assert_human_slots_empty(task)


def test_pairwise_tasks_get_the_preference_of_their_own_pair_in_their_own_order(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    config = write_config(
        tmp_path,
        answer_providers(sim, 3),
        prompts,
        judges=judge_entries(sim)[:1],
        annotation={"template": "default", "layout": "pairwise", "seed": 5},
    )
    summary = run(config)
    tasks = read_tasks(summary)
    assert len(tasks) == 9
    by_pair: dict[tuple[str, frozenset[str]], list[tuple[list[str], int]]] = {}
    for task in tasks:
        order = order_of(task)
        turn = task["metadata"]["predictions"]["judge-gpt"]["turn"]
        by_pair.setdefault((task["metadata"]["prompt_id"], frozenset(order)), []).append((order, turn["likert_value"]))
    likert = TEMPLATE.turn.likert.values
    for shown in by_pair.values():
        reference_order, reference_value = shown[0]
        for order, value in shown[1:]:  # the same pair shown in the other order reads mirrored
            expected = (
                reference_value if order == reference_order else likert[len(likert) - 1 - likert.index(reference_value)]
            )
            assert value == expected


def test_agreement_report_from_a_hand_annotated_file(sim: RunningSimulator, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 4)
    summary = run(write_config(tmp_path, answer_providers(sim), prompts, judges=judge_entries(sim)[:1]))
    annotated = []
    kept = changed = 0
    for index, task in enumerate(read_tasks(summary)):
        prediction = task["metadata"]["predictions"]["judge-gpt"]
        for message in final_turn(task)["messages"]:
            for slot in message.get("annotations") or []:
                if slot["key"] == "instruction_following":
                    judged = prediction[message["source_id"]]["instruction_following"]
                    # the human keeps the judge's value on even tasks, moves it by one on odd ones
                    slot["value"] = judged if index % 2 == 0 else (judged + 1 if judged < 7 else judged - 1)
                    kept, changed = kept + (index % 2 == 0), changed + (index % 2 == 1)
        task["status"] = "completed"
        annotated.append(task)
    path = tmp_path / "annotated.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in annotated), encoding="utf-8")

    result = CliRunner().invoke(app, ["agreement", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    row = next(r for r in data["rows"] if r["dimension"] == "instruction_following" and r["group"] == "all")
    assert row["judge"] == "judge-gpt" and row["n"] == kept + changed == 8
    assert row["kept"] == pytest.approx(kept / 8, abs=1e-3) and row["mean_abs_diff"] == pytest.approx(
        changed / 8, abs=1e-3
    )
    assert json.loads((tmp_path / "annotated.agreement.json").read_text())["rows"] == data["rows"]

    from flows.reporting.agreement import agreement_report

    state = asyncio.run(agreement_report(str(path), str(tmp_path / "flow.json"), return_state=True))

    (table,) = flow_run_artifacts(state.state_details.flow_run_id)
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert table.type == "table" and rows == data["rows"]

    path.write_text("{not json\n", encoding="utf-8")
    bad = CliRunner().invoke(app, ["agreement", str(path)])
    assert bad.exit_code == 2 and f"{path}:1" in bad.output


def test_a_judge_config_is_checked_before_anything_is_called(sim: RunningSimulator, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 2)
    judges = [dict(judge_entries(sim)[0], mode="batch"), dict(judge_entries(sim)[1], source_id="gpt-4o")]
    config = write_config(tmp_path, answer_providers(sim), prompts, judges=judges)
    result = CliRunner().invoke(app, ["validate", str(config)])
    assert result.exit_code == 2
    assert "judges[0].mode: judges call online" in result.output
    assert "judges[1].source_id: duplicate 'gpt-4o'" in result.output
    assert sim.stats()["requests_total"] == 0


def test_judges_also_judge_answers_that_came_from_a_provider_batch(sim: RunningSimulator, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-haiku", mode="batch", batch_poll_s=0.1),
    ]
    summary = run(write_config(tmp_path, providers, prompts, judges=judge_entries(sim)[1:]))
    assert summary["tasks_written"] == 3 and sim.stats()["batches"]["requests_submitted"] == 3
    for task in read_tasks(summary):
        entry = task["metadata"]["predictions"]["judge-claude"]
        assert {"gpt-4o", "claude", "turn"} <= set(entry) and "errors" not in entry
