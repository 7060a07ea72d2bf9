"""The Prefect run report fits a screen: a narrow markdown table, the detail in the table artifact.

Width bound: at a 1400 px browser window the Prefect UI leaves roughly 1000 px to an artifact's
markdown once its side bar and the page margins are taken. Table text is ~14 px, about 8 px a
character on average, and the spaces and bars of a markdown row stand in for the cell padding; so a
table row of at most 100 characters renders in about 800 px and never needs sideways scrolling.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from flows.reporting import report
from flows.reporting.report import markdown_report, outcome_message, provider_rows, publish_report

MAX_TABLE_LINE = 100
DETAIL = ("model", "requested", "failures", "retries", "p50_ms", "p95_ms", "tokens_in", "tokens_out", "cost_usd")


def tally(model: str, requested: int, answered: int, failures: dict[str, int], **extra: Any) -> dict[str, Any]:
    tally = {
        "model": model,
        "requested": requested,
        "answered": answered,
        "failed": sum(failures.values()),
        "failure_reasons": failures,
        "skipped": 0,
        "interrupted": 0,
        "breaker": None,
        "called_this_run": requested,
        "reused_from_store": 0,
        "retries": 17,
        "input_tokens": 1_234_567,
        "output_tokens": 9_876_543,
        "cost_usd": 123.456789,
        "latency_ms_p50": 1234.5,
        "latency_ms_p95": 98765.4,
        "limits": {},
    }
    tally.update(extra)
    return tally


def wide_summary() -> dict[str, Any]:
    """A realistic worst case: long source ids and model names, many failure reasons, a breaker."""
    many = {"connection": 12, "http_500": 340, "http_529": 77, "rate_limited": 5, "timeout": 1021, "malformed": 2}
    providers = {
        "gpt-4o-2024-11-20-temperature-07": tally("gpt-4o-2024-11-20", 100_000, 98_000, many),
        "claude-sonnet-4-5-20250929": tally("claude-sonnet-4-5-20250929", 100_000, 99_990, {"http_529": 10}),
        "llama-3.1-70b-instruct-vllm": tally(
            "meta-llama/Meta-Llama-3.1-70B-Instruct",
            100_000,
            0,
            {"connection": 5},
            skipped=99_995,
            breaker="cut off after 5 failures in a row (connection)",
            cost_usd=None,
            latency_ms_p50=None,
            latency_ms_p95=None,
        ),
        "qwen2.5-72b#3": tally("Qwen/Qwen2.5-72B-Instruct", 100_000, 100_000, {}),
    }
    return {
        "project": "helpfulness-q4",
        "batch": "2026-11-27-a",
        "layout": "pairwise",
        "prompts": 100_000,
        "prompts_tasked": 99_000,
        "incomplete": 1_000,
        "prompts_filtered": 0,
        "tasks_written": 297_000,
        "rejected": 3,
        "interrupted": False,
        "wall_s": 5123.4,
        "cost_usd": 370.37,
        "cost_no_price": ["llama-3.1-70b-instruct-vllm"],
        "providers": providers,
        "files": {"tasks": "/data/out/2026-11-27-a/tasks.jsonl"},
    }


def table_lines(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def test_the_markdown_table_fits_a_1400px_screen() -> None:
    summary = wide_summary()
    markdown = markdown_report(summary, "rlhf-helpfulness-q4-2026-11-27-a-providers")
    lines = table_lines(markdown)
    assert len(lines) == 2 + len(summary["providers"])
    assert max(len(line) for line in lines) <= MAX_TABLE_LINE, "\n".join(lines)
    # Free text never widens the table: the failure reasons are a list under it, which wraps.
    assert "| failures" not in markdown and "| model" not in markdown
    assert "- gpt-4o-2024-11-20-temperature-07: connection ×12, http_500 ×340" in markdown
    assert "- llama-3.1-70b-instruct-vllm: connection ×5; cut off after 5 failures in a row (connection)" in markdown
    assert "the table artifact `rlhf-helpfulness-q4-2026-11-27-a-providers`" in markdown
    assert "≥ $370.3700 (no price: llama-3.1-70b-instruct-vllm)" in markdown  # a partial cost says so
    assert markdown.splitlines()[2].startswith("**Incomplete: ")


def test_the_table_artifact_keeps_every_detail() -> None:
    summary = wide_summary()
    rows = {row["provider"]: row for row in provider_rows(summary)}
    assert set(rows) == set(summary["providers"])
    for source_id, p in summary["providers"].items():
        row = rows[source_id]
        assert set(DETAIL) <= set(row)
        assert (row["model"], row["retries"], row["tokens_in"], row["tokens_out"], row["p50_ms"], row["cost_usd"]) == (
            p["model"],
            p["retries"],
            p["input_tokens"],
            p["output_tokens"],
            p["latency_ms_p50"],
            p["cost_usd"],
        )
    assert rows["gpt-4o-2024-11-20-temperature-07"]["failures"].startswith("connection: 12, http_500: 340")


def test_outcome_messages() -> None:
    summary = wide_summary()
    for p in summary["providers"].values():
        p.update(failed=0, failure_reasons={}, skipped=0, breaker=None, answered=p["requested"])
    summary["incomplete"] = 0
    assert outcome_message(summary) == "Complete: 400000/400000 call(s) answered; 297000 task(s) written."
    summary["interrupted"] = True
    summary["providers"]["qwen2.5-72b#3"].update(answered=10, interrupted=99_990)
    summary["incomplete"] = 99_990
    assert outcome_message(summary, 15) == (
        "Interrupted by signal 15: 300010/400000 call(s) answered (qwen2.5-72b#3: 99990 not made); 99990 of 100000 "
        "prompt(s) incomplete (too few answers). Every finished call is stored: rerun the same config to resume."
    )


def test_a_report_that_cannot_be_published_does_not_fail_the_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import httpx

    async def unreachable(**_: Any) -> None:
        raise httpx.ConnectError("All connection attempts failed")

    monkeypatch.setattr(report, "acreate_markdown_artifact", unreachable)
    with caplog.at_level(logging.WARNING, logger="flows.reporting.report"):
        key = asyncio.run(publish_report(wide_summary()))
    assert key == "rlhf-helpfulness-q4-2026-11-27-a"
    assert [r.getMessage() for r in caplog.records] == [
        "run report not published to Prefect: ConnectError: All connection attempts failed"
    ]
    assert all(r.exc_info is None for r in caplog.records)  # one line, no traceback


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_the_published_artifacts(sim: Any, tmp_path: Path) -> None:
    """A real run's artifacts, read back from the Prefect API: the narrow markdown and the full table."""
    from conftest import closed_port_url, provider_entry, write_config, write_prompts
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.generation.generate import generate_tasks

    providers = [
        provider_entry(
            sim,
            "gpt-4o-2024-11-20-temperature-07",
            "openai",
            "gpt-4o-2024-11-20",
            price={"input_per_million": 2.5, "output_per_million": 10},
        ),
        provider_entry(sim, "claude-sonnet-4-5-20250929", "anthropic", "claude-sonnet-4-5-20250929"),
        provider_entry(
            sim,
            "llama-3.1-70b-instruct-vllm",
            "openai",
            "meta-llama/Meta-Llama-3.1-70B-Instruct",
            base_url=closed_port_url() + "/v1",
            max_retries=0,
            breaker_threshold=2,
        ),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 6), chunk_size=3)
    state = asyncio.run(generate_tasks(str(config), return_state=True))

    async def artifacts() -> list[Any]:
        async with get_client() as client:
            flow_run_id = state.state_details.flow_run_id
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )

    found = {a.type: a for a in asyncio.run(artifacts())}
    markdown = found["markdown"].data
    lines = table_lines(markdown)
    assert len(lines) == 5 and max(len(line) for line in lines) <= MAX_TABLE_LINE, "\n".join(lines)
    assert re.search(r"^- llama-3\.1-70b-instruct-vllm: connection ×\d+; cut off", markdown, re.M), markdown
    rows = json.loads(found["table"].data) if isinstance(found["table"].data, str) else found["table"].data
    by_provider = {row["provider"]: row for row in rows}
    assert set(by_provider) == {p["source_id"] for p in providers}
    for row in rows:
        assert set(DETAIL) <= set(row)
    assert by_provider["llama-3.1-70b-instruct-vllm"]["model"] == "meta-llama/Meta-Llama-3.1-70B-Instruct"
    assert re.match(r"connection: \d+; cut off", by_provider["llama-3.1-70b-instruct-vllm"]["failures"])
    assert by_provider["gpt-4o-2024-11-20-temperature-07"]["cost_usd"] > 0
