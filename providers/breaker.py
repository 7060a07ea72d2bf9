"""The circuit breaker: a provider that keeps failing is cut off for the rest of the run."""

from __future__ import annotations

# Final errors that say something about the provider, not about one prompt. A 400/413/422 is the
# prompt's problem and never trips the breaker.
PROVIDER_FAILURES = frozenset({"connection", "timeout", "malformed"})
PROVIDER_FAILURE_STATUSES = frozenset({401, 403, 404, 408, 409, 429}) | frozenset(range(500, 600))


class Breaker:
    """Opens after ``threshold`` consecutive provider-level final failures; any answer resets the count."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.consecutive = 0
        self.reason: str | None = None

    @property
    def is_open(self) -> bool:
        """True once the provider has been cut off."""
        return self.reason is not None

    def record(self, ok: bool, error_type: str | None, status_code: int | None, error: str | None) -> None:
        """Account one call's final outcome (after its retries)."""
        if ok:
            self.consecutive = 0
            return
        provider_level = error_type in PROVIDER_FAILURES or status_code in PROVIDER_FAILURE_STATUSES
        if not provider_level:
            return
        self.consecutive += 1
        if self.threshold and self.consecutive >= self.threshold and self.reason is None:
            self.reason = f"cut off after {self.consecutive} consecutive failures (last: {error_type}: {error})"
