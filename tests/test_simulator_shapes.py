"""The simulator's answer shapes (fault kinds ``refusal`` … ``cached_input``, simulator.shapes): the raw
JSON bodies over real loopback HTTP, online and in both batch APIs, for OpenAI and Anthropic alike."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, get_args

import httpx
import pytest

from simulator import RunningSimulator
from simulator.answers import compose_answer
from simulator.settings import FaultKind
from simulator.shapes import REFUSAL_TEXT, SHAPE_FAULTS
from simulator.wire import parse_anthropic, parse_openai

GPT = "gpt-4o"
CLAUDE = "claude-sonnet-4"
MAX = 4000  # above every derived answer: the normal answer is never cut by it
SMALL_HUGE = 50
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "test-key"}
KINDS = sorted(SHAPE_FAULTS)
BASE_PROMPT = (
    "Describe a quiet spring morning in Paris: the light on the river, the cafes opening, the markets "
    "setting up and what a visitor should see first, in a few short paragraphs."
)
NO_DETAILS = {"audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}


def marker(kind: str) -> str:
    return f"[[{kind}]]"


def prompt_for(kind: str) -> str:
    return f"{marker(kind)} {BASE_PROMPT}"


def tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def openai_body(kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": GPT,
        "max_completion_tokens": MAX,
        "messages": [{"role": "user", "content": prompt_for(kind)}],
        **extra,
    }


def anthropic_body(kind: str) -> dict[str, Any]:
    return {"model": CLAUDE, "max_tokens": MAX, "messages": [{"role": "user", "content": prompt_for(kind)}]}


def normal_text(model: str, kind: str) -> str:
    """The answer a request of ``kind`` gets without its fault (derived mode)."""
    answer = compose_answer(model, prompt_for(kind), MAX, "derived")
    assert not answer.truncated
    return answer.text


@pytest.fixture(scope="module")
def shapes_sim() -> Iterator[RunningSimulator]:
    """One simulator for the module; a rule per shape kind, matched by a marker in the prompt."""
    with RunningSimulator(mode="derived") as sim:
        rules: list[dict[str, Any]] = [{"kind": kind, "prompt_contains": marker(kind)} for kind in KINDS]
        rules.append({"kind": "huge_text", "prompt_contains": "[[huge_text:small]]", "huge_chars": SMALL_HUGE})
        with httpx.Client(base_url=sim.url, trust_env=False, timeout=10) as control:
            response = control.put("/_sim/settings", json={"faults": rules})
            assert response.status_code == 200, response.text
        yield sim


@pytest.fixture(scope="module")
def http(shapes_sim: RunningSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shapes_sim.url, trust_env=False, timeout=30) as client:
        yield client


def post_openai(http: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"].startswith("req_")
    assert "x-ratelimit-limit-requests" in response.headers and "x-ratelimit-remaining-tokens" in response.headers
    return response


def post_anthropic(http: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    response = http.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert response.status_code == 200, response.text
    assert response.headers["request-id"].startswith("req_")
    assert "anthropic-ratelimit-requests-limit" in response.headers
    return response


# --------------------------------------------------------------------------- shape checks


def check_openai(kind: str, body: dict[str, Any], raw: bytes) -> None:
    """Assert a chat completion for fault ``kind`` (``raw``: its JSON text) has that kind's exact shape."""
    prompt_tokens = parse_openai(openai_body(kind)).input_tokens
    normal = normal_text(GPT, kind)
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["system_fingerprint"]
    assert body["model"] == ({"id": GPT, "version": 3} if kind == "model_object" else GPT)
    assert len(body["choices"]) == 1
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["logprobs"] is None
    message, finish, usage = choice["message"], choice["finish_reason"], body["usage"]

    def plain_usage(completion: int) -> dict[str, Any]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }

    def detailed_usage(completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
        return {
            **plain_usage(completion),
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, **NO_DETAILS},
        }

    normal_message = {"role": "assistant", "content": normal, "refusal": None}
    if kind == "refusal":
        assert message == {"role": "assistant", "content": None, "refusal": REFUSAL_TEXT} and finish == "stop"
        assert usage == plain_usage(tokens(REFUSAL_TEXT))
    elif kind == "content_filter":
        assert message == {"role": "assistant", "content": None, "refusal": None} and finish == "content_filter"
        assert usage == plain_usage(0)
    elif kind == "length":
        partial = message["content"]
        assert message == {"role": "assistant", "content": partial, "refusal": None} and finish == "length"
        assert normal.startswith(partial) and 0.35 < len(partial) / len(normal) < 0.5
        assert partial[-1].isalnum() and normal[len(partial)].isalnum()  # cut inside a word
        assert usage == plain_usage(MAX)
    elif kind == "reasoning_length":
        assert message == {"role": "assistant", "content": "", "refusal": None} and finish == "length"
        assert usage == detailed_usage(MAX, reasoning=MAX)
    elif kind in ("thinking", "redacted_thinking"):
        reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
        assert reasoning > 0 and finish == "stop"
        assert usage == detailed_usage(tokens(normal) + reasoning, reasoning=reasoning)
        if kind == "thinking":
            thought = message["reasoning_content"]
            assert isinstance(thought, str) and thought.strip() and reasoning == tokens(thought)
            assert message == {**normal_message, "reasoning_content": thought}
        else:
            assert message == normal_message  # the reasoning shows only in the usage
    elif kind == "tool_calls":
        calls = message["tool_calls"]
        assert message == {"role": "assistant", "content": None, "refusal": None, "tool_calls": calls}
        assert len(calls) == 1 and calls[0]["id"].startswith("call_")
        function = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
        assert calls[0] == {"id": calls[0]["id"], "type": "function", "function": function}
        assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"} and finish == "tool_calls"
        assert usage == plain_usage(usage["completion_tokens"]) and usage["completion_tokens"] > 0
    elif kind == "content_parts":
        parts = message["content"]
        assert message == {"role": "assistant", "content": parts, "refusal": None} and finish == "stop"
        assert [part["type"] for part in parts] == ["text", "text"] and all(set(p) == {"type", "text"} for p in parts)
        assert parts[0]["text"] and parts[1]["text"] and parts[0]["text"] + parts[1]["text"] == normal
        assert usage == plain_usage(tokens(normal))
    elif kind == "whitespace":
        assert message == {"role": "assistant", "content": "  \n\t  ", "refusal": None} and finish == "stop"
        assert usage == plain_usage(2)
    elif kind == "huge_text":
        assert len(message["content"]) == 1_000_000 and message["content"].startswith(normal) and finish == "stop"
        assert usage == plain_usage(7)
    elif kind == "lone_surrogate":
        assert b"\\ud800" in raw
        assert message["content"].count("\ud800") == 1 and message["content"].replace("\ud800", "") == normal
        assert finish == "stop" and usage == plain_usage(tokens(normal))
    elif kind == "usage_negative":
        assert message == normal_message and usage == {
            "prompt_tokens": -5,
            "completion_tokens": -5,
            "total_tokens": -10,
        }
    elif kind == "usage_huge":
        assert message == normal_message and b'"prompt_tokens": 1e+308' in raw
        assert isinstance(usage["prompt_tokens"], float) and usage["prompt_tokens"] == 1e308
        assert usage["completion_tokens"] == tokens(normal)
    elif kind == "usage_overflow":
        assert message == normal_message and usage == plain_usage(tokens(normal)) | {
            "prompt_tokens": 2**63,
            "total_tokens": 2**63 + tokens(normal),
        }
        assert b'"prompt_tokens": 9223372036854775808' in raw
    elif kind == "usage_list":
        assert message == normal_message and usage == [1, 2]
    elif kind == "model_object":
        assert message == normal_message and finish == "stop" and usage == plain_usage(tokens(normal))
    elif kind == "cached_input":
        assert message == normal_message and finish == "stop"
        assert usage == detailed_usage(tokens(normal), cached=prompt_tokens // 2)
    else:  # pragma: no cover - a kind without a check
        raise AssertionError(f"no check for {kind}")


def check_anthropic(kind: str, body: dict[str, Any], raw: bytes) -> None:
    """Assert a Messages API message for fault ``kind`` (``raw``: its JSON text) has that kind's exact shape."""
    input_tokens = parse_anthropic(anthropic_body(kind)).input_tokens
    normal = normal_text(CLAUDE, kind)
    assert body["id"].startswith("msg_01") and body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == ({"id": CLAUDE, "version": 3} if kind == "model_object" else CLAUDE)
    assert body["stop_sequence"] is None
    assert set(body) == {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
    content, stop, usage = body["content"], body["stop_reason"], body["usage"]

    def plain_usage(output: int) -> dict[str, Any]:
        return {"input_tokens": input_tokens, "output_tokens": output}

    text_block = [{"type": "text", "text": normal}]
    if kind in ("refusal", "content_filter"):
        assert content == [] and stop == "refusal" and usage == plain_usage(0)
    elif kind == "length":
        assert len(content) == 1 and content[0]["type"] == "text" and set(content[0]) == {"type", "text"}
        partial = content[0]["text"]
        assert normal.startswith(partial) and 0.35 < len(partial) / len(normal) < 0.5
        assert partial[-1].isalnum() and normal[len(partial)].isalnum()
        assert stop == "max_tokens" and usage == plain_usage(MAX)
    elif kind == "reasoning_length":
        assert len(content) == 1 and stop == "max_tokens" and usage == plain_usage(MAX)
        block = content[0]
        assert set(block) == {"type", "thinking", "signature"} and block["type"] == "thinking"
        assert block["thinking"] and block["signature"]
    elif kind == "thinking":
        assert len(content) == 2 and content[1:] == text_block and stop == "end_turn"
        block = content[0]
        assert set(block) == {"type", "thinking", "signature"} and block["type"] == "thinking"
        assert block["thinking"].strip() and len(block["signature"]) > 100
        assert usage == plain_usage(tokens(normal) + tokens(block["thinking"]))
    elif kind == "redacted_thinking":
        assert len(content) == 2 and content[1:] == text_block and stop == "end_turn"
        block = content[0]
        assert set(block) == {"type", "data"} and block["type"] == "redacted_thinking" and len(block["data"]) > 100
        assert usage["input_tokens"] == input_tokens and usage["output_tokens"] > tokens(normal)
    elif kind == "tool_calls":
        assert len(content) == 1 and content[0]["id"].startswith("toolu_")
        tool_use = {"type": "tool_use", "id": content[0]["id"], "name": "get_weather", "input": {"city": "Paris"}}
        assert content == [tool_use] and stop == "tool_use"
        assert usage["input_tokens"] == input_tokens and usage["output_tokens"] > 0
    elif kind == "content_parts":
        assert [block["type"] for block in content] == ["text", "text"] and stop == "end_turn"
        assert all(set(block) == {"type", "text"} and block["text"] for block in content)
        assert content[0]["text"] + content[1]["text"] == normal and usage == plain_usage(tokens(normal))
    elif kind == "whitespace":
        assert content == [{"type": "text", "text": "  \n\t  "}] and stop == "end_turn" and usage == plain_usage(2)
    elif kind == "huge_text":
        assert len(content) == 1 and len(content[0]["text"]) == 1_000_000 and content[0]["text"].startswith(normal)
        assert stop == "end_turn" and usage == plain_usage(7)
    elif kind == "lone_surrogate":
        assert b"\\ud800" in raw and len(content) == 1
        assert content[0]["text"].count("\ud800") == 1 and content[0]["text"].replace("\ud800", "") == normal
        assert stop == "end_turn" and usage == plain_usage(tokens(normal))
    elif kind == "usage_negative":
        assert content == text_block and usage == {"input_tokens": -5, "output_tokens": -5}
    elif kind == "usage_huge":
        assert content == text_block and b'"input_tokens": 1e+308' in raw
        assert isinstance(usage["input_tokens"], float) and usage == {
            "input_tokens": 1e308,
            "output_tokens": tokens(normal),
        }
    elif kind == "usage_overflow":
        assert content == text_block and usage == {"input_tokens": 2**63, "output_tokens": tokens(normal)}
        assert b'"input_tokens": 9223372036854775808' in raw
    elif kind == "usage_list":
        assert content == text_block and usage == [1, 2]
    elif kind == "model_object":
        assert content == text_block and stop == "end_turn" and usage == plain_usage(tokens(normal))
    elif kind == "cached_input":
        assert content == text_block and stop == "end_turn"
        read = input_tokens // 2
        assert input_tokens - read > 10  # the prompt is long enough for the full cache write
        assert usage == {
            "input_tokens": input_tokens - read - 10,  # Anthropic's input_tokens leaves cached tokens out
            "cache_creation_input_tokens": 10,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 0},
            "output_tokens": tokens(normal),
        }
    else:  # pragma: no cover - a kind without a check
        raise AssertionError(f"no check for {kind}")


CHECKS: dict[str, Callable[[str, dict[str, Any], bytes], None]] = {"openai": check_openai, "anthropic": check_anthropic}


# --------------------------------------------------------------------------- online


def test_every_shape_kind_is_a_fault_kind() -> None:
    assert set(get_args(FaultKind)) >= SHAPE_FAULTS
    assert len(KINDS) == 17


@pytest.mark.parametrize("kind", KINDS)
def test_openai_shape(http: httpx.Client, kind: str) -> None:
    response = post_openai(http, openai_body(kind))
    check_openai(kind, json.loads(response.content), response.content)


@pytest.mark.parametrize("kind", KINDS)
def test_anthropic_shape(http: httpx.Client, kind: str) -> None:
    response = post_anthropic(http, anthropic_body(kind))
    check_anthropic(kind, json.loads(response.content), response.content)


def test_length_without_max_tokens_reports_the_partial_text(http: httpx.Client) -> None:
    body = openai_body("length")
    del body["max_completion_tokens"]
    completion = post_openai(http, body).json()
    partial = completion["choices"][0]["message"]["content"]
    assert completion["choices"][0]["finish_reason"] == "length"
    assert completion["usage"]["completion_tokens"] == tokens(partial)


def test_length_uses_max_tokens_too(http: httpx.Client) -> None:
    body = openai_body("length", max_tokens=3000)
    del body["max_completion_tokens"]
    assert post_openai(http, body).json()["usage"]["completion_tokens"] == 3000


def test_huge_chars_sets_the_huge_text_length(http: httpx.Client) -> None:
    body = {"model": GPT, "messages": [{"role": "user", "content": "[[huge_text:small]] hello"}]}
    completion = post_openai(http, body).json()
    assert len(completion["choices"][0]["message"]["content"]) == SMALL_HUGE
    assert completion["usage"]["completion_tokens"] == 7
    message = post_anthropic(http, {**body, "model": CLAUDE, "max_tokens": 100}).json()
    assert len(message["content"][0]["text"]) == SMALL_HUGE and message["usage"]["output_tokens"] == 7


def test_rate_limit_windows_count_true_tokens_not_the_usage_lies(shapes_sim: RunningSimulator) -> None:
    # A usage of 2**63, 1e308 or a list must not break the advertised windows (or anything after them).
    with httpx.Client(base_url=shapes_sim.url, trust_env=False, timeout=10) as client:
        for kind in ("usage_overflow", "usage_huge", "usage_list", "usage_negative"):
            post_openai(client, {**openai_body(kind), "model": "lies-model"})
        after = post_openai(client, {"model": "lies-model", "messages": [{"role": "user", "content": "hi"}]})
    remaining = int(after.headers["x-ratelimit-remaining-tokens"])
    assert 0 < remaining < int(after.headers["x-ratelimit-limit-tokens"])


def test_stats_count_shape_faults(shapes_sim: RunningSimulator, http: httpx.Client) -> None:
    shapes_sim.reset()
    for kind in ("refusal", "thinking"):
        post_openai(http, openai_body(kind))
        post_anthropic(http, anthropic_body(kind))
    post_openai(http, {"model": GPT, "messages": [{"role": "user", "content": "no marker here"}]})
    stats = shapes_sim.stats()
    assert stats["faults_injected"] == {"refusal": 2, "thinking": 2}
    assert stats["requests_total"] == 5 and stats["responses_ok"] == 1 and stats["errors_total"] == 4


# --------------------------------------------------------------------------- batches


def _wait(fetch: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        state = fetch()
        if done(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.02)


def test_openai_batch_output_has_the_shapes(http: httpx.Client) -> None:
    lines = [
        {"custom_id": kind, "method": "POST", "url": "/v1/chat/completions", "body": openai_body(kind)}
        for kind in KINDS
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = http.post("/v1/files", files={"file": ("shapes.jsonl", data)}, data={"purpose": "batch"})
    assert uploaded.status_code == 200, uploaded.text
    created = http.post(
        "/v1/batches",
        json={"input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    ).json()
    batch = _wait(lambda: http.get(f"/v1/batches/{created['id']}").json(), lambda b: b["status"] != "in_progress")
    assert batch["status"] == "completed" and batch["request_counts"] == {"total": 17, "completed": 17, "failed": 0}
    usage = batch["usage"]  # the true tokens, not the bodies' usage lies
    assert all(isinstance(usage[key], int) and usage[key] > 0 for key in ("input_tokens", "output_tokens"))
    assert usage["input_tokens"] < 17 * 100
    content = http.get(f"/v1/files/{batch['output_file_id']}/content").content
    raw_lines = content.splitlines()
    assert len(raw_lines) == 17
    for raw in raw_lines:
        line = json.loads(raw)
        assert line["error"] is None and line["response"]["status_code"] == 200
        check_openai(line["custom_id"], line["response"]["body"], raw)


def test_anthropic_batch_results_have_the_shapes(http: httpx.Client) -> None:
    requests = [{"custom_id": kind, "params": anthropic_body(kind)} for kind in KINDS]
    created = http.post("/v1/messages/batches", json={"requests": requests}, headers=ANTHROPIC_HEADERS).json()
    batch = _wait(
        lambda: http.get(f"/v1/messages/batches/{created['id']}", headers=ANTHROPIC_HEADERS).json(),
        lambda b: b["processing_status"] == "ended",
    )
    assert batch["request_counts"]["succeeded"] == 17
    content = http.get(batch["results_url"], headers=ANTHROPIC_HEADERS).content
    raw_lines = content.splitlines()
    assert len(raw_lines) == 17
    for raw in raw_lines:
        line = json.loads(raw)
        assert line["result"]["type"] == "succeeded"
        check_anthropic(line["custom_id"], line["result"]["message"], raw)
