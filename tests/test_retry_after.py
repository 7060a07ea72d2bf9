"""``Retry-After`` as an HTTP date, and the ``max_retry_after_s`` cap: the parser, the retry policy, the wire.

The simulator sends ``Retry-After`` in seconds only, so the wire tests use a tiny loopback server of
their own: its first answer is a 429 with the ``Retry-After`` under test, the next ones a chat
completion. Both OpenAI-kind HTTP exchanges (the SDK and aiohttp) read the header.
"""

from __future__ import annotations

import asyncio
import email.utils
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from providers.config import ProviderConfig
from providers.errors import HttpStatusError, ProviderError, RateLimited, retry_after_seconds
from providers.factory import open_provider
from providers.result import CallResult
from providers.retry import make_retrying

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Red, yellow, blue."}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    }
).encode()


def http_date(seconds_from_now: int) -> tuple[str, int]:
    """An HTTP date that many whole seconds ahead of the current second, and that second (epoch)."""
    at = int(time.time()) + seconds_from_now
    return email.utils.formatdate(at, usegmt=True), at


# ------------------------------------------------------------------------------------ the parser


def test_an_http_date_is_the_seconds_until_that_date() -> None:
    date, at = http_date(30)
    before = time.time()
    wait = retry_after_seconds({"retry-after": date})
    assert wait is not None and at - time.time() <= wait <= at - before


def test_an_http_date_in_the_past_means_now() -> None:
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


def test_seconds_and_retry_after_ms() -> None:
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "7"}) == 0.25  # the precise one wins
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None


@pytest.mark.parametrize("value", ["soon", "Mon, 99 Foo 2026"])
def test_a_value_that_is_neither_seconds_nor_a_date_is_ignored(value: str) -> None:
    assert retry_after_seconds({"retry-after": value}) is None


# ------------------------------------------------------------------------------ the retry policy


def waits_before_success(failures: list[ProviderError], max_retry_after: float) -> list[float]:
    """The sleeps ``make_retrying`` asks for while ``failures`` are raised in turn, then a success."""
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    async def go() -> None:
        remaining = list(failures)
        async for attempt in make_retrying(5, 0.2, 1.0, max_retry_after).copy(sleep=record):
            with attempt:
                if remaining:
                    raise remaining.pop(0)

    asyncio.run(go())
    return slept


def unavailable(retry_after_s: float | None) -> ProviderError:
    return HttpStatusError("HTTP 503", status_code=503, retry_after_s=retry_after_s)


def test_retry_after_is_waited_exactly_up_to_the_cap() -> None:
    assert waits_before_success([unavailable(2.5), unavailable(0.0)], max_retry_after=10) == [2.5, 0.0]
    assert waits_before_success([unavailable(3600.0), unavailable(11.0)], max_retry_after=10) == [10, 10]


def test_a_429_is_not_waited_out_by_the_retry_policy_but_by_the_limiter() -> None:
    # The provider's limiter pauses every call for a 429's Retry-After (tests/test_rate_governor.py).
    too_many = RateLimited("HTTP 429", retry_after_s=2.5)
    assert waits_before_success([too_many, too_many], max_retry_after=10) == [0.0, 0.0]


def test_without_retry_after_the_backoff_applies() -> None:
    slept = waits_before_success([unavailable(None)] * 4, max_retry_after=10)
    # initial 0.2 s doubling, plus up to 0.2 s of jitter, capped at 1 s.
    assert [0.2 <= slept[0] <= 0.4, 0.4 <= slept[1] <= 0.6, 0.8 <= slept[2] <= 1.0, slept[3] == 1.0] == [True] * 4


# ------------------------------------------------------------------------------------- the wire


class RateLimitingServer:
    """Loopback HTTP: the first POST gets 429 with ``Retry-After: <retry_after()>``, later ones a completion."""

    def __init__(self, retry_after: Callable[[], str]) -> None:
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                self.rfile.read(int(self.headers["content-length"]))
                server.requests += 1
                if server.requests == 1:
                    body = b'{"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}'
                    self.send_response(429)
                    self.send_header("Retry-After", retry_after())
                else:
                    body = COMPLETION
                    self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[], str]], RateLimitingServer]]:
    servers: list[RateLimitingServer] = []

    def start(retry_after: Callable[[], str]) -> RateLimitingServer:
        servers.append(RateLimitingServer(retry_after))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(params=["default", "aiohttp"])
def http_client(request: pytest.FixtureRequest) -> str:
    return request.param


def call(server: RateLimitingServer, http_client: str, within_s: float, **extra: Any) -> tuple[CallResult, float]:
    """One call to ``server``; the result and the seconds it took. Fails if it takes over ``within_s``."""
    config = ProviderConfig(
        source_id="rl",
        kind="openai",
        model="m",
        base_url=server.base_url,
        api_key_env="RL_TEST_KEY",
        http_client=http_client,
        max_retries=2,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        **extra,
    )

    async def go() -> CallResult:
        provider = await open_provider(config)
        try:
            return await asyncio.wait_for(provider.call([{"role": "user", "content": "Colours?"}], None), within_s)
        finally:
            await provider.aclose()

    started = time.perf_counter()
    result = asyncio.run(go())
    return result, time.perf_counter() - started


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RL_TEST_KEY", "sk-rl-test")


def test_an_http_date_is_waited_out(serve: Any, http_client: str) -> None:
    server = serve(lambda: http_date(2)[0])  # 1 to 2 s from when the 429 is sent
    result, elapsed = call(server, http_client, within_s=30)
    assert result.ok and result.attempts == 2 and server.requests == 2
    assert elapsed >= 0.9  # backoff alone would have waited 0.01 s


def test_max_retry_after_s_caps_an_http_date(serve: Any, http_client: str) -> None:
    server = serve(lambda: http_date(3600)[0])
    result, elapsed = call(server, http_client, within_s=3, max_retry_after_s=0.5)
    assert result.ok and result.attempts == 2
    assert elapsed >= 0.45


def test_a_retry_after_that_is_no_date_falls_back_to_backoff(serve: Any, http_client: str) -> None:
    server = serve(lambda: "soon")
    result, _ = call(server, http_client, within_s=30)
    assert result.ok and result.attempts == 2
