"""The run report: a markdown summary and a per-provider table, published as Prefect artifacts."""

from __future__ import annotations

import re
from typing import Any

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lower-case letters, digits and dashes) from free text."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")[:200]


def provider_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per provider: requested, answered, failed by reason, retries, latency, tokens, cost."""
    rows = []
    for source_id, p in summary["providers"].items():
        rows.append({
            "provider": source_id,
            "model": p["model"],
            "requested": p["requested"],
            "answered": p["answered"],
            "failed": p["failed"],
            "failures": ", ".join(f"{k}: {v}" for k, v in p["failure_reasons"].items()) or "-",
            "skipped": p["skipped"] + p["interrupted"],
            "retries": p["retries"],
            "p50_ms": p["latency_ms_p50"],
            "p95_ms": p["latency_ms_p95"],
            "tokens_in": p["input_tokens"],
            "tokens_out": p["output_tokens"],
            "cost_usd": p["cost_usd"],
        })
    return rows


def markdown_report(summary: dict[str, Any]) -> str:
    """The summary as markdown: counts, then the provider table."""
    cost = f"${summary['cost_usd']:.4f}" if summary.get("cost_usd") is not None else "n/a (no prices in the config)"
    lines = [
        f"# {summary['project']} / {summary['batch']}",
        "",
        f"- prompts: {summary['prompts']} — with tasks: {summary['prompts_tasked']}, incomplete: "
        f"{summary['incomplete']}, filtered: {summary['prompts_filtered']}",
        f"- tasks written: {summary['tasks_written']} ({summary['layout']} layout); rejected input records: {summary['rejected']}",
        f"- estimated cost: {cost}; wall time: {summary['wall_s']} s" + ("; **interrupted**" if summary["interrupted"] else ""),
        "",
    ]
    rows = provider_rows(summary)
    if rows:
        header = list(rows[0])
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for row in rows:
            lines.append("| " + " | ".join("-" if row[k] is None else str(row[k]) for k in header) + " |")
    lines += ["", f"Files: `{summary['files'].get('tasks', '')}`"]
    return "\n".join(lines)


async def publish_report(summary: dict[str, Any], part: str | None = None) -> str:
    """Create the markdown and table artifacts of a run (inside a flow run); returns the key prefix.

    ``part`` names a piece of a batch (a shard): its report gets its own keys, so the batch's keys
    always hold the whole batch's report.
    """
    key = artifact_key("rlhf", summary["project"], summary["batch"], *([part] if part else []))
    await acreate_markdown_artifact(markdown=markdown_report(summary), key=f"{key}-report",
                             description=f"rlhf run report for {summary['project']} / {summary['batch']}")
    await acreate_table_artifact(table=provider_rows(summary), key=f"{key}-providers",
                          description="Per-provider requests, failures, retries, latency, tokens and cost")
    return key
