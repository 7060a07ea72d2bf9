"""Dated runs: ``{date}`` in ``batch`` and ``prompts.path``, and a glob in ``prompts.path``.

A scheduled (nightly) config can say ``batch: nightly-{date}`` and ``prompts: {path:
prompts/incoming/{date}.jsonl}`` or ``path: prompts/incoming/*.jsonl`` (the newest matching file), so
every night's run gets its own batch and never collides with, or resumes, another night's. The date is
today in UTC, or ``RLHF_RUN_DATE`` (``YYYY-MM-DD``), which ``rlhf run --date`` sets to rerun or resume
the run of a given day.
"""

from __future__ import annotations

import glob
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from common.storage import is_url

RUN_DATE_ENV = "RLHF_RUN_DATE"
GLOB_CHARS = set("*?[")


def run_date() -> str:
    """The run's date as ``YYYY-MM-DD`` (``RLHF_RUN_DATE`` if set, else today in UTC)."""
    given = os.environ.get(RUN_DATE_ENV)
    if given:
        return date.fromisoformat(given).isoformat()
    return datetime.now(UTC).date().isoformat()


def apply_run_date(data: dict[str, Any], base_dir: Path | None = None) -> dict[str, Any]:
    """Fill ``{date}`` in ``batch`` and ``prompts.path``; resolve a glob in the path to its newest match.

    A relative glob is matched in ``base_dir`` (the config file's directory; default: the working
    directory) and its match stays relative to it. A glob with no match is left as it is (the prompt
    reader then reports the file as not found).
    """
    root = base_dir if base_dir is not None else Path(".")
    today = run_date()
    if isinstance(data.get("batch"), str):
        data["batch"] = data["batch"].replace("{date}", today)
    prompts = data.get("prompts")
    if isinstance(prompts, dict) and isinstance(prompts.get("path"), str):
        path = prompts["path"].replace("{date}", today)
        if GLOB_CHARS & set(path) and not is_url(path):  # a URL is read as written (no glob)
            matches = glob.glob(path, root_dir=root)  # absolute patterns ignore root_dir
            if matches:
                path = max(matches, key=lambda p: ((root / p).stat().st_mtime, p))
        prompts["path"] = path
    return data
