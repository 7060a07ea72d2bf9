"""Small things a first hour trips on: the version, and datasets on a plain install without pyarrow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

RLHF = str(Path(sys.executable).with_name("rlhf"))
pytestmark = pytest.mark.slow  # subprocesses


def test_version() -> None:
    done = subprocess.run([RLHF, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"rlhf-orchestrator {version('rlhf-orchestrator')}"


def without_pyarrow(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import pyarrow`` fails, as on a plain ``pip install``."""
    shadow = tmp_path / "shadow" / "pyarrow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('pyarrow is not installed (hidden by the test)')\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}


def annotated_file(tmp_path: Path) -> Path:
    """A harvested file with one annotated task, built as the dataset tests build theirs."""
    from test_datasets import annotate, make_shell

    task = annotate(
        make_shell(["gpt-4o", "claude"], template="pref_ranking_rewrites"),
        turn={"selected_model_id": "claude"},
        answers={"claude": {"rewrite": "claude rewritten"}},
    )
    path = tmp_path / "annotated.jsonl"
    path.write_text(json.dumps(task) + "\n", encoding="utf-8")
    return path


def test_export_dataset_writes_jsonl_without_pyarrow_and_parquet_only_when_asked(tmp_path: Path) -> None:
    env = without_pyarrow(tmp_path)
    source = annotated_file(tmp_path)
    plain = subprocess.run(
        [RLHF, "export-dataset", str(source), "--format", "sft", "--out", str(tmp_path / "a")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert plain.returncode == 0, plain.stderr
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["sft.jsonl"]

    asked = subprocess.run(
        [RLHF, "export-dataset", str(source), "--format", "sft", "--out", str(tmp_path / "b"), "--parquet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert asked.returncode == 2
    assert "error: Parquet output needs the optional dependency pyarrow" in asked.stderr
    assert "[red]" not in asked.stderr and "Traceback" not in asked.stderr
