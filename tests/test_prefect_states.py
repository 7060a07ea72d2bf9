"""What Prefect shows of a run: its name (``<project>/<batch>``), its final state and the state's message.

A complete run ends Completed; one with calls missing ends Completed with a message naming what is
missing; one stopped by a signal ends Cancelled. Each is read back from the Prefect API.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from conftest import closed_port_url, provider_entry, write_config, write_prompts

from flows.generation import stopping
from flows.generation.generate import RunInterrupted, generate_tasks
from simulator import FaultRule, RunningSimulator

RLHF = str(Path(sys.executable).with_name("rlhf"))
pytestmark = [pytest.mark.usefixtures("prefect_api", "fake_keys"), pytest.mark.slow]


def read_flow_run(flow_run_id: UUID | str) -> Any:
    from prefect import get_client

    async def read() -> Any:
        async with get_client() as client:
            return await client.read_flow_run(UUID(str(flow_run_id)))

    return asyncio.run(read())


def test_a_complete_run_is_named_after_the_batch_and_says_so(sim: RunningSimulator, tmp_path: Path) -> None:
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 5), batch="nightly-2026-01-02")
    state = asyncio.run(generate_tasks(str(config), return_state=True))

    run = read_flow_run(state.state_details.flow_run_id)
    assert run.name == "test-project/nightly-2026-01-02"
    assert run.state.type.value == "COMPLETED"
    assert run.state.message == "Complete: 10/10 call(s) answered; 5 task(s) written."
    assert state.result()["tasks_written"] == 5  # the summary is still the run's result


def test_an_incomplete_run_says_what_is_missing(sim: RunningSimulator, tmp_path: Path) -> None:
    sim.configure(faults=[FaultRule(kind="500", model="gpt-4o", prompt_contains="number 1:")])
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o", max_retries=0),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
        provider_entry(
            sim, "down", "openai", "m", base_url=closed_port_url() + "/v1", max_retries=0, breaker_threshold=2
        ),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 4), chunk_size=2)
    state = asyncio.run(generate_tasks(str(config), return_state=True))
    summary = state.result()
    assert summary["incomplete"] == 1  # p-001 has only claude's answer

    run = read_flow_run(state.state_details.flow_run_id)
    assert run.name == "test-project/b1"
    assert run.state.type.value == "COMPLETED"
    message = run.state.message
    assert message.startswith("Incomplete: 7/12 call(s) answered"), message
    assert "gpt-4o: 1 failed (http_500 ×1)" in message
    assert re.search(r"down: 2 failed \(connection ×2\), 2 skipped \([^)]+\)", message), message
    assert "1 of 4 prompt(s) incomplete" in message and "Rerun the same config" in message


def test_a_run_stopped_by_a_signal_ends_cancelled_and_raises_with_its_summary(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    sim.configure(latency_ms=150)
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o", max_concurrency=2),
        provider_entry(sim, "claude", "anthropic", "claude-x", max_concurrency=2),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 40), chunk_size=10)
    store = tmp_path / "out" / "b1" / "responses.sqlite"

    def stop_after_some_answers() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sim.stats()["responses_ok"] >= 4 and store.exists():
                stopping._handle(signal.SIGINT, None)  # what the rlhf command's handler does on Ctrl-C
                return
            time.sleep(0.01)

    stopper = threading.Thread(target=stop_after_some_answers, daemon=True)
    stopper.start()
    try:
        with pytest.raises(RunInterrupted) as raised:
            asyncio.run(generate_tasks(str(config)))
    finally:
        stopper.join(5)
        stopping.reset()
    summary = raised.value.summary
    assert summary is not None and summary["interrupted"] is True and summary["incomplete"] > 0

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    async def runs_named() -> list[Any]:
        async with get_client() as client:
            return await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["test-project/b1"]))
            )

    [run] = [r for r in asyncio.run(runs_named()) if r.parameters.get("config_path") == str(config)]
    assert run.state.type.value == "CANCELLED"
    assert run.state.message.startswith("Interrupted by signal 2: "), run.state.message
    assert "not made" in run.state.message and "rerun the same config to resume" in run.state.message
    assert str(raised.value) == run.state.message


def test_rlhf_run_prints_the_flow_run_url_at_the_start_and_ctrl_c_cancels_it(
    sim: RunningSimulator, tmp_path: Path, prefect_api: str
) -> None:
    sim.configure(latency_ms=400)
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o", max_concurrency=2),
        provider_entry(sim, "claude", "anthropic", "claude-x", max_concurrency=2),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 60))
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    ui = prefect_api.removesuffix("/api")
    url_pattern = re.compile(re.escape(f"Prefect flow run test-project/b1: {ui}/runs/flow-run/") + r"([0-9a-f-]{36})")
    err_path = tmp_path / "stderr"
    with err_path.open("wb") as err:
        process = subprocess.Popen([RLHF, "run", str(config), "-q"], stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        deadline = time.monotonic() + 90
        while not url_pattern.search(err_path.read_text()):  # printed while the run is still going
            assert process.poll() is None, err_path.read_text()
            assert time.monotonic() < deadline, "no flow run URL printed"
            time.sleep(0.05)
        while sim.stats()["responses_ok"] < 4:
            assert process.poll() is None and time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = err_path.read_text()
    assert code == 130, stderr
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr  # the same clean stop as on the temporary server
    match = url_pattern.search(stderr)
    assert match is not None and stderr.index(match.group(0)) < stderr.index("resume with: rlhf run")
    run = read_flow_run(match.group(1))
    assert run.name == "test-project/b1"
    assert run.state.type.value == "CANCELLED" and run.state.message.startswith("Interrupted by signal 2: ")
