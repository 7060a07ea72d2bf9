"""``rlhf run`` killed, stopped by a signal, or fed bad records: what is left on disk and how a rerun resumes.

The client runs as a real subprocess (``PREFECT_API_URL`` points at the session's Prefect API so it starts
fast); the simulator runs in a process of its own so signals to the client never touch it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import child_processes, exits_within, provider_entry, write_config, write_prompts

from simulator import RunningSimulator, SimulatorProcess, start_simulator_process

RLHF = str(Path(sys.executable).with_name("rlhf"))
MODELS = {"gpt-4o": "gpt-4o", "llama-3": "llama-3-8b", "claude": "claude-sonnet-4-5"}
VOLATILE_KEYS = {"run_id", "config_hash", "created_at", "request_id", "latency_ms"}
pytestmark = pytest.mark.slow  # rlhf subprocesses against Prefect and a simulator process


@pytest.fixture
def sim_process() -> Iterator[SimulatorProcess]:
    with start_simulator_process(mode="derived") as process:
        yield process


@pytest.fixture
def run_env(fake_keys: dict[str, str], prefect_api: str) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": prefect_api}


class Client:
    """An ``rlhf`` subprocess with its output in files (no pipe can fill up and stall it)."""

    def __init__(self, args: list[str], env: dict[str, str], logs: Path, own_group: bool = False) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self._out = (logs / "stdout").open("w+")
        self._err = (logs / "stderr").open("w+")
        self.process = subprocess.Popen(
            [RLHF, *args], stdout=self._out, stderr=self._err, env=env, start_new_session=own_group
        )

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def output(self) -> tuple[str, str]:
        self._out.seek(0), self._err.seek(0)
        return self._out.read(), self._err.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._out.close(), self._err.close()


def run_to_end(args: list[str], env: dict[str, str], logs: Path) -> tuple[int, str, str]:
    client = Client(args, env, logs)
    try:
        code = client.wait()
        return (code, *client.output())
    finally:
        client.close()


def store_rows(store: Path) -> list[tuple[str, str, int]]:
    """``(prompt_id, source_id, ok)`` of every stored result, read through a read-only connection."""
    if not store.exists():
        return []
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT prompt_id, source_id, ok FROM responses").fetchall()
    except sqlite3.OperationalError:  # created but no table yet
        return []
    finally:
        db.close()


def wait_mid_wave(
    client: Client, sim: SimulatorProcess, store: Path, min_rows: int, latency_s: float, margin_s: float
) -> None:
    """Return once ``min_rows`` results are stored and calls are in flight whose answers are at least
    ``margin_s`` away (arrival times are the simulator's, on the shared monotonic clock)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert client.process.poll() is None, f"rlhf ended early: {client.output()}"
        if len(store_rows(store)) >= min_rows:
            stats = sim.stats()
            now = time.monotonic()
            in_flight = {m: s["in_flight"] for m, s in stats["by_model"].items() if s["in_flight"]}
            oldest = [stats["request_times"][m][-n] for m, n in in_flight.items()]
            if in_flight and all(now - t <= latency_s - margin_s for t in oldest):
                return
        time.sleep(0.02)
    pytest.fail("never reached the middle of a latency wave")


def assert_complete_or_absent(run_dir: Path) -> None:
    """Final-named outputs are complete: JSON files parse, JSONL files have only whole lines."""
    for name in ("run.json", "summary.json"):
        if (run_dir / name).exists():
            json.loads((run_dir / name).read_text(encoding="utf-8"))
    for name in ("tasks.jsonl", "incomplete.jsonl", "filtered.jsonl", "rejected.jsonl"):
        path = run_dir / name
        if path.exists():
            text = path.read_text(encoding="utf-8")
            assert text == "" or text.endswith("\n"), f"{name} ends in a cut-off line"
            for line in text.splitlines():
                json.loads(line)


def without_volatile(value: Any) -> Any:
    """A task with run-specific values (ids of the run, times, request ids, latencies) removed."""
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ----------------------------------------------------------------------------------------------- kill -9
def test_kill_9_mid_batch_then_rerun_pays_for_nothing_twice(
    sim_process: SimulatorProcess, run_env: dict[str, str], tmp_path: Path
) -> None:
    latency_s = 1.0
    sim_process.configure(latency_ms=latency_s * 1000, latency_jitter_ms=0)
    prompts = write_prompts(tmp_path / "prompts.jsonl", 60)
    providers = [
        provider_entry(sim_process, sid, "anthropic" if sid == "claude" else "openai", model, max_concurrency=4)
        for sid, model in MODELS.items()
    ]  # type: ignore[arg-type]
    work = tmp_path / "killed"
    work.mkdir()
    config = write_config(work, providers, prompts, chunk_size=8)
    run_dir = work / "out" / "b1"
    store = run_dir / "responses.sqlite"

    client = Client(["run", str(config), "-q"], run_env, tmp_path / "logs-1")
    try:
        wait_mid_wave(client, sim_process, store, min_rows=20, latency_s=latency_s, margin_s=0.35)
        in_flight_at_kill = sum(s["in_flight"] for s in sim_process.stats()["by_model"].values())
        writers = child_processes(client.process.pid, b"flows.generation.writer_process")
        os.kill(client.process.pid, signal.SIGKILL)
        assert client.wait(30) == -signal.SIGKILL
    finally:
        client.close()
    assert in_flight_at_kill > 0
    # The task writer process sees its parent go, removes its partial files and exits.
    assert len(writers) == 1
    assert exits_within(writers[0]), "the task writer outlived the killed run"
    assert not list(run_dir.glob("*.partial"))

    rows_at_kill = store_rows(store)
    assert 20 <= len(rows_at_kill) < 180 and all(ok == 1 for _, _, ok in rows_at_kill)
    assert_complete_or_absent(run_dir)
    # The run never finished, so no output may have appeared under its final name (only as *.partial).
    assert json.loads((run_dir / "run.json").read_text())["config_hash"]
    assert not [
        name
        for name in ("tasks.jsonl", "incomplete.jsonl", "filtered.jsonl", "summary.json")
        if (run_dir / name).exists()
    ]
    # Nothing the simulator answered was lost: the calls in flight at the kill were cut off, not answered.
    deadline = time.monotonic() + 5
    while any(s["in_flight"] for s in sim_process.stats()["by_model"].values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim_process.stats()["responses_ok"] == len(rows_at_kill)
    cut_off = sim_process.stats()["requests_total"] - len(rows_at_kill)  # requested, never answered
    assert cut_off >= in_flight_at_kill

    sim_process.configure(latency_ms=10)  # the rerun need not be slow
    code, stdout, stderr = run_to_end(["run", str(config), "-q"], run_env, tmp_path / "logs-2")
    assert code == 0, stderr

    stats = sim_process.stats()
    fingerprints = stats["by_fingerprint"]
    assert len(fingerprints) == 180
    assert all(v["ok"] == 1 for v in fingerprints.values()), "an answer was paid for twice"
    assert sum(v["requests"] == 2 for v in fingerprints.values()) == cut_off  # only the cut-off calls again
    rows = store_rows(store)
    assert len(rows) == 180 and all(ok == 1 for _, _, ok in rows)
    assert {(p, s) for p, s, _ in rows} == {(f"p-{i:03d}", sid) for i in range(60) for sid in MODELS}
    assert_complete_or_absent(run_dir)
    assert not list(run_dir.glob("*.partial"))
    resumed = read_jsonl(run_dir / "tasks.jsonl")
    assert len(resumed) == 60

    # The same config run without interruption into another directory gives the same tasks.
    sim_process.reset()
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    reference_config = write_config(reference_dir, providers, prompts, chunk_size=8)
    code, _, stderr = run_to_end(["run", str(reference_config), "-q"], run_env, tmp_path / "logs-3")
    assert code == 0, stderr
    reference = read_jsonl(reference_dir / "out" / "b1" / "tasks.jsonl")
    assert [t["task_id"] for t in resumed] == [t["task_id"] for t in reference]
    assert [without_volatile(t) for t in resumed] == [without_volatile(t) for t in reference]


# ------------------------------------------------------------------------------------ SIGINT / SIGTERM
@pytest.mark.parametrize(
    ("signum", "to_group"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
    ids=["SIGTERM", "SIGINT", "SIGINT-to-the-process-group"],  # the last: Ctrl-C at a terminal
)
def test_signal_stops_gracefully_and_a_rerun_completes(
    sim_process: SimulatorProcess, run_env: dict[str, str], tmp_path: Path, signum: int, to_group: bool
) -> None:
    latency_s = 0.5
    sim_process.configure(latency_ms=latency_s * 1000, latency_jitter_ms=0)
    prompts = write_prompts(tmp_path / "prompts.jsonl", 40)
    providers = [
        provider_entry(sim_process, "gpt-4o", "openai", "gpt-4o", max_concurrency=2),  # type: ignore[arg-type]
        provider_entry(sim_process, "claude", "anthropic", "claude-sonnet-4-5", max_concurrency=2),  # type: ignore[arg-type]
    ]
    config = write_config(tmp_path, providers, prompts)
    run_dir = tmp_path / "out" / "b1"
    store = run_dir / "responses.sqlite"

    client = Client(["run", str(config), "-q"], run_env, tmp_path / "logs-1", own_group=to_group)
    try:
        wait_mid_wave(client, sim_process, store, min_rows=4, latency_s=latency_s, margin_s=0.2)
        rows_before = len(store_rows(store))
        if to_group:
            os.killpg(client.process.pid, signum)
        else:
            client.process.send_signal(signum)
        code = client.wait(60)
        stdout, stderr = client.output()
    finally:
        client.close()

    assert code == 128 + signum, (code, stderr)
    assert f"resume with: rlhf run {config}" in stderr
    rows_after = store_rows(store)
    assert len(rows_after) > rows_before, "the calls in flight at the signal were not allowed to finish"
    assert all(ok == 1 for _, _, ok in rows_after)
    stats = sim_process.stats()
    assert stats["requests_total"] == len(rows_after), "a call was started after the stop, or one was lost"

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["prompts"] == 40
    assert summary["prompts_tasked"] + summary["incomplete"] + summary["prompts_filtered"] == summary["prompts"]
    assert summary["tasks_written"] + summary["incomplete"] == summary["prompts"]  # default layout: 1 task a prompt
    assert summary["tasks_written"] < 40 and summary["prompts_filtered"] == 0
    for sid, tally in summary["providers"].items():
        stored = sum(1 for _, s, _ in rows_after if s == sid)
        assert tally["answered"] == stored and tally["answered"] + tally["interrupted"] == 40, (sid, tally)
    assert len(read_jsonl(run_dir / "tasks.jsonl")) == summary["tasks_written"]
    assert len(read_jsonl(run_dir / "incomplete.jsonl")) == summary["incomplete"]
    assert_complete_or_absent(run_dir)

    sim_process.configure(latency_ms=5)
    code, _, stderr = run_to_end(["run", str(config), "-q"], run_env, tmp_path / "logs-2")
    assert code == 0, stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted"] is False and summary["tasks_written"] == 40 and summary["incomplete"] == 0
    assert [t["metadata"]["prompt_id"] for t in read_jsonl(run_dir / "tasks.jsonl")] == [
        f"p-{i:03d}" for i in range(40)
    ]
    # Across both runs every (prompt, provider) was requested exactly once.
    fingerprints = sim_process.stats()["by_fingerprint"]
    assert len(fingerprints) == 80 and all(v == {"requests": 1, "ok": 1} for v in fingerprints.values())


# ------------------------------------------------------------------------------- output cannot be written
def test_output_that_cannot_be_written_fails_cleanly_and_a_rerun_pays_for_nothing(
    sim: RunningSimulator, run_env: dict[str, str], tmp_path: Path
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 12)
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    config = write_config(tmp_path, providers, prompts, chunk_size=5)
    run_dir = tmp_path / "out" / "b1"
    obstacle = run_dir / "incomplete.jsonl.partial"
    obstacle.mkdir(parents=True)  # stands in for a full disk or a read-only directory

    code, _, stderr = run_to_end(["run", str(config), "-q"], run_env, tmp_path / "logs-1")
    assert code == 4, stderr
    assert "error: the task writer process failed: IsADirectoryError" in stderr and str(obstacle) in stderr
    assert f"rerun (nothing is asked twice): rlhf run {config}" in stderr
    assert "Traceback" not in stderr  # the console gets the plain error; Prefect's API logs keep the traceback
    assert sorted(
        p.name for p in run_dir.iterdir() if p.suffix in {".jsonl", ".partial"} or p.name == "summary.json"
    ) == ["incomplete.jsonl.partial"]  # nothing written but the obstacle
    assert len(store_rows(store := run_dir / "responses.sqlite")) == 24  # every answer kept
    requests = sim.stats()["requests_total"]

    obstacle.rmdir()
    code, _, stderr = run_to_end(["run", str(config), "-q"], run_env, tmp_path / "logs-2")
    assert code == 0, stderr
    assert sim.stats()["requests_total"] == requests, "the rerun asked for an answer it already had"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["tasks_written"] == 12 and summary["providers"]["claude"]["reused_from_store"] == 12
    assert len(store_rows(store)) == 24 and len(read_jsonl(run_dir / "tasks.jsonl")) == 12


# ------------------------------------------------------------------------------------------ --skip-invalid
def test_skip_invalid_runs_the_good_prompts_and_lists_the_bad_ones(
    sim: RunningSimulator, run_env: dict[str, str], tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    lines = [json.dumps({"id": f"p-{i:03d}", "prompt": f"Question number {i}: why?"}) for i in range(10)]
    lines[3] = '{"id": "p-003", "prompt": '  # line 4: cut-off JSON
    lines[7] = json.dumps({"id": "p-001", "prompt": "the same id again"})  # line 8: duplicate id
    prompts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-x"),
    ]
    config = write_config(tmp_path, providers, prompts)
    good = [f"p-{i:03d}" for i in (0, 1, 2, 4, 5, 6, 8, 9)]

    code, _, stderr = run_to_end(["run", str(config), "-q"], run_env, tmp_path / "logs-1")
    assert code == 2, stderr
    assert f"{prompts}:4: invalid JSON" in stderr and f"{prompts}:8: id: duplicate id 'p-001'" in stderr
    assert not (tmp_path / "out").exists() and sim.stats()["requests_total"] == 0

    code, _, stderr = run_to_end(["run", str(config), "-q", "--skip-invalid"], run_env, tmp_path / "logs-2")
    assert code == 0, stderr
    run_dir = tmp_path / "out" / "b1"
    rejected = read_jsonl(run_dir / "rejected.jsonl")
    assert [(r["file"], r["line"]) for r in rejected] == [(str(prompts), 4), (str(prompts), 8)]
    assert rejected[0]["reason"].startswith("invalid JSON")
    assert rejected[1]["field"] == "id" and "duplicate id 'p-001'" in rejected[1]["reason"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rejected"] == 2 and summary["prompts"] == 8 and summary["tasks_written"] == 8
    assert summary["files"]["rejected"] == str(run_dir / "rejected.jsonl")
    tasks = read_jsonl(run_dir / "tasks.jsonl")
    assert [t["metadata"]["prompt_id"] for t in tasks] == good
    assert sim.stats()["requests_total"] == 16
