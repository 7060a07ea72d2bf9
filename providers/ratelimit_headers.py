"""Read what providers send with every response: rate-limit headers and the request id."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
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
    """Seconds from ``now`` until an RFC 3339 time (Anthropic's reset headers)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (moment - now).total_seconds())


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def openai_remaining(headers: Mapping[str, str]) -> tuple[int | None, float | None]:
    """``(remaining requests, seconds until the request window resets)`` from ``x-ratelimit-*``."""
    return _int(headers.get("x-ratelimit-remaining-requests")), openai_duration_s(headers.get("x-ratelimit-reset-requests"))


def anthropic_remaining(headers: Mapping[str, str], now: datetime) -> tuple[int | None, float | None]:
    """The same from ``anthropic-ratelimit-requests-*``."""
    return (
        _int(headers.get("anthropic-ratelimit-requests-remaining")),
        rfc3339_in_s(headers.get("anthropic-ratelimit-requests-reset"), now),
    )


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
