"""The ``generate_tasks`` Prefect flow: prompts -> every provider -> response store -> task shells.

Prefect sees one task run per (provider, chunk of prompts), never one per call: a task run costs
milliseconds of client and server CPU, a call must cost far less (``docs/architecture.md``).
Inside a task, calls run as coroutines under the provider's own limits and every finished call is
committed to the response store at once, so a crash loses nothing that was paid for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.exceptions import CancelledRun, MissingContextError
from prefect.states import Cancelled, Completed, Failed
from prefect.utilities.annotations import quote

from common.atomic import atomic_open, write_json
from common.clock import utc_now
from common.errors import InputError, InputProblem
from flows.budget import budget_summary, run_budget
from flows.config import RunConfig, load_config
from flows.delivery.delivered import note_changes
from flows.delivery.stream import delivery_override, stream_settings, stream_warning
from flows.generation import stopping
from flows.generation.batches import follow_batches, not_stored, open_runners, pending_batches, submit_missing
from flows.generation.judging import RunJudges
from flows.generation.manifest import write_manifest
from flows.generation.outputs import file_location, publish
from flows.generation.prepare import PreparedRun, prepare_run
from flows.generation.stores import hold_run_store, open_run_store
from flows.generation.writer_process import ChunkResults, WriterSetup, task_writer_process
from flows.reporting import progress
from flows.reporting.notify import on_run_completed, on_run_failed
from flows.reporting.report import (
    BUDGET_REACHED,
    INCOMPLETE,
    RUN_STORY,
    BudgetReached,
    RunIncomplete,
    budget_reached,
    calls_missing,
    missing_calls,
    outcome_message,
    publish_report,
    summary_text,
)
from flows.reporting.summary import ProviderTally, RunSummary
from flows.sharding.shard import for_shard, prompts_of
from prompts.reader import PromptRecord
from providers.base import system_text
from providers.budget import Budget
from providers.config import ProviderConfig
from providers.pool import ProviderPool, pool_for
from providers.prices import price_table
from providers.rescue import AnswerKeeper, default_rescue_dir, recover_rescued
from providers.result import BUDGET, INTERRUPTED, SKIPPED, CallResult
from providers.slots import (
    AnswerSlot,
    PlannedCall,
    SlotFingerprints,
    StoredChunk,
    answer_slots,
    chunk_results,
    reusable,
    stored_results,
)
from providers.store_factory import StoreLike
from task_builder.assemble import BatchContext
from task_builder.ids import stable_id

GENERATOR_NAME = "rlhf-orchestrator"


def generator_info() -> dict[str, str]:
    """Name and version of this tool, recorded in every task's metadata."""
    try:
        return {"name": GENERATOR_NAME, "version": version(GENERATOR_NAME)}
    except PackageNotFoundError:
        return {"name": GENERATOR_NAME, "version": "unknown"}


# The answer keeper of each running flow, by run key: like the provider pool, it outlives the chunk
# task runs, which get only plain parameters.
_keepers: dict[str, AnswerKeeper] = {}


@task(name="call-provider-chunk", cache_policy=NO_CACHE, persist_result=False)
async def call_provider_chunk(provider: ProviderConfig, calls: list[PlannedCall], run_key: str) -> dict[str, Any]:
    """Make every planned call of one chunk for one provider; keep each result as it arrives.

    Results go to the response store; once a commit has failed, new calls stop and the results still
    arriving go to a rescue file (``providers/rescue.py``).
    """
    client = await pool_for(run_key).get(provider)
    keeper = _keepers[run_key]
    sink = progress.sink()
    counts = {"called": 0, "answered": 0, "failed": 0, "not_made": 0}
    unstored: dict[str, CallResult] = {}  # refusals: reported in this run's files, not kept

    async def one(call: PlannedCall) -> None:
        result = await client.call(call.messages, call.system)
        if not result.made:
            counts["not_made"] += 1
            sink.finished(provider.source_id, result)  # counted as skipped, as the summary counts it
            if result.error_type == BUDGET:  # reported as not sent for the budget, not as interrupted
                unstored[call.fingerprint] = result
            return
        if result.storable:
            keeper.keep(call.fingerprint, call.answer_id, call.prompt_id, result)
        else:
            unstored[call.fingerprint] = result
        counts["called"] += 1
        counts["answered" if result.ok else "failed"] += 1
        sink.finished(provider.source_id, result)

    await stopping.gather_until_stopped(one(call) for call in calls)
    return {
        **counts,
        "breaker": client.breaker.reason,
        "discard_status": client.breaker.discard_status,
        "unstored": unstored,
    }


class RunInterrupted(CancelledRun):
    """A run stopped by a signal (it ends Cancelled): raised by a plain call of the flow, carrying the
    summary of what the run did; with ``return_state=True`` it is ``state.result(raise_on_failure=False)``."""

    def __init__(self, message: str, summary: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.summary = summary


def flow_run_name() -> str:
    """The flow run's name: ``<project>/<batch>`` of its config (a shard adds ``/shard-<k>-of-<n>``)."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    config_path = str(parameters.get("config_path", ""))
    try:
        config = load_config(config_path, require_keys=False)
    except Exception:  # noqa: BLE001 - the run itself reports the bad config; the name must not fail it
        return f"{Path(config_path).name} (config not loaded)"
    name = f"{config.project}/{config.batch}"
    if parameters.get("shard_index") is not None:
        name += f"/shard-{parameters['shard_index']}-of-{parameters.get('shard_count', 1)}"
    return name


@flow(
    name="generate_tasks",
    flow_run_name=flow_run_name,
    log_prints=False,
    on_completion=[on_run_completed],
    on_failure=[on_run_failed],
    on_crashed=[on_run_failed],
)
async def generate_tasks(
    config_path: str,
    retry_failed: bool = False,
    skip_invalid: bool = False,
    shard_index: int | None = None,
    shard_count: int = 1,
    rate_shares: dict[str, float] | None = None,
    rescue_dir: str | None = None,
    wait_for_batches: bool = True,
    delivery: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run a config end to end and return the summary (also written to ``<out>/<batch>/summary.json``).

    Answers already in the response store are reused, never requested again; with ``retry_failed``
    stored errors are retried too. With ``skip_invalid`` bad prompt records go to ``rejected.jsonl``
    instead of stopping the run.

    ``shard_index``/``shard_count`` run one shard of a sharded batch (``flows/sharding/shard.py``): only the
    prompts at positions ``i % shard_count == shard_index``, written to ``<out>/<batch>/shards/<index>/``
    with its own store; ``rate_shares`` (source id -> fraction) scales that provider's requests/tokens
    per minute for this shard.

    The run holds its store for its whole length (``providers/store_lock.py``): a second run of the
    same batch raises :class:`~providers.store_lock.BatchBusy` before calling anything. Results a
    previous run rescued to ``rescue_dir`` (default: the system temp dir) are taken into the store
    first; if the store stops taking commits, the run stops making calls and raises
    :class:`~providers.rescue.StoreFailed` after rescuing what arrives.

    Providers with ``mode: batch`` go through their batch API (``flows/generation/batches.py``): their
    missing requests are submitted first, the online calls made, then the run waits for the batches;
    with ``wait_for_batches`` False it reads them once and, if some are still pending, returns without
    writing tasks (``summary["batches_pending"]`` lists them; a later run collects them and writes).

    The flow run ends Completed with a state message (the summary is its result). A run that left calls
    failed, skipped or not made ends Failed, named ``Incomplete``, its message saying what is missing, and
    raises :class:`RunIncomplete`; a run stopped by a signal ends Cancelled and raises
    :class:`RunInterrupted`. Both carry the summary (``.summary``); with ``return_state=True`` the
    exception is ``state.result(raise_on_failure=False)``. The flow run's logs tell the run's story: its
    start, a line per chunk, cut-offs and failures (WARNING) and the final table.

    With a ``delivery`` (the config's ``delivery:`` block, or ``delivery`` here: its fields, which replace
    the block; ``rlhf run --deliver``) each chunk's tasks go to Label Studio as they are written
    (``flows/delivery/stream.py``); the summary's ``delivery`` says what went and what did not.
    """
    stopping.install_handlers()
    prepared = prepare_run(config_path, skip_invalid=skip_invalid)
    if delivery is not None:
        prepared.config.delivery = delivery_override(prepared.config, delivery, config_path)
    config_hash = prepared.config.config_hash()  # of the config as written: a shard's overrides leave it alone
    if (
        shard_index is not None
    ):  # one shard of a sharded batch (flows/sharding/shard.py): own dir and store, rate shares
        prepared = for_shard(prepared, shard_index, shard_count, rate_shares)
    with hold_run_store(prepared.config):
        return await _run_held(
            prepared,
            config_hash,
            shard_index,
            retry_failed,
            Path(rescue_dir) if rescue_dir else default_rescue_dir(),
            wait_for_batches,
        )


async def _run_held(
    prepared: PreparedRun,
    config_hash: str,
    shard_index: int | None,
    retry_failed: bool,
    rescue_dir: Path,
    wait_for_batches: bool = True,
) -> dict[str, Any]:
    """The run, once its store is held."""
    started = time.perf_counter()
    config_path = prepared.config_path
    config = prepared.config
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = RunSummary(
        project=config.project,
        batch=config.batch,
        run_id=stable_id("run", config.project, config.batch, config_hash, length=16),
        config_hash=config_hash,
        providers={
            p.source_id: ProviderTally(p.source_id, p.model, p.effective_price, p.mode, p.full_price, p.price_source)
            for p in config.providers
        },
        started_at=utc_now(),
        rejected=len(prepared.rejected),
        layout=config.annotation.layout,
    )
    if any(str(p.price_source).startswith("table") for p in (*config.providers, *config.judges)):
        summary.price_warning = price_table().stale_warning()
    write_manifest(run_dir, config_path, config_hash, config.store_location, summary.started_at, config)
    if prepared.rejected:
        _write_rejected(run_dir / "rejected.jsonl", prepared)
    progress.sink().planned(prepared.prompt_count * config.answers_per_prompt)
    _log_start(prepared, shard_index)

    summary_delivery: dict[str, Any] | None = None
    with open_run_store(config) as store:
        recovered = recover_rescued(store, rescue_dir)
        summary.recovered_from_rescue = recovered.results
        summary.quarantined_rescue_lines = recovered.quarantined
        summary.quarantine_files = [str(path) for path in recovered.quarantine_files]
        keeper = AnswerKeeper(store, rescue_dir)
        budget = run_budget(config, store)  # what earlier runs of the batch spent counts against it
        with ProviderPool(uuid.uuid4().hex, _stop_when(keeper), budget) as pool:
            _keepers[pool.run_key] = keeper
            progress.sink().attach(pool)
            try:
                summary_delivery = await _generate(
                    prepared, store, pool, keeper, summary, retry_failed, wait_for_batches
                )
            finally:
                del _keepers[pool.run_key]
                keeper.close()
                for source_id, provider in pool.opened().items():
                    # a judge's calls go through <judge>:rating and <judge>:preference
                    tally = summary.providers.get(source_id) or summary.judges.get(source_id.rsplit(":", 1)[0])
                    if tally is not None:
                        tally.note_limits(provider.limiter, provider.breaker.reason)
                await pool.aclose()
                summary.budget = budget_summary(budget)

    summary.interrupted = stopping.requested()
    summary.finished_at = utc_now()
    summary.wall_s = time.perf_counter() - started
    summary.files = {
        name: file_location(config, filename)
        for name, filename in (
            ("tasks", "tasks.jsonl"),
            ("incomplete", "incomplete.jsonl"),
            ("filtered", "filtered.jsonl"),
            ("summary", "summary.json"),
        )
    }
    summary.files["store"] = str(config.store_location)
    if prepared.rejected:
        summary.files["rejected"] = file_location(config, "rejected.jsonl")
    report = summary.to_dict()
    if summary_delivery is not None:
        report["delivery"] = summary_delivery
    note_changes(run_dir, report)  # a rerun that changed the text of delivered answers says so
    write_json(run_dir / "summary.json", report)
    publish(config)  # outputs in object storage: each file uploaded whole
    await publish_report(report, part=None if shard_index is None else f"shard-{shard_index}")
    _log_outcome(report)
    # Prefect makes a returned State the run's final state; the caller gets its data (the summary).
    return _final_state(report)  # type: ignore[return-value]


def _final_state(report: dict[str, Any]) -> State:
    """Completed, with a message; Failed named ``Incomplete`` if calls failed, were skipped or not made
    (automations on failed runs fire, the UI shows it red); Cancelled if a signal stopped the run.

    An Incomplete state runs the failure hooks, which send the webhook's "completed" event with the
    summary (``flows/reporting/notify.py``). A Cancelled state runs no hook, so the webhook gets the
    summary from here.
    """
    message = outcome_message(report, stopping.signal_number())
    if not report["interrupted"]:
        if budget_reached(report):
            return Failed(name=BUDGET_REACHED, message=message, data=BudgetReached(message, report))
        if calls_missing(report):
            return Failed(name=INCOMPLETE, message=message, data=RunIncomplete(message, report))
        return Completed(message=message, data=report)
    state: State = Cancelled(message=message, data=RunInterrupted(message, report))
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None:
        on_run_completed(context.flow, context.flow_run, state)
    return state


def _logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    """The flow run's logger (its lines are the run's Logs tab in Prefect); a module logger outside a run.

    Only chunk-level code logs: a call never does (it would cost more than the call's own bookkeeping).
    """
    try:
        return get_run_logger(None, **{RUN_STORY: True})
    except MissingContextError:
        return logging.getLogger(__name__)


def _log_start(prepared: PreparedRun, shard_index: int | None) -> None:
    config = prepared.config
    where = "" if shard_index is None or config.shard is None else f" (shard {shard_index} of {config.shard[1]})"
    providers = ", ".join(
        f"{p.source_id} ({p.kind} {p.model}{', batch' if p.is_batch else ''})" for p in config.providers
    )
    judges = f"; judges: {', '.join(j.source_id for j in config.judges)}" if config.judges else ""
    rejected = f" ({len(prepared.rejected)} invalid record(s) skipped)" if prepared.rejected else ""
    _logger().info(
        "run %s/%s%s: %d prompt(s)%s in chunks of %d, %d answer(s) each; providers: %s%s",
        config.project,
        config.batch,
        where,
        prepared.prompt_count,
        rejected,
        config.chunk_size,
        config.answers_per_prompt,
        providers,
        judges,
    )


def _log_chunk(chunk_index: int, prompts_done: int, summary: RunSummary) -> None:
    """One line per chunk: the prompts done so far and, per provider, its answers and what is missing."""
    tallies = []
    for source_id, t in summary.providers.items():
        missing = [f"{n} {what}" for n, what in ((t.failed, "failed"), (t.skipped + t.interrupted, "skipped")) if n]
        tallies.append(f"{source_id} {t.answered}/{t.requested}" + (f" ({', '.join(missing)})" if missing else ""))
    _logger().info("chunk %d: %d prompt(s) done; answered: %s", chunk_index, prompts_done, ", ".join(tallies))


def _log_outcome(report: dict[str, Any]) -> None:
    """The end of the run's story: each provider's calls without an answer, by reason (WARNING), and the table."""
    logger = _logger()
    judges = {f"{sid} (judge)": p for sid, p in (report.get("judges") or {}).items()}
    for source_id, p in {**report["providers"], **judges}.items():
        missing = missing_calls(p, "not made (the run was stopped)")
        if not missing:
            continue
        logger.warning(
            "%s: %d of %d call(s) without an answer: %s",
            source_id,
            p["failed"] + p["skipped"] + p["interrupted"] + p.get("over_budget", 0),
            p["requested"],
            ", ".join(missing),
        )
    logger.info("summary:\n%s", summary_text(report))


def _log_delivery(delivery: dict[str, Any]) -> None:
    """The delivery as the run went, in the run's story: where the tasks went, or what is left to deliver."""
    warning = stream_warning({"delivery": delivery})
    if warning is not None:
        _logger().warning("%s", warning)
        return
    _logger().info(
        "delivered as the run went: %d task(s) in Label Studio (%d imported now, %d already there): %s",
        delivery["imported"] + delivery["already_delivered"],
        delivery["imported"],
        delivery["already_delivered"],
        ", ".join(delivery["project_urls"]) or "no task to deliver",
    )


def _stop_when(keeper: AnswerKeeper) -> Callable[[], bool]:
    """New calls stop on a stop signal, or once the store has refused a commit."""
    return lambda: stopping.requested() or keeper.failed


def writer_setup(prepared: PreparedRun, run_id: str, config_hash: str, created_at: str) -> WriterSetup:
    """What the task writer needs for this run: the batch context, the answer slots and the layout."""
    config = prepared.config
    annotation = config.annotation
    ctx = BatchContext(
        project=config.project,
        batch=config.batch,
        run_id=run_id,
        config_hash=config_hash,
        created_at=created_at,
        layout=annotation.layout,
        template=prepared.template,
        generator=generator_info(),
        answers=annotation.answers,
    )
    return WriterSetup(
        run_dir=str(config.run_dir),
        ctx=ctx,
        slots=answer_slots(tuple(config.providers), config.samples_per_provider),
        required_answers=config.required_answers,
        layout_kind=annotation.layout,
        seed=annotation.seed,
        pairs_per_prompt=annotation.pairs_per_prompt,
        pair_weights=prepared.pair_weights,
        delivery=stream_settings(config),
    )


async def _generate(
    prepared: PreparedRun,
    store: StoreLike,
    pool: ProviderPool,
    keeper: AnswerKeeper,
    summary: RunSummary,
    retry_failed: bool,
    wait_for_batches: bool = True,
) -> dict[str, Any] | None:
    """Every answer, then the tasks; the report of the delivery as the run went (None without one)."""
    config = prepared.config
    await _open_all(pool, tuple(config.providers), tuple(config.judges), prepared.config_path)
    setup = writer_setup(prepared, summary.run_id, summary.config_hash, store.setdefault_meta("created_at", utc_now()))
    slots = setup.slots
    breakers: dict[str, str] = {}

    async def call_online(chunk_index: int, lookup: StoredChunk[PromptRecord]) -> dict[str, CallResult]:
        online = [slot for slot in slots if not slot.provider.is_batch]
        if not online or stopping.requested():
            return {}
        unstored = await _call_missing(
            online, lookup, store, pool.run_key, chunk_index, retry_failed, summary, breakers
        )
        if keeper.failed:  # the writer (if any) is abandoned: it removes its partial files
            raise keeper.failure()
        return unstored

    judges = (
        RunJudges(
            config.judges,
            prepared.template,
            config.annotation.layout,
            store,
            pool,
            keeper,
            summary,
            retry_failed,
            config.annotation.answers,
        )
        if config.judges
        else None
    )
    try:
        return await _answer_and_write(
            setup,
            store,
            config,
            summary,
            breakers,
            call_online,
            keeper,
            judges,
            retry_failed,
            wait_for_batches,
            pool.budget,
        )
    finally:
        if judges is not None:
            judges.close()


async def _answer_and_write(
    setup: WriterSetup,
    store: StoreLike,
    config: RunConfig,
    summary: RunSummary,
    breakers: dict[str, str],
    call_online: Callable[[int, StoredChunk[PromptRecord]], Coroutine[Any, Any, dict[str, CallResult]]],
    keeper: AnswerKeeper,
    judges: RunJudges | None,
    retry_failed: bool,
    wait_for_batches: bool,
    budget: Budget | None = None,
) -> dict[str, Any] | None:
    """Get every answer (online chunk by chunk; batch providers through their batches) and write the tasks."""
    slots = setup.slots
    batch_providers = [p for p in config.providers if p.is_batch]
    if not batch_providers:  # every answer is an online call: call and write chunk by chunk
        return await _write_tasks(setup, store, config, summary, breakers, call_online, {}, judges)
    async with AsyncExitStack() as stack:
        runners = await open_runners(stack, batch_providers, store, keeper.keep, budget)
        batch_slots = [slot for slot in slots if slot.provider.is_batch]
        await submit_missing(runners, batch_slots, config, store, retry_failed, summary)
        # The online providers' calls, chunk by chunk, while the batches run; their refusals are kept for writing.
        unstored: dict[str, CallResult] = {}
        for chunk_index, lookup in enumerate(
            stored_results(store, SlotFingerprints(slots), prompts_of(config), config.chunk_size, migrate=True)
        ):
            unstored.update(await call_online(chunk_index, lookup))
            _logger().info("chunk %d: online providers called (%d prompt(s))", chunk_index, len(lookup.prompts))
        pending = await follow_batches(runners, stopping.requested, lambda: keeper.failed, wait_for_batches)
        if keeper.failed:
            raise keeper.failure()
        summary.batches_pending = pending_batches(runners)
        unstored.update(not_stored(runners))
        if pending:  # the tasks are written by the run that collects the last batch; the summary counts
            _count_without_writing(slots, store, config, unstored, summary)
            return None
    return await _write_tasks(setup, store, config, summary, breakers, None, unstored, judges)


async def _write_tasks(
    setup: WriterSetup,
    store: StoreLike,
    config: RunConfig,
    summary: RunSummary,
    breakers: dict[str, str],
    call: Callable[[int, StoredChunk[PromptRecord]], Coroutine[Any, Any, dict[str, CallResult]]] | None,
    unstored: dict[str, CallResult],
    judges: RunJudges | None = None,
) -> dict[str, Any] | None:
    """Write every prompt's task (or incomplete record), chunk by chunk; ``call`` first makes a chunk's
    missing online calls, ``judges`` then judge its answers. ``unstored``: results that are not in the store
    (refusals, batch requests never run). Returns the report of the delivery as the run went, if any.
    """
    slots = setup.slots
    # The tasks are written by a second process (flows/generation/writer_process.py): handing a finished chunk over
    # costs the event loop milliseconds, the writing happens on the other core, and the next chunk's calls
    # start at once.
    async with task_writer_process(setup) as writer:
        slot_fingerprints = SlotFingerprints(slots)
        lookups = stored_results(store, slot_fingerprints, prompts_of(config), config.chunk_size, migrate=True)
        prompts_done = 0
        for chunk_index, lookup in enumerate(lookups):
            chunk, fingerprints = lookup.prompts, lookup.fingerprints
            stored = lookup.stored
            if call is not None:
                chunk_unstored = await call(chunk_index, lookup)
                stored = chunk_results(store, slot_fingerprints, chunk, fingerprints)  # with this chunk's calls
                stored.update(chunk_unstored)
            results = _chunk_results(slots, fingerprints, stored, unstored, breakers, summary)
            judgements = await judges.judge(chunk_index, chunk, results) if judges is not None else None
            if judges is not None and judges.keeper.failed:
                raise judges.keeper.failure()
            await writer.write(chunk, results, judgements)
            progress.sink().settled(summary.providers)  # the display counts as the summary does
            prompts_done += len(chunk)
            _log_chunk(chunk_index, prompts_done, summary)
        report = await writer.finish()
    summary.written = report.counts
    summary.positions = report.positions
    if report.delivery is not None:
        _log_delivery(report.delivery)
    return report.delivery


def _count_without_writing(
    slots: list[AnswerSlot], store: StoreLike, config: RunConfig, unstored: dict[str, CallResult], summary: RunSummary
) -> None:
    """The providers' tallies of a run that writes no tasks (batches pending): requests still in a batch are
    counted as pending, everything else as the written run would count it."""
    for lookup in stored_results(store, SlotFingerprints(slots), prompts_of(config), config.chunk_size, migrate=True):
        for fps in lookup.fingerprints:
            for slot in slots:
                fp, tally = fps[slot.answer_id], summary.providers[slot.provider.source_id]
                result = lookup.stored.get(fp) or unstored.get(fp)
                if result is None and slot.provider.is_batch:
                    tally.pending_in_batches += 1
                    tally.requested += 1
                else:
                    tally.add(result or _not_made(slot.provider.source_id, {}))
    progress.sink().settled(summary.providers)


def _chunk_results(
    slots: list[AnswerSlot],
    fingerprints: list[dict[str, str]],
    stored: dict[str, CallResult],
    unstored: dict[str, CallResult],
    breakers: dict[str, str],
    summary: RunSummary,
) -> ChunkResults:
    """Every slot's result for each prompt of a finished chunk (from the store, else ``unstored``), counted
    into the providers' tallies."""
    results: ChunkResults = []
    for fps in fingerprints:
        prompt_results: dict[str, CallResult] = {}
        for slot in slots:
            source_id = slot.provider.source_id
            fp = fps[slot.answer_id]
            result = stored.get(fp) or unstored.get(fp) or _not_made(source_id, breakers)
            summary.providers[source_id].add(result)
            prompt_results[slot.answer_id] = result
        results.append(prompt_results)
    return results


async def _open_all(
    pool: ProviderPool, providers: tuple[ProviderConfig, ...], judges: tuple[ProviderConfig, ...], config_path: str
) -> None:
    """Open every provider (and read every judge's key) before the first call, so a key that cannot be read
    stops the run cleanly."""
    problems = []
    entries = [("providers", i, p) for i, p in enumerate(providers)] + [("judges", i, p) for i, p in enumerate(judges)]
    for field, index, provider in entries:
        try:
            await (pool.get(provider) if field == "providers" and not provider.is_batch else provider.api_key())
        except KeyError as exc:
            key_field = "api_key_secret" if provider.api_key_secret else "api_key_env"
            problems.append(
                InputProblem(config_path, None, f"no API key: {exc.args[0]} not found", f"{field}[{index}].{key_field}")
            )
    if problems:
        raise InputError(problems)


def _not_made(source_id: str, breakers: dict[str, str]) -> CallResult:
    """The result of a call this run did not make: its provider was cut off, or the run was stopped."""
    if source_id in breakers:
        return CallResult(ok=False, error_type=SKIPPED, error=f"provider {breakers[source_id]}")
    return CallResult(ok=False, error_type=INTERRUPTED, error="the run was stopped before this call was made")


async def _call_missing(
    slots: list[AnswerSlot],
    lookup: StoredChunk[PromptRecord],
    store: StoreLike,
    run_key: str,
    chunk_index: int,
    retry_failed: bool,
    summary: RunSummary,
    breakers: dict[str, str],
) -> dict[str, CallResult]:
    """Plan the calls of a chunk that have no usable stored result and run one Prefect task per provider.

    Returns the results that were not stored (the providers' refusals), by fingerprint.
    """
    stored = lookup.stored
    sink = progress.sink()
    providers = {slot.provider.source_id: slot.provider for slot in slots}
    plans: dict[str, list[PlannedCall]] = {source_id: [] for source_id in providers}
    for record, fps in zip(lookup.prompts, lookup.fingerprints):
        for slot in slots:
            source_id, fp = slot.provider.source_id, fps[slot.answer_id]
            previous = stored.get(fp)
            if reusable(previous, retry_failed):
                summary.providers[source_id].reused_from_store += 1
                sink.finished(source_id, previous, reused=True)
            elif source_id not in breakers:
                system = system_text(record.system, slot.provider.system_prompt)
                plans[source_id].append(PlannedCall(fp, slot.answer_id, record.id, record.messages, system))
            else:
                sink.finished(source_id, None)  # not made: the provider is cut off
    named = [
        (provider, call_provider_chunk.with_options(task_run_name=f"{source_id}-chunk-{chunk_index}"))
        for source_id, provider in providers.items()
        if plans[source_id]
    ]
    # quote(): Prefect would otherwise walk every planned call (messages and all) twice per task run
    # looking for futures; the calls are plain data, so that is pure overhead.
    outcomes = await asyncio.gather(*(run(p, quote(plans[p.source_id]), run_key) for p, run in named))  # type: ignore[call-overload]
    unstored: dict[str, CallResult] = {}
    for (provider, _), outcome in zip(named, outcomes):
        unstored.update(outcome["unstored"])
        summary.providers[provider.source_id].called_this_run += outcome["called"]
        if outcome["breaker"]:
            if provider.source_id not in breakers:
                _logger().warning(
                    "%s cut off in chunk %d: %s; its remaining calls are skipped (a rerun makes them)",
                    provider.source_id,
                    chunk_index,
                    outcome["breaker"],
                )
            breakers[provider.source_id] = outcome["breaker"]
        if outcome["discard_status"] is not None and not _keepers[run_key].failed:
            # The provider answered every call with the same client error: the provider's fault, not the
            # prompts'. Those errors are not final answers; the next run makes the calls again.
            answer_ids = [slot.answer_id for slot in slots if slot.provider.source_id == provider.source_id]
            store.discard_errors(answer_ids, outcome["discard_status"])
            _logger().warning(
                "%s answered every call with HTTP %s: its errors are not stored, the next run makes the calls again",
                provider.source_id,
                outcome["discard_status"],
            )
    return unstored


def _write_rejected(path: Path, prepared: PreparedRun) -> None:
    with atomic_open(path) as handle:
        for problem in prepared.rejected:
            entry = {"file": problem.file, "line": problem.line, "field": problem.field, "reason": problem.message}
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
