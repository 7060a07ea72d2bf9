"""No paid answer is lost to an error nobody foresaw: exceptions at a call's boundary, results the store
refuses, rescue lines that cannot be stored, credentials in a base URL, and a stop grace that fits.

The exceptions are injected into the real code paths (request building, the exchange, parsing, the
store) of a real flow run against the simulator, on both HTTP clients of both kinds.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import provider_entry, write_config

import providers.anthropic_provider as anthropic_provider
import providers.openai_provider as openai_provider
from flows.generation.generate import generate_tasks
from flows.reporting.report import RunIncomplete
from providers.http import JsonExchange
from providers.rescue import AnswerKeeper, recover_rescued
from providers.result import CallResult
from providers.store import ResponseStore
from simulator import RunningSimulator, ScriptedAnswer, SimulatorProcess, start_simulator_process

RLHF = str(Path(sys.executable).with_name("rlhf"))
PROVIDERS = {
    "oa-sdk": ("openai", "default"),
    "oa-aiohttp": ("openai", "aiohttp"),
    "an-httpx": ("anthropic", "default"),
    "an-aiohttp": ("anthropic", "aiohttp"),
}
STAGES = ("build", "exchange", "parse", "store")


def _marked(body_or_messages: Any, stage: str) -> bool:
    return f"BOOM-{stage}" in json.dumps(body_or_messages)


def _inject(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unforeseen exception at each stage of a call, for prompts marked ``BOOM-<stage>``."""
    for module, name in ((openai_provider, "chat_body"), (anthropic_provider, "messages_body")):
        original = getattr(module, name)

        def build(*args: Any, _original: Any = original) -> dict[str, Any]:
            if _marked(args[2], "build"):
                raise AttributeError("'NoneType' object has no attribute 'strip'")
            return _original(*args)  # type: ignore[no-any-return]

        monkeypatch.setattr(module, name, build)
    original_post = JsonExchange.post

    async def post(self: JsonExchange, body: dict[str, Any]) -> Any:
        if _marked(body, "exchange"):
            raise ValueError("URL should be absolute")  # what aiohttp raised for a base_url with user info
        return await original_post(self, body)

    monkeypatch.setattr(JsonExchange, "post", post)
    for module, name in ((openai_provider, "completion_answer"), (anthropic_provider, "message_answer")):
        original_parse = getattr(module, name)

        def parse(data: Any, *args: Any, _original: Any = original_parse) -> Any:
            answer = _original(data, *args)
            if "BOOM-parse" in json.dumps(data):  # the scripted answer to the marked prompt
                raise OverflowError("int too large to convert")
            return answer

        monkeypatch.setattr(module, name, parse)
    original_put = ResponseStore.put

    def put(self: ResponseStore, fingerprint: str, source_id: str, prompt_id: str, result: CallResult) -> None:
        if prompt_id == "boom-store" and result.ok:
            raise AttributeError("'list' object has no attribute 'get'")
        original_put(self, fingerprint, source_id, prompt_id, result)

    monkeypatch.setattr(ResponseStore, "put", put)


def _prompts(path: Path) -> Path:
    lines = [{"id": f"boom-{stage}", "prompt": f"BOOM-{stage}: tell me about rivers."} for stage in STAGES]
    lines += [{"id": f"fine-{i}", "prompt": f"Fine question {i}: tell me about lakes."} for i in range(3)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _providers(sim: RunningSimulator | SimulatorProcess) -> list[dict[str, Any]]:
    return [
        provider_entry(sim, source_id, kind, f"model-{source_id}", http_client=client)  # type: ignore[arg-type]
        for source_id, (kind, client) in PROVIDERS.items()
    ]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_an_exception_at_any_stage_is_a_stored_counted_failure_never_a_silent_not_made(
    sim: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tasks whose exceptions nobody collects would show up as "Task exception was never retrieved".
    never_retrieved: list[str] = []
    monkeypatch.setattr(
        asyncio.BaseEventLoop,
        "default_exception_handler",
        lambda self, context: never_retrieved.append(str(context.get("message"))),
    )
    sim.configure(scripted=[ScriptedAnswer(text="The BOOM-parse answer.", prompt_contains="BOOM-parse")])
    config = write_config(tmp_path, _providers(sim), _prompts(tmp_path / "p.jsonl"))
    with pytest.MonkeyPatch.context() as faults:
        _inject(faults)
        with pytest.raises(RunIncomplete) as incomplete:  # failed calls: the run ends Incomplete
            asyncio.run(generate_tasks(str(config)))
    summary = incomplete.value.summary
    assert summary is not None

    for source_id in PROVIDERS:
        tally = summary["providers"][source_id]
        assert (tally["answered"], tally["failed"], tally["interrupted"], tally["skipped"]) == (3, 4, 0, 0), tally
        assert tally["failure_reasons"] == {"internal": 4}
    db = sqlite3.connect(tmp_path / "out" / "b1" / "responses.sqlite")
    rows = db.execute("SELECT prompt_id, source_id, ok, error_type, error FROM responses").fetchall()
    db.close()
    failures = {(p, s): e for p, s, ok, t, e in rows if not ok and t == "internal"}
    assert len(failures) == 4 * len(PROVIDERS)
    assert all("AttributeError" in failures[("boom-build", s)] for s in PROVIDERS)
    assert all("ValueError: URL should be absolute" in failures[("boom-exchange", s)] for s in PROVIDERS)
    assert all("OverflowError" in failures[("boom-parse", s)] for s in PROVIDERS)
    assert all("not stored: AttributeError" in failures[("boom-store", s)] for s in PROVIDERS)
    # Not retried: the parse stage's answers were requested once each (the exchange stage sent nothing).
    parsed = [e for e in sim.stats()["by_fingerprint"].values()]
    assert len(parsed) == 5 * len(PROVIDERS)  # three good prompts, parse's and store's (build and exchange: none)
    assert all(entry["requests"] == 1 for entry in parsed)
    assert not never_retrieved, never_retrieved

    # A rerun does not ask the failed calls again; --retry-failed does, and with the fault gone they answer.
    before = sim.stats()["requests_total"]
    with pytest.raises(RunIncomplete):  # the stored failures stand
        asyncio.run(generate_tasks(str(config)))
    assert sim.stats()["requests_total"] == before
    again = asyncio.run(generate_tasks(str(config), retry_failed=True))
    assert sim.stats()["requests_total"] == before + 4 * len(PROVIDERS)
    assert all(t["failed"] == 0 and t["answered"] == 7 for t in again["providers"].values())


def test_a_result_the_store_refuses_becomes_an_internal_failure_and_the_store_goes_on(tmp_path: Path) -> None:
    """A value no store takes (a lone surrogate, as some servers emit) no longer passes for a full disk."""
    with ResponseStore(tmp_path / "s.sqlite") as store:
        keeper = AnswerKeeper(store, tmp_path / "rescue")
        keeper.keep("f1", "a", "p1", CallResult(ok=True, text="broken \ud800 text", attempts=1))
        keeper.keep("f2", "a", "p2", CallResult(ok=True, text="fine", attempts=1))
        assert not keeper.failed and keeper.counts.kept == 2
        got = store.get_many(["f1", "f2"])
    assert not got["f1"].ok and got["f1"].error_type == "internal" and "UnicodeEncodeError" in (got["f1"].error or "")
    assert got["f2"].ok and got["f2"].text == "fine"


def test_rescue_lines_that_cannot_be_stored_are_quarantined_and_the_rest_recovered(tmp_path: Path) -> None:
    store_path, rescue_dir = tmp_path / "s.sqlite", tmp_path / "rescue"
    rescue_dir.mkdir()
    good = CallResult(ok=True, text="a paid answer", model="m", attempts=1).to_dict()
    lines = [
        {"rescue_of": str(store_path.resolve()), "created_at": "x"},
        {"fingerprint": "f1", "source_id": "a", "prompt_id": "p1", "result": good},
        {"fingerprint": "f2", "source_id": "a", "prompt_id": "p2", "result": {**good, "text": "\ud800 broken"}},
        {"fingerprint": "f3", "source_id": "a", "prompt_id": "p3"},  # no result at all
        {"fingerprint": "f4", "source_id": "a", "prompt_id": "p4", "result": {**good, "model": {"id": "m"}}},
    ]
    rescue = rescue_dir / "rlhf-rescue-20260101T000000Z-x.jsonl"
    rescue.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="ascii")
    with ResponseStore(store_path) as store:
        recovered = recover_rescued(store, rescue_dir)
        got = store.get_many(["f1", "f2", "f3", "f4"])
    assert recovered.results == 2 and recovered.quarantined == 2
    assert got["f1"].text == "a paid answer" and json.loads(got["f4"].model or "") == {"id": "m"}
    assert not rescue.exists()
    quarantine = [json.loads(line) for line in recovered.quarantine_files[0].read_text().splitlines()]
    assert [json.loads(q["line"])["fingerprint"] for q in quarantine] == ["f2", "f3"]
    assert "UnicodeEncodeError" in quarantine[0]["reason"] and "KeyError" in quarantine[1]["reason"]


def test_validate_refuses_credentials_in_a_base_url_without_printing_them(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        "project: p\nbatch: b\nprompts: {path: p.jsonl}\noutput: {dir: out}\nproviders:\n"
        "  - {source_id: a, kind: openai, model: m, base_url: 'http://user:hunter2secret@127.0.0.1:9/v1'}\n"
        "  - {source_id: b, kind: openai, model: m}\n",
        encoding="utf-8",
    )
    (tmp_path / "p.jsonl").write_text('{"id": "1", "prompt": "hi"}\n', encoding="utf-8")
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-key-value-0123456789"}
    done = subprocess.run([RLHF, "validate", str(config)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "base_url" in output and "must not carry credentials" in output and "api_key_env" in output
    assert "hunter2secret" not in output and "Traceback" not in output


# ------------------------------------------------------------------------------------------ stop grace


def _store_rows(store: Path) -> int:
    if not store.exists():
        return 0
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT count(*) FROM responses").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def _run_and_sigterm(tmp_path: Path, sim: SimulatorProcess, env: dict[str, str], *extra: str) -> tuple[int, str]:
    """``rlhf run`` of 4 prompts x 2 providers whose answers take 12 s; SIGTERM once every call is in flight."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Slow {i}?"}) + "\n" for i in range(4)))
    providers = [
        provider_entry(sim, "gpt", "openai", "gpt-4o", timeout_s=60),  # type: ignore[arg-type]
        provider_entry(sim, "claude", "anthropic", "claude-x", timeout_s=60),  # type: ignore[arg-type]
    ]
    config = write_config(tmp_path, providers, prompts)
    logs = tmp_path / "stderr"
    with logs.open("w") as err:
        process = subprocess.Popen([RLHF, "run", str(config), "-q", *extra], stdout=err, stderr=err, env=env)
    deadline = time.monotonic() + 120
    while sim.stats()["requests_total"] < 8:
        assert process.poll() is None, logs.read_text()
        assert time.monotonic() < deadline, "the calls never started"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=120)
    return code, logs.read_text()


@pytest.mark.slow
def test_sigterm_lets_answers_longer_than_ten_seconds_arrive_and_stores_them(
    tmp_path: Path, fake_keys: dict[str, str], prefect_api: str
) -> None:
    """The default grace (30 s, Kubernetes' default) outlasts a 12 s generation: every paid answer is kept."""
    with start_simulator_process(mode="derived", latency_ms=12_000) as sim:
        code, stderr = _run_and_sigterm(tmp_path, sim, {**os.environ, "PREFECT_API_URL": prefect_api})
        requests = sim.stats()["requests_total"]
    assert code == 128 + signal.SIGTERM, stderr
    assert requests == 8 and _store_rows(tmp_path / "out" / "b1" / "responses.sqlite") == 8
    summary = json.loads((tmp_path / "out" / "b1" / "summary.json").read_text())
    assert summary["interrupted"] and summary["tasks_written"] == 4


@pytest.mark.slow
def test_a_short_stop_grace_gives_up_on_calls_in_flight(
    tmp_path: Path, fake_keys: dict[str, str], prefect_api: str
) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "RLHF_STOP_GRACE_S": "0.5"}
    with start_simulator_process(mode="derived", latency_ms=12_000) as sim:
        started = time.monotonic()
        code, stderr = _run_and_sigterm(tmp_path, sim, env)
        took = time.monotonic() - started
    assert code == 128 + signal.SIGTERM, stderr
    assert _store_rows(tmp_path / "out" / "b1" / "responses.sqlite") == 0
    assert took < 12, "the run waited for the answers despite a 0.5 s grace"
    summary = json.loads((tmp_path / "out" / "b1" / "summary.json").read_text())
    assert all(t["interrupted"] == 4 for t in summary["providers"].values())


def test_a_stop_grace_in_the_environment_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "RLHF_STOP_GRACE_S": "soon"}
    done = subprocess.run(
        [RLHF, "run", str(tmp_path / "missing.yaml")], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2 and "RLHF_STOP_GRACE_S='soon'" in done.stdout + done.stderr
