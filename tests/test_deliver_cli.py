"""``rlhf deliver`` (file targets), ``rlhf harvest --from file`` and ``rlhf export-dataset`` as an operator runs them."""

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
from conftest import closed_port_url, provider_entry, write_config, write_prompts

from flows.generation.generate import generate_tasks
from simulator import RunningSimulator
from task_builder.shell import Task

RLHF = str(Path(sys.executable).with_name("rlhf"))
pytestmark = pytest.mark.slow  # every test runs the rlhf command as a subprocess


def rlhf(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RLHF, *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def run_dir(sim: RunningSimulator, tmp_path: Path, prefect_api: str, fake_keys: dict[str, str]) -> Path:
    sim.configure(mode="auto")  # answers without a marker naming the model, as a vendor would see them
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 4))
    summary = asyncio.run(generate_tasks(str(config)))
    return Path(summary["files"]["tasks"]).parent


def _annotate(shell: dict[str, Any], likert: int, annotator: str) -> dict[str, Any]:
    task = copy.deepcopy(shell)
    turn = task["threads"][0]["turns"][-1]
    order = [m["source_id"] for m in turn["messages"] if m["role"] == "assistant"]
    for slot in turn["annotations"]:
        slot["value"] = {
            "likert_value": likert,
            "selected_model_id": order[0 if likert < 4 else 1],
            "justification": "because",
        }.get(slot["key"])
    for message in turn["messages"][1:]:
        for slot in message["annotations"]:
            slot["value"] = 5 if slot["type"] == "integer" else ("just_right" if slot["type"] == "category" else None)
    task["status"] = "completed"
    task["metadata"]["annotation"] = {"annotator": annotator, "platform": "file"}
    return task


def _slot_ids(shell: dict[str, Any]) -> list[str]:
    return [a["id"] for t in shell["threads"][0]["turns"] for m in t["messages"] for a in m["annotations"]]


def test_file_deliveries(run_dir: Path, tmp_path: Path) -> None:
    scale = rlhf("deliver", str(run_dir), "--to", "scale", "--out", str(tmp_path / "scale"), "--json")
    assert scale.returncode == 0, scale.stderr
    assert json.loads(scale.stdout)["tasks"] == 4
    delivered = (tmp_path / "scale" / "tasks.jsonl").read_text()
    originals = [json.loads(line) for line in (run_dir / "tasks.jsonl").read_text().splitlines()]
    for word in ("gpt-4o", "claude", "positions", "model_parameters", "response_order"):
        assert word not in delivered  # blind: no source, model or mapping reaches the vendor
    for line, original in zip(delivered.splitlines(), originals):
        task = Task.model_validate_json(line).to_json_dict()  # still the task shell contract
        assert task["task_id"] == original["task_id"]
        assert _slot_ids(task) == _slot_ids(original)  # slot ids unchanged: values map back slot by slot
        turn = task["threads"][0]["turns"][-1]
        assert [m["source_id"] for m in turn["messages"]] == ["user", "response_a", "response_b"]

    argilla = rlhf("deliver", str(run_dir), "--to", "argilla", "--out", str(tmp_path / "argilla"))
    assert argilla.returncode == 0, argilla.stderr
    assert (
        argilla.stdout
        == f"Wrote an Argilla dataset: {tmp_path / 'argilla' / 'settings.json'}, {tmp_path / 'argilla' / 'records.jsonl'}\n"
    )
    settings = json.loads((tmp_path / "argilla" / "settings.json").read_text())
    assert {q["name"] for q in settings["questions"]} >= {"selected_model_id", "likert_value"}
    records = (tmp_path / "argilla" / "records.jsonl").read_text()
    assert len(records.splitlines()) == 4
    assert not any(word in records + json.dumps(settings) for word in ("gpt-4o", "claude", "_source"))


def test_deliver_to_label_studio_needs_its_token(run_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_TOKEN_VAR"}
    result = rlhf("deliver", str(run_dir), "--url", "http://127.0.0.1:9", "--token-env", "NO_SUCH_TOKEN_VAR", env=env)
    assert result.returncode == 2  # bad input: nothing sent
    assert "environment variable NO_SUCH_TOKEN_VAR is not set" in result.stderr


def test_an_unreachable_label_studio_exits_7_in_one_line(run_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "LABEL_STUDIO_TOKEN": "a-test-token"}
    for command in (
        ["deliver", str(run_dir), "--url", closed_port_url()],
        [
            "harvest",
            "--url",
            closed_port_url(),
            "--run-dir",
            str(run_dir),
            "--project",
            "1",
            "--out",
            str(tmp_path / "x.jsonl"),
        ],
    ):
        result = rlhf(*command, env=env)
        assert result.returncode == 7, result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: Label Studio: ") and "cannot reach Label Studio" in line, line
        assert result.stdout == ""
    assert not (run_dir / "deliveries.jsonl").exists() and not (tmp_path / "x.jsonl").exists()
    scale = rlhf("deliver", str(run_dir), "--to", "scale", "--out", str(tmp_path / "scale"))
    assert scale.stdout == f"Wrote 4 blind task shells for Scale: {tmp_path / 'scale' / 'tasks.jsonl'}\n"


def test_harvest_from_file_then_export_dpo(run_dir: Path, tmp_path: Path) -> None:
    shells = [json.loads(line) for line in (run_dir / "tasks.jsonl").read_text().splitlines()]
    annotated = [
        _annotate(shells[0], 2, "ann-1"),
        _annotate(shells[0], 6, "ann-2"),
        _annotate(shells[1], 4, "ann-1"),
        _annotate(shells[2], 7, "ann-1"),
    ]
    broken = _annotate(shells[3], 9, "ann-1")  # outside the Likert scale
    source = tmp_path / "from-platform.jsonl"
    source.write_text("".join(json.dumps(t) + "\n" for t in [*annotated, broken]))

    harvested = rlhf(
        "harvest", "--from", "file", "--in", str(source), "--out", str(tmp_path / "annotated.jsonl"), "--json"
    )
    assert harvested.returncode == 3
    report = json.loads(harvested.stdout)
    assert (report["annotated"], report["rejected"]) == (4, 1)
    reject = json.loads(Path(report["rejects"]).read_text())
    assert reject["line"] == 5 and "outside the allowed values" in reject["reasons"][0]

    exported = rlhf(
        "export-dataset", str(tmp_path / "annotated.jsonl"), "--format", "dpo", "--out", str(tmp_path / "ds")
    )
    assert exported.returncode == 0, exported.stderr
    result = json.loads(exported.stdout)
    assert result["stats"]["pairs_written"] == 3 and result["stats"]["skipped_tie"] == 1
    pairs = [json.loads(line) for line in (tmp_path / "ds" / "dpo.jsonl").read_text().splitlines()]
    assert [p["annotator"] for p in pairs] == ["ann-1", "ann-2", "ann-1"]
    first_order = [m["source_id"] for m in shells[0]["threads"][0]["turns"][-1]["messages"] if m["role"] == "assistant"]
    assert pairs[0]["chosen_source_id"] == first_order[0] and pairs[1]["chosen_source_id"] == first_order[1]
    assert (tmp_path / "ds" / "dpo.parquet").is_file()


def test_a_scale_delivery_annotated_blind_is_mapped_back_to_the_sources(run_dir: Path, tmp_path: Path) -> None:
    assert rlhf("deliver", str(run_dir), "--to", "scale", "--out", str(tmp_path / "scale")).returncode == 0
    blind = [json.loads(line) for line in (tmp_path / "scale" / "tasks.jsonl").read_text().splitlines()]
    annotated = [_annotate(blind[0], 2, "vendor-1"), _annotate(blind[1], 6, "vendor-1")]
    assert (
        annotated[0]["threads"][0]["turns"][-1]["annotations"][0]["value"] == "response_a"
    )  # as the vendor returns it
    stranger = copy.deepcopy(annotated[1])
    stranger["task_id"] = "task_not_from_this_run"
    source = tmp_path / "from-vendor.jsonl"
    source.write_text("".join(json.dumps(t) + "\n" for t in [*annotated, stranger]))

    harvested = rlhf(
        "harvest",
        "--from",
        "file",
        "--in",
        str(source),
        "--run-dir",
        str(run_dir),
        "--out",
        str(tmp_path / "annotated.jsonl"),
        "--json",
    )
    assert harvested.returncode == 3, harvested.stderr
    report = json.loads(harvested.stdout)
    assert (report["annotated"], report["rejected_by_reason"]) == (2, {"unknown_task": 1})
    originals = {
        json.loads(line)["task_id"]: json.loads(line) for line in (run_dir / "tasks.jsonl").read_text().splitlines()
    }
    for task, likert in zip(
        (json.loads(line) for line in (tmp_path / "annotated.jsonl").read_text().splitlines()), (2, 6)
    ):
        original = originals[task["task_id"]]
        order = [m["source_id"] for m in original["threads"][0]["turns"][-1]["messages"] if m["role"] == "assistant"]
        values = {s["key"]: s["value"] for s in task["threads"][0]["turns"][-1]["annotations"]}
        assert values["selected_model_id"] == order[0 if likert < 4 else 1]  # the position mapped back to its source
        assert task["metadata"]["responses"] == original["metadata"]["responses"]  # provenance from the run
        assert task["metadata"]["annotation"]["annotator"] == "vendor-1"
    exported = rlhf(
        "export-dataset", str(tmp_path / "annotated.jsonl"), "--format", "dpo", "--out", str(tmp_path / "ds")
    )
    assert exported.returncode == 0 and json.loads(exported.stdout)["stats"]["pairs_written"] == 2


def test_export_dataset_rejects_an_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("")
    result = rlhf("export-dataset", str(tmp_path / "a.jsonl"), "--format", "kto")
    assert result.returncode == 2 and "unknown format 'kto'" in result.stderr
