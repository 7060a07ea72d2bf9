"""Batch mode end to end: the flow against the simulator's OpenAI Batch and Anthropic Message Batches APIs.

Every test counts at the simulator what was submitted: no request is ever in two batches, whatever
happens to the run in between (kill -9, --no-wait, a batch id never recorded).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import closed_port_url, exits_within, provider_entry, write_config, write_prompts
from typer.testing import CliRunner

from flows.cli.app import app
from flows.generation.generate import generate_tasks
from simulator import FaultRule, RunningSimulator

pytestmark = [pytest.mark.usefixtures("prefect_api", "fake_keys"), pytest.mark.slow]

RLHF = str(Path(sys.executable).with_name("rlhf"))
PRICE = {"input_per_million": 2.0, "output_per_million": 8.0}


def batch_entry(sim: RunningSimulator, source_id: str, kind: str, model: str, **extra: Any) -> dict[str, Any]:
    """A batch-mode provider on the simulator, polling fast."""
    return provider_entry(sim, source_id, kind, model, mode="batch", batch_poll_s=0.1, **extra)


def mixed_providers(sim: RunningSimulator, **batch_extra: Any) -> list[dict[str, Any]]:
    """One online provider and one batch provider of each kind."""
    return [
        provider_entry(sim, "online-gpt", "openai", "gpt-4o"),
        batch_entry(sim, "batch-gpt", "openai", "gpt-4o-mini", **batch_extra),
        batch_entry(sim, "batch-claude", "anthropic", "claude-haiku", **batch_extra),
    ]


def run(config: Path, **kwargs: Any) -> dict[str, Any]:
    """The run's summary; a run with calls missing ends Incomplete and raises it with its summary."""
    from flows.reporting.report import RunIncomplete

    try:
        return asyncio.run(generate_tasks(str(config), **kwargs))
    except RunIncomplete as incomplete:
        assert incomplete.summary is not None
        return incomplete.summary


def read_tasks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    with open(summary["files"]["tasks"], encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def answers_by_source(task: dict[str, Any]) -> dict[str, str]:
    messages = task["threads"][0]["turns"][-1]["messages"]
    return {m["source_id"]: m["content"]["text"] for m in messages if m["role"] == "assistant"}


def batch_stats(sim: RunningSimulator) -> dict[str, Any]:
    return sim.stats()["batches"]


def test_online_and_batch_providers_mix_in_one_run_and_batch_answers_cost_half(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    sim.configure(batch_completion_s=0.4)
    prompts = write_prompts(tmp_path / "prompts.jsonl", 12)
    providers = [dict(p, price=PRICE) for p in mixed_providers(sim)]
    summary = run(write_config(tmp_path, providers, prompts, chunk_size=5))

    assert summary["tasks_written"] == 12 and summary["incomplete"] == 0 and summary["batches_pending"] == []
    for task in read_tasks(summary):
        texts = answers_by_source(task)
        assert set(texts) == {"online-gpt", "batch-gpt", "batch-claude"} and all(texts.values())
    stats = batch_stats(sim)
    assert stats["openai_batches_created"] == 1 and stats["anthropic_batches_created"] == 1
    assert stats["requests_submitted"] == 24 and stats["custom_ids_submitted_more_than_once"] == 0
    by_model = sim.stats()["by_model"]
    assert by_model["gpt-4o"]["requests"] == 12
    assert "gpt-4o-mini" not in by_model and "claude-haiku" not in by_model  # no online call for batch providers
    for source_id in ("batch-gpt", "batch-claude"):
        tally = summary["providers"][source_id]
        assert tally["mode"] == "batch" and tally["answered"] == 12 and tally["called_this_run"] == 12
        online_cost = (tally["input_tokens"] * 2.0 + tally["output_tokens"] * 8.0) / 1e6
        assert tally["cost_usd"] == pytest.approx(online_cost / 2, abs=1e-6)
        assert tally["batch_saving_usd"] == pytest.approx(online_cost / 2, abs=1e-6)
    assert summary["providers"]["online-gpt"]["batch_saving_usd"] is None
    assert summary["batch_saving_usd"] == pytest.approx(
        summary["providers"]["batch-gpt"]["batch_saving_usd"] + summary["providers"]["batch-claude"]["batch_saving_usd"]
    )

    from flows.reporting.report import markdown_report

    assert f"(batch mode saved ${summary['batch_saving_usd']:.4f})" in markdown_report(summary)

    again = run(write_config(tmp_path, providers, prompts, chunk_size=5))  # everything is stored: nothing is sent
    assert batch_stats(sim)["requests_submitted"] == 24 and again["tasks_written"] == 12
    assert again["providers"]["batch-gpt"]["reused_from_store"] == 12


def test_no_wait_returns_with_batches_pending_and_a_later_run_collects_them(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    sim.configure(batch_completion_s=2.0)
    prompts = write_prompts(tmp_path / "prompts.jsonl", 6)
    config = write_config(tmp_path, mixed_providers(sim), prompts)
    state = asyncio.run(generate_tasks(str(config), wait_for_batches=False, return_state=True))
    first = state.result()
    assert state.is_completed() and state.message.startswith("Waiting for batches: 2 provider batch(es)")

    assert len(first["batches_pending"]) == 2 and {b["source_id"] for b in first["batches_pending"]} == {
        "batch-gpt",
        "batch-claude",
    }
    assert all(b["batch_id"] and b["requests"] == 6 for b in first["batches_pending"])
    assert not Path(first["files"]["tasks"]).exists()  # no tasks until every batch is in
    online, batch = first["providers"]["online-gpt"], first["providers"]["batch-gpt"]
    assert (online["answered"], online["pending_in_batches"]) == (6, 0)
    assert (batch["answered"], batch["pending_in_batches"], batch["requested"]) == (0, 6, 6)
    assert sim.stats()["by_model"]["gpt-4o"]["requests"] == 6  # the online provider answered at once

    status = CliRunner().invoke(app, ["status", str(tmp_path / "out" / "b1"), "--json"])
    pending = json.loads(status.stdout)["batches_pending"]
    assert sorted(b["batch_id"] for b in pending) == sorted(b["batch_id"] for b in first["batches_pending"])

    time.sleep(2.2)
    second = run(config, wait_for_batches=False)  # ended by now: collected, and the tasks written
    assert second["batches_pending"] == [] and second["tasks_written"] == 6
    stats = batch_stats(sim)
    assert stats["requests_submitted"] == 12 and stats["custom_ids_submitted_more_than_once"] == 0
    assert sim.stats()["by_model"]["gpt-4o"]["requests"] == 6  # the online answers were reused


def test_errored_requests_are_stored_and_expired_ones_are_submitted_again(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    sim.configure(
        batch_expire_prompt_contains="Question number 4:",
        faults=[FaultRule(kind="400", prompt_contains="Question number 2:")],
    )
    prompts = write_prompts(tmp_path / "prompts.jsonl", 6)
    providers = [
        batch_entry(sim, "batch-gpt", "openai", "gpt-4o-mini"),
        batch_entry(sim, "batch-claude", "anthropic", "claude-haiku"),
    ]
    config = write_config(tmp_path, providers, prompts)
    first = run(config)

    for source_id in ("batch-gpt", "batch-claude"):
        tally = first["providers"][source_id]
        assert tally["answered"] == 4 and tally["failed"] == 2
        assert tally["failure_reasons"] == {"batch_expired": 1, "http_400": 1}
    assert first["incomplete"] == 2 and batch_stats(sim)["requests_submitted"] == 12

    sim.configure(batch_expire_prompt_contains=None)
    second = run(config)  # only the expired request is sent again; the 400 is the prompt's final answer
    assert batch_stats(sim)["requests_submitted"] == 14
    for source_id in ("batch-gpt", "batch-claude"):
        tally = second["providers"][source_id]
        assert tally["answered"] == 5 and tally["failure_reasons"] == {"http_400": 1}
        assert tally["called_this_run"] == 1


def test_a_batch_larger_than_the_limit_is_split(sim: RunningSimulator, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 10)
    providers = [
        batch_entry(sim, "batch-gpt", "openai", "gpt-4o-mini", batch_max_requests=4),
        batch_entry(sim, "batch-claude", "anthropic", "claude-haiku", batch_max_bytes=2048),
    ]
    summary = run(write_config(tmp_path, providers, prompts))

    assert summary["tasks_written"] == 10
    batches = sim.batches()
    assert sorted(b["total"] for b in batches if b["api"] == "openai") == [2, 4, 4]
    anthropic = [b["total"] for b in batches if b["api"] == "anthropic"]
    assert len(anthropic) > 1 and sum(anthropic) == 10
    assert batch_stats(sim)["custom_ids_submitted_more_than_once"] == 0


def _forget_batch_ids(store: Path) -> int:
    """What a kill between submitting a batch and recording its id leaves: the job prepared, no batch id."""
    db = sqlite3.connect(store)
    try:
        with db:
            return db.execute(
                "UPDATE batch_jobs SET state = 'prepared', remote_id = NULL, submitted_at = NULL"
            ).rowcount
    finally:
        db.close()


@pytest.mark.parametrize("kind,model", [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku")])
def test_a_batch_whose_id_was_never_recorded_is_found_not_submitted_again(
    sim: RunningSimulator, tmp_path: Path, kind: str, model: str
) -> None:
    sim.configure(batch_completion_s=1.0)
    prompts = write_prompts(tmp_path / "prompts.jsonl", 5)
    config = write_config(tmp_path, [batch_entry(sim, "batch", kind, model)], prompts)
    first = run(config, wait_for_batches=False)
    assert len(first["batches_pending"]) == 1
    remote_id = first["batches_pending"][0]["batch_id"]
    assert _forget_batch_ids(tmp_path / "out" / "b1" / "responses.sqlite") == 1

    second = run(config)
    assert second["tasks_written"] == 5
    assert [b["id"] for b in sim.batches()] == [remote_id]  # found again, not submitted again
    assert batch_stats(sim)["custom_ids_submitted_more_than_once"] == 0


def test_a_prepared_job_the_provider_never_received_is_submitted(sim: RunningSimulator, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    config = write_config(tmp_path, [batch_entry(sim, "batch", "openai", "gpt-4o-mini")], prompts)
    run(config, wait_for_batches=False)
    sim.reset()  # the provider has no batch of it: as if the run died before the submit reached it
    _forget_batch_ids(tmp_path / "out" / "b1" / "responses.sqlite")
    db = sqlite3.connect(tmp_path / "out" / "b1" / "responses.sqlite")
    with db:
        db.execute("DELETE FROM responses")  # nor any answer
    db.close()

    summary = run(config)
    assert summary["tasks_written"] == 3 and len(sim.batches()) == 1


def test_kill_9_while_batches_are_pending_then_rerun_submits_nothing_twice(
    sim: RunningSimulator, tmp_path: Path, prefect_api: str
) -> None:
    sim.configure(batch_completion_s=4.0)
    prompts = write_prompts(tmp_path / "prompts.jsonl", 8)
    config = write_config(tmp_path, mixed_providers(sim), prompts)
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    logs = (tmp_path / "run.out").open("w"), (tmp_path / "run.err").open("w")
    process = subprocess.Popen([RLHF, "run", str(config), "-q"], stdout=logs[0], stderr=logs[1], env=env)
    try:
        deadline = time.monotonic() + 120
        while len(sim.batches()) < 2:
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "run.err").read_text()
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert exits_within(process.pid)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for handle in logs:
            handle.close()
    submitted = batch_stats(sim)["requests_submitted"]
    assert submitted == 16

    summary = run(config)
    assert summary["tasks_written"] == 8 and summary["incomplete"] == 0
    stats = batch_stats(sim)
    assert stats["requests_submitted"] == 16 and stats["custom_ids_submitted_more_than_once"] == 0
    assert len(sim.batches()) == 2


def test_cancel_batches_cancels_what_is_pending_and_the_next_run_submits_the_rest(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    sim.configure(batch_completion_s=30.0)
    prompts = write_prompts(tmp_path / "prompts.jsonl", 4)
    providers = [batch_entry(sim, "batch-gpt", "openai", "gpt-4o-mini")]
    config = write_config(tmp_path, providers, prompts)
    first = run(config, wait_for_batches=False)
    batch_id = first["batches_pending"][0]["batch_id"]

    cancelled = CliRunner().invoke(app, ["cancel-batches", str(tmp_path / "out" / "b1")])
    assert cancelled.exit_code == 0, cancelled.output
    assert f"cancelled {batch_id} (batch-gpt)" in cancelled.stdout
    assert [b["status"] for b in sim.batches()] == ["cancelled"]

    sim.configure(batch_completion_s=0.0)
    summary = run(config)  # the cancelled requests are collected as not run, then the next run submits them
    assert summary["providers"]["batch-gpt"]["failure_reasons"] == {"batch_cancelled": 4}
    summary = run(config)
    assert summary["tasks_written"] == 4 and batch_stats(sim)["requests_submitted"] == 8


def test_plan_shows_the_batch_price_and_the_saving(sim: RunningSimulator, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 10)
    providers = [
        dict(provider_entry(sim, "online-gpt", "openai", "gpt-4o"), price=PRICE),
        dict(batch_entry(sim, "batch-gpt", "openai", "gpt-4o"), price=PRICE),
    ]
    from flows.reporting.plan import plan_run

    plan = plan_run(write_config(tmp_path, providers, prompts))
    online, batch = plan["providers"]["online-gpt"], plan["providers"]["batch-gpt"]
    assert batch["mode"] == "batch" and batch["cost_usd_range"] == pytest.approx(
        [value / 2 for value in online["cost_usd_range"]], abs=1e-4
    )
    assert plan["batch_saving_usd_range"] == pytest.approx(batch["cost_usd_range"], abs=1e-4)


def test_an_unreachable_batch_api_is_one_clear_error_and_exit_3(
    sim: RunningSimulator, tmp_path: Path, prefect_api: str, fake_keys: dict[str, str]
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    provider = batch_entry(sim, "batch-gpt", "openai", "gpt-4o-mini", base_url=closed_port_url() + "/v1")
    config = write_config(tmp_path, [provider], prompts)
    done = subprocess.run(
        [RLHF, "run", str(config), "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        timeout=300,
    )
    assert done.returncode == 3, done.stderr
    assert "batch-gpt: batch API submit failed" in done.stderr and "nothing is submitted twice" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert fake_keys["openai"] not in done.stderr + done.stdout


def test_an_anthropic_batch_is_told_from_a_look_alike_by_its_results_custom_ids(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    """Two batches of the job's size in the recovery window: none ended yet, so nothing is submitted;
    once they end, the one whose results carry the job's custom ids is the job's."""
    import httpx

    sim.configure(batch_completion_s=1.5)
    prompts = write_prompts(tmp_path / "prompts.jsonl", 5)
    config = write_config(tmp_path, [batch_entry(sim, "batch", "anthropic", "claude-haiku")], prompts)
    first = run(config, wait_for_batches=False)
    ours = first["batches_pending"][0]["batch_id"]
    _forget_batch_ids(tmp_path / "out" / "b1" / "responses.sqlite")
    decoy_requests = [
        {
            "custom_id": f"someone-else-{i}",
            "params": {"model": "claude-haiku", "max_tokens": 64, "messages": [{"role": "user", "content": f"q{i}"}]},
        }
        for i in range(5)
    ]
    decoy = httpx.post(
        sim.anthropic_base_url + "/v1/messages/batches",
        json={"requests": decoy_requests},
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
    )
    assert decoy.status_code == 200, decoy.text

    second = run(config)
    assert second["tasks_written"] == 5
    assert sorted(b["id"] for b in sim.batches()) == sorted([ours, decoy.json()["id"]])  # nothing resubmitted
    assert batch_stats(sim)["custom_ids_submitted_more_than_once"] == 0
