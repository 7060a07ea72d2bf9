"""One run per batch: a run holds its response store with an OS lock, so a second run cannot pay twice.

The lock is ``flock`` on ``<store>.lock`` beside the store. The kernel releases it when the holding
process ends in any way (``kill -9`` included), so a dead holder never leaves a stale lock behind;
the file itself stays and only says who held it last. The holder writes its pid, host and start
time into the file, and a run that finds the lock taken names them.

Within one process the lock is re-entrant (the ``rlhf`` command takes it before starting Prefect,
then the flow takes it again), and it is released when the outermost holder lets go.

``flock`` works on local file systems; on NFS it depends on the server (Linux NFS clients emulate it
with byte-range locks, which lockd serves). Two machines sharing a store over a file system without
working locks are not protected: give each machine its own batch, or shard the run (docs).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from providers.store import StoreUnwritable


class BatchBusy(Exception):
    """Another live process holds this batch's store."""

    def __init__(self, store: Path, holder: dict[str, object]) -> None:
        who = ", ".join(f"{key} {holder[key]}" for key in ("pid", "host", "started_at") if key in holder)
        super().__init__(
            f"{store} is in use by another run ({who or 'holder unknown'}); wait for it to finish or stop it, "
            "then run again (nothing was called)"
        )
        self.store = store
        self.holder = holder


@dataclass
class _Held:
    fd: int
    depth: int


_held: dict[Path, _Held] = {}


def lock_path(store: Path) -> Path:
    """The lock file of a store."""
    return store.with_name(store.name + ".lock")


@contextmanager
def hold_store(store: str | Path) -> Iterator[None]:
    """Hold ``store`` for this process for the block; raise :class:`BatchBusy` at once if another has it."""
    key = Path(store).resolve()
    held = _held.get(key)
    if held is None:
        held = _held[key] = _Held(_acquire(key), 0)
    held.depth += 1
    try:
        yield
    finally:
        held.depth -= 1
        if held.depth == 0:
            del _held[key]
            os.close(held.fd)  # closing the descriptor releases the lock


def _acquire(store: Path) -> int:
    path = lock_path(store)
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StoreUnwritable(
            store,
            f"cannot create its lock file {path.name} ({exc.strerror or exc})",
            "fix the permissions of its directory, then run again",
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise BatchBusy(store, holder) from None
    _write_holder(fd)
    return fd


def _read_holder(fd: int) -> dict[str, object]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_holder(fd: int) -> None:
    """Record who holds the lock (best effort: the lock itself is what protects the store)."""
    started = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started_at": started}).encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
    except OSError:
        pass
