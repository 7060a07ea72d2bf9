"""The run report, published as Prefect artifacts, and how a run ends: its state and its one-line outcome.

Four artifacts per run, each sized for a laptop screen (the Prefect UI gives an artifact about 810 px
of a 1366 px window, and never wraps a table cell): a markdown summary (counts, a narrow per-provider
table, failure reasons as text, every line at most :data:`MAX_LINE` characters), and three small
sortable tables: ``-providers`` (model and what became of the calls), ``-usage`` (retries, latency,
tokens, cost) and ``-failures`` (one row per provider and reason, cut-offs shortened).

A run that leaves calls failed, skipped or not made ends Failed, named :data:`INCOMPLETE`, with the
outcome as its message (:func:`calls_missing`); its summary travels in a :class:`RunIncomplete`.
"""

from __future__ import annotations

import io
import logging
import re
import textwrap
from typing import Any

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from flows.reporting.summary import summary_cost_text, summary_table

logger = logging.getLogger(__name__)

# The markdown table: the columns an operator scans first. Everything else is in the table artifacts.
MARKDOWN_COLUMNS = ("provider", "answered", "failed", "skipped", "p95 ms", "cost USD")
# No line of the markdown report is longer (prose is wrapped, long provider ids are shortened in its table).
MAX_LINE = 100
# A cell of a table artifact: the UI never wraps one, so longer text (a cut-off's reason) is shortened.
MAX_CELL = 48
# The name of the final state of a run that left calls failed, skipped or not made (its type is FAILED).
INCOMPLETE = "Incomplete"
BUDGET_REACHED = "BudgetReached"
# Set on the run's own log records (its start, chunks, cut-offs, failures, table): they go to the flow run's
# logs in Prefect, and ``rlhf run`` keeps them off its console unless -v (``flows/cli/console_logs.py``).
RUN_STORY = "rlhf_story"


class RunIncomplete(Exception):
    """A run that finished with calls failed, skipped or not made: it ends Failed, named ``Incomplete``.

    A plain call of the flow raises it, carrying the summary (``.summary``); with ``return_state=True`` it is
    ``state.result(raise_on_failure=False)``. The outputs are written: a rerun of the same config resumes.
    """

    def __init__(self, message: str, summary: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.summary = summary


class BudgetReached(RunIncomplete):
    """A run that stopped sending at a budget limit: it ends Failed, named ``BudgetReached`` (``rlhf run`` exits 8).

    Calls in flight were finished and stored, and the outputs written; rerunning with the same budget sends
    nothing, raising the limit continues where the run stopped."""


def budget_reached(summary: dict[str, Any]) -> bool:
    """True if the run stopped sending at a budget limit (README "Budgets")."""
    return bool((summary.get("budget") or {}).get("reached"))


def calls_missing(summary: dict[str, Any]) -> bool:
    """True if the run left calls failed, skipped or not made: it ends :data:`INCOMPLETE` (``rlhf run`` exits 3).

    Prompts short of answers only because ``annotation.answers`` leaves some out are not: every call was
    answered, and a rerun changes nothing. A run that returned with batches pending is not either.
    """
    if summary.get("batches_pending") and not summary["interrupted"]:
        return False
    if budget_reached(summary):
        return True
    return any(
        p["failed"] or p["skipped"] or p["interrupted"] or p.get("over_budget") for p in summary["providers"].values()
    )


def ended_incomplete(state: Any) -> bool:
    """True for the final state of a run that finished incomplete (Failed, named :data:`INCOMPLETE`, or
    :data:`BUDGET_REACHED`: it wrote its outputs too)."""
    return state is not None and state.is_failed() and state.name in (INCOMPLETE, BUDGET_REACHED)


def _shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: cut at a word boundary if one is near, marked with "…"."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if " " in cut[width // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:(") + "…"


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lower-case letters, digits and dashes) from free text."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")[:200]


def provider_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``-providers`` table: per provider its model and what became of its calls.

    The calls requested are ``answered + failed + skipped`` (skipped counts the calls not made too);
    ``mode`` is a column only when some provider runs in batch mode.
    """
    batch = any(p.get("mode") == "batch" for p in summary["providers"].values())
    rows = []
    for source_id, p in summary["providers"].items():
        row = {
            "provider": source_id,
            "model": p["model"],
            "answered": p["answered"],
            "failed": p["failed"],
            "skipped": p["skipped"] + p["interrupted"],
        }
        if batch:
            row["mode"] = p.get("mode", "online")
        rows.append(row)
    return rows


def usage_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``-usage`` table: per provider its retries, latency, tokens and cost (and batch saving, in batch runs)."""
    batch = any(p.get("mode") == "batch" for p in summary["providers"].values())
    rows = []
    for source_id, p in summary["providers"].items():
        row = {
            "provider": source_id,
            "retries": p["retries"],
            "p50_ms": p["latency_ms_p50"],
            "p95_ms": p["latency_ms_p95"],
            "tokens_in": p["input_tokens"],
            "tokens_out": p["output_tokens"],
            "cost_usd": p["cost_usd"],
        }
        if batch:
            row["saved_usd"] = p.get("batch_saving_usd")
        rows.append(row)
    return rows


def failure_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``-failures`` table: one row per provider (or judge) and reason a call has no answer: each
    failure reason, the calls skipped (with the cut-off's reason, shortened) and those not made."""
    judges = {f"{sid} (judge)": p for sid, p in (summary.get("judges") or {}).items()}
    rows = []
    for source_id, p in {**summary["providers"], **judges}.items():
        rows += [{"provider": source_id, "reason": k, "calls": v} for k, v in p["failure_reasons"].items()]
        if p["skipped"]:
            cut_off = str(p["breaker"]).split(" (last:")[0] if p.get("breaker") else ""
            reason = f"skipped: {cut_off}" if cut_off else "skipped"
            rows.append({"provider": source_id, "reason": _shorten(reason, MAX_CELL), "calls": p["skipped"]})
        if p["interrupted"]:
            rows.append({"provider": source_id, "reason": "not made (the run was stopped)", "calls": p["interrupted"]})
    return rows


def _reasons(p: dict[str, Any], sep: str = " ×") -> str:
    """A provider's failure reasons with counts, and its breaker if it was cut off."""
    reasons = ", ".join(f"{k}{sep}{v}" for k, v in p["failure_reasons"].items())
    if p.get("breaker"):
        reasons = f"{reasons}; {p['breaker']}" if reasons else str(p["breaker"])
    return reasons


def _delivery_lines(delivery: dict[str, Any] | None) -> list[str]:
    """The report's lines on the delivery to Label Studio as the run went (none without one)."""
    if not delivery:
        return []
    there = delivery["imported"] + delivery["already_delivered"]
    lines = [f"- delivered to Label Studio as the run went: {there} task(s) ({delivery['imported']} imported now)"]
    if delivery.get("undelivered"):
        lines += [
            f"- **not delivered: {delivery['undelivered_tasks']} task(s)** of {len(delivery['undelivered'])} "
            "chunk(s); complete (nothing is imported twice):",
            f"  `{delivery['complete_with']}`",
        ]
    return lines


def markdown_report(summary: dict[str, Any], key: str | None = None) -> str:
    """The summary as markdown: counts, a narrow provider table, then the failure reasons as text.

    ``key`` is the artifacts' key prefix: the note under the table names the table artifacts with the
    per-provider detail the markdown leaves out. No line is longer than :data:`MAX_LINE` characters but a
    file path that is longer by itself.
    """
    lines = [
        _shorten(f"# {summary['project']} / {summary['batch']}", MAX_LINE),
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
        *_price_lines(summary),
        *_delivery_lines(summary.get("delivery")),
        "",
    ]
    providers = summary["providers"]
    if providers:
        lines.append("| " + " | ".join(MARKDOWN_COLUMNS) + " |")
        lines.append("|---|" + "---:|" * (len(MARKDOWN_COLUMNS) - 1))
        for source_id, p in providers.items():
            cells = (
                _shorten(source_id, 32),
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
        if key:
            lines += [
                "",
                f"Per provider: the model and its calls in the table artifact `{key}-providers`; retries, "
                f"latency, tokens and cost in `{key}-usage`; every failure reason in `{key}-failures`.",
            ]
    lines += ["", f"Files: `{summary['files'].get('tasks', '')}`"]
    return "\n".join(_fit(lines))


# The start of a line that markdown would read as a list, a quote or a heading, not as a paragraph going on.
_BLOCK_START = re.compile(r"^(\s*)([-+*](?= |$)|>|#{1,6}(?= |$)|\d+(?=[.)](?: |$)))")


def _fit(lines: list[str]) -> list[str]:
    """Wrap the prose lines at :data:`MAX_LINE` characters (list items with their indent); table rows and
    headings are left alone. A continuation line that markdown would read as a new block is escaped."""
    fitted = []
    for line in lines:
        if len(line) <= MAX_LINE or line.startswith(("|", "#")):
            fitted.append(line)
            continue
        indent = "  " if line.startswith("- ") else ""
        wrapped = textwrap.wrap(
            line, MAX_LINE - 1, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
        )
        fitted.append(wrapped[0])
        fitted += [_BLOCK_START.sub(_escaped, part, count=1) for part in wrapped[1:]]
    return fitted


def _escaped(match: re.Match[str]) -> str:
    """``- x`` -> ``\\- x``; ``1. x`` -> ``1\\. x`` (a backslash escapes punctuation, not digits)."""
    indent, start = match.group(1), match.group(2)
    return indent + (start + "\\" if start.isdigit() else "\\" + start)


def _price_lines(summary: dict[str, Any]) -> list[str]:
    """Where each price came from (config, or the shipped table and its date), the budget, and a warning when
    the price table is out of date."""
    tallies = {**summary["providers"], **(summary.get("judges") or {})}
    sources = [f"{sid} {p['price_source']}" for sid, p in tallies.items() if p.get("price_source")]
    lines = [_shorten(f"- prices: {', '.join(sources)}", MAX_LINE)] if sources else []
    budget = summary.get("budget") or {}
    for name, lim in (budget.get("limits") or {}).items():
        if lim["unit"] == "usd":
            spent = f"${lim['spent']:.2f} spent of ${lim['limit']:.2f}"
        else:
            spent = f"{lim['spent']:,.0f} of {lim['limit']:,.0f} tokens spent"
        lines.append(f"- {name}: {spent}" + (" (reached)" if lim["reached"] else ""))
    if summary.get("price_warning"):
        lines.append(_shorten(f"- **warning**: {summary['price_warning']}", MAX_LINE))
    return lines


def missing_calls(tally: dict[str, Any], not_made: str = "not made") -> list[str]:
    """What a provider's tally (``summary.json``'s) lacks: failed calls by reason, skipped ones (and why),
    calls not made; empty when every call was answered."""
    missing = []
    if tally["failed"]:
        reasons = ", ".join(f"{k} ×{v}" for k, v in tally["failure_reasons"].items())
        missing.append(f"{tally['failed']} failed ({reasons})")
    if tally["skipped"]:
        missing.append(f"{tally['skipped']} skipped" + (f" ({tally['breaker']})" if tally.get("breaker") else ""))
    if tally["interrupted"]:
        missing.append(f"{tally['interrupted']} {not_made}")
    if tally.get("over_budget"):
        missing.append(f"{tally['over_budget']} not sent (budget reached)")
    return missing


def outcome_message(summary: dict[str, Any], signum: int | None = None) -> str:
    """One line saying how the run ended and, when it is not complete, what is missing.

    Used as the flow run's state message (Prefect shows it with the state) and atop the report.
    """
    providers = summary["providers"]
    answered = sum(p["answered"] for p in providers.values())
    requested = sum(p["requested"] for p in providers.values())
    parts = []
    for sid, p in providers.items():
        missing = missing_calls(p)
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
    if budget_reached(summary):
        return (
            f"Budget reached: {summary['budget']['message']}; {detail}; {prompts}. Calls in flight were finished "
            "and stored; rerunning with the same budget sends nothing, raise the limit to go on (nothing is paid twice)."
        )
    if parts:  # the run ends Incomplete (calls_missing)
        return (
            f"Incomplete: {detail}; {prompts}. Rerun the same config to make the missing calls "
            "(--retry-failed also retries the failed ones)."
        )
    complete = f"Complete: {detail}; {summary['tasks_written']} task(s) written"
    if summary["incomplete"]:  # every call answered: annotation.answers left some answers out
        return (
            f"{complete}; {summary['incomplete']} of {summary['prompts']} prompt(s) have too few answers to show "
            "annotators: annotation.answers leaves some out (see left_out in incomplete.jsonl; a rerun changes "
            "nothing)."
        )
    return f"{complete}."


async def publish_report(summary: dict[str, Any], part: str | None = None) -> str:
    """Create the markdown and table artifacts of a run (inside a flow run); returns the key prefix.

    ``part`` names a piece of a batch (a shard): its report gets its own keys, so the batch's keys
    always hold the whole batch's report. A report that cannot be published (the Prefect API is
    unreachable) is logged in one line and does not fail the run: its outputs are written already.
    The failures table is published also when it is empty, so its key never shows an earlier run's.
    """
    key = artifact_key("rlhf", summary["project"], summary["batch"], *([part] if part else []))
    title = f"{summary['project']} / {summary['batch']}"
    try:
        await acreate_markdown_artifact(
            markdown=markdown_report(summary, key), key=f"{key}-report", description=f"rlhf run report for {title}"
        )
        await acreate_table_artifact(
            table=provider_rows(summary),
            key=f"{key}-providers",
            description=f"{title}: per provider its model and its calls answered, failed and skipped",
        )
        await acreate_table_artifact(
            table=usage_rows(summary),
            key=f"{key}-usage",
            description=f"{title}: per provider its retries, latency, tokens and cost",
        )
        await acreate_table_artifact(
            table=failure_rows(summary),
            key=f"{key}-failures",
            description=f"{title}: calls without an answer, by provider and reason",
        )
    except Exception as exc:  # noqa: BLE001 - the report is an extra; summary.json has it all
        logger.warning("run report not published to Prefect: %s: %s", type(exc).__name__, exc)
    return key


def summary_text(summary: dict[str, Any]) -> str:
    """The table ``rlhf run`` prints at the end as plain text, for the flow run's logs: without the failures
    column (the logs give each provider's failures a line of their own) and never squeezed (a column
    squeezed to fit would wrap every cell; a long line wraps whole in the Logs tab)."""
    from rich import box
    from rich.console import Console

    table = summary_table(summary, failures=False)
    table.box, table.pad_edge = box.SIMPLE_HEAD, False
    console = Console(file=io.StringIO(), width=400, color_system=None, force_terminal=False)
    console.print(table)
    return "\n".join(line.rstrip() for line in console.file.getvalue().strip("\n").splitlines())  # type: ignore[attr-defined]
