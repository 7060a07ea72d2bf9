"""What Prefect shows of a run: its name (``<project>/<batch>``), its final state, the state's message and
the run's logs.

A complete run ends Completed (also when prompts lack answers only because ``annotation.answers`` left
them out); one with calls failed, skipped or not made ends Failed, named Incomplete, with a message naming
what is missing, and its logs tell the run's story; one stopped by a signal ends Cancelled. Each is read
back from the Prefect API.
"""

from __future__ import annotations

import asyncio
import json
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
from flows.reporting.report import MAX_LINE, RunIncomplete
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


def test_an_incomplete_run_ends_failed_named_incomplete_and_says_what_is_missing(
    sim: RunningSimulator, tmp_path: Path
) -> None:
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
    assert state.is_failed() and state.name == "Incomplete"
    incomplete = state.result(raise_on_failure=False)  # the summary travels in the exception
    assert isinstance(incomplete, RunIncomplete) and incomplete.summary is not None
    assert incomplete.summary["incomplete"] == 1  # p-001 has only claude's answer

    run = read_flow_run(state.state_details.flow_run_id)
    assert run.name == "test-project/b1"
    assert (run.state.type.value, run.state.name) == ("FAILED", "Incomplete")
    message = run.state.message
    assert message.startswith("Incomplete: 7/12 call(s) answered"), message
    assert "gpt-4o: 1 failed (http_500 ×1)" in message
    assert re.search(r"down: 2 failed \(connection ×2\), 2 skipped \([^)]+\)", message), message
    assert "1 of 4 prompt(s) incomplete" in message and "Rerun the same config" in message
    assert str(incomplete) == message

    # Called plainly, the flow raises it: the caller still gets the summary (the rerun reuses every answer).
    with pytest.raises(RunIncomplete) as raised:
        asyncio.run(generate_tasks(str(config)))
    assert raised.value.summary is not None and raised.value.summary["incomplete"] == 1


def test_prompts_short_only_of_answers_left_out_end_completed(sim: RunningSimulator, tmp_path: Path) -> None:
    """Every call answered, one prompt's answers all blank (left out by annotation.answers): a rerun changes
    nothing, so the run is not Incomplete; its message says what is short."""
    sim.configure(faults=[FaultRule(kind="whitespace", prompt_contains="number 1:")])
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 3))
    state = asyncio.run(generate_tasks(str(config), return_state=True))
    summary = state.result()
    assert summary["incomplete"] == 1 and summary["tasks_written"] == 2

    run = read_flow_run(state.state_details.flow_run_id)
    assert (run.state.type.value, run.state.name) == ("COMPLETED", "Completed")
    assert run.state.message == (
        "Complete: 6/6 call(s) answered; 2 task(s) written; 1 of 3 prompt(s) have too few answers to show "
        "annotators: annotation.answers leaves some out (see left_out in incomplete.jsonl; a rerun changes nothing)."
    )


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


def read_run_record(flow_run_id: str) -> tuple[Any, list[Any], dict[str, Any]]:
    """The flow run, its logs (oldest first) and its artifacts by key, from the Prefect API."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    async def read() -> tuple[Any, list[Any], dict[str, Any]]:
        async with get_client() as client:
            run = await client.read_flow_run(UUID(flow_run_id))
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)])),
                sort=LogSort.TIMESTAMP_ASC,
                limit=200,
            )
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
            )
            return run, logs, {a.key: a for a in artifacts}

    return asyncio.run(read())


def test_a_run_with_a_refused_key_shows_red_in_prefect_with_its_story_in_the_logs(
    sim: RunningSimulator, tmp_path: Path, prefect_api: str
) -> None:
    """``rlhf run`` as an operator starts it: one provider gets 401 on every call (and is cut off), one prompt
    lacks answers. Prefect shows a failed-type state named Incomplete, the Logs tab tells the run (start,
    chunks, the cut-off, the failures, the table) while the console stays quiet, and the report fits a screen."""
    sim.configure(
        faults=[
            FaultRule(kind="401", model="claude-x"),
            FaultRule(kind="500", model="llama-3-8b", prompt_contains="number 1:"),
        ]
    )
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "llama-3", "openai", "llama-3-8b", max_retries=0),
        provider_entry(sim, "claude", "anthropic", "claude-x", breaker_threshold=2, max_concurrency=1),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 6), chunk_size=2)
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    env.pop("PREFECT_LOGGING_LEVEL", None)  # as in an operator's shell: Prefect's own default
    done = subprocess.run([RLHF, "run", str(config), "-q"], capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 3, done.stdout + done.stderr
    match = re.search(r"Prefect flow run test-project/b1: \S+/runs/flow-run/([0-9a-f-]{36})", done.stderr)
    assert match, done.stderr
    # The console stays quiet: the run's story and the engine's last line are in Prefect, not on the terminal.
    assert "chunk 0" not in done.stderr and "Finished in state" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr

    deadline = time.monotonic() + 30  # logs reach the API in batches: wait for the engine's last line
    while True:
        run, logs, artifacts = read_run_record(match.group(1))
        if any(log.message.startswith("Finished in state Incomplete") for log in logs) or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    assert (run.state.type.value, run.state.name) == ("FAILED", "Incomplete")
    message = run.state.message
    assert message.startswith("Incomplete: 11/18 call(s) answered (llama-3: 1 failed (http_500 ×1); claude: "), message
    assert re.search(r"claude: 2 failed \(http_401 ×2\), 4 skipped \(cut off after 2 consecutive failures", message)
    assert "1 of 6 prompt(s) incomplete (too few answers)" in message

    lines = [(log.level, log.message) for log in logs]
    text = "\n".join(f"{level} {line}" for level, line in lines)
    assert (
        20,
        "run test-project/b1: 6 prompt(s) in chunks of 2, 3 answer(s) each; providers: gpt-4o (openai "
        "gpt-4o), llama-3 (openai llama-3-8b), claude (anthropic claude-x)",
    ) in lines, text
    chunk_lines = [line for level, line in lines if level == 20 and line.startswith("chunk ")]
    assert len(chunk_lines) == 3, text  # one line per chunk, never one per call
    assert chunk_lines[0].startswith(
        "chunk 0: 2 prompt(s) done; answered: gpt-4o 2/2, llama-3 1/2 (1 failed), claude 0/2 (2 failed)"
    )
    assert chunk_lines[2].startswith(
        "chunk 2: 6 prompt(s) done; answered: gpt-4o 6/6, llama-3 5/6 (1 failed), claude 0/6 (2 failed, 4 skipped)"
    )
    warnings = [line for level, line in lines if level == 30]
    assert any(
        re.match(r"claude cut off in chunk 0: cut off after 2 consecutive failures \(last: http_401", w)
        for w in warnings
    ), text
    assert any(
        w.startswith("claude: 6 of 6 call(s) without an answer: 2 failed (http_401 ×2), 4 skipped (cut off")
        for w in warnings
    ), text
    assert "llama-3: 1 of 6 call(s) without an answer: 1 failed (http_500 ×1)" in warnings, text
    [table] = [line for level, line in lines if level == 20 and line.startswith("summary:\n")]
    assert re.search(r"\n\s*claude\s+claude-x\s+0/6\s+2\s+4\s", table), (
        table
    )  # provider, model, answered, failed, skipped
    assert lines[-1][0] == 40 and lines[-1][1].startswith("Finished in state Incomplete("), text

    # The report fits a laptop screen: no markdown line over MAX_LINE characters (but a file path, which is
    # never broken), the failures in their own table.
    markdown = artifacts["rlhf-test-project-b1-report"].data
    path_line = f"`{tmp_path / 'out' / 'b1' / 'tasks.jsonl'}`"
    assert path_line in markdown.splitlines()
    assert max(len(line) for line in markdown.splitlines() if line != path_line) <= MAX_LINE, markdown
    assert "**Incomplete: 11/18 call(s) answered" in markdown
    failures = artifacts["rlhf-test-project-b1-failures"].data
    rows = json.loads(failures) if isinstance(failures, str) else failures
    assert {"provider": "claude", "reason": "http_401", "calls": 2} in rows
    assert {"provider": "claude", "reason": "skipped: cut off after 2 consecutive failures", "calls": 4} in rows
    assert {"provider": "llama-3", "reason": "http_500", "calls": 1} in rows
    for key in ("providers", "usage", "failures"):
        table_data = artifacts[f"rlhf-test-project-b1-{key}"].data
        table_rows = json.loads(table_data) if isinstance(table_data, str) else table_data
        assert all(len(row) <= 7 for row in table_rows)
