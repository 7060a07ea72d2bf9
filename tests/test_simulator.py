"""Tests for the provider simulator: real loopback HTTP, real OpenAI SDK and httpx clients."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest

from simulator import (
    FaultRule,
    RunningSimulator,
    SimulatorSettings,
    answer_marker,
    start_simulator_process,
)
from simulator.__main__ import parse_args
from simulator.answers import derived_text

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
PROMPTS_FILE = REPO / "prompts/examples/alpaca_eval.jsonl"
DATA_DIR = REPO / "simulator/data/alpaca_eval"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "test-key"}
OPENAI_RATELIMIT_HEADERS = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a fresh event loop (no pytest asyncio plugin needed)."""
    return asyncio.run(coro)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def openai_client(sim: RunningSimulator, api_key: str = "x", timeout: float = 10.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key=api_key, max_retries=0, timeout=timeout)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def post_openai(sim: RunningSimulator, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=kwargs.pop("timeout", 10.0)) as client:
        return await client.post(f"{sim.openai_base_url}/chat/completions", json=body, **kwargs)


async def post_anthropic(
    sim: RunningSimulator, body: dict[str, Any], headers: dict[str, str] | None = None, timeout: float = 10.0
) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=timeout) as client:
        return await client.post(
            f"{sim.anthropic_base_url}/v1/messages",
            json=body,
            headers=ANTHROPIC_HEADERS if headers is None else headers,
        )


def anthropic_body(text: str, model: str = "claude-3-5-haiku", max_tokens: int = 1024) -> dict[str, Any]:
    return {"model": model, "max_tokens": max_tokens, "messages": user(text)}


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with RunningSimulator(mode="derived") as running:
        yield running


# --------------------------------------------------------------------------- OpenAI


def test_openai_sdk_gets_well_formed_derived_answer(sim: RunningSimulator) -> None:
    prompt = "Explain the difference between TCP and UDP."

    async def go() -> tuple[Any, Any]:
        client = openai_client(sim)
        messages = [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "an earlier question"},
            {"role": "assistant", "content": "an earlier answer"},
            {"role": "user", "content": prompt},
        ]
        first = await client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
        second = await client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
        await client.close()
        return first, second

    first, second = run(go())
    completion = first.parse()
    choice = completion.choices[0]
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    assert completion.system_fingerprint
    assert choice.index == 0 and choice.finish_reason == "stop"
    assert choice.message.role == "assistant" and choice.message.refusal is None
    assert choice.message.content.startswith(answer_marker("gpt-4o-mini", prompt))
    assert completion.usage.completion_tokens == math.ceil(len(choice.message.content) / 4)
    assert completion.usage.prompt_tokens >= 10
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert first.headers["x-request-id"].startswith("req_")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert int(first.headers["openai-processing-ms"]) >= 0
    for header in OPENAI_RATELIMIT_HEADERS:
        assert first.headers[header], header
    assert int(first.headers["x-ratelimit-remaining-requests"]) == 9999
    assert int(second.headers["x-ratelimit-remaining-requests"]) == 9998
    # Deterministic: the same request yields the same text.
    assert second.parse().choices[0].message.content == choice.message.content


def test_openai_content_parts_use_last_user_message(sim: RunningSimulator) -> None:
    body = {
        "model": "llama-3-8b",
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "user", "content": [{"type": "text", "text": "part one, "}, {"type": "text", "text": "two"}]},
        ],
    }
    response = run(post_openai(sim, body))
    assert response.status_code == 200
    content = response.json()["choices"][0]["message"]["content"]
    assert content.startswith(answer_marker("llama-3-8b", "part one, two"))


@pytest.mark.parametrize(
    "body",
    [
        {"messages": user("hi")},
        {"model": "gpt-4o", "messages": []},
        {"model": "gpt-4o"},
        {"model": "gpt-4o", "messages": user("hi"), "stream": True},
    ],
)
def test_openai_invalid_body_is_400_in_openai_shape(sim: RunningSimulator, body: dict[str, Any]) -> None:
    response = run(post_openai(sim, body))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None and "code" in error and error["message"]


def test_openai_non_json_body_is_400(sim: RunningSimulator) -> None:
    response = run(post_openai(sim, {}, content=b"not json", headers={"content-type": "application/json"}))
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_derived_text_is_deterministic_and_varies_in_length() -> None:
    prompts = [f"prompt number {i}" for i in range(40)]
    lengths = [len(derived_text("gpt-4o", p).split()) for p in prompts]
    assert [derived_text("gpt-4o", p) for p in prompts[:5]] == [derived_text("gpt-4o", p) for p in prompts[:5]]
    assert all(30 <= n <= 420 for n in lengths), lengths
    assert max(lengths) - min(lengths) > 100
    assert answer_marker("m", "abc") == f"[sim:m:{hashlib.sha256(b'abc').hexdigest()[:12]}]"


# ------------------------------------------------------------------------ Anthropic


def test_anthropic_gets_real_message_shape(sim: RunningSimulator) -> None:
    prompt = "Name three prime numbers."
    body = {
        "model": "claude-3-5-haiku",
        "max_tokens": 2048,
        "system": [{"type": "text", "text": "Be helpful. " * 20}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
    }
    response = run(post_anthropic(sim, body))
    assert response.status_code == 200
    data = response.json()
    assert data["id"].startswith("msg_")
    assert data["type"] == "message" and data["role"] == "assistant"
    assert data["model"] == "claude-3-5-haiku"
    assert data["stop_reason"] == "end_turn" and data["stop_sequence"] is None
    assert len(data["content"]) == 1 and data["content"][0]["type"] == "text"
    text = data["content"][0]["text"]
    assert text.startswith(answer_marker("claude-3-5-haiku", prompt))
    assert data["usage"]["output_tokens"] == math.ceil(len(text) / 4)
    assert data["usage"]["input_tokens"] >= 60  # the system prompt is counted
    assert response.headers["request-id"].startswith("req_")
    for kind in ("requests", "tokens"):
        assert int(response.headers[f"anthropic-ratelimit-{kind}-limit"]) > 0
        assert int(response.headers[f"anthropic-ratelimit-{kind}-remaining"]) > 0
        reset = response.headers[f"anthropic-ratelimit-{kind}-reset"]
        assert datetime.fromisoformat(reset.replace("Z", "+00:00")).tzinfo is not None


def test_anthropic_requires_max_tokens_and_version(sim: RunningSimulator) -> None:
    no_max = {"model": "claude-3-5-haiku", "messages": user("hi")}
    missing_max = run(post_anthropic(sim, no_max))
    missing_version = run(post_anthropic(sim, anthropic_body("hi"), headers={"x-api-key": "k"}))
    for response in (missing_max, missing_version):
        assert response.status_code == 400
        data = response.json()
        assert data["type"] == "error"
        assert data["error"]["type"] == "invalid_request_error" and data["error"]["message"]
    assert "max_tokens" in missing_max.json()["error"]["message"]
    assert "anthropic-version" in missing_version.json()["error"]["message"]


# --------------------------------------------------------------------- replay / max_tokens


def test_replay_returns_exact_alpaca_eval_outputs() -> None:
    prompt_row = read_jsonl(PROMPTS_FILE)[7]
    gpt = {r["id"]: r["output"] for r in read_jsonl(DATA_DIR / "gpt-4o-2024-05-13.jsonl")}
    claude = {r["id"]: r["output"] for r in read_jsonl(DATA_DIR / "claude-3-5-sonnet-20240620.jsonl")}
    all_outputs = {r["output"] for p in DATA_DIR.glob("*.jsonl") for r in read_jsonl(p) if r["id"] == prompt_row["id"]}

    async def go(sim: RunningSimulator) -> list[httpx.Response]:
        big = 100_000
        return [
            await post_openai(sim, {"model": "gpt-4o-mini", "messages": user(prompt_row["prompt"]), "max_tokens": big}),
            await post_anthropic(sim, anthropic_body(prompt_row["prompt"], "claude-3-opus", big)),
            await post_openai(sim, {"model": "mistral-large", "messages": user(prompt_row["prompt"])}),
            await post_openai(sim, {"model": "gpt-4o-mini", "messages": user("not an AlpacaEval prompt")}),
        ]

    with RunningSimulator(mode="replay") as sim:
        openai_resp, anthropic_resp, other_resp, unknown_resp = run(go(sim))
    assert openai_resp.json()["choices"][0]["message"]["content"] == gpt[prompt_row["id"]]
    assert openai_resp.json()["choices"][0]["finish_reason"] == "stop"
    assert anthropic_resp.json()["content"][0]["text"] == claude[prompt_row["id"]]
    assert other_resp.json()["choices"][0]["message"]["content"] in all_outputs
    # A prompt AlpacaEval does not have gets a real recorded answer of that model, never a marker.
    unknown = unknown_resp.json()["choices"][0]["message"]["content"]
    assert unknown in gpt.values() and not unknown.startswith("[sim:")


def test_derived_mode_ignores_known_prompts(sim: RunningSimulator) -> None:
    prompt = read_jsonl(PROMPTS_FILE)[0]["prompt"]
    response = run(post_openai(sim, {"model": "gpt-4o", "messages": user(prompt)}))
    assert response.json()["choices"][0]["message"]["content"].startswith(answer_marker("gpt-4o", prompt))


def test_max_tokens_truncation(sim: RunningSimulator) -> None:
    async def go() -> list[httpx.Response]:
        return [
            await post_openai(sim, {"model": "gpt-4o", "messages": user("long please"), "max_tokens": 5}),
            await post_openai(sim, {"model": "gpt-4o", "messages": user("long please"), "max_completion_tokens": 7}),
            await post_anthropic(sim, anthropic_body("long please", max_tokens=5)),
        ]

    openai_resp, completion_tokens_resp, anthropic_resp = run(go())
    choice = openai_resp.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert 0 < len(choice["message"]["content"]) <= 20
    assert openai_resp.json()["usage"]["completion_tokens"] <= 5
    assert completion_tokens_resp.json()["choices"][0]["finish_reason"] == "length"
    assert len(completion_tokens_resp.json()["choices"][0]["message"]["content"]) <= 28
    message = anthropic_resp.json()
    assert message["stop_reason"] == "max_tokens"
    assert len(message["content"][0]["text"]) <= 20 and message["usage"]["output_tokens"] <= 5


# -------------------------------------------------------------------------- faults


def test_429_fault_has_retry_after_headers_and_rate_limit_error(sim: RunningSimulator) -> None:
    sim.configure(faults=[FaultRule(kind="429", retry_after_s=1.5)])

    async def go() -> tuple[BaseException, httpx.Response]:
        client = openai_client(sim)
        with pytest.raises(openai.RateLimitError) as excinfo:
            await client.chat.completions.create(model="gpt-4o", messages=user("hi"))
        await client.close()
        return excinfo.value, await post_anthropic(sim, anthropic_body("hi"))

    error, anthropic_resp = run(go())
    assert isinstance(error, openai.RateLimitError)
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "2"
    assert error.response.headers["retry-after-ms"] == "1500"
    assert error.response.headers["x-request-id"].startswith("req_")
    body = error.response.json()
    assert body["error"]["code"] == "rate_limit_exceeded" and body["error"]["param"] is None
    assert anthropic_resp.status_code == 429
    assert anthropic_resp.headers["retry-after"] == "2"
    assert anthropic_resp.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": anthropic_resp.json()["error"]["message"]},
    }


@pytest.mark.parametrize(
    ("kind", "anthropic_type"),
    [
        ("400", "invalid_request_error"),
        ("401", "authentication_error"),
        ("500", "api_error"),
        ("503", "overloaded_error"),
        ("529", "overloaded_error"),
    ],
)
def test_status_faults_use_each_api_error_shape(sim: RunningSimulator, kind: str, anthropic_type: str) -> None:
    sim.configure(faults=[{"kind": kind}])

    async def go() -> tuple[httpx.Response, httpx.Response]:
        return await post_openai(sim, {"model": "gpt-4o", "messages": user("hi")}), await post_anthropic(
            sim, anthropic_body("hi")
        )

    openai_resp, anthropic_resp = run(go())
    assert openai_resp.status_code == int(kind)
    assert set(openai_resp.json()["error"]) == {"message", "type", "param", "code"}
    assert anthropic_resp.status_code == int(kind)
    assert anthropic_resp.json()["type"] == "error"
    assert anthropic_resp.json()["error"]["type"] == anthropic_type
    stats = sim.stats()
    assert stats["responses_ok"] == 0
    assert stats["by_model"]["gpt-4o"]["errors"] == 1


def test_fault_times_model_api_and_prompt_filters(sim: RunningSimulator) -> None:
    sim.configure(
        faults=[
            FaultRule(kind="503", model="bad-model", times=2),
            FaultRule(kind="500", api="anthropic", prompt_contains="EXPLODE"),
        ]
    )

    async def go() -> list[int]:
        codes = []
        for _ in range(3):
            codes.append((await post_openai(sim, {"model": "bad-model", "messages": user("x")})).status_code)
        codes.append((await post_openai(sim, {"model": "good-model", "messages": user("x")})).status_code)
        codes.append((await post_openai(sim, {"model": "good-model", "messages": user("EXPLODE")})).status_code)
        codes.append((await post_anthropic(sim, anthropic_body("please EXPLODE now"))).status_code)
        codes.append((await post_anthropic(sim, anthropic_body("calm"))).status_code)
        return codes

    assert run(go()) == [503, 503, 200, 200, 200, 500, 200]
    stats = sim.stats()
    assert stats["by_model"]["bad-model"] == {"requests": 3, "ok": 1, "errors": 2, "in_flight": 0, "max_in_flight": 1}


def test_probability_fault_is_seeded_and_reproducible(sim: RunningSimulator) -> None:
    sim.configure(seed=7, faults=[FaultRule(kind="500", probability=0.5)])

    async def go() -> list[int]:
        async with httpx.AsyncClient(trust_env=False) as client:
            return [
                (
                    await client.post(
                        f"{sim.openai_base_url}/chat/completions",
                        json={"model": "m", "messages": user(f"q{i}")},
                    )
                ).status_code
                for i in range(40)
            ]

    first = run(go())
    sim.reset()
    second = run(go())
    assert first == second
    assert 5 < first.count(500) < 35
    assert set(first) == {200, 500}


def test_drop_fault_gives_connection_error(sim: RunningSimulator) -> None:
    sim.configure(faults=[FaultRule(kind="drop")])

    async def go() -> None:
        client = openai_client(sim)
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(model="gpt-4o", messages=user("hi"))
        await client.close()
        with pytest.raises(httpx.TransportError):
            await post_anthropic(sim, anthropic_body("hi"))

    run(go())
    stats = sim.stats()
    assert stats["faults_injected"] == {"drop": 2}
    assert stats["responses_ok"] == 0


def test_hang_fault_makes_client_time_out_and_releases_in_flight(sim: RunningSimulator) -> None:
    sim.configure(faults=[FaultRule(kind="hang")])

    async def go() -> None:
        start = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await post_openai(sim, {"model": "slow", "messages": user("hi")}, timeout=0.3)
        assert time.monotonic() - start < 10.0  # the 0.3 s timeout, not the hour-long hang
        client = openai_client(sim, timeout=0.3)
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="slow", messages=user("hi"))
        await client.close()

    run(go())
    deadline = time.monotonic() + 2.0
    while sim.stats()["by_model"]["slow"]["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sim.stats()["by_model"]["slow"]["in_flight"] == 0


def test_malformed_empty_and_no_choices_faults(sim: RunningSimulator) -> None:
    async def go() -> list[httpx.Response]:
        out = []
        for kind in ("malformed", "empty", "no_choices"):
            sim.configure(faults=[FaultRule(kind=kind)])
            out.append(await post_openai(sim, {"model": "gpt-4o", "messages": user("hi")}))
            out.append(await post_anthropic(sim, anthropic_body("hi")))
        return out

    malformed_o, malformed_a, empty_o, empty_a, none_o, none_a = run(go())
    for response in (malformed_o, malformed_a):
        assert response.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.text)
    assert empty_o.status_code == 200
    assert empty_o.json()["choices"][0]["message"]["content"] == ""
    assert empty_a.json()["content"] == [{"type": "text", "text": ""}]
    assert none_o.json()["choices"] == [] and none_o.json()["object"] == "chat.completion"
    assert none_a.json()["content"] == [] and none_a.json()["type"] == "message"
    assert sim.stats()["responses_ok"] == 0


# --------------------------------------------------------------------------- stats


def test_stats_count_per_fingerprint(sim: RunningSimulator) -> None:
    body = {"model": "gpt-4o", "messages": user("same body")}
    sim.configure(faults=[FaultRule(kind="503", times=1)])

    async def go() -> list[int]:
        return [(await post_openai(sim, body)).status_code for _ in range(3)]

    assert run(go()) == [503, 200, 200]
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    fp = hashlib.sha256(f"openai:{canonical}".encode()).hexdigest()
    stats = sim.stats()
    assert stats["by_fingerprint"] == {fp: {"requests": 3, "ok": 2}}
    assert stats["requests_total"] == 3 and stats["responses_ok"] == 2
    assert len(stats["request_times"]["gpt-4o"]) == 3


def test_concurrent_burst_max_in_flight(sim: RunningSimulator) -> None:
    sim.configure(latency_ms=100)

    async def go() -> list[int]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(trust_env=False, limits=limits, timeout=10) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{sim.openai_base_url}/chat/completions",
                        json={"model": "burst", "messages": user(f"q{i}")},
                    )
                    for i in range(50)
                )
            )
        return [r.status_code for r in responses]

    start = time.monotonic()
    assert run(go()) == [200] * 50
    assert time.monotonic() - start < 4.0  # one after the other would take 5 s
    stats = sim.stats()["by_model"]["burst"]
    assert 40 <= stats["max_in_flight"] <= 50
    assert stats["in_flight"] == 0 and stats["ok"] == 50
    times = sim.stats()["request_times"]["burst"]
    assert len(times) == 50 and max(times) - min(times) < 2.5


def test_latency_is_applied() -> None:
    with RunningSimulator(latency_ms=150) as sim:
        start = time.monotonic()
        response = run(post_openai(sim, {"model": "m", "messages": user("hi")}))
        elapsed = time.monotonic() - start
    assert response.status_code == 200
    assert elapsed >= 0.15
    assert int(response.headers["openai-processing-ms"]) >= 150


def test_reset_clears_stats_and_fault_counters(sim: RunningSimulator) -> None:
    sim.configure(faults=[FaultRule(kind="429", times=1)])
    body = {"model": "gpt-4o", "messages": user("hi")}
    assert [run(post_openai(sim, body)).status_code for _ in range(2)] == [429, 200]
    assert sim.stats()["requests_total"] == 2
    sim.reset()
    stats = sim.stats()
    assert stats["requests_total"] == 0 and stats["by_model"] == {} and stats["by_fingerprint"] == {}
    assert stats["request_times"] == {}
    assert run(post_openai(sim, body)).status_code == 429


def test_control_api_over_http(sim: RunningSimulator) -> None:
    with httpx.Client(base_url=sim.url, trust_env=False) as client:
        assert client.get("/_sim/health").json() == {"ok": True}
        new = client.put("/_sim/settings", json={"latency_ms": 5, "faults": [{"kind": "500", "times": 1}]})
        assert new.status_code == 200
        assert new.json()["latency_ms"] == 5 and new.json()["faults"][0]["kind"] == "500"
        assert client.put("/_sim/settings", json={"mode": "bogus"}).status_code == 400
        assert client.put("/_sim/settings", json={"faults": [{"kind": "418"}]}).status_code == 400
        body = {"model": "ctl-model", "messages": user("hi")}
        assert client.post("/v1/chat/completions", json=body).status_code == 500
        assert client.post("/v1/chat/completions", json=body).status_code == 200
        stats = client.get("/_sim/stats").json()
        assert stats["by_model"]["ctl-model"]["requests"] == 2
        assert stats == sim.stats()
        models = client.get("/v1/models").json()
        assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["ctl-model"]
        assert client.post("/_sim/reset").json() == {"ok": True}
        assert client.get("/_sim/stats").json()["requests_total"] == 0
    assert sim.settings.latency_ms == 5


# ------------------------------------------------------------------ auth and secrets


def test_require_api_key_gives_401() -> None:
    async def go(sim: RunningSimulator) -> list[httpx.Response]:
        return [
            await post_openai(sim, {"model": "gpt-4o", "messages": user("hi")}),
            await post_openai(sim, {"model": "gpt-4o", "messages": user("hi")}, headers={"Authorization": "Bearer"}),
            await post_openai(sim, {"model": "gpt-4o", "messages": user("hi")}, headers={"Authorization": "Bearer k"}),
            await post_anthropic(sim, anthropic_body("hi"), headers={"anthropic-version": "2023-06-01"}),
            await post_anthropic(sim, anthropic_body("hi")),
        ]

    with RunningSimulator(require_api_key=True) as sim:
        missing, empty, ok, anthropic_missing, anthropic_ok = run(go(sim))
    for response in (missing, empty):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert ok.status_code == 200
    assert anthropic_missing.status_code == 401
    assert anthropic_missing.json()["error"]["type"] == "authentication_error"
    assert anthropic_ok.status_code == 200


def test_api_key_values_never_appear_in_stats(sim: RunningSimulator) -> None:
    secret = "sk-simtest-DO-NOT-LEAK-4242"

    async def go() -> None:
        client = openai_client(sim, api_key=secret)
        await client.chat.completions.create(model="gpt-4o", messages=user("hi"))
        await client.close()
        headers = {"anthropic-version": "2023-06-01", "x-api-key": secret}
        assert (await post_anthropic(sim, anthropic_body("hi"), headers=headers)).status_code == 200

    run(go())
    stats = sim.stats()
    assert stats["auth_headers_seen"] == 2
    with httpx.Client(base_url=sim.url, trust_env=False) as client:
        raw = client.get("/_sim/stats").text + client.get("/_sim/settings").text
    assert secret not in json.dumps(stats) and secret not in raw


# ------------------------------------------------------------ harness and process


def _port_accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_running_simulator_starts_and_stops_quickly_without_leftovers() -> None:
    threads_before = threading.active_count()
    start = time.monotonic()
    sim = RunningSimulator(settings=SimulatorSettings(latency_ms=1)).start()
    started = time.monotonic() - start
    port = sim.port
    assert sim.url == f"http://127.0.0.1:{port}"
    assert sim.openai_base_url == f"{sim.url}/v1" and sim.anthropic_base_url == sim.url
    assert _port_accepts(port)
    sim.configure(faults=[FaultRule(kind="hang")])
    with pytest.raises(httpx.ReadTimeout):  # leaves a hanging handler behind on purpose
        run(post_openai(sim, {"model": "m", "messages": user("hi")}, timeout=0.2))
    start = time.monotonic()
    sim.close()
    stopped = time.monotonic() - start
    assert started < 5.0 and stopped < 5.0  # stopping does not wait for the hanging handler
    assert threading.active_count() == threads_before
    assert not _port_accepts(port)
    sim.close()  # idempotent


def test_cli_flags_override_settings_json() -> None:
    base = SimulatorSettings(latency_ms=3, mode="replay", seed=1).model_dump_json()
    host, port, settings = parse_args(
        ["--port", "0", "--settings-json", base, "--latency-ms", "9", "--faults-json", '[{"kind": "drop"}]']
    )
    assert (host, port) == ("127.0.0.1", 0)
    assert settings.latency_ms == 9 and settings.mode == "replay" and settings.seed == 1
    assert settings.faults == [FaultRule(kind="drop")]


@pytest.mark.slow
def test_simulator_process_end_to_end() -> None:
    with start_simulator_process(mode="derived", faults=[FaultRule(kind="429", times=1, retry_after_s=0.2)]) as proc:
        assert proc.port > 0 and proc.url == f"http://127.0.0.1:{proc.port}"

        async def go() -> tuple[int, Any]:
            client = openai.AsyncOpenAI(base_url=proc.openai_base_url, api_key="x", max_retries=0)
            with pytest.raises(openai.RateLimitError) as excinfo:
                await client.chat.completions.create(model="gpt-4o", messages=user("proc"))
            completion = await client.chat.completions.create(model="gpt-4o", messages=user("proc"))
            await client.close()
            return excinfo.value.status_code, completion

        status, completion = run(go())
        assert status == 429
        assert completion.choices[0].message.content.startswith(answer_marker("gpt-4o", "proc"))
        stats = proc.stats()
        assert stats["by_model"]["gpt-4o"] == {"requests": 2, "ok": 1, "errors": 1, "in_flight": 0, "max_in_flight": 1}
        assert proc.configure(latency_ms=20).latency_ms == 20
        proc.reset()
        assert proc.stats()["requests_total"] == 0
        port, process = proc.port, proc.process
    assert process.poll() is not None
    assert not _port_accepts(port)
