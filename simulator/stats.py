"""Request statistics kept by the simulator (served by ``GET /_sim/stats``).

Only counts and timings are recorded; request bodies and API key values are never stored.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_REQUEST_TIMES_PER_MODEL = 200_000


def fingerprint(api: str, body: Any) -> str:
    """sha256 hex of ``"<api>:" + canonical JSON of body`` (sorted keys, no whitespace)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{api}:{canonical}".encode()).hexdigest()


@dataclass(slots=True)
class ModelStats:
    """Counters for one requested model."""

    requests: int = 0
    ok: int = 0
    errors: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    rate_limited: int = 0
    images: dict[str, int] = field(default_factory=dict)  # image tag -> requests that carried it


@dataclass(slots=True)
class BatchStats:
    """Counters of the batch APIs (``GET /_sim/stats`` ``batches``); batch requests are not online
    requests and appear in no other counter.

    ``submissions`` maps (API, custom_id) to the number of accepted batches that held it; only the
    number of pairs seen more than once is reported.
    """

    openai_files_uploaded: int = 0
    openai_batches_created: int = 0
    anthropic_batches_created: int = 0
    openai_batches_failed: int = 0
    requests_submitted: int = 0
    requests_succeeded: int = 0
    requests_errored: int = 0
    requests_expired: int = 0
    requests_cancelled: int = 0
    cancelled: int = 0
    expired: int = 0
    http_requests: dict[str, int] = field(default_factory=dict)
    submissions: dict[tuple[str, str], int] = field(default_factory=dict)

    def http(self, family: str) -> None:
        """Count one HTTP request to an endpoint family (``openai_files``, ``openai_batches``, …)."""
        self.http_requests[family] = self.http_requests.get(family, 0) + 1

    def submitted(self, api: str, custom_ids: list[str]) -> None:
        """Record the requests of one accepted batch."""
        self.requests_submitted += len(custom_ids)
        submissions = self.submissions
        for custom_id in custom_ids:
            key = (api, custom_id)
            submissions[key] = submissions.get(key, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable counters."""
        return {
            "openai_files_uploaded": self.openai_files_uploaded,
            "openai_batches_created": self.openai_batches_created,
            "anthropic_batches_created": self.anthropic_batches_created,
            "openai_batches_failed": self.openai_batches_failed,
            "requests_submitted": self.requests_submitted,
            "requests_succeeded": self.requests_succeeded,
            "requests_errored": self.requests_errored,
            "requests_expired": self.requests_expired,
            "requests_cancelled": self.requests_cancelled,
            "custom_ids_submitted_more_than_once": sum(1 for count in self.submissions.values() if count > 1),
            "cancelled": self.cancelled,
            "expired": self.expired,
            "http_requests": dict(self.http_requests),
        }


class Stats:
    """Mutable request statistics. Use from the server's event loop only."""

    def __init__(self) -> None:
        self.requests_total = 0
        self.responses_ok = 0
        self.errors_total = 0
        self.rate_limited_total = 0
        self.auth_headers_seen = 0
        self.by_model: dict[str, ModelStats] = {}
        self.by_fingerprint: dict[str, list[int]] = {}
        self.request_times: dict[str, deque[float]] = {}
        self.faults_injected: dict[str, int] = {}
        self.batches = BatchStats()

    def arrive(self, model: str | None, fp: str | None, now: float, has_auth: bool) -> ModelStats | None:
        """Record a request's arrival; returns its model counters (in flight incremented)."""
        self.requests_total += 1
        if has_auth:
            self.auth_headers_seen += 1
        if fp is not None:
            entry = self.by_fingerprint.get(fp)
            if entry is None:
                self.by_fingerprint[fp] = [1, 0]
            else:
                entry[0] += 1
        if model is None:
            return None
        ms = self.by_model.get(model)
        if ms is None:
            ms = self.by_model[model] = ModelStats()
            self.request_times[model] = deque(maxlen=MAX_REQUEST_TIMES_PER_MODEL)
        ms.requests += 1
        ms.in_flight += 1
        if ms.in_flight > ms.max_in_flight:
            ms.max_in_flight = ms.in_flight
        self.request_times[model].append(now)
        return ms

    def ok(self, ms: ModelStats | None, fp: str | None) -> None:
        """Record a normal (non-fault) answer."""
        self.responses_ok += 1
        if ms is not None:
            ms.ok += 1
        if fp is not None:
            entry = self.by_fingerprint.get(fp)
            if entry is not None:
                entry[1] += 1

    def error(self, ms: ModelStats | None, fault_kind: str | None = None) -> None:
        """Record an error response or injected fault."""
        self.errors_total += 1
        if ms is not None:
            ms.errors += 1
        if fault_kind is not None:
            self.faults_injected[fault_kind] = self.faults_injected.get(fault_kind, 0) + 1

    def rate_limited(self, ms: ModelStats | None) -> None:
        """Record a 429 from the rate limiter (an error, but not an injected fault)."""
        self.errors_total += 1
        self.rate_limited_total += 1
        if ms is not None:
            ms.errors += 1
            ms.rate_limited += 1

    def snapshot(self, rate_limited: bool = False) -> dict[str, Any]:
        """JSON-serialisable copy of all counters.

        Each ``by_model`` entry has ``rate_limited`` (the rate limiter's 429s, also counted in
        ``errors``) when ``rate_limited`` is true (limits enforced) or any request was refused.
        ``batches`` holds the batch APIs' counters (see :class:`BatchStats`).
        """
        per_model = rate_limited or self.rate_limited_total > 0
        by_model: dict[str, dict[str, Any]] = {}
        for model, ms in self.by_model.items():
            entry = by_model[model] = {
                "requests": ms.requests,
                "ok": ms.ok,
                "errors": ms.errors,
                "in_flight": ms.in_flight,
                "max_in_flight": ms.max_in_flight,
            }
            if per_model:
                entry["rate_limited"] = ms.rate_limited
            if ms.images:
                entry["images"] = dict(ms.images)
        return {
            "requests_total": self.requests_total,
            "responses_ok": self.responses_ok,
            "errors_total": self.errors_total,
            "rate_limited_total": self.rate_limited_total,
            "auth_headers_seen": self.auth_headers_seen,
            "faults_injected": dict(self.faults_injected),
            "by_model": by_model,
            "by_fingerprint": {fp: {"requests": v[0], "ok": v[1]} for fp, v in self.by_fingerprint.items()},
            "request_times": {model: list(times) for model, times in self.request_times.items()},
            "batches": self.batches.snapshot(),
        }
