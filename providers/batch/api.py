"""What the batch runner needs of a provider's batch API, whatever the kind.

A kind's batch API (``openai_batches``, ``anthropic_batches``) encodes one request as its upload
carries it, submits a job's requests as one provider batch, reads a batch's status and results, finds
a batch whose id was lost (the run died between submitting and recording it) and cancels one.
Results come back as :class:`~providers.result.CallResult`, the same as online calls: an answer, a
final error, or a request the provider never ran (``BATCH_EXPIRED``, ``BATCH_CANCELLED``, which are
not stored and are submitted again by the next run).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.clock import utc_now
from common.secrets import scrub
from providers.config import ProviderConfig
from providers.errors import MalformedAnswer, ProviderError, http_error
from providers.result import Answer, CallResult, answered, internal_failure

RECOVERY_WINDOW_S = 600.0
"""How far before a job was prepared a provider batch may have been created and still be that job's
(clock skew between this machine and the provider's)."""


class BatchApiError(Exception):
    """A batch API call failed (after the client's retries); the message names the provider and has no secret."""


@dataclass(slots=True)
class RemoteBatch:
    """A provider batch as last read: its status word, whether it has ended and its request counts."""

    remote_id: str
    status: str
    ended: bool
    counts: dict[str, int]
    created_at: float  # unix seconds
    total: int
    raw: Any = None  # the provider's own object, for the kind's results reader
    note: str | None = None  # why requests without a result did not run (e.g. the batch failed validation)


class NotSubmitted:
    """:meth:`BatchApi.find`'s answer when the provider has no batch of the job: submit it."""


class Undecided:
    """:meth:`BatchApi.find`'s answer when a candidate cannot be told apart yet: wait, do not submit."""


def per_request_error(status: int, message: str, secrets: tuple[str, ...]) -> CallResult:
    """The result of a batch request the provider answered with an error status, as an online call's."""
    error: ProviderError = http_error(status, f"HTTP {status}: {message}")
    return CallResult(
        ok=False,
        attempts=1,
        error_type=error.label,
        error=scrub(error.message, secrets),
        status_code=status,
        created_at=utc_now("milliseconds"),
    )


def batch_result(parse: Callable[[], Answer]) -> CallResult:
    """The result of a batch request the provider answered: ``parse()``'s answer, the malformed-answer error,
    or for any other exception a failure with reason ``internal`` (stored and counted, never lost)."""
    try:
        answer = parse()
    except MalformedAnswer as exc:
        return CallResult(
            ok=False, attempts=1, error_type=exc.label, error=exc.message, created_at=utc_now("milliseconds")
        )
    except Exception as exc:  # noqa: BLE001 - the request's boundary
        return internal_failure(exc, 1)
    return answered(answer, 1, 0.0, utc_now("milliseconds"))


def not_run(error_type: str, reason: str) -> CallResult:
    """A batch request the provider did not run (expired, cancelled, its batch failed): never stored."""
    return CallResult(ok=False, error_type=error_type, error=reason, created_at=utc_now("milliseconds"))


def unix_seconds(value: str | float | int | None) -> float:
    """A creation time as unix seconds: OpenAI gives integers, Anthropic RFC 3339 strings."""
    if value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class BatchApi(abc.ABC):
    """One provider's batch API (see the module docstring)."""

    def __init__(self, config: ProviderConfig, secrets: tuple[str, ...]) -> None:
        self.config = config
        self._secrets = secrets
        self._params = config.wire_params()

    def scrubbed(self, text: str) -> str:
        """``text`` with the provider's key masked (for reasons that quote the provider)."""
        return scrub(text, self._secrets)

    def _failure(self, action: str, exc: BaseException) -> BatchApiError:
        text = self.scrubbed(str(exc) or type(exc).__name__)
        return BatchApiError(f"{self.config.source_id}: batch API {action} failed: {text}")

    @abc.abstractmethod
    def encode(self, custom_id: str, messages: list[dict[str, Any]], system: str | None) -> bytes:
        """One request as the kind's batch upload carries it (its bytes count against the batch size)."""

    @abc.abstractmethod
    async def submit(self, job_id: str, encoded: list[bytes]) -> str:
        """Create one provider batch of these requests; its id."""

    @abc.abstractmethod
    async def retrieve(self, remote_id: str) -> RemoteBatch:
        """The batch's current status."""

    @abc.abstractmethod
    def results(self, batch: RemoteBatch) -> AsyncIterator[tuple[str, CallResult]]:
        """Every request's outcome of an ended batch, by custom id."""

    @abc.abstractmethod
    async def find(
        self, job_id: str, request_count: int, prepared_at: str, custom_ids: set[str], known: set[str]
    ) -> str | NotSubmitted | Undecided:
        """The provider batch of a job whose batch id was never recorded (not one of ``known``)."""

    @abc.abstractmethod
    async def cancel(self, remote_id: str) -> None:
        """Ask the provider to cancel the batch (requests not yet run are then never run)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the HTTP client."""
