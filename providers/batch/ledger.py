"""The batch ledger: which requests are in which provider batch, kept in the response store.

Two tables (store migration 2). ``batch_jobs``: one row per batch this store's runs made, with our own
``job_id``, the provider's batch id once known (``remote_id``), its state and the provider's last
status. ``batch_requests``: one row per request waiting in a batch, keyed by its ``custom_id`` (the
request fingerprint), so a request can be in at most one unfinished batch.

The order of writes is what makes a restart safe:

1. ``prepare``: the job and all its requests, in one commit, *before* anything is sent (state
   ``prepared``). A request in the ledger is never put in another batch.
2. ``submitted``: the provider's batch id, as soon as the provider returned it (state ``submitted``).
   A job killed between 1 and 2 is ``prepared`` without a batch id: the runner looks for it at the
   provider (``providers.batch.runner``) instead of submitting it again.
3. ``finish``: after the batch's results are in the store, its request rows go (state ``collected``),
   which frees the requests the provider never ran (expired, cancelled) for the next submission.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from common.clock import utc_now
from providers.store_factory import StoreLike

PREPARED = "prepared"
SUBMITTED = "submitted"
COLLECTED = "collected"
_OPEN_STATES = (PREPARED, SUBMITTED)
_LOOKUP_BATCH = 500


@dataclass(frozen=True, slots=True)
class LedgerRequest:
    """A request recorded in a job: its custom id (the fingerprint), answer slot and prompt."""

    custom_id: str
    answer_id: str
    prompt_id: str


@dataclass(slots=True)
class Job:
    """One provider batch as the ledger knows it."""

    job_id: str
    source_id: str
    state: str
    remote_id: str | None
    request_count: int
    prepared_at: str
    submitted_at: str | None = None
    remote_status: str | None = None
    counts: dict[str, int] | None = None


_JOB_COLUMNS = "job_id, source_id, state, remote_id, request_count, prepared_at, submitted_at, remote_status, counts"


def _job(row: Sequence[object]) -> Job:
    counts = json.loads(str(row[8])) if row[8] else None
    return Job(
        job_id=str(row[0]),
        source_id=str(row[1]),
        state=str(row[2]),
        remote_id=None if row[3] is None else str(row[3]),
        request_count=int(str(row[4])),
        prepared_at=str(row[5]),
        submitted_at=None if row[6] is None else str(row[6]),
        remote_status=None if row[7] is None else str(row[7]),
        counts=counts,
    )


class BatchLedger:
    """The batch tables of one response store (a store read as it is may predate them: then it is empty)."""

    def __init__(self, store: StoreLike) -> None:
        self._store = store
        self._present = store.has_table("batch_jobs")

    def open_jobs(self, source_id: str | None = None) -> list[Job]:
        """Jobs not collected yet (all providers', or ``source_id``'s), oldest first."""
        if not self._present:
            return []
        query = f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE state IN (?, ?)"
        parameters: list[object] = list(_OPEN_STATES)
        if source_id is not None:
            query += " AND source_id = ?"
            parameters.append(source_id)
        return [_job(row) for row in self._store.execute(query + " ORDER BY prepared_at, job_id", parameters)]

    def known_remote_ids(self) -> set[str]:
        """Every provider batch id this store has recorded (a recovered batch must not be one of them)."""
        if not self._present:
            return set()
        rows = self._store.execute("SELECT remote_id FROM batch_jobs WHERE remote_id IS NOT NULL")
        return {str(row[0]) for row in rows}

    def pending(self, custom_ids: Iterable[str]) -> set[str]:
        """Those of ``custom_ids`` that wait in an unfinished batch (never to be submitted again)."""
        if not self._present:
            return set()
        wanted = list(custom_ids)
        found: set[str] = set()
        for start in range(0, len(wanted), _LOOKUP_BATCH):
            part = wanted[start : start + _LOOKUP_BATCH]
            query = "SELECT custom_id FROM batch_requests WHERE custom_id IN (" + ",".join("?" * len(part)) + ")"
            found.update(str(row[0]) for row in self._store.execute(query, part))
        return found

    def requests(self, job_id: str) -> dict[str, LedgerRequest]:
        """The requests of a job, by custom id."""
        rows = self._store.execute(
            "SELECT custom_id, answer_id, prompt_id FROM batch_requests WHERE job_id = ?", (job_id,)
        )
        return {str(r[0]): LedgerRequest(str(r[0]), str(r[1]), str(r[2])) for r in rows}

    def prepare(self, job_id: str, source_id: str, requests: Sequence[LedgerRequest]) -> Job:
        """Record a job and its requests in one commit, before anything is sent."""
        job = Job(job_id, source_id, PREPARED, None, len(requests), utc_now("milliseconds"))
        with self._store.transaction():
            self._store.execute(
                "INSERT INTO batch_jobs (job_id, source_id, state, request_count, prepared_at) VALUES (?, ?, ?, ?, ?)",
                (job.job_id, source_id, PREPARED, job.request_count, job.prepared_at),
            )
            for request in requests:
                self._store.execute(
                    "INSERT INTO batch_requests (custom_id, job_id, answer_id, prompt_id) VALUES (?, ?, ?, ?)",
                    (request.custom_id, job_id, request.answer_id, request.prompt_id),
                )
        return job

    def submitted(self, job: Job, remote_id: str) -> None:
        """Record the provider's batch id of a prepared job."""
        job.state, job.remote_id, job.submitted_at = SUBMITTED, remote_id, utc_now("milliseconds")
        self._store.execute(
            "UPDATE batch_jobs SET state = ?, remote_id = ?, submitted_at = ? WHERE job_id = ?",
            (SUBMITTED, remote_id, job.submitted_at, job.job_id),
        )

    def observed(self, job: Job, remote_status: str, counts: dict[str, int]) -> None:
        """Record what the provider last said of the batch (``rlhf status`` shows it)."""
        job.remote_status, job.counts = remote_status, counts
        self._store.execute(
            "UPDATE batch_jobs SET remote_status = ?, counts = ? WHERE job_id = ?",
            (remote_status, json.dumps(counts, sort_keys=True), job.job_id),
        )

    def finish(self, job: Job) -> None:
        """The job's results are in the store: forget its requests (freeing those never run) and close it."""
        with self._store.transaction():
            self._store.execute("DELETE FROM batch_requests WHERE job_id = ?", (job.job_id,))
            self._store.execute("UPDATE batch_jobs SET state = ? WHERE job_id = ?", (COLLECTED, job.job_id))
        job.state = COLLECTED

    def drop(self, job: Job) -> None:
        """Forget a prepared job the provider never received (its requests are submitted anew)."""
        with self._store.transaction():
            self._store.execute("DELETE FROM batch_requests WHERE job_id = ?", (job.job_id,))
            self._store.execute("DELETE FROM batch_jobs WHERE job_id = ?", (job.job_id,))
