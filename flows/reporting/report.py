"""The run report, published as Prefect artifacts, and the one-line outcome of a run (its state message).

Two artifacts per run: a markdown summary sized to be read on a screen (counts, a narrow per-provider
table, failure reasons as text that wraps), and a table artifact holding every per-provider figure
(model, retries, tokens, both latencies, cost, the failure reasons), which the Prefect UI shows as a
sortable table with its own scrolling.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from flows.reporting.summary import summary_cost_text

logger = logging.getLogger(__name__)

# The markdown table: the columns an operator scans first. Everything else is in the table artifact.
MARKDOWN_COLUMNS = ("provider", "answered", "failed", "skipped", "p95 ms", "cost USD")


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lower-case letters, digits and dashes) from free text."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")[:200]


def provider_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per provider: requested, answered, failed by reason, retries, latency, tokens, cost."""
    rows = []
    for source_id, p in summary["providers"].items():
        rows.append(
            {
                "provider": source_id,
                "model": p["model"],
                "requested": p["requested"],
                "answered": p["answered"],
                "failed": p["failed"],
                "failures": _reasons(p, ": ") or "-",
                "skipped": p["skipped"] + p["interrupted"],
                "retries": p["retries"],
                "p50_ms": p["latency_ms_p50"],
                "p95_ms": p["latency_ms_p95"],
                "tokens_in": p["input_tokens"],
                "tokens_out": p["output_tokens"],
                "cost_usd": p["cost_usd"],
                "mode": p.get("mode", "online"),
                "batch_saving_usd": p.get("batch_saving_usd"),
            }
        )
    return rows


def _reasons(p: dict[str, Any], sep: str = " ×") -> str:
    """A provider's failure reasons with counts, and its breaker if it was cut off."""
    reasons = ", ".join(f"{k}{sep}{v}" for k, v in p["failure_reasons"].items())
    if p.get("breaker"):
        reasons = f"{reasons}; {p['breaker']}" if reasons else str(p["breaker"])
    return reasons


def markdown_report(summary: dict[str, Any], table_key: str | None = None) -> str:
    """The summary as markdown: counts, a narrow provider table, then the failure reasons as text.

    ``table_key`` names the table artifact with the per-provider detail the markdown leaves out.
    """
    lines = [
        f"# {summary['project']} / {summary['batch']}",
        "",
        f"**{outcome_message(summary)}**",
        "",
        f"- prompts: {summary['prompts']} — with tasks: {summary['prompts_tasked']}, incomplete: "
        f"{summary['incomplete']}, filtered: {summary['prompts_filtered']}",
        f"- tasks written: {summary['tasks_written']} ({summary['layout']} layout); rejected input records: {summary['rejected']}",
        f"- estimated cost: {summary_cost_text(summary)}"
        + (f" (batch mode saved ${summary['batch_saving_usd']:.4f})" if summary.get("batch_saving_usd") else "")
        + f"; wall time: {summary['wall_s']} s"
        + ("; **interrupted**" if summary["interrupted"] else ""),
        "",
    ]
    providers = summary["providers"]
    if providers:
        lines.append("| " + " | ".join(MARKDOWN_COLUMNS) + " |")
        lines.append("|---|" + "---:|" * (len(MARKDOWN_COLUMNS) - 1))
        for source_id, p in providers.items():
            cells = (
                source_id,
                f"{p['answered']}/{p['requested']}",
                str(p["failed"]),
                str(p["skipped"] + p["interrupted"]),
                "-" if p["latency_ms_p95"] is None else f"{p['latency_ms_p95']:.0f}",
                "-" if p["cost_usd"] is None else f"{p['cost_usd']:.4f}",
            )
            lines.append("| " + " | ".join(cells) + " |")
        failures = [(sid, _reasons(p)) for sid, p in providers.items() if _reasons(p)]
        if failures:
            lines += ["", "Failures:", ""]
            lines += [f"- {sid}: {text}" for sid, text in failures]
        if table_key:
            lines += ["", f"Models, retries, tokens and p50 latency: the table artifact `{table_key}`."]
    lines += ["", f"Files: `{summary['files'].get('tasks', '')}`"]
    return "\n".join(lines)


def outcome_message(summary: dict[str, Any], signum: int | None = None) -> str:
    """One line saying how the run ended and, when it is not complete, what is missing.

    Used as the flow run's state message (Prefect shows it with the state) and atop the report.
    """
    providers = summary["providers"]
    answered = sum(p["answered"] for p in providers.values())
    requested = sum(p["requested"] for p in providers.values())
    parts = []
    for sid, p in providers.items():
        missing = []
        if p["failed"]:
            missing.append(f"{p['failed']} failed ({', '.join(f'{k} ×{v}' for k, v in p['failure_reasons'].items())})")
        if p["skipped"]:
            missing.append(f"{p['skipped']} skipped" + (f" ({p['breaker']})" if p.get("breaker") else ""))
        if p["interrupted"]:
            missing.append(f"{p['interrupted']} not made")
        if missing:
            parts.append(f"{sid}: {', '.join(missing)}")
    detail = f"{answered}/{requested} call(s) answered" + (f" ({'; '.join(parts)})" if parts else "")
    prompts = f"{summary['incomplete']} of {summary['prompts']} prompt(s) incomplete (too few answers)"
    pending = summary.get("batches_pending") or []
    if pending and not summary["interrupted"]:
        requests = sum(job["requests"] for job in pending)
        return (
            f"Waiting for batches: {len(pending)} provider batch(es) with {requests} request(s) still running; "
            f"{detail}. No tasks written yet: a later run of the same config collects them (nothing is submitted "
            "twice) and writes the tasks."
        )
    if summary["interrupted"]:
        by = f" by signal {signum}" if signum else ""
        return f"Interrupted{by}: {detail}; {prompts}. Every finished call is stored: rerun the same config to resume."
    if parts or summary["incomplete"]:
        return (
            f"Incomplete: {detail}; {prompts}. Rerun the same config to make the missing calls "
            "(--retry-failed also retries the failed ones)."
        )
    return f"Complete: {detail}; {summary['tasks_written']} task(s) written."


async def publish_report(summary: dict[str, Any], part: str | None = None) -> str:
    """Create the markdown and table artifacts of a run (inside a flow run); returns the key prefix.

    ``part`` names a piece of a batch (a shard): its report gets its own keys, so the batch's keys
    always hold the whole batch's report. A report that cannot be published (the Prefect API is
    unreachable) is logged in one line and does not fail the run: its outputs are written already.
    """
    key = artifact_key("rlhf", summary["project"], summary["batch"], *([part] if part else []))
    try:
        await acreate_markdown_artifact(
            markdown=markdown_report(summary, f"{key}-providers"),
            key=f"{key}-report",
            description=f"rlhf run report for {summary['project']} / {summary['batch']}",
        )
        await acreate_table_artifact(
            table=provider_rows(summary),
            key=f"{key}-providers",
            description="Per-provider requests, failures, retries, latency, tokens and cost",
        )
    except Exception as exc:  # noqa: BLE001 - the report is an extra; summary.json has it all
        logger.warning("run report not published to Prefect: %s: %s", type(exc).__name__, exc)
    return key
