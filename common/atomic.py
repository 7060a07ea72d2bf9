"""Files that are either absent or complete: written under a temporary name, renamed when done."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: str | Path) -> Iterator[IO[str]]:
    """Write ``path`` via ``path.partial``; it appears under its name only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    handle = partial.open("w", encoding="utf-8")
    try:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(partial, path)
    except BaseException:
        try:
            handle.close()  # on a full disk, closing flushes and fails too: the partial file goes all the same
        except OSError:
            pass
        partial.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    """Write indented JSON atomically."""
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=False, allow_nan=False)  # strict JSON: never NaN or Infinity
        handle.write("\n")
