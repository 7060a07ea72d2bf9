"""``rlhf status``: what a run has done, failed and still misses, per provider, from the response store."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.storage import is_url, join, read_bytes
from flows.budget import spent_in_store
from flows.config import RunConfig, load_config
from flows.generation.manifest import MANIFEST, read_manifest, run_config, working_dir
from flows.generation.stores import open_run_store, store_exists
from prompts.reader import iter_prompts
from providers.batch.ledger import BatchLedger
from providers.costs import cost_of
from providers.slots import SlotFingerprints, answer_slots, stored_results
from providers.store_factory import StoreLike

_LOOKUP_BATCH = 1000


def target_location(target: str | Path) -> tuple[str | Path, Path | None]:
    """The config a run directory ran with and the directory it ran from (its ``run.json`` names both),
    or a config file and None (the working directory). Load the config inside ``working_dir`` of the second."""
    if is_url(target) and not str(target).endswith((".yaml", ".yml")):  # a run directory in object storage
        manifest = json.loads(read_bytes(join(str(target), MANIFEST)))
        config = str(manifest["config"])
        return (config if is_url(config) else Path(config)), None
    if is_url(target):
        return str(target), None
    target = Path(target)
    if target.is_dir():
        manifest = read_manifest(target)
        return Path(manifest["config"]), Path(manifest["cwd"])
    return target, None


def _target_config(target: str | Path) -> tuple[RunConfig, str | Path, Path | None]:
    """The config of ``target``, where it came from and the directory to read its files in: for a run
    directory, the config as the run recorded it (``run_config``: no provider variable needed); for a config
    file, the file as a run would read it."""
    if is_url(target) and not str(target).endswith((".yaml", ".yml")):  # a run directory in object storage
        where = join(str(target), MANIFEST)
        manifest = json.loads(read_bytes(where))
        return run_config(manifest, where=where), str(manifest["config"]), None
    if not is_url(target) and Path(target).is_dir():
        manifest = read_manifest(Path(target))
        cwd = Path(manifest["cwd"])
        with working_dir(cwd):
            config = run_config(manifest, where=str(Path(target) / MANIFEST))
        return config, Path(manifest["config"]), cwd
    return load_config(target, require_keys=False), target, None


def run_status(target: str | Path) -> dict[str, Any]:
    """Per provider: calls planned by the config, answered, failed (by reason) and missing.

    ``target`` is a run directory (its ``run.json`` records the run's config and the directory it ran from)
    or a config file. Nothing is called; the store is only read.
    """
    config, config_path, cwd = _target_config(target)
    with working_dir(cwd):
        slots = answer_slots(config.providers, config.samples_per_provider)
        fingerprints = SlotFingerprints(slots)
        provider_of = {slot.answer_id: slot.provider.source_id for slot in slots}
        counts: dict[str, Counter[str]] = {p.source_id: Counter() for p in config.providers}
        reasons: dict[str, Counter[str]] = {p.source_id: Counter() for p in config.providers}
        prices = {p.source_id: p.effective_price for p in config.providers}
        costs: dict[str, float] = dict.fromkeys(prices, 0.0)
        judges_cost: dict[str, float] = {j.source_id: 0.0 for j in config.judges}
        prompts = 0
        batches: list[dict[str, Any]] = []
        with open_run_store(config, read_only=True) if store_exists(config) else _no_store() as store:
            if store is not None:
                batches = open_batches(store)
                if config.judges:
                    spent = spent_in_store(config, store)
                    judges_cost = {j.source_id: spent.get(j.source_id, (0.0, 0))[0] for j in config.judges}
            for chunk in stored_results(store, fingerprints, iter_prompts(config.prompts), _LOOKUP_BATCH):
                prompts += len(chunk.prompts)
                for by_slot in chunk.fingerprints:
                    for answer_id, fp in by_slot.items():
                        source_id, result = provider_of[answer_id], chunk.stored.get(fp)
                        if result is not None:
                            costs[source_id] += cost_of(result, prices[source_id]) or 0.0
                        if result is None:
                            counts[source_id]["missing"] += 1
                        elif result.ok:
                            counts[source_id]["answered"] += 1
                        else:
                            counts[source_id]["failed"] += 1
                            reasons[source_id][result.error_type or "unknown"] += 1
    return {
        "config": str(config_path),
        "store": str(config.store_location),
        "prompts": prompts,
        "providers": {
            sid: {
                "planned": prompts * config.samples_per_provider,
                "answered": counts[sid]["answered"],
                "failed": counts[sid]["failed"],
                "missing": counts[sid]["missing"],
                "failure_reasons": dict(sorted(reasons[sid].items())),
            }
            for sid in counts
        },
        "providers_cost_usd": {sid: round(usd, 6) for sid, usd in costs.items()},
        # What the stored answers and judgements cost, as recorded with each (the figure of summary.json)
        "cost_usd": round(sum(costs.values()) + sum(judges_cost.values()), 6),
        "judges_cost_usd": {sid: round(usd, 6) for sid, usd in judges_cost.items()},
        "budget_usd": None if config.budget is None else config.budget.usd,
        "batches_pending": batches,
    }


def open_batches(store: StoreLike) -> list[dict[str, Any]]:
    """The store's provider batches not collected yet: provider, batch id, status, requests, age."""
    now = datetime.now(UTC)
    return [
        {
            "source_id": job.source_id,
            "batch_id": job.remote_id,
            "job_id": job.job_id,
            "status": job.remote_status or job.state,
            "requests": job.request_count,
            "counts": job.counts or {},
            "submitted_at": job.submitted_at or job.prepared_at,
            "age_s": round((now - datetime.fromisoformat((job.submitted_at or job.prepared_at))).total_seconds()),
        }
        for job in BatchLedger(store).open_jobs()
    ]


@contextmanager
def _no_store() -> Iterator[None]:
    yield None
