"""Read what providers send with every response: rate-limit headers and the request id."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Request ids set by gateways in front of a provider, best first: a LiteLLM proxy forwards the
# provider's own headers prefixed with "llm_provider-" and adds its call id; Portkey adds a trace id.
GATEWAY_REQUEST_ID_HEADERS = (
    "llm_provider-x-request-id",
    "llm_provider-request-id",
    "x-litellm-call-id",
    "x-portkey-trace-id",
)


def openai_duration_s(value: str | None) -> float | None:
    """OpenAI's reset format (``"20ms"``, ``"8.64s"``, ``"6m0s"``, ``"1h2m"``) in seconds."""
    if not value:
        return None
    parts = _DURATION_PART.findall(value)
    if not parts:
        return None
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


def rfc3339_in_s(value: str | None, now: datetime) -> float | None:
    """Seconds from ``now`` until an RFC 3339 time (Anthropic's reset headers).

    A time in whole seconds may have been rounded up or cut by the server: up to a second either way
    (:attr:`Allowance.coarse`, see :func:`rate_info`).
    """
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (moment - now).total_seconds())


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class Allowance:
    """One rate limit as a response announced it: its size, what is left, seconds until it is full again."""

    limit: float
    remaining: float
    reset_s: float | None
    coarse: bool = field(default=False, compare=False)  # the reset came in whole seconds (RFC 3339): ±1 s
    limit_known: bool = True  # False: Azure's remaining without a limit (``limit`` is then remaining + 1)


@dataclass(frozen=True, slots=True)
class RateInfo:
    """The request and token allowances a response announced (either may be missing)."""

    requests: Allowance | None
    tokens: Allowance | None


def _allowance(
    headers: Mapping[str, str], limit: str, remaining: str, reset_s: float | None, coarse: bool = False
) -> Allowance | None:
    size, left = _number(headers.get(limit)), _number(headers.get(remaining))
    if size is None or left is None or size <= 0:
        return None
    return Allowance(size, max(0.0, left), reset_s, coarse)


def _remaining_only(headers: Mapping[str, str], remaining: str) -> Allowance | None:
    """Azure OpenAI's ``x-ratelimit-remaining-*`` without a limit or a reset: the size is at least
    what remains after this request, plus this request."""
    left = _number(headers.get(remaining))
    if left is None or left < 0:
        return None
    return Allowance(left + 1.0, left, None, limit_known=False)


def rate_info(headers: Mapping[str, str], now: datetime | None = None) -> RateInfo | None:
    """The allowances in a response's headers, OpenAI's (``x-ratelimit-*``) or Anthropic's (``anthropic-ratelimit-*``).

    OpenAI: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``, resets as durations. Anthropic:
    ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``, resets as RFC 3339 times; its
    ``tokens`` headers are the most restrictive of its token limits at that moment, and are used here
    (``input-tokens``/``output-tokens`` stand in when a server sends only those). None when the
    response announces nothing (many OpenAI-compatible servers). Azure OpenAI sends only
    ``x-ratelimit-remaining-{requests,tokens}`` (no limits, no resets): read as allowances of unknown size.
    """
    if "x-ratelimit-limit-requests" in headers or "x-ratelimit-limit-tokens" in headers:
        requests = _allowance(
            headers,
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            openai_duration_s(headers.get("x-ratelimit-reset-requests")),
        )
        tokens = _allowance(
            headers,
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            openai_duration_s(headers.get("x-ratelimit-reset-tokens")),
        )
        return RateInfo(requests, tokens)
    if "x-ratelimit-remaining-requests" in headers or "x-ratelimit-remaining-tokens" in headers:
        return RateInfo(
            _remaining_only(headers, "x-ratelimit-remaining-requests"),
            _remaining_only(headers, "x-ratelimit-remaining-tokens"),
        )
    prefix = "anthropic-ratelimit-"
    if not any(prefix + kind + "-limit" in headers for kind in ("requests", "tokens", "input-tokens")):
        return None
    now = now or datetime.now(UTC)
    found: dict[str, Allowance | None] = {}
    for name in ("requests", "tokens", "input-tokens"):
        base = prefix + name
        reset = headers.get(base + "-reset")
        found[name] = _allowance(
            headers,
            base + "-limit",
            base + "-remaining",
            rfc3339_in_s(reset, now),
            coarse=reset is not None and "." not in reset,
        )
    return RateInfo(found["requests"], found["tokens"] or found["input-tokens"])


def request_id(headers: Mapping[str, str], own_header: str, body: Mapping[str, Any]) -> str | None:
    """The id to quote to the provider about a response.

    The kind's own header (``x-request-id`` for OpenAI, ``request-id`` for Anthropic), else a
    gateway's (:data:`GATEWAY_REQUEST_ID_HEADERS`), else the body's ``id`` (``chatcmpl-…``, ``msg_…``).
    """
    for name in (own_header, *GATEWAY_REQUEST_ID_HEADERS):
        value = headers.get(name)
        if value:
            return value
    value = body.get("id")
    return value if isinstance(value, str) and value else None
