"""The task writer process: what it writes, and what it leaves behind when it or its parent stops early.

The child is the real one (``python -m flows.generation.writer_process``), fed over its real pipes; the results it
writes are made up here (no provider is called), so each test controls exactly what goes in.
"""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, exits_within, three_providers, write_config, write_prompts

from flows.generation import writer_process
from flows.generation.generate import writer_setup
from flows.generation.prepare import prepare_run
from flows.generation.task_writer import TaskWriter
from flows.generation.writer_process import (
    OUTPUT_FILES,
    ChunkResults,
    TaskWriterFailed,
    WriterSetup,
    task_writer_process,
)
from flows.sharding.shard import prompts_of
from prompts.reader import PromptRecord
from providers.result import CallResult
from simulator import RunningSimulator
from task_builder.layout import TaskLayout

pytestmark = pytest.mark.slow  # every test starts the writer child process


@pytest.fixture(autouse=True)
def _api_keys(fake_keys: dict[str, str]) -> None:
    """The configs name API key variables; nothing is called, but validation wants them set."""


def batch(tmp_path: Path, sim: RunningSimulator, count: int) -> tuple[WriterSetup, list[PromptRecord], ChunkResults]:
    """A writer setup for three providers and ``count`` prompts, every answer distinct; the last prompt
    has one answer and two errors, so it is incomplete (two answers are required by default)."""
    config = write_config(tmp_path, three_providers(sim), write_prompts(tmp_path / "prompts.jsonl", count))
    prepared = prepare_run(config)
    setup = writer_setup(prepared, "run-test", "hash-test", "2026-11-27T00:00:00Z")
    records = list(prompts_of(prepared.config))
    results: ChunkResults = []
    for index, record in enumerate(records):
        per_prompt = {}
        for number, slot in enumerate(setup.slots):
            if index == count - 1 and number > 0:
                per_prompt[slot.answer_id] = CallResult(
                    ok=False, error_type="server_error", error="HTTP 503", attempts=3
                )
            else:
                per_prompt[slot.answer_id] = CallResult(
                    ok=True,
                    text=f"Answer {number} to {record.id}: " + "words " * (number + index % 5),
                    model=slot.provider.model,
                    finish_reason="stop",
                    input_tokens=12,
                    output_tokens=20 + number,
                    latency_ms=50.0,
                    attempts=1,
                    created_at="2026-11-27T00:00:01Z",
                )
        results.append(per_prompt)
    return setup, records, results


def written_in_process(setup: WriterSetup, records: list[PromptRecord], results: ChunkResults) -> dict[str, str]:
    """What a ``TaskWriter`` in this process writes for the same input (the reference)."""
    layout = TaskLayout(setup.layout_kind, setup.ctx.batch, setup.seed, setup.pairs_per_prompt)
    outs = {name: io.StringIO() for name in OUTPUT_FILES}
    writer = TaskWriter(setup.ctx, layout, setup.slots, setup.required_answers, *outs.values())
    for record, prompt_results in zip(records, results):
        writer.write(record, prompt_results)
    return {name: out.getvalue() for name, out in outs.items()}


async def writing_started(run_dir: Path, timeout_s: float = 30.0) -> None:
    """Wait until the child has opened its first output file, i.e. it is past its start-up."""
    deadline = time.monotonic() + timeout_s
    while not (run_dir / "tasks.jsonl.partial").exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert (run_dir / "tasks.jsonl.partial").exists(), "the writer never started writing"


def test_the_child_writes_what_an_in_process_writer_writes(sim: RunningSimulator, tmp_path: Path) -> None:
    setup, records, results = batch(tmp_path, sim, 25)

    async def scenario() -> None:
        async with task_writer_process(setup) as writer:
            for start in range(0, 25, 10):  # three chunks: 10, 10, 5
                await writer.write(records[start : start + 10], results[start : start + 10])
            report = await writer.finish()
        assert writer.returncode == 0
        assert report.counts.prompts == 25 and report.counts.incomplete == 1
        assert report.counts.tasks_written == report.counts.prompts_tasked == 24
        assert sorted(report.positions) == ["claude", "gpt-4o", "llama-3"]
        assert all(sum(p["count"] for p in by_position.values()) == 24 for by_position in report.positions.values())

    asyncio.run(scenario())
    run_dir = Path(setup.run_dir)
    expected = written_in_process(setup, records, results)
    for name in OUTPUT_FILES:
        assert (run_dir / name).read_text(encoding="utf-8") == expected[name], name
    assert expected["tasks.jsonl"].count("\n") == 24 and '"p-024"' in expected["incomplete.jsonl"]
    assert not list(run_dir.glob("*.partial"))


def test_signals_meant_for_the_run_do_not_stop_the_child(sim: RunningSimulator, tmp_path: Path) -> None:
    """A Ctrl-C goes to the terminal's process group: the child is not in it, and ignores SIGINT and
    SIGTERM sent to it directly; the parent decides when it stops."""
    setup, records, results = batch(tmp_path, sim, 6)
    run_dir = Path(setup.run_dir)

    async def scenario() -> int:
        async with task_writer_process(setup) as writer:
            assert os.getpgid(writer.pid) != os.getpgid(0)
            await writer.write(records[:3], results[:3])
            await writing_started(run_dir)
            os.kill(writer.pid, signal.SIGINT)
            os.kill(writer.pid, signal.SIGTERM)
            await asyncio.sleep(0.3)
            assert writer.returncode is None
            await writer.write(records[3:], results[3:])
            return (await writer.finish()).counts.prompts

    assert asyncio.run(scenario()) == 6
    assert (run_dir / "tasks.jsonl").read_text().count("\n") == 5


def test_stopping_without_finish_discards_the_partial_files(sim: RunningSimulator, tmp_path: Path) -> None:
    setup, records, results = batch(tmp_path, sim, 6)
    run_dir = Path(setup.run_dir)

    async def scenario() -> int | None:
        async with task_writer_process(setup) as writer:
            await writer.write(records, results)
            await writing_started(run_dir)
        return writer.returncode

    assert asyncio.run(scenario()) == 1
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(OUTPUT_FILES)]


def test_a_child_too_busy_to_stop_is_killed_and_its_partial_files_removed(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    """A real backlog, longer than the parent's wait after closing the pipe (``_EXIT_WAIT_S``, 10 s,
    not patched): one chunk of a million prompts (five prompts repeated, so the pickle stays small;
    the child still builds and writes every task, about 0.5 ms each, minutes in all). The child keeps
    writing through the whole wait, then the parent kills it and removes the partial files."""
    setup, records, results = batch(tmp_path, sim, 6)
    run_dir = Path(setup.run_dir)
    partial = run_dir / "tasks.jsonl.partial"
    repeats = 200_000

    def partial_size() -> int | None:
        try:
            return partial.stat().st_size
        except FileNotFoundError:
            return None

    async def scenario() -> tuple[int | None, float, list[int]]:
        sizes: list[int] = []

        async def watch() -> None:
            while (size := partial_size()) is not None:
                sizes.append(size)
                await asyncio.sleep(0.5)

        async with task_writer_process(setup) as writer:
            await writer.write(records[:5] * repeats, results[:5] * repeats)
            deadline = time.monotonic() + 60
            while not partial_size() and time.monotonic() < deadline:  # tasks are being written
                await asyncio.sleep(0.05)
            watcher = asyncio.create_task(watch())
            closing = time.monotonic()
        waited = time.monotonic() - closing
        await watcher
        return writer.returncode, waited, sizes

    returncode, waited, sizes = asyncio.run(scenario())
    assert returncode == -signal.SIGKILL
    assert waited >= writer_process._EXIT_WAIT_S - 0.1  # the full wait, not an early kill
    # Busy for real: the tasks file kept growing while the parent waited.
    assert len(sizes) >= 10 and sizes[0] > 0 and sizes[-1] > sizes[len(sizes) // 2] > sizes[0]
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(OUTPUT_FILES)]


KILLED_PARENT = """
import asyncio, os, pickle, signal, sys, time
from pathlib import Path
from flows.generation.writer_process import TaskWriterProcess

setup, records, results = pickle.loads(Path(sys.argv[1]).read_bytes())

async def main():
    writer = await TaskWriterProcess.start(setup)
    await writer.write(records, results)
    while not (Path(setup.run_dir) / "tasks.jsonl.partial").exists():
        await asyncio.sleep(0.02)
    print(writer.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_a_parent_killed_with_sigkill_leaves_no_partial_files(sim: RunningSimulator, tmp_path: Path) -> None:
    setup, records, results = batch(tmp_path, sim, 6)
    run_dir = Path(setup.run_dir)
    payload = tmp_path / "payload.pickle"
    payload.write_bytes(pickle.dumps((setup, records, results)))
    parent = subprocess.run(
        [sys.executable, "-c", KILLED_PARENT, str(payload)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    child = int(parent.stdout.strip())
    assert exits_within(child), "the writer outlived its killed parent"
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(OUTPUT_FILES)]


def test_a_failing_child_is_reported_and_leaves_nothing(sim: RunningSimulator, tmp_path: Path) -> None:
    setup, records, results = batch(tmp_path, sim, 4)
    run_dir = Path(setup.run_dir)
    (run_dir / "filtered.jsonl.partial").mkdir(parents=True)  # the third output cannot be opened

    async def scenario() -> None:
        async with task_writer_process(setup) as writer:
            await writer.write(records, results)
            await writer.finish()

    with pytest.raises(
        TaskWriterFailed, match=r"the task writer process failed: IsADirectoryError.*filtered\.jsonl\.partial"
    ):
        asyncio.run(scenario())
    assert sorted(p.name for p in run_dir.iterdir()) == ["filtered.jsonl.partial"]  # only the obstacle
