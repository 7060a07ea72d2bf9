"""Deliver → annotate → harvest → export against a real Label Studio on 127.0.0.1.

The server is installed once into its own cached venv and started for this module (see
``platforms/label_studio/local_server.py``); annotations are made through its REST API exactly as the labeling UI
submits them, and the DPO pairs exported at the end are checked against the annotations made.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import provider_entry, write_config, write_prompts
from pydantic import SecretStr

from flows.delivery.deliver import (
    deliver_label_studio,
    deliver_tasks,
    harvest_annotations,
    harvest_label_studio,
)
from flows.delivery.reports import delivery_summary
from flows.generation.generate import generate_tasks
from flows.reporting.report import RunIncomplete
from platforms.label_studio.client import LabelStudioClient
from platforms.label_studio.local_server import LabelStudioServer
from simulator import FaultRule, RunningSimulator
from task_builder.answer_hash import answer_hashes
from task_builder.datasets import dpo_records

pytestmark = pytest.mark.slow


def _choice(name: str, to_name: str, value: str) -> dict[str, Any]:
    return {"from_name": name, "to_name": to_name, "type": "choices", "value": {"choices": [value]}}


def _text(name: str, to_name: str, value: str) -> dict[str, Any]:
    return {"from_name": name, "to_name": to_name, "type": "textarea", "value": {"text": [value]}}


def _person(rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What an annotator submits for a two-answer Pref Ranking with Rewrites task, and what it means."""
    likert = rng.choice([1, 2, 3, 5, 6, 7])
    selected = "A" if likert < 4 else "B"
    result = []
    for letter in ("a", "b"):
        for key in ("instruction_following", "truthfulness", "factuality", "tone", "harmlessness", "overall"):
            result.append(_choice(f"{letter}__{key}", f"response_{letter}", str(rng.randint(1, 7))))
        result.append(_choice(f"{letter}__verbosity", f"response_{letter}", "just_right"))
    result.append(_text("a__rewrite", "response_a", "A better answer, rewritten by a person."))
    result.append(_choice("likert", "prompt", str(likert)))
    result.append(_text("justification", "prompt", f"Response {selected} answers the question."))
    return result, {"likert": likert, "selected": selected}


@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_deliver_annotate_harvest_export(
    label_studio: LabelStudioServer, sim: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.configure(mode="auto")  # answers as annotators would see them: no marker naming the model
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    config = write_config(
        tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 6), annotation={"template": "pref_ranking_rewrites"}
    )
    summary = asyncio.run(generate_tasks(str(config)))
    run_dir = Path(summary["files"]["tasks"]).parent
    shells = {
        json.loads(line)["task_id"]: json.loads(line)
        for line in Path(summary["files"]["tasks"]).read_text().splitlines()
    }
    legacy = SecretStr(label_studio.token)

    first = deliver_label_studio(run_dir, label_studio.url, legacy, "rlhf test project")
    assert (first["project_created"], first["imported"], first["already_delivered"]) == (True, 6, 0)
    # The project's page, as rlhf deliver prints it: Label Studio serves it (a login page first), no 404.
    assert first["project_url"] == f"{label_studio.url}/projects/{first['project_id']}/"
    assert httpx.get(first["project_url"], follow_redirects=True, timeout=30).status_code == 200
    assert first["project_url"] in delivery_summary(first)
    monkeypatch.setenv("LS_TEST_TOKEN", label_studio.token)
    again = deliver_tasks(str(run_dir), label_studio.url, token_env="LS_TEST_TOKEN", project_title="rlhf test project")
    assert (again["project_created"], again["imported"], again["already_delivered"]) == (False, 0, 6)
    assert again["project_id"] == first["project_id"]

    with LabelStudioClient(label_studio.url, legacy) as client:
        ls_ids = client.task_ids(first["project_id"])
        assert sorted(ls_ids) == sorted(shells)  # no duplicates after the second delivery
        project = client.request("GET", f"/api/projects/{first['project_id']}")
        for source_id in ("gpt-4o", "claude"):
            assert source_id not in project["label_config"]  # annotators see positions, not models
        for task in client.request("GET", "/api/tasks", params={"project": first["project_id"], "fields": "all"})[
            "tasks"
        ]:
            # Every data field is a Data Manager column: only the id, the prompt and the answers by position
            # (and their hashes, which name nothing: harvest checks the text annotated with them).
            assert set(task["data"]) == {"task_id", "prompt", "response_a", "response_b", "text_sha256"}
            assert task["data"]["text_sha256"] == answer_hashes(shells[task["data"]["task_id"]])
            assert not any(
                word in json.dumps(task) for word in ("gpt-4o", "claude-x", '"claude"', "source_id", "positions")
            )
        rng = random.Random(7)
        made: dict[str, dict[str, Any]] = {}
        for task_id, ls_id in sorted(ls_ids.items()):
            result, meaning = _person(rng)
            client.create_annotation(ls_id, result)
            made[task_id] = meaning
        bad_task, other_bad = sorted(ls_ids)[:2]
        client.create_annotation(ls_ids[bad_task], [_choice("likert", "prompt", "9")])
        client.create_annotation(ls_ids[other_bad], [_choice("no_such_control", "prompt", "1")])
        personal = client.create_personal_access_token()

    out = tmp_path / "annotated.jsonl"
    monkeypatch.setenv("LS_TEST_TOKEN", personal.get_secret_value())  # the other token kind
    harvested = harvest_annotations(label_studio.url, str(run_dir), str(out), token_env="LS_TEST_TOKEN")
    assert harvested["project_ids"] == [first["project_id"]]  # found through the run's deliveries.jsonl
    assert "predictions_shown" not in harvested  # no judges, no task with their values: nothing to count
    assert (harvested["annotated"], harvested["rejected"]) == (6, 2)
    rejects = [json.loads(line) for line in Path(harvested["rejects"]).read_text().splitlines()]
    reasons = sorted(reject["reasons"][0] for reject in rejects)
    assert reasons == [
        "likert: 9 is outside the allowed values [1, 2, 3, 4, 5, 6, 7]",
        "no_such_control: unknown control",
    ]
    assert all(
        reject["reasons"][-1].startswith("required question(s) left blank: a__instruction_following")
        for reject in rejects
    )

    annotated = [json.loads(line) for line in out.read_text().splitlines()]
    for task in annotated:
        assert task["status"] == "completed" and task["metadata"]["annotation"]["annotator"] == "annotator@example.com"
        turn = task["threads"][0]["turns"][-1]
        values = {slot["key"]: slot["value"] for slot in turn["annotations"]}
        order = [m["source_id"] for m in turn["messages"] if m["role"] == "assistant"]
        meaning = made[task["task_id"]]
        assert values["likert_value"] == meaning["likert"]
        assert values["selected_model_id"] == order["AB".index(meaning["selected"])]
        assert turn["messages"][1]["annotations"][-1] == {
            **turn["messages"][1]["annotations"][-1],
            "key": "rewrite",
            "value": "A better answer, rewritten by a person.",
        }

    records, stats = dpo_records(annotated)
    pairs = list(records)
    assert len(pairs) == 6 and stats.pairs_written == 6
    for pair in pairs:
        shell = shells[pair["task_id"]]
        turn = shell["threads"][0]["turns"][-1]
        order = [m["source_id"] for m in turn["messages"] if m["role"] == "assistant"]
        texts = {m["source_id"]: m["content"]["text"] for m in turn["messages"] if m["role"] == "assistant"}
        likert = made[pair["task_id"]]["likert"]
        winner, loser = (order[0], order[1]) if likert < 4 else (order[1], order[0])
        assert (pair["chosen_source_id"], pair["rejected_source_id"]) == (winner, loser)
        assert pair["chosen"] == [{"role": "assistant", "content": texts[winner]}]
        assert pair["rejected"] == [{"role": "assistant", "content": texts[loser]}]
        assert pair["margin"] == abs(likert - 4)
        assert pair["prompt"][-1] == {"role": "user", "content": turn["messages"][0]["content"]["text"]}


@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_tasks_that_lost_an_answer_get_a_project_whose_form_fits_them(
    label_studio: LabelStudioServer, sim: RunningSimulator, tmp_path: Path
) -> None:
    sim.configure(faults=[FaultRule(kind="400", model="claude-x", prompt_contains="number 1:")])
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "llama", "openai", "llama-3"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 3))
    with pytest.raises(RunIncomplete) as incomplete:  # a call failed: the run ends Incomplete, tasks written
        asyncio.run(generate_tasks(str(config)))
    summary = incomplete.value.summary
    assert summary is not None
    run_dir = Path(summary["files"]["tasks"]).parent
    delivered = deliver_label_studio(run_dir, label_studio.url, SecretStr(label_studio.token), "lost answers")
    assert [(p["project_title"], p["answers"], p["tasks"]) for p in delivered["projects"]] == [
        ("lost answers", 3, 2),
        ("lost answers (2 answers)", 2, 1),
    ]
    dims = ("instruction_following", "truthfulness", "factuality", "tone", "harmlessness", "overall")
    with LabelStudioClient(label_studio.url, SecretStr(label_studio.token)) as client:
        for project in delivered["projects"]:
            config_xml = client.request("GET", f"/api/projects/{project['project_id']}")["label_config"]
            assert ('name="likert"' in config_xml) == (project["answers"] == 2)  # the pair's form asks the Likert
            assert (
                'name="response_c"' in config_xml if project["answers"] == 3 else 'name="response_c"' not in config_xml
            )
            for ls_id in client.task_ids(project["project_id"]).values():
                letters = "abc"[: project["answers"]]
                result = [_choice(f"{p}__{d}", f"response_{p}", "4") for p in letters for d in dims]
                result += [_choice(f"{p}__verbosity", f"response_{p}", "just_right") for p in letters]
                result.append(
                    _choice("likert", "prompt", "2") if project["answers"] == 2 else _choice("selected", "prompt", "C")
                )
                client.create_annotation(ls_id, result)
    out = tmp_path / "annotated.jsonl"
    harvested = harvest_label_studio(label_studio.url, SecretStr(label_studio.token), run_dir, out)
    assert sorted(harvested["project_ids"]) == sorted(p["project_id"] for p in delivered["projects"])
    assert (harvested["annotated"], harvested["rejected"]) == (3, 0)
    for task in (json.loads(line) for line in out.read_text().splitlines()):
        turn = task["threads"][0]["turns"][-1]
        order = [m["source_id"] for m in turn["messages"] if m["role"] == "assistant"]
        selected = next(s["value"] for s in turn["annotations"] if s["key"] == "selected_model_id")
        assert selected == (order[0] if len(order) == 2 else order[2])  # Likert 2 favours A; "C" names the third


@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_annotations_stay_on_the_text_shown_when_a_rerun_changes_it(
    label_studio: LabelStudioServer, sim: RunningSimulator, tmp_path: Path
) -> None:
    """Deliver, annotate, rerun with another model (same task ids, new text): harvest joins each annotation
    to the version delivered (kept in the run directory), never to the rerun's text."""
    sim.configure(mode="auto")
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    config = write_config(
        tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 2), annotation={"template": "pref_ranking_rewrites"}
    )
    run_dir = Path(asyncio.run(generate_tasks(str(config)))["files"]["tasks"]).parent
    shown = {
        json.loads(line)["task_id"]: json.loads(line) for line in (run_dir / "tasks.jsonl").read_text().splitlines()
    }
    token = SecretStr(label_studio.token)
    delivered = deliver_label_studio(run_dir, label_studio.url, token, "rerun after delivery")
    rng = random.Random(3)
    made: dict[str, int] = {}
    with LabelStudioClient(label_studio.url, token) as client:
        for task_id, ls_id in client.task_ids(delivered["project_id"]).items():
            result, meaning = _person(rng)
            client.create_annotation(ls_id, result)
            made[task_id] = meaning["likert"]
    data = yaml.safe_load(config.read_text())
    data["providers"][1]["model"] = "claude-y"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    rerun = asyncio.run(generate_tasks(str(config)))
    assert rerun["delivered_changed"]["tasks"] == 2

    out = tmp_path / "annotated.jsonl"
    harvested = harvest_label_studio(label_studio.url, token, run_dir, out)
    assert (harvested["annotated"], harvested["rejected"]) == (2, 0)
    pairs, _ = dpo_records([json.loads(line) for line in out.read_text().splitlines()])
    for pair in pairs:
        answers = [m for m in shown[pair["task_id"]]["threads"][0]["turns"][-1]["messages"] if m["role"] == "assistant"]
        winner = answers[0 if made[pair["task_id"]] < 4 else 1]
        assert pair["chosen"] == [{"role": "assistant", "content": winner["content"]["text"]}]  # the text shown

    shutil.rmtree(run_dir / "delivered")  # as if delivered before versions were kept: rejected, never misjoined
    harvested = harvest_label_studio(label_studio.url, token, run_dir, out)
    assert (harvested["annotated"], harvested["rejected"]) == (0, 2)
    rejects = [json.loads(line) for line in Path(harvested["rejects"]).read_text().splitlines()]
    assert {reject["reason"] for reject in rejects} == {"answer_changed"}
