"""The one normalised result of a (prompt, provider) call, whatever the provider kind.

An answer is whatever a provider billed for, in every shape the APIs return (``docs/answers.md``): text,
a refusal, tool calls, thinking, a cut-off, an empty or filtered answer. Each is an ``ok`` result: stored
once, never asked again. Only a final error (after retries) is ``ok=False``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from common.clock import utc_now
from common.secrets import scrub
from providers.ratelimit_headers import RateInfo

# Outcomes that are not the provider's answer or error and are never stored: a rerun makes these calls.
SKIPPED = "skipped"  # the provider's breaker was open
INTERRUPTED = "interrupted"  # the run was stopped before the call was made
# A batch request the provider never ran (``providers.batch``): the batch expired or was cancelled before
# it, or the whole batch failed validation. Nothing was paid; the next run submits it again.
BATCH_EXPIRED = "batch_expired"
BATCH_CANCELLED = "batch_cancelled"
BATCH_FAILED = "batch_failed"
# Not sent: the run's budget (or a limit this provider counts against) would have been crossed (``providers.budget``).
BUDGET = "budget"
UNSTORED = frozenset({SKIPPED, INTERRUPTED, BATCH_EXPIRED, BATCH_CANCELLED, BATCH_FAILED, BUDGET})
# An exception nobody foresaw while making, parsing or storing a call (``providers.base``): a stored,
# counted failure with the exception's type and (scrubbed) message, never a silent "not made".
INTERNAL = "internal"
# Errors about the provider itself (the key, its permissions, the model or URL, a rate limit that never
# lifted), not about the prompt:
# reported, but never stored as the prompt's final answer, so a rerun after the fix makes the call.
PROVIDER_REFUSALS = frozenset({401, 403, 404, 429})

# The fields kept as JSON text in a store row (lists of objects, or of flags).
JSON_FIELDS = frozenset({"tool_calls", "reasoning", "flags"})
TEXT_FIELDS = frozenset(
    {"text", "model", "finish_reason", "request_id", "error_type", "error", "created_at", "vendor_finish_reason"}
    | {"refusal", "price"}
)
INT_FIELDS = frozenset(
    {"input_tokens", "output_tokens", "attempts", "status_code", "reasoning_tokens", "cached_input_tokens"}
    | {"cache_write_tokens"}
)


@dataclass(slots=True)
class CallResult:
    """An answer (``ok``) or the final error of a call, after all retries.

    ``finish_reason`` is normalised across kinds (``stop``, ``length``, ``content_filter``, ``refusal``,
    ``tool_calls``, or the vendor's value when it has no common name); ``vendor_finish_reason`` is the
    vendor's own. ``input_tokens`` counts every input token the provider processed, cached ones included;
    ``cached_input_tokens`` and ``cache_write_tokens`` are the parts read from and written to its prompt
    cache (priced differently); ``reasoning_tokens`` is the part of ``output_tokens`` spent thinking.
    ``reasoning`` holds thinking blocks (``{"content"}``, or ``{"redacted": true, "data"}``, each with its
    ``signature`` if any), never part of ``text``. ``flags`` say what was repaired or could not be trusted
    (``providers.answer_parts``).
    """

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
    vendor_finish_reason: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    reasoning: list[dict[str, Any]] | None = None
    reasoning_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    flags: tuple[str, ...] = ()
    # What the call cost in USD at the price it was paid at, and that price (JSON: USD per million tokens and
    # where it came from, ``providers.costs``); None for a call with no price known, or stored before costs were.
    cost_usd: float | None = None
    price: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON and the store)."""
        data = asdict(self)
        data["flags"] = list(self.flags)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallResult:
        """The result :meth:`to_dict` gave (keys it does not know are ignored; missing ones take defaults)."""
        known = {name: data[name] for name in FIELD_NAMES if name in data}
        if "flags" in known:
            known["flags"] = tuple(known["flags"] or ())
        return cls(**known)

    def to_row(self) -> tuple[Any, ...]:
        """The values of a store row, in :data:`FIELD_NAMES` order, each of a type every store accepts.

        Lists are JSON text; a value of the wrong type (which the parsers never give, but a result built
        elsewhere might) is kept as text (text fields) or dropped (numbers) instead of failing the commit.
        """
        row: list[Any] = []
        for name in FIELD_NAMES:
            value = getattr(self, name)
            if name in JSON_FIELDS:
                value = json.dumps(list(value), ensure_ascii=False) if value else None
            elif name in TEXT_FIELDS:
                value = value if value is None or isinstance(value, str) else json.dumps(value, default=str)
            elif name in INT_FIELDS:
                value = value if isinstance(value, int) and not isinstance(value, bool) else None
            elif name == "ok":
                value = int(bool(value))
            elif name == "cost_usd":
                value = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
            row.append(value)
        return tuple(row)

    @classmethod
    def from_row(cls, row: tuple[Any, ...] | list[Any]) -> CallResult:
        """The result of a store row (:meth:`to_row`'s values; a row of an older store may be shorter)."""
        values = dict(zip(FIELD_NAMES, row))
        values["ok"] = bool(values["ok"])
        for name in JSON_FIELDS:
            raw = values.get(name)
            values[name] = json.loads(raw) if raw else None
        values["flags"] = tuple(values.get("flags") or ())
        return cls(**values)

    @property
    def made(self) -> bool:
        """False for calls that were never sent (skipped, interrupted)."""
        return self.error_type not in UNSTORED

    @property
    def storable(self) -> bool:
        """False for calls not made and for the provider's refusals (401/403/404): a rerun must make them."""
        return self.error_type not in UNSTORED and self.status_code not in PROVIDER_REFUSALS


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(CallResult))
"""Every field of a result, in order: the result columns of a store row."""


@dataclass(slots=True)
class Answer:
    """What one successful HTTP exchange gave, before retries are accounted for (see :class:`CallResult`)."""

    text: str
    model: str | None
    finish_reason: str | None
    input_tokens: int | None
    output_tokens: int | None
    request_id: str | None
    rate: RateInfo | None = None  # the rate-limit headers the response carried
    vendor_finish_reason: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    reasoning: list[dict[str, Any]] | None = None
    reasoning_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    flags: tuple[str, ...] = ()


def internal_failure(
    exc: BaseException, attempts: int, *, prefix: str = "", secrets: tuple[str, ...] = ()
) -> CallResult:
    """The stored, counted failure for an exception nobody foresaw (reason :data:`INTERNAL`): its type and
    message, with ``secrets`` scrubbed and the length bounded."""
    message = scrub(f"{prefix}{type(exc).__name__}: {exc}", secrets)  # scrub() also bounds the length
    return CallResult(
        ok=False, attempts=attempts, error_type=INTERNAL, error=message, created_at=utc_now("milliseconds")
    )


# What a call's result takes over from the answer as it is (everything but the rate-limit headers).
_ANSWER_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Answer) if f.name != "rate")


def answered(answer: Answer, attempts: int, latency_ms: float, created_at: str) -> CallResult:
    """The result of a call that got ``answer`` (online after ``attempts`` attempts, or from a batch)."""
    parts = {name: getattr(answer, name) for name in _ANSWER_FIELDS}
    return CallResult(ok=True, latency_ms=latency_ms, attempts=attempts, created_at=created_at, **parts)
