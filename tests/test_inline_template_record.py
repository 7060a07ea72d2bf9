"""An inline ``annotation.template`` that ``extends`` another survives the run's record (``run.json``): the
commands that read the recorded config (``rlhf deliver``) see every dimension of its base. The cause was
the dump: every default (``dimensions: []``) was written and, validated again, counted as given."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from conftest import provider_entry, write_config, write_prompts
from pydantic import SecretStr

from flows.config import RunConfig, config_from_record
from flows.delivery.deliver import deliver_label_studio, load_run
from flows.generation.generate import generate_tasks
from platforms.label_studio.client import LabelStudioClient
from platforms.label_studio.local_server import LabelStudioServer
from simulator import RunningSimulator
from task_builder.template import AnnotationTemplate, resolve_template

INLINE = {"name": "short", "extends": "pref_ranking", "rewrite": True}
BASE_KEYS = [d.key for d in resolve_template("pref_ranking").dimensions]
CONFIG = {
    "project": "p",
    "batch": "b1",
    "prompts": {"path": "prompts.jsonl"},
    "providers": [{"source_id": "a", "kind": "openai", "model": "m"}],
    "annotation": {"template": INLINE},
}


def test_an_extending_template_keeps_its_base_through_dump_and_validate() -> None:
    template = AnnotationTemplate.model_validate(INLINE)
    again = AnnotationTemplate.model_validate(template.model_dump(mode="json"))
    assert [d.key for d in resolve_template(again).dimensions] == BASE_KEYS and len(BASE_KEYS) == 7
    assert resolve_template(again).rewrite is True
    # Keys it was given still replace the base's, also after the round trip.
    given = AnnotationTemplate.model_validate(
        {**INLINE, "dimensions": [{"key": "clarity", "title": "C", "values": [1, 2]}]}
    )
    assert [d.key for d in resolve_template(AnnotationTemplate.model_validate(given.model_dump())).dimensions] == [
        "clarity"
    ]


def test_the_recorded_config_resolves_every_dimension_and_keeps_the_hash() -> None:
    config = RunConfig.model_validate(CONFIG)
    read_back = config_from_record(config.recorded())
    assert read_back is not None
    assert isinstance(read_back.annotation.template, AnnotationTemplate)
    assert [d.key for d in resolve_template(read_back.annotation.template).dimensions] == BASE_KEYS
    # The hash the code of commit 2190d35 gave this config (its run id): unchanged, also when read back.
    assert config.config_hash() == read_back.config_hash() == "17bc998a71e2deaa"


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_a_run_with_an_inline_extending_template_delivers_a_form_with_every_dimension(
    label_studio: LabelStudioServer, sim: RunningSimulator, tmp_path: Path
) -> None:
    sim.configure(mode="auto")
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 2), annotation={"template": INLINE})
    summary = asyncio.run(generate_tasks(str(config)))
    run_dir = Path(summary["files"]["tasks"]).parent
    assert [d.key for d in load_run(run_dir)[1].dimensions] == BASE_KEYS
    title = f"inline extends {tmp_path.name}"
    report = deliver_label_studio(run_dir, label_studio.url, SecretStr(label_studio.token), title)
    assert report["imported"] == 2
    with LabelStudioClient(label_studio.url, SecretStr(label_studio.token)) as client:
        project = client.find_project(title)
        assert project is not None
        names = set(re.findall(r'name="([^"]+)"', project["label_config"]))
    for key in BASE_KEYS:
        assert {f"a__{key}", f"b__{key}"} <= names, (key, sorted(names))
