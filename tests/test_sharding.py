"""Sharded generation: shard selection and merge in-process, then the real thing on a work pool.

The acceptance test starts its own ``prefect server start`` (own PREFECT_HOME), a process work pool,
two ``prefect worker start`` subprocesses, deploys ``prefect.yaml`` and runs a sharded batch against the
provider simulator in its own process.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, provider_entry, write_config, write_prompts
from prefect_stack import running_stack

from simulator import FaultRule, RunningSimulator, start_simulator_process
from task_builder.ids import task_id_for


def _task_ids(path: Path) -> list[str]:
    return [json.loads(line)["task_id"] for line in path.read_text().splitlines()]


def _providers(sim: Any, **extra: Any) -> list[dict[str, Any]]:
    return [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o", **extra),
        provider_entry(sim, "claude", "anthropic", "claude-sonnet-4-5", **extra),
    ]


# ------------------------------------------------------------------------------- in-process, fast


@pytest.mark.slow
def test_shards_merge_to_the_unsharded_batch(
    sim: RunningSimulator, tmp_path: Path, fake_keys: dict[str, str], prefect_api: str
) -> None:
    """Shards run in-process (no workers), merged: same task ids in the same order, summed counts."""
    from flows.generation.generate import generate_tasks
    from flows.generation.prepare import prepare_run
    from flows.sharding.shard import merge_batch, seed_shards

    prompts = write_prompts(tmp_path / "p.jsonl", 23)
    config_path = write_config(tmp_path, _providers(sim, requests_per_minute=6000), prompts, chunk_size=4)
    config = prepare_run(config_path).config
    seed_shards(config, 3)
    parts = [
        asyncio.run(
            generate_tasks(str(config_path), shard_index=k, shard_count=3, rate_shares={"gpt-4o": 0.5, "claude": 0.5})
        )
        for k in range(3)
    ]
    assert [p["prompts"] for p in parts] == [8, 8, 7]
    shard0 = [
        json.loads(line)["metadata"]["prompt_id"]
        for line in (config.batch_dir / "shards/0/tasks.jsonl").read_text().splitlines()
    ]
    assert shard0 == [f"p-{i:03d}" for i in range(0, 23, 3)]
    info = [{"index": k, "state": "COMPLETED"} for k in range(3)]
    merged = merge_batch(config, str(config_path), 3, info, "2026-01-01T00:00:00Z")
    assert merged["prompts"] == merged["tasks_written"] == merged["prompts_tasked"] == 23
    assert merged["providers"]["gpt-4o"]["answered"] == merged["providers"]["gpt-4o"]["called_this_run"] == 23
    assert merged["providers"]["claude"]["latency_ms_p50"] is not None
    assert sum(c["count"] for c in merged["positions"]["gpt-4o"].values()) == 23
    sharded_tasks = [json.loads(line) for line in (config.batch_dir / "tasks.jsonl").read_text().splitlines()]
    assert [t["task_id"] for t in sharded_tasks] == [task_id_for("b1", f"p-{i:03d}") for i in range(23)]
    assert len({t["created_at"] for t in sharded_tasks}) == 1  # seeded from the batch store

    # An unsharded rerun of the batch finds every answer in the merged store, calls nobody, and writes
    # the same task ids with the same run id and config hash.
    calls_before = sim.stats()["requests_total"]
    unsharded = asyncio.run(generate_tasks(str(config_path)))
    assert sim.stats()["requests_total"] == calls_before == 46
    assert unsharded["providers"]["gpt-4o"]["reused_from_store"] == 23
    assert (unsharded["run_id"], unsharded["config_hash"]) == (merged["run_id"], merged["config_hash"])
    assert _task_ids(config.batch_dir / "tasks.jsonl") == [t["task_id"] for t in sharded_tasks]


def _stored(store: Path) -> set[tuple[str, str, int]]:
    """``(fingerprint, source_id, ok)`` of every result in a response store."""
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return set(db.execute("SELECT fingerprint, source_id, ok FROM responses"))
    finally:
        db.close()


@pytest.mark.slow
def test_a_failed_shard_fails_the_merge_and_keeps_every_paid_answer(
    sim: RunningSimulator, tmp_path: Path, fake_keys: dict[str, str], prefect_api: str
) -> None:
    """Shard 2 pays for answers, then fails (its task file cannot be written). The merge names it,
    writes no batch task files or summary (nothing claims the batch is complete), and still copies
    every answer shard 2 paid for into the batch store; once fixed, shard 2 resumes without paying twice."""
    from flows.generation.generate import generate_tasks
    from flows.generation.prepare import prepare_run
    from flows.sharding.shard import merge_batch, seed_shards

    prompts = write_prompts(tmp_path / "p.jsonl", 23)
    config_path = write_config(tmp_path, _providers(sim), prompts, chunk_size=4)
    config = prepare_run(config_path).config
    seed_shards(config, 3)
    obstacle = config.batch_dir / "shards" / "2" / "filtered.jsonl.partial"
    obstacle.mkdir(parents=True)  # shard 2's task writer cannot open its third output

    def run_shard(index: int) -> dict[str, Any]:
        state = asyncio.run(generate_tasks(str(config_path), shard_index=index, shard_count=3, return_state=True))
        return {"index": index, "flow_run_name": f"b1-shard-{index}-of-3", "state": state.type.value}

    info = [run_shard(k) for k in range(3)]
    assert [s["state"] for s in info] == ["COMPLETED", "COMPLETED", "FAILED"]
    paid = sim.stats()["requests_total"]
    shard2 = _stored(config.batch_dir / "shards" / "2" / "responses.sqlite")
    assert shard2 and all(ok for _, _, ok in shard2)  # shard 2 did pay for answers before failing

    with pytest.raises(RuntimeError, match=r"shard\(s\) did not complete: 2 \(b1-shard-2-of-3: FAILED\)") as failure:
        merge_batch(config, str(config_path), 3, info, "2026-01-01T00:00:00Z")
    assert "their answers so far are kept" in str(failure.value)
    assert not [name for name in ("tasks.jsonl", "summary.json") if (config.batch_dir / name).exists()]
    batch = _stored(config.store_path)
    assert shard2 <= batch and len(batch) == paid  # every answer paid for, in any shard, is in the batch store

    obstacle.rmdir()
    info[2] = run_shard(2)
    assert info[2]["state"] == "COMPLETED"
    assert sim.stats()["requests_total"] == 2 * 23  # shard 2 made only the calls it had not paid for
    merged = merge_batch(config, str(config_path), 3, info, "2026-01-01T00:00:00Z")
    assert merged["prompts"] == merged["tasks_written"] == 23
    assert _task_ids(config.batch_dir / "tasks.jsonl") == [task_id_for("b1", f"p-{i:03d}") for i in range(23)]


@pytest.mark.slow
def test_an_incomplete_shard_is_merged_not_retried_and_the_batch_ends_incomplete(
    sim: RunningSimulator, tmp_path: Path, fake_keys: dict[str, str], prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard that finished with a call failed ends Failed, named Incomplete: the parent does not take it for
    a crash and start it again (the failure would only come back), merges it, and ends Incomplete itself."""
    from types import SimpleNamespace

    from flows.generation.generate import generate_tasks
    from flows.reporting.report import RunIncomplete
    from flows.sharding import shard

    sim.configure(faults=[FaultRule(kind="500", model="claude-sonnet-4-5", prompt_contains="number 1:")])
    config_path = write_config(
        tmp_path, _providers(sim, max_retries=0), write_prompts(tmp_path / "p.jsonl", 6), chunk_size=2
    )
    started: list[str] = []

    async def run_in_process(name: str, parameters: dict[str, Any], flow_run_name: str, **_: Any) -> Any:
        """What run_deployment returns (the shard's flow run), the shard run here as a subflow."""
        started.append(flow_run_name)
        state = await generate_tasks(return_state=True, **parameters)
        return SimpleNamespace(id=state.state_details.flow_run_id, name=flow_run_name, state=state, labels={})

    monkeypatch.setattr(shard, "run_deployment", run_in_process)
    state = asyncio.run(shard.generate_sharded(str(config_path), shards=2, poll_interval_s=0.1, return_state=True))

    assert sorted(started) == ["b1-shard-0-of-2", "b1-shard-1-of-2"]  # no second attempt of shard 1
    assert (state.type.value, state.name) == ("FAILED", "Incomplete")
    assert state.message.startswith("Incomplete: 11/12 call(s) answered (claude: 1 failed (http_500 ×1))")
    incomplete = state.result(raise_on_failure=False)
    assert isinstance(incomplete, RunIncomplete) and incomplete.summary is not None
    summary = incomplete.summary
    assert [(s["state"], s["state_name"]) for s in summary["shards"]] == [
        ("COMPLETED", "Completed"),
        ("FAILED", "Incomplete"),
    ]
    assert (summary["prompts"], summary["tasks_written"], summary["incomplete"]) == (6, 5, 1)
    assert json.loads((tmp_path / "out" / "b1" / "summary.json").read_text())["incomplete"] == 1


def test_rate_shares_scale_the_provider_quota(tmp_path: Path, fake_keys: dict[str, str]) -> None:
    from flows.generation.prepare import prepare_run
    from flows.sharding.shard import for_shard, prompts_of

    sim_like = type("S", (), {"openai_base_url": "http://127.0.0.1:9/v1", "anthropic_base_url": "http://127.0.0.1:9"})()
    config_path = write_config(
        tmp_path,
        _providers(sim_like, requests_per_minute=600, tokens_per_minute=90000, burst=9),
        write_prompts(tmp_path / "p.jsonl", 5),
    )
    prepared = prepare_run(config_path)
    shard = for_shard(prepared, 1, 2, {"gpt-4o": 0.25})
    gpt, claude = shard.config.providers
    assert (gpt.requests_per_minute, gpt.tokens_per_minute, gpt.burst) == (150, 22500, 2)
    assert claude.requests_per_minute == 600
    assert shard.config.config_hash() != prepared.config.config_hash()  # the flow hashes the config as written
    assert shard.config.run_dir == prepared.config.run_dir / "shards" / "1"
    assert shard.config.store_path == shard.config.run_dir / "responses.sqlite"
    assert [r.id for r in prompts_of(shard.config)] == ["p-001", "p-003"] and shard.prompt_count == 2
    with pytest.raises(ValueError):
        for_shard(prepared, 2, 2)


# ------------------------------------------------------------------------------- two workers, real server


@pytest.fixture
def prefect_stack(tmp_path: Path, fake_keys: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Own Prefect server, a process work pool, prefect.yaml deployed, two workers (w1, w2) in the repository."""
    with running_stack() as stack:
        yield stack


@pytest.mark.slow
def test_sharded_batch_on_two_workers(prefect_stack: dict[str, Any], tmp_path: Path) -> None:
    api, env = prefect_stack["api"], prefect_stack["env"]
    shards, in_flight, max_concurrency, count = 3, 2, 4, 150
    with start_simulator_process(mode="derived", latency_ms=50) as sim:
        config_path = write_config(
            tmp_path,
            _providers(sim, max_concurrency=max_concurrency, requests_per_minute=60000),
            write_prompts(tmp_path / "p.jsonl", count),
            chunk_size=20,
        )
        # The parent runs as its own process (a flow run against the test's server); its shards are
        # deployment runs of generate_tasks/rlhf-shard picked up by the two workers.
        script = (
            "import asyncio, json, sys\n"
            "from flows.sharding.shard import generate_sharded\n"
            f"s = asyncio.run(generate_sharded(sys.argv[1], shards={shards}, shards_in_flight={in_flight}, poll_interval_s=1))\n"
            "print(json.dumps(s))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, str(config_path)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=150,
        )
        worker_logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in prefect_stack["logs"].glob("w*.log"))
        assert result.returncode == 0, result.stderr[-4000:] + worker_logs
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        stats = sim.stats()

    # Every shard ran, on both workers (the worker's name is a label it gives the flow run).
    runs = httpx.post(
        f"{api}/flow_runs/filter", json={"flows": {"name": {"any_": ["generate_tasks"]}}}, trust_env=False
    ).json()
    assert len(runs) == shards
    assert all(run["state_type"] == "COMPLETED" for run in runs)
    assert sorted(run["parameters"]["shard_index"] for run in runs) == list(range(shards))
    assert {run["labels"]["prefect.worker.name"] for run in runs} == {"w1", "w2"}
    assert {s["worker"] for s in summary["shards"]} == {"w1", "w2"}
    # Each shard got its share of the provider quota: 1 / the limit's size.
    assert all(run["parameters"]["rate_shares"] == {"gpt-4o": 0.5, "claude": 0.5} for run in runs)
    limit = httpx.get(f"{api}/v2/concurrency_limits/rlhf-provider-gpt-4o", trust_env=False).json()
    assert limit["limit"] == in_flight and limit["active_slots"] == 0

    # All tasks present exactly once, in batch order; counts summed.
    run_dir = tmp_path / "out" / "b1"
    task_ids = _task_ids(run_dir / "tasks.jsonl")
    assert task_ids == [task_id_for("b1", f"p-{i:03d}") for i in range(count)]
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["prompts"] == on_disk["tasks_written"] == count and on_disk["incomplete"] == 0
    for source_id in ("gpt-4o", "claude"):
        assert (
            on_disk["providers"][source_id]["answered"] == on_disk["providers"][source_id]["called_this_run"] == count
        )

    # Each call made once across all workers; never more in flight than the limits allow.
    assert stats["requests_total"] == 2 * count
    for model in ("gpt-4o", "claude-sonnet-4-5"):
        assert stats["by_model"][model]["requests"] == count
        assert stats["by_model"][model]["max_in_flight"] <= max_concurrency * in_flight

    # The parent published the merged run report: the newest artifacts under the batch's keys.
    keys = ["rlhf-test-project-b1-report", "rlhf-test-project-b1-providers"]
    latest = httpx.post(
        f"{api}/artifacts/latest/filter", json={"artifacts": {"key": {"any_": keys}}}, trust_env=False
    ).json()
    by_key = {artifact["key"]: artifact for artifact in latest}
    assert f"tasks written: {count}" in by_key["rlhf-test-project-b1-report"]["data"]
    table = by_key["rlhf-test-project-b1-providers"]["data"]
    rows = json.loads(table) if isinstance(table, str) else table
    assert {row["provider"]: row["answered"] for row in rows} == {"gpt-4o": count, "claude": count}
