"""The generate_tasks flow for real: Prefect's local API, loopback HTTP to the simulator, SQLite store."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    FAKE_ANTHROPIC_KEY,
    FAKE_OPENAI_KEY,
    closed_port_url,
    provider_entry,
    three_providers,
    write_config,
    write_prompts,
)
from scale_check import assert_scale_compatible

from flows.generation.generate import generate_tasks
from flows.reporting.report import RunIncomplete
from simulator import FaultRule, RunningSimulator, answer_marker

pytestmark = [pytest.mark.usefixtures("prefect_api", "fake_keys"), pytest.mark.slow]


def run(config: Path, **kwargs: Any) -> dict[str, Any]:
    """The run's summary; a run with calls missing ends Incomplete and raises it with its summary."""
    try:
        return asyncio.run(generate_tasks(str(config), **kwargs))
    except RunIncomplete as incomplete:
        assert incomplete.summary is not None
        return incomplete.summary


def read_tasks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    with open(summary["files"]["tasks"], encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def answers(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in task["threads"][0]["turns"][-1]["messages"] if m["role"] == "assistant"]


def test_every_prompt_goes_to_every_provider_and_each_answer_is_its_own(sim: RunningSimulator, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 25)
    config = write_config(tmp_path, three_providers(sim), prompts, chunk_size=10)
    summary = run(config)

    assert summary["prompts"] == 25 and summary["tasks_written"] == 25 and summary["incomplete"] == 0
    models = {"gpt-4o": "gpt-4o", "llama-3": "llama-3-8b", "claude": "claude-sonnet-4-5"}
    for source_id, model in models.items():
        tally = summary["providers"][source_id]
        assert (tally["requested"], tally["answered"], tally["failed"], tally["called_this_run"]) == (25, 25, 0, 25)
        assert tally["input_tokens"] > 0 and tally["output_tokens"] > 0
        assert tally["latency_ms_p50"] is not None and tally["latency_ms_p95"] >= tally["latency_ms_p50"]
        assert sim.stats()["by_model"][model]["requests"] == 25

    tasks = read_tasks(summary)
    assert [t["metadata"]["prompt_id"] for t in tasks] == [f"p-{i:03d}" for i in range(25)]
    for task in tasks:
        prompt_text = task["threads"][0]["turns"][-1]["messages"][0]["content"]["text"]
        assert prompt_text.startswith(f"Question number {int(task['metadata']['prompt_id'][2:])}:")
        got = answers(task)
        assert sorted(m["source_id"] for m in got) == sorted(models)
        for message in got:
            # The simulator's derived answer names the model it was asked for and hashes the prompt it got.
            assert answer_marker(models[message["source_id"]], prompt_text) in message["content"]["text"]
            assert message["model_parameters"]["model"] == models[message["source_id"]]
            meta = task["metadata"]["responses"][message["source_id"]]
            assert meta["request_id"] and meta["attempts"] == 1 and meta["usage"]["output_tokens"] > 0
        assert task["metadata"]["response_order"] == [m["source_id"] for m in got]
        assert task["metadata"]["errors"] == {}
        assert_scale_compatible(task)


def test_prefect_runs_one_task_per_provider_and_chunk(sim: RunningSimulator, tmp_path: Path) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    prompts = write_prompts(tmp_path / "prompts.jsonl", 25)
    config = write_config(tmp_path, three_providers(sim), prompts, chunk_size=10)
    state = asyncio.run(generate_tasks(str(config), return_state=True))
    assert state.is_completed()
    flow_run_id = state.state_details.flow_run_id

    async def task_run_names() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            return sorted(r.name for r in runs)

    expected = sorted(f"{sid}-chunk-{c}" for sid in ("gpt-4o", "llama-3", "claude") for c in range(3))
    # Prefect records task runs from the events its engine emits, asynchronously: poll until the
    # server has caught up (a wrong or missing name would never match).
    deadline = time.monotonic() + 30
    while (names := asyncio.run(task_run_names())) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert names == expected


def test_two_runs_give_the_same_tasks_and_a_rerun_calls_nobody(sim: RunningSimulator, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 12)
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir(), second_dir.mkdir()
    first = read_tasks(run(write_config(first_dir, three_providers(sim), prompts)))
    second_summary = run(write_config(second_dir, three_providers(sim), prompts))
    second = read_tasks(second_summary)

    def layout(tasks: list[dict[str, Any]]) -> list[tuple[str, list[str], list[str]]]:
        return [
            (t["task_id"], [m["source_id"] for m in answers(t)], [m["content"]["text"] for m in answers(t)])
            for t in tasks
        ]

    assert layout(first) == layout(second)
    # Answer order is shuffled per task (seeded), not the config order everywhere.
    assert len({tuple(order) for _, order, _ in layout(first)}) > 1

    tasks_file = Path(second_summary["files"]["tasks"])
    before = tasks_file.read_bytes()
    requests_before = sim.stats()["requests_total"]
    again = run(write_config(second_dir, three_providers(sim), prompts))
    assert sim.stats()["requests_total"] == requests_before
    assert all(p["called_this_run"] == 0 and p["reused_from_store"] == 12 for p in again["providers"].values())
    assert tasks_file.read_bytes() == before


def test_a_batch_on_the_aiohttp_client_matches_the_default_and_resumes_across_clients(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 15)
    lean_dir, default_dir = tmp_path / "lean", tmp_path / "default"
    lean_dir.mkdir(), default_dir.mkdir()
    lean_providers = [{**p, "http_client": "aiohttp"} for p in three_providers(sim)]
    lean = run(write_config(lean_dir, lean_providers, prompts, chunk_size=4))
    assert lean["tasks_written"] == 15 and all(p["answered"] == 15 for p in lean["providers"].values())
    default = run(write_config(default_dir, three_providers(sim), prompts, chunk_size=4))

    def content(tasks: list[dict[str, Any]]) -> list[tuple[str, list[str], list[str]]]:
        return [
            (t["task_id"], [m["source_id"] for m in answers(t)], [m["content"]["text"] for m in answers(t)])
            for t in tasks
        ]

    assert content(read_tasks(lean)) == content(read_tasks(default))
    # The client is not part of the request fingerprint: the batch resumes on the other client, unpaid.
    requests_before = sim.stats()["requests_total"]
    again = run(write_config(lean_dir, three_providers(sim), prompts, chunk_size=4))
    assert sim.stats()["requests_total"] == requests_before
    assert all(p["called_this_run"] == 0 and p["reused_from_store"] == 15 for p in again["providers"].values())
    assert content(read_tasks(again)) == content(read_tasks(lean))


def test_a_provider_that_is_down_leaves_tasks_with_the_other_answers(sim: RunningSimulator, tmp_path: Path) -> None:
    providers = three_providers(sim)
    providers[1]["base_url"] = closed_port_url() + "/v1"
    providers[1]["max_retries"] = 1
    providers[1]["breaker_threshold"] = 0  # every call fails on its own here; the breaker has its own tests
    prompts = write_prompts(tmp_path / "prompts.jsonl", 6)
    summary = run(write_config(tmp_path, providers, prompts))

    assert summary["tasks_written"] == 6 and summary["incomplete"] == 0
    down = summary["providers"]["llama-3"]
    assert down["answered"] == 0 and down["failed"] == 6 and down["failure_reasons"] == {"connection": 6}
    for task in read_tasks(summary):
        assert sorted(m["source_id"] for m in answers(task)) == ["claude", "gpt-4o"]
        error = task["metadata"]["errors"]["llama-3"]
        assert error["error_type"] == "connection" and error["attempts"] == 2
        assert "llama-3" not in task["metadata"]["response_order"]
        assert_scale_compatible(task)


def test_prompts_with_too_few_answers_go_to_incomplete(sim: RunningSimulator, tmp_path: Path) -> None:
    sim.configure(faults=[FaultRule(kind="500", model="gpt-4o", prompt_contains="number 1:")])
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o", max_retries=1),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    prompts = write_prompts(tmp_path / "prompts.jsonl", 4)
    summary = run(write_config(tmp_path, providers, prompts))

    assert summary["prompts"] == 4 and summary["tasks_written"] == 3 and summary["incomplete"] == 1
    assert summary["tasks_written"] + summary["incomplete"] == summary["prompts"]
    lines = Path(summary["files"]["incomplete"]).read_text().splitlines()
    incomplete = json.loads(lines[0])
    assert incomplete["prompt_id"] == "p-001" and incomplete["answered"] == ["claude"]
    assert incomplete["errors"]["gpt-4o"]["error_type"] == "http_500"
    assert "1 answer(s), 2 required" in incomplete["reason"]


def test_stored_errors_are_kept_unless_retry_failed(sim: RunningSimulator, tmp_path: Path) -> None:
    # A 400 for fewer calls than the breaker's threshold is the prompts' own final error: stored.
    sim.configure(faults=[FaultRule(kind="400", model="claude-x")])
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    config = write_config(tmp_path, providers, prompts)
    first = run(config)
    assert first["providers"]["claude"]["failure_reasons"] == {"http_400": 3}
    assert sim.stats()["by_model"]["claude-x"]["requests"] == 3  # 400 is never retried

    sim.configure(faults=[])
    sim.reset()
    plain = run(config)
    assert sim.stats()["requests_total"] == 0 and plain["providers"]["claude"]["failed"] == 3

    retried = run(config, retry_failed=True)
    assert sim.stats()["by_model"]["claude-x"]["requests"] == 3 and "gpt-4o" not in sim.stats()["by_model"]
    assert retried["providers"]["claude"]["answered"] == 3 and retried["tasks_written"] == 3


def test_refused_key_is_reported_but_not_stored(sim: RunningSimulator, tmp_path: Path) -> None:
    """A 401 says nothing about the prompt: the rerun after fixing the key makes the calls, no --retry-failed."""
    sim.configure(faults=[FaultRule(kind="401", model="claude-x")])
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "prompts.jsonl", 3))
    first = run(config)
    assert first["providers"]["claude"]["failure_reasons"] == {"http_401": 3}
    incomplete = [json.loads(line) for line in (tmp_path / "out" / "b1" / "incomplete.jsonl").read_text().splitlines()]
    assert {i["errors"]["claude"]["error_type"] for i in incomplete} == {"http_401"}

    sim.configure(faults=[])
    sim.reset()
    fixed = run(config)
    assert sim.stats()["by_model"]["claude-x"]["requests"] == 3 and "gpt-4o" not in sim.stats()["by_model"]
    assert fixed["providers"]["claude"]["answered"] == 3 and fixed["tasks_written"] == 3


def test_a_gateway_refusing_every_call_with_one_4xx_is_cut_off_and_not_stored(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    """A LiteLLM-style 400 for a bad key on every call: the provider is cut off, the rerun makes the calls."""
    sim.configure(faults=[FaultRule(kind="400", model="claude-x")])
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x", breaker_threshold=4, max_concurrency=1),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "prompts.jsonl", 12))
    first = run(config)
    claude = first["providers"]["claude"]
    assert sim.stats()["by_model"]["claude-x"]["requests"] == 4  # cut off after the threshold
    assert claude["breaker"] and "Invalid request (simulated)" in claude["breaker"]  # the server's own text
    assert claude["answered"] == 0 and claude["skipped"] + claude["failed"] == 12

    sim.configure(faults=[])
    sim.reset()
    fixed = run(config)  # no --retry-failed: those 400s were the gateway's, not the prompts' final answers
    assert sim.stats()["by_model"]["claude-x"]["requests"] == 12 and "gpt-4o" not in sim.stats()["by_model"]
    assert fixed["providers"]["claude"]["answered"] == 12 and fixed["tasks_written"] == 12


def test_conversations_and_system_prompts_become_turns(sim: RunningSimulator, tmp_path: Path) -> None:
    prompts = tmp_path / "chat.jsonl"
    record = {
        "id": "chat-1",
        "system": "You are a careful assistant.",
        "messages": [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4.", "source_id": "human-writer"},
            {"role": "user", "content": "And times 3?"},
        ],
        "metadata": {"topic": "math"},
    }
    prompts.write_text(json.dumps(record) + "\n")
    providers = three_providers(sim)
    providers[0]["system_prompt"] = "Answer in one line."
    summary = run(write_config(tmp_path, providers, prompts))
    (task,) = read_tasks(summary)

    first_turn, last_turn = task["threads"][0]["turns"]
    assert [(m["role"], m["source_id"]) for m in first_turn["messages"]] == [
        ("system", "system"),
        ("user", "user"),
        ("assistant", "human-writer"),
    ]
    assert first_turn["annotations"] == [] and all(m["annotations"] == [] for m in first_turn["messages"])
    assert last_turn["messages"][0]["content"]["text"] == "And times 3?"
    for message in answers(task):
        assert answer_marker(message["model_parameters"]["model"], "And times 3?") in message["content"]["text"]
    assert task["metadata"]["prompt_metadata"] == {"topic": "math"}
    assert task["metadata"]["provider_system_prompts"] == {"gpt-4o": "Answer in one line."}
    assert_scale_compatible(task)


def _prefect_records(flow_run_id: Any) -> list[str]:
    """What Prefect's API holds about a flow run: the run (parameters included), its task runs, its logs."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async def fetch() -> list[str]:
        async with get_client() as client:
            flow_run = await client.read_flow_run(flow_run_id)
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            return (
                [flow_run.model_dump_json()] + [t.model_dump_json() for t in task_runs] + [log.message for log in logs]
            )

    return asyncio.run(fetch())


def test_no_api_key_reaches_any_output(
    sim: RunningSimulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    sim.configure(
        faults=[FaultRule(kind="401", model="gpt-4o"), FaultRule(kind="503", model="claude-sonnet-4-5", times=4)]
    )
    prompts = write_prompts(tmp_path / "prompts.jsonl", 5)
    state = asyncio.run(generate_tasks(str(write_config(tmp_path, three_providers(sim), prompts)), return_state=True))
    summary = state.result(raise_on_failure=False).summary  # the run ends Incomplete
    assert summary["providers"]["gpt-4o"]["failed"] == 5

    captured = capfd.readouterr()
    prefect_records = _prefect_records(state.state_details.flow_run_id)
    assert any("run.yaml" in record for record in prefect_records)  # the parameters are really in there
    blobs = [captured.out, captured.err, json.dumps(summary), *prefect_records]
    blobs += [p.read_bytes().decode("utf-8", "replace") for p in (tmp_path / "out").rglob("*") if p.is_file()]
    for secret in (FAKE_OPENAI_KEY, FAKE_ANTHROPIC_KEY):
        assert all(secret not in blob for blob in blobs)


def test_api_key_from_a_prefect_secret_block(
    sim: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    Secret(value="sk-from-a-secret-block-91f3").save("sim-openai-key", overwrite=True)
    monkeypatch.delenv("OPENAI_API_KEY")
    sim.configure(require_api_key=True)
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o", api_key_secret="sim-openai-key"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    summary = run(write_config(tmp_path, providers, write_prompts(tmp_path / "prompts.jsonl", 3)))
    assert summary["providers"]["gpt-4o"]["answered"] == 3
    assert sim.stats()["auth_headers_seen"] == 6
    stored = (tmp_path / "out" / "b1" / "responses.sqlite").read_bytes() + (
        tmp_path / "out" / "b1" / "tasks.jsonl"
    ).read_bytes()
    assert b"sk-from-a-secret-block-91f3" not in stored


def test_a_missing_secret_block_stops_the_run_before_any_call(sim: RunningSimulator, tmp_path: Path) -> None:
    from common.errors import InputError

    providers = [
        *three_providers(sim)[:2],
        provider_entry(sim, "claude", "anthropic", "claude-x", api_key_secret="no-such-block"),
    ]
    with pytest.raises(
        InputError, match=r"providers\[2\]\.api_key_secret: no API key: Prefect Secret block 'no-such-block' not found"
    ):
        run(write_config(tmp_path, providers, write_prompts(tmp_path / "prompts.jsonl", 2)))
    assert sim.stats()["requests_total"] == 0
    assert not (tmp_path / "out" / "b1" / "tasks.jsonl").exists()


def test_run_report_artifacts_and_cost(sim: RunningSimulator, tmp_path: Path) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    sim.configure(faults=[FaultRule(kind="500", model="llama-3-8b", times=2)])
    providers = three_providers(sim)
    providers[0]["price"] = {"input_per_million": 2.5, "output_per_million": 10.0}
    state = asyncio.run(
        generate_tasks(
            str(write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 5))), return_state=True
        )
    )
    summary = state.result()
    gpt = summary["providers"]["gpt-4o"]
    assert gpt["cost_usd"] == pytest.approx((gpt["input_tokens"] * 2.5 + gpt["output_tokens"] * 10.0) / 1e6, abs=1e-6)
    claude = summary["providers"]["claude"]  # no price in its config: the price table's (claude-sonnet-4-5)
    assert claude["price_source"].startswith("table ") and gpt["price_source"] == "config"
    assert summary["cost_usd"] == pytest.approx(gpt["cost_usd"] + claude["cost_usd"], abs=1e-6)
    assert summary["providers"]["llama-3"]["cost_usd"] is None and summary["cost_no_price"] == ["llama-3"]
    assert summary["providers"]["llama-3"]["retries"] == 2

    async def artifacts() -> list[Any]:
        async with get_client() as client:
            flow_run_id = state.state_details.flow_run_id
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )

    found = {a.key.removeprefix("rlhf-test-project-b1-"): a for a in asyncio.run(artifacts())}
    assert {key: a.type for key, a in found.items()} == {
        "report": "markdown",
        "providers": "table",
        "usage": "table",
        "failures": "table",
    }
    assert "test-project / b1" in found["report"].data and "tasks written: 5" in found["report"].data

    def rows_of(key: str) -> dict[str, dict[str, Any]]:
        data = found[key].data
        return {row["provider"]: row for row in (json.loads(data) if isinstance(data, str) else data)}

    assert rows_of("providers")["gpt-4o"]["answered"] == 5
    usage = rows_of("usage")
    assert usage["llama-3"]["retries"] == 2 and usage["gpt-4o"]["cost_usd"] == gpt["cost_usd"]
    assert rows_of("failures") == {}  # every call answered (after retries): an empty table, not last run's


class _Webhook:
    """A loopback HTTP endpoint that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        import http.server
        import threading

        received: list[dict[str, Any]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.received = received
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook/SECRET-PART"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_webhook_gets_the_summary_on_completion_and_the_reason_on_failure(
    sim: RunningSimulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    hook = _Webhook()
    try:
        prompts = write_prompts(tmp_path / "p.jsonl", 3)
        config = write_config(tmp_path, three_providers(sim), prompts, notify={"webhook_url": hook.url})
        summary = run(config)
        (event,) = hook.received
        assert event["event"] == "completed" and event["summary"]["tasks_written"] == 3 == summary["tasks_written"]
        assert (event["state"], event["message"]) == ("Completed", "Complete: 9/9 call(s) answered; 3 task(s) written.")

        # A run with calls missing ends Failed, named Incomplete: its failure hook sends the summary, once.
        hook.received.clear()
        sim.configure(faults=[FaultRule(kind="401", model="claude-sonnet-4-5")])
        config = write_config(tmp_path, three_providers(sim), prompts, notify={"webhook_url": hook.url}, batch="b2")
        with pytest.raises(RunIncomplete):
            asyncio.run(generate_tasks(str(config)))
        sim.configure(faults=[])
        (event,) = hook.received
        assert (event["event"], event["state"]) == ("completed", "Incomplete")
        assert event["message"].startswith("Incomplete: 6/9 call(s) answered (claude: 3 failed (http_401 ×3))")
        assert event["summary"]["providers"]["claude"]["failed"] == 3
        hook.received.clear()

        prompts.unlink()  # the next run fails at its start: the prompt file is gone
        with pytest.raises(Exception, match="prompt file not found"):
            run(config)
        assert [e["event"] for e in hook.received] == ["failed"]
        assert "prompt file not found" in hook.received[0]["message"]
    finally:
        hook.close()
    assert "SECRET-PART" not in capfd.readouterr().err


def test_fingerprint_follows_what_changes_the_answer_and_not_the_key(
    sim: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = write_prompts(tmp_path / "p.jsonl", 3)
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    run(write_config(tmp_path, providers, prompts))
    assert sim.stats()["requests_total"] == 6

    def calls_after(change: Any) -> dict[str, int]:
        sim.reset()
        changed = json.loads(json.dumps(providers))
        change(changed)
        summary = run(write_config(tmp_path, changed, prompts))
        return {sid: p["called_this_run"] for sid, p in summary["providers"].items()}

    monkeypatch.setenv("OPENAI_API_KEY", "sk-a-rotated-key-changes-nothing")
    assert calls_after(lambda p: None) == {"gpt-4o": 0, "claude": 0}
    assert calls_after(lambda p: p[0]["params"].update(temperature=0.9)) == {"gpt-4o": 3, "claude": 0}
    assert calls_after(lambda p: p[1].update(model="claude-y")) == {"gpt-4o": 0, "claude": 3}
    assert calls_after(lambda p: p[0].update(system_prompt="Be terse.")) == {"gpt-4o": 3, "claude": 0}
    assert calls_after(lambda p: p[1].update(base_url=sim.anthropic_base_url + "/")) == {
        "gpt-4o": 0,
        "claude": 0,
    }  # same endpoint
    localhost = sim.openai_base_url.replace("127.0.0.1", "localhost")  # another base URL, same server
    assert calls_after(lambda p: p[0].update(base_url=localhost)) == {"gpt-4o": 0, "claude": 0}  # where, not what
    assert calls_after(lambda p: p[0].update(endpoint_id="fine-tune-2")) == {"gpt-4o": 3, "claude": 0}
