"""OpenAI's Batch API (and every OpenAI-compatible server offering it), through the ``openai`` SDK.

A job is one JSONL file uploaded to ``/v1/files`` (purpose ``batch``; one line per request:
``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``) and one batch created on it
for ``/v1/chat/completions`` with the 24 h window. The batch carries ``metadata.rlhf_job`` = the job id,
which is how a batch whose id was lost is found again (``GET /v1/batches`` lists the newest first).
When the batch has ended, its output file holds the answers and its error file the requests that
failed (``response.status_code`` >= 400), expired (``error.code`` ``batch_expired``) or were cancelled
(``batch_cancelled``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Final

import openai
from pydantic import SecretStr

from providers.batch.api import (
    RECOVERY_WINDOW_S,
    BatchApi,
    NotSubmitted,
    RemoteBatch,
    Undecided,
    batch_result,
    not_run,
    per_request_error,
)
from providers.config import ProviderConfig
from providers.http import error_message
from providers.openai_provider import chat_body, completion_answer
from providers.result import BATCH_CANCELLED, BATCH_EXPIRED, BATCH_FAILED, CallResult

ENDPOINT: Final = "/v1/chat/completions"
JOB_METADATA_KEY = "rlhf_job"
_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
_NOT_RUN = {"batch_expired": BATCH_EXPIRED, "batch_cancelled": BATCH_CANCELLED}


class OpenAIBatches(BatchApi):
    """The Batch API of one OpenAI-kind provider (the SDK's own retries for these few management calls)."""

    def __init__(self, config: ProviderConfig, api_key: SecretStr) -> None:
        super().__init__(config, (api_key.get_secret_value(),))
        self._client = openai.AsyncOpenAI(
            api_key=api_key.get_secret_value(), base_url=config.effective_base_url, timeout=config.timeout_s
        )

    def encode(self, custom_id: str, messages: list[dict[str, Any]], system: str | None) -> bytes:
        body = chat_body(self.config.model, self._params, messages, system)
        line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    async def submit(self, job_id: str, encoded: list[bytes]) -> str:
        try:
            upload = await self._client.files.create(
                file=(f"{job_id}.jsonl", b"".join(encoded), "application/jsonl"), purpose="batch"
            )
            batch = await self._client.batches.create(
                input_file_id=upload.id,
                endpoint=ENDPOINT,
                completion_window="24h",
                metadata={JOB_METADATA_KEY: job_id},
            )
        except openai.OpenAIError as exc:
            raise self._failure("submit", exc) from None
        return batch.id

    async def retrieve(self, remote_id: str) -> RemoteBatch:
        try:
            batch = await self._client.batches.retrieve(remote_id)
        except openai.OpenAIError as exc:
            raise self._failure("status", exc) from None
        return _remote(batch)

    async def results(self, batch: RemoteBatch) -> AsyncIterator[tuple[str, CallResult]]:
        raw: Any = batch.raw
        for file_id in (raw.output_file_id, raw.error_file_id):
            if not file_id:
                continue
            try:
                content = await self._client.files.content(file_id)
            except openai.OpenAIError as exc:
                raise self._failure("results download", exc) from None
            for line in content.content.splitlines():
                if line.strip():
                    yield self._outcome(json.loads(line))

    def _outcome(self, line: dict[str, Any]) -> tuple[str, CallResult]:
        custom_id = str(line.get("custom_id"))
        error = line.get("error")
        response = line.get("response")
        if isinstance(error, dict):
            code = str(error.get("code") or "error")
            reason = self.scrubbed(str(error.get("message") or code))
            return custom_id, not_run(_NOT_RUN.get(code, BATCH_FAILED), reason)
        if not isinstance(response, dict):
            return custom_id, not_run(BATCH_FAILED, "the batch gave no response for this request")
        status = int(response.get("status_code") or 0)
        body = response.get("body")
        if status >= 400:
            message = error_message(json.dumps(body).encode(), "error")
            return custom_id, per_request_error(status, message, self._secrets)
        request_id = response.get("request_id")
        return custom_id, batch_result(lambda: completion_answer(body if isinstance(body, dict) else {}, request_id))

    async def find(
        self, job_id: str, request_count: int, prepared_at: str, custom_ids: set[str], known: set[str]
    ) -> str | NotSubmitted | Undecided:
        oldest = datetime.fromisoformat(prepared_at.replace("Z", "+00:00")).timestamp() - RECOVERY_WINDOW_S
        try:
            async for batch in self._client.batches.list(limit=100):
                if batch.created_at < oldest:
                    break
                if (batch.metadata or {}).get(JOB_METADATA_KEY) == job_id and batch.id not in known:
                    return batch.id
        except openai.OpenAIError as exc:
            raise self._failure("list", exc) from None
        return NotSubmitted()

    async def cancel(self, remote_id: str) -> None:
        try:
            await self._client.batches.cancel(remote_id)
        except openai.OpenAIError as exc:
            raise self._failure("cancel", exc) from None

    async def aclose(self) -> None:
        await self._client.close()


def _remote(batch: Any) -> RemoteBatch:
    note = None
    if batch.status == "failed":  # the input was refused as a whole: nothing ran, nothing was paid
        reasons = "; ".join(e.message or e.code or "" for e in (batch.errors.data or [])) if batch.errors else ""
        note = f"the batch failed validation: {reasons or 'no reason given'}"
    counts = batch.request_counts
    count_dict = {"total": counts.total, "completed": counts.completed, "failed": counts.failed} if counts else {}
    return RemoteBatch(
        remote_id=batch.id,
        status=batch.status,
        ended=batch.status in _ENDED,
        counts=count_dict,
        created_at=float(batch.created_at),
        total=count_dict.get("total", 0),
        raw=batch,
        note=note,
    )
