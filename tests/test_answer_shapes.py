"""Every answer a provider bills for, over HTTP through every client path (README "What counts as an answer").

One run sends a prompt per answer shape to four providers (the ``openai`` SDK, the lean aiohttp client
on the OpenAI wire, httpx and aiohttp on the Anthropic wire); the simulator answers each prompt in its
shape. Each (prompt, provider) is requested once, stored once with its tokens, shown with its label or
left out with its reason, and a rerun asks nothing again.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from pathlib import Path
from typing import Any, get_args

import pytest
from conftest import provider_entry, write_config

from flows.generation.generate import generate_tasks
from simulator import FaultRule, RunningSimulator
from simulator.settings import ShapeKind

pytestmark = [pytest.mark.usefixtures("prefect_api", "fake_keys"), pytest.mark.slow]

SHAPES = list(get_args(ShapeKind))  # every answer shape the simulator knows
# source id -> (kind, http client)
PROVIDERS = {
    "oa-sdk": ("openai", "default"),
    "oa-aiohttp": ("openai", "aiohttp"),
    "an-httpx": ("anthropic", "default"),
    "an-aiohttp": ("anthropic", "aiohttp"),
}
HUGE_CHARS = 250_000  # over the default max_answer_chars (200,000)


def strict_json(text: str) -> Any:
    """JSON as the standard defines it: ``NaN``, ``Infinity`` and ``-Infinity`` are refused."""

    def refuse(name: str) -> None:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def write_shape_prompts(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for shape in SHAPES:
            handle.write(json.dumps({"id": shape, "prompt": f"SHAPE-{shape}: tell me about the sea."}) + "\n")
    return path


def shape_config(sim: RunningSimulator, tmp_path: Path) -> Path:
    sim.configure(
        faults=[
            FaultRule(kind=shape, prompt_contains=f"SHAPE-{shape}:", huge_chars=HUGE_CHARS)  # type: ignore[arg-type]
            for shape in SHAPES
        ]
    )
    providers = [
        provider_entry(sim, source_id, kind, f"model-{source_id}", http_client=client)
        for source_id, (kind, client) in PROVIDERS.items()
    ]
    return write_config(tmp_path, providers, write_shape_prompts(tmp_path / "prompts.jsonl"))


def stored(store: Path) -> dict[tuple[str, str], dict[str, Any]]:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return {(row["prompt_id"], row["source_id"]): dict(row) for row in db.execute("SELECT * FROM responses")}
    finally:
        db.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [strict_json(line) for line in path.read_text(encoding="utf-8").splitlines()]


def final_answers(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    messages = task["threads"][0]["turns"][-1]["messages"]
    return {m["source_id"]: m for m in messages if m["role"] == "assistant"}


def test_every_shape_is_stored_once_priced_labelled_or_left_out_and_never_asked_again(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    config = shape_config(sim, tmp_path)
    summary = asyncio.run(generate_tasks(str(config)))
    run_dir = tmp_path / "out" / "b1"

    # One request per (prompt, provider): no shape was taken for a malformed answer and asked again.
    requests = sim.stats()["by_fingerprint"]
    assert len(requests) == len(SHAPES) * len(PROVIDERS)
    assert all(entry["requests"] == 1 for entry in requests.values())

    # Every answer is stored as an answer, none as a failure; the summary on disk is strict JSON.
    rows = stored(run_dir / "responses.sqlite")
    assert len(rows) == len(SHAPES) * len(PROVIDERS) and all(row["ok"] == 1 for row in rows.values())
    on_disk = strict_json((run_dir / "summary.json").read_text(encoding="utf-8"))
    for source_id in PROVIDERS:
        tally = on_disk["providers"][source_id]
        assert (tally["answered"], tally["failed"], tally["interrupted"]) == (len(SHAPES), 0, 0), tally
        assert tally["usage_unknown"] == 4  # the four usage lies
        assert tally["finish_reasons"]["length"] >= 2
    for (shape, source_id), row in rows.items():
        kind = PROVIDERS[source_id][0]
        flags = json.loads(row["flags"] or "[]")
        if shape.startswith("usage_"):
            assert row["input_tokens"] is None and "usage_invalid" in flags, (shape, source_id, row)
        else:
            assert row["input_tokens"] > 0 and row["output_tokens"] is not None, (shape, source_id)
            assert 0 <= row["input_tokens"] < 10**9 and 0 <= row["output_tokens"] < 10**9
        if shape == "lone_surrogate":
            assert "\ufffd" in row["text"] and "text_repaired" in flags
        if shape == "model_object":
            assert json.loads(row["model"])["id"] == f"model-{source_id}" and "model_not_text" in flags
        if shape == "reasoning_length" and kind == "openai":
            assert row["reasoning_tokens"] == row["output_tokens"] > 0 and row["text"] == ""
        if shape == "cached_input":
            assert 0 < row["cached_input_tokens"] < row["input_tokens"]
            assert (row["cache_write_tokens"] or 0) > 0 if kind == "anthropic" else row["cache_write_tokens"] is None
        if shape in ("thinking", "reasoning_length", "redacted_thinking") and kind == "anthropic":
            reasoning = json.loads(row["reasoning"])
            if shape == "redacted_thinking":
                assert reasoning[0]["redacted"] is True and reasoning[0]["data"]
            else:
                assert reasoning[0]["content"] and reasoning[0]["signature"]
                assert reasoning[0]["content"] not in (row["text"] or "")  # thinking is never the answer
        if shape == "tool_calls":
            calls = json.loads(row["tool_calls"])
            assert row["text"] == "" and calls[0]["name"] == "get_weather"
            assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
            assert row["finish_reason"] == "tool_calls"
        if shape == "refusal":
            assert row["finish_reason"] == "refusal"
            assert row["vendor_finish_reason"] == ("stop" if kind == "openai" else "refusal")

    tasks = {task["metadata"]["prompt_id"]: task for task in read_jsonl(run_dir / "tasks.jsonl")}
    incomplete = {entry["prompt_id"]: entry for entry in read_jsonl(run_dir / "incomplete.jsonl")}
    # Nothing to judge: left out, with the reason, and the prompt is incomplete.
    for shape in ("reasoning_length", "tool_calls", "whitespace", "huge_text"):
        assert shape in incomplete and shape not in tasks, shape
        left_out = incomplete[shape]["left_out"]
        assert sorted(left_out) == sorted(PROVIDERS), shape
        expected = {"reasoning_length": "empty", "tool_calls": "tool_calls", "whitespace": "empty"}
        assert all(v["shape"] == expected.get(shape, "too_long") for v in left_out.values()), left_out
    assert "250000 characters" in incomplete["huge_text"]["left_out"]["oa-sdk"]["reason"]

    # Refused and cut off: shown, labelled, with the finish reason next to the vendor's.
    for source_id, message in final_answers(tasks["refusal"]).items():
        meta = tasks["refusal"]["metadata"]["responses"][source_id]
        assert meta["label"] == "Refused" and meta["shape"] == "refusal"
        assert message["content"]["text"].strip(), "a refusal is shown with its words or a placeholder"
    for source_id in PROVIDERS:
        meta = tasks["length"]["metadata"]["responses"][source_id]
        assert (meta["label"], meta["finish_reason"]) == ("Cut off at the length limit", "length")
        assert meta["vendor_finish_reason"] == ("length" if PROVIDERS[source_id][0] == "openai" else "max_tokens")
    # A content filter leaves the OpenAI answers out; Anthropic has none and refuses instead: two shown.
    filtered = tasks["content_filter"]
    assert sorted(final_answers(filtered)) == ["an-aiohttp", "an-httpx"]
    assert {v["shape"] for v in filtered["metadata"]["left_out"].values()} == {"filtered"}
    # Thinking goes into content.reasoning, never into the text; tool calls and cache tokens into metadata.
    thought = final_answers(tasks["thinking"])
    for source_id in ("an-httpx", "an-aiohttp", "oa-sdk", "oa-aiohttp"):
        reasoning = thought[source_id]["content"]["reasoning"]
        assert reasoning and reasoning[0]["content"] not in thought[source_id]["content"]["text"]
    redacted = tasks["redacted_thinking"]["metadata"]["responses"]["an-httpx"]
    assert redacted["reasoning_blocks"] == {"thinking": 0, "redacted": 1}
    assert "reasoning" not in final_answers(tasks["redacted_thinking"])["an-httpx"]["content"]
    cached = tasks["cached_input"]["metadata"]["responses"]["an-aiohttp"]["usage"]
    assert cached["cached_input_tokens"] > 0 and cached["cache_write_tokens"] > 0
    assert "usage_invalid" in tasks["usage_list"]["metadata"]["responses"]["oa-sdk"]["flags"]
    assert summary["tasks_written"] == len(tasks) == len(SHAPES) - 4

    # A rerun asks nothing again and writes the same tasks.
    before = (run_dir / "tasks.jsonl").read_bytes()
    total = sim.stats()["requests_total"]
    asyncio.run(generate_tasks(str(config)))
    assert sim.stats()["requests_total"] == total
    assert (run_dir / "tasks.jsonl").read_bytes() == before


def test_annotation_answers_chooses_what_annotators_see(sim: RunningSimulator, tmp_path: Path) -> None:
    """Leaving refusals out and showing tool-only answers is the project's choice; the store is the same."""
    config = shape_config(sim, tmp_path)
    data = config.read_text(encoding="utf-8")
    import yaml

    raw = yaml.safe_load(data)
    raw["annotation"]["answers"] = {"refusal": "leave_out", "tool_calls": "show", "max_answer_chars": 300_000}
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    summary = asyncio.run(generate_tasks(str(config)))
    run_dir = Path(summary["files"]["tasks"]).parent
    tasks = {task["metadata"]["prompt_id"]: task for task in read_jsonl(run_dir / "tasks.jsonl")}
    incomplete = {entry["prompt_id"] for entry in read_jsonl(run_dir / "incomplete.jsonl")}
    assert "refusal" in incomplete and "refusal" not in tasks
    assert "tool_calls" in tasks and "huge_text" in tasks
    labels = {m["label"] for m in tasks["tool_calls"]["metadata"]["responses"].values()}
    assert labels == {"Tool calls only, no text"}


def test_cached_input_is_priced_as_each_vendor_prices_it(sim: RunningSimulator, tmp_path: Path) -> None:
    """Anthropic: cache reads at 0.1x and writes at 1.25x the input price unless configured; OpenAI: cached
    input at ``cached_input_per_million`` when given (else the input price: never under-estimated)."""
    sim.configure(faults=[FaultRule(kind="cached_input")])
    price = {"input_per_million": 10.0, "output_per_million": 20.0}
    providers = [
        provider_entry(sim, "oa", "openai", "m-oa", price={**price, "cached_input_per_million": 2.5}),
        provider_entry(sim, "an", "anthropic", "m-an", price=price),
    ]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        json.dumps({"id": "p1", "prompt": "A question long enough to have a cache to read from, " * 4}) + "\n"
    )
    summary = asyncio.run(generate_tasks(str(write_config(tmp_path, providers, prompts))))
    oa, an = summary["providers"]["oa"], summary["providers"]["an"]
    assert oa["cached_input_tokens"] > 0 and an["cached_input_tokens"] > 0 and an["cache_write_tokens"] > 0
    expected_oa = (
        (oa["input_tokens"] - oa["cached_input_tokens"]) * 10
        + oa["cached_input_tokens"] * 2.5
        + oa["output_tokens"] * 20
    ) / 1e6
    uncached = an["input_tokens"] - an["cached_input_tokens"] - an["cache_write_tokens"]
    expected_an = (
        uncached * 10 + an["cached_input_tokens"] * 1.0 + an["cache_write_tokens"] * 12.5 + an["output_tokens"] * 20
    ) / 1e6
    assert math.isclose(oa["cost_usd"], expected_oa, rel_tol=1e-6, abs_tol=1e-9)
    assert math.isclose(an["cost_usd"], expected_an, rel_tol=1e-6, abs_tol=1e-9)


def test_batch_mode_stores_every_shape_once_as_online_calls_do(sim: RunningSimulator, tmp_path: Path) -> None:
    """The batch APIs carry the same shapes: read by the same parsers, stored once, never resubmitted."""
    config = shape_config(sim, tmp_path)
    import yaml

    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["providers"] = [
        {**entry, "mode": "batch", "batch_poll_s": 0.1}
        for entry in raw["providers"]
        if entry["source_id"] in ("oa-sdk", "an-httpx")
    ]
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    summary = asyncio.run(generate_tasks(str(config)))
    run_dir = Path(summary["files"]["tasks"]).parent
    rows = stored(run_dir / "responses.sqlite")
    assert len(rows) == 2 * len(SHAPES) and all(row["ok"] == 1 for row in rows.values())
    assert rows[("refusal", "an-httpx")]["finish_reason"] == "refusal"
    assert rows[("usage_overflow", "oa-sdk")]["input_tokens"] is None
    assert json.loads(rows[("tool_calls", "an-httpx")]["tool_calls"])[0]["name"] == "get_weather"
    tasks = {task["metadata"]["prompt_id"]: task for task in read_jsonl(run_dir / "tasks.jsonl")}
    assert {m["label"] for m in tasks["length"]["metadata"]["responses"].values()} == {"Cut off at the length limit"}
    before = sim.stats()["requests_total"]
    asyncio.run(generate_tasks(str(config)))
    assert sim.stats()["requests_total"] == before  # nothing submitted again


def test_rlhf_run_reports_prompts_left_without_answers_to_show_and_exits_0(
    sim: RunningSimulator, tmp_path: Path, prefect_api: str
) -> None:
    """Every call answered, one prompt's answers all empty: nothing to resume, so not exit 3, but said."""
    import os
    import subprocess
    import sys

    sim.configure(faults=[FaultRule(kind="whitespace", prompt_contains="SHAPE-whitespace:")])
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        json.dumps({"id": "blank", "prompt": "SHAPE-whitespace: say nothing."})
        + "\n"
        + json.dumps({"id": "fine", "prompt": "Say something."})
        + "\n"
    )
    providers = [
        provider_entry(sim, "oa", "openai", "m-oa"),
        provider_entry(sim, "an", "anthropic", "m-an"),
    ]
    config = write_config(tmp_path, providers, prompts)
    rlhf = str(Path(sys.executable).with_name("rlhf"))
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    done = subprocess.run([rlhf, "run", str(config), "-q"], capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 prompt(s) have too few answers to show annotators" in done.stdout + done.stderr
    incomplete = read_jsonl(tmp_path / "out" / "b1" / "incomplete.jsonl")
    assert [entry["prompt_id"] for entry in incomplete] == ["blank"]
    assert "2 left out" in incomplete[0]["reason"]
