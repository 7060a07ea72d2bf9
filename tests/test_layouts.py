"""Annotation templates × layouts, position balance, samples per provider, inline templates, schemas."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, provider_entry, three_providers, write_config, write_prompts
from scale_check import assert_scale_compatible

from common.errors import InputError
from flows.generation.generate import generate_tasks
from providers.config import ProviderConfig
from providers.slots import answer_slots
from simulator import RunningSimulator
from task_builder.layout import TaskLayout
from task_builder.template import resolve_template, shipped_templates

SOURCES = ["gpt-4o", "llama-3", "claude"]


def _slots(n: int = 3) -> list[Any]:
    providers = [ProviderConfig(source_id=s, kind="openai", model=s) for s in SOURCES[:n]]
    return answer_slots(providers, 1)


def test_pairwise_first_position_is_balanced_over_1000_tasks() -> None:
    layout = TaskLayout("pairwise", "b", seed=5)
    first = Counter()
    appearances = Counter()
    tasks = 0
    slots = _slots()
    for i in range(334):
        for planned in layout.plan(f"p{i}", slots):
            tasks += 1
            first[planned.order[0]] += 1
            appearances.update(planned.order)
    assert tasks >= 1000
    for source in SOURCES:
        share = first[source] / appearances[source]
        assert 0.45 <= share <= 0.55, (source, share)
    report = layout.positions.report()
    assert report["claude"]["Response A"]["count"] == first["claude"]


def test_n_way_positions_are_balanced_and_still_vary() -> None:
    layout = TaskLayout("n_way", "b", seed=1)
    counts: dict[str, Counter[int]] = {s: Counter() for s in SOURCES}
    orders = set()
    for i in range(900):
        (planned,) = layout.plan(f"p{i}", _slots())
        orders.add(tuple(planned.order))
        for position, source in enumerate(planned.order):
            counts[source][position] += 1
    for source in SOURCES:
        for position in range(3):
            assert abs(counts[source][position] - 300) <= 3, (source, position, counts[source])
    assert len(orders) == 6  # every permutation is used, not one fixed rotation


def test_pairs_per_prompt_compares_every_pair_about_equally() -> None:
    layout = TaskLayout("pairwise", "b", seed=2, pairs_per_prompt=1)
    pairs = Counter()
    for i in range(300):
        (planned,) = layout.plan(f"p{i}", _slots())
        pairs[tuple(sorted(planned.order))] += 1
    assert set(pairs) == {tuple(sorted(p)) for p in itertools.combinations(SOURCES, 2)}
    assert max(pairs.values()) - min(pairs.values()) <= 1


def test_layout_plans_are_deterministic() -> None:
    def plans() -> list[Any]:
        layout = TaskLayout("pairwise", "b", seed=9, pairs_per_prompt=2)
        return [(p.task_id, p.order) for i in range(50) for p in layout.plan(f"p{i}", _slots())]

    assert plans() == plans()


def _run(config: Path) -> dict[str, Any]:
    return asyncio.run(generate_tasks(str(config)))


def _tasks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(summary["files"]["tasks"]).read_text().splitlines()]


def _answers(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in task["threads"][0]["turns"][-1]["messages"] if m["role"] == "assistant"]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
@pytest.mark.parametrize("layout", ["n_way", "pairwise", "single"])
def test_every_shipped_template_in_every_layout_is_scale_compatible(
    sim: RunningSimulator, tmp_path: Path, layout: str
) -> None:
    prompts = write_prompts(tmp_path / "p.jsonl", 4)
    for name in shipped_templates():
        template = resolve_template(name)
        workdir = tmp_path / name
        workdir.mkdir()
        config = write_config(
            workdir, three_providers(sim), prompts, annotation={"template": name, "layout": layout, "seed": 4}
        )
        summary = _run(config)
        tasks = _tasks(summary)
        expected = {"n_way": 4, "pairwise": 12, "single": 12}[layout]
        assert summary["tasks_written"] + summary["tasks_filtered"] == expected
        assert summary["prompts_tasked"] + summary["prompts_filtered"] == 4
        if not (template.filters.drop_all_flagged or template.filters.drop_all_identical):
            assert summary["tasks_filtered"] == 0
        filtered = [json.loads(line) for line in Path(summary["files"]["filtered"]).read_text().splitlines()]
        assert len(filtered) == summary["tasks_filtered"]
        assert all(f["reason"] == "every answer is flagged" and all(f["flags"].values()) for f in filtered)
        assert len({t["task_id"] for t in tasks} | {f["task_id"] for f in filtered}) == expected
        for task in tasks:
            assert_scale_compatible(task)
            answers = _answers(task)
            assert len(answers) == {"n_way": 3, "pairwise": 2, "single": 1}[layout]
            keys = [a["key"] for a in answers[0]["annotations"]]
            assert keys == [d.key for d in template.dimensions] + (["rewrite"] if template.rewrite else [])
            turn_keys = [a["key"] for a in task["threads"][0]["turns"][-1]["annotations"]]
            assert ("likert_value" in turn_keys) == (layout == "pairwise" and template.turn.likert.enabled)
            assert ("selected_model_id" in turn_keys) == (layout != "single" and template.turn.selected_model_id)
            assert ("ranking" in turn_keys) == (layout != "single" and template.turn.ranking)
            assert task["metadata"]["layout"] == layout and task["metadata"]["annotation_template"] == name
            if layout == "pairwise" and template.turn.likert.enabled:
                likert = next(a for a in task["threads"][0]["turns"][-1]["annotations"] if a["key"] == "likert_value")
                assert (
                    likert["labels"][0] == "Response A much better" and likert["labels"][-1] == "Response B much better"
                )
                assert task["metadata"]["positions"] == {
                    "Response A": answers[0]["source_id"],
                    "Response B": answers[1]["source_id"],
                }


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_summary_reports_position_shares(sim: RunningSimulator, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        three_providers(sim),
        write_prompts(tmp_path / "p.jsonl", 20),
        annotation={"template": "default", "layout": "pairwise"},
    )
    positions = _run(config)["positions"]
    assert set(positions) == set(SOURCES)
    for source in SOURCES:
        total = sum(entry["count"] for entry in positions[source].values())
        assert total == 40  # 20 prompts, each source in 2 of the 3 pairs
        assert abs(positions[source]["Response A"]["share"] - 0.5) <= 0.05


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_samples_per_provider_get_unique_traceable_ids(sim: RunningSimulator, tmp_path: Path) -> None:
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 3), samples_per_provider=2)
    summary = _run(config)
    assert summary["providers"]["gpt-4o"]["requested"] == 6 and summary["providers"]["gpt-4o"]["called_this_run"] == 6
    for task in _tasks(summary):
        ids = sorted(a["source_id"] for a in _answers(task))
        assert ids == ["claude#1", "claude#2", "gpt-4o#1", "gpt-4o#2"]
        meta = task["metadata"]["responses"]["gpt-4o#2"]
        assert meta["provider"] == "gpt-4o" and meta["sample"] == 2
        assert_scale_compatible(task)
    requests = sim.stats()["requests_total"]
    again = _run(config)
    assert sim.stats()["requests_total"] == requests and again["providers"]["claude"]["reused_from_store"] == 6


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_inline_template_extending_a_shipped_one(sim: RunningSimulator, tmp_path: Path) -> None:
    inline = {
        "name": "short",
        "extends": "pref_ranking",
        "rewrite": True,
        "dimensions": [{"key": "clarity", "title": "Clarity", "type": "integer", "values": [1, 2, 3]}],
    }
    config = write_config(
        tmp_path, three_providers(sim), write_prompts(tmp_path / "p.jsonl", 2), annotation={"template": inline}
    )
    task = _tasks(_run(config))[0]
    assert [a["key"] for a in _answers(task)[0]["annotations"]] == ["clarity", "rewrite"]
    assert "selected_model_id" in [a["key"] for a in task["threads"][0]["turns"][-1]["annotations"]]


def test_template_errors_name_the_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndimensions:\n  - key: helpful\n    title: Helpful\n    type: integer\n")
    with pytest.raises(InputError) as caught:
        resolve_template(str(bad))
    assert str(caught.value) == f"{bad}:3: dimensions[0]: an integer dimension needs 'values'"


def test_inline_template_errors_point_into_the_run_config(tmp_path: Path, fake_keys: dict[str, str]) -> None:
    from flows.config import load_config

    config = write_config(
        tmp_path,
        [{"source_id": "a", "kind": "openai", "model": "m"}],
        tmp_path / "p.jsonl",
        annotation={"template": {"name": "x", "dimensions": [{"key": "Bad Key", "title": "t", "type": "text"}]}},
    )
    line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if "Bad Key" in text)
    with pytest.raises(InputError) as caught:
        load_config(config)
    assert (
        str(caught.value)
        == f"{config}:{line}: annotation.template.dimensions[0].key: String should match pattern '^[a-z][a-z0-9_]*$'"
    )


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_examples_pairwise_runs_on_the_simulator(
    sim: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SIM_URL", sim.url)
    monkeypatch.setenv("SIM_OPENAI_KEY", "x")
    monkeypatch.setenv("SIM_ANTHROPIC_KEY", "x")
    # Paths in a config are relative to its file: the copy in tmp_path names the prompts by absolute path.
    text = (
        (ROOT / "examples" / "pairwise.yaml")
        .read_text()
        .replace("output: {dir: ../out}", f"output: {{dir: {tmp_path}}}")
    )
    text = text.replace("path: ../prompts/", f"path: {ROOT}/prompts/")
    assert str(tmp_path) in text and str(ROOT) in text
    config = tmp_path / "pairwise.yaml"
    config.write_text(text)
    summary = _run(config)
    assert summary["prompts"] == 50 and summary["tasks_written"] == 150 and summary["layout"] == "pairwise"


@pytest.mark.slow
@pytest.mark.parametrize("what", ["task", "config", "template"])
def test_schema_command_prints_json_schema(what: str) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("rlhf")), "schema", what], capture_output=True, text=True
    )
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["type"] == "object" and schema["properties"]
