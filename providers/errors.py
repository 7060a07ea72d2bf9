"""Provider errors, classified for the retry policy, with secrets scrubbed from their text."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
MAX_ERROR_TEXT = 500


class ProviderError(Exception):
    """A failed attempt. ``error_type`` is one of ``http``, ``timeout``, ``connection``, ``malformed``."""

    def __init__(
        self,
        message: str,
        *,
        error_type: str,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.status_code = status_code
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        """408/409/429/5xx, timeouts, dropped connections and malformed bodies are worth another try."""
        if self.error_type == "http":
            return self.status_code in RETRYABLE_STATUS
        return self.error_type in {"timeout", "connection", "malformed"}

    @property
    def label(self) -> str:
        """A short reason for summaries: ``http_429``, ``timeout``, ..."""
        return f"http_{self.status_code}" if self.error_type == "http" else self.error_type


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The server's requested wait: ``retry-after-ms`` first, then ``retry-after`` (seconds or HTTP date)."""
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw) if raw else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Remove every secret from ``text`` and cap its length."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "…"


def connection_error(detail: str) -> ProviderError:
    """A connection that failed or was lost, named by ``detail`` (the client library's exception class)."""
    return ProviderError(f"connection failed: {detail}", error_type="connection")


def timeout_error(elapsed_s: float, timeout_s: float, detail: str) -> ProviderError:
    """A timeout, or a dropped connection that the aiohttp transports report as a (connect) timeout.

    Only a request that actually ran into its time limit is called a timeout.
    """
    if elapsed_s < 0.9 * timeout_s:
        return connection_error(detail)
    return ProviderError(f"timed out after {timeout_s:g} s", error_type="timeout")
