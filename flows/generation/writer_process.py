"""Task writing in a second process, so the event loop that drives the provider calls never waits on it.

Building a prompt's task shells (layout, quality flags, pydantic models, JSON) costs about 1 ms of CPU,
as much as a call's whole client path on the lean request path; on the calls' event loop it delays
every in-flight response (bench/ANALYSIS.md). The flow hands each finished chunk (its prompt records
and every slot's result) to a child process that owns the output files and a ``TaskWriter``; the child
writes on the machine's other core while the next chunk's calls run.

Protocol, over the child's stdin and stdout: length-prefixed pickles. The parent sends one
``WriterSetup``, then one ``(records, results)`` pair per chunk, then ``FINISH``; the child commits the
files (``common/atomic.py``) and replies ``("done", WriteCounts, positions report)``, or
``("failed", message)`` if anything went wrong, in which case no output file is left behind.

Stopping is the parent's decision: it drains and sends ``FINISH`` as before. The child runs in a session
of its own, so a Ctrl-C at the terminal (SIGINT to the foreground process group) or a SIGTERM to the
run's process group never reaches it, and it ignores SIGINT and SIGTERM sent to it directly. If the
parent goes away without ``FINISH`` (an error, ``kill -9``), the child reads end-of-file, removes its
partial files and exits.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import struct
import sys
import traceback
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from common.atomic import atomic_open
from common.images import IMAGES_DIR
from flows.delivery.stream import StreamSettings
from flows.generation.task_writer import TaskWriter
from flows.reporting.summary import WriteCounts
from prompts.reader import PromptRecord
from providers.result import CallResult
from providers.slots import AnswerSlot
from task_builder.assemble import BatchContext
from task_builder.layout import LayoutKind, TaskLayout
from task_builder.predictions import Judgement

FINISH = "finish"
OUTPUT_FILES = ("tasks.jsonl", "incomplete.jsonl", "filtered.jsonl")
_HEADER = struct.Struct(">Q")
_EXIT_WAIT_S = 10.0
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding flows/

ChunkResults = list[dict[str, CallResult]]  # per prompt of a chunk: answer id -> result
ChunkJudgements = list[dict[str, Judgement]]  # per prompt of a chunk: judge source id -> its judgement


class TaskWriterFailed(RuntimeError):
    """The task writer process stopped before committing the output files."""


@dataclass(frozen=True, slots=True)
class WriterSetup:
    """Everything the child needs to write a batch's files."""

    run_dir: str
    ctx: BatchContext
    slots: list[AnswerSlot]
    required_answers: int
    layout_kind: LayoutKind
    seed: int
    pairs_per_prompt: int | None
    delivery: StreamSettings | None = None  # deliver each chunk's tasks as written (flows/delivery/stream.py)
    pair_weights: dict[tuple[str, str], float] | None = None  # adaptive pairs (task_builder/adaptive.py)


@dataclass(frozen=True, slots=True)
class WriterReport:
    """What the child wrote: the counts for ``summary.json`` and the layout's position balance."""

    counts: WriteCounts
    positions: dict[str, Any]
    delivery: dict[str, Any] | None = None  # the delivery as the run went, if any (StreamDelivery.finish)


def frame(message: Any) -> bytes:
    """One message as it goes over a pipe: its pickle's length, then the pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def read_frame(stream: IO[bytes]) -> Any:
    """The next message from a blocking stream; ``EOFError`` if the stream ends first."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the parent closed the pipe")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the parent closed the pipe mid-message")
    return pickle.loads(data)


class TaskWriterProcess:
    """The parent's end: hands finished chunks to the child and collects its report."""

    def __init__(self, process: asyncio.subprocess.Process, run_dir: Path) -> None:
        self._process = process
        self._run_dir = run_dir

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The child's exit code once it has ended (1 if it stopped without committing), else ``None``."""
        return self._process.returncode

    @classmethod
    async def start(cls, setup: WriterSetup) -> TaskWriterProcess:
        """Start the child (``python -m flows.generation.writer_process``) and send it the batch's setup."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH")) if p)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "flows.generation.writer_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # out of the terminal's process group: Ctrl-C is the parent's to handle
        )
        writer = cls(process, Path(setup.run_dir))
        await writer._send(setup)
        return writer

    async def write(
        self, records: list[PromptRecord], results: ChunkResults, judgements: ChunkJudgements | None = None
    ) -> None:
        """Queue one chunk's prompts (in batch order), their results and the judges' values (if any judge);
        waits only if the child lags."""
        await self._send((records, results, judgements))

    async def finish(self) -> WriterReport:
        """Tell the child the batch is done; return its report once the files are committed."""
        await self._send(FINISH)
        reply = await self._reply()
        await self._process.wait()
        if reply is None or reply[0] != "done":
            raise self._failure(reply)
        return WriterReport(counts=reply[1], positions=reply[2], delivery=reply[3])

    async def close(self) -> None:
        """Make sure the child is gone; without ``finish`` first it discards its partial files.

        A child still busy after ``_EXIT_WAIT_S`` (a long backlog of chunks) is killed and its partial
        files are removed here.
        """
        process = self._process
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), _EXIT_WAIT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            for name in OUTPUT_FILES:
                (self._run_dir / f"{name}.partial").unlink(missing_ok=True)

    async def _send(self, message: Any) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        if self._process.returncode is None:
            stdin.write(frame(message))
            try:
                await stdin.drain()
                return
            except (BrokenPipeError, ConnectionResetError):
                pass
        reply = await self._reply()
        await self._process.wait()
        raise self._failure(reply)

    async def _reply(self) -> tuple[Any, ...] | None:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            header = await stdout.readexactly(_HEADER.size)
            (size,) = _HEADER.unpack(header)
            return pickle.loads(await stdout.readexactly(size))
        except asyncio.IncompleteReadError:
            return None

    def _failure(self, reply: tuple[Any, ...] | None) -> TaskWriterFailed:
        if reply is not None and reply[0] == "failed":
            return TaskWriterFailed(f"the task writer process failed: {reply[1]}")
        return TaskWriterFailed(f"the task writer process exited with code {self._process.returncode} before finishing")


@asynccontextmanager
async def task_writer_process(setup: WriterSetup) -> AsyncIterator[TaskWriterProcess]:
    """A started ``TaskWriterProcess``, stopped on the way out whatever happens."""
    writer = await TaskWriterProcess.start(setup)
    try:
        yield writer
    finally:
        await writer.close()


def serve(requests: IO[bytes]) -> WriterReport:
    """The child's work: read the setup and the chunks, write every task, commit the files on ``FINISH``.

    With ``setup.delivery`` each chunk's tasks also go to a :class:`~flows.delivery.stream.StreamDelivery`
    once written (flushed first, so a reader of the partial file is never behind Label Studio); its report
    comes after the files are committed (``rlhf deliver`` can then complete what it could not deliver).
    """
    setup: WriterSetup = read_frame(requests)
    run_dir = Path(setup.run_dir)
    layout = TaskLayout(setup.layout_kind, setup.ctx.batch, setup.seed, setup.pairs_per_prompt, setup.pair_weights)
    stream = None
    if setup.delivery is not None:
        from flows.delivery.stream import StreamDelivery

        stream = StreamDelivery(run_dir, setup.delivery, setup.ctx.template, setup.ctx.batch)
    chunk_lines: list[str] = []
    with ExitStack() as files:
        tasks_out, incomplete_out, filtered_out = (
            files.enter_context(atomic_open(run_dir / name)) for name in OUTPUT_FILES
        )
        writer = TaskWriter(
            setup.ctx,
            layout,
            setup.slots,
            setup.required_answers,
            tasks_out,
            incomplete_out,
            filtered_out,
            chunk_lines.append if stream is not None else None,
            images_dir=run_dir / IMAGES_DIR,
        )
        chunk_index = 0
        while (message := read_frame(requests)) != FINISH:
            records, results, judgements = message
            for index, (record, prompt_results) in enumerate(zip(records, results, strict=True)):
                writer.write(record, prompt_results, judgements[index] if judgements else None)
            if stream is not None:
                tasks_out.flush()
                stream.put(chunk_index, chunk_lines[:])
                chunk_lines.clear()
            chunk_index += 1
    delivery = stream.finish() if stream is not None else None
    return WriterReport(counts=writer.counts, positions=layout.positions.report(), delivery=delivery)


def main() -> int:
    """Child entry point: serve the parent on stdin/stdout; nothing else may write to stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr
    try:
        report = serve(requests)
    except EOFError:
        return 1  # the parent stopped without FINISH; the partial files are already removed
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        # A file that cannot be written is the operator's to fix: one line. Anything else is a bug: the traceback.
        detail = traceback.format_exception_only(exc) if isinstance(exc, OSError) else traceback.format_exc()
        replies.write(frame(("failed", "".join(detail).strip())))
        replies.flush()
        return 1
    replies.write(frame(("done", report.counts, report.positions, report.delivery)))
    replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
