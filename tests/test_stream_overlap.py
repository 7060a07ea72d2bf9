"""``delivery: {annotators_per_task: k}`` (issue 31): a run delivering as it goes sets Label Studio's overlap
on its projects, as ``rlhf deliver --annotators-per-task`` does; gold in ``delivery:`` is refused (mixed
chunk by chunk, the rate would not hold), naming file, line and field."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import provider_entry, write_config, write_prompts
from pydantic import SecretStr

from common.errors import InputError
from flows.config import load_config
from flows.delivery.stream import complete_command, stream_settings
from flows.generation.generate import generate_tasks
from platforms.label_studio.client import LabelStudioClient
from platforms.label_studio.local_server import LabelStudioServer
from simulator import RunningSimulator


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_streamed_delivery_sets_the_overlap_on_its_projects(
    label_studio: LabelStudioServer, sim: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.configure(mode="auto")
    monkeypatch.setenv("LS_OVERLAP_TOKEN", label_studio.token)
    title = f"overlap streamed {tmp_path.name}"
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    config = write_config(
        tmp_path,
        providers,
        write_prompts(tmp_path / "p.jsonl", 3),
        chunk_size=2,
        delivery={
            "url": label_studio.url,
            "token_env": "LS_OVERLAP_TOKEN",
            "project_title": title,
            "annotators_per_task": 3,
        },
    )
    summary = asyncio.run(generate_tasks(str(config)))
    assert summary["delivery"]["imported"] == 3 and summary["delivery"]["chunks_delivered"] == 2
    assert summary["delivery"]["annotators_per_task"] == 3
    with LabelStudioClient(label_studio.url, SecretStr(label_studio.token)) as client:
        project = client.find_project(title)
        assert project is not None
        settings = client.request("GET", f"/api/projects/{project['id']}")
    assert settings["maximum_annotations"] == 3 and settings["overlap_cohort_percentage"] == 100


def test_overlap_carries_into_the_settings_and_the_completing_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("LABEL_STUDIO_TOKEN", "t")
    entry = {"source_id": "a", "kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
    prompts = write_prompts(tmp_path / "p.jsonl", 1)
    plain = load_config(write_config(tmp_path, [entry], prompts)).config_hash()
    config = load_config(
        write_config(tmp_path, [entry], prompts, delivery={"url": "http://ls:8080", "annotators_per_task": 2})
    )
    settings = stream_settings(config)
    assert settings is not None and settings.annotators_per_task == 2
    assert complete_command(tmp_path, settings).endswith("--annotators-per-task 2")
    assert config.config_hash() == plain  # who annotates changes nothing the run produces


@pytest.mark.parametrize(
    ("block", "field", "words"),
    [
        ({"gold": "gold.jsonl"}, "delivery.gold", "gold tasks are not mixed into a delivery as it goes"),
        ({"gold_rate": 0.1}, "delivery.gold_rate", "rlhf deliver RUN_DIR --gold FILE --gold-rate R"),
        ({"annotators_per_task": 0}, "delivery.annotators_per_task", "greater than or equal to 1"),
    ],
)
def test_gold_in_the_delivery_block_is_refused_naming_file_line_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: dict[str, object], field: str, words: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("LABEL_STUDIO_TOKEN", "t")
    entry = {"source_id": "a", "kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
    config = write_config(
        tmp_path, [entry], write_prompts(tmp_path / "p.jsonl", 1), delivery={"url": "http://ls:8080", **block}
    )
    key = field.split(".")[-1]
    line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if text.strip().startswith(f"{key}:"))
    with pytest.raises(InputError) as raised:
        load_config(config)
    assert str(raised.value).startswith(f"{config}:{line}: {field}: ") and words in str(raised.value)
