"""``Provider.call`` over an in-memory exchange: retries, the breaker, pauses and the wire body, no socket.

The exchange is a real :class:`~providers.http.JsonExchange` (its ``post`` applies the timeout and
scrubs secrets) whose transport is a script of responses, so every rule of the call path runs as in
production while the test says exactly what the "server" answers. End-to-end behaviour over HTTP is
tested against the simulator elsewhere (``test_providers.py``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import SecretStr

from providers.anthropic_provider import AnthropicProvider
from providers.config import ProviderConfig
from providers.http import JsonExchange, RawResponse, status_error

KEY = "sk-ant-in-memory-secret-0123456789"
ANSWER = {
    "model": "claude-x-2026",
    "content": [{"type": "text", "text": "Hello."}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 3, "output_tokens": 2},
    "id": "msg_1",
}


class ScriptedExchange(JsonExchange):
    """Answers each POST with the next scripted step: a body (200), an ``(status, body, headers)`` error,
    or an exception the transport would raise. Records every request body it was sent."""

    def __init__(self, steps: list[Any]) -> None:
        super().__init__(timeout_s=5.0, secrets=(KEY,))
        self._steps: Iterator[Any] = iter(steps)
        self.sent: list[dict[str, Any]] = []

    async def _post(self, body: dict[str, Any]) -> RawResponse:
        self.sent.append(body)
        step = next(self._steps)
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, tuple):
            status, error_body, headers = step
            content = json.dumps(error_body).encode()
            raise status_error(status, headers, content, None)
        return RawResponse(200, {"request-id": "req_mem"}, json.dumps(step).encode())

    async def aclose(self) -> None:
        return None


class InMemoryAnthropic(AnthropicProvider):
    """The Anthropic provider with its exchange replaced by a script."""

    script: ClassVar[list[Any]] = []

    def _open_exchange(self, config: ProviderConfig, api_key: SecretStr) -> JsonExchange:
        return ScriptedExchange(list(self.script))


def _provider(steps: list[Any], **extra: Any) -> InMemoryAnthropic:
    InMemoryAnthropic.script = steps
    settings: dict[str, Any] = {"max_retries": 3, "backoff_initial_s": 0.001, "backoff_max_s": 0.002, **extra}
    config = ProviderConfig(
        source_id="mem", kind="anthropic", model="claude-x", base_url="http://in-memory", **settings
    )
    return InMemoryAnthropic(config, SecretStr(KEY))


def _exchange(provider: InMemoryAnthropic) -> ScriptedExchange:
    exchange = provider._exchange
    assert isinstance(exchange, ScriptedExchange)
    return exchange


def test_the_wire_body_carries_the_model_the_system_prompt_and_the_default_max_tokens() -> None:
    provider = _provider([ANSWER])
    result = asyncio.run(provider.call([{"role": "user", "content": "Hi"}], "Be brief."))
    assert result.ok and result.text == "Hello." and result.request_id == "req_mem"
    assert (result.input_tokens, result.output_tokens, result.finish_reason) == (3, 2, "stop")
    assert result.vendor_finish_reason == "end_turn"
    (body,) = _exchange(provider).sent
    assert body == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "system": "Be brief.",
    }


def test_a_server_error_is_retried_then_answered() -> None:
    provider = _provider([(503, {"error": {"message": "overloaded"}}, {}), ANSWER])
    result = asyncio.run(provider.call([{"role": "user", "content": "Hi"}], None))
    assert result.ok and result.attempts == 2 and len(_exchange(provider).sent) == 2


def test_a_401_is_final_at_once_and_its_text_never_holds_the_key() -> None:
    provider = _provider([(401, {"error": {"message": f"invalid x-api-key {KEY}"}}, {}), ANSWER])
    result = asyncio.run(provider.call([{"role": "user", "content": "Hi"}], None))
    assert not result.ok and result.status_code == 401 and result.attempts == 1
    assert KEY[:8] not in (result.error or "") and "***" in (result.error or "")


def test_a_malformed_answer_is_retried_and_reported_when_it_persists() -> None:
    provider = _provider([{"content": "not a list of blocks"}] * 4)
    result = asyncio.run(provider.call([{"role": "user", "content": "Hi"}], None))
    assert not result.ok and result.error_type == "malformed" and result.attempts == 4  # 1 + max_retries


def test_a_429_pauses_the_provider_for_its_retry_after_and_does_not_use_a_retry() -> None:
    steps = [(429, {"error": {"message": "slow down"}}, {"retry-after": "0.2"})] * 3 + [ANSWER]
    provider = _provider(steps, max_retries=1)
    result = asyncio.run(provider.call([{"role": "user", "content": "Hi"}], None))
    assert result.ok and len(_exchange(provider).sent) == 4  # three 429s did not exhaust max_retries=1
    assert provider.limiter.governor.pauses >= 1
