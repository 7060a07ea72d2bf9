"""The ``generate_tasks`` Prefect flow: prompts -> every provider -> response store -> task shells.

Prefect sees one task run per (provider, chunk of prompts), never one per call: a task run costs
milliseconds of client and server CPU, a call must cost far less (``../shared/ARCHITECTURE.md``).
Inside a task, calls run as coroutines under the provider's own limits and every finished call is
committed to the response store at once, so a crash loses nothing that was paid for.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import progress
from flows.atomic import atomic_open, write_json
from flows.prepare import prepare_run
from flows.prompt_reader import PromptRecord, iter_prompts
from flows.summary import ProviderTally, RunSummary
from providers.base import system_text
from providers.config import ProviderConfig
from providers.factory import make_provider
from providers.fingerprint import provider_identity, request_fingerprint
from providers.result import CallResult
from providers.store import ResponseStore
from task_builder.assemble import BatchContext, build_task
from task_builder.ids import stable_id, task_id_for

T = TypeVar("T")
GENERATOR_NAME = "rlhf-orchestrator"


@dataclass(slots=True)
class PlannedCall:
    """One (prompt, provider) request that has no usable stored result yet."""

    fingerprint: str
    prompt_id: str
    messages: list[dict[str, Any]]
    system: str | None


def generator_info() -> dict[str, str]:
    """Name and version of this tool, recorded in every task's metadata."""
    try:
        return {"name": GENERATOR_NAME, "version": version(GENERATOR_NAME)}
    except PackageNotFoundError:
        return {"name": GENERATOR_NAME, "version": "unknown"}


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@task(name="call-provider-chunk", cache_policy=NO_CACHE, persist_result=False)
async def call_provider_chunk(provider: ProviderConfig, calls: list[PlannedCall], store_path: str) -> dict[str, int]:
    """Make every planned call of one chunk for one provider; commit each result as it arrives."""
    client = make_provider(provider)
    sink = progress.sink()
    answered = 0
    with ResponseStore(store_path) as store:

        async def one(call: PlannedCall) -> None:
            nonlocal answered
            result = await client.call(call.messages, call.system)
            store.put(call.fingerprint, provider.source_id, call.prompt_id, result)
            answered += result.ok
            sink.finished(provider.source_id, result.ok, reused=False)

        try:
            await asyncio.gather(*(one(call) for call in calls))
        finally:
            await client.aclose()
    return {"called": len(calls), "answered": answered, "failed": len(calls) - answered}


@flow(name="generate_tasks", log_prints=False)
async def generate_tasks(config_path: str, retry_failed: bool = False) -> dict[str, Any]:
    """Run a config end to end and return the summary (also written to ``<out>/<batch>/summary.json``).

    Answers already in the response store are reused, never requested again; with ``retry_failed``
    stored errors are retried too.
    """
    started = time.perf_counter()
    prepared = prepare_run(config_path)
    config = prepared.config
    providers = tuple(config.providers)
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    config_hash = config.config_hash()
    run_id = stable_id("run", config.project, config.batch, config_hash, length=16)
    summary = RunSummary(
        project=config.project,
        batch=config.batch,
        run_id=run_id,
        config_hash=config_hash,
        providers={p.source_id: ProviderTally(p.source_id, p.model) for p in providers},
        started_at=_now(),
    )
    identities = {p.source_id: provider_identity(p) for p in providers}
    sink = progress.sink()
    sink.planned(prepared.prompt_count * len(providers))

    with ResponseStore(config.store_path) as store:
        ctx = BatchContext(
            project=config.project,
            batch=config.batch,
            run_id=run_id,
            config_hash=config_hash,
            created_at=store.setdefault_meta("created_at", _now()),
            seed=config.annotation.seed,
            template=prepared.template,
            providers=providers,
            generator=generator_info(),
        )
        tasks_path, incomplete_path = run_dir / "tasks.jsonl", run_dir / "incomplete.jsonl"
        with atomic_open(tasks_path) as tasks_out, atomic_open(incomplete_path) as incomplete_out:
            for chunk_index, chunk in enumerate(batched(iter_prompts(config.prompts), config.chunk_size)):
                fingerprints = [
                    {
                        p.source_id: request_fingerprint(
                            identities[p.source_id], r.messages, system_text(r.system, p.system_prompt)
                        )
                        for p in providers
                    }
                    for r in chunk
                ]
                await _call_missing(providers, chunk, fingerprints, store, str(config.store_path), chunk_index, retry_failed, summary)
                stored = store.get_many(fp for fps in fingerprints for fp in fps.values())
                for record, fps in zip(chunk, fingerprints):
                    results = {sid: stored[fp] for sid, fp in fps.items() if fp in stored}
                    _write_prompt(ctx, record, results, config.required_answers, summary, tasks_out, incomplete_out)

    summary.finished_at = _now()
    summary.wall_s = time.perf_counter() - started
    summary.files = {
        "tasks": str(tasks_path),
        "incomplete": str(incomplete_path),
        "summary": str(run_dir / "summary.json"),
        "store": str(config.store_path),
    }
    write_json(run_dir / "summary.json", summary.to_dict())
    return summary.to_dict()


async def _call_missing(
    providers: tuple[ProviderConfig, ...],
    chunk: list[PromptRecord],
    fingerprints: list[dict[str, str]],
    store: ResponseStore,
    store_path: str,
    chunk_index: int,
    retry_failed: bool,
    summary: RunSummary,
) -> None:
    """Plan the calls that have no usable stored result and run one Prefect task per provider."""
    stored = store.get_many(fp for fps in fingerprints for fp in fps.values())
    sink = progress.sink()
    plans: dict[str, list[PlannedCall]] = {p.source_id: [] for p in providers}
    for record, fps in zip(chunk, fingerprints):
        for provider in providers:
            fp = fps[provider.source_id]
            previous = stored.get(fp)
            if previous is not None and (previous.ok or not retry_failed):
                summary.providers[provider.source_id].reused_from_store += 1
                sink.finished(provider.source_id, previous.ok, reused=True)
                continue
            system = system_text(record.system, provider.system_prompt)
            plans[provider.source_id].append(PlannedCall(fp, record.id, record.messages, system))
    runs = []
    for provider in providers:
        calls = plans[provider.source_id]
        if calls:
            summary.providers[provider.source_id].called_this_run += len(calls)
            named = call_provider_chunk.with_options(task_run_name=f"{provider.source_id}-chunk-{chunk_index}")
            runs.append(named(provider, calls, store_path))
    if runs:
        await asyncio.gather(*runs)


def _write_prompt(
    ctx: BatchContext,
    record: PromptRecord,
    results: dict[str, CallResult],
    required: int,
    summary: RunSummary,
    tasks_out: Any,
    incomplete_out: Any,
) -> None:
    summary.prompts += 1
    for source_id, result in results.items():
        summary.providers[source_id].add(result)
    answered = sum(1 for r in results.values() if r.ok)
    if answered < required:
        summary.incomplete += 1
        errors = {sid: {"error_type": r.error_type, "error": r.error} for sid, r in results.items() if not r.ok}
        line = {
            "prompt_id": record.id,
            "task_id": task_id_for(ctx.batch, record.id),
            "reason": f"{answered} answer(s), {required} required",
            "answered": sorted(sid for sid, r in results.items() if r.ok),
            "errors": errors,
        }
        incomplete_out.write(json.dumps(line, ensure_ascii=False) + "\n")
        return
    shell = build_task(ctx, record.id, record.messages, record.system, record.metadata, record.context_sources, results)
    tasks_out.write(json.dumps(shell.to_json_dict(), ensure_ascii=False) + "\n")
    summary.tasks_written += 1
