"""``run.json``: which config a run directory came from, and where that run was started."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.atomic import write_json
from common.errors import InputError, InputProblem
from common.storage import is_url
from flows.config import RunConfig, config_from_record, load_config

MANIFEST = "run.json"
RESOLVED = "resolved_config"


def write_manifest(
    run_dir: Path,
    config_path: str,
    config_hash: str,
    store: Path | str,
    started_at: str,
    config: RunConfig | None = None,
) -> None:
    """Record the run's config (absolute path), working directory, config hash and store (a file's absolute
    path, or a database URL, which never holds a password), and the config as the run resolved it
    (:meth:`RunConfig.recorded`: what :func:`run_config` reads back)."""
    write_json(
        run_dir / MANIFEST,
        {
            "config": config_path if is_url(config_path) else str(Path(config_path).resolve()),
            "cwd": str(Path.cwd()),
            "config_hash": config_hash,
            "store": str(store.resolve()) if isinstance(store, Path) else store,
            "started_at": started_at,
            RESOLVED: config.recorded() if config is not None else None,
        },
    )


def run_config(manifest: dict[str, Any], *, providers: bool = True, where: str = MANIFEST) -> RunConfig:
    """The config of the run ``manifest`` describes, for the commands that call no provider.

    As the run recorded it (:data:`RESOLVED`): no variable of the config needs to be set, and nothing is
    resolved again. A ``run.json`` of an earlier version records none: the config file is then read again
    (call this in the run's working directory, :func:`working_dir`); with ``providers`` False, variables of
    providers and judges need not be set (for what the run wrote: project, batch, annotation template),
    else they must be, and the error says why (``where``: the run.json, for the message).
    """
    recorded = config_from_record(manifest.get(RESOLVED))
    if recorded is not None:
        return recorded
    try:
        return load_config(str(manifest["config"]), require_keys=False, resolve_providers=providers)
    except InputError as exc:
        if not any("environment variable" in problem.message for problem in exc.problems):
            raise
        note = (
            "the run was made by an earlier version, which did not record its resolved config: set these "
            "variables as the run had them (a run of the batch now records them)"
        )
        raise InputError([*exc.problems, InputProblem(where, None, note)], exc.hint) from None


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
