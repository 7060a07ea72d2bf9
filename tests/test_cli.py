"""The ``rlhf`` command as an operator runs it: real subprocesses, exit codes and messages."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    FAKE_ANTHROPIC_KEY,
    FAKE_OPENAI_KEY,
    three_providers,
    write_config,
    write_prompts,
)

from simulator import FaultRule, RunningSimulator

RLHF = str(Path(sys.executable).with_name("rlhf"))
pytestmark = pytest.mark.slow  # every test runs the rlhf command as a subprocess


def rlhf(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RLHF, *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture
def cli_env(fake_keys: dict[str, str]) -> dict[str, str]:
    return dict(os.environ)


def test_validate_reports_counts_without_calling_anyone(
    sim: RunningSimulator, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    config = write_config(tmp_path, three_providers(sim), write_prompts(tmp_path / "p.jsonl", 7))
    result = rlhf("validate", str(config), env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "7 prompt(s) × 3 provider(s) = 21 call(s)" in result.stdout
    assert sim.stats()["requests_total"] == 0


def test_validate_names_file_line_and_field(sim: RunningSimulator, tmp_path: Path, cli_env: dict[str, str]) -> None:
    providers = three_providers(sim)
    providers[2]["source_id"] = "gpt-4o"
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 2))
    line = next(
        i for i, text in enumerate(config.read_text().splitlines(), 1) if "source_id: gpt-4o" in text and i > 10
    )
    result = rlhf("validate", str(config), env=cli_env)
    assert result.returncode == 2
    assert f"{config}:{line}: providers[2].source_id: duplicate 'gpt-4o'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_prompt_file_refuses_to_start(sim: RunningSimulator, tmp_path: Path, cli_env: dict[str, str]) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "fine"}\n{"id": "b", "prompt": \n{"id": "a", "prompt": "again"}\n')
    config = write_config(tmp_path, three_providers(sim), prompts)
    result = rlhf("run", str(config), env=cli_env)
    assert result.returncode == 2
    assert f"{prompts}:2: invalid JSON" in result.stderr
    assert f"{prompts}:3: id: duplicate id 'a'" in result.stderr
    assert "nothing was called or written" in result.stderr
    assert f"or run the valid ones with `rlhf run {config} --skip-invalid`" in result.stderr
    assert sim.stats()["requests_total"] == 0 and not (tmp_path / "out").exists()


def test_missing_api_key_is_reported_before_any_call(
    sim: RunningSimulator, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    env = {k: v for k, v in cli_env.items() if k != "ANTHROPIC_API_KEY"}
    config = write_config(tmp_path, three_providers(sim), write_prompts(tmp_path / "p.jsonl", 2))
    result = rlhf("run", str(config), env=env)
    assert result.returncode == 2
    assert re.search(r"providers\[2\]\.api_key_env: environment variable ANTHROPIC_API_KEY is not set", result.stderr)
    assert sim.stats()["requests_total"] == 0


def _run_env(cli_env: dict[str, str], prefect_api: str) -> dict[str, str]:
    return {**cli_env, "PREFECT_API_URL": prefect_api}


def test_run_writes_tasks_and_prints_the_summary(
    sim: RunningSimulator, tmp_path: Path, cli_env: dict[str, str], prefect_api: str
) -> None:
    config = write_config(tmp_path, three_providers(sim), write_prompts(tmp_path / "p.jsonl", 9))
    result = rlhf("run", str(config), env=_run_env(cli_env, prefect_api))
    assert result.returncode == 0, result.stderr
    assert "9 task(s) in" in result.stdout and "summary in" in result.stdout
    for source_id in ("gpt-4o", "llama-3", "claude"):
        assert re.search(rf"{re.escape(source_id)}\s.*\s9/9\s", result.stdout), result.stdout
    summary: dict[str, Any] = json.loads((tmp_path / "out" / "b1" / "summary.json").read_text())
    assert summary["tasks_written"] == 9
    assert len((tmp_path / "out" / "b1" / "tasks.jsonl").read_text().splitlines()) == 9
    assert not list((tmp_path / "out").rglob("*.partial"))
    for blob in (result.stdout, result.stderr):
        assert FAKE_OPENAI_KEY not in blob and FAKE_ANTHROPIC_KEY not in blob


def test_run_with_failures_exits_3_and_says_how_to_resume(
    sim: RunningSimulator, tmp_path: Path, cli_env: dict[str, str], prefect_api: str
) -> None:
    sim.configure(faults=[FaultRule(kind="401", model="claude-sonnet-4-5")])
    config = write_config(tmp_path, three_providers(sim), write_prompts(tmp_path / "p.jsonl", 3))
    result = rlhf("run", str(config), env=_run_env(cli_env, prefect_api))
    assert result.returncode == 3, result.stderr
    assert "3 call(s) failed" in result.stderr and "--retry-failed" in result.stderr
    assert "http_401×3" in result.stdout


def test_simulate_serves_both_apis(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [RLHF, "simulate", "--port", "0", "--latency-ms", "1"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        url = match.group(1)
        chat = httpx.post(
            f"{url}/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"]
        msg = httpx.post(
            f"{url}/v1/messages",
            headers={"anthropic-version": "2023-06-01", "x-api-key": "k"},
            json={"model": "c", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert msg.status_code == 200 and msg.json()["content"][0]["text"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_status_shows_answered_failed_and_missing(
    sim: RunningSimulator, tmp_path: Path, cli_env: dict[str, str], prefect_api: str
) -> None:
    config = write_config(tmp_path, three_providers(sim), write_prompts(tmp_path / "p.jsonl", 4))
    before = rlhf("status", str(config), "--json", env=cli_env)
    assert before.returncode == 3
    assert json.loads(before.stdout)["providers"]["claude"] == {
        "planned": 4,
        "answered": 0,
        "failed": 0,
        "missing": 4,
        "failure_reasons": {},
    }

    sim.configure(faults=[FaultRule(kind="400", model="llama-3-8b", prompt_contains="number 2:")])
    assert rlhf("run", str(config), env=_run_env(cli_env, prefect_api)).returncode == 3
    # Two more prompts appear in the file: status reports them missing for every provider.
    write_prompts(tmp_path / "p.jsonl", 6)
    after = rlhf("status", str(tmp_path / "out" / "b1"), "--json", env=cli_env)
    assert after.returncode == 3
    report = json.loads(after.stdout)["providers"]
    assert report["gpt-4o"] == {"planned": 6, "answered": 4, "failed": 0, "missing": 2, "failure_reasons": {}}
    assert report["llama-3"] == {
        "planned": 6,
        "answered": 3,
        "failed": 1,
        "missing": 2,
        "failure_reasons": {"http_400": 1},
    }
    assert sim.stats()["requests_total"] == 12  # status itself calls nobody

    table = rlhf("status", str(tmp_path / "out" / "b1"), env=cli_env)
    assert re.search(r"llama-3\s.*\s3/6\s.*\s1\s.*\s2\s.*http_400×1", table.stdout), table.stdout


def test_status_of_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    result = rlhf("status", str(tmp_path))
    assert result.returncode == 2 and "no run.json here" in result.stderr


def test_plan_estimates_calls_tokens_cost_and_time(
    sim: RunningSimulator, tmp_path: Path, cli_env: dict[str, str], prefect_api: str
) -> None:
    providers = three_providers(sim)
    providers[0].update(price={"input_per_million": 2.0, "output_per_million": 8.0}, requests_per_minute=60)
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 10))
    result = rlhf("plan", str(config), "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    gpt = plan["providers"]["gpt-4o"]
    prompt_chars = sum(len(json.loads(line)["prompt"]) for line in (tmp_path / "p.jsonl").read_text().splitlines())
    assert gpt["calls"] == 10 and gpt["input_tokens"] == prompt_chars // 4
    assert gpt["output_tokens_range"] == [10 * 512 // 4, 10 * 512]
    assert gpt["cost_usd_range"] == [
        round((gpt["input_tokens"] * 2 + 1280 * 8) / 1e6, 4),
        round((gpt["input_tokens"] * 2 + 5120 * 8) / 1e6, 4),
    ]
    assert gpt["min_minutes_at_rate_limits"] == pytest.approx(10 / 60, abs=0.01)
    # claude-sonnet-4-5 has no price in the config: the shipped price table's is used, and named
    assert plan["providers"]["claude"]["price_source"].startswith("table ")
    assert plan["providers"]["llama-3"]["cost_usd_range"] is None and plan["cost_no_price"] == ["llama-3"]
    assert sim.stats()["requests_total"] == 0

    assert rlhf("run", str(config), env=_run_env(cli_env, prefect_api)).returncode == 0
    after = json.loads(rlhf("plan", str(config), "--json", env=cli_env).stdout)
    assert after["calls"] == 0 and after["providers"]["gpt-4o"]["already_answered"] == 10


def test_serve_schedules_the_flow_and_a_triggered_run_makes_a_dated_batch(
    sim: RunningSimulator, tmp_path: Path, cli_env: dict[str, str], prefect_api: str
) -> None:
    import asyncio
    import os
    import time

    from prefect import get_client
    from prefect.deployments import run_deployment

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    write_prompts(incoming / "older.jsonl", 2)
    newest = write_prompts(incoming / "newest.jsonl", 3, start=10)
    os.utime(incoming / "older.jsonl", (time.time() - 3600, time.time() - 3600))
    config = write_config(tmp_path, three_providers(sim), newest, batch="nightly-{date}")
    config.write_text(config.read_text().replace(str(newest), str(incoming / "*.jsonl")))
    env = {**_run_env(cli_env, prefect_api), "RLHF_RUN_DATE": "2026-11-27", "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    server = subprocess.Popen(
        [RLHF, "serve", str(config), "--cron", "0 3 * * *", "--name", "nightly-test"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        async def deployment() -> Any:
            async with get_client() as client:
                for _ in range(120):
                    try:
                        return await client.read_deployment_by_name("generate_tasks/nightly-test")
                    except Exception:  # noqa: BLE001 - not registered yet
                        await asyncio.sleep(0.5)
            raise AssertionError("the deployment never appeared")

        found = asyncio.run(deployment())
        assert [s.schedule.cron for s in found.schedules] == ["0 3 * * *"]
        flow_run = run_deployment("generate_tasks/nightly-test", timeout=120, poll_interval=1)
        assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
    finally:
        server.terminate()
        server.wait(timeout=30)
    tasks = tmp_path / "out" / "nightly-2026-11-27" / "tasks.jsonl"
    ids = [json.loads(line)["metadata"]["prompt_id"] for line in tasks.read_text().splitlines()]
    assert ids == ["p-010", "p-011", "p-012"]  # the newest prompt file, under the dated batch
