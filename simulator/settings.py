"""Configuration models for the provider simulator (pydantic v2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Answer shapes: 200s in each API's real shape (simulator.shapes, docs/simulator.md).
ShapeKind = Literal[
    "refusal",
    "content_filter",
    "length",
    "reasoning_length",
    "thinking",
    "redacted_thinking",
    "tool_calls",
    "content_parts",
    "whitespace",
    "huge_text",
    "lone_surrogate",
    "usage_negative",
    "usage_huge",
    "usage_overflow",
    "usage_list",
    "model_object",
    "cached_input",
]
FaultKind = Literal[
    "429",
    "500",
    "503",
    "529",
    "401",
    "400",
    "drop",
    "hang",
    "malformed",
    "empty",
    "no_choices",
    "echo_key",
    ShapeKind,
]
ApiName = Literal["openai", "anthropic"]
AnswerMode = Literal["auto", "replay", "derived"]
# How much of the received API key an ``echo_key`` error quotes: all of it, or ``echo_chars`` of its
# first or last characters with the rest masked, as real providers and gateways do.
KeyEcho = Literal["full", "prefix", "suffix"]
# Which request id a response carries: the API's own header (``x-request-id`` / ``request-id``),
# a LiteLLM proxy's ``x-litellm-call-id`` instead, or none (the body's ``id`` is always there).
RequestIdHeader = Literal["provider", "gateway", "none"]
# What a rate-limit 429 says about when to retry: ``retry-after`` in whole seconds (rounded up),
# that plus OpenAI's ``retry-after-ms``, or nothing (a bare 429, as some gateways send).
RetryAfterMode = Literal["seconds", "ms", "none"]
# What an enforcing server's rate-limit headers say (the buckets enforced are the same in every mode):
# "bucket": the enforced buckets, exactly; "per_minute": quantized enforcement, a minute's allowance
# (limit ``rate_limit_requests`` × 60 / ``rate_limit_window_s``, remaining and reset of a bucket that
# size) while requests are enforced per window; "truncated": like "bucket", but Anthropic's RFC 3339
# resets are cut to the whole second (not rounded up); "next_request": resets give the time until the
# next request can be admitted, not until the bucket is full; "azure": Azure OpenAI's
# ``x-ratelimit-remaining-requests`` / ``-tokens`` only (no limits, no resets), for both APIs.
RateLimitHeaderMode = Literal["bucket", "per_minute", "truncated", "next_request", "azure"]

# Fault kinds that produce an HTTP error status (the rest are 200s or transport-level faults).
STATUS_FAULTS: frozenset[str] = frozenset({"429", "500", "503", "529", "401", "400"})


class FaultRule(BaseModel):
    """One fault-injection rule; the first matching, non-exhausted rule wins.

    ``times`` limits the rule to the first N requests it is applied to; ``probability``
    applies it to a seeded-random fraction of matching requests. With neither set, the rule
    applies to every matching request. ``echo_key`` answers ``echo_status`` with an error message
    quoting the API key it received (see :data:`KeyEcho`). The answer-shape kinds (``refusal`` …
    ``cached_input``, :data:`simulator.shapes.SHAPE_FAULTS`) answer 200 in a shape real providers use.
    """

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    model: str | None = None
    api: ApiName | None = None
    times: int | None = Field(default=None, ge=0)
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    retry_after_s: float | None = Field(default=None, ge=0.0)
    prompt_contains: str | None = None
    hang_s: float = Field(default=3600.0, ge=0.0)
    echo: KeyEcho = "full"
    echo_chars: int = Field(default=12, ge=1)
    echo_status: Literal["400", "401"] = "401"
    # ``huge_text``: the length of the answer text in characters (its usage still reports 7 tokens).
    huge_chars: int = Field(default=1_000_000, ge=1)


class ScriptedAnswer(BaseModel):
    """A fixed answer for matching requests (crafted texts for tests: refusals, duplicates, …).

    The first matching rule wins; faults are applied before scripted answers.
    """

    model_config = ConfigDict(extra="forbid")

    text: str
    model: str | None = None
    prompt_contains: str | None = None
    truncated: bool = False


class SimulatorSettings(BaseModel):
    """Runtime settings of a simulator instance (replaceable through ``PUT /_sim/settings``)."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0.0)
    latency_jitter_ms: float = Field(default=0.0, ge=0.0)
    mode: AnswerMode = "auto"
    seed: int = 0
    faults: list[FaultRule] = Field(default_factory=list)
    scripted: list[ScriptedAnswer] = Field(default_factory=list)
    require_api_key: bool = False
    request_id_header: RequestIdHeader = "provider"
    # Rate limits per model. Not enforced (the default): requests and tokens are counted per model
    # in fixed windows of ``rate_limit_window_s`` seconds and only advertised in headers.
    # Enforced (``rate_limit_enforce``): token buckets per (API key, model) -- a request bucket of
    # ``rate_limit_burst`` (default ``rate_limit_requests``) and a token bucket of
    # ``rate_limit_tokens``, each refilled continuously at its limit per ``rate_limit_window_s``;
    # a request costs 1 request and its input tokens (characters / 4) plus its max_tokens (the
    # answer's own tokens when the request sets none); one the buckets cannot pay for is refused
    # with a 429 in the API's shape (see simulator.ratelimit.TokenBuckets).
    rate_limit_requests: int = Field(default=10_000, ge=1)
    rate_limit_tokens: int = Field(default=2_000_000, ge=1)
    rate_limit_window_s: float = Field(default=60.0, gt=0.0)
    rate_limit_enforce: bool = False
    rate_limit_burst: int | None = Field(default=None, ge=1)
    # Send the API's rate-limit headers (x-ratelimit-* / anthropic-ratelimit-*) at all.
    rate_limit_headers: bool = True
    # What those headers say (see RateLimitHeaderMode).
    rate_limit_header_mode: RateLimitHeaderMode = "bucket"
    # Retry headers on a rate limiter's 429 (see RetryAfterMode); fault 429s use their rule's.
    rate_limit_retry_after: RetryAfterMode = "seconds"
    # Batch APIs (OpenAI /v1/batches, Anthropic /v1/messages/batches; see simulator.batches).
    # Seconds from a batch's creation until all its requests are done; request i of n is done at
    # created + batch_completion_s * (i + 1) / n (read lazily: GETs reflect the time passed).
    batch_completion_s: float = Field(default=0.0, ge=0.0)
    # Limits per batch; None = the real API's (OpenAI 50,000 requests and a 200 MB input file,
    # Anthropic 100,000 requests and a 256 MB request body).
    batch_max_requests: int | None = Field(default=None, ge=1)
    batch_max_bytes: int | None = Field(default=None, ge=1)
    # Batch requests whose prompt contains this text are never processed: once all the others are
    # done the batch ends with them expired (OpenAI status ``expired``, Anthropic result ``expired``).
    batch_expire_prompt_contains: str | None = Field(default=None, min_length=1)
    # Structured output (OpenAI response_format json_schema, a forced Anthropic tool; see
    # simulator.structured): the probability that such an answer is invalid, drawn per request from an
    # RNG seeded with ``seed`` (online and batch requests alike). Invalid answers cycle through a value
    # off its scale, a missing required key and, for OpenAI, the JSON wrapped in a sentence.
    structured_invalid_probability: float = Field(default=0.0, ge=0.0, le=1.0)

    def merged(self, patch: dict[str, Any]) -> SimulatorSettings:
        """Return a new, validated settings object with ``patch`` (partial settings) applied."""
        data = self.model_dump()
        data.update(patch)
        return SimulatorSettings.model_validate(data)
