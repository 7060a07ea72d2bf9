"""The typed provider errors: each kind's retry, breaker and limiter classification, stated once in
``providers/errors.py`` and used by the retry policy and the breaker (the rules as they were before the
kinds existed, checked status by status)."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl

import pytest

from providers.breaker import Breaker
from providers.config import MissingApiKey, ProviderConfig
from providers.errors import (
    ERROR_TYPES,
    HttpStatusError,
    MalformedAnswer,
    ProviderError,
    RateLimited,
    TimedOut,
    TlsError,
    TransportError,
    http_error,
    is_provider_failure,
    transport_error,
)
from providers.retry import make_retrying

# The rules before the typed errors, written out: what the kinds must still say.
OLD_RETRYABLE_STATUS = {408, 409, 429, *range(500, 600)}
OLD_BREAKER_STATUS = {401, 403, 404, 408, 409, *range(500, 600)}
OLD_LIMITER_STATUS = {429, 529}


@pytest.mark.parametrize(
    ("error", "label", "retryable", "provider_failure"),
    [
        (TimedOut("timed out after 5 s"), "timeout", True, True),
        (TransportError("connection refused (127.0.0.1:9)"), "connection", True, True),
        (TlsError("TLS error: certificate verify failed"), "tls", False, True),
        (MalformedAnswer("malformed response: no choices"), "malformed", True, True),
        (http_error(503, "HTTP 503: busy"), "http_503", True, True),
        (http_error(401, "HTTP 401: bad key"), "http_401", False, True),
        (http_error(400, "HTTP 400: bad prompt"), "http_400", False, False),
        (http_error(429, "HTTP 429: slow down"), "http_429", True, False),
    ],
)
def test_each_kind_states_its_classification(
    error: ProviderError, label: str, retryable: bool, provider_failure: bool
) -> None:
    assert error.label == label
    assert error.error_type == label.split("_")[0]  # the stored string: http, timeout, connection, tls, malformed
    assert (error.retryable, error.provider_failure) == (retryable, provider_failure)
    assert error.rate_limited == (label == "http_429")
    assert ERROR_TYPES[error.error_type] in type(error).__mro__


@pytest.mark.parametrize("status", range(400, 600))
def test_every_status_is_classified_as_before(status: int) -> None:
    error = http_error(status, f"HTTP {status}")
    assert isinstance(error, HttpStatusError) and error.status_code == status
    assert isinstance(error, RateLimited) == (status == 429)
    assert error.retryable == (status in OLD_RETRYABLE_STATUS)
    assert error.provider_failure == (status in OLD_BREAKER_STATUS)
    assert error.slow_down == (status in OLD_LIMITER_STATUS)
    # A status error built directly (not through http_error) classifies the same way.
    direct = HttpStatusError(f"HTTP {status}", status_code=status)
    assert (direct.retryable, direct.provider_failure, direct.rate_limited, direct.slow_down) == (
        error.retryable,
        error.provider_failure,
        error.rate_limited,
        error.slow_down,
    )


ALL_KINDS = [
    TimedOut("t"),
    TransportError("c"),
    TlsError("tls"),
    MalformedAnswer("m"),
    *(http_error(status, f"HTTP {status}") for status in (400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 529)),
]


@pytest.mark.parametrize("error", ALL_KINDS, ids=lambda e: e.label)
def test_the_breaker_counts_exactly_the_provider_failures(error: ProviderError) -> None:
    breaker = Breaker(2)
    breaker.record(False, error.label, error.status_code, error.message)  # as base.Provider records it
    assert breaker.consecutive == (1 if error.provider_failure else 0)
    assert is_provider_failure(error.label, error.status_code) == error.provider_failure
    assert is_provider_failure(error.error_type, error.status_code) == error.provider_failure


@pytest.mark.parametrize("error", ALL_KINDS, ids=lambda e: e.label)
def test_the_retry_policy_retries_exactly_the_retryable(error: ProviderError) -> None:
    attempts = 0

    async def no_sleep(_: float) -> None:
        return None

    async def go() -> None:
        nonlocal attempts
        async for attempt in make_retrying(3, 0.0, 0.0, 0.0).copy(sleep=no_sleep):
            with attempt:
                attempts += 1
                if attempts == 1:
                    raise error

    if error.retryable:
        asyncio.run(go())
        assert attempts == 2
    else:
        with pytest.raises(type(error)):
            asyncio.run(go())
        assert attempts == 1


def test_rate_limits_never_use_up_the_retries() -> None:
    attempts = 0

    async def no_sleep(_: float) -> None:
        return None

    async def go() -> None:
        nonlocal attempts
        retrying = make_retrying(1, 0.0, 0.0, 0.0, max_rate_limited_s=3600, last_progress=lambda: 1e18)
        async for attempt in retrying.copy(sleep=no_sleep):
            with attempt:
                attempts += 1
                if attempts <= 5:
                    raise RateLimited("HTTP 429")

    asyncio.run(go())
    assert attempts == 6  # five 429s and the answer, with max_retries 1


def test_a_scrubbed_copy_keeps_its_kind_and_fields_and_drops_the_chain() -> None:
    try:
        try:
            raise ValueError("inner sk-secret")
        except ValueError as inner:
            raise http_error(503, "HTTP 503: key sk-secret", retry_after_s=2.0) from inner
    except HttpStatusError as exc:
        original = exc
    copy = original.scrubbed(("sk-secret",))
    assert type(copy) is HttpStatusError and copy is not original
    assert "sk-secret" not in copy.message and "sk-secret" not in str(copy) and copy.args == (copy.message,)
    assert (copy.status_code, copy.retry_after_s, copy.label, copy.retryable) == (503, 2.0, "http_503", True)
    assert copy.__cause__ is None and copy.__context__ is None and copy.__traceback__ is None
    assert "sk-secret" in original.message  # the original is untouched
    tls = TlsError("TLS error for sk-secret").scrubbed(("sk-secret",))
    assert type(tls) is TlsError and tls.label == "tls" and not tls.retryable


def test_transport_failures_become_their_kind() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    assert type(transport_error(refused, 0.1, 5.0)) is TransportError
    assert type(transport_error(socket.gaierror(-2, "Name or service not known"), 0.1, 5.0)) is TransportError
    bad_cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert type(transport_error(bad_cert, 0.1, 5.0)) is TlsError
    assert type(transport_error(TimeoutError(), 5.0, 5.0)) is TimedOut
    early = transport_error(TimeoutError(), 0.1, 5.0)  # a "timeout" long before the limit: a failed connection
    assert type(early) is TransportError and early.label == "connection"


def test_a_missing_api_key_is_a_typed_key_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLHF_TEST_NO_SUCH_KEY", raising=False)
    config = ProviderConfig(source_id="p", kind="openai", model="m", api_key_env="RLHF_TEST_NO_SUCH_KEY")
    with pytest.raises(MissingApiKey) as raised:
        asyncio.run(config.api_key())
    assert isinstance(raised.value, KeyError) and raised.value.args == ("RLHF_TEST_NO_SUCH_KEY",)
    assert "RLHF_TEST_NO_SUCH_KEY" not in os.environ
