"""The circuit breaker: a provider that keeps failing is cut off for the rest of the run."""

from __future__ import annotations

from providers.errors import RATE_LIMITED, is_provider_failure

# Which final errors say something about the provider, not about one prompt, is the error kinds' to say
# (providers/errors.py: ``provider_failure``). Any other 4xx (400, 413, 422, ...) is normally the prompt's problem: one of them never trips the
# breaker. But when every call in a row fails with the same one, the provider (or a gateway in front
# of it) is refusing the requests themselves, e.g. a LiteLLM proxy answering 400 to a bad key.


class Breaker:
    """Opens after ``threshold`` consecutive provider-level final failures; any answer resets the count.

    It also opens after ``threshold`` consecutive final failures with one and the same client error
    (a 4xx that is not provider-level on its own). Then :attr:`discard_status` names that status:
    those failures were the provider's, and must not be kept as the prompts' final answers.
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.consecutive = 0
        self.reason: str | None = None
        self.discard_status: int | None = None
        self._same_status: int | None = None
        self._same_count = 0

    @property
    def is_open(self) -> bool:
        """True once the provider has been cut off."""
        return self.reason is not None

    def record(self, ok: bool, error_type: str | None, status_code: int | None, error: str | None) -> None:
        """Account one call's final outcome (after its retries)."""
        if ok:
            self.consecutive = 0
            self._same_status, self._same_count = None, 0
            return
        if status_code == RATE_LIMITED:  # back-pressure: the limiter paces it, it is never a failure
            return
        if is_provider_failure(error_type, status_code):
            self.consecutive += 1
            self._trip(self.consecutive, error_type, error)
        elif status_code is not None and 400 <= status_code < 500:
            if status_code == self._same_status:
                self._same_count += 1
            else:
                self._same_status, self._same_count = status_code, 1
            if self._trip(self._same_count, error_type, error):
                self.discard_status = status_code

    def _trip(self, count: int, error_type: str | None, error: str | None) -> bool:
        if not self.threshold or count < self.threshold or self.reason is not None:
            return False
        self.reason = f"cut off after {count} consecutive failures (last: {error_type}: {error})"
        return True
