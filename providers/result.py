"""The one normalised result of a (prompt, provider) call, whatever the provider kind."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from providers.ratelimit_headers import RateInfo

# Outcomes that are not the provider's answer or error and are never stored: a rerun makes these calls.
SKIPPED = "skipped"  # the provider's breaker was open
INTERRUPTED = "interrupted"  # the run was stopped before the call was made
# A batch request the provider never ran (``providers.batch``): the batch expired or was cancelled before
# it, or the whole batch failed validation. Nothing was paid; the next run submits it again.
BATCH_EXPIRED = "batch_expired"
BATCH_CANCELLED = "batch_cancelled"
BATCH_FAILED = "batch_failed"
UNSTORED = frozenset({SKIPPED, INTERRUPTED, BATCH_EXPIRED, BATCH_CANCELLED, BATCH_FAILED})
# Errors about the provider itself (the key, its permissions, the model or URL, a rate limit that never
# lifted), not about the prompt:
# reported, but never stored as the prompt's final answer, so a rerun after the fix makes the call.
PROVIDER_REFUSALS = frozenset({401, 403, 404, 429})


@dataclass(slots=True)
class CallResult:
    """An answer (``ok``) or the final error of a call, after all retries."""

    ok: bool
    text: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    request_id: str | None = None
    latency_ms: float = 0.0
    attempts: int = 0
    error_type: str | None = None
    error: str | None = None
    status_code: int | None = None
    created_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON and the store)."""
        return asdict(self)

    @property
    def made(self) -> bool:
        """False for calls that were never sent (skipped, interrupted)."""
        return self.error_type not in UNSTORED

    @property
    def storable(self) -> bool:
        """False for calls not made and for the provider's refusals (401/403/404): a rerun must make them."""
        return self.error_type not in UNSTORED and self.status_code not in PROVIDER_REFUSALS


def answered(answer: Answer, attempts: int, latency_ms: float, created_at: str) -> CallResult:
    """The result of a call that got ``answer`` (online after ``attempts`` attempts, or from a batch)."""
    return CallResult(
        ok=True,
        text=answer.text,
        model=answer.model,
        finish_reason=answer.finish_reason,
        input_tokens=answer.input_tokens,
        output_tokens=answer.output_tokens,
        request_id=answer.request_id,
        latency_ms=latency_ms,
        attempts=attempts,
        created_at=created_at,
    )


@dataclass(slots=True)
class Answer:
    """What one successful HTTP exchange gave, before retries are accounted for."""

    text: str
    model: str | None
    finish_reason: str | None
    input_tokens: int | None
    output_tokens: int | None
    request_id: str | None
    rate: RateInfo | None = None  # the rate-limit headers the response carried
