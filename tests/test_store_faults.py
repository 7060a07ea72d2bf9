"""The response store under real faults: a disk that fills, two runs of one batch, damaged and read-only files.

``rlhf run`` runs as a real subprocess against the simulator (calls are counted there); full and
read-only disks are real tmpfs mounts (the tests need root, as CI has, and skip without it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import exits_within, provider_entry, write_config, write_prompts

from simulator import RunningSimulator

RLHF = str(Path(sys.executable).with_name("rlhf"))
pytestmark = pytest.mark.slow


@pytest.fixture
def run_env(fake_keys: dict[str, str], prefect_api: str) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": prefect_api}


class Tmpfs:
    """A tmpfs mounted at ``path``: a disk of a known size that can fill up or turn read-only."""

    def __init__(self, path: Path, size_kb: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")

    def fill(self, leave_kb: int) -> Path:
        """Write a ballast file so that about ``leave_kb`` KiB stay free; returns it (delete it to free space)."""
        stat = os.statvfs(self.path)
        free = stat.f_bavail * stat.f_frsize
        ballast = self.path / "ballast"
        ballast.write_bytes(b"\0" * max(0, free - leave_kb * 1024))
        return ballast

    def read_only(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Any]:
    mounts: list[Tmpfs] = []

    def mount(name: str, size_kb: int) -> Tmpfs:
        mounts.append(Tmpfs(tmp_path / name, size_kb))
        return mounts[-1]

    yield mount
    for mounted in mounts:
        mounted.unmount()


def rlhf(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RLHF, *args], capture_output=True, text=True, env=env, timeout=timeout)


def two_providers(sim: RunningSimulator, **extra: Any) -> list[dict[str, Any]]:
    return [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o", **extra),
        provider_entry(sim, "claude", "anthropic", "claude-sonnet-4-5", **extra),
    ]


def stored_count(store: Path) -> int:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT count(*) FROM responses").fetchone()[0])
    finally:
        db.close()


def partial_files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*.partial")]


# ------------------------------------------------------------------------------------------ full disk


def test_full_store_stops_calls_rescues_answers_and_rerun_pays_for_nothing_twice(
    sim: RunningSimulator, tmp_path: Path, tmpfs: Any, run_env: dict[str, str]
) -> None:
    disk = tmpfs("store-disk", 16384)
    prompts = 150
    sim.configure(latency_ms=20)
    config = write_config(
        tmp_path,
        two_providers(sim),
        write_prompts(tmp_path / "p.jsonl", prompts),
        output={"dir": str(tmp_path / "out"), "store": str(disk.path / "responses.sqlite")},
    )
    ballast = disk.fill(leave_kb=400)
    rescue_dir = tmp_path / "rescue"

    first = rlhf("run", str(config), "--rescue-dir", str(rescue_dir), "-q", env=run_env)
    paid_first = sim.stats()["requests_total"]
    assert first.returncode == 4, first.stderr
    assert "Traceback" not in first.stderr and "all kept" not in first.stderr
    assert "cannot write the response store" in first.stderr and "New calls were stopped" in first.stderr
    # The run stopped calling: far fewer calls than planned were made.
    assert 0 < paid_first < 2 * prompts
    kept = stored_count(disk.path / "responses.sqlite")
    rescue_files = list(rescue_dir.glob("rlhf-rescue-*.jsonl"))
    assert len(rescue_files) == 1
    rescued_lines = rescue_files[0].read_text(encoding="utf-8").splitlines()
    header, rows = json.loads(rescued_lines[0]), [json.loads(line) for line in rescued_lines[1:]]
    assert header["rescue_of"] == str((disk.path / "responses.sqlite").resolve())
    assert all(row["result"]["ok"] for row in rows)
    # Every answer paid for is in the store or in the rescue file, and the message says so.
    assert kept + len(rows) == paid_first
    assert f"{kept} are in the store, {len(rows)} were rescued to {rescue_files[0]}" in first.stderr
    assert "none lost" in first.stderr
    assert not (tmp_path / "out" / "b1" / "tasks.jsonl").exists()
    assert partial_files(tmp_path / "out", disk.path) == []

    ballast.unlink()
    sim.reset()
    second = rlhf("run", str(config), "--rescue-dir", str(rescue_dir), "-q", env=run_env)
    assert second.returncode == 0, second.stderr
    # The rescued answers went back into the store: nothing was paid for twice.
    assert sim.stats()["requests_total"] == 2 * prompts - paid_first
    assert list(rescue_dir.glob("rlhf-rescue-*.jsonl")) == []
    summary = json.loads((tmp_path / "out" / "b1" / "summary.json").read_text())
    assert summary["recovered_from_rescue"] == len(rows)
    assert summary["tasks_written"] == prompts


def test_full_output_disk_leaves_no_partial_file_and_loses_no_answer(
    sim: RunningSimulator, tmp_path: Path, tmpfs: Any, run_env: dict[str, str]
) -> None:
    disk = tmpfs("out-disk", 16384)
    config = write_config(
        tmp_path,
        two_providers(sim),
        write_prompts(tmp_path / "p.jsonl", 200),
        output={"dir": str(disk.path / "out")},
        chunk_size=20,
    )
    disk.fill(leave_kb=300)
    result = rlhf("run", str(config), "--rescue-dir", str(tmp_path / "rescue"), "-q", env=run_env)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    assert partial_files(disk.path) == []
    store = disk.path / "out" / "b1" / "responses.sqlite"
    rescued = sum(len(p.read_text().splitlines()) - 1 for p in (tmp_path / "rescue").glob("rlhf-rescue-*.jsonl"))
    assert stored_count(store) + rescued == sim.stats()["requests_total"]


# ------------------------------------------------------------------------------------ one run per batch


def test_second_run_of_a_batch_exits_at_once_and_a_killed_holder_leaves_no_stale_lock(
    sim: RunningSimulator, tmp_path: Path, run_env: dict[str, str]
) -> None:
    prompts = 60
    sim.configure(latency_ms=400)
    config = write_config(tmp_path, two_providers(sim, max_concurrency=2), write_prompts(tmp_path / "p.jsonl", prompts))
    store = tmp_path / "out" / "b1" / "responses.sqlite"
    logs = (tmp_path / "holder.out").open("w+"), (tmp_path / "holder.err").open("w+")
    holder = subprocess.Popen([RLHF, "run", str(config), "-q"], stdout=logs[0], stderr=logs[1], env=run_env)
    try:
        deadline = time.monotonic() + 90
        while not (store.exists() and stored_count(store) >= 2):
            assert holder.poll() is None and time.monotonic() < deadline, "the first run never stored an answer"
            time.sleep(0.2)

        second = rlhf("run", str(config), "-q", env=run_env, timeout=60)
        assert second.returncode == 5, second.stderr
        assert f"pid {holder.pid}" in second.stderr and f"host {socket.gethostname()}" in second.stderr
        assert "started_at 20" in second.stderr and "nothing was called" in second.stderr
        assert "Traceback" not in second.stderr
        # The second run made no call: no request reached the simulator twice.
        by_fingerprint = sim.stats()["by_fingerprint"]
        assert by_fingerprint and all(entry["requests"] == 1 for entry in by_fingerprint.values())

        status = rlhf("status", str(tmp_path / "out" / "b1"), "--json", env=run_env, timeout=60)
        assert status.returncode == 3, status.stderr  # works beside the writer; prompts are still missing
        report = json.loads(status.stdout)
        assert 0 < report["providers"]["gpt-4o"]["answered"] < prompts

        holder.send_signal(signal.SIGKILL)
        assert exits_within(holder.pid)
        holder.wait()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for handle in logs:
            handle.close()

    stored = stored_count(store)
    sim.configure(latency_ms=0)
    sim.reset()
    third = rlhf("run", str(config), "-q", env=run_env)
    assert third.returncode == 0, third.stderr
    assert sim.stats()["requests_total"] == 2 * prompts - stored


# -------------------------------------------------------------------------------- damaged and read-only


@pytest.mark.parametrize("damage", ["random bytes", "truncated"])
def test_damaged_store_is_a_one_line_error_for_run_and_status(
    sim: RunningSimulator, tmp_path: Path, run_env: dict[str, str], damage: str
) -> None:
    config = write_config(tmp_path, two_providers(sim), write_prompts(tmp_path / "p.jsonl", 40))
    store = tmp_path / "out" / "b1" / "responses.sqlite"
    assert rlhf("run", str(config), "-q", env=run_env).returncode == 0
    if damage == "random bytes":
        store.write_bytes(os.urandom(16384))
    else:
        data = store.read_bytes()
        store.write_bytes(data[: len(data) // 2])
    sim.reset()
    for command in (["run", str(config), "-q"], ["status", str(config)]):
        result = rlhf(*command, env=run_env)
        assert result.returncode == 2, (command, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and str(store) in errors[0] and "not a readable response store" in errors[0]
        assert "move it aside" in errors[0] and "Traceback" not in result.stderr
    assert sim.stats()["requests_total"] == 0


def test_read_only_store_directory_exits_4_for_run_and_status_still_reads(
    sim: RunningSimulator, tmp_path: Path, tmpfs: Any, run_env: dict[str, str]
) -> None:
    disk = tmpfs("ro-disk", 4096)
    prompts = write_prompts(tmp_path / "p.jsonl", 10)
    config = write_config(tmp_path, two_providers(sim), prompts, output={"dir": str(disk.path / "out")})
    assert rlhf("run", str(config), "-q", env=run_env).returncode == 0
    write_prompts(prompts, 12)  # two new prompts: the next run would have calls to make
    disk.read_only()
    sim.reset()
    result = rlhf("run", str(config), "-q", env=run_env)
    assert result.returncode == 4, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "read-only" in errors[0].lower() and "Traceback" not in result.stderr
    assert sim.stats()["requests_total"] == 0

    status = rlhf("status", str(config), "--json", env=run_env)
    assert status.returncode == 3, status.stderr
    assert json.loads(status.stdout)["providers"]["claude"] == {
        "planned": 12,
        "answered": 10,
        "failed": 0,
        "missing": 2,
        "failure_reasons": {},
    }
