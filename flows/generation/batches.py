"""Batch-mode providers in a run: submit what the store lacks, wait for the batches, collect the results.

The run (``flows/generation/generate.py``) does this around its online calls: first every batch
provider's missing requests are submitted (nothing waits on them, so the provider starts at once),
then the online providers are called chunk by chunk, then the run waits for the batches (``wait``
False: reads them once and returns). Tasks are written only once no batch of the run is pending: a
later run (a scheduled one, or ``rlhf run`` again) collects the batches and writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from flows.config import RunConfig
from flows.reporting import progress
from flows.reporting.summary import RunSummary
from flows.sharding.shard import prompts_of
from providers.base import system_text
from providers.batch import open_batch_api
from providers.batch.ledger import BatchLedger
from providers.batch.runner import BatchRunner, Keep
from providers.budget import Budget
from providers.config import ProviderConfig
from providers.result import CallResult
from providers.slots import AnswerSlot, PlannedCall, SlotFingerprints, StoredChunk, reusable, stored_results
from providers.store_factory import StoreLike


async def open_runners(
    stack: AsyncExitStack, providers: list[ProviderConfig], store: StoreLike, keep: Keep, budget: Budget | None = None
) -> dict[str, BatchRunner]:
    """A runner per batch-mode provider, closed with ``stack``; under ``budget``, each with its account."""
    ledger = BatchLedger(store)
    runners = {}
    for provider in providers:
        api = await open_batch_api(provider)
        stack.push_async_callback(api.aclose)
        account = budget.account(provider.source_id) if budget is not None else None
        runners[provider.source_id] = BatchRunner(provider, api, ledger, keep, account)
    return runners


async def submit_missing(
    runners: dict[str, BatchRunner],
    slots: list[AnswerSlot],
    config: RunConfig,
    store: StoreLike,
    retry_failed: bool,
    summary: RunSummary,
) -> None:
    """Find the batch slots with no usable stored result and no unfinished batch, and submit them."""
    for runner in runners.values():
        await runner.resume()
    sink = progress.sink()
    fingerprints = SlotFingerprints(slots)
    had_batches = {source_id for source_id, runner in runners.items() if fingerprints.has_legacy and runner.open_jobs()}
    for lookup in stored_results(store, fingerprints, prompts_of(config), config.chunk_size, migrate=True):
        wanted: dict[str, list[PlannedCall]] = {source_id: [] for source_id in runners}
        for record, fps in zip(lookup.prompts, lookup.fingerprints):
            for slot in slots:
                source_id, fp = slot.provider.source_id, fps[slot.answer_id]
                previous = lookup.stored.get(fp)
                if reusable(previous, retry_failed):
                    summary.providers[source_id].reused_from_store += 1
                    sink.finished(source_id, previous, reused=True)
                    continue
                system = system_text(record.system, slot.provider.system_prompt)
                wanted[source_id].append(PlannedCall(fp, slot.answer_id, record.id, record.messages, system))
        waiting = _waiting(runners, wanted, fingerprints, lookup, had_batches)
        for source_id, calls in wanted.items():
            for call in calls:
                if call.fingerprint not in waiting:
                    await runners[source_id].add(call)
                else:  # submitted by an earlier run, its batch not ended: it will be paid, so it holds its worst case
                    runners[source_id].hold_pending(call)
    for source_id, runner in runners.items():
        await runner.flush()
        summary.providers[source_id].called_this_run += runner.submitted_requests


def _waiting(
    runners: dict[str, BatchRunner],
    wanted: dict[str, list[PlannedCall]],
    fingerprints: SlotFingerprints,
    lookup: StoredChunk[Any],
    had_batches: set[str],
) -> set[str]:
    """The fingerprints of ``wanted`` that already wait in an unfinished batch: recorded under the fingerprint,
    or (for the providers in ``had_batches``, those with batches open before this run submitted any) under
    its legacy one: a batch submitted before the base URL left the identity. The runner stores the results
    of those under the current fingerprint (``BatchRunner.aliases``)."""
    waiting: set[str] = set()
    for source_id, calls in wanted.items():
        runner = runners[source_id]
        found = runner.pending([call.fingerprint for call in calls])
        waiting |= found
        unsure = {call.fingerprint for call in calls if call.fingerprint not in found}
        if not unsure or source_id not in had_batches:
            continue
        legacy: dict[str, str] = {}  # legacy fingerprint -> fingerprint
        for record, by_slot in zip(lookup.prompts, lookup.fingerprints):
            answer_ids = {answer_id for answer_id, fp in by_slot.items() if fp in unsure}
            if answer_ids:
                for answer_id, old in fingerprints.legacy_of(record.messages, record.system, answer_ids).items():
                    legacy[old] = by_slot[answer_id]
        for old in runner.pending(list(legacy)):
            runner.aliases[old] = legacy[old]
            waiting.add(legacy[old])
    return waiting


async def follow_batches(
    runners: dict[str, BatchRunner], should_stop: Callable[[], bool], store_failed: Callable[[], bool], wait: bool
) -> int:
    """Follow every provider's batches until they have ended and are collected; the batches still pending."""
    pending = 0
    for runner in runners.values():
        progress.sink().batches(batch_lines(runners))
        pending += await runner.wait(should_stop, store_failed, wait)
    progress.sink().batches(batch_lines(runners))
    return pending


def not_stored(runners: dict[str, BatchRunner]) -> dict[str, CallResult]:
    """The collected results that were not stored (requests never run, refusals), by fingerprint."""
    results: dict[str, CallResult] = {}
    for runner in runners.values():
        results.update(runner.not_stored)
    return results


def batch_lines(runners: dict[str, BatchRunner]) -> dict[str, str]:
    """Per batch provider, what its batches are doing, in words (the progress display shows them)."""
    lines = {}
    for source_id, runner in runners.items():
        jobs = runner.open_jobs()
        statuses: dict[str, int] = {}
        done = total = 0
        for job in jobs:
            status = job.remote_status or ("submitting" if job.remote_id is None else "submitted")
            statuses[status] = statuses.get(status, 0) + 1
            counts = job.counts or {}
            total += job.request_count
            done += sum(v for k, v in counts.items() if k not in ("total", "processing"))
        collected = sum(runner.collected.values())
        parts = [f"{n} {status}" for status, n in sorted(statuses.items())]
        state = ", ".join(parts) if parts else "no batch pending"
        lines[source_id] = f"{state}; {done}/{total} requests done in pending batches; {collected} collected"
    return lines


def pending_batches(runners: dict[str, BatchRunner]) -> list[dict[str, Any]]:
    """The unfinished batches, for the summary: provider, batch id, status, requests and when prepared."""
    return [
        {
            "source_id": job.source_id,
            "batch_id": job.remote_id,
            "status": job.remote_status or job.state,
            "requests": job.request_count,
            "prepared_at": job.prepared_at,
        }
        for runner in runners.values()
        for job in runner.open_jobs()
    ]


async def cancel_pending(target: str | Path) -> list[tuple[str, str]]:
    """Cancel every provider batch of a run (directory or config) that is not collected; (source id, batch id)s."""
    from flows.config import load_config
    from flows.generation.manifest import working_dir
    from flows.generation.stores import open_run_store, store_exists
    from flows.reporting.status import target_location

    config_path, cwd = target_location(target)
    with working_dir(cwd):
        config = load_config(config_path, require_keys=False)
        if not store_exists(config):
            return []
        store = open_run_store(config, read_only=True)
    with store:
        jobs = [job for job in BatchLedger(store).open_jobs() if job.remote_id is not None]
    providers = {p.source_id: p for p in config.providers}
    cancelled: list[tuple[str, str]] = []
    for source_id in dict.fromkeys(job.source_id for job in jobs):
        if source_id not in providers:
            raise KeyError(f"provider '{source_id}' has open batches but is no longer in {config_path}")
        api = await open_batch_api(providers[source_id])
        try:
            for job in jobs:
                if job.source_id == source_id and job.remote_id is not None:
                    await api.cancel(job.remote_id)
                    cancelled.append((source_id, job.remote_id))
        finally:
            await api.aclose()
    return cancelled
