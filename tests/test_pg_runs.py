"""Runs whose response store is a real PostgreSQL (``output.store: postgresql://…``): answers committed
there, `rlhf status` reading it, shards of a batch sharing it with no store of their own and no merge."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import provider_entry, write_config, write_prompts
from pg_server import PASSWORD, PASSWORD_ENV
from typer.testing import CliRunner

from flows.cli.app import app
from flows.generation.generate import generate_tasks
from providers.pg_store import PgResponseStore
from simulator import RunningSimulator

pytestmark = [pytest.mark.usefixtures("prefect_api", "fake_keys"), pytest.mark.slow]


def _providers(sim: RunningSimulator) -> list[dict[str, Any]]:
    return [provider_entry(sim, "gpt-4o", "openai", "gpt-4o"), provider_entry(sim, "claude", "anthropic", "claude-3")]


def _config(tmp_path: Path, sim: RunningSimulator, url: str, prompts: int = 6) -> Path:
    return write_config(
        tmp_path,
        _providers(sim),
        write_prompts(tmp_path / "prompts.jsonl", prompts),
        output={"dir": str(tmp_path / "out"), "store": url, "store_password_env": PASSWORD_ENV},
    )


def _run(config: Path, **kwargs: Any) -> dict[str, Any]:
    return asyncio.run(generate_tasks(str(config), **kwargs))


def test_a_run_stores_its_answers_in_postgres_and_a_rerun_calls_nobody(
    sim: RunningSimulator, tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    config = _config(tmp_path, sim, postgres_url)
    summary = _run(config)
    assert summary["tasks_written"] == 6 and summary["files"]["store"] == postgres_url
    assert not list((tmp_path / "out").rglob("*.sqlite"))  # no local store
    with PgResponseStore(postgres_url, read_only=True, password_env=PASSWORD_ENV) as store:
        rows = store.execute("SELECT count(*) FROM responses WHERE ok = 1")
    assert rows[0][0] == 12

    status = CliRunner().invoke(app, ["status", str(tmp_path / "out" / "b1"), "--json"])
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert report["store"] == postgres_url and report["providers"]["gpt-4o"]["answered"] == 6

    requests = sim.stats()["requests_total"]
    again = _run(config)
    assert sim.stats()["requests_total"] == requests and again["providers"]["claude"]["reused_from_store"] == 6
    assert PASSWORD not in json.dumps(again) + (tmp_path / "out" / "b1" / "run.json").read_text()


def test_shards_share_the_database_store_with_no_store_of_their_own(
    sim: RunningSimulator, tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    config = _config(tmp_path, sim, postgres_url, prompts=8)
    for index in range(2):  # what two workers run; each writes into the one database
        part = _run(config, shard_index=index, shard_count=2)
        assert part["tasks_written"] == 4 and part["files"]["store"] == postgres_url
    assert not list((tmp_path / "out").rglob("*.sqlite"))
    requests = sim.stats()["requests_total"]
    whole = _run(config)  # the unsharded batch finds every answer the shards stored
    assert whole["tasks_written"] == 8 and sim.stats()["requests_total"] == requests


def test_a_password_in_the_store_url_is_refused_before_anything_is_called(
    sim: RunningSimulator, tmp_path: Path, postgres_url: str
) -> None:
    with_password = postgres_url.replace("postgresql://rlhf_test@", f"postgresql://rlhf_test:{PASSWORD}@")
    assert with_password != postgres_url
    config = _config(tmp_path, sim, with_password)
    result = CliRunner().invoke(app, ["run", str(config), "-q"], env={**os.environ, PASSWORD_ENV: ""})
    assert result.exit_code == 2 and PASSWORD not in result.output
    assert sim.stats()["requests_total"] == 0
