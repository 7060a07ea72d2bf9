"""The simulator's batch APIs over real loopback HTTP: OpenAI's Batch and Files APIs through the real
``openai`` SDK, Anthropic's Message Batches API through ``httpx``."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
import openai
import pytest
import sim_clients
from openai.types import Batch, FileObject
from sim_clients import ANTHROPIC_HEADERS

from simulator import FaultRule, RunningSimulator, ScriptedAnswer, answer_marker

MODEL = "gpt-4o-mini"
CLAUDE = "claude-3-5-haiku"
CHAT = "/v1/chat/completions"
OPENAI_DONE = {"completed", "failed", "expired", "cancelled"}


# --------------------------------------------------------------------------- helpers


def chat_line(custom_id: str, prompt: str, model: str = MODEL) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def parse_jsonl(data: bytes | str) -> list[dict[str, Any]]:
    text = data.decode() if isinstance(data, bytes) else data
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def upload(client: openai.OpenAI, lines: list[dict[str, Any]], filename: str = "in.jsonl") -> FileObject:
    return client.files.create(file=(filename, jsonl(lines)), purpose="batch")


def start(client: openai.OpenAI, lines: list[dict[str, Any]], **extra: Any) -> Batch:
    uploaded = upload(client, lines)
    return client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h", **extra)


def wait_openai(client: openai.OpenAI, batch_id: str, timeout_s: float = 5.0) -> Batch:
    deadline = time.monotonic() + timeout_s
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in OPENAI_DONE or time.monotonic() > deadline:
            return batch
        time.sleep(0.02)


def file_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return parse_jsonl(client.files.content(file_id).content)


def message_request(custom_id: str, prompt: str, **params: Any) -> dict[str, Any]:
    body = {"model": CLAUDE, "max_tokens": 1024, "messages": [{"role": "user", "content": prompt}], **params}
    return {"custom_id": custom_id, "params": body}


def create_messages(http: httpx.Client, requests: list[dict[str, Any]]) -> dict[str, Any]:
    response = http.post("/v1/messages/batches", json={"requests": requests})
    assert response.status_code == 200, response.text
    return cast(dict[str, Any], response.json())


def wait_anthropic(http: httpx.Client, batch_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        batch = http.get(f"/v1/messages/batches/{batch_id}").json()
        if batch["processing_status"] == "ended" or time.monotonic() > deadline:
            return cast(dict[str, Any], batch)
        time.sleep(0.02)


def results(http: httpx.Client, batch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    response = http.get(batch["results_url"])
    assert response.status_code == 200, response.text
    return {line["custom_id"]: line["result"] for line in parse_jsonl(response.content)}


def rfc3339(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- OpenAI


def test_openai_batch_runs_to_completion_through_the_sdk(sim: RunningSimulator, client: openai.OpenAI) -> None:
    prompts = {f"r{i}": f"Question {i}: why is the sky blue?" for i in range(3)}
    uploaded = upload(client, [chat_line(cid, prompt) for cid, prompt in prompts.items()])
    assert uploaded.id.startswith("file-") and uploaded.object == "file" and uploaded.purpose == "batch"
    assert uploaded.filename == "in.jsonl" and uploaded.bytes > 0 and uploaded.status == "processed"
    assert client.files.retrieve(uploaded.id).id == uploaded.id

    created = client.batches.create(
        input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h", metadata={"run": "r1"}
    )
    assert created.id.startswith("batch_") and created.object == "batch" and created.status == "validating"
    assert created.endpoint == CHAT and created.input_file_id == uploaded.id and created.completion_window == "24h"
    assert created.expires_at == created.created_at + 24 * 3600
    assert created.metadata == {"run": "r1"}

    batch = wait_openai(client, created.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (3, 3, 0)
    assert batch.in_progress_at is not None and batch.completed_at is not None and batch.error_file_id is None
    assert batch.model == MODEL and batch.errors is None

    lines = file_lines(client, batch.output_file_id)
    assert {line["custom_id"] for line in lines} == set(prompts)
    for line in lines:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200 and response["request_id"].startswith("req_")
        completion = response["body"]
        assert completion["object"] == "chat.completion" and completion["model"] == MODEL
        content = completion["choices"][0]["message"]["content"]
        assert content.startswith(answer_marker(MODEL, prompts[line["custom_id"]]))
    output = client.files.retrieve(batch.output_file_id or "")
    assert output.purpose == "batch_output" and output.bytes == len(client.files.content(output.id).content)

    stats = sim.stats()
    assert stats["requests_total"] == 0 and stats["by_model"] == {}  # not counted as online requests
    batches = stats["batches"]
    assert batches["openai_files_uploaded"] == 1 and batches["openai_batches_created"] == 1
    assert batches["requests_submitted"] == 3 and batches["requests_succeeded"] == 3
    assert batches["http_requests"]["openai_files"] >= 4 and batches["http_requests"]["openai_batches"] >= 2


def test_openai_progress_follows_batch_completion_s(sim: RunningSimulator, client: openai.OpenAI) -> None:
    sim.configure(batch_completion_s=0.6)
    began = time.monotonic()
    created = start(client, [chat_line(f"r{i}", f"prompt {i}") for i in range(4)])
    first = client.batches.retrieve(created.id)
    assert first.status == "in_progress" and first.request_counts is not None
    assert first.request_counts.completed < 4 and first.output_file_id is None
    seen = [first.request_counts.completed]
    while (batch := client.batches.retrieve(created.id)).status == "in_progress":
        assert batch.request_counts is not None
        seen.append(batch.request_counts.completed)
        time.sleep(0.02)
    assert batch.status == "completed" and time.monotonic() - began >= 0.55
    assert seen == sorted(seen)  # progress only moves forward


def test_openai_request_errors_land_in_the_error_file(sim: RunningSimulator, client: openai.OpenAI) -> None:
    sim.configure(
        faults=[FaultRule(kind="400", prompt_contains="reject-me"), FaultRule(kind="500", prompt_contains="crash-me")]
    )
    no_messages = {"custom_id": "no-messages", "method": "POST", "url": CHAT, "body": {"model": MODEL}}
    lines = [chat_line("good", "fine"), chat_line("bad", "reject-me"), chat_line("boom", "crash-me"), no_messages]
    batch = wait_openai(client, start(client, lines).id)

    assert batch.status == "completed" and batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 3)
    assert [line["custom_id"] for line in file_lines(client, batch.output_file_id)] == ["good"]
    errors = {line["custom_id"]: line for line in file_lines(client, batch.error_file_id)}
    assert set(errors) == {"bad", "boom", "no-messages"}
    expected = {"bad": (400, "invalid_request_error"), "boom": (500, "server_error"), "no-messages": (400, None)}
    for custom_id, (status, error_type) in expected.items():
        line = errors[custom_id]
        assert line["error"] is None and line["response"]["status_code"] == status
        error = line["response"]["body"]["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error_type is None or error["type"] == error_type
    assert "messages" in errors["no-messages"]["response"]["body"]["error"]["message"]
    stats = sim.stats()
    assert stats["errors_total"] == 0 and stats["faults_injected"] == {}  # online counters untouched
    assert stats["batches"]["requests_errored"] == 3


def test_openai_scripted_answers_apply_to_batch_requests(sim: RunningSimulator, client: openai.OpenAI) -> None:
    sim.configure(scripted=[ScriptedAnswer(text="A fixed answer.", prompt_contains="script-me")])
    batch = wait_openai(client, start(client, [chat_line("s", "please script-me")]).id)
    (line,) = file_lines(client, batch.output_file_id)
    assert line["response"]["body"]["choices"][0]["message"]["content"] == "A fixed answer."


def test_openai_requests_that_never_run_expire(sim: RunningSimulator, client: openai.OpenAI) -> None:
    sim.configure(batch_expire_prompt_contains="slow-lane")
    lines = [chat_line("a", "quick"), chat_line("b", "the slow-lane one"), chat_line("c", "also quick")]
    batch = wait_openai(client, start(client, lines).id)

    assert batch.status == "expired" and batch.expired_at is not None and batch.completed_at is None
    assert batch.request_counts is not None and batch.request_counts.completed == 2
    assert sorted(line["custom_id"] for line in file_lines(client, batch.output_file_id)) == ["a", "c"]
    (expired,) = file_lines(client, batch.error_file_id)
    assert expired["custom_id"] == "b" and expired["response"] is None
    assert expired["error"] == {
        "code": "batch_expired",
        "message": "This request could not be executed before the completion window expired.",
    }
    assert sim.stats()["batches"]["expired"] == 1 and sim.stats()["batches"]["requests_expired"] == 1


def test_openai_cancel_mid_way_keeps_what_was_done(sim: RunningSimulator, client: openai.OpenAI) -> None:
    sim.configure(batch_completion_s=2.0)
    created = start(client, [chat_line(f"r{i}", f"prompt {i}") for i in range(6)])
    time.sleep(0.5)
    cancelling = client.batches.cancel(created.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None

    batch = client.batches.retrieve(created.id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    assert batch.request_counts is not None
    done = batch.request_counts.completed
    assert 0 < done < 6
    assert len(file_lines(client, batch.output_file_id)) == done
    cancelled = file_lines(client, batch.error_file_id)
    assert len(cancelled) == 6 - done
    assert all(line["response"] is None and line["error"]["code"] == "batch_cancelled" for line in cancelled)
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(created.id)
    assert sim.stats()["batches"]["cancelled"] == 1


def test_openai_list_is_newest_first_with_pagination_and_metadata(client: openai.OpenAI) -> None:
    uploaded = upload(client, [chat_line("only", "hello")])
    ids = [
        client.batches.create(
            input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h", metadata={"run": f"run-{i}"}
        ).id
        for i in range(3)
    ]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == [ids[2], ids[1]] and page.has_more is True
    following = page.get_next_page()
    assert [b.id for b in following.data] == [ids[0]] and following.has_more is False
    every = list(client.batches.list(limit=2))  # the SDK's auto-pagination follows ``after``
    assert [b.id for b in every] == ids[::-1]
    assert [b.metadata for b in every] == [{"run": f"run-{i}"} for i in (2, 1, 0)]
    raw = client.get("/batches", cast_to=httpx.Response, options={"params": {"limit": 1}}).json()
    assert raw["object"] == "list" and raw["first_id"] == raw["last_id"] == ids[2] and raw["has_more"] is True


@pytest.mark.parametrize(
    ("lines", "code", "line_number"),
    [
        pytest.param([chat_line("x", "a"), chat_line("x", "b")], "duplicate_custom_id", 2, id="duplicate-custom-id"),
        pytest.param([chat_line("x", "a"), "{not json"], "invalid_json_line", 2, id="invalid-json"),
        pytest.param([{**chat_line("x", "a"), "url": "/v1/embeddings"}], "url_mismatch", 1, id="url-mismatch"),
        pytest.param(
            [{k: v for k, v in chat_line("x", "a").items() if k != "method"}],
            "missing_required_parameter",
            1,
            id="missing-method",
        ),
        pytest.param([chat_line("x", "a"), chat_line("y", "b", model="gpt-4o")], "model_mismatch", 2, id="two-models"),
        pytest.param([], "empty_file", None, id="empty"),
    ],
)
def test_openai_bad_input_file_fails_the_batch(
    sim: RunningSimulator, client: openai.OpenAI, lines: list[Any], code: str, line_number: int | None
) -> None:
    data = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()
    uploaded = client.files.create(file=("in.jsonl", data), purpose="batch")
    created = client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    assert created.status == "validating"  # like the real API, the file is validated after create answers

    batch = client.batches.retrieve(created.id)
    assert batch.status == "failed" and batch.failed_at is not None and batch.in_progress_at is None
    assert batch.errors is not None and batch.errors.data
    assert (batch.errors.data[0].code, batch.errors.data[0].line) == (code, line_number)
    assert batch.output_file_id is None and batch.error_file_id is None
    assert batch.request_counts is not None and batch.request_counts.total == 0
    stats = sim.stats()["batches"]
    assert stats["openai_batches_failed"] == 1 and stats["requests_submitted"] == 0


def test_openai_batch_max_requests_fails_a_larger_file(sim: RunningSimulator, client: openai.OpenAI) -> None:
    sim.configure(batch_max_requests=2)
    batch = client.batches.retrieve(start(client, [chat_line(f"r{i}", "p") for i in range(3)]).id)
    assert batch.status == "failed" and batch.errors is not None and batch.errors.data
    assert batch.errors.data[-1].code == "too_many_tasks"
    ok = wait_openai(client, start(client, [chat_line(f"r{i}", "p") for i in range(2)]).id)
    assert ok.status == "completed"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        pytest.param({"input_file_id": "file-nope"}, "input_file_id", id="unknown-file"),
        pytest.param({"completion_window": "48h"}, "completion_window", id="window"),
        pytest.param({"endpoint": "/v1/embeddings"}, "endpoint", id="endpoint-not-simulated"),
        pytest.param({"endpoint": "/v1/nope"}, "endpoint", id="endpoint-unknown"),
        pytest.param({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", id="metadata-17-pairs"),
        pytest.param({"metadata": {"k": 1}}, "metadata", id="metadata-not-string"),
    ],
)
def test_openai_create_refuses_bad_parameters_with_400(
    sim: RunningSimulator, client: openai.OpenAI, change: dict[str, Any], param: str
) -> None:
    uploaded = upload(client, [chat_line("x", "a")])
    params: dict[str, Any] = {"input_file_id": uploaded.id, "endpoint": CHAT, "completion_window": "24h", **change}
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(**params)
    assert refused.value.status_code == 400 and refused.value.param == param
    assert refused.value.type == "invalid_request_error"
    assert sim.stats()["batches"]["openai_batches_created"] == 0


def test_openai_batch_needs_a_batch_purpose_file(client: openai.OpenAI) -> None:
    other = client.files.create(file=("notes.txt", b"hello"), purpose="user_data")
    assert other.purpose == "user_data"
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(input_file_id=other.id, endpoint=CHAT, completion_window="24h")
    assert refused.value.param == "input_file_id"


def test_openai_upload_checks_batch_files(sim: RunningSimulator, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="Must be .jsonl"):
        client.files.create(file=("in.txt", jsonl([chat_line("x", "a")])), purpose="batch")
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("in.jsonl", b"{}"), purpose=cast(Any, "nonsense"))
    assert refused.value.param == "purpose"
    sim.configure(batch_max_bytes=100)
    with pytest.raises(openai.BadRequestError) as too_big:
        upload(client, [chat_line(f"r{i}", "a long enough prompt") for i in range(3)])
    assert too_big.value.param == "file"
    assert sim.stats()["batches"]["openai_files_uploaded"] == 0


def test_openai_files_are_listed_retrieved_and_deleted(client: openai.OpenAI) -> None:
    first = upload(client, [chat_line("a", "a")], filename="one.jsonl")
    second = upload(client, [chat_line("b", "b")], filename="two.jsonl")
    assert [f.id for f in client.files.list()] == [second.id, first.id]
    assert [f.id for f in client.files.list(purpose="batch_output")] == []
    assert client.files.content(first.id).content == jsonl([chat_line("a", "a")])
    deleted = client.files.delete(first.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (first.id, True, "file")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(first.id)
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_unknown")


def test_openai_batch_endpoints_need_a_key_when_required(sim: RunningSimulator, client: openai.OpenAI) -> None:
    sim.configure(require_api_key=True)
    with httpx.Client(base_url=sim.openai_base_url, trust_env=False, timeout=10) as bare:
        for response in (
            bare.post("/files", files={"file": ("in.jsonl", b"{}")}, data={"purpose": "batch"}),
            bare.get("/batches"),
            bare.post("/batches", json={"input_file_id": "x", "endpoint": CHAT, "completion_window": "24h"}),
            bare.get("/files/file-x/content"),
        ):
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "invalid_request_error"
    assert upload(client, [chat_line("a", "a")]).purpose == "batch"  # with a key: fine


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_batch_runs_to_completion(sim: RunningSimulator, http: httpx.Client) -> None:
    prompts = {f"req-{i}": f"Explain thing {i}." for i in range(3)}
    created = create_messages(http, [message_request(cid, prompt) for cid, prompt in prompts.items()])
    assert created["id"].startswith("msgbatch_") and created["type"] == "message_batch"
    assert created["processing_status"] == "in_progress" and created["results_url"] is None
    assert created["request_counts"] == {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    assert created["ended_at"] is None and created["archived_at"] is None and created["cancel_initiated_at"] is None
    assert rfc3339(created["expires_at"]) - rfc3339(created["created_at"]) == timedelta(hours=24)

    batch = wait_anthropic(http, created["id"])
    assert batch["processing_status"] == "ended" and batch["ended_at"] is not None
    assert batch["request_counts"]["succeeded"] == 3 and batch["request_counts"]["processing"] == 0
    assert batch["results_url"] == f"{sim.url}/v1/messages/batches/{created['id']}/results"
    response = http.get(batch["results_url"])
    assert response.headers["content-type"].startswith("application/binary")
    lines = parse_jsonl(response.content)
    assert {line["custom_id"] for line in lines} == set(prompts)
    for line in lines:
        assert line["result"]["type"] == "succeeded"
        message = line["result"]["message"]
        assert message["type"] == "message" and message["role"] == "assistant" and message["model"] == CLAUDE
        assert message["content"][0]["text"].startswith(answer_marker(CLAUDE, prompts[line["custom_id"]]))
        assert message["stop_reason"] in ("end_turn", "max_tokens") and message["usage"]["output_tokens"] > 0
    stats = sim.stats()
    assert stats["requests_total"] == 0
    assert stats["batches"]["anthropic_batches_created"] == 1 and stats["batches"]["requests_submitted"] == 3


def test_anthropic_errored_results_from_faults_and_bad_params(sim: RunningSimulator, http: httpx.Client) -> None:
    sim.configure(faults=[FaultRule(kind="529", api="anthropic", prompt_contains="overload-me")])
    no_max_tokens = {"custom_id": "no-max", "params": {"model": CLAUDE, "messages": [{"role": "user", "content": "x"}]}}
    created = create_messages(
        http, [message_request("ok", "fine"), message_request("busy", "overload-me"), no_max_tokens]
    )
    batch = wait_anthropic(http, created["id"])
    assert batch["request_counts"]["succeeded"] == 1 and batch["request_counts"]["errored"] == 2
    by_id = results(http, batch)
    assert by_id["ok"]["type"] == "succeeded"
    busy = by_id["busy"]
    assert busy["type"] == "errored" and busy["error"]["type"] == "error"
    assert busy["error"]["error"]["type"] == "overloaded_error"
    bad = by_id["no-max"]["error"]["error"]
    assert bad["type"] == "invalid_request_error" and "max_tokens" in bad["message"]


def test_anthropic_requests_that_never_run_expire(sim: RunningSimulator, http: httpx.Client) -> None:
    sim.configure(batch_expire_prompt_contains="slow-lane")
    created = create_messages(http, [message_request("a", "quick"), message_request("b", "slow-lane please")])
    batch = wait_anthropic(http, created["id"])
    assert batch["request_counts"] == {"processing": 0, "succeeded": 1, "errored": 0, "canceled": 0, "expired": 1}
    assert results(http, batch)["b"] == {"type": "expired"}


def test_anthropic_cancel_mid_way(sim: RunningSimulator, http: httpx.Client) -> None:
    sim.configure(batch_completion_s=2.0)
    created = create_messages(http, [message_request(f"r{i}", f"prompt {i}") for i in range(6)])
    time.sleep(0.5)
    canceling = http.post(f"/v1/messages/batches/{created['id']}/cancel")
    assert canceling.status_code == 200
    assert canceling.json()["processing_status"] == "canceling" and canceling.json()["cancel_initiated_at"]

    batch = http.get(f"/v1/messages/batches/{created['id']}").json()
    assert batch["processing_status"] == "ended"
    counts = batch["request_counts"]
    assert 0 < counts["succeeded"] < 6 and counts["canceled"] == 6 - counts["succeeded"]
    kinds = [result["type"] for result in results(http, batch).values()]
    assert kinds.count("canceled") == counts["canceled"] and {"type": "canceled"} in results(http, batch).values()
    assert http.post(f"/v1/messages/batches/{created['id']}/cancel").status_code == 400
    assert sim.stats()["batches"]["cancelled"] == 1


def test_anthropic_list_is_newest_first_with_pagination(http: httpx.Client) -> None:
    ids = [create_messages(http, [message_request("x", f"p{i}")])["id"] for i in range(3)]
    page = http.get("/v1/messages/batches", params={"limit": 2}).json()
    assert [b["id"] for b in page["data"]] == [ids[2], ids[1]]
    assert (page["has_more"], page["first_id"], page["last_id"]) == (True, ids[2], ids[1])
    after = http.get("/v1/messages/batches", params={"limit": 2, "after_id": page["last_id"]}).json()
    assert [b["id"] for b in after["data"]] == [ids[0]] and after["has_more"] is False
    before = http.get("/v1/messages/batches", params={"limit": 1, "before_id": ids[0]}).json()
    assert [b["id"] for b in before["data"]] == [ids[1]] and before["has_more"] is True
    assert http.get("/v1/messages/batches", params={"limit": 0}).status_code == 400


@pytest.mark.parametrize(
    "requests",
    [
        pytest.param([message_request("has space", "a")], id="custom-id-space"),
        pytest.param([message_request("x" * 65, "a")], id="custom-id-too-long"),
        pytest.param([message_request("", "a")], id="custom-id-empty"),
        pytest.param([message_request("same", "a"), message_request("same", "b")], id="duplicate-custom-id"),
        pytest.param([{"custom_id": "no-params"}], id="no-params"),
        pytest.param([], id="no-requests"),
    ],
)
def test_anthropic_create_refuses_malformed_requests(
    sim: RunningSimulator, http: httpx.Client, requests: list[dict[str, Any]]
) -> None:
    response = http.post("/v1/messages/batches", json={"requests": requests})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error" and body["error"]["message"]
    assert sim.stats()["batches"]["anthropic_batches_created"] == 0
    assert http.get("/v1/messages/batches").json()["data"] == []


def test_anthropic_size_limits(sim: RunningSimulator, http: httpx.Client) -> None:
    sim.configure(batch_max_requests=2)
    three = [message_request(f"r{i}", "a") for i in range(3)]
    refused = http.post("/v1/messages/batches", json={"requests": three})
    assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_request_error"
    sim.configure(batch_max_requests=None, batch_max_bytes=200)
    too_big = http.post("/v1/messages/batches", json={"requests": three})
    assert too_big.status_code == 413 and too_big.json()["error"]["type"] == "request_too_large"
    assert sim.stats()["batches"]["anthropic_batches_created"] == 0


def test_anthropic_headers_are_required(sim: RunningSimulator) -> None:
    body = {"requests": [message_request("a", "a")]}
    with httpx.Client(base_url=sim.url, trust_env=False, timeout=10) as bare:
        missing_version = bare.post("/v1/messages/batches", json=body, headers={"x-api-key": "k"})
        assert missing_version.status_code == 400
        assert "anthropic-version" in missing_version.json()["error"]["message"]
        sim.configure(require_api_key=True)
        for response in (
            bare.post("/v1/messages/batches", json=body, headers={"anthropic-version": "2023-06-01"}),
            bare.get("/v1/messages/batches", headers={"anthropic-version": "2023-06-01"}),
        ):
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "authentication_error"
        assert bare.post("/v1/messages/batches", json=body, headers=ANTHROPIC_HEADERS).status_code == 200


def test_anthropic_results_only_after_the_end_and_delete(sim: RunningSimulator, http: httpx.Client) -> None:
    sim.configure(batch_completion_s=2.0)
    batch_id = create_messages(http, [message_request("a", "a")])["id"]
    assert http.get(f"/v1/messages/batches/{batch_id}/results").status_code == 400
    assert http.delete(f"/v1/messages/batches/{batch_id}").status_code == 400  # cancel first
    missing = http.get("/v1/messages/batches/msgbatch_unknown")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    http.post(f"/v1/messages/batches/{batch_id}/cancel")
    deleted = http.delete(f"/v1/messages/batches/{batch_id}")
    assert deleted.json() == {"id": batch_id, "type": "message_batch_deleted"}
    assert http.get(f"/v1/messages/batches/{batch_id}").status_code == 404


# --------------------------------------------------------------------------- both


def test_custom_ids_submitted_more_than_once_counts_pairs_across_batches(
    sim: RunningSimulator, client: openai.OpenAI, http: httpx.Client
) -> None:
    create_messages(http, [message_request("a", "1"), message_request("b", "2")])
    create_messages(http, [message_request("b", "2"), message_request("c", "3")])
    assert sim.stats()["batches"]["custom_ids_submitted_more_than_once"] == 1  # (anthropic, b)
    start(client, [chat_line("a", "1"), chat_line("b", "2")])
    assert sim.stats()["batches"]["custom_ids_submitted_more_than_once"] == 1  # another API: other pairs
    start(client, [chat_line("a", "1"), chat_line("a", "1")])  # fails validation: nothing submitted
    assert sim.stats()["batches"]["custom_ids_submitted_more_than_once"] == 1
    start(client, [chat_line("a", "1")])
    stats = sim.stats()["batches"]
    assert stats["custom_ids_submitted_more_than_once"] == 2 and stats["requests_submitted"] == 7


def test_batch_requests_bypass_online_rate_limits(sim: RunningSimulator, client: openai.OpenAI) -> None:
    sim.configure(rate_limit_enforce=True, rate_limit_requests=1)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "online"}])
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "online again"}])
    batch = wait_openai(client, start(client, [chat_line(f"r{i}", f"p{i}") for i in range(3)]).id)
    assert batch.status == "completed" and batch.request_counts is not None and batch.request_counts.completed == 3
    assert sim.stats()["requests_total"] == 2


def test_harness_summarises_batches_and_reset_clears_them(
    sim: RunningSimulator, client: openai.OpenAI, http: httpx.Client
) -> None:
    openai_batch = wait_openai(client, start(client, [chat_line("a", "1")], metadata={"k": "v"}).id)
    anthropic_batch = create_messages(http, [message_request("b", "2")])
    summary = sim.batches()
    assert [(s["api"], s["id"]) for s in summary] == [("openai", openai_batch.id), ("anthropic", anthropic_batch["id"])]
    assert summary[0]["status"] == "completed" and summary[0]["metadata"] == {"k": "v"}
    assert summary[1]["status"] == "ended" and summary[1]["custom_ids"] == ["b"] and summary[1]["total"] == 1
    assert summary[1]["request_counts"]["succeeded"] == 1
    assert httpx.get(f"{sim.url}/_sim/batches", trust_env=False).json() == sim.batches()
    sim.reset()
    assert sim.batches() == [] and list(client.files.list()) == []
    assert sim.stats()["batches"]["requests_submitted"] == 0


client = sim_clients.client  # fixtures (by assignment: an import would be flagged as shadowed by the tests' arguments)
http = sim_clients.http
