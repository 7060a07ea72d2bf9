"""The Prefect run report fits a laptop screen: a narrow markdown report, the detail in three small tables.

Width bound, measured in chromium on Prefect 3.9's UI: at a 1366 px window an artifact gets 810 px
(724 px at 1280, 884 px at 1440), and the UI never wraps a table cell. Table text is ~14 px, about
7.5 px a character plus ~24 px of padding a column; the markdown table's row of 81 characters renders
in 692 px. So the markdown keeps every line within ``MAX_LINE`` (100) characters, prose wrapped, and the
detail is split into tables of at most seven short columns: the worst case below (32-character
provider ids, a 38-character model name) measured 787, 762 and 810 px (the failures table, stretched
to the width). The old single table measured 3326 px, its failures column alone 1694 px.
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
from flows.reporting.report import (
    MAX_CELL,
    MAX_LINE,
    failure_rows,
    markdown_report,
    outcome_message,
    provider_rows,
    publish_report,
    usage_rows,
)

MAX_TABLE_LINE = 100
MAX_COLUMNS = 7


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


def test_the_markdown_report_fits_a_laptop_screen() -> None:
    summary = wide_summary()
    summary["providers"]["a-provider-id-far-longer-than-anyone-would-write"] = tally("m", 10, 10, {})
    markdown = markdown_report(summary, "rlhf-helpfulness-q4-2026-11-27-a")
    lines = table_lines(markdown)
    assert len(lines) == 2 + len(summary["providers"])
    assert max(len(line) for line in lines) <= MAX_TABLE_LINE, "\n".join(lines)
    assert "| a-provider-id-far-longer-than-a… |" in markdown  # shortened in the table only
    # Every line fits, prose wrapped (a soft line break renders as a space).
    assert max(len(line) for line in markdown.splitlines()) <= MAX_LINE, markdown
    # Free text never widens the table: the failure reasons are a list under it, which wraps.
    assert "| failures" not in markdown and "| model" not in markdown
    assert "- gpt-4o-2024-11-20-temperature-07: connection ×12, http_500 ×340" in markdown
    assert "- llama-3.1-70b-instruct-vllm: connection ×5; cut off after 5 failures in a row (connection)" in markdown
    note = " ".join(markdown.split("Per provider: ")[1].split("\n\n")[0].split())
    assert note == (
        "the model and its calls in the table artifact `rlhf-helpfulness-q4-2026-11-27-a-providers`; retries, "
        "latency, tokens and cost in `rlhf-helpfulness-q4-2026-11-27-a-usage`; every failure reason in "
        "`rlhf-helpfulness-q4-2026-11-27-a-failures`."
    )
    assert "≥ $370.3700 (no price: llama-3.1-70b-instruct-vllm)" in markdown  # a partial cost says so
    assert markdown.splitlines()[2].startswith("**Incomplete: ")


def test_a_wrapped_line_never_turns_into_a_list_or_a_heading() -> None:
    """Error text can hold ``- x``, ``1. x`` or ``# x``: where a wrap puts one at the start of a line it is
    escaped, so the paragraph or list item goes on instead of a new list or heading starting."""
    escaped = set()
    for filler in range(1, 80):  # every place the wrap can fall
        summary = wide_summary()
        summary["providers"]["llama-3.1-70b-instruct-vllm"]["breaker"] = (
            "cut off (last: http_400: " + "x" * filler + " - not a list, 1. nor this, # nor this, > nor this)"
        )
        lines = markdown_report(summary).splitlines()
        assert max(len(line) for line in lines) <= MAX_LINE
        for line in lines[lines.index("Failures:") + 2 :]:
            if line.startswith("  "):  # a list item going on
                assert not re.match(r"\s*([-+*] |\d+[.)] |#+ |>)", line), line
                escaped.update(m.group(1) for m in [re.match(r"\s*(\\- |1\\\. |\\# |\\>)", line)] if m)
    assert escaped == {"\\- ", "1\\. ", "\\# ", "\\>"}


def test_the_table_artifacts_keep_every_detail_in_narrow_tables() -> None:
    summary = wide_summary()
    calls = {row["provider"]: row for row in provider_rows(summary)}
    usage = {row["provider"]: row for row in usage_rows(summary)}
    assert set(calls) == set(usage) == set(summary["providers"])
    for source_id, p in summary["providers"].items():
        row = calls[source_id]
        assert (row["model"], row["answered"], row["failed"], row["skipped"]) == (
            p["model"],
            p["answered"],
            p["failed"],
            p["skipped"] + p["interrupted"],
        )
        row = usage[source_id]
        assert (row["retries"], row["tokens_in"], row["tokens_out"], row["p50_ms"], row["p95_ms"], row["cost_usd"]) == (
            p["retries"],
            p["input_tokens"],
            p["output_tokens"],
            p["latency_ms_p50"],
            p["latency_ms_p95"],
            p["cost_usd"],
        )
    failures = failure_rows(summary)
    assert failures[:2] == [
        {"provider": "gpt-4o-2024-11-20-temperature-07", "reason": "connection", "calls": 12},
        {"provider": "gpt-4o-2024-11-20-temperature-07", "reason": "http_500", "calls": 340},
    ]
    assert {
        "provider": "llama-3.1-70b-instruct-vllm",
        "reason": "skipped: cut off after 5 failures in a row…",
        "calls": 99_995,
    } in failures
    for rows in (provider_rows(summary), usage_rows(summary), failures):
        assert all(len(row) <= MAX_COLUMNS for row in rows)
        assert all(len(str(value)) <= MAX_CELL for row in rows for value in row.values())


def test_a_cut_off_reason_is_shortened_to_what_happened_in_the_failures_table() -> None:
    summary = wide_summary()
    summary["providers"]["llama-3.1-70b-instruct-vllm"]["breaker"] = (
        "cut off after 5 consecutive failures (last: http_401: Error code: 401 - {'error': {'message': 'Incorrect "
        "API key provided: sk-fa****1234. You can find your API key at https://platform.openai.com/account/api-keys.'}})"
    )
    summary["providers"]["llama-3.1-70b-instruct-vllm"]["interrupted"] = 7
    rows = [row for row in failure_rows(summary) if row["provider"] == "llama-3.1-70b-instruct-vllm"]
    assert rows == [
        {"provider": "llama-3.1-70b-instruct-vllm", "reason": "connection", "calls": 5},
        {
            "provider": "llama-3.1-70b-instruct-vllm",
            "reason": "skipped: cut off after 5 consecutive failures",
            "calls": 99_995,
        },
        {"provider": "llama-3.1-70b-instruct-vllm", "reason": "not made (the run was stopped)", "calls": 7},
    ]


def test_outcome_messages() -> None:
    summary = wide_summary()
    for p in summary["providers"].values():
        p.update(failed=0, failure_reasons={}, skipped=0, breaker=None, answered=p["requested"])
    summary["incomplete"] = 0
    assert outcome_message(summary) == "Complete: 400000/400000 call(s) answered; 297000 task(s) written."
    summary["incomplete"] = 12  # every call answered: annotation.answers left some out, nothing to rerun
    assert outcome_message(summary) == (
        "Complete: 400000/400000 call(s) answered; 297000 task(s) written; 12 of 100000 prompt(s) have too few "
        "answers to show annotators: annotation.answers leaves some out (see left_out in incomplete.jsonl; a "
        "rerun changes nothing)."
    )
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

    found = {a.key: a for a in asyncio.run(artifacts())}
    key = "rlhf-test-project-b1"
    assert set(found) == {f"{key}-report", f"{key}-providers", f"{key}-usage", f"{key}-failures"}
    markdown = found[f"{key}-report"].data
    lines = table_lines(markdown)
    assert len(lines) == 5 and max(len(line) for line in lines) <= MAX_TABLE_LINE, "\n".join(lines)
    assert re.search(r"^- llama-3\.1-70b-instruct-vllm: connection ×\d+; cut off", markdown, re.M), markdown

    def rows_of(suffix: str) -> list[dict[str, Any]]:
        data = found[f"{key}-{suffix}"].data
        return json.loads(data) if isinstance(data, str) else data

    by_provider = {row["provider"]: row for row in rows_of("providers")}
    assert set(by_provider) == {p["source_id"] for p in providers}
    assert by_provider["llama-3.1-70b-instruct-vllm"]["model"] == "meta-llama/Meta-Llama-3.1-70B-Instruct"
    failures = [row for row in rows_of("failures") if row["provider"] == "llama-3.1-70b-instruct-vllm"]
    assert [row["reason"] for row in failures] == ["connection", "skipped: cut off after 2 consecutive failures"]
    by_provider = {row["provider"]: row for row in rows_of("usage")}
    assert by_provider["gpt-4o-2024-11-20-temperature-07"]["cost_usd"] > 0
