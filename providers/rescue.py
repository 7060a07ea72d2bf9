"""Answers the store could not take: kept in a rescue file, read back into the store by the next run.

A run commits every finished call to its response store. When a commit fails (full disk, the store's
directory turned read-only), :class:`AnswerKeeper` records the failure, tells the run to stop making
new calls, and writes every result still arriving to a rescue file in another directory (the system
temp directory unless ``--rescue-dir`` says otherwise): those calls are paid for, and must not be paid
for again. The next run of the same store calls :func:`recover_rescued` before anything else, which
commits the rescued results (an answer is never replaced by an error) and removes the file.

Rescue file: JSON lines, ``rlhf-rescue-*.jsonl``. The first line names the store it belongs to
(``{"rescue_of": "/abs/path/responses.sqlite", ...}``); every other line is one result
(``{"fingerprint", "source_id", "prompt_id", "result": {...}}``), flushed and synced as written.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from providers.result import CallResult, internal_failure
from providers.store import StoreError, StoreRejected
from providers.store_factory import StoreLike

RESCUE_GLOB = "rlhf-rescue-*.jsonl"


def store_identity(store: StoreLike) -> str:
    """What a rescue file names its store by: the absolute path of a file, or a database's (masked) URL."""
    path = store.path
    return str(path.resolve()) if isinstance(path, Path) else str(path)


def default_rescue_dir() -> Path:
    """The system temp directory (``TMPDIR`` or the platform's default)."""
    return Path(tempfile.gettempdir())


@dataclass
class KeepCounts:
    """What became of the results that arrived: committed, rescued to a file, or lost."""

    kept: int = 0
    rescued: int = 0
    lost: int = 0
    rescue_file: Path | None = None
    rescue_error: str | None = None


class StoreFailed(Exception):
    """The store stopped taking results mid-run; says how many were kept, rescued and lost."""

    def __init__(self, error: StoreError, counts: KeepCounts) -> None:
        where = f" to {counts.rescue_file}" if counts.rescue_file else ""
        lost = f"; {counts.lost} lost ({counts.rescue_error})" if counts.lost else "; none lost"
        super().__init__(
            f"{error}. New calls were stopped at the first failed commit. Of the results received this run, "
            f"{counts.kept} are in the store, {counts.rescued} were rescued{where}{lost}."
            + (
                " The next rlhf run of this batch reads the rescue file back into the store (give it the same "
                "--rescue-dir, if one was given)."
                if counts.rescued
                else ""
            )
        )
        self.error = error
        self.counts = counts


@dataclass
class AnswerKeeper:
    """Commits each finished call to the store; after the first failed commit, to a rescue file instead."""

    store: StoreLike
    rescue_dir: Path
    counts: KeepCounts = field(default_factory=KeepCounts)
    error: StoreError | None = None
    _rescue: IO[str] | None = None

    @property
    def failed(self) -> bool:
        """True once a commit failed: the run must stop making new calls."""
        return self.error is not None

    def keep(self, fingerprint: str, source_id: str, prompt_id: str, result: CallResult) -> None:
        """Commit one result, or rescue it if the store has failed. Never raises.

        A result the store cannot take (:class:`~providers.store.StoreRejected`, or any other exception
        from the store that is not a :class:`~providers.store.StoreError`) is committed as a failed call
        with reason ``internal`` naming the exception: counted and reported, never silently missing.
        """
        if self.error is None:
            try:
                self.store.put(fingerprint, source_id, prompt_id, result)
                self.counts.kept += 1
                return
            except StoreRejected as exc:
                failure = internal_failure(exc, result.attempts, prefix="not stored: ")
            except StoreError as exc:
                self.error = exc
                failure = None
            except Exception as exc:  # noqa: BLE001 - the boundary: nothing a call paid for may vanish
                failure = internal_failure(exc, result.attempts, prefix="not stored: ")
            if failure is not None:
                self.keep(fingerprint, source_id, prompt_id, failure)
                return
        self._rescue_one(fingerprint, source_id, prompt_id, result)

    def failure(self) -> StoreFailed:
        """The error to stop the run with (only once :attr:`failed`)."""
        assert self.error is not None
        return StoreFailed(self.error, self.counts)

    def close(self) -> None:
        """Close the rescue file, if one was opened."""
        if self._rescue is not None:
            self._rescue.close()
            self._rescue = None

    def _rescue_one(self, fingerprint: str, source_id: str, prompt_id: str, result: CallResult) -> None:
        line = json.dumps(
            {"fingerprint": fingerprint, "source_id": source_id, "prompt_id": prompt_id, "result": result.to_dict()},
            default=str,  # ASCII (the default): any text, lone surrogates included, can be written and read back
        )
        try:
            handle = self._rescue or self._open_rescue()
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            self.counts.rescued += 1
        except OSError as exc:
            self.counts.lost += 1
            self.counts.rescue_error = f"rescue file in {self.rescue_dir}: {exc.strerror or exc}"

    def _open_rescue(self) -> IO[str]:
        self.rescue_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        fd, name = tempfile.mkstemp(prefix=f"rlhf-rescue-{stamp}-", suffix=".jsonl", dir=self.rescue_dir)
        handle = os.fdopen(fd, "w", encoding="utf-8")
        self.counts.rescue_file = Path(name)
        handle.write(json.dumps({"rescue_of": store_identity(self.store), "created_at": stamp}) + "\n")
        self._rescue = handle
        return handle


@dataclass
class Recovered:
    """What :func:`recover_rescued` did: results committed, and lines it could not commit, moved to
    quarantine files (one next to each rescue file that had such lines) with their reasons."""

    results: int = 0
    quarantined: int = 0
    quarantine_files: list[Path] = field(default_factory=list)


def recover_rescued(store: StoreLike, rescue_dir: Path) -> Recovered:
    """Commit every rescue file of ``store`` found in ``rescue_dir``, then remove it.

    A file of another store is left alone. A file cut short (a crash while rescuing) gives up its
    complete lines. A line that cannot be committed (not a result, or a value the store refuses) is
    moved, with its reason, to ``<rescue file>.quarantine.jsonl`` beside it, and the rest go on: nobody
    has to delete paid answers to get a run going again. Raises :class:`StoreError` if the store itself
    cannot be written (files are kept).
    """
    target = store_identity(store)
    recovered = Recovered()
    for path in sorted(rescue_dir.glob(RESCUE_GLOB)):
        rows = _rows_of(path, target)
        if rows is None:
            continue
        refused: list[dict[str, Any]] = []
        for line in rows:
            reason = _recover_line(store, line)
            if reason is None:
                recovered.results += 1
            else:
                refused.append({"reason": reason, "line": line})
        if refused:
            quarantine = path.with_name(path.name.removesuffix(".jsonl") + ".quarantine.jsonl")
            with quarantine.open("a", encoding="utf-8") as handle:
                for entry in refused:
                    handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            recovered.quarantined += len(refused)
            recovered.quarantine_files.append(quarantine)
        path.unlink()
    return recovered


def _recover_line(store: StoreLike, line: str) -> str | None:
    """Commit one rescue-file line; None if it was, else why it could not be (the store's own failures raise)."""
    try:
        row = json.loads(line)
        result = CallResult.from_dict(row["result"])
        store.put(str(row["fingerprint"]), str(row["source_id"]), str(row["prompt_id"]), result)
    except StoreRejected as exc:
        return str(exc)
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - a line that is not a result goes to quarantine, whatever is wrong
        return f"not a rescued result ({type(exc).__name__}: {exc})"
    return None


def _rows_of(path: Path, store: str) -> list[str] | None:
    """The result lines of a rescue file of ``store``; None for another store's file or an unreadable one."""
    try:
        lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        header = json.loads(lines[0]) if lines else {}
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict) or header.get("rescue_of") != store:
        return None
    rows = lines[1:]
    if rows:
        try:
            json.loads(rows[-1])
        except ValueError:  # the last line of a file cut short
            rows.pop()
    return rows
