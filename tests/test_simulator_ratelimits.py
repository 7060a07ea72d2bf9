"""Enforced rate limits of the provider simulator: real loopback HTTP (httpx) against RunningSimulator.

Counts are asserted exactly where the buckets barely refill during a test (hour-long windows);
refill is measured against the clock with bounds taken from measured times, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest
from typer.testing import CliRunner

from flows.cli.app import app
from providers.ratelimit_headers import openai_duration_s, rate_info
from simulator import RunningSimulator, SimulatorSettings
from simulator.__main__ import parse_args
from simulator.ratelimit import go_duration

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
ANTHROPIC_VERSION = "2023-06-01"
HOUR = 3600.0
OPENAI_HEADERS = [
    f"x-ratelimit-{what}-{kind}" for kind in ("requests", "tokens") for what in ("limit", "remaining", "reset")
]
ANTHROPIC_HEADERS = [
    f"anthropic-ratelimit-{kind}-{what}"
    for kind in ("requests", "tokens", "input-tokens", "output-tokens")
    for what in ("limit", "remaining", "reset")
]
GO_DURATION = re.compile(r"^(?:\d+h)?(?:\d+m)?(?:\d+(?:\.\d+)?s|\d+ms)$")
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z$")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def openai_body(model: str = "gpt-4o", text: str = "hi", max_tokens: int | None = 16) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": user(text)}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def anthropic_body(model: str = "claude-x", text: str = "hi", max_tokens: int = 16) -> dict[str, Any]:
    return {"model": model, "max_tokens": max_tokens, "messages": user(text)}


async def send(
    client: httpx.AsyncClient, sim: RunningSimulator, api: str, body: dict[str, Any], key: str = "key-a"
) -> httpx.Response:
    if api == "openai":
        return await client.post(
            f"{sim.openai_base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        )
    headers = {"anthropic-version": ANTHROPIC_VERSION, "x-api-key": key}
    return await client.post(f"{sim.anthropic_base_url}/v1/messages", json=body, headers=headers)


def body_for(api: str, model: str, max_tokens: int = 16, text: str = "hi") -> dict[str, Any]:
    if api == "openai":
        return openai_body(model, text, max_tokens)
    return anthropic_body(model, text, max_tokens)


def sequential(
    sim: RunningSimulator, api: str, bodies: list[dict[str, Any]], key: str = "key-a"
) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
            return [await send(client, sim, api, body, key) for body in bodies]

    return run(go())


def statuses(responses: list[httpx.Response]) -> list[int]:
    return [r.status_code for r in responses]


@pytest.fixture
def enforced() -> Iterator[RunningSimulator]:
    """5 requests per hour per key and model: nothing refills during a test."""
    with RunningSimulator(
        mode="derived", rate_limit_enforce=True, rate_limit_requests=5, rate_limit_window_s=HOUR
    ) as sim:
        yield sim


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_a_sequential_burst_beyond_the_bucket_gets_exactly_the_excess_refused(
    enforced: RunningSimulator, api: str
) -> None:
    responses = sequential(enforced, api, [body_for(api, "m1") for _ in range(8)])
    assert statuses(responses) == [200] * 5 + [429] * 3
    stats = enforced.stats()
    assert stats["by_model"]["m1"] == {
        "requests": 8,
        "ok": 5,
        "errors": 3,
        "in_flight": 0,
        "max_in_flight": 1,
        "rate_limited": 3,
    }
    assert stats["rate_limited_total"] == 3 and stats["responses_ok"] == 5 and stats["requests_total"] == 8
    assert stats["faults_injected"] == {}  # the limiter's 429s are not faults


def test_a_concurrent_burst_is_admitted_exactly_up_to_the_capacity() -> None:
    with RunningSimulator(
        mode="derived",
        rate_limit_enforce=True,
        rate_limit_requests=1000,
        rate_limit_window_s=HOUR,
        rate_limit_burst=7,
        latency_ms=20,
    ) as sim:

        async def go() -> list[httpx.Response]:
            async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
                return list(await asyncio.gather(*(send(client, sim, "openai", openai_body("m")) for _ in range(25))))

        codes = statuses(run(go()))
        assert codes.count(200) == 7 and codes.count(429) == 18
        stats = sim.stats()["by_model"]["m"]
        assert (stats["requests"], stats["ok"], stats["rate_limited"]) == (25, 7, 18)
        share_refused = stats["rate_limited"] / stats["requests"]
        assert share_refused == pytest.approx(18 / 25)


def test_the_token_bucket_refuses_by_tokens_and_counts_input_plus_max_tokens() -> None:
    # "hi" is 1 input token; with max_tokens 299 each request costs 300 of the 1000-token bucket.
    with RunningSimulator(
        mode="derived", rate_limit_enforce=True, rate_limit_tokens=1000, rate_limit_window_s=HOUR
    ) as sim:
        responses = sequential(sim, "openai", [openai_body("m", max_tokens=299) for _ in range(4)])
        assert statuses(responses) == [200, 200, 200, 429]
        assert [int(r.headers["x-ratelimit-remaining-tokens"]) for r in responses] == [700, 400, 100, 100]
        error = responses[3].json()["error"]
        assert error["type"] == "tokens" and error["code"] == "rate_limit_exceeded"
        assert "Limit 1000, Used 900, Requested 300." in error["message"]
        # A request that is cheap enough still fits in what is left.
        assert statuses(sequential(sim, "openai", [openai_body("m", max_tokens=99)])) == [200]
        # One that can never fit: refused with no retry-after (waiting cannot help).
        [too_large] = sequential(sim, "anthropic", [anthropic_body("m2", max_tokens=5000)])
        assert too_large.status_code == 429 and "retry-after" not in too_large.headers
        assert too_large.json()["error"]["type"] == "rate_limit_error"
        [too_large_openai] = sequential(sim, "openai", [openai_body("m3", max_tokens=5000)])
        assert too_large_openai.json()["error"]["message"].startswith("Request too large for m3")
        assert "retry-after" not in too_large_openai.headers


def test_without_max_tokens_an_openai_request_costs_its_input_and_its_answer() -> None:
    tokens = 10_000  # per hour: under 3 tokens a second refill between the two requests
    with RunningSimulator(
        mode="derived", rate_limit_enforce=True, rate_limit_tokens=tokens, rate_limit_window_s=HOUR
    ) as sim:
        first, second = sequential(sim, "openai", [openai_body("m", "a question " * 10, None)] * 2)
    usage = first.json()["usage"]
    assert usage["completion_tokens"] > 20
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == tokens - usage["total_tokens"]
    second_left = int(second.headers["x-ratelimit-remaining-tokens"])
    assert tokens - 2 * usage["total_tokens"] <= second_left <= tokens - 2 * usage["total_tokens"] + 3


def test_buckets_are_separate_per_key_and_per_model(enforced: RunningSimulator) -> None:
    drain = [openai_body("m") for _ in range(6)]
    assert statuses(sequential(enforced, "openai", drain, key="key-a")) == [200] * 5 + [429]
    assert statuses(sequential(enforced, "openai", drain, key="key-b")) == [200] * 5 + [429]
    other_model = [openai_body("other") for _ in range(6)]
    assert statuses(sequential(enforced, "openai", other_model, key="key-a")) == [200] * 5 + [429]
    # One bucket per (key, model), whichever API asks: key-a's "m" is empty for Anthropic too.
    assert statuses(sequential(enforced, "anthropic", [anthropic_body("m")], key="key-a")) == [429]
    assert statuses(sequential(enforced, "anthropic", [anthropic_body("m")], key="key-c")) == [200]
    by_model = enforced.stats()["by_model"]
    assert by_model["m"]["rate_limited"] == 3 and by_model["other"]["rate_limited"] == 1


def test_reset_and_new_limits_refill_the_buckets(enforced: RunningSimulator) -> None:
    assert statuses(sequential(enforced, "openai", [openai_body("m")] * 6)) == [200] * 5 + [429]
    enforced.reset()
    stats = enforced.stats()
    assert stats["requests_total"] == 0 and stats["rate_limited_total"] == 0 and stats["by_model"] == {}
    assert statuses(sequential(enforced, "openai", [openai_body("m")] * 6)) == [200] * 5 + [429]
    with httpx.Client(base_url=enforced.url, trust_env=False) as client:
        new = client.put("/_sim/settings", json={"rate_limit_requests": 2})
        assert new.status_code == 200 and new.json()["rate_limit_requests"] == 2
        assert client.put("/_sim/settings", json={"rate_limit_retry_after": "minutes"}).status_code == 400
        assert client.put("/_sim/settings", json={"rate_limit_burst": 0}).status_code == 400
    assert statuses(sequential(enforced, "openai", [openai_body("m")] * 3)) == [200, 200, 429]


def test_faults_apply_to_admitted_requests_and_carry_the_bucket_headers(enforced: RunningSimulator) -> None:
    enforced.configure(faults=[{"kind": "500", "times": 1}])
    responses = sequential(enforced, "openai", [openai_body("m")] * 7)
    assert statuses(responses) == [500, 200, 200, 200, 200, 429, 429]  # the 500 used a request too
    assert [int(r.headers["x-ratelimit-remaining-requests"]) for r in responses] == [4, 3, 2, 1, 0, 0, 0]
    assert enforced.stats()["faults_injected"] == {"500": 1}


# ----------------------------------------------------------------------------- refill


def test_the_request_bucket_refills_at_the_configured_rate() -> None:
    rate = 10.0  # 10 requests per second, bucket of 10
    with RunningSimulator(
        mode="derived",
        rate_limit_enforce=True,
        rate_limit_requests=10,
        rate_limit_window_s=1.0,
        rate_limit_retry_after="ms",
    ) as sim:

        async def go() -> tuple[list[httpx.Response], float, float, list[httpx.Response], float]:
            async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
                drain: list[httpx.Response] = []
                while not drain or drain[-1].status_code == 200:
                    drain.append(await send(client, sim, "openai", openai_body("m")))
                drained_at = time.monotonic()
                await asyncio.sleep(0.6)
                start = time.monotonic()
                counted = [await send(client, sim, "openai", openai_body("m")) for _ in range(20)]
                end = time.monotonic()
                return drain, drained_at, start, counted, end

        drain, drained_at, start, counted, end = run(go())
    refused = drain[-1]
    # At the refusal the bucket held less than one request, so the wait is under 1/rate.
    wait_ms = int(refused.headers["retry-after-ms"])
    assert 0 < wait_ms <= 1000 / rate + 1 and refused.headers["retry-after"] == "1"
    admitted = statuses(counted).count(200)
    # What refilled between the refusal and the last counted request, give or take one request.
    assert math.floor((start - drained_at) * rate) - 1 <= admitted <= math.ceil((end - drained_at) * rate) + 1
    assert admitted >= 5


def test_reset_headers_describe_the_bucket_and_its_refill_rate() -> None:
    rate, token_rate = 0.2, 100.0  # 120 requests and 60,000 tokens per 10 minutes
    with RunningSimulator(
        mode="derived",
        rate_limit_enforce=True,
        rate_limit_requests=120,
        rate_limit_tokens=60_000,
        rate_limit_window_s=600.0,
    ) as sim:
        responses = sequential(sim, "openai", [openai_body("m", max_tokens=100)] * 6)
    for number, response in enumerate(responses, start=1):
        remaining = int(response.headers["x-ratelimit-remaining-requests"])
        assert remaining == 120 - number  # refill during the test stays below one request (5 s)
        reset = openai_duration_s(response.headers["x-ratelimit-reset-requests"])
        assert reset is not None
        # reset = (capacity - level) / rate, with level in [remaining, remaining + 1), rounded up to 1 ms.
        assert (120 - remaining - 1) / rate < reset <= (120 - remaining) / rate + 0.001
        token_reset = openai_duration_s(response.headers["x-ratelimit-reset-tokens"])
        used_tokens = 60_000 - int(response.headers["x-ratelimit-remaining-tokens"])
        assert token_reset is not None
        assert (used_tokens - 1) / token_rate < token_reset <= used_tokens / token_rate + 0.001
    # The project's own client reads the same allowance out of these headers.
    info = rate_info(responses[-1].headers)
    assert info is not None and info.requests is not None and info.tokens is not None
    assert info.requests.limit == 120 and info.requests.remaining == 114
    assert info.requests.reset_s is not None
    assert (info.requests.limit - info.requests.remaining) / info.requests.reset_s == pytest.approx(rate, rel=0.2)


# ----------------------------------------------------------------------------- headers


def test_openai_headers_on_answers_and_refusals(enforced: RunningSimulator) -> None:
    responses = sequential(enforced, "openai", [openai_body("m")] * 7)
    assert statuses(responses) == [200] * 5 + [429] * 2
    for response in responses:
        for header in OPENAI_HEADERS:
            assert header in response.headers, header
        assert response.headers["x-ratelimit-limit-requests"] == "5"
        assert response.headers["x-ratelimit-limit-tokens"] == str(SimulatorSettings().rate_limit_tokens)
        assert GO_DURATION.match(response.headers["x-ratelimit-reset-requests"])
        assert GO_DURATION.match(response.headers["x-ratelimit-reset-tokens"])
        assert response.headers["x-request-id"].startswith("req_")
    remaining = [int(r.headers["x-ratelimit-remaining-requests"]) for r in responses]
    assert remaining == [4, 3, 2, 1, 0, 0, 0]
    tokens = [int(r.headers["x-ratelimit-remaining-tokens"]) for r in responses[:5]]
    assert tokens == sorted(tokens, reverse=True) and len(set(tokens)) == 5
    # An hour-long window: 5 used requests refill in (5 - level) / (5 / 3600 s), about an hour.
    assert responses[4].headers["x-ratelimit-reset-requests"].startswith(("59m", "1h0m"))


def test_anthropic_headers_on_answers_and_refusals(enforced: RunningSimulator) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    responses = sequential(enforced, "anthropic", [anthropic_body("c")] * 7)
    assert statuses(responses) == [200] * 5 + [429] * 2
    for response in responses:
        for header in ANTHROPIC_HEADERS:
            assert header in response.headers, header
        for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
            reset_text = response.headers[f"anthropic-ratelimit-{kind}-reset"]
            assert RFC3339_UTC.match(reset_text), reset_text
            reset = datetime.fromisoformat(reset_text.replace("Z", "+00:00"))
            assert before <= reset <= before + timedelta(seconds=HOUR + 60)
        assert response.headers["request-id"].startswith("req_")
    remaining = [int(r.headers["anthropic-ratelimit-requests-remaining"]) for r in responses]
    assert remaining == [4, 3, 2, 1, 0, 0, 0]
    requests_reset = datetime.fromisoformat(
        responses[4].headers["anthropic-ratelimit-requests-reset"].replace("Z", "+00:00")
    )
    assert 3500 <= (requests_reset - before).total_seconds() <= 3700  # full again in about an hour
    tokens = [int(r.headers["anthropic-ratelimit-tokens-remaining"]) for r in responses[:5]]
    assert tokens == sorted(tokens, reverse=True) and len(set(tokens)) == 5
    info = rate_info(responses[0].headers)
    assert info is not None and info.requests is not None and info.requests.remaining == 4


@pytest.mark.parametrize("enforce", [True, False])
def test_no_rate_limit_headers_when_turned_off(enforce: bool) -> None:
    with RunningSimulator(
        mode="derived",
        rate_limit_enforce=enforce,
        rate_limit_requests=1,
        rate_limit_window_s=HOUR,
        rate_limit_headers=False,
    ) as sim:
        responses = sequential(sim, "openai", [openai_body("m")] * 2)
        responses += sequential(sim, "anthropic", [anthropic_body("c")] * 2)
    assert statuses(responses) == ([200, 429] * 2 if enforce else [200] * 4)
    for response in responses:
        names = [name.lower() for name in response.headers]
        assert not [n for n in names if n.startswith(("x-ratelimit-", "anthropic-ratelimit-"))], names
    if enforce:
        assert responses[1].headers["retry-after"].isdigit()  # retry advice is its own setting


# ----------------------------------------------------------------------------- retry-after


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("mode", ["seconds", "ms", "none"])
def test_retry_after_modes(api: str, mode: str) -> None:
    # 2 requests per 10 s: after two, the next request is 5 s away.
    with RunningSimulator(
        mode="derived",
        rate_limit_enforce=True,
        rate_limit_requests=2,
        rate_limit_window_s=10.0,
        rate_limit_retry_after=mode,
    ) as sim:
        responses = sequential(sim, api, [body_for(api, "m")] * 3)
    assert statuses(responses) == [200, 200, 429]
    refused = responses[2]
    assert all("retry-after" not in r.headers for r in responses[:2])
    if mode == "none":
        assert "retry-after" not in refused.headers and "retry-after-ms" not in refused.headers
        return
    assert refused.headers["retry-after"] == "5"  # whole seconds, rounded up
    if mode == "seconds":
        assert "retry-after-ms" not in refused.headers
    else:
        assert 4000 < int(refused.headers["retry-after-ms"]) <= 5000


def test_openai_sdk_sees_a_rate_limit_error_with_its_retry_after(enforced: RunningSimulator) -> None:
    enforced.configure(rate_limit_retry_after="ms")

    async def go() -> openai.RateLimitError:
        client = openai.AsyncOpenAI(base_url=enforced.openai_base_url, api_key="sdk-key", max_retries=0)
        for _ in range(5):
            await client.chat.completions.create(model="gpt-4o", messages=user("hi"), max_tokens=8)
        with pytest.raises(openai.RateLimitError) as excinfo:
            await client.chat.completions.create(model="gpt-4o", messages=user("hi"), max_tokens=8)
        await client.close()
        return excinfo.value

    error = run(go())
    assert error.status_code == 429 and error.code == "rate_limit_exceeded"
    assert int(error.response.headers["retry-after-ms"]) > 700_000  # 1 of 5 per hour: 12 minutes


# ----------------------------------------------------------------------------- bodies


def test_429_bodies_have_each_api_shape(enforced: RunningSimulator) -> None:
    openai_refused = sequential(enforced, "openai", [openai_body("gpt-4o-mini")] * 6)[-1]
    anthropic_refused = sequential(enforced, "anthropic", [anthropic_body("claude-3-5-haiku")] * 6)[-1]
    assert openai_refused.status_code == anthropic_refused.status_code == 429
    assert openai_refused.headers["content-type"].startswith("application/json")
    error = openai_refused.json()["error"]
    assert set(openai_refused.json()) == {"error"} and set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "requests" and error["param"] is None and error["code"] == "rate_limit_exceeded"
    match = re.match(
        r"Rate limit reached for gpt-4o-mini in organization org-\S+ on requests per 3600s: "
        r"Limit 5, Used 5, Requested 1\. Please try again in (\S+)\.",
        error["message"],
    )
    assert match, error["message"]
    wait = openai_duration_s(match.group(1))
    assert wait is not None and 700 < wait <= 720  # one of 5 per hour
    body = anthropic_refused.json()
    assert set(body) == {"type", "error"} and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == "rate_limit_error"
    assert "claude-3-5-haiku" in body["error"]["message"]


def test_a_one_minute_window_is_named_per_min() -> None:
    with RunningSimulator(mode="derived", rate_limit_enforce=True, rate_limit_requests=1) as sim:
        refused = sequential(sim, "openai", [openai_body("m")] * 2)[1]
    assert "on requests per min (RPM): Limit 1, Used 1, Requested 1." in refused.json()["error"]["message"]
    assert refused.headers["retry-after"] == "60"


# ----------------------------------------------------------------------------- defaults


def test_defaults_only_advertise() -> None:
    defaults = SimulatorSettings()
    assert (defaults.rate_limit_enforce, defaults.rate_limit_burst, defaults.rate_limit_headers) == (False, None, True)
    assert defaults.rate_limit_retry_after == "seconds"
    with RunningSimulator(mode="derived", rate_limit_requests=3) as sim:
        responses = sequential(sim, "openai", [openai_body("m")] * 6)
        anthropic = sequential(sim, "anthropic", [anthropic_body("m")])
        stats = sim.stats()
    assert statuses(responses) == [200] * 6 and anthropic[0].status_code == 200
    # The advertised windows count per model (not per key) and stop at 0; nothing is refused.
    assert [int(r.headers["x-ratelimit-remaining-requests"]) for r in responses] == [2, 1, 0, 0, 0, 0]
    assert anthropic[0].headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert "anthropic-ratelimit-input-tokens-limit" not in anthropic[0].headers
    assert "retry-after" not in responses[-1].headers
    assert stats["rate_limited_total"] == 0 and "rate_limited" not in stats["by_model"]["m"]
    assert stats["by_model"]["m"]["ok"] == 7


# ----------------------------------------------------------------------------- command lines


def test_python_m_simulator_flags() -> None:
    _, _, settings = parse_args(
        [
            "--rate-limit-requests",
            "20",
            "--rate-limit-tokens",
            "5000",
            "--rate-limit-window-s",
            "1",
            "--rate-limit-burst",
            "5",
            "--enforce-rate-limits",
            "--no-rate-limit-headers",
            "--retry-after",
            "ms",
        ]
    )
    assert (settings.rate_limit_requests, settings.rate_limit_tokens, settings.rate_limit_window_s) == (20, 5000, 1.0)
    assert (settings.rate_limit_burst, settings.rate_limit_enforce, settings.rate_limit_headers) == (5, True, False)
    assert settings.rate_limit_retry_after == "ms"
    _, _, plain = parse_args([])
    assert plain == SimulatorSettings()


def test_rlhf_simulate_rejects_a_bad_retry_after() -> None:
    result = CliRunner().invoke(app, ["simulate", "--retry-after", "minutes"])
    assert result.exit_code == 2


@pytest.mark.slow
def test_rlhf_simulate_enforces_rate_limits() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [
        sys.executable,
        "-m",
        "flows.cli",
        "simulate",
        "--port",
        "0",
        "--mode",
        "derived",
        "--rate-limit-requests",
        "20",
        "--rate-limit-window-s",
        "3600",
        "--rate-limit-burst",
        "3",
        "--enforce-rate-limits",
        "--retry-after",
        "none",
        "--no-rate-limit-headers",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "rlhf simulate did not start"
        line = process.stdout.readline().decode()
        assert line.startswith("simulator listening on "), line
        url = line.split()[-1]
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
            codes = [client.post("/v1/chat/completions", json=openai_body("m")).status_code for _ in range(5)]
            refused = client.post("/v1/chat/completions", json=openai_body("m"))
            stats = client.get("/_sim/stats").json()
        assert codes == [200, 200, 200, 429, 429]
        assert "retry-after" not in refused.headers and "x-ratelimit-limit-requests" not in refused.headers
        assert stats["by_model"]["m"]["rate_limited"] == 3
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_go_duration_format() -> None:
    cases = {
        0: "0s",
        0.0004: "1ms",
        0.12: "120ms",
        1: "1s",
        8.64: "8.64s",
        90.5: "1m30.5s",
        360: "6m0s",
        3723.5: "1h2m3.5s",
    }
    for seconds, text in cases.items():
        assert go_duration(seconds) == text
        assert openai_duration_s(text) == pytest.approx(seconds, abs=0.001)


# ----------------------------------------------------------------------------- header modes
# The buckets enforced are the same in every mode; only what the headers say differs (issue 27).


def _spent(buckets: Any, calls: int, cost: int = 10, now: float = 100.0) -> Any:
    """Admit ``calls`` requests at one instant; the last admission."""
    admission = None
    for _ in range(calls):
        admission = buckets.admit("k", "m", cost, now=now)
    return admission


def test_per_minute_headers_announce_a_minutes_allowance_while_enforcing_per_second() -> None:
    from simulator.ratelimit import TokenBuckets

    buckets = TokenBuckets(20, 10_000, 1.0, burst=20)
    buckets.header_mode = "per_minute"
    admission = _spent(buckets, 5)
    headers = buckets.openai_headers(admission)
    assert headers["x-ratelimit-limit-requests"] == "1200"
    assert headers["x-ratelimit-remaining-requests"] == "1195"  # the minute bucket is short by the same 5
    assert openai_duration_s(headers["x-ratelimit-reset-requests"]) == pytest.approx(5 / 20, abs=0.002)
    assert headers["x-ratelimit-limit-tokens"] == "600000"
    assert headers["x-ratelimit-remaining-tokens"] == str(600_000 - 50)
    refused = _spent(buckets, 16)  # the per-second bucket of 20 is what is enforced
    assert refused.refused == "requests"
    assert int(buckets.openai_headers(refused)["x-ratelimit-remaining-requests"]) == 1180  # "plenty left"
    assert buckets.anthropic_headers(refused)["anthropic-ratelimit-requests-limit"] == "1200"


def test_truncated_rfc3339_resets_are_cut_to_the_whole_second(monkeypatch: pytest.MonkeyPatch) -> None:
    from simulator import ratelimit
    from simulator.ratelimit import TokenBuckets

    monkeypatch.setattr(ratelimit.time, "time", lambda: 1_000_000.0)
    buckets = TokenBuckets(20, 10_000, 1.0, burst=20)
    admission = _spent(buckets, 10)  # 0.5 s until full
    rounded_up = buckets.anthropic_headers(admission)["anthropic-ratelimit-requests-reset"]
    buckets.header_mode = "truncated"
    truncated = buckets.anthropic_headers(admission)["anthropic-ratelimit-requests-reset"]
    parse = datetime.fromisoformat
    assert (parse(rounded_up.replace("Z", "+00:00")) - parse(truncated.replace("Z", "+00:00"))).total_seconds() == 1
    assert truncated == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_000_000))  # now, not 0.5 s later


def test_next_request_resets_give_the_time_until_one_more_request_fits() -> None:
    from simulator.ratelimit import TokenBuckets

    buckets = TokenBuckets(20, 10_000, 1.0, burst=20)
    buckets.header_mode = "next_request"
    assert buckets.openai_headers(_spent(buckets, 10))["x-ratelimit-reset-requests"] == "0s"  # 10 left
    empty = _spent(buckets, 10)
    headers = buckets.openai_headers(empty)
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert openai_duration_s(headers["x-ratelimit-reset-requests"]) == pytest.approx(1 / 20, abs=0.002)
    buckets.header_mode = "bucket"
    assert openai_duration_s(buckets.openai_headers(empty)["x-ratelimit-reset-requests"]) == pytest.approx(1.0)


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_azure_headers_carry_remaining_only_and_refusals_retry_after_ms(api: str) -> None:
    with RunningSimulator(
        mode="derived",
        rate_limit_enforce=True,
        rate_limit_requests=2,
        rate_limit_window_s=HOUR,
        rate_limit_header_mode="azure",
        rate_limit_retry_after="ms",
    ) as sim:
        responses = sequential(sim, api, [body_for(api, "m")] * 3)
    assert statuses(responses) == [200, 200, 429]
    for response, left in zip(responses, ["1", "0", "0"], strict=True):
        names = sorted(n.lower() for n in response.headers if n.lower().startswith(("x-ratelimit", "anthropic-rate")))
        assert names == ["x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"]
        assert response.headers["x-ratelimit-remaining-requests"] == left
    assert int(responses[2].headers["retry-after-ms"]) > 1000
    info = rate_info(dict(responses[0].headers))
    assert info is not None and info.requests is not None and info.requests.remaining == 1


def test_an_invalid_openai_request_gets_the_keys_limits_on_its_400_and_is_not_charged(
    enforced: RunningSimulator,
) -> None:
    """OpenAI answers an empty-``messages`` request (curator's start-up probe) with a 400 that carries
    the key's rate-limit headers; it costs nothing. Anthropic's 400s and turned-off headers carry none."""
    empty = {"model": "m", "messages": []}
    first, *answers, probe = sequential(enforced, "openai", [empty, openai_body("m"), openai_body("m"), empty])
    assert statuses([first, *answers, probe]) == [400, 200, 200, 400]
    assert first.headers["x-ratelimit-limit-requests"] == "5"
    assert first.headers["x-ratelimit-remaining-requests"] == "5"  # not charged
    assert probe.headers["x-ratelimit-remaining-requests"] == "3"  # the two answers' charge, nothing more
    # Tokens refill by ~560/s here: the probe sees at least what the last answer left, and no 400 was charged.
    after_answers, at_probe = (int(r.headers["x-ratelimit-remaining-tokens"]) for r in (answers[1], probe))
    assert after_answers <= at_probe < int(first.headers["x-ratelimit-remaining-tokens"])
    assert [r.status_code for r in sequential(enforced, "openai", [openai_body("m")] * 4)] == [200, 200, 200, 429]
    no_model = sequential(enforced, "openai", [{"messages": []}])[0]
    assert no_model.status_code == 400 and "x-ratelimit-limit-requests" not in no_model.headers
    anthropic = sequential(enforced, "anthropic", [{"model": "m", "max_tokens": 16, "messages": []}])[0]
    assert anthropic.status_code == 400 and "anthropic-ratelimit-requests-limit" not in anthropic.headers
    with RunningSimulator(
        rate_limit_enforce=True, rate_limit_requests=5, rate_limit_window_s=HOUR, rate_limit_headers=False
    ) as quiet:
        response = sequential(quiet, "openai", [empty])[0]
    assert response.status_code == 400 and "x-ratelimit-limit-requests" not in response.headers
