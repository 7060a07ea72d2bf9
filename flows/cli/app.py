"""The ``rlhf`` command line: validate, run, status, deliver, harvest, export-dataset, schema, simulate."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from common.errors import InputError
from flows.cli.help import HelpTyper

if TYPE_CHECKING:
    from flows.generation.prepare import PreparedRun

app = HelpTyper(
    add_completion=False, no_args_is_help=True, help="Fan prompts out to LLM providers and build RLHF task shells."
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"rlhf-orchestrator {version('rlhf-orchestrator')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Fan prompts out to LLM providers and build RLHF task shells."""


console = Console(stderr=True, soft_wrap=True)  # never wrap: problem lines must stay grep-able
out = Console()
if not out.is_terminal:
    out = Console(width=160, soft_wrap=True)  # piped or captured: don't squeeze the summary table into 80 columns

EXIT_INPUT = 2
EXIT_FAILURES = 3
EXIT_OUTPUT = 4
EXIT_BUSY = 5
EXIT_PENDING = 6
EXIT_PLATFORM = 7
EXIT_BUDGET = 8  # README "Budgets": a budget limit was reached; what was answered is stored and written


def _error(message: object) -> None:
    """Print ``error: <message>`` on stderr; the message is printed as it is (no console markup in it)."""
    console.print(f"[red]error:[/red] {escape(str(message))}", highlight=False)


def _input_failure(exc: InputError) -> typer.Exit:
    _error(f"{len(exc.problems)} problem(s) found; nothing was called or written")
    console.print(exc.render(), highlight=False, markup=False)
    if exc.hint:
        console.print(exc.hint, highlight=False, markup=False)
    return typer.Exit(EXIT_INPUT)


def _store_failure(exc: Exception) -> typer.Exit:
    """The exit for a store that cannot be used: 2 unreadable, 4 unwritable (or failed mid-run), 5 in use."""
    from providers.store import StoreUnreadable
    from providers.store_lock import BatchBusy

    _error(exc)
    if isinstance(exc, BatchBusy):
        return typer.Exit(EXIT_BUSY)
    return typer.Exit(EXIT_INPUT if isinstance(exc, StoreUnreadable) else EXIT_OUTPUT)


@app.command()
def validate(
    config: Annotated[str, typer.Argument(help="Run config (YAML): a path, or an object-storage URL (s3://…).")],
    check_keys: Annotated[bool, typer.Option(help="Require every provider's API key variable to be set.")] = True,
) -> None:
    """Check the config, templates and the whole prompt file without calling any provider."""
    from flows.generation.prepare import prepare_run

    try:
        prepared = prepare_run(config, require_keys=check_keys)
    except InputError as exc:
        raise _input_failure(exc) from None
    cfg = prepared.config
    out.print(
        f"{config}: OK: {prepared.prompt_count} prompt(s) × {len(cfg.providers)} provider(s) = "
        f"{prepared.prompt_count * len(cfg.providers)} call(s); output in {cfg.run_dir}",
        highlight=False,
    )


@app.command()
def run(
    config: Annotated[str, typer.Argument(help="Run config (YAML): a path, or an object-storage URL (s3://…).")],
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Also retry calls whose stored result is an error.")
    ] = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Run the valid prompts; write the bad records to rejected.jsonl.")
    ] = False,
    run_date: Annotated[
        str | None,
        typer.Option("--date", help="YYYY-MM-DD for {date} in batch and prompts.path (default: today, UTC)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's INFO logs.")] = False,
    rescue_dir: Annotated[
        Path | None,
        typer.Option(help="Where answers go if the response store stops taking them (default: the system temp dir)."),
    ] = None,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait",
            help="Batch-mode providers: submit, collect what has ended, and return without waiting for the rest.",
        ),
    ] = False,
    stop_grace_s: Annotated[
        float | None,
        typer.Option(
            "--stop-grace-s",
            min=0,
            help="After SIGINT/SIGTERM, how long calls in flight may finish (and be stored) before the run "
            "writes and exits (default: $RLHF_STOP_GRACE_S, else 30).",
        ),
    ] = None,
    deliver: Annotated[
        str | None,
        typer.Option(
            "--deliver",
            help="label-studio: deliver each chunk's tasks as they are written (as rlhf deliver would; "
            "the options below, or the config's delivery: block).",
        ),
    ] = None,
    url: Annotated[str | None, typer.Option(help="With --deliver: the Label Studio URL.")] = None,
    token_env: Annotated[
        str | None, typer.Option(help="With --deliver: the variable holding the token (default LABEL_STUDIO_TOKEN).")
    ] = None,
    project_title: Annotated[
        str | None, typer.Option(help="With --deliver: the project title (default '<project> / <batch>').")
    ] = None,
    predictions: Annotated[
        str | None, typer.Option(help="With --deliver: all | half | none, as rlhf deliver --predictions.")
    ] = None,
    judge: Annotated[str | None, typer.Option(help="With --deliver: the judge annotators start from.")] = None,
) -> None:
    """Generate: send every prompt to every provider and write task shells and a summary.

    Exit codes:

    - 0: every call answered.
    - 2: bad input, or a store that is not readable (nothing called).
    - 3: finished, but some calls failed (an unforeseen exception included: reason `internal`) or were
      not made, so some prompts may lack answers: rerun, optionally with --retry-failed. In Prefect the
      flow run ends Incomplete (a Failed-type state). A prompt short of answers only because
      annotation.answers leaves some out is reported, and exits 0 (a rerun changes nothing).
    - 4: the output files or the response store could not be written (the message says how many answers
      were kept, rescued or lost).
    - 5: another run holds this batch (nothing called).
    - 6: batches of batch-mode providers are still running (--no-wait; tasks not written yet: run again
      later to collect them).
    - 7: every call answered and the tasks written, but some could not be delivered to Label Studio
      (--deliver or delivery:); the message gives the rlhf deliver command that completes the delivery.
    - 128+N: stopped by signal N (SIGINT: 130, SIGTERM: 143) after writing what was complete.
    """
    from flows.generation import stopping
    from flows.generation.prepare import prepare_run
    from flows.generation.run_date import RUN_DATE_ENV
    from flows.generation.stores import hold_run_store, open_run_store
    from providers.rescue import StoreFailed
    from providers.store import StoreError
    from providers.store_lock import BatchBusy

    if run_date:
        os.environ[RUN_DATE_ENV] = run_date
    stopping.set_grace(stop_grace_s)
    try:
        stopping.grace_s()
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    delivery = _delivery_options(deliver, url, token_env, project_title, predictions, judge)
    try:
        prepared = prepare_run(config, skip_invalid=skip_invalid)
        if delivery is not None:  # checked before Prefect starts; the flow applies it
            from flows.delivery.stream import delivery_override

            delivery_override(prepared.config, delivery, "rlhf run --deliver")
    except InputError as exc:
        raise _input_failure(exc) from None
    try:
        # Before Prefect starts: a second run, or a store that cannot be used, stops here at once.
        with hold_run_store(prepared.config):
            open_run_store(prepared.config).close()
            _run_held(config, prepared, retry_failed, skip_invalid, quiet, verbose, rescue_dir, not no_wait, delivery)
    except (BatchBusy, StoreError, StoreFailed) as exc:
        raise _store_failure(exc) from None


async def _generate(generate_tasks: Any, config: str, **parameters: Any) -> dict[str, Any]:
    """Run the flow; its summary, also when calls are missing (the run then ends Failed, named Incomplete)
    or a signal stopped it (Cancelled).

    With a Prefect server of the operator's own (``PREFECT_API_URL``), the flow run's UI address is
    printed as the run starts.
    """
    from flows.generation.generate import RunInterrupted
    from flows.reporting.report import RunIncomplete

    if os.environ.get("PREFECT_API_URL"):
        generate_tasks = generate_tasks.with_options(on_running=[_print_flow_run_url])
    state = await generate_tasks(config, return_state=True, **parameters)
    result = await state.aresult(raise_on_failure=False)
    if isinstance(result, (RunInterrupted, RunIncomplete)) and result.summary is not None:
        return result.summary
    if isinstance(result, BaseException):
        raise result
    return result


def _print_flow_run_url(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect ``on_running`` hook: say where the flow run is in the Prefect UI."""
    from prefect.utilities.urls import url_for

    url = url_for("flow-run", obj_id=flow_run.id)
    if url:
        console.print(f"Prefect flow run {flow_run.name}: {url}", highlight=False, markup=False)


def _run_held(
    config: str,
    prepared: PreparedRun,
    retry_failed: bool,
    skip_invalid: bool,
    quiet: bool,
    verbose: bool,
    rescue_dir: Path | None,
    wait_for_batches: bool = True,
    delivery: dict[str, Any] | None = None,
) -> None:
    """``rlhf run`` once the batch's store is held by this process."""
    from flows.generation.writer_process import TaskWriterFailed
    from providers.rescue import StoreFailed
    from providers.store import StoreError

    # The console shows Prefect's WARNING lines and up (all with -v); its loggers stay at INFO, so the flow
    # run's logs in Prefect (the run's story: start, chunks, cut-offs, failures, the table) are complete.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "INFO" if verbose else "WARNING")
    if not os.environ.get("PREFECT_API_URL"):
        console.print("[dim]No PREFECT_API_URL: starting Prefect's temporary local server (takes ~20 s).[/dim]")
    from common.storage import StorageError
    from flows.cli.console_logs import drop_console_run_story, drop_console_stopped_line, drop_console_tracebacks
    from flows.delivery.delivered import changes_warning
    from flows.generation import stopping
    from flows.generation.generate import generate_tasks
    from flows.reporting import progress as progress_mod
    from flows.reporting.summary import summary_table
    from providers.batch.api import BatchApiError

    # reported in plain words
    drop_console_tracebacks(InputError, TaskWriterFailed, OSError, StoreError, StoreFailed, BatchApiError, StorageError)
    drop_console_stopped_line()  # a stopped or incomplete run is reported below, with the command that resumes it
    if not verbose:
        drop_console_run_story()  # the live display and the table below tell it
    stopping.enable()
    if not os.environ.get("PREFECT_API_URL"):
        stopping.isolate_temporary_server()  # a Ctrl-C must not kill the server the stopping run reports to
    if prepared.rejected:
        console.print(
            f"[yellow]{len(prepared.rejected)} invalid record(s) skipped[/yellow] (see rejected.jsonl):",
            highlight=False,
        )
        console.print(InputError(prepared.rejected).render(), highlight=False, markup=False)
    display = (
        None
        if quiet or not console.is_terminal
        else progress_mod.RunProgress(
            prepared.config.providers,
            prepared.prompt_count * prepared.config.answers_per_prompt,
            waiting_for=progress_mod.prefect_wait_text(),
            stopping=stopping.requested,
        )
    )
    with progress_mod.live_progress(console, display):
        try:
            summary = asyncio.run(
                _generate(
                    generate_tasks,
                    str(config),
                    retry_failed=retry_failed,
                    skip_invalid=skip_invalid,
                    rescue_dir=str(rescue_dir) if rescue_dir else None,
                    wait_for_batches=wait_for_batches,
                    delivery=delivery,
                )
            )
        except InputError as exc:
            raise _input_failure(exc) from None
        except BatchApiError as exc:
            _error(exc)
            console.print(
                "Every answer received is kept in the response store, and every batch submitted is recorded; "
                f"rerun once the provider's batch API answers (nothing is submitted twice): rlhf run {config}",
                highlight=False,
                markup=False,
            )
            raise typer.Exit(EXIT_FAILURES) from None
        except (TaskWriterFailed, OSError, StorageError) as exc:
            _error(exc)
            console.print(
                "Every answer received is kept in the response store; once this is fixed, rerun (nothing is "
                f"asked twice): rlhf run {config}",
                highlight=False,
                markup=False,
            )
            raise typer.Exit(EXIT_OUTPUT) from None
    out.print(summary_table(summary))
    resume = f"rlhf run {config}" + (" --skip-invalid" if skip_invalid else "")
    pending = summary.get("batches_pending") or []
    if pending and not summary["interrupted"]:
        requests = sum(job["requests"] for job in pending)
        ids = ", ".join(str(job["batch_id"] or "(id not recorded yet)") for job in pending)
        console.print(
            f"[yellow]{len(pending)} provider batch(es) still running[/yellow] ({requests} requests: {ids}). "
            f"No tasks written yet; run again later to collect them and write the tasks (nothing is submitted "
            f"twice): {resume}",
            highlight=False,
        )
        raise typer.Exit(EXIT_PENDING)
    files = summary["files"]
    out.print(
        f"{summary['tasks_written']} task(s) in {files['tasks']}; {summary['incomplete']} incomplete prompt(s) in "
        f"{files['incomplete']}; summary in {files['summary']} ({summary['wall_s']} s)",
        highlight=False,
    )
    if (delivered_warning := changes_warning(summary)) is not None:
        console.print(f"Warning: {delivered_warning}", style="yellow", highlight=False, markup=False)
    if summary.get("quarantined_rescue_lines"):
        console.print(
            f"[yellow]{summary['quarantined_rescue_lines']} rescued result(s) could not be stored[/yellow] and were "
            f"moved, each with its reason, to: {', '.join(summary['quarantine_files'])}",
            highlight=False,
        )
    if summary["interrupted"]:
        signum = stopping.signal_number() or 2
        console.print(
            f"[yellow]Stopped by signal {signum}.[/yellow] Every finished call is stored; resume with: {resume}",
            highlight=False,
        )
        raise typer.Exit(128 + signum)
    _exit_if_budget_reached(summary, resume)
    failed = sum(p["failed"] for p in summary["providers"].values())
    skipped = sum(p["skipped"] for p in summary["providers"].values())
    not_made = sum(p["interrupted"] for p in summary["providers"].values())  # never without a stop signal
    if summary["incomplete"] and not (failed or skipped or not_made):
        # Every call was answered: what is missing was left out by annotation.answers, and a rerun changes nothing.
        console.print(
            f"[yellow]{summary['incomplete']} prompt(s) have too few answers to show annotators[/yellow]: every call "
            f"was answered, but answers annotation.answers leaves out (filtered, empty, tool calls only, too long) "
            f"do not count; see left_out in {files['incomplete']}.",
            highlight=False,
        )
    from flows.delivery.stream import stream_warning

    if (undelivered := stream_warning(summary)) is not None:
        console.print(f"Warning: {undelivered}", style="yellow", highlight=False, markup=False)
    if failed or skipped or not_made:
        console.print(
            f"[yellow]{failed} call(s) failed, {skipped + not_made} not made.[/yellow] Run the same command again to resume "
            f"(stored answers are reused, skipped calls are made): {resume}; add --retry-failed to retry the failed calls.",
            highlight=False,
        )
        raise typer.Exit(EXIT_FAILURES)
    if undelivered is not None:
        raise typer.Exit(EXIT_PLATFORM)


def _delivery_options(
    deliver: str | None,
    url: str | None,
    token_env: str | None,
    project_title: str | None,
    predictions: str | None,
    judge: str | None,
) -> dict[str, Any] | None:
    """``rlhf run --deliver``'s fields (None without ``--deliver``); its options without it are an error (exit 2)."""
    given = {"url": url, "token_env": token_env, "project_title": project_title, "predictions": predictions}
    given["judge"] = judge
    if deliver is None:
        named = [f"--{name.replace('_', '-')}" for name, value in given.items() if value is not None]
        if named:
            _error(f"{', '.join(named)} only with --deliver label-studio")
            raise typer.Exit(EXIT_INPUT)
        return None
    if deliver != "label-studio":
        _error(f"unknown --deliver target '{deliver}': choose label-studio (files: rlhf deliver after the run)")
        raise typer.Exit(EXIT_INPUT)
    return {"to": deliver, **{name: value for name, value in given.items() if value is not None}}


def _exit_if_budget_reached(summary: dict[str, Any], resume: str) -> None:
    """README "Budgets": say what was spent of which limit, and exit 8."""
    budget = summary.get("budget") or {}
    if not budget.get("reached"):
        return
    console.print(
        f"[yellow]Budget reached[/yellow]: {budget['message']}. No more requests were sent; those in flight were "
        f"finished and stored. Rerunning with the same budget sends nothing; raise the limit (budget: in the "
        f"config) and run again to go on, nothing is paid twice: {resume}",
        highlight=False,
    )
    raise typer.Exit(EXIT_BUDGET)


@app.command()
def plan(
    config: Annotated[str, typer.Argument(help="Run config (YAML): a path, or an object-storage URL (s3://…).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Estimate a run before making it: calls still to make, tokens, cost range, time at the rate limits."""
    import json

    from flows.reporting.plan import plan_budget_text, plan_cost_text, plan_run, plan_table

    try:
        report = plan_run(config)
    except InputError as exc:
        raise _input_failure(exc) from None
    if as_json:
        out.print_json(json.dumps(report))
        return
    out.print(plan_table(report, f"{config}: {report['prompts']} prompt(s), {report['calls']} call(s) to make"))
    out.print(plan_cost_text(report), highlight=False)
    if budget_text := plan_budget_text(report):
        out.print(budget_text, highlight=False, markup=False)


@app.command()
def status(
    target: Annotated[
        str, typer.Argument(help="A run directory (<output.dir>/<batch>, also as a URL) or a run config.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show per provider what is answered, failed and still missing (reads the store, calls nobody).

    Works while a run of the batch is writing (the store is opened read-only). Exit code 0 when nothing
    is failed or missing, 3 otherwise, 2 when the store is not readable.
    """
    import json

    from flows.reporting.status import run_status
    from providers.store import StoreError

    try:
        report = run_status(target)
    except InputError as exc:
        raise _input_failure(exc) from None
    except FileNotFoundError as exc:
        _error(exc)
        raise typer.Exit(EXIT_INPUT) from None
    except StoreError as exc:
        raise _store_failure(exc) from None
    if as_json:
        out.print_json(json.dumps(report))
    else:
        table = Table(title=f"{report['config']}: {report['prompts']} prompt(s)")
        for column in ("provider", "answered", "failed", "missing", "failures"):
            table.add_column(column, justify="left" if column in ("provider", "failures") else "right")
        for sid, p in report["providers"].items():
            reasons = ", ".join(f"{k}×{v}" for k, v in p["failure_reasons"].items()) or "-"
            table.add_row(sid, f"{p['answered']}/{p['planned']}", str(p["failed"]), str(p["missing"]), reasons)
        out.print(table)
        budget = f" of a budget of ${report['budget_usd']:.2f}" if report.get("budget_usd") else ""
        out.print(f"spent so far (recorded with the answers and judgements): ${report['cost_usd']:.4f}{budget}")
        if report["batches_pending"]:
            out.print(_batches_table(report["batches_pending"]))
    if any(p["failed"] or p["missing"] for p in report["providers"].values()):
        raise typer.Exit(EXIT_FAILURES)


def _batches_table(batches: list[dict[str, Any]]) -> Table:
    """The provider batches a store is waiting for: provider, batch id, status, requests done, age."""
    table = Table(title="provider batches not collected yet")
    for column in ("provider", "batch id", "status", "requests", "done", "age"):
        table.add_column(column, justify="right" if column in ("requests", "done", "age") else "left")
    for job in batches:
        done = sum(v for k, v in job["counts"].items() if k not in ("total", "processing"))
        hours, rest = divmod(int(job["age_s"]), 3600)
        table.add_row(
            job["source_id"],
            job["batch_id"] or "(not recorded: the next run finds it)",
            job["status"],
            str(job["requests"]),
            str(done),
            f"{hours}h{rest // 60:02d}m",
        )
    return table


@app.command()
def agreement(
    annotated: Annotated[Path, typer.Argument(help="Annotated tasks (JSONL) from rlhf harvest.")],
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Where the JSON report goes (default: <annotated>.agreement.json).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report instead of a table.")] = False,
) -> None:
    """How often annotators kept each judge's suggested values, per judge and dimension.

    Per dimension (and the preference): how many values were compared, the share the human kept, the
    mean absolute difference and Cohen's kappa (quadratic-weighted for scales); split into the group
    that saw the suggestions and the blind group when both exist (``rlhf deliver --predictions half``).
    """
    import json

    from flows.reporting.agreement import agreement_from_file, agreement_table

    try:
        data = agreement_from_file(annotated, out_path)
    except InputError as exc:
        raise _input_failure(exc) from None
    if as_json:
        out.print_json(json.dumps(data))
        return
    out.print(agreement_table(data))
    out.print(f"JSON report: {data['written_to']}", highlight=False)


@app.command()
def quality(
    annotated: Annotated[Path, typer.Argument(help="Annotated tasks (JSONL) from rlhf harvest.")],
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Where the JSON report goes (default: <annotated>.quality.json).")
    ] = None,
    min_alpha: Annotated[float, typer.Option(help="Flag annotators whose alpha with the others is below this.")] = 0.2,
    min_gold: Annotated[float, typer.Option(help="Flag annotators whose gold accuracy is below this.")] = 0.6,
    min_seconds: Annotated[
        float | None, typer.Option(help="Flag annotators whose median time per task is below this.")
    ] = None,
    min_pairs: Annotated[int, typer.Option(help="Judge an annotator only on at least this many values.")] = 10,
    draws: Annotated[int, typer.Option(help="Bootstrap draws for the alpha intervals.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap (same seed, same intervals).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report instead of tables.")] = False,
) -> None:
    """Do annotators agree? Krippendorff's alpha per dimension, and who disagrees with the others.

    Per dimension and for the preference: Krippendorff's alpha (interval metric for scales, nominal for
    choices) with a 95% bootstrap interval and the share of equal pairs. Per annotator: agreement and
    alpha with the others, gold accuracy (gold tasks), median seconds per task, and flags. Writes
    <annotated>.quality.json and a PNG chart beside it.
    """
    import json

    from flows.reporting.quality import quality_from_file, quality_tables
    from task_builder.reliability import Thresholds

    limits = Thresholds(min_alpha=min_alpha, min_gold=min_gold, min_seconds=min_seconds, min_pairs=min_pairs)
    try:
        data = quality_from_file(annotated, out_path, limits, draws=draws, seed=seed)
    except InputError as exc:
        raise _input_failure(exc) from None
    if as_json:
        out.print_json(json.dumps(data))
        return
    for table in quality_tables(data):
        out.print(table)
    out.print(f"JSON report: {data['written_to']}; chart: {data['plot']}", highlight=False)


@app.command()
def leaderboard(
    annotated: Annotated[Path, typer.Argument(help="Annotated tasks (JSONL) from rlhf harvest.")],
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Where the JSON goes (default: <annotated>.leaderboard.json).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Leave this annotator's preferences out (repeatable).")
    ] = None,
    draws: Annotated[int, typer.Option(help="Bootstrap draws for the 95% intervals.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap (same seed, same intervals).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON instead of tables.")] = False,
) -> None:
    """Which model do the humans prefer? Bradley–Terry strengths with 95% bootstrap intervals.

    From every annotator's preference (Likert, ranking or selection; ties half a win), per source_id,
    with win rates, per prompt category when prompts carry one, and the AI judges' strengths from their
    predictions beside the humans'. Writes <annotated>.leaderboard.json and a PNG chart beside it.
    """
    import json

    from flows.reporting.leaderboard import leaderboard_from_file, leaderboard_table

    try:
        data = leaderboard_from_file(annotated, out_path, draws=draws, seed=seed, exclude=exclude or ())
    except InputError as exc:
        raise _input_failure(exc) from None
    if as_json:
        out.print_json(json.dumps(data))
        return
    if not data["humans"]["models"]:
        _error(f"{annotated}: no human preference between two models found; nothing to rank")
        raise typer.Exit(1)
    for table in leaderboard_table(data):
        out.print(table)
    out.print(f"JSON: {data['written_to']}; chart: {data['plot']}", highlight=False)


@app.command("cancel-batches")
def cancel_batches(
    target: Annotated[
        str, typer.Argument(help="A run directory (<output.dir>/<batch>, also as a URL) or a run config.")
    ],
) -> None:
    """Cancel the batch's provider batches that have not ended (batch-mode providers).

    Requests a provider has not run yet are then never run (nor paid for); what it answered before is
    kept: the next ``rlhf run`` collects the cancelled batches, stores their answers and submits the
    requests that were cancelled again (cancel again, or set the provider to ``mode: online``, to stop that).
    """
    from flows.generation.batches import cancel_pending
    from providers.batch.api import BatchApiError
    from providers.store import StoreError

    try:
        cancelled = asyncio.run(cancel_pending(target))
    except InputError as exc:
        raise _input_failure(exc) from None
    except StoreError as exc:
        raise _store_failure(exc) from None
    except (BatchApiError, KeyError) as exc:
        _error(exc)
        raise typer.Exit(EXIT_FAILURES) from None
    if not cancelled:
        out.print("No provider batch to cancel.")
        return
    for source_id, batch_id in cancelled:
        out.print(f"cancelled {batch_id} ({source_id})", highlight=False)


def _platform_failure(exc: Exception, again: str) -> typer.Exit:
    """The exit for ``deliver``/``harvest``: 2 for what the operator gave (a missing option, the token's
    variable not set, not a run), 7 when the platform could not be reached or answered with an error."""
    from platforms.label_studio.client import LabelStudioError

    if isinstance(exc, LabelStudioError):
        _error(f"Label Studio: {exc} ({again})")
        return typer.Exit(EXIT_PLATFORM)
    _error(exc.args[0] if isinstance(exc, KeyError) else exc)
    return typer.Exit(EXIT_INPUT)


@app.command()
def deliver(
    run_dir: Annotated[Path, typer.Argument(help="The run directory (<output.dir>/<batch>).")],
    to: Annotated[
        str, typer.Option("--to", help="label-studio | argilla (files) | scale (task JSONL)")
    ] = "label-studio",
    url: Annotated[str | None, typer.Option(help="Label Studio URL, e.g. http://127.0.0.1:8080")] = None,
    token_env: Annotated[
        str, typer.Option(help="Environment variable holding the Label Studio token.")
    ] = "LABEL_STUDIO_TOKEN",
    project_title: Annotated[str | None, typer.Option(help="Project title (default: '<project> / <batch>').")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory or file for the file targets.")] = None,
    predictions: Annotated[
        str,
        typer.Option(
            help="Label Studio: which tasks carry the judges' values (metadata.predictions) as editable "
            "pre-annotations: all (every task that has them), half (a fixed half by task id; the others "
            "blind, a control group), none. Tasks without judges' values go blind in every mode."
        ),
    ] = "all",
    judge: Annotated[
        str | None,
        typer.Option(
            help="Label Studio: the judge (source id) whose values annotators start from (default: the judge "
            "with values for the most tasks). One judge per project; the others' stay in the run."
        ),
    ] = None,
    annotators_per_task: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Label Studio: how many different annotators annotate each task (the project's overlap, "
            "maximum_annotations); harvest keeps every annotation. Default: the project's setting (1 when new).",
        ),
    ] = None,
    gold: Annotated[
        Path | None,
        typer.Option(
            help="Label Studio: gold tasks (annotated JSONL whose values are known) mixed in, indistinguishable, "
            "to score annotators (rlhf quality); never exported as training data."
        ),
    ] = None,
    gold_rate: Annotated[float, typer.Option(help="The share of each project's tasks that are gold.")] = 0.1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the delivery report as JSON instead.")] = False,
) -> None:
    """Deliver a run's tasks: into a Label Studio project (idempotent), or as Argilla / Scale files.

    Prints what was delivered and where (each Label Studio project's URL); `--json` prints the report.
    Exit codes: 0 delivered; 2 bad input (an option missing, the token's variable not set, not a
    finished run: nothing sent); 7 Label Studio could not be reached or answered with an error (run the
    same command again: what is already in a project is not imported twice).
    """
    import json

    from flows.delivery.deliver import deliver_files, deliver_label_studio, token_from_env
    from flows.delivery.reports import delivery_summary
    from platforms.label_studio.client import LabelStudioError

    try:
        if to == "label-studio":
            if not url:
                raise ValueError("--url is required for --to label-studio")
            report = deliver_label_studio(
                run_dir,
                url,
                token_from_env(token_env),
                project_title,
                predictions,
                judge,
                annotators_per_task,
                _read_gold(gold) if gold is not None else None,
                gold_rate,
            )
        elif to in ("argilla", "scale"):
            if gold is not None or annotators_per_task is not None:
                raise ValueError("--gold and --annotators-per-task work with --to label-studio only")
            if out is None:
                raise ValueError(f"--out is required for --to {to}")
            report = deliver_files(run_dir, to, out)
        else:
            raise ValueError(f"unknown target '{to}': choose label-studio, argilla or scale")
    except InputError as exc:
        raise _input_failure(exc) from None
    except (ValueError, KeyError, FileNotFoundError, LabelStudioError) as exc:
        raise _platform_failure(exc, "check --url and the token, then run again: nothing is imported twice") from None
    print(json.dumps(report, indent=2) if as_json else delivery_summary(report))


def _read_gold(path: Path) -> list[dict[str, Any]]:
    """The gold tasks of a file; a line that cannot be a gold task is an InputError naming file and line."""
    from common.errors import InputProblem
    from flows.reporting.agreement import read_annotated
    from task_builder.gold import GoldProblem, gold_shell

    tasks = read_annotated(path)
    with path.open("rb") as handle:  # read_annotated skips blank lines: the line number of each task
        lines = [number for number, raw in enumerate(handle, start=1) if raw.strip()]
    problems = []
    for line, task in zip(lines, tasks):
        try:
            gold_shell(task, "check")
        except GoldProblem as exc:
            problems.append(InputProblem(str(path), line, f"not a gold task: {exc}"))
    if problems:
        raise InputError(problems[:20])
    return tasks


@app.command()
def harvest(
    source: Annotated[str, typer.Option("--from", help="label-studio | file")] = "label-studio",
    out: Annotated[Path, typer.Option(help="Annotated tasks (JSONL) to write.")] = Path("annotated.jsonl"),
    url: Annotated[str | None, typer.Option(help="Label Studio URL.")] = None,
    token_env: Annotated[
        str, typer.Option(help="Environment variable holding the Label Studio token.")
    ] = "LABEL_STUDIO_TOKEN",
    run_dir: Annotated[
        Path | None,
        typer.Option(
            help="The run whose tasks were delivered (required with label-studio; with file: join on it, unblinding a Scale delivery). Annotations of other text than the run's are rejected (answer_changed)."
        ),
    ] = None,
    project: Annotated[
        list[int] | None,
        typer.Option(help="Label Studio project id (repeatable; default: every project the run was delivered to)."),
    ] = None,
    input_file: Annotated[Path | None, typer.Option("--in", help="With --from file: annotated tasks to read.")] = None,
    rejects: Annotated[
        Path | None, typer.Option(help="Where rejected annotations go (default: <out>.rejects.jsonl).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the harvest report as JSON instead.")] = False,
) -> None:
    """Read annotations back, validate them against each task's slots, write annotated task shells.

    Prints what was read, kept and rejected and the files written; `--json` prints the report. Exit
    codes: 0 every annotation was usable; 2 bad input (an option missing, the token's variable not set,
    not a run: nothing written); 3 some were rejected (see the rejects file); 7 Label Studio could not be
    reached or answered with an error (nothing written).
    """
    import json

    from flows.delivery.deliver import harvest_file, harvest_label_studio, token_from_env
    from flows.delivery.reports import harvest_summary
    from platforms.label_studio.client import LabelStudioError

    try:
        if source == "label-studio":
            if not url or run_dir is None:
                raise ValueError(
                    "--url and --run-dir are required for --from label-studio "
                    "(delivered tasks carry no model names; harvest joins them to the run's shells)"
                )
            report = harvest_label_studio(url, token_from_env(token_env), run_dir, out, rejects, project or None)
        elif source == "file":
            if input_file is None:
                raise ValueError("--in is required for --from file")
            report = harvest_file(input_file, out, rejects, run_dir)
        else:
            raise ValueError(f"unknown source '{source}': choose label-studio or file")
    except InputError as exc:  # the run's annotation template (or, for an old run.json, its config)
        raise _input_failure(exc) from None
    except (ValueError, KeyError, FileNotFoundError, LabelStudioError) as exc:
        raise _platform_failure(exc, "nothing was written; check --url and the token, then run it again") from None
    print(json.dumps(report, indent=2) if as_json else harvest_summary(report))
    if report["rejected"]:
        raise typer.Exit(EXIT_FAILURES)


@app.command("export-dataset")
def export_dataset(
    annotated: Annotated[Path, typer.Argument(help="Annotated tasks (JSONL), e.g. from rlhf harvest.")],
    kind: Annotated[str, typer.Option("--format", help="dpo | sft | ratings")] = "dpo",
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("datasets"),
    parquet: Annotated[
        bool | None,
        typer.Option("--parquet/--no-parquet", help="Also write Parquet (default: when pyarrow is installed)."),
    ] = None,
    consensus: Annotated[
        str | None,
        typer.Option(help="Resolve several annotations of a task: majority | mean | unanimous | drop-disagreements."),
    ] = None,
    quality_json: Annotated[
        Path | None, typer.Option("--quality", help="An rlhf quality report: its flags and alphas for the consensus.")
    ] = None,
    drop_flagged: Annotated[bool, typer.Option(help="Leave out the annotators --quality flags.")] = False,
    weighted: Annotated[
        bool,
        typer.Option(help="Weigh annotators by their alpha with the others (from --quality; 0 or less: left out)."),
    ] = False,
) -> None:
    """Turn annotated tasks into training data: DPO pairs, SFT records or a ratings table (JSONL, Parquet).

    Field names are the ones TRL's DPO and SFT trainers take unchanged. Ties and missing preferences are
    skipped and counted, never guessed. With --consensus, one record set per task (not per annotator),
    each with its agreement. Gold tasks are never exported.
    """
    import json

    from flows.delivery.deliver import read_jsonl
    from task_builder.datasets import (
        ParquetUnavailable,
        dpo_records,
        parquet_available,
        ratings_rows,
        sft_records,
        write_dataset,
    )

    builders = {"dpo": dpo_records, "sft": sft_records, "ratings": ratings_rows}
    if kind not in builders:
        _error(f"unknown format '{kind}': choose dpo, sft or ratings")
        raise typer.Exit(EXIT_INPUT)
    if not annotated.is_file():
        _error(f"{annotated}: file not found")
        raise typer.Exit(EXIT_INPUT)
    if parquet is None:
        parquet = parquet_available()
    tasks, resolved = _consensus_tasks(read_jsonl(annotated), consensus, quality_json, drop_flagged, weighted)
    records, stats = builders[kind](tasks)
    try:
        files = write_dataset(records, out, kind, ("jsonl", "parquet") if parquet else ("jsonl",))
    except (ParquetUnavailable, ValueError) as exc:
        _error(exc)
        raise typer.Exit(EXIT_INPUT) from None
    summary: dict[str, Any] = {"stats": stats.to_dict(), "files": {k: str(v) for k, v in files.items()}}
    if resolved is not None:
        summary["consensus"] = resolved
    print(json.dumps(summary, indent=2))


def _consensus_tasks(
    tasks: Any, rule: str | None, quality_json: Path | None, drop_flagged: bool, weighted: bool
) -> tuple[Any, dict[str, Any] | None]:
    """The tasks for an export, resolved by a consensus rule when one is given (with the flags and weights
    of an rlhf quality report), and the consensus stats (None without a rule)."""
    import json

    from task_builder.consensus import RULES, consensus

    if rule is None:
        if quality_json is not None or drop_flagged or weighted:
            _error("--quality, --drop-flagged and --weighted need --consensus")
            raise typer.Exit(EXIT_INPUT)
        return tasks, None
    if rule not in RULES:
        _error(f"unknown consensus rule '{rule}': choose {', '.join(RULES)}")
        raise typer.Exit(EXIT_INPUT)
    if (drop_flagged or weighted) and quality_json is None:
        _error("--drop-flagged and --weighted need --quality <annotated>.quality.json (from rlhf quality)")
        raise typer.Exit(EXIT_INPUT)
    people: list[dict[str, Any]] = []
    if quality_json is not None:
        try:
            people = list(json.loads(quality_json.read_text(encoding="utf-8"))["annotators"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _error(f"{quality_json}: not an rlhf quality report ({type(exc).__name__}: {exc})")
            raise typer.Exit(EXIT_INPUT) from None
    exclude = [p["annotator"] for p in people if p.get("flagged")] if drop_flagged else []
    weights = (  # an annotator the report could not judge (no alpha) keeps the weight 1
        {
            p["annotator"]: max(float(p["alpha_with_others"]), 0.0)
            for p in people
            if p.get("alpha_with_others") is not None
        }
        if weighted
        else None
    )
    resolved, stats = consensus(tasks, rule, weights, exclude)
    return resolved, {**stats.to_dict(), "excluded_annotators": exclude, "weights": weights}


@app.command()
def schema(
    what: Annotated[str, typer.Argument(help="task | config | template")],
) -> None:
    """Print the JSON Schema of a task shell, the run config or an annotation template."""
    import json

    from pydantic import BaseModel

    from flows.config import RunConfig
    from task_builder.shell import Task
    from task_builder.template import AnnotationTemplate

    models: dict[str, type[BaseModel]] = {"task": Task, "config": RunConfig, "template": AnnotationTemplate}
    if what not in models:
        _error(f"unknown schema '{what}': choose one of {', '.join(models)}")
        raise typer.Exit(EXIT_INPUT)
    out.print_json(json.dumps(models[what].model_json_schema()))


@app.command()
def serve(
    config: Annotated[Path, typer.Argument(help="Run config (YAML); use {date} in batch for nightly runs.")],
    cron: Annotated[str, typer.Option(help="Cron schedule (UTC).")] = "0 2 * * *",
    name: Annotated[str | None, typer.Option(help="Deployment name (default: the config's project).")] = None,
) -> None:
    """Run generate_tasks on a schedule from this machine (Prefect's flow.serve) until stopped.

    Needs a Prefect server (PREFECT_API_URL): schedules live there. Each scheduled run resolves {date}
    and prompt-file globs on its day, so nightly batches never collide.
    """
    from flows.generation.prepare import prepare_run

    try:
        prepared = prepare_run(config)
    except InputError as exc:
        raise _input_failure(exc) from None
    if not os.environ.get("PREFECT_API_URL"):
        _error(
            "rlhf serve needs a Prefect server: start `prefect server start` and set PREFECT_API_URL "
            "(schedules are kept by the server)"
        )
        raise typer.Exit(EXIT_INPUT)
    from flows.generation.generate import generate_tasks

    deployment = name or prepared.config.project
    console.print(f"serving generate_tasks/{deployment} on cron '{cron}' (Ctrl-C to stop)", highlight=False)
    generate_tasks.serve(name=deployment, cron=cron, parameters={"config_path": str(config.resolve())})


@app.command()
def simulate(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 = any free port).")] = 8800,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    latency_ms: Annotated[float, typer.Option(help="Latency added to every request.")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(help="Random extra latency, up to this much.")] = 0.0,
    mode: Annotated[str, typer.Option(help="auto | replay | derived")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of jitter and probabilistic faults.")] = 0,
    faults_json: Annotated[str | None, typer.Option(help="Fault rules as a JSON list (see docs).")] = None,
    rate_limit_requests: Annotated[
        int, typer.Option(help="Requests per window (per key and model when enforced).")
    ] = 10_000,
    rate_limit_tokens: Annotated[
        int, typer.Option(help="Tokens per window (per key and model when enforced).")
    ] = 2_000_000,
    rate_limit_window_s: Annotated[
        float, typer.Option(help="The window: an empty bucket refills in this many seconds.")
    ] = 60.0,
    rate_limit_burst: Annotated[
        int | None, typer.Option(help="Request bucket capacity (default: --rate-limit-requests).")
    ] = None,
    enforce_rate_limits: Annotated[
        bool, typer.Option(help="Answer 429 beyond the limits (token buckets); without it they are only advertised.")
    ] = False,
    rate_limit_headers: Annotated[
        bool,
        typer.Option(
            "--rate-limit-headers/--no-rate-limit-headers", help="Send x-ratelimit-* / anthropic-ratelimit-*."
        ),
    ] = True,
    retry_after: Annotated[str, typer.Option(help="On a rate-limit 429: seconds | ms | none.")] = "seconds",
    rate_limit_header_mode: Annotated[
        str,
        typer.Option(
            help="What the rate-limit headers say: bucket (what is enforced) | per_minute | truncated | "
            "next_request | azure (README: The provider simulator)."
        ),
    ] = "bucket",
    batch_completion_s: Annotated[
        float, typer.Option(help="Batch APIs: seconds from a batch's creation until all its requests are done.")
    ] = 0.0,
    structured_invalid_probability: Annotated[
        float,
        typer.Option(help="Judges: share of structured-output answers made invalid (0..1, seeded), to test retries."),
    ] = 0.0,
) -> None:
    """Serve the provider simulator (OpenAI /v1/chat/completions and Anthropic /v1/messages, and both
    providers' batch APIs: /v1/files + /v1/batches, /v1/messages/batches)."""
    import json

    from pydantic import ValidationError

    from simulator import SimulatorSettings, serve

    try:
        settings = SimulatorSettings(
            latency_ms=latency_ms,
            latency_jitter_ms=jitter_ms,
            mode=mode,  # type: ignore[arg-type]
            seed=seed,
            faults=json.loads(faults_json) if faults_json else [],
            rate_limit_requests=rate_limit_requests,
            rate_limit_tokens=rate_limit_tokens,
            rate_limit_window_s=rate_limit_window_s,
            rate_limit_burst=rate_limit_burst,
            rate_limit_enforce=enforce_rate_limits,
            rate_limit_headers=rate_limit_headers,
            rate_limit_retry_after=retry_after,  # type: ignore[arg-type]
            rate_limit_header_mode=rate_limit_header_mode,  # type: ignore[arg-type]
            batch_completion_s=batch_completion_s,
            structured_invalid_probability=structured_invalid_probability,
        )
    except (ValueError, ValidationError) as exc:
        _error(f"rlhf simulate: {exc}")
        raise typer.Exit(EXIT_INPUT) from None
    serve(host, port, settings)


def main() -> None:  # pragma: no cover - console entry point alias
    """Entry point for ``python -m flows.cli``."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
