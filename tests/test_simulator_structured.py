"""The simulator answers structured-output requests (AI judges) on both wires, online and in batches.

OpenAI through the real ``openai`` SDK (``response_format`` json_schema: the JSON text in
``choices[0].message.content``), Anthropic through ``httpx`` (a forced tool: one ``tool_use`` block and
``stop_reason: tool_use``). Requests are built by ``task_builder.judging`` for the shipped templates;
answers are read back with ``parse_judgement`` and checked with ``jsonschema``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Final, cast

import httpx
import jsonschema
import openai
import pytest
import sim_clients

from simulator import FaultRule, RunningSimulator, ScriptedAnswer, answer_marker
from simulator.structured import conforming_value
from task_builder.judging import (
    JudgeProblem,
    JudgeRequest,
    anthropic_tool,
    openai_response_format,
    parse_judgement,
    rating_request,
)
from task_builder.template import resolve_template, shipped_templates

GPT = "gpt-4o-mini"
CLAUDE = "claude-3-5-haiku"
CHAT: Final = "/v1/chat/completions"
TEMPLATES = shipped_templates()


# --------------------------------------------------------------------------- helpers


def judge(
    template: str = "helpsteer_0_4", prompt: str = "Why is the sky blue?", answer: str = "Rayleigh."
) -> JudgeRequest:
    return rating_request(resolve_template(template), prompt, answer)


def openai_body(request: JudgeRequest, model: str = GPT, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": request.chat_messages(),
        "response_format": openai_response_format(request),
        **extra,
    }


def anthropic_body(request: JudgeRequest, model: str = CLAUDE, max_tokens: int = 1024, **extra: Any) -> dict[str, Any]:
    tool, choice = anthropic_tool(request)
    body = {
        "model": model,
        "max_tokens": max_tokens,
        "system": request.system,
        "messages": request.messages,
        "tools": [tool],
        "tool_choice": choice,
    }
    body.update(extra)
    return body


def ask_openai(client: openai.OpenAI, request: JudgeRequest, **extra: Any) -> Any:
    return client.chat.completions.create(  # type: ignore[call-overload]
        model=GPT,
        messages=request.chat_messages(),
        response_format=openai_response_format(request),
        **extra,
    )


def ask_format(client: openai.OpenAI, request: JudgeRequest, fmt: dict[str, Any]) -> Any:
    """A chat completion with a hand-made ``response_format``."""
    return client.chat.completions.create(
        model=GPT, messages=cast(Any, request.chat_messages()), response_format=cast(Any, fmt)
    )


def ask_anthropic(http: httpx.Client, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = http.post("/v1/messages", json=body)
    assert response.status_code == status, response.text
    return cast(dict[str, Any], response.json())


def valid(request: JudgeRequest, answer: str | dict[str, Any]) -> dict[str, Any]:
    """The judgement in ``answer``, asserted valid by parse_judgement and by jsonschema."""
    judgement = parse_judgement(request, answer)
    assert isinstance(judgement, dict), judgement
    instance = answer if isinstance(answer, dict) else json.loads(answer)
    jsonschema.validate(instance, request.schema)
    return judgement


def tool_block(message: dict[str, Any], request: JudgeRequest) -> dict[str, Any]:
    """The message's only content block, asserted to be a call of the request's tool."""
    assert message["stop_reason"] == "tool_use"
    assert len(message["content"]) == 1
    block = cast(dict[str, Any], message["content"][0])
    assert set(block) == {"type", "id", "name", "input"}
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_01") and len(block["id"]) > 20
    assert block["name"] == request.schema_name
    assert isinstance(block["input"], dict)
    return block


def problem(request: JudgeRequest, answer: str | dict[str, Any]) -> JudgeProblem:
    found = parse_judgement(request, answer)
    assert isinstance(found, JudgeProblem), found
    return found


# --------------------------------------------------------------------------- online


@pytest.mark.parametrize("template", TEMPLATES)
def test_openai_json_schema_answer_conforms_and_repeats(client: openai.OpenAI, template: str) -> None:
    request = judge(template)
    first = ask_openai(client, request)
    choice = first.choices[0]
    assert choice.finish_reason == "stop" and choice.message.refusal is None
    content = choice.message.content
    judgement = valid(request, content)
    assert list(judgement) == list(request.schema["properties"])  # schema order, rationale first
    assert judgement["rationale"].endswith(".")
    assert first.usage.completion_tokens == -(-len(content) // 4)
    assert first.usage.prompt_tokens > -(-len(request.system) // 4)
    second = ask_openai(client, request)
    assert second.choices[0].message.content == content
    assert second.id != first.id


@pytest.mark.parametrize("template", TEMPLATES)
def test_anthropic_forced_tool_answer_is_one_tool_use_block(http: httpx.Client, template: str) -> None:
    request = judge(template)
    message = ask_anthropic(http, anthropic_body(request))
    assert message["type"] == "message" and message["role"] == "assistant" and message["model"] == CLAUDE
    assert message["stop_sequence"] is None
    block = tool_block(message, request)
    valid(request, block["input"])
    assert message["usage"]["output_tokens"] == -(-len(json.dumps(block["input"], separators=(",", ":"))) // 4)
    again = ask_anthropic(http, anthropic_body(request))
    again_block = tool_block(again, request)
    assert again_block["input"] == block["input"]
    assert again_block["id"] != block["id"]


def test_different_prompts_get_different_values(client: openai.OpenAI, http: httpx.Client) -> None:
    requests = [judge(prompt=f"Question {i}: how do tides work?", answer=f"Answer {i}.") for i in range(12)]
    score_keys = [key for key in requests[0].schema["properties"] if key != "rationale"]
    online = [valid(r, ask_openai(client, r).choices[0].message.content) for r in requests]
    for key in score_keys:
        assert len({judgement[key] for judgement in online}) > 1, key
    assert len({judgement["rationale"] for judgement in online}) > 1
    tools = [valid(r, tool_block(ask_anthropic(http, anthropic_body(r)), r)["input"]) for r in requests]
    assert len({tuple(judgement[k] for k in score_keys) for judgement in tools}) > 1
    # A boolean and a category are drawn too.
    sft = [judge("sft", prompt=f"Prompt {i}") for i in range(12)]
    assert {valid(r, ask_openai(client, r).choices[0].message.content)["needs_rewrite"] for r in sft} == {
        True,
        False,
    }
    pref = [judge("pref_ranking", prompt=f"Prompt {i}") for i in range(12)]
    assert len({valid(r, ask_openai(client, r).choices[0].message.content)["verbosity"] for r in pref}) > 1


def test_invalid_probability_one_makes_every_answer_invalid_in_turn(
    sim: RunningSimulator, client: openai.OpenAI, http: httpx.Client
) -> None:
    sim.configure(structured_invalid_probability=1.0)
    request = judge("pref_ranking")
    texts = [ask_openai(client, request).choices[0].message.content for _ in range(4)]
    off_scale, missing, prose, off_scale_again = (problem(request, text) for text in texts)
    assert off_scale.field is not None and "outside the allowed values" in off_scale.reason
    assert missing.field is not None and missing.reason == "missing"
    assert prose.field is None and "not a JSON object" in prose.reason
    assert "{" in texts[2] and not texts[2].lstrip().startswith("{")  # the JSON, wrapped in a sentence
    assert off_scale_again == off_scale
    # Anthropic: still a tool call (its input is always an object), alternately off scale and missing a key.
    inputs = [tool_block(ask_anthropic(http, anthropic_body(request)), request)["input"] for _ in range(3)]
    problems = [problem(request, tool_input) for tool_input in inputs]
    assert "outside the allowed values" in problems[0].reason and problems[1].reason == "missing"
    assert "outside the allowed values" in problems[2].reason
    sim.configure(structured_invalid_probability=0.0)
    valid(request, ask_openai(client, request).choices[0].message.content)


def test_invalid_probability_is_drawn_per_request_from_the_seed(sim: RunningSimulator, client: openai.OpenAI) -> None:
    sim.configure(structured_invalid_probability=0.5)  # the fixture keeps the default seed
    request = judge()

    def outcomes() -> list[bool]:
        return [
            isinstance(parse_judgement(request, ask_openai(client, request).choices[0].message.content), dict)
            for _ in range(24)
        ]

    first = outcomes()
    assert any(first) and not all(first)  # a retry of the same request can succeed
    sim.reset()
    assert outcomes() == first


def test_scripted_answer_replaces_the_structured_one(
    sim: RunningSimulator, client: openai.OpenAI, http: httpx.Client
) -> None:
    sim.configure(scripted=[ScriptedAnswer(text="I cannot rate this response.", prompt_contains="script-me")])
    request = judge(prompt="script-me please")
    content = ask_openai(client, request).choices[0].message.content
    assert content == "I cannot rate this response."
    assert problem(request, content).field is None
    message = ask_anthropic(http, anthropic_body(request))
    assert message["content"] == [{"type": "text", "text": "I cannot rate this response."}]
    assert message["stop_reason"] == "end_turn"
    # Faults still come first.
    sim.configure(faults=[FaultRule(kind="500", times=1)])
    plain = judge()
    with pytest.raises(openai.InternalServerError):
        ask_openai(client, plain)
    valid(plain, ask_openai(client, plain).choices[0].message.content)


def test_max_tokens_cuts_a_structured_answer(client: openai.OpenAI, http: httpx.Client) -> None:
    request = judge()
    cut = ask_openai(client, request, max_tokens=8).choices[0]
    assert cut.finish_reason == "length" and len(cut.message.content) == 32
    assert problem(request, cut.message.content).field is None
    message = ask_anthropic(http, anthropic_body(request, max_tokens=40))
    assert message["stop_reason"] == "max_tokens"
    block = message["content"][0]
    assert block["type"] == "tool_use"
    full = tool_block(ask_anthropic(http, anthropic_body(request)), request)["input"]
    assert list(block["input"]) == list(full)[: len(block["input"])] and len(block["input"]) < len(full)
    assert message["usage"]["output_tokens"] == 40


def test_anthropic_tool_choice_variants(http: httpx.Client) -> None:
    request = judge()
    tool, _ = anthropic_tool(request)
    # "any" must call a tool: the (only) tool.
    tool_block(ask_anthropic(http, anthropic_body(request, tool_choice={"type": "any"})), request)
    # "auto" and "none", or no tool_choice: the model may answer in text, and the simulator does.
    for choice in ({"type": "auto"}, {"type": "none"}, None):
        body = anthropic_body(request, tool_choice=choice)
        if choice is None:
            del body["tool_choice"]
        message = ask_anthropic(http, body)
        assert message["content"][0]["type"] == "text" and message["stop_reason"] == "end_turn"
        assert message["content"][0]["text"].startswith(answer_marker(CLAUDE, request.messages[-1]["content"]))
    unknown = ask_anthropic(http, anthropic_body(request, tool_choice={"type": "tool", "name": "other"}), 400)
    assert unknown["type"] == "error" and "other" in unknown["error"]["message"]
    body = anthropic_body(request)
    del body["tools"]
    ask_anthropic(http, body, 400)
    ask_anthropic(http, anthropic_body(request, tools=[{**tool, "input_schema": None}]), 400)


def test_openai_checks_the_response_format(client: openai.OpenAI) -> None:
    request = judge()
    loose = {**request.schema}
    del loose["additionalProperties"]
    fmt = {"type": "json_schema", "json_schema": {"name": "rating", "schema": loose, "strict": True}}
    with pytest.raises(openai.BadRequestError, match="additionalProperties"):
        ask_format(client, request, fmt)
    partial = {**request.schema, "required": ["rationale"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "rating", "schema": partial, "strict": True}}
    with pytest.raises(openai.BadRequestError, match="Missing 'helpfulness'"):
        ask_format(client, request, fmt)
    fmt = {"type": "json_schema", "json_schema": {"name": "a rating", "schema": request.schema}}
    with pytest.raises(openai.BadRequestError, match="name"):
        ask_format(client, request, fmt)
    # Not strict: the schema is followed all the same.
    fmt = {"type": "json_schema", "json_schema": {"name": "rating", "schema": partial}}
    answer = ask_format(client, request, fmt)
    valid(request, answer.choices[0].message.content or "")


def test_requests_without_structured_output_still_get_text(client: openai.OpenAI, http: httpx.Client) -> None:
    prompt = "Explain the difference between TCP and UDP."
    completion = client.chat.completions.create(model=GPT, messages=[{"role": "user", "content": prompt}])
    assert (completion.choices[0].message.content or "").startswith(answer_marker(GPT, prompt))
    text_format = client.chat.completions.create(
        model=GPT, messages=[{"role": "user", "content": prompt}], response_format={"type": "text"}
    )
    assert text_format.choices[0].message.content == completion.choices[0].message.content
    message = ask_anthropic(
        http, {"model": CLAUDE, "max_tokens": 4096, "messages": [{"role": "user", "content": prompt}]}
    )
    assert message["stop_reason"] == "end_turn" and len(message["content"]) == 1
    assert message["content"][0]["type"] == "text"
    assert message["content"][0]["text"].startswith(answer_marker(CLAUDE, prompt))


def test_nested_objects_and_arrays_conform() -> None:
    schema = {
        "type": "object",
        "properties": {
            "scores": {
                "type": "object",
                "properties": {"clarity": {"type": "integer", "minimum": 1, "maximum": 5}, "ok": {"type": "boolean"}},
                "required": ["clarity", "ok"],
                "additionalProperties": False,
            },
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 2},
            "note": {"type": ["string", "null"], "maxLength": 10},
            "weight": {"type": "number"},
        },
        "required": ["scores", "tags", "note", "weight"],
        "additionalProperties": False,
    }
    for seed in ("one", "two", "three"):
        value = conforming_value(schema, seed)
        jsonschema.validate(value, schema)
        assert conforming_value(schema, seed) == value


# --------------------------------------------------------------------------- batches


def wait_openai(client: openai.OpenAI, batch_id: str) -> Any:
    deadline = time.monotonic() + 5
    while (batch := client.batches.retrieve(batch_id)).status not in {"completed", "failed", "expired", "cancelled"}:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return batch


def wait_anthropic(http: httpx.Client, batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while (batch := http.get(f"/v1/messages/batches/{batch_id}").json())["processing_status"] != "ended":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return cast(dict[str, Any], batch)


def test_openai_batch_lines_get_structured_output(
    sim: RunningSimulator, client: openai.OpenAI, http: httpx.Client
) -> None:
    requests = {f"r{i}": judge(TEMPLATES[i % len(TEMPLATES)], prompt=f"Batch prompt {i}") for i in range(4)}
    lines = [
        {"custom_id": cid, "method": "POST", "url": CHAT, "body": openai_body(request)}
        for cid, request in requests.items()
    ]
    lines.append(
        {
            "custom_id": "plain",
            "method": "POST",
            "url": CHAT,
            "body": {"model": GPT, "messages": [{"role": "user", "content": "Hi"}]},
        }
    )
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.create(file=("judge.jsonl", data), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    done = wait_openai(client, batch.id)
    assert done.status == "completed" and done.output_file_id
    output = {
        line["custom_id"]: line["response"]
        for line in map(json.loads, client.files.content(done.output_file_id).text.splitlines())
    }
    for cid, request in requests.items():
        assert output[cid]["status_code"] == 200
        choice = output[cid]["body"]["choices"][0]
        assert choice["finish_reason"] == "stop"
        valid(request, choice["message"]["content"])
        # The same request online gets the same answer.
        assert ask_openai(client, request).choices[0].message.content == choice["message"]["content"]
    assert output["plain"]["body"]["choices"][0]["message"]["content"].startswith(answer_marker(GPT, "Hi"))


def test_anthropic_batch_messages_get_a_tool_call(sim: RunningSimulator, http: httpx.Client) -> None:
    requests = {f"m{i}": judge(TEMPLATES[i % len(TEMPLATES)], prompt=f"Batch prompt {i}") for i in range(4)}
    body = {"requests": [{"custom_id": cid, "params": anthropic_body(r)} for cid, r in requests.items()]}
    created = http.post("/v1/messages/batches", json=body)
    assert created.status_code == 200, created.text
    ended = wait_anthropic(http, created.json()["id"])
    lines = [json.loads(line) for line in http.get(ended["results_url"]).text.splitlines() if line.strip()]
    results = {line["custom_id"]: line["result"] for line in lines}
    for cid, request in requests.items():
        assert results[cid]["type"] == "succeeded"
        block = tool_block(results[cid]["message"], request)
        valid(request, block["input"])
        online = tool_block(ask_anthropic(http, anthropic_body(request)), request)
        assert online["input"] == block["input"]
    # Invalid answers in batches too.
    sim.configure(structured_invalid_probability=1.0)
    created = http.post("/v1/messages/batches", json=body)
    ended = wait_anthropic(http, created.json()["id"])
    lines = [json.loads(line) for line in http.get(ended["results_url"]).text.splitlines() if line.strip()]
    for line in lines:
        request = requests[line["custom_id"]]
        assert line["result"]["type"] == "succeeded"
        problem(request, tool_block(line["result"]["message"], request)["input"])


client = sim_clients.client  # fixtures (by assignment: an import would be flagged as shadowed by the tests' arguments)
http = sim_clients.http
