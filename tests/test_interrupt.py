"""Ctrl-C at a terminal during ``rlhf run`` on Prefect's temporary local server (no ``PREFECT_API_URL``).

A terminal sends SIGINT to its whole foreground process group. The temporary server is a child of
``rlhf``; it used to share that group, died with the Ctrl-C, and the stopping run then spent minutes
retrying the API and ended in tracebacks with exit 1. These tests start ``rlhf run`` in a process group
of its own, as a shell does, and signal the whole group.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import child_processes, exits_within, provider_entry, write_config, write_prompts

from simulator import SimulatorProcess, start_simulator_process

RLHF = str(Path(sys.executable).with_name("rlhf"))
pytestmark = pytest.mark.slow  # rlhf subprocesses, each starting Prefect's temporary server


@pytest.fixture
def sim_process() -> Iterator[SimulatorProcess]:
    with start_simulator_process(mode="derived", latency_ms=500) as process:  # in its own group: Ctrl-C spares it
        yield process


@pytest.fixture
def temporary_server_env(fake_keys: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The environment a new user has: no PREFECT_API_URL, so ``rlhf run`` starts the temporary server."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # a fresh database, as on a new machine
    return env


def stored(store: Path) -> int:
    if not store.exists():
        return 0
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT count(*) FROM responses").fetchone()[0])
    except sqlite3.OperationalError:  # no table yet
        return 0
    finally:
        db.close()


def start_run(tmp_path: Path, sim: SimulatorProcess, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """``rlhf run`` of 200 prompts × 2 providers at 500 ms a call (minutes of work), in a new process group."""
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o", max_concurrency=2),  # type: ignore[arg-type]
        provider_entry(sim, "claude", "anthropic", "claude-sonnet-4-5", max_concurrency=2),  # type: ignore[arg-type]
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "prompts.jsonl", 200))
    logs = tmp_path / "logs"
    logs.mkdir()
    with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
        process = subprocess.Popen([RLHF, "run", str(config)], stdout=out, stderr=err, env=env, start_new_session=True)
    return process, config, logs


def wait_for_answers(process: subprocess.Popen[bytes], store: Path, logs: Path, count: int) -> None:
    deadline = time.monotonic() + 150  # the temporary server's first start on a fresh database, on a loaded machine
    while stored(store) < count:
        assert process.poll() is None, (logs / "stderr").read_text()
        assert time.monotonic() < deadline, "no answers stored in time"
        time.sleep(0.1)


def test_ctrl_c_on_the_temporary_server_stops_cleanly_with_exit_130(
    sim_process: SimulatorProcess, temporary_server_env: dict[str, str], tmp_path: Path
) -> None:
    process, config, logs = start_run(tmp_path, sim_process, temporary_server_env)
    store = tmp_path / "out" / "b1" / "responses.sqlite"
    try:
        wait_for_answers(process, store, logs, 4)
        servers = child_processes(process.pid, b"prefect.server.api.server:create_app")
        assert len(servers) == 1, "the temporary server is not a child of rlhf"
        # The terminal's signals do not reach it: it is in a session of its own.
        assert os.getsid(servers[0]) != os.getsid(process.pid)
        signalled = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"rlhf still running 60 s after Ctrl-C: {(logs / 'stderr').read_text()[-3000:]}")
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    stdout, stderr = (logs / "stdout").read_text(), (logs / "stderr").read_text()

    assert code == 130, stderr
    assert took <= 15, f"stopping took {took:.1f} s"
    assert f"resume with: rlhf run {config}" in stderr
    for text in (stdout, stderr):
        assert "Traceback" not in text and "Error" not in text and "ERROR" not in text, text
    assert len(stderr.splitlines()) <= 5, stderr  # the start-up note, the stop line and little else
    summary_file = tmp_path / "out" / "b1" / "summary.json"
    assert summary_file.is_file() and '"interrupted": true' in summary_file.read_text()
    assert exits_within(servers[0], 15), "the temporary server outlived the run"


def test_the_temporary_server_does_not_outlive_a_killed_run(
    sim_process: SimulatorProcess, temporary_server_env: dict[str, str], tmp_path: Path
) -> None:
    """Out of the terminal's process group, the server must notice by itself when ``rlhf`` is gone."""
    process, _, logs = start_run(tmp_path, sim_process, temporary_server_env)
    try:
        wait_for_answers(process, tmp_path / "out" / "b1" / "responses.sqlite", logs, 2)
        servers = child_processes(process.pid, b"prefect.server.api.server:create_app")
        assert len(servers) == 1
        os.kill(process.pid, signal.SIGKILL)  # no atexit, no cleanup of any kind
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert exits_within(servers[0], 20), "the temporary server outlived the killed run"
