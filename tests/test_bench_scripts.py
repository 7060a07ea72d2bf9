"""The benchmark scripts start: their imports resolve (``bench/`` puts itself first on ``sys.path``, so a
module there named like one of our packages would shadow it) and their options parse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # each script is a subprocess


@pytest.mark.parametrize(
    "script",
    [
        "bench/run.py",
        "bench/ratelimits.py",
        "bench/request_paths.py",
        "bench/clients/floor.py",
        "bench/batch_vs_online.py",
        "bench/store_commit.py",
        "bench/workers.py",
        "bench/first_task.py",
        "bench/annotator_interactions.py",
        "bench/labels_to_decisions.py",
    ],
)
def test_a_benchmark_script_starts(script: str) -> None:
    done = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_batch_vs_online_runs_at_a_tiny_size() -> None:
    """20 prompts × 3, online and batch (no rerun; bench/RESULTS.md is left alone): the counts add up."""
    command = [sys.executable, "bench/batch_vs_online.py", "--prompts", "20", "--no-rerun", "--no-write"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "## Batch mode vs online (20 × 3)" in done.stdout
    runs = {r["mode"]: r for r in json.loads((ROOT / "bench/out/batch_vs_online-20.json").read_text())["runs"]}
    online, batch = runs["online"], runs["batch"]
    assert online["chat_requests"] == online["http_requests"] == 60 and online["batch_http"] == {}
    assert batch["chat_requests"] == 0 and batch["batches_created"] == 3 and batch["requests_submitted"] == 60
    assert 0 < batch["http_requests"] < 60
    assert online["answers_stored"] == batch["answers_stored"] == 60
    assert online["cpu_s"] > 0 and batch["cpu_s"] > 0


def test_store_commit_measures_both_stores(postgres_url: str) -> None:
    from pg_server import PASSWORD

    command = [sys.executable, "bench/store_commit.py", "--puts", "50", "--repeats", "1", "--pg-url", postgres_url]
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| SQLite", "| PostgreSQL"))]
    assert len(rows) == 2 and all(float(row.split("|")[2]) > 0 for row in rows)
