"""What makes two requests the same (issue 26): what a provider answers with, never where it is reached.

The request fingerprint (the response store's key) is the provider's kind, model and parameters, its
``endpoint_id`` when set, the system prompt, the messages and the sample index. Moving a provider to
another host, port or behind a gateway reuses every stored answer; stores written while the base URL was
part of the identity (the *legacy* fingerprints) keep working, online and in batch mode.
"""

from __future__ import annotations

import asyncio
import http.client
import http.server
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import provider_entry, write_config, write_prompts
from pg_server import PASSWORD_ENV
from typer.testing import CliRunner

from common.errors import InputError
from flows.cli.app import app
from flows.config import load_config
from flows.generation.generate import generate_tasks
from prompts.reader import PromptRecord, iter_prompts
from providers.base import system_text
from providers.config import ProviderConfig
from providers.fingerprint import (
    legacy_provider_identity,
    provider_identity,
    request_fingerprint,
    same_requests,
)
from providers.result import CallResult
from providers.slots import SlotFingerprints, answer_slots, read_results, stored_results
from providers.store_factory import open_store
from simulator import RunningSimulator


def old_identity(config: ProviderConfig) -> str:
    """``provider_identity`` as it was before issue 26, verbatim: the base URL was part of it."""
    return json.dumps(
        {
            "kind": config.kind,
            "base_url": config.effective_base_url,
            "model": config.model,
            "params": config.wire_params(),
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def run(config: Path, **kwargs: Any) -> dict[str, Any]:
    """The run's summary, also of a run that left calls unanswered (which raises, carrying it)."""
    try:
        return asyncio.run(generate_tasks(str(config), **kwargs))
    except Exception as exc:
        summary: dict[str, Any] | None = getattr(exc, "summary", None)
        if summary is None:
            raise
        return summary


def called(summary: dict[str, Any], section: str = "providers") -> dict[str, int]:
    return {sid: tally["called_this_run"] for sid, tally in summary[section].items()}


def answer_texts(summary: dict[str, Any]) -> dict[tuple[str, str], str]:
    texts = {}
    with open(summary["files"]["tasks"], encoding="utf-8") as handle:
        for task in map(json.loads, handle):
            for message in task["threads"][0]["turns"][-1]["messages"]:
                if message["role"] == "assistant":
                    texts[(task["metadata"]["prompt_id"], message["source_id"])] = message["content"]["text"]
    return texts


def cli_json(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def assert_all_answered(config: Path, prompts: int) -> None:
    """``rlhf status`` counts every answer as answered and ``rlhf plan`` plans no call."""
    status = cli_json("status", str(config))
    assert {sid: (p["answered"], p["missing"]) for sid, p in status["providers"].items()} == {
        sid: (prompts, 0) for sid in status["providers"]
    }
    plan = cli_json("plan", str(config))
    assert {sid: p["calls"] for sid, p in plan["providers"].items()} == dict.fromkeys(plan["providers"], 0)


def stored_keys(config: Path) -> set[str]:
    db = sqlite3.connect(Path(load_config(config, require_keys=False).store_location))
    try:
        return {row[0] for row in db.execute("SELECT fingerprint FROM responses")}
    finally:
        db.close()


class Gateway:
    """A pass-through gateway (as LiteLLM or Portkey are put in front of providers): ``/openai/...`` and
    ``/anthropic/...`` forwarded to the simulator; counts what it forwards."""

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        host, port = str(target.hostname), target.port
        self.forwarded = 0
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                self._forward()

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self._forward()

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                path = "/" + self.path.lstrip("/").split("/", 1)[1]  # the route prefix taken off
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream = http.client.HTTPConnection(host, port, timeout=30)
                try:
                    upstream.request(self.command, path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    gateway.forwarded += 1
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                            self.send_header(key, value)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    upstream.close()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def gateway(sim: RunningSimulator) -> Iterator[Gateway]:
    proxy = Gateway(sim.url)
    yield proxy
    proxy.close()


# ------------------------------------------------------------------------------------------- the identity


def test_the_identity_is_what_answers_and_never_where_it_is_reached() -> None:
    base = ProviderConfig(source_id="a", kind="openai", model="llama-3", params={"temperature": 0.5})
    same = [
        base.model_copy(update={"base_url": url})
        for url in ("http://127.0.0.1:8001/v1", "http://localhost:8001/v1", "https://gateway.internal/openai/v1")
    ]
    assert {provider_identity(p) for p in [base, *same]} == {provider_identity(base)}
    assert provider_identity(base.model_copy(update={"api_key_env": "OTHER", "http_client": "aiohttp"})) == (
        provider_identity(base)
    )
    for changed in ({"model": "llama-3.1"}, {"kind": "anthropic"}, {"params": {"temperature": 0.6}}):
        assert provider_identity(base.model_copy(update=changed)) != provider_identity(base)
    fine_tune = [base.model_copy(update={"endpoint_id": e}) for e in ("ft-medical-v1", "ft-legal-v1")]
    assert len({provider_identity(p) for p in [base, *fine_tune]}) == 3

    # The legacy identity is the old formula exactly; none for a provider with an endpoint_id.
    for provider in same:
        assert legacy_provider_identity(provider) == old_identity(provider)
    assert legacy_provider_identity(fine_tune[0]) is None


def test_slot_fingerprints_are_request_fingerprint_of_each_slot_and_legacy_ones_the_old_formula() -> None:
    providers = [
        ProviderConfig(
            source_id="a", kind="openai", model="m✓", base_url="http://h:1/v1", system_prompt='Be "terse" ✓'
        ),
        ProviderConfig(source_id="b", kind="anthropic", model="c", params={"max_tokens": 50}),
        ProviderConfig(source_id="c", kind="openai", model="m", endpoint_id="ft-1"),
    ]
    slots = answer_slots(providers, 2)
    fingerprints = SlotFingerprints(slots)
    messages = [{"role": "user", "content": 'héllo \u2028 "q" \\ </script> 😀'}]
    for system in (None, "You are ✓ helpful."):
        current, legacy = fingerprints.of(messages, system), fingerprints.legacy_of(messages, system)
        assert list(current) == [slot.answer_id for slot in slots]
        assert list(legacy) == [slot.answer_id for slot in slots if slot.provider.source_id != "c"]
        for slot in slots:
            sent_system = system_text(system, slot.provider.system_prompt)
            assert current[slot.answer_id] == request_fingerprint(
                provider_identity(slot.provider), messages, sent_system, slot.sample
            )
            if slot.answer_id in legacy:
                assert legacy[slot.answer_id] == request_fingerprint(
                    old_identity(slot.provider), messages, sent_system, slot.sample
                )
        assert fingerprints.legacy_of(messages, system, {"a#2"}) == {"a#2": legacy["a#2"]}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_store_read_with_legacy_keys_and_moved_to_the_current_ones(
    tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    providers = [
        ProviderConfig(source_id="a", kind="openai", model="a-model", base_url="http://old-host:1/v1"),
        ProviderConfig(source_id="b", kind="openai", model="b-model", endpoint_id="weights-1"),
    ]
    fingerprints = SlotFingerprints(answer_slots(providers, 1))
    prompts = [PromptRecord(id=f"p{i}", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(4)]
    current = [fingerprints.of(p.messages, p.system) for p in prompts]
    legacy = [fingerprints.legacy_of(p.messages, p.system) for p in prompts]
    answer, error = CallResult(ok=True, text="yes"), CallResult(ok=False, error_type="http_500", status_code=500)
    location = str(tmp_path / "s.sqlite") if database == "sqlite" else request.getfixturevalue("postgres_url")
    with open_store(location, password_env=PASSWORD_ENV) as store:
        store.put(legacy[0]["a"], "a", "p0", answer)  # only under its legacy key
        store.put(legacy[1]["a"], "a", "p1", answer)  # an answer under the legacy key beats an error under the new
        store.put(current[1]["a"], "a", "p1", error)
        store.put(current[2]["a"], "a", "p2", answer)  # the current key wins
        store.put(legacy[2]["a"], "a", "p2", CallResult(ok=True, text="older"))
        # endpoint_id set: an answer stored without it does not say which weights gave it
        old_b = request_fingerprint(old_identity(providers[1]), prompts[3].messages, None)
        store.put(old_b, "b", "p3", answer)

        (chunk,) = stored_results(store, fingerprints, prompts, 10)  # read-only use: nothing moves
        assert chunk.stored == {current[0]["a"]: answer, current[1]["a"]: answer, current[2]["a"]: answer}
        assert store.get_many([current[0]["a"]]) == {}

        (chunk,) = stored_results(store, fingerprints, prompts, 10, migrate=True)  # a run: moved
        assert chunk.stored == {current[0]["a"]: answer, current[1]["a"]: answer, current[2]["a"]: answer}
        assert store.get_many([current[0]["a"], current[1]["a"], legacy[0]["a"], legacy[1]["a"]]) == {
            current[0]["a"]: answer,
            current[1]["a"]: answer,
        }
        looked_up: list[list[str]] = []

        def no_legacy(unsure: list[str]) -> dict[str, str]:
            looked_up.append(unsure)
            return {}

        every = [fp for by_slot in current[:3] for fp in by_slot.values()]
        assert len(read_results(store, every, no_legacy)) == 3
        assert looked_up == [[current[0]["b"], current[1]["b"], current[2]["b"]]]  # only what is not answered


def test_providers_differing_only_in_their_url_are_refused_unless_their_endpoint_ids_differ(tmp_path: Path) -> None:
    a = ProviderConfig(source_id="a", kind="openai", model="llama-3", base_url="http://vllm-1:8000/v1")
    b = a.model_copy(update={"source_id": "b", "base_url": "http://vllm-2:8000/v1"})
    c = a.model_copy(update={"source_id": "c", "model": "other"})
    assert same_requests([a, c, b]) == [(0, 2)]
    assert same_requests([a, a.model_copy(update={"source_id": "same-url"})]) == []  # one server, asked twice
    assert same_requests([a, b.model_copy(update={"system_prompt": "Be terse."})]) == []
    assert (
        same_requests([a.model_copy(update={"endpoint_id": "ft-1"}), b.model_copy(update={"endpoint_id": "ft-2"})])
        == []
    )

    prompts = write_prompts(tmp_path / "p.jsonl", 1)
    entries = [
        {"source_id": "ft-medical", "kind": "openai", "model": "llama-3", "base_url": "http://vllm-1:8000/v1"},
        {"source_id": "ft-legal", "kind": "openai", "model": "llama-3", "base_url": "http://vllm-2:8000/v1"},
    ]
    with pytest.raises(InputError) as refused:
        load_config(write_config(tmp_path, entries, prompts), require_keys=False)
    (problem,) = refused.value.problems
    assert problem.field == "providers[1].base_url" and "endpoint_id" in problem.message
    assert "'ft-legal' sends the same requests as 'ft-medical'" in problem.message
    entries[0]["endpoint_id"], entries[1]["endpoint_id"] = "medical-v1", "legal-v1"
    load_config(write_config(tmp_path, entries, prompts), require_keys=False)


# ----------------------------------------------------------------------------------------- runs for real


def _providers(sim: RunningSimulator, **extra: Any) -> list[dict[str, Any]]:
    return [
        provider_entry(sim, "gpt", "openai", "gpt-4o", **extra),
        provider_entry(sim, "claude", "anthropic", "claude-sonnet-4-5", **extra),
    ]


def _moved(providers: list[dict[str, Any]], move: Callable[[str], str]) -> list[dict[str, Any]]:
    return [dict(p, base_url=move(p["base_url"])) for p in providers]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_another_host_port_or_a_gateway_reuses_every_answer(
    sim: RunningSimulator, gateway: Gateway, tmp_path: Path
) -> None:
    prompts = write_prompts(tmp_path / "p.jsonl", 4)
    providers = _providers(sim)
    first = run(write_config(tmp_path, providers, prompts))
    assert sim.stats()["requests_total"] == 8

    with RunningSimulator(mode="derived") as other:  # the simulator restarted on another port
        moves: dict[str, Callable[[str], str]] = {
            "hostname": lambda url: url.replace("127.0.0.1", "localhost"),
            "port": lambda url: url.replace(sim.url, other.url),
            "gateway": lambda url: gateway.url + ("/openai/v1" if url.endswith("/v1") else "/anthropic"),
        }
        for how, move in moves.items():
            sim.reset()
            config = write_config(tmp_path, _moved(providers, move), prompts)
            assert_all_answered(config, 4)
            summary = run(config)
            assert called(summary) == {"gpt": 0, "claude": 0}, how
            assert sim.stats()["requests_total"] == other.stats()["requests_total"] == gateway.forwarded == 0, how
            assert answer_texts(summary) == answer_texts(first), how

    # Through the gateway, a new prompt is asked there (and only it).
    prompts = write_prompts(tmp_path / "p.jsonl", 5)
    summary = run(write_config(tmp_path, _moved(providers, moves["gateway"]), prompts))
    assert called(summary) == {"gpt": 1, "claude": 1} and gateway.forwarded == 2
    assert summary["tasks_written"] == 5


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_an_endpoint_id_tells_weights_apart_and_changing_it_asks_again(sim: RunningSimulator, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "p.jsonl", 3)
    run(write_config(tmp_path, _providers(sim), prompts))

    def calls_with(endpoint_id: str | None, move: Callable[[str], str] = lambda url: url) -> dict[str, int]:
        providers = _moved(_providers(sim), move)
        providers[0]["endpoint_id"] = endpoint_id
        return called(run(write_config(tmp_path, providers, prompts)))

    # Set for the first time: the stored answers say nothing of the weights, so they are asked again.
    assert calls_with("fine-tune-v1") == {"gpt": 3, "claude": 0}
    assert calls_with("fine-tune-v1", lambda url: url.replace("127.0.0.1", "localhost")) == {"gpt": 0, "claude": 0}
    assert calls_with("fine-tune-v2") == {"gpt": 3, "claude": 0}  # new weights behind the same name
    assert calls_with("fine-tune-v1") == {"gpt": 0, "claude": 0}  # the v1 answers are still stored
    assert calls_with(None) == {"gpt": 0, "claude": 0}  # back to the answers stored without one


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_a_store_written_with_legacy_fingerprints_keeps_every_answer_and_judgement(
    sim: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = write_prompts(tmp_path / "p.jsonl", 4)
    judges = [provider_entry(sim, "judge", "openai", "judge-gpt-4o", params={"temperature": 0.0})]
    config = write_config(tmp_path, _providers(sim), prompts, judges=judges)
    with monkeypatch.context() as old_code:  # the store as the code before issue 26 wrote it
        old_code.setattr("providers.slots.provider_identity", old_identity)
        old_code.setattr("flows.generation.judging.provider_identity", old_identity)
        first = run(config)
    assert called(first) == {"gpt": 4, "claude": 4} and called(first, "judges") == {"judge": 16}
    loaded = load_config(config, require_keys=False)
    fingerprints = SlotFingerprints(answer_slots(loaded.providers, 1))
    records = list(iter_prompts(loaded.prompts))
    legacy = {fp for r in records for fp in fingerprints.legacy_of(r.messages, r.system).values()}
    current = {fp for r in records for fp in fingerprints.of(r.messages, r.system).values()}
    assert legacy <= stored_keys(config) and not current & stored_keys(config)

    assert_all_answered(config, 4)  # read as they are (status and plan never write)
    assert not current & stored_keys(config)
    sim.reset()
    again = run(config)
    assert sim.stats()["requests_total"] == 0
    assert called(again) == {"gpt": 0, "claude": 0} and called(again, "judges") == {"judge": 0}
    assert answer_texts(again) == answer_texts(first)
    assert current <= stored_keys(config) and not legacy & stored_keys(config)  # moved to the current keys

    # Now under the current keys: another address reuses them too (answers and judgements).
    moved = _moved(_providers(sim), lambda url: url.replace("127.0.0.1", "localhost"))
    judges_moved = _moved(judges, lambda url: url.replace("127.0.0.1", "localhost"))
    summary = run(write_config(tmp_path, moved, prompts, judges=judges_moved))
    assert sim.stats()["requests_total"] == 0 and called(summary, "judges") == {"judge": 0}


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_a_batch_submitted_under_legacy_fingerprints_is_collected_not_submitted_again(
    sim: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.configure(batch_completion_s=1.0, batch_expire_prompt_contains="Question number 2:")
    prompts = write_prompts(tmp_path / "p.jsonl", 4)
    providers = [
        provider_entry(sim, "online", "openai", "gpt-4o"),
        provider_entry(sim, "batch-gpt", "openai", "gpt-4o-mini", mode="batch", batch_poll_s=0.1),
        provider_entry(sim, "batch-claude", "anthropic", "claude-haiku", mode="batch", batch_poll_s=0.1),
    ]
    config = write_config(tmp_path, providers, prompts)
    with monkeypatch.context() as old_code:  # submitted by the code before issue 26, then it was stopped
        old_code.setattr("providers.slots.provider_identity", old_identity)
        first = run(config, wait_for_batches=False)
    assert len(first["batches_pending"]) == 2 and sim.stats()["batches"]["requests_submitted"] == 8

    second = run(config)  # collected: nothing submitted again, the expired requests reported as such
    stats = sim.stats()["batches"]
    assert stats["requests_submitted"] == 8 and stats["custom_ids_submitted_more_than_once"] == 0
    assert second["batches_pending"] == [] and (second["tasks_written"], second["incomplete"]) == (3, 1)
    for source_id in ("batch-gpt", "batch-claude"):
        tally = second["providers"][source_id]
        assert (tally["answered"], tally["failure_reasons"]) == (3, {"batch_expired": 1})
    assert called(second)["online"] == 0

    # Collected under the current keys: another address reuses them; only the expired requests are sent.
    sim.configure(batch_expire_prompt_contains=None)
    summary = run(write_config(tmp_path, _moved(providers, lambda url: url.replace("127.0.0.1", "localhost")), prompts))
    assert called(summary) == {"online": 0, "batch-gpt": 1, "batch-claude": 1}
    assert sim.stats()["batches"]["requests_submitted"] == 10
    assert (summary["tasks_written"], summary["incomplete"]) == (4, 0)
