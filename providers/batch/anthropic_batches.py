"""Anthropic's Message Batches API, through ``httpx``.

A job is one ``POST /v1/messages/batches`` with ``{"requests": [{"custom_id", "params"}]}``. Batches
carry no metadata of ours, so a batch whose id was lost is found by what it is: created no earlier
than the job was prepared (less :data:`~providers.batch.api.RECOVERY_WINDOW_S` for clock skew), with
the job's number of requests, and not a batch this store already knows. One such batch is the job's.
When several match, an ended one is read: its results' custom ids (our request fingerprints) say
whose it is; while they have not ended, nothing is submitted (``Undecided``) and the next poll looks
again. Results are read from ``/v1/messages/batches/{id}/results`` on the configured base URL (the
``results_url`` Anthropic returns is that address).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pydantic import SecretStr

from providers.anthropic_provider import message_answer, messages_body
from providers.batch.api import (
    RECOVERY_WINDOW_S,
    BatchApi,
    NotSubmitted,
    RemoteBatch,
    Undecided,
    batch_result,
    not_run,
    per_request_error,
    unix_seconds,
)
from providers.config import ProviderConfig
from providers.http import error_message
from providers.result import BATCH_CANCELLED, BATCH_EXPIRED, CallResult

BATCHES_PATH = "/v1/messages/batches"
# Anthropic's error types and the HTTP status each stands for (its errors documentation).
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_PAGE = 100


class AnthropicBatches(BatchApi):
    """The Message Batches API of one Anthropic-kind provider."""

    def __init__(self, config: ProviderConfig, api_key: SecretStr) -> None:
        super().__init__(config, (api_key.get_secret_value(),))
        self._client = httpx.AsyncClient(
            base_url=config.effective_base_url,
            headers={"x-api-key": api_key.get_secret_value(), "anthropic-version": config.anthropic_version},
            timeout=config.timeout_s,
            transport=httpx.AsyncHTTPTransport(retries=2),
        )

    def encode(self, custom_id: str, messages: list[dict[str, Any]], system: str | None) -> bytes:
        params = messages_body(self.config.model, self._params, messages, system)
        return json.dumps(
            {"custom_id": custom_id, "params": params}, ensure_ascii=False, separators=(",", ":")
        ).encode()

    async def _call(self, action: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._failure(action, exc) from None
        if response.status_code >= 400:
            message = error_message(response.content, response.reason_phrase)
            raise self._failure(action, RuntimeError(f"HTTP {response.status_code}: {message}"))
        return response

    async def submit(self, job_id: str, encoded: list[bytes]) -> str:
        body = b'{"requests":[' + b",".join(encoded) + b"]}"
        response = await self._call(
            "submit", "POST", BATCHES_PATH, content=body, headers={"content-type": "application/json"}
        )
        return str(response.json()["id"])

    async def retrieve(self, remote_id: str) -> RemoteBatch:
        response = await self._call("status", "GET", f"{BATCHES_PATH}/{remote_id}")
        return _remote(response.json())

    async def results(self, batch: RemoteBatch) -> AsyncIterator[tuple[str, CallResult]]:
        response = await self._call("results download", "GET", f"{BATCHES_PATH}/{batch.remote_id}/results")
        for line in response.content.splitlines():
            if line.strip():
                yield self._outcome(json.loads(line))

    def _outcome(self, line: dict[str, Any]) -> tuple[str, CallResult]:
        custom_id = str(line.get("custom_id"))
        result = _object(line.get("result"))
        kind = result.get("type")
        if kind == "succeeded":
            message = result.get("message")
            request_id = message.get("id") if isinstance(message, dict) else None
            return custom_id, batch_result(lambda: message_answer(message, request_id))
        if kind == "errored":
            outer = _object(result.get("error"))
            inner = _object(outer.get("error")) or outer
            error_type = str(inner.get("type") or "api_error")
            message = f"{error_type}: {inner.get('message') or 'error'}"
            return custom_id, per_request_error(ERROR_STATUS.get(error_type, 500), message, self._secrets)
        if kind == "canceled":
            return custom_id, not_run(BATCH_CANCELLED, "the batch was cancelled before this request ran")
        return custom_id, not_run(BATCH_EXPIRED, "the batch expired (24 h) before this request ran")

    async def find(
        self, job_id: str, request_count: int, prepared_at: str, custom_ids: set[str], known: set[str]
    ) -> str | NotSubmitted | Undecided:
        oldest = unix_seconds(prepared_at) - RECOVERY_WINDOW_S
        candidates: list[RemoteBatch] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": _PAGE}
            if after:
                params["after_id"] = after
            page = (await self._call("list", "GET", BATCHES_PATH, params=params)).json()
            batches = [_remote(item) for item in page.get("data") or []]
            for batch in batches:
                if batch.created_at >= oldest and batch.total == request_count and batch.remote_id not in known:
                    candidates.append(batch)
            if not page.get("has_more") or not batches or batches[-1].created_at < oldest:
                break
            after = page.get("last_id")
        if not candidates:
            return NotSubmitted()
        if len(candidates) == 1:
            return candidates[0].remote_id
        for candidate in candidates:
            if candidate.ended:
                async for custom_id, _ in self.results(candidate):
                    if custom_id in custom_ids:
                        return candidate.remote_id
                    break
        return NotSubmitted() if all(c.ended for c in candidates) else Undecided()

    async def cancel(self, remote_id: str) -> None:
        await self._call("cancel", "POST", f"{BATCHES_PATH}/{remote_id}/cancel")

    async def aclose(self) -> None:
        await self._client.aclose()


def _object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _remote(data: dict[str, Any]) -> RemoteBatch:
    counts = {k: int(v) for k, v in (data.get("request_counts") or {}).items()}
    return RemoteBatch(
        remote_id=str(data["id"]),
        status=str(data.get("processing_status")),
        ended=data.get("processing_status") == "ended",
        counts=counts,
        created_at=unix_seconds(data.get("created_at")),
        total=sum(counts.values()),
        raw=data,
    )
