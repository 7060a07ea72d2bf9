"""``run.json``: which config a run directory came from, and where that run was started."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.atomic import write_json
from common.storage import is_url

MANIFEST = "run.json"


def write_manifest(run_dir: Path, config_path: str, config_hash: str, store: Path | str, started_at: str) -> None:
    """Record the run's config (absolute path), working directory, config hash and store (a file's absolute
    path, or a database URL, which never holds a password)."""
    write_json(
        run_dir / MANIFEST,
        {
            "config": config_path if is_url(config_path) else str(Path(config_path).resolve()),
            "cwd": str(Path.cwd()),
            "config_hash": config_hash,
            "store": str(store.resolve()) if isinstance(store, Path) else store,
            "started_at": started_at,
        },
    )


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of a run directory; ``FileNotFoundError`` with a clear message if there is none."""
    path = run_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {MANIFEST} here (not a run directory of rlhf run)")
    return json.loads(path.read_text(encoding="utf-8"))


@contextmanager
def working_dir(path: Path | None) -> Iterator[None]:
    """Run a block in ``path`` (relative paths in a config resolve against the run's directory)."""
    previous = Path.cwd()
    if path is not None:
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)
