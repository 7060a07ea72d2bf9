"""Annotations land on the answers that were annotated (issue 25): a content hash per delivered answer,
checked at harvest against the run's own shells; a rerun that changes delivered text keeps the version shown.

The end-to-end tests make real runs against the simulator (a Prefect flow run: ``slow``); the others build
a run directory by hand (a config, ``run.json`` and real shells from ``build_task``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import provider_entry, write_config, write_prompts
from scale_check import assert_scale_compatible
from test_datasets import TEXTS, annotate, make_shell

from flows.delivery.deliver import deliver_files, harvest_file
from flows.delivery.delivered import changes_warning
from flows.generation.generate import generate_tasks
from flows.generation.manifest import write_manifest
from platforms.label_studio.tasks import harvest_task, to_label_studio
from simulator import RunningSimulator
from task_builder.answer_hash import text_sha256
from task_builder.blinding import blind
from task_builder.datasets import dpo_records, sft_records
from task_builder.shell import final_answers


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(path: Path, tasks: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(task) + "\n" for task in tasks), encoding="utf-8")
    return path


def _texts(shell: dict[str, Any]) -> list[str]:
    return [answer["content"]["text"] for answer in final_answers(shell)]


def _vendor_annotates(blind_shell: dict[str, Any], likert: int) -> dict[str, Any]:
    """What a vendor returns for a blind shell: the Likert preference and a justification quoting A."""
    task = copy.deepcopy(blind_shell)
    for slot in task["threads"][0]["turns"][-1]["annotations"]:
        if slot["key"] == "likert_value":
            slot["value"] = likert
        elif slot["key"] == "justification":
            slot["value"] = f"A says: {_texts(blind_shell)[0][:40]}"
    task["status"] = "completed"
    task["metadata"]["annotation"] = {"annotator": "vendor-1", "platform": "scale"}
    return task


# ---------------------------------------------------------------- a run directory made by hand


@pytest.fixture
def hand_run(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """A run directory (config, ``run.json``, ``tasks.jsonl``) holding two real two-answer shells."""
    config = write_config(
        tmp_path, [{"source_id": "gpt-4o", "kind": "openai", "model": "gpt-4o"}], tmp_path / "p.jsonl"
    )
    run_dir = tmp_path / "out" / "b1"
    run_dir.mkdir(parents=True)
    write_manifest(run_dir, str(config), "h", tmp_path / "store.sqlite", "2026-01-01T00:00:00Z")
    shells = [make_shell(["gpt-4o", "claude"], prompt_id="p1"), make_shell(["claude", "gpt-4o"], prompt_id="p2")]
    _write(run_dir / "tasks.jsonl", shells)
    return run_dir, shells


def _harvest(run_dir: Path | None, tasks: list[dict[str, Any]], tmp_path: Path) -> tuple[dict[str, Any], list[Any]]:
    source = _write(tmp_path / "from-platform.jsonl", tasks)
    report = harvest_file(source, tmp_path / "annotated.jsonl", run_dir=run_dir)
    return report, _lines(Path(report["rejects"]))


def test_the_blind_shell_carries_a_hash_of_each_answer_and_nothing_else_new() -> None:
    shell = make_shell(["gpt-4o", "claude"])
    blinded = blind(shell)
    hashes = blinded["metadata"]["text_sha256"]
    assert list(hashes) == ["response_a", "response_b"]
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in hashes.values())
    assert hashes["response_a"] != hashes["response_b"]
    assert blind(make_shell(["gpt-4o", "claude"]))["metadata"]["text_sha256"] == hashes  # deterministic
    assert set(blinded["metadata"]) == {"prompt_id", "text_sha256"}
    assert_scale_compatible(blinded)  # still a Scale task: the hashes sit in the free-form metadata


def test_a_non_blind_shell_with_replaced_text_is_rejected_and_never_an_sft_target(
    hand_run: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    run_dir, shells = hand_run
    good = annotate(shells[0], turn={"likert_value": 2, "selected_model_id": "gpt-4o"})
    forged = annotate(shells[1], turn={"likert_value": 2, "selected_model_id": "claude"})
    final_answers(forged)[0]["content"]["text"] = "Text the model never wrote."

    report, rejects = _harvest(run_dir, [good, forged], tmp_path)

    assert (report["annotated"], report["rejected"], report["rejected_by_reason"]) == (1, 1, {"answer_changed": 1})
    (reject,) = rejects
    assert (reject["line"], reject["task_id"], reject["reason"]) == (2, shells[1]["task_id"], "answer_changed")
    assert "Response A (response_a)" in reject["reasons"][0] and shells[1]["task_id"] in reject["reasons"][0]
    records, _ = sft_records(_lines(tmp_path / "annotated.jsonl"))
    assert "Text the model never wrote." not in json.dumps(list(records))


def test_a_blind_shell_whose_text_or_hash_was_changed_is_rejected(
    hand_run: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    run_dir, shells = hand_run
    edited_text = _vendor_annotates(blind(shells[0]), 2)
    final_answers(edited_text)[1]["content"]["text"] += " (edited)"
    other_hash = _vendor_annotates(blind(shells[1]), 6)
    other_hash["metadata"]["text_sha256"]["response_a"] = "0" * 32
    intact = _vendor_annotates(blind(shells[1]), 6)

    report, rejects = _harvest(run_dir, [edited_text, other_hash, intact], tmp_path)

    assert (report["annotated"], report["rejected_by_reason"]) == (1, {"answer_changed": 2})
    assert [(r["line"], r["reason"]) for r in rejects] == [(1, "answer_changed"), (2, "answer_changed")]
    assert "Response B (response_b)" in rejects[0]["reasons"][0]
    assert "Response A (response_a)" in rejects[1]["reasons"][0]
    # Without the run, the blind shell is still checked against the hashes it was delivered with.
    report, rejects = _harvest(None, [edited_text, intact], tmp_path)
    assert (report["annotated"], report["rejected_by_reason"]) == (1, {"answer_changed": 1})


def test_the_answer_text_always_comes_from_the_run(hand_run: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    """A returned non-blind shell may carry other provenance; the annotated task is the run's shell."""
    run_dir, shells = hand_run
    task = annotate(shells[0], turn={"likert_value": 2, "selected_model_id": "gpt-4o"})
    task["metadata"]["responses"]["gpt-4o"]["model"] = "someone-else"

    report, _ = _harvest(run_dir, [task], tmp_path)

    (annotated,) = _lines(tmp_path / "annotated.jsonl")
    assert report["annotated"] == 1
    assert annotated["metadata"]["responses"] == shells[0]["metadata"]["responses"]
    assert _texts(annotated) == _texts(shells[0])


# ---------------------------------------------------------------- Label Studio (no server)


def _ls_task(shell: dict[str, Any], **data: Any) -> dict[str, Any]:
    """The delivered Label Studio task of ``shell`` (its data changed by ``data``), with one annotation."""
    task = to_label_studio(shell)
    task["data"].update(data)
    likert = {"from_name": "likert", "to_name": "prompt", "type": "choices", "value": {"choices": ["2"]}}
    return {"id": 7, **task, "annotations": [{"id": 1, "completed_by": 3, "result": [likert]}]}


def test_label_studio_task_data_carries_the_hashes_of_the_shells_answers() -> None:
    shell = make_shell(["gpt-4o", "claude"])
    data = to_label_studio(shell)["data"]
    assert data["text_sha256"] == {
        "response_a": text_sha256(TEXTS["gpt-4o"]),
        "response_b": text_sha256(TEXTS["claude"]),
    }


def test_a_label_studio_task_that_showed_other_text_is_rejected_naming_task_and_position() -> None:
    delivered = make_shell(["gpt-4o", "claude"])
    rerun = copy.deepcopy(delivered)
    final_answers(rerun)[1]["content"]["text"] = "A new model's answer."

    outcome = harvest_task(_ls_task(delivered), {}, {}, {rerun["task_id"]: rerun})

    assert outcome.annotated == []
    (reject,) = outcome.rejected
    assert (reject["task_id"], reject["reason"]) == (delivered["task_id"], "answer_changed")
    assert reject["reasons"][0].startswith(f"task {delivered['task_id']}: Response B (response_b): ")
    # With the delivered version kept, the annotation lands on the text shown, not on the rerun's.
    outcome = harvest_task(_ls_task(delivered), {}, {}, {rerun["task_id"]: [rerun, delivered]})
    (annotated,) = outcome.annotated
    assert outcome.rejected == [] and _texts(annotated) == _texts(delivered)


def test_label_studio_harvest_never_takes_the_shell_from_the_platform() -> None:
    """A task delivered by an older version carried the whole shell (``data.shell``): text comes from the run."""
    run_shell = make_shell(["gpt-4o", "claude"])
    old_data = {key: value for key, value in to_label_studio(run_shell)["data"].items() if key != "text_sha256"}
    other_provenance = copy.deepcopy(run_shell)
    other_provenance["metadata"]["responses"]["gpt-4o"]["model"] = "someone-else"
    edited = copy.deepcopy(other_provenance)
    final_answers(edited)[0]["content"]["text"] = "Text put into Label Studio by hand."

    same_text = _ls_task(run_shell)
    same_text["data"] = {**old_data, "shell": other_provenance}
    (annotated,) = harvest_task(same_text, {}, {}, {run_shell["task_id"]: run_shell}).annotated
    assert annotated["metadata"]["responses"] == run_shell["metadata"]["responses"]

    changed = _ls_task(run_shell)
    changed["data"] = {**old_data, "shell": edited}
    outcome = harvest_task(changed, {}, {}, {run_shell["task_id"]: run_shell})
    assert outcome.annotated == [] and outcome.rejected[0]["reason"] == "answer_changed"
    assert "Response A (response_a)" in outcome.rejected[0]["reasons"][0]
    # Not the run's task: rejected, even though the Label Studio task carries a whole shell.
    assert harvest_task(changed, {}, {}, {}).rejected[0]["reasons"][0].endswith("(delivered from another run?)")


# ---------------------------------------------------------------- the scenario, with real runs


def _rerun_with(config: Path, source_id: str, model: str) -> dict[str, Any]:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    for provider in data["providers"]:
        if provider["source_id"] == source_id:
            provider["model"] = model
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return asyncio.run(generate_tasks(str(config)))


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_a_rerun_that_changes_delivered_answers_warns_and_harvest_uses_the_text_shown(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    sim.configure(mode="auto")
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 3))
    run_dir = Path(asyncio.run(generate_tasks(str(config)))["files"]["tasks"]).parent
    deliver_files(run_dir, "scale", tmp_path / "scale")
    delivered = _lines(tmp_path / "scale" / "tasks.jsonl")
    vendor_file = _write(tmp_path / "from-vendor.jsonl", [_vendor_annotates(task, 2) for task in delivered])

    summary = _rerun_with(config, "claude", "claude-y")  # same task ids, new text for every claude answer

    assert summary["delivered_changed"] == {"tasks": 3, "kept": str(run_dir / "delivered" / "tasks.jsonl")}
    assert (changes_warning(summary) or "").startswith("3 task(s) already delivered to annotators now have other")
    rerun = {task["task_id"]: task for task in _lines(run_dir / "tasks.jsonl")}
    assert all(_texts(rerun[task["task_id"]]) != _texts(task) for task in delivered)
    report = harvest_file(vendor_file, tmp_path / "annotated.jsonl", run_dir=run_dir)
    assert (report["annotated"], report["rejected"]) == (3, 0)
    pairs, _ = dpo_records(_lines(tmp_path / "annotated.jsonl"))
    chosen = {pair["task_id"]: pair["chosen"][0]["content"] for pair in pairs}
    assert chosen == {task["task_id"]: _texts(task)[0] for task in delivered}  # the text the vendor saw

    # A delivery whose shown version was not kept (made before versions were kept) is rejected, not misjoined.
    shutil.rmtree(run_dir / "delivered")
    report = harvest_file(vendor_file, tmp_path / "annotated.jsonl", run_dir=run_dir)
    assert (report["annotated"], report["rejected"], report["rejected_by_reason"]) == (0, 3, {"answer_changed": 3})
    rejects = _lines(Path(report["rejects"]))
    assert all(r["task_id"] in r["reasons"][0] and "(response_" in r["reasons"][0] for r in rejects)
