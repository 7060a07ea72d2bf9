"""A call answered at the first attempt never builds the retry controller; a failure still gets the same policy.

Issue 32: building tenacity's ``AsyncRetrying`` per call cost more than the rest of the wrapper; the first
attempt now runs outside it and a retryable failure hands over to it (``providers.base``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_provider_call import ANSWER, _exchange, _provider

import providers.base
from providers import retry


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    built: list[int] = []

    def make(*args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return retry.make_retrying(*args, **kwargs)

    monkeypatch.setattr(providers.base, "make_retrying", make)
    return built


def test_an_answer_at_the_first_attempt_builds_no_retry_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    built = _counting(monkeypatch)
    provider = _provider([ANSWER])
    result = asyncio.run(provider.call([{"role": "user", "content": "Hi"}], None))
    assert result.ok and result.attempts == 1
    assert built == []


def test_retries_after_the_first_attempt_follow_the_same_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    built = _counting(monkeypatch)
    # max_retries=2: the first attempt and two retries, then the last error is final (as before).
    provider = _provider([(503, {"error": {"message": "overloaded"}}, {})] * 5, max_retries=2)
    result = asyncio.run(provider.call([{"role": "user", "content": "Hi"}], None))
    assert not result.ok and result.status_code == 503 and result.attempts == 3
    assert len(_exchange(provider).sent) == 3 and built == [1]
    # A failure that is not retried is final at once, without the controller.
    provider = _provider([(400, {"error": {"message": "bad request"}}, {}), ANSWER])
    result = asyncio.run(provider.call([{"role": "user", "content": "Hi"}], None))
    assert not result.ok and result.status_code == 400 and result.attempts == 1 and built == [1]
