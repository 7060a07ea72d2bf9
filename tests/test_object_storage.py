"""Runs with their config, prompts and outputs in object storage (a real S3-compatible server, moto's) and
their answers in a real PostgreSQL: nothing of the run needs a path the machine shares with another."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import provider_entry, write_prompts
from pg_server import PASSWORD, PASSWORD_ENV
from typer.testing import CliRunner

from common.storage import exists, join, listdir, read_bytes, upload_file
from flows.cli.app import app
from flows.generation.generate import generate_tasks
from simulator import RunningSimulator

pytestmark = [pytest.mark.usefixtures("prefect_api", "fake_keys"), pytest.mark.slow]


def _config(sim: RunningSimulator, bucket: str, store: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "project": "test-project",
        "batch": "b1",
        "prompts": {"path": join(bucket, "in", "prompts.jsonl")},
        "providers": [
            provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
            provider_entry(sim, "claude", "anthropic", "claude-3"),
        ],
        "annotation": {"template": "default", "seed": 3},
        "output": {"dir": join(bucket, "out"), "store": store, "store_password_env": PASSWORD_ENV},
    }
    config.update(extra)
    return config


def _upload_config(tmp_path: Path, bucket: str, config: dict[str, Any]) -> str:
    local = tmp_path / "run.yaml"
    local.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    url = join(bucket, "configs", "run.yaml")
    upload_file(local, url)
    return url


def _upload_prompts(tmp_path: Path, bucket: str, count: int) -> None:
    upload_file(write_prompts(tmp_path / "prompts.jsonl", count), join(bucket, "in", "prompts.jsonl"))


def test_a_run_reads_its_config_and_prompts_from_s3_and_writes_its_outputs_there(
    sim: RunningSimulator,
    tmp_path: Path,
    s3_bucket: str,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    workdir = tmp_path / "empty"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # nothing of the run is here
    _upload_prompts(tmp_path, s3_bucket, 5)
    config_url = _upload_config(tmp_path, s3_bucket, _config(sim, s3_bucket, postgres_url))

    summary = asyncio.run(generate_tasks(config_url))
    run_url = join(s3_bucket, "out", "b1")
    assert summary["tasks_written"] == 5 and summary["files"]["tasks"] == join(run_url, "tasks.jsonl")
    assert {"tasks.jsonl", "incomplete.jsonl", "filtered.jsonl", "summary.json", "run.json"} <= set(listdir(run_url))
    tasks = [json.loads(line) for line in read_bytes(join(run_url, "tasks.jsonl")).splitlines()]
    assert [t["metadata"]["prompt_id"] for t in tasks] == [f"p-{i:03d}" for i in range(5)]
    assert json.loads(read_bytes(join(run_url, "run.json")))["config"] == config_url
    assert list(workdir.iterdir()) == []

    status = CliRunner().invoke(app, ["status", run_url, "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["providers"]["claude"]["answered"] == 5

    requests = sim.stats()["requests_total"]
    again = asyncio.run(generate_tasks(config_url))  # every answer is in the database: nothing is asked again
    assert sim.stats()["requests_total"] == requests and again["tasks_written"] == 5


def test_what_object_storage_requires_is_checked_before_anything_is_called(
    sim: RunningSimulator, tmp_path: Path, s3_bucket: str
) -> None:
    config = _config(sim, s3_bucket, store=None)  # type: ignore[arg-type]
    config["output"].pop("store")
    config["prompts"]["path"] = "prompts.jsonl"
    config_url = _upload_config(tmp_path, s3_bucket, config)
    result = CliRunner().invoke(app, ["validate", config_url])
    assert result.exit_code == 2
    assert "the response store must be a PostgreSQL database" in result.output
    assert "'prompts.jsonl' is relative, but this config was read from a URL" in result.output
    missing = CliRunner().invoke(app, ["validate", join(s3_bucket, "configs", "nope.yaml")])
    assert missing.exit_code == 2 and "nope.yaml" in missing.output
    assert sim.stats()["requests_total"] == 0


def test_a_failed_upload_fails_the_run_clearly_and_the_rerun_only_uploads(
    sim: RunningSimulator,
    tmp_path: Path,
    s3_bucket: str,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    _upload_prompts(tmp_path, s3_bucket, 4)
    config_url = _upload_config(tmp_path, s3_bucket, _config(sim, s3_bucket, postgres_url))
    from common import storage
    from flows.generation import outputs

    uploaded: list[str] = []

    def second_upload_fails(local: Path, url: str) -> None:
        if uploaded:
            raise storage.StorageError(f"{url}: the bucket refused the upload")
        storage.upload_file(local, url)
        uploaded.append(url)

    monkeypatch.setattr(outputs, "upload_file", second_upload_fails)
    with pytest.raises(storage.StorageError, match="refused the upload"):
        asyncio.run(generate_tasks(config_url))
    run_url = join(s3_bucket, "out", "b1")
    assert not exists(join(run_url, "summary.json"))  # uploaded last: a run directory without it is not complete
    monkeypatch.setattr(outputs, "upload_file", storage.upload_file)
    requests = sim.stats()["requests_total"]
    summary = asyncio.run(generate_tasks(config_url))  # the answers were stored: the rerun only uploads
    assert summary["tasks_written"] == 4 and sim.stats()["requests_total"] == requests
    assert exists(join(run_url, "summary.json")) and exists(join(run_url, "tasks.jsonl"))
