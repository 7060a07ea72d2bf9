"""A sharded batch on two workers that share no path: each worker started in an empty directory of its own,
the config and prompts read from S3 (moto's real server), the answers in PostgreSQL, the outputs written to
S3 and merged there by the parent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import provider_entry, write_prompts
from pg_server import PASSWORD, PASSWORD_ENV
from prefect_stack import running_stack

from common.storage import join, listdir, read_bytes, upload_file
from providers.pg_store import PgResponseStore
from simulator import RunningSimulator

pytestmark = pytest.mark.slow


def _batch_in_the_bucket(tmp_path: Path, bucket: str, store: str, providers: list[dict[str, Any]], count: int) -> str:
    """Prompts and a run config in the bucket (outputs there too, answers in ``store``); the config's URL."""
    upload_file(write_prompts(tmp_path / "prompts.jsonl", count), join(bucket, "in", "prompts.jsonl"))
    config = {
        "project": "test-project",
        "batch": "b1",
        "prompts": {"path": join(bucket, "in", "prompts.jsonl")},
        "providers": providers,
        "annotation": {"template": "default", "seed": 3},
        "output": {"dir": join(bucket, "out"), "store": store, "store_password_env": PASSWORD_ENV},
        "chunk_size": 4,
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    upload_file(tmp_path / "run.yaml", join(bucket, "configs", "run.yaml"))
    return join(bucket, "configs", "run.yaml")


def _empty_dirs(tmp_path: Path) -> dict[str, Path]:
    """An empty working directory for each worker and for the parent flow."""
    dirs = {name: tmp_path / name for name in ("w1", "w2", "parent")}
    for directory in dirs.values():
        directory.mkdir()
    return dirs


def _sharded_parent(shards: int) -> str:
    """The parent flow as a script (its argument: the config URL), run on the rlhf-shard-anywhere deployment."""
    return (
        "import asyncio, json, sys\n"
        "from flows.sharding.shard import generate_sharded\n"
        f"s = asyncio.run(generate_sharded(sys.argv[1], shards={shards}, shards_in_flight={shards},"
        " shard_deployment='generate_tasks/rlhf-shard-anywhere', poll_interval_s=1, shard_retries=1))\n"
        "print(json.dumps(s))\n"
    )


def test_a_sharded_batch_runs_on_workers_in_empty_directories(
    sim: RunningSimulator,
    tmp_path: Path,
    fake_keys: dict[str, str],
    s3_bucket: str,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    count, shards = 12, 2
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o", requests_per_minute=60000),
        provider_entry(sim, "claude", "anthropic", "claude-sonnet-4-5", requests_per_minute=60000),
    ]
    config_url = _batch_in_the_bucket(tmp_path, s3_bucket, postgres_url, providers, count)
    dirs = _empty_dirs(tmp_path)

    with running_stack(worker_dirs=dirs) as stack:
        script = _sharded_parent(shards)
        result = subprocess.run(
            [sys.executable, "-c", script, config_url],
            env=stack["env"],
            cwd=dirs["parent"],
            capture_output=True,
            text=True,
            timeout=240,
        )
        worker_logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in stack["logs"].glob("w*.log"))
        assert result.returncode == 0, result.stderr[-4000:] + worker_logs
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        runs = httpx.post(
            f"{stack['api']}/flow_runs/filter",
            json={"flows": {"name": {"any_": ["generate_tasks"]}}},
            trust_env=False,
        ).json()

    assert summary["tasks_written"] == count and summary["files"]["tasks"] == join(
        s3_bucket, "out", "b1", "tasks.jsonl"
    )
    assert sorted(run["parameters"]["shard_index"] for run in runs) == list(range(shards))
    assert all(run["state_type"] == "COMPLETED" for run in runs)
    assert {run["labels"]["prefect.worker.name"] for run in runs} == {"w1", "w2"}
    # the merged tasks in the bucket, in batch order; each shard's files beside them
    tasks = [json.loads(line) for line in read_bytes(join(s3_bucket, "out", "b1", "tasks.jsonl")).splitlines()]
    assert [t["metadata"]["prompt_id"] for t in tasks] == [f"p-{i:03d}" for i in range(count)]
    assert set(listdir(join(s3_bucket, "out", "b1", "shards"))) == {"0", "1"}
    # every answer in the one database; no store, task file or anything else left in the workers' directories
    with PgResponseStore(postgres_url, read_only=True, password_env=PASSWORD_ENV) as store:
        assert store.execute("SELECT count(*) FROM responses WHERE ok = 1")[0][0] == 2 * count
    assert all(list(directory.iterdir()) == [] for directory in dirs.values())
    assert sim.stats()["requests_total"] == 2 * count


def test_a_shard_whose_process_is_killed_runs_again_and_pays_for_nothing_stored(
    sim: RunningSimulator,
    tmp_path: Path,
    fake_keys: dict[str, str],
    s3_bucket: str,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    sim.configure(latency_ms=150)
    count, in_flight = 24, 2
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o", max_concurrency=in_flight),
        provider_entry(sim, "claude", "anthropic", "claude-sonnet-4-5", max_concurrency=in_flight),
    ]
    config_url = _batch_in_the_bucket(tmp_path, s3_bucket, postgres_url, providers, count)
    dirs = _empty_dirs(tmp_path)

    with running_stack(worker_dirs=dirs) as stack:
        script = _sharded_parent(1)
        parent = subprocess.Popen(
            [sys.executable, "-c", script, config_url],
            env=stack["env"],
            cwd=dirs["parent"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            killed = _kill_a_shard_once_it_has_stored_answers(stack["workers"], postgres_url, parent)
            out, err = parent.communicate(timeout=240)
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.wait()
        assert parent.returncode == 0, err[-4000:]
        summary = json.loads(out.strip().splitlines()[-1])
        runs = httpx.post(
            f"{stack['api']}/flow_runs/filter",
            json={"flows": {"name": {"any_": ["generate_tasks"]}}, "sort": "EXPECTED_START_TIME_ASC"},
            trust_env=False,
        ).json()

    assert killed >= 2  # answers stored before the kill
    assert summary["tasks_written"] == count and summary["shards"][0]["state"] == "COMPLETED"
    assert [run["state_type"] for run in runs] == ["CRASHED", "COMPLETED"]  # the shard ran again
    with PgResponseStore(postgres_url, read_only=True, password_env=PASSWORD_ENV) as store:
        assert store.execute("SELECT count(*) FROM responses WHERE ok = 1")[0][0] == 2 * count
    # nothing stored was asked for again: at most the calls in flight at the kill were made twice
    assert 2 * count <= sim.stats()["requests_total"] <= 2 * count + 2 * in_flight


def _kill_a_shard_once_it_has_stored_answers(
    workers: list[subprocess.Popen[bytes]], url: str, parent: subprocess.Popen[str]
) -> int:
    """SIGKILL the flow-run process (``python -m prefect.engine``) of the first shard once it stored answers."""
    import os
    import signal
    import time

    from conftest import child_processes

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert parent.poll() is None, parent.stderr.read() if parent.stderr else ""
        stored = _stored_answers(url)
        engines = [pid for worker in workers for pid in child_processes(worker.pid, b"prefect.engine")]
        if stored >= 2 and engines:
            for pid in engines:
                os.kill(pid, signal.SIGKILL)
            return int(stored)
        time.sleep(0.2)
    raise AssertionError("the shard never stored an answer")


def _stored_answers(url: str) -> int:
    """Answers in the store so far (0 before the first run has created it)."""
    from providers.store import StoreUnreadable

    try:
        with PgResponseStore(url, read_only=True, password_env=PASSWORD_ENV) as store:
            return int(store.execute("SELECT count(*) FROM responses WHERE ok = 1")[0][0])
    except StoreUnreadable:
        return 0
