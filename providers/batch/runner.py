"""One batch-mode provider in a run: submit what is missing, follow the batches, take results into the store.

The runner never submits a request twice: a request goes into a job only if the store has no usable
result for it (the caller's choice) and the ledger has it in no unfinished batch (:meth:`pending`), and
the job is in the ledger before it is sent (``providers.batch.ledger``). A run that died between
sending a job and recording the provider's batch id finds the batch again (:meth:`resume`, the kind's
``find``) rather than sending the job twice. Results go to the store as each batch ends; requests the
provider never ran (expired, cancelled) and its refusals (401/403/404/429: the key or the account, not
the prompt) and retryable errors (5xx) are not stored, so the next run submits them again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable

from providers.base import prompt_chars, tokens_for_chars
from providers.batch.api import BatchApi, NotSubmitted, RemoteBatch, Undecided, not_run
from providers.batch.ledger import BatchLedger, Job, LedgerRequest
from providers.budget import Account, Hold
from providers.config import ProviderConfig
from providers.costs import charge, price_text
from providers.errors import RETRYABLE_STATUS
from providers.result import BATCH_FAILED, BUDGET, CallResult
from providers.slots import PlannedCall

Keep = Callable[[str, str, str, CallResult], None]
"""Commits a result: (fingerprint, answer id, prompt id, result) — the run's ``AnswerKeeper.keep``."""

# JSON wrapper bytes a batch adds around its requests (Anthropic's ``{"requests":[...]}`` and commas).
_ENVELOPE_BYTES = 64


def final(result: CallResult) -> bool:
    """Whether a batch request's result is the request's final answer, to be stored (see the module docstring)."""
    if not result.storable:
        return False
    if result.ok or result.status_code is None:
        return True
    return result.status_code not in RETRYABLE_STATUS


class BatchRunner:
    """The batches of one provider in one run (see the module docstring)."""

    def __init__(
        self, config: ProviderConfig, api: BatchApi, ledger: BatchLedger, keep: Keep, account: Account | None = None
    ) -> None:
        self.config = config
        self.account = account
        """The budget its requests count against: a request's worst case is reserved when it is queued for a
        batch (the whole batch's worst case at submission), released to its cost when its result is collected."""
        self._holds: dict[str, Hold] = {}
        self._price = config.effective_price
        self._price_text = price_text(config)
        self._output_tokens = config.estimated_output_tokens()
        self.api = api
        self._ledger = ledger
        self._keep = keep
        self._max_requests, self._max_bytes = config.batch_limits
        self._calls: list[PlannedCall] = []
        self._encoded: list[bytes] = []
        self._bytes = _ENVELOPE_BYTES
        self.not_stored: dict[str, CallResult] = {}
        """Results of this run's collected requests that were not stored (never run, refusals), by fingerprint."""
        self.aliases: dict[str, str] = {}
        """Custom id recorded in the ledger -> the fingerprint this run asks under (a request recorded under its
        legacy fingerprint, ``providers.fingerprint``): its result is kept under the latter."""
        self.submitted_requests = 0
        self.submitted_jobs = 0
        self.collected: Counter[str] = Counter()
        self.undecided = 0
        self.last_seen: dict[str, RemoteBatch] = {}

    @property
    def source_id(self) -> str:
        """The provider's ``source_id``."""
        return self.config.source_id

    def pending(self, custom_ids: list[str]) -> set[str]:
        """Those requests already waiting in one of this store's unfinished batches."""
        return self._ledger.pending(custom_ids)

    async def resume(self) -> None:
        """Find the provider batch of every job prepared but never recorded as submitted (or forget the job)."""
        self.undecided = 0
        known = self._ledger.known_remote_ids()
        for job in self._ledger.open_jobs(self.source_id):
            if job.remote_id is not None:
                continue
            custom_ids = set(self._ledger.requests(job.job_id))
            found = await self.api.find(job.job_id, job.request_count, job.prepared_at, custom_ids, known)
            if isinstance(found, NotSubmitted):
                self._ledger.drop(job)  # the provider never got it: its requests are planned again
            elif isinstance(found, Undecided):
                self.undecided += 1
            else:
                self._ledger.submitted(job, found)
                known.add(found)

    def _reserve(self, call: PlannedCall) -> bool:
        """Reserve ``call``'s worst case; False (its result: not submitted, budget) if it does not fit."""
        if self.account is None:
            return True
        found = self.account.try_reserve(self._prompt_tokens(call), self._output_tokens, online=False)
        if not isinstance(found, Hold):
            self.account.refuse(found)
            reason = f"not submitted: {self.account.reason()}"
            self.not_stored[call.fingerprint] = CallResult(ok=False, error_type=BUDGET, error=reason)
            return False
        self._holds[call.fingerprint] = found
        return True

    @staticmethod
    def _prompt_tokens(call: PlannedCall) -> int:
        return int(tokens_for_chars(prompt_chars(call.messages, call.system))) + 1

    def hold_pending(self, call: PlannedCall) -> None:
        """Hold the worst case of a request an earlier run submitted and whose batch has not ended: it will be paid."""
        if self.account is not None:
            self._holds[call.fingerprint] = self.account.hold_anyway(self._prompt_tokens(call), self._output_tokens)

    async def add(self, call: PlannedCall) -> None:
        """Queue a request (unless its worst case does not fit the budget); a full batch (requests or bytes) is
        submitted at once."""
        if not self._reserve(call):
            return
        encoded = self.api.encode(call.fingerprint, call.messages, call.system)
        if self._calls and (len(self._calls) >= self._max_requests or self._bytes + len(encoded) + 1 > self._max_bytes):
            await self.flush()
        self._calls.append(call)
        self._encoded.append(encoded)
        self._bytes += len(encoded) + 1

    async def flush(self) -> None:
        """Submit the queued requests as one batch."""
        if not self._calls:
            return
        calls, encoded = self._calls, self._encoded
        self._calls, self._encoded, self._bytes = [], [], _ENVELOPE_BYTES
        job_id = f"rlhf-{uuid.uuid4().hex}"
        job = self._ledger.prepare(
            job_id, self.source_id, [LedgerRequest(c.fingerprint, c.answer_id, c.prompt_id) for c in calls]
        )
        remote_id = await self.api.submit(job_id, encoded)
        self._ledger.submitted(job, remote_id)
        self.submitted_requests += len(calls)
        self.submitted_jobs += 1

    def open_jobs(self) -> list[Job]:
        """This provider's unfinished jobs."""
        return self._ledger.open_jobs(self.source_id)

    async def poll(self, store_failed: Callable[[], bool] = lambda: False) -> int:
        """Read every unfinished batch once and collect those that ended; how many remain unfinished."""
        if self.undecided:
            await self.resume()
        remaining = 0
        for job in self.open_jobs():
            if job.remote_id is None:
                remaining += 1
                continue
            remote = await self.api.retrieve(job.remote_id)
            self.last_seen[job.job_id] = remote
            self._ledger.observed(job, remote.status, remote.counts)
            if not remote.ended:
                remaining += 1
                continue
            await self._collect(job, remote)
            if store_failed():
                return remaining + 1
            self._ledger.finish(job)
        return remaining

    async def _collect(self, job: Job, remote: RemoteBatch) -> None:
        requests = self._ledger.requests(job.job_id)
        seen: set[str] = set()
        async for custom_id, result in self.api.results(remote):
            request = requests.get(custom_id)
            if request is None or custom_id in seen:
                continue  # not one of this job's requests (or a repeated line): nothing to keep
            seen.add(custom_id)
            self._take(request, result)
        reason = remote.note or f"the batch ended ({remote.status}) without a result for this request"
        for custom_id in requests.keys() - seen:
            self._take(requests[custom_id], not_run(BATCH_FAILED, self.api.scrubbed(reason)))

    def _take(self, request: LedgerRequest, result: CallResult) -> None:
        self.collected["answered" if result.ok else (result.error_type or "failed")] += 1
        fingerprint = self.aliases.get(request.custom_id, request.custom_id)
        if result.made:
            charge(result, self._price, self._price_text)
        hold = self._holds.pop(fingerprint, None)
        if hold is not None and self.account is not None:
            self.account.settle(hold, result)
        if final(result):
            self._keep(fingerprint, request.answer_id, request.prompt_id, result)
        else:
            self.not_stored[fingerprint] = result

    async def wait(self, should_stop: Callable[[], bool], store_failed: Callable[[], bool], wait: bool) -> int:
        """Poll until every batch has ended and is collected (or the run stops; or once, ``wait`` False).

        Returns the number of batches still unfinished.
        """
        while True:
            remaining = await self.poll(store_failed)
            if not remaining or not wait or should_stop() or store_failed():
                return remaining
            deadline = time.monotonic() + self.config.batch_poll_s
            while time.monotonic() < deadline and not should_stop():
                await asyncio.sleep(min(0.25, self.config.batch_poll_s))

    async def cancel_open(self) -> list[str]:
        """Ask the provider to cancel every unfinished batch of this store; their batch ids."""
        cancelled = []
        for job in self.open_jobs():
            if job.remote_id is not None:
                await self.api.cancel(job.remote_id)
                cancelled.append(job.remote_id)
        return cancelled
