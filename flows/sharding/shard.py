"""Sharded generation: a parent flow runs one ``generate_tasks`` deployment run per shard on a work pool.

A batch of N shards: shard k runs the prompts at positions ``i % N == k`` of the prompt file (positions
count valid records only), in its own directory ``<out>/<batch>/shards/<k>/`` with its own response
store. The parent (``generate_sharded``):

1. creates a global concurrency limit ``rlhf-provider-<source_id>`` per provider if missing (limit =
   shards allowed in flight) and gives every shard ``1 / limit`` of each provider's requests/tokens per
   minute, so the shards in flight together never exceed the configured quota;
2. seeds each shard store with the batch's ``created_at`` and with the answers the batch store already
   holds for that shard's prompts (an earlier unsharded run, or an earlier merge, is never paid twice);
3. runs the shards with ``run_deployment``, each holding one slot of every provider's limit
   (``strict=True``) while it runs, and waits for all of them;
4. merges: copies every shard store into the batch store, writes ``tasks.jsonl``, ``incomplete.jsonl``
   and ``filtered.jsonl`` in batch order, and ``summary.json`` with the summed counts (atomically).

Task ids, run id and config hash are those of an unsharded run; answer positions are balanced per shard.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import concurrency
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.states import Failed

from common.atomic import atomic_open, write_json
from common.clock import utc_now
from common.images import IMAGES_DIR, copy_once
from common.storage import is_url
from flows.config import RunConfig
from flows.delivery.delivered import note_changes
from flows.generation.manifest import write_manifest
from flows.generation.outputs import fetch_shards, file_location, publish
from flows.generation.prepare import PreparedRun, prepare_run
from flows.generation.stores import hold_run_store, open_run_store
from flows.reporting.report import (
    BUDGET_REACHED,
    INCOMPLETE,
    RunIncomplete,
    calls_missing,
    ended_incomplete,
    outcome_message,
    publish_report,
)
from flows.reporting.summary import percentile
from prompts.reader import PromptRecord, iter_prompts
from providers.config import ProviderConfig
from providers.slots import SlotFingerprints, answer_slots, stored_results
from providers.store import ResponseStore

LIMIT_PREFIX = "rlhf-provider-"
SHARD_DEPLOYMENT = "generate_tasks/rlhf-shard"
OUTPUTS = ("tasks.jsonl", "incomplete.jsonl", "filtered.jsonl")
_LOOKUP = 1000


def limit_name(source_id: str) -> str:
    """The global concurrency limit capping this provider's shards in flight."""
    return LIMIT_PREFIX + re.sub(r"[^A-Za-z0-9._-]", "-", source_id)


def shard_size(prompts: int, index: int, count: int) -> int:
    """How many of ``prompts`` positions fall to shard ``index`` of ``count``."""
    return len(range(index, prompts, count))


def prompts_of(config: RunConfig) -> Iterator[PromptRecord]:
    """The valid prompt records this config runs: all of them, or one shard's positions."""
    records = iter_prompts(config.prompts)
    if config.shard is None:
        yield from records
        return
    index, count = config.shard
    for position, record in enumerate(records):
        if position % count == index:
            yield record


def scaled_provider(provider: ProviderConfig, share: float) -> ProviderConfig:
    """The provider with ``share`` of its requests/tokens per minute (and burst, if set) and of what it learns."""
    if share >= 1:
        return provider
    update: dict[str, Any] = {"rate_share": provider.rate_share * share}
    if provider.requests_per_minute is not None:
        update["requests_per_minute"] = provider.requests_per_minute * share
    if provider.tokens_per_minute is not None:
        update["tokens_per_minute"] = provider.tokens_per_minute * share
    if provider.burst is not None:
        update["burst"] = max(1, int(provider.burst * share))
    return provider.model_copy(update=update)


def for_shard(
    prepared: PreparedRun, index: int, count: int, rate_shares: dict[str, float] | None = None
) -> PreparedRun:
    """The run of shard ``index`` of ``count``: its own run dir and store, its prompts, its rate shares."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard_index must be in 0..{count - 1} (shard_count={count}), got {index}")
    shares = rate_shares or {}
    for source_id, share in shares.items():
        if not 0 < share <= 1:
            raise ValueError(f"rate share of {source_id!r} must be in (0, 1], got {share}")
    config = prepared.config.model_copy(
        update={"providers": [scaled_provider(p, shares.get(p.source_id, 1.0)) for p in prepared.config.providers]}
    )
    config._shard = (index, count)
    return dataclasses.replace(prepared, config=config, prompt_count=shard_size(prepared.prompt_count, index, count))


# ---------------------------------------------------------------------------------------------- stores


def seed_shards(config: RunConfig, count: int) -> str:
    """Give each shard store the batch's ``created_at`` and the batch store's results for its prompts.

    With a database store every shard uses the batch's own store: nothing to copy.
    """
    with open_run_store(config) as batch_store:
        created_at = batch_store.setdefault_meta("created_at", utc_now())
        has_rows = batch_store.has_results() and not config.store_is_database
    if config.store_is_database:
        return created_at
    ids: list[list[str]] = [[] for _ in range(count)]
    if has_rows:
        for position, record in enumerate(iter_prompts(config.prompts)):
            ids[position % count].append(record.id)
    for index in range(count):
        shard_store = config.batch_dir / "shards" / str(index) / "responses.sqlite"
        with ResponseStore(shard_store) as store:
            store.setdefault_meta("created_at", created_at)
            if has_rows:
                store.copy_results_from(config.store_path, ids[index])
    return created_at


# ---------------------------------------------------------------------------------------------- merge


class _ShardLines:
    """One shard's output file, read line by line, handed out per prompt id."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self._handle: IO[str] | None = path.open(encoding="utf-8") if path.is_file() else None
        self._key = key
        self._next: tuple[str, str] | None = None
        self._advance()

    def _advance(self) -> None:
        line = self._handle.readline() if self._handle else ""
        if not line:
            self._next = None
            return
        data = json.loads(line)
        prompt_id = data["metadata"]["prompt_id"] if self._key == "metadata" else data["prompt_id"]
        self._next = (prompt_id, line if line.endswith("\n") else line + "\n")

    def take(self, prompt_id: str) -> Iterator[str]:
        """The consecutive lines of this prompt (none if the next line belongs to another)."""
        while self._next is not None and self._next[0] == prompt_id:
            yield self._next[1]
            self._advance()

    def close(self) -> None:
        """Close the file; fail if lines are left (the prompt file changed under the run)."""
        left = self._next
        if self._handle:
            self._handle.close()
        if left is not None:
            raise RuntimeError(f"{self.path}: prompt {left[0]!r} is not where the prompt file puts it (did it change?)")


def merge_outputs(config: RunConfig, count: int) -> None:
    """Interleave the shards' task, incomplete and filtered files into the batch's, in batch order."""
    batch_dir = config.batch_dir
    shard_dirs = [batch_dir / "shards" / str(k) for k in range(count)]
    readers = {
        name: [_ShardLines(d / name, "metadata" if name == "tasks.jsonl" else "prompt_id") for d in shard_dirs]
        for name in OUTPUTS
    }
    try:
        with (
            atomic_open(batch_dir / "tasks.jsonl") as tasks_out,
            atomic_open(batch_dir / "incomplete.jsonl") as incomplete_out,
            atomic_open(batch_dir / "filtered.jsonl") as filtered_out,
        ):
            outs = dict(zip(OUTPUTS, (tasks_out, incomplete_out, filtered_out)))
            for position, record in enumerate(iter_prompts(config.prompts)):
                for name, out in outs.items():
                    out.writelines(readers[name][position % count].take(record.id))
            for shard_readers in readers.values():
                for reader in shard_readers:
                    reader.close()
    finally:
        for shard_readers in readers.values():
            for reader in shard_readers:
                if reader._handle and not reader._handle.closed:
                    reader._handle.close()
    for shard_dir in shard_dirs:  # the shells' images: one copy each in the batch's images/
        shard_images = shard_dir / IMAGES_DIR
        for image in sorted(shard_images.iterdir()) if shard_images.is_dir() else ():
            if image.is_file() and not image.name.startswith("."):
                copy_once(image, batch_dir / IMAGES_DIR / image.name)
    rejected = shard_dirs[0] / "rejected.jsonl"
    if rejected.is_file():
        with atomic_open(batch_dir / "rejected.jsonl") as out:
            out.write(rejected.read_text(encoding="utf-8"))


_FIRST_ONLY = {
    "model",
    "project",
    "batch",
    "run_id",
    "config_hash",
    "layout",
    "rejected",
    "started_at",
    "finished_at",
    "wall_s",
    "files",
    "positions",
    "providers",
    "limits",
    "latency_ms_p50",
    "latency_ms_p95",
}


def _sum_into(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Add ``part``'s counts to ``total``: numbers summed, dicts of counts merged, flags or-ed."""
    for key, value in part.items():
        if key in _FIRST_ONLY:
            total.setdefault(key, value)
        elif isinstance(value, bool):
            total[key] = bool(total.get(key)) or value
        elif isinstance(value, (int, float)):
            previous = total.get(key)
            total[key] = value if previous is None else previous + value
        elif value is None:
            total.setdefault(key, None)
        elif isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
            merged = Counter(total.get(key) or {})
            merged.update(value)
            total[key] = dict(sorted(merged.items()))
        elif key == "breaker":
            total[key] = "; ".join(sorted({*filter(None, (total.get(key) or "").split("; ")), value}))
        else:
            total.setdefault(key, value)


def _merge_positions(parts: list[dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, Counter] = {}
    for part in parts:
        for source, by_position in part.items():
            counter = counts.setdefault(source, Counter())
            for label, entry in by_position.items():
                counter[label] += entry["count"]
    return {
        source: {label: {"count": n, "share": round(n / sum(c.values()), 4)} for label, n in sorted(c.items())}
        for source, c in sorted(counts.items())
    }


def _latencies(config: RunConfig) -> dict[str, array]:
    """Latency of every answered call of the batch, per provider, from the (merged) batch store."""
    slots = answer_slots(config.providers, config.samples_per_provider)
    fingerprints = SlotFingerprints(slots)
    provider_of = {slot.answer_id: slot.provider.source_id for slot in slots}
    out = {p.source_id: array("d") for p in config.providers}
    with open_run_store(config) as store:
        for chunk in stored_results(store, fingerprints, iter_prompts(config.prompts), _LOOKUP):
            for by_slot in chunk.fingerprints:
                for answer_id, fp in by_slot.items():
                    result = chunk.stored.get(fp)
                    if result is not None and result.ok:
                        out[provider_of[answer_id]].append(result.latency_ms)
    return out


def merge_summaries(config: RunConfig, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary for the batch: the shards' counts summed, latency percentiles over all answers."""
    merged: dict[str, Any] = {}
    for part in parts:
        _sum_into(merged, {k: v for k, v in part.items() if k not in ("providers", "positions")})
    providers: dict[str, dict[str, Any]] = {}
    for part in parts:
        for source_id, tally in part["providers"].items():
            total = providers.setdefault(source_id, {})
            _sum_into(total, tally)
            total.setdefault("limits_per_shard", []).append(tally.get("limits", {}))
    latencies = _latencies(config)
    for source_id, total in providers.items():
        total.pop("limits", None)
        total["latency_ms_p50"] = percentile(latencies.get(source_id, array("d")), 50)
        total["latency_ms_p95"] = percentile(latencies.get(source_id, array("d")), 95)
    merged["providers"] = providers
    merged["positions"] = _merge_positions([part.get("positions") or {} for part in parts])
    return merged


def merge_batch(
    config: RunConfig, config_path: str, shards: int, shard_info: list[dict[str, Any]], started_at: str
) -> dict[str, Any]:
    """Merge finished shards into the batch: store, task files, ``summary.json`` and ``run.json``.

    The shard stores are copied into the batch store first, even when a shard failed (then this raises
    after the copy, naming the shards), so every answer paid for is in the batch store.
    """

    with open_run_store(config) as batch_store:
        for index in range(shards if not config.store_is_database else 0):  # a database store is shared
            shard_store = config.batch_dir / "shards" / str(index) / "responses.sqlite"
            if shard_store.is_file():
                batch_store.copy_results_from(shard_store)
    # A shard that ended Incomplete (Failed, named so) finished: its calls missing are in its summary.
    failed = [
        s
        for s in shard_info
        if s.get("state") != "COMPLETED" and s.get("state_name") not in (INCOMPLETE, BUDGET_REACHED)
    ]
    if failed:
        raise RuntimeError(
            "shard(s) did not complete: "
            + ", ".join(f"{s['index']} ({s.get('flow_run_name')}: {s.get('state')})" for s in failed)
            + "; their answers so far are kept: run the same sharded batch again to resume"
        )
    parts = [
        json.loads((config.batch_dir / "shards" / str(k) / "summary.json").read_text(encoding="utf-8"))
        for k in range(shards)
    ]
    merge_outputs(config, shards)
    summary = merge_summaries(config, parts)
    summary.update(started_at=started_at, finished_at=utc_now())
    summary["files"] = {name.removesuffix(".jsonl"): file_location(config, name) for name in OUTPUTS}
    summary["files"]["summary"] = file_location(config, "summary.json")
    summary["files"]["store"] = str(config.store_location)
    if (config.batch_dir / "rejected.jsonl").is_file():
        summary["files"]["rejected"] = file_location(config, "rejected.jsonl")
    summary["shards"] = shard_info
    write_manifest(config.batch_dir, config_path, summary["config_hash"], config.store_location, started_at, config)
    note_changes(config.batch_dir, summary)  # a rerun that changed the text of delivered answers says so
    write_json(config.batch_dir / "summary.json", summary)
    return summary


# ---------------------------------------------------------------------------------------------- flow


async def ensure_limits(config: RunConfig, in_flight: int) -> dict[str, tuple[str, int]]:
    """Per provider: its global concurrency limit's name and size; created with ``in_flight`` if missing."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    logger = get_run_logger()
    limits: dict[str, tuple[str, int]] = {}
    async with get_client() as client:
        for provider in config.providers:
            name = limit_name(provider.source_id)
            try:
                existing = await client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                try:
                    await client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=name, limit=in_flight)
                    )
                    limits[provider.source_id] = (name, in_flight)
                    continue
                except ObjectAlreadyExists:
                    existing = await client.read_global_concurrency_limit_by_name(name)
            if not existing.active:
                logger.warning("concurrency limit %s is inactive: it caps nothing until activated", name)
            limits[provider.source_id] = (name, max(1, existing.limit))
    return limits


@flow(name="generate_sharded", log_prints=False)
async def generate_sharded(
    config_path: str,
    shards: int = 2,
    shards_in_flight: int | None = None,
    shard_deployment: str = SHARD_DEPLOYMENT,
    retry_failed: bool = False,
    skip_invalid: bool = False,
    poll_interval_s: float = 5.0,
    shard_retries: int = 1,
) -> dict[str, Any]:
    """Split the batch into ``shards``, run each as a ``shard_deployment`` run on its work pool, merge.

    ``shards_in_flight`` sizes the per-provider global concurrency limits when they do not exist yet
    (default: all shards at once); existing limits are used as they are. Relative paths in the config
    resolve against the working directory of the workers' flow runs, which must see the same files as
    this flow (one machine, or a shared filesystem), unless they are URLs (docs/deployment.md).

    A shard run that crashes or fails (its worker or its process killed, say) is started again, up to
    ``shard_retries`` times, on whichever worker takes it; it pays for nothing the first attempt stored.
    A shard that ends Incomplete (it finished, with calls failed or skipped) is not started again: it is
    merged, and the merged batch ends Incomplete too (Failed, named ``Incomplete``, raising
    :class:`~flows.reporting.report.RunIncomplete` with the merged summary from a plain call).
    """
    logger = get_run_logger()
    started = time.perf_counter()

    started_at = utc_now()
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    prepared = prepare_run(config_path, require_keys=False, skip_invalid=skip_invalid)
    config = prepared.config
    config_file = config_path if is_url(config_path) else str(Path(config_path).resolve())
    limits = await ensure_limits(config, shards_in_flight or shards)
    names = [name for name, _ in limits.values()]
    shares = {source_id: 1.0 / size for source_id, (_, size) in limits.items()}
    # The parent holds the batch store (seeding, merging); each shard holds its own store.
    with hold_run_store(config):
        seed_shards(config, shards)

        async def run_shard(index: int) -> Any:
            for attempt in range(shard_retries + 1):
                run = await run_shard_once(index, attempt)
                if run.state is not None and (run.state.is_completed() or ended_incomplete(run.state)):
                    break  # finished; an Incomplete shard's missing calls are for a rerun of the batch, not a retry
                logger.warning("shard %d/%d ended %s", index, shards, run.state.type.value if run.state else None)
            return run

        async def run_shard_once(index: int, attempt: int) -> Any:
            async with concurrency(names, occupy=1, strict=True):
                logger.info("shard %d/%d starting%s", index, shards, f" (attempt {attempt + 1})" if attempt else "")
                return await run_deployment(  # type: ignore[misc]  # the async variant when awaited
                    shard_deployment,
                    parameters={
                        "config_path": config_file,
                        "retry_failed": retry_failed,
                        "skip_invalid": skip_invalid,
                        "shard_index": index,
                        "shard_count": shards,
                        "rate_shares": shares,
                    },
                    flow_run_name=f"{config.batch}-shard-{index}-of-{shards}"
                    + (f"-attempt-{attempt + 1}" if attempt else ""),
                    timeout=None,
                    poll_interval=poll_interval_s,
                )

        runs = await asyncio.gather(*(run_shard(k) for k in range(shards)))
        shard_info = [
            {
                "index": index,
                "flow_run_id": str(run.id),
                "flow_run_name": run.name,
                "state": run.state.type.value if run.state else None,
                "state_name": run.state.name if run.state else None,
                "worker": (run.labels or {}).get("prefect.worker.name"),
                "prompts": shard_size(prepared.prompt_count, index, shards),
            }
            for index, run in enumerate(runs)
        ]
        fetch_shards(config, shards)  # outputs in object storage: the shards' files, for the merge
        summary = merge_batch(config, config_path, shards, shard_info, started_at)
        summary["wall_s"] = round(time.perf_counter() - started, 2)
        summary["concurrency_limits"] = {sid: {"name": name, "limit": size} for sid, (name, size) in limits.items()}
        write_json(config.batch_dir / "summary.json", summary)
        publish(config)
    await publish_report(summary)  # the merged report: the batch's own artifact keys
    if calls_missing(summary):  # as an unsharded run of the batch would end
        message = outcome_message(summary)
        return Failed(name=INCOMPLETE, message=message, data=RunIncomplete(message, summary))  # type: ignore[return-value]
    return summary
